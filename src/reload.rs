//! Policy hot reload: on SIGHUP (see `cli::serve`) and when a file in the
//! policy directory changes.
//!
//! A reload reads and validates the whole directory first
//! ([`policy::load_dir`](crate::policy::load_dir)), checks that the store
//! has every key the new set names (creating them only as `[keys]
//! create_policy_keys` allows), and only then swaps the set in
//! ([`ProxyState::replace_policies`]). A bad file leaves the running set in
//! place and logs each problem with its file, route and field. A request
//! keeps the set it started with: the pipeline holds an `Arc` snapshot.
//!
//! The directory is watched by polling a fingerprint (names and SHA-256 of
//! every `*.toml`) rather than with inotify: policy directories are small,
//! polling sees edits made by any means (editors that rename, config
//! management, bind mounts) and needs no platform code or extra crate.

use sha2::{Digest, Sha256};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::audit::{AuditEvent, AuditLog};
use crate::config::PolicyKeyCreation;
use crate::keys::KeyStore;
use crate::metrics::Metrics;
use crate::policy::{PolicyError, PolicySet};
use crate::proxy::ProxyState;

/// Why a reload did not take effect (the running set stays).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The new files do not validate; every problem names file, route, field.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A key the new set names could not be made.
    #[error("policy keys: {0}")]
    Keys(String),
    /// The reload task did not finish.
    #[error("reload task failed")]
    Task,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Routes in the new set.
    pub routes: usize,
    /// Alias keys created for it.
    pub created_keys: Vec<String>,
}

/// Makes sure every key the policies name is in the store. A missing one
/// is created, as an alias, only when `mode` allows it (see
/// [`PolicyKeyCreation`]: by default only while the store holds no key at
/// all, so a first start on an empty data directory just works but a typo
/// in a policy's `key` on a store in use is an error, not a new CMK). Each
/// key created is logged at WARN. Returns the aliases created; the error
/// names every missing key with its route and file.
pub fn ensure_policy_keys(
    store: &KeyStore,
    set: &PolicySet,
    mode: PolicyKeyCreation,
) -> Result<Vec<String>, String> {
    let create = match mode {
        PolicyKeyCreation::Always => true,
        PolicyKeyCreation::Never => false,
        PolicyKeyCreation::EmptyStoreOnly => store.list(0, 0).total_count == 0,
    };
    let mut created: Vec<String> = Vec::new();
    let mut missing = Vec::new();
    for route in set.routes() {
        if created.contains(&route.key) || store.resolve(&route.key).is_ok() {
            continue;
        }
        let where_ = format!(
            "route {:?} in {} names key {:?}",
            route.name, route.file, route.key
        );
        if uuid::Uuid::parse_str(&route.key).is_ok() {
            missing.push(format!(
                "{where_}, a KeyId the key store does not have (a KeyId is never created)"
            ));
            continue;
        }
        if !create {
            missing.push(format!(
                "{where_}, which the key store does not have; create it \
                 (`sealgate keys create --alias {}`), correct the name, or set \
                 [keys] create_policy_keys = true (--create-policy-keys) to create \
                 the keys policies name",
                route.key
            ));
            continue;
        }
        let id = match store.create_alias_key(
            &route.key,
            &format!("created for policy route {}", route.name),
        ) {
            Ok(id) => id,
            // another node sharing the store created it a moment ago
            Err(crate::keys::KeyError::AliasAlreadyExists) if store.resolve(&route.key).is_ok() => {
                created.push(route.key.clone());
                continue;
            }
            Err(e) => return Err(format!("creating key {:?} for {where_}: {e}", route.key)),
        };
        tracing::warn!(
            alias = %route.key,
            key_id = %id,
            route = %route.name,
            file = %route.file,
            "created a CMK named by a policy that the key store did not have; \
             if the name is a typo, fix the policy before data is sealed under it"
        );
        created.push(route.key.clone());
    }
    if missing.is_empty() {
        Ok(created)
    } else {
        Err(missing.join("; "))
    }
}

/// Each `*.toml` file's name with the SHA-256 of its bytes, sorted.
pub type Fingerprint = Vec<(String, [u8; 32])>;

/// A fingerprint of a policy directory. `None` when it cannot be read.
pub fn fingerprint(dir: &Path) -> Option<Fingerprint> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).ok()? {
        let path = entry.ok()?.path();
        if path.extension().is_some_and(|x| x == "toml") && path.is_file() {
            let bytes = std::fs::read(&path).ok()?;
            out.push((path.display().to_string(), Sha256::digest(&bytes).into()));
        }
    }
    out.sort();
    Some(out)
}

/// Reloads one proxy's policies from its directory.
pub struct PolicyReloader {
    /// The policy directory.
    dir: PathBuf,
    /// Whose policies are swapped.
    state: Arc<ProxyState>,
    /// Where missing alias keys are made.
    store: Arc<KeyStore>,
    /// Reload counters.
    metrics: Arc<Metrics>,
    /// Reload and key-creation records.
    audit: Arc<AuditLog>,
    /// Serialises reloads; holds the fingerprint last loaded (or refused).
    last: Mutex<Option<Fingerprint>>,
    /// Whether keys the new set names and the store lacks are created.
    create_keys: PolicyKeyCreation,
    /// With `[provider]`: the remote KMS that must have every key a new set
    /// names (nothing is created, locally or there).
    remote: Option<Arc<crate::keys::remote::RemoteProvider>>,
}

impl PolicyReloader {
    /// A reloader for `state`, whose running set came from `dir`.
    pub fn new(
        dir: PathBuf,
        state: Arc<ProxyState>,
        store: Arc<KeyStore>,
        metrics: Arc<Metrics>,
        audit: Arc<AuditLog>,
        create_keys: PolicyKeyCreation,
    ) -> Self {
        let last = fingerprint(&dir);
        PolicyReloader {
            dir,
            state,
            store,
            metrics,
            audit,
            last: Mutex::new(last),
            create_keys,
            remote: None,
        }
    }

    /// Checks new sets' keys with this remote KMS instead of the local store.
    pub fn with_remote_keys(mut self, remote: Arc<crate::keys::remote::RemoteProvider>) -> Self {
        self.remote = Some(remote);
        self
    }

    /// Validates the directory and swaps the new set in; blocking (reads
    /// files, may create keys). `trigger` says why, for logs and audit.
    pub fn reload_now(&self, trigger: &str) -> Result<Reloaded, ReloadError> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        *last = fingerprint(&self.dir);
        let result = self.load_and_swap();
        let mut ev = AuditEvent::new(
            "policy_reload",
            match &result {
                Ok(_) => "ok",
                Err(_) => "refused",
            },
        );
        ev.caller = Some(trigger.to_string());
        match &result {
            Ok(r) => {
                ev.count = Some(r.routes as u64);
                tracing::info!(trigger, routes = r.routes, created_keys = r.created_keys.len(), dir = %self.dir.display(), "policies reloaded");
            }
            Err(ReloadError::Policy(p)) => {
                for problem in &p.problems {
                    tracing::error!(
                        trigger,
                        file = %problem.file,
                        route = problem.route.as_deref().unwrap_or("-"),
                        field = problem.field.as_deref().unwrap_or("-"),
                        problem = %problem.message,
                        "policy reload refused; the running policies stay in force"
                    );
                }
            }
            Err(e) => {
                tracing::error!(trigger, error = %e, "policy reload refused; the running policies stay in force")
            }
        }
        self.metrics.policy_reload(result.is_ok());
        self.metrics.note_reload(
            trigger,
            result.is_ok(),
            match &result {
                Ok(r) => format!("{} route(s) in force", r.routes),
                Err(e) => e.to_string(),
            },
        );
        self.audit.record(ev);
        result
    }

    fn load_and_swap(&self) -> Result<Reloaded, ReloadError> {
        let set = crate::policy::load_dir(&self.dir)?;
        warn_label_gaps(&set);
        let created = match &self.remote {
            Some(remote) => {
                crate::keys::remote::check_policies(&set).map_err(ReloadError::Keys)?;
                let mut keys: Vec<&str> = Vec::new();
                for route in set.routes() {
                    for k in std::iter::once(&route.key).chain(route.open_keys.iter()) {
                        if !keys.contains(&k.as_str()) {
                            keys.push(k);
                        }
                    }
                }
                remote.check_keys(keys).map_err(ReloadError::Keys)?;
                Vec::new()
            }
            None => ensure_policy_keys(&self.store, &set, self.create_keys)
                .map_err(ReloadError::Keys)?,
        };
        for alias in &created {
            let mut ev = AuditEvent::new("create_key", "ok");
            ev.caller = Some("policy-reload".into());
            ev.key_id = self.store.resolve(alias).ok().map(|id| id.to_string());
            self.audit.record(ev);
        }
        let routes = set.routes().len();
        self.state.replace_policies(set);
        Ok(Reloaded {
            routes,
            created_keys: created,
        })
    }

    /// [`reload_now`](Self::reload_now) off the async threads.
    pub async fn reload(self: &Arc<Self>, trigger: &str) -> Result<Reloaded, ReloadError> {
        let me = self.clone();
        let trigger = trigger.to_string();
        tokio::task::spawn_blocking(move || me.reload_now(&trigger))
            .await
            .map_err(|_| ReloadError::Task)?
    }

    /// Reloads when the directory's fingerprint changed since the last load.
    /// Returns whether it tried.
    pub fn reload_if_changed(&self) -> bool {
        let now = fingerprint(&self.dir);
        let changed = {
            let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
            now.is_some() && *last != now
        };
        if changed {
            let _ = self.reload_now("file-change");
        }
        changed
    }

    /// Checks the directory every `every` until `shutdown` resolves.
    pub async fn watch(self: Arc<Self>, every: Duration, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let me = self.clone();
                    let _ = tokio::task::spawn_blocking(move || me.reload_if_changed()).await;
                }
                () = &mut shutdown => return,
            }
        }
    }
}

/// Logs, at WARN, every field a route opens that no route of its context
/// seals (and the reverse): `sealgate policy check` refuses the first kind;
/// a running server keeps serving but says so.
pub fn warn_label_gaps(set: &crate::policy::PolicySet) {
    for f in crate::policy::check_labels(set) {
        tracing::warn!(route = %f.route, rule = %f.rule, label = %f.label, "{f}");
    }
}
