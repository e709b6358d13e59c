//! Wiring: config → key store → data-key cache → policies → listeners,
//! plus the operations side: metrics and the admin listener, the audit log,
//! policy hot reload, and graceful shutdown. `sealgate serve` and the
//! in-process tests both start here.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::audit::{AuditLog, AuditedProvider, ObservedFace};
use crate::config::Config;
use crate::keys::{CacheConfig, DataKeyCache, KeyStore};
use crate::metrics::{AdminView, Metrics, Readiness};
use crate::proxy::{upstream::Upstream, ActivePolicies, ProxyState};
use crate::reload::{PolicyReloader, ReloadError, Reloaded};

/// Why sealgate could not start; each names what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The key store did not open.
    #[error("key store: {0}")]
    KeyStore(String),
    /// The policy directory did not load.
    #[error("policies: {0}")]
    Policy(String),
    /// The upstream URL is not usable.
    #[error("upstream: {0}")]
    Upstream(String),
    /// A TLS certificate, key or CA file did not load.
    #[error("TLS {0}")]
    Tls(String),
    /// The audit log could not be opened.
    #[error("audit log {sink}: {source}")]
    Audit {
        /// The file (or stdout).
        sink: String,
        /// Why.
        source: std::io::Error,
    },
    /// The shadow capture file could not be opened.
    #[error("shadow capture: {0}")]
    Shadow(String),
    /// `[limits]` names a backend that cannot be used.
    #[error("limits: {0}")]
    Limits(String),
    /// `[provider]`: the remote KMS cannot be used (credentials missing, a
    /// policy key it does not have, unreachable).
    #[error("provider: {0}")]
    Provider(String),
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A running sealgate.
pub struct App {
    /// The proxy's bound address.
    pub proxy_addr: SocketAddr,
    /// The KMS listener's bound address, if serving.
    pub kms_addr: Option<SocketAddr>,
    /// The admin listener's bound address (`/metrics`, `/healthz`, `/readyz`), if serving.
    pub admin_addr: Option<SocketAddr>,
    /// The web console's bound address, if serving (`--console-listen`).
    pub console_addr: Option<SocketAddr>,
    /// The key store.
    pub store: Arc<KeyStore>,
    /// The data-key cache.
    pub cache: Arc<DataKeyCache>,
    /// The proxy state (policies can be swapped through it).
    pub state: Arc<ProxyState>,
    /// The config it runs with.
    pub config: Config,
    /// Counters and histograms (what `/metrics` shows).
    pub metrics: Arc<Metrics>,
    /// The audit log (a no-op when none is configured).
    pub audit: Arc<AuditLog>,
    reloader: Arc<PolicyReloader>,
    ready: Arc<Readiness>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The admin listener outlives the drain, so `/readyz` can say "draining".
    admin_stop: watch::Sender<bool>,
    admin_task: Option<tokio::task::JoinHandle<()>>,
}

impl App {
    /// Reloads the policy directory now (what SIGHUP does): validates the
    /// new set, creates missing alias keys, swaps it in. On error the
    /// running set stays and each problem is logged.
    pub async fn reload_policies(&self, trigger: &str) -> Result<Reloaded, ReloadError> {
        self.reloader.reload(trigger).await
    }

    /// Stops accepting, lets in-flight requests finish (up to the
    /// configured drain timeout), then flushes and closes the audit log.
    pub async fn shutdown(self) {
        self.ready.set_draining();
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let _ = self.admin_stop.send(true);
        if let Some(t) = self.admin_task {
            let _ = t.await;
        }
        let audit = self.audit.clone();
        let _ = tokio::task::spawn_blocking(move || audit.close()).await;
    }
}

fn cache_config(c: &Config) -> CacheConfig {
    CacheConfig {
        max_age: c.cache.max_age,
        max_messages: c.cache.max_messages,
        max_bytes: c.cache.max_bytes,
        capacity: c.cache.capacity,
        enabled: c.cache.enabled,
    }
}

/// The KMS faces over `store`, with the config's quota overrides, counted
/// in `shared` (`--limits`) when given.
fn kms_faces(
    store: &Arc<KeyStore>,
    config: &Config,
    shared: Option<&Arc<crate::limits::SharedLimits>>,
) -> crate::kms::Faces {
    let shared = || shared.cloned();
    crate::kms::Faces {
        alibaba: Some(Arc::new(
            crate::kms::alibaba::AlibabaFace::new(store.clone(), &config.kms_quotas.alibaba)
                .with_shared_limits(shared()),
        )),
        infisical: Some(Arc::new(
            crate::kms::infisical::InfisicalFace::from_config(store.clone(), config)
                .with_shared_limits(shared()),
        )),
        tencent: Some(Arc::new(
            crate::kms::tencent::TencentFace::new(store.clone(), &config.kms_quotas.tencent)
                .with_shared_limits(shared()),
        )),
    }
}

/// Wraps each face so its requests are counted and audited.
fn observe_faces(
    faces: crate::kms::Faces,
    metrics: &Arc<Metrics>,
    audit: &Arc<AuditLog>,
) -> crate::kms::Faces {
    let wrap = |face: Option<Arc<dyn crate::kms::Face>>| {
        face.map(|inner| {
            Arc::new(ObservedFace {
                inner,
                audit: audit.clone(),
                metrics: metrics.clone(),
            }) as Arc<dyn crate::kms::Face>
        })
    };
    crate::kms::Faces {
        tencent: wrap(faces.tencent),
        alibaba: wrap(faces.alibaba),
        infisical: wrap(faces.infisical),
    }
}

/// What the start log reports of the policies loaded.
struct Loaded {
    /// Policy files that hold at least one route.
    files: usize,
    /// Routes.
    routes: usize,
    /// Routes in shadow mode.
    shadow_routes: usize,
}

impl Loaded {
    fn of(policies: &crate::policy::PolicySet) -> Self {
        let routes = policies.routes();
        Loaded {
            files: routes
                .iter()
                .map(|r| r.file.as_str())
                .collect::<std::collections::HashSet<_>>()
                .len(),
            routes: routes.len(),
            shadow_routes: routes
                .iter()
                .filter(|r| r.mode == crate::policy::RouteMode::Shadow)
                .count(),
        }
    }
}

/// The admin socket (`DATA_DIR/admin.sock`): the CLI manages keys through
/// it while this process holds the store; stops when `stop` turns true.
fn admin_socket(
    config: &Config,
    store: &Arc<KeyStore>,
    audit: &Arc<AuditLog>,
    metrics: &Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let sock = config.data_dir.join("admin.sock");
    let admin_store = store.clone();
    let admin_audit = audit.clone();
    let admin_metrics = metrics.clone();
    let observer: crate::keys::admin::AdminObserver = Arc::new(move |req, result| {
        let ev = crate::audit::admin_event(req, result);
        admin_metrics.key_op("admin", ev.action.trim_start_matches("admin."));
        admin_audit.record(ev);
    });
    tokio::spawn(async move {
        let serve = async move {
            let listener = crate::keys::admin::bind(&sock)?;
            crate::keys::admin::serve_observed(admin_store, listener, Some(observer)).await
        };
        tokio::select! {
            r = serve => {
                if let Err(e) = r { tracing::error!(error = %e, "admin socket stopped"); }
            }
            _ = stop.wait_for(|v| *v) => {}
        }
    })
}

/// The remote key provider of `[provider]`, after checking with the
/// provider (DescribeKey) that every key the policies name is usable.
fn remote_provider(
    settings: &crate::config::ProviderSettings,
    policies: &crate::policy::PolicySet,
    metrics: &Arc<Metrics>,
) -> Result<crate::keys::remote::RemoteProvider, StartError> {
    crate::keys::remote::check_policies(policies).map_err(StartError::Provider)?;
    let provider = crate::keys::remote::RemoteProvider::new(settings, metrics.clone())
        .map_err(StartError::Provider)?;
    let mut keys: Vec<&str> = Vec::new();
    for route in policies.routes() {
        for k in std::iter::once(&route.key).chain(route.open_keys.iter()) {
            if !keys.contains(&k.as_str()) {
                keys.push(k);
            }
        }
    }
    provider.check_keys(keys).map_err(StartError::Provider)?;
    // the SecretId may appear here, and only here; never the SecretKey
    tracing::info!(
        provider = settings.kind.name(),
        endpoint = %settings.endpoint,
        region = %settings.region,
        secret_id = %provider.secret_id(),
        "CMKs are held by a remote KMS; this node caches its data keys"
    );
    Ok(provider)
}

/// Opens everything and starts the listeners.
pub async fn start(config: Config) -> Result<App, StartError> {
    let metrics = Arc::new(Metrics::new());
    let audit = Arc::new(match &config.audit.sink {
        Some(sink) => {
            AuditLog::open(sink, config.audit.queue, metrics.clone()).map_err(|source| {
                StartError::Audit {
                    sink: crate::audit::sink_name(sink),
                    source,
                }
            })?
        }
        None => AuditLog::disabled(metrics.clone()),
    });
    let store = Arc::new(
        crate::keys::open_for_config(&config).map_err(|e| StartError::KeyStore(e.to_string()))?,
    );
    let policies =
        crate::policy::load_dir(&config.policies).map_err(|e| StartError::Policy(e.to_string()))?;
    let remote = match &config.provider {
        // the CMKs live in a remote KMS: nothing is created here, and every
        // key the policies name must exist there now
        Some(settings) => Some(Arc::new(remote_provider(settings, &policies, &metrics)?)),
        None => None,
    };
    let provider: Arc<dyn crate::keys::KeyProvider> = match &remote {
        Some(r) => r.clone(),
        None => {
            crate::reload::ensure_policy_keys(&store, &policies, config.create_policy_keys)
                .map_err(StartError::Policy)?;
            // every data key the cache generates or unwraps is counted and audited
            Arc::new(AuditedProvider {
                inner: store.clone(),
                audit: audit.clone(),
                metrics: metrics.clone(),
            })
        }
    };
    crate::reload::warn_label_gaps(&policies);
    let loaded = Loaded::of(&policies);
    let cache = Arc::new(DataKeyCache::with_system_clock(
        provider,
        cache_config(&config),
    ));
    let upstream = Upstream::with_settings(&crate::proxy::upstream::UpstreamSettings {
        base: config.upstream.clone(),
        connect_timeout: config.connect_timeout,
        timeout: config.upstream_timeout,
        tls: config.upstream_tls.clone(),
        http2: config.upstream_http2,
    })
    .map_err(StartError::Upstream)?;
    let tls_error = |what: &str, e: crate::tls::TlsError| StartError::Tls(format!("{what}: {e}"));
    let proxy_acceptor =
        crate::tls::Acceptor::new(config.tls.as_ref(), config.h2c, config.header_read_timeout)
            .map_err(|e| tls_error("[tls]", e))?;
    // built before anything is spawned, so a bad file stops startup cleanly
    let kms_acceptor = crate::tls::Acceptor::new(
        config.kms_tls.as_ref(),
        config.h2c,
        config.header_read_timeout,
    )
    .map_err(|e| tls_error("[kms_tls]", e))?;
    let shared_limits = match &config.limits {
        Some(l) => Some(Arc::new(
            crate::limits::SharedLimits::new(l.clone()).map_err(StartError::Limits)?,
        )),
        None => None,
    };
    if let Some(l) = &shared_limits {
        metrics.watch_limits(l.clone());
    }
    let state = Arc::new(ProxyState {
        max_connections: config.max_connections,
        policies: RwLock::new(Arc::new(ActivePolicies::new(
            policies,
            shared_limits.clone(),
        ))),
        cache: cache.clone(),
        upstream,
        max_body_bytes: config.max_body_bytes,
        header_read_timeout: config.header_read_timeout,
        metrics: metrics.clone(),
        audit: audit.clone(),
        shadow: crate::proxy::shadow::Shadow::open(config.shadow, config.shadow_capture.as_ref())
            .map_err(|e| StartError::Shadow(e.to_string()))?,
        unmatched_hosts: config.unmatched_hosts,
        shared_limits: shared_limits.clone(),
    });
    let ready = Arc::new(Readiness::default());
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let proxy_addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let (tx, rx) = watch::channel(false);
    let mut tasks = Vec::new();

    let mut rx1 = rx.clone();
    tasks.push(tokio::spawn(crate::proxy::server::run(
        listener,
        proxy_acceptor,
        state.clone(),
        async move {
            let _ = rx1.wait_for(|v| *v).await;
        },
        config.drain_timeout,
    )));

    // admin socket: the CLI manages keys through it while we hold the store
    // (a provider node holds none: its keys are managed in the remote KMS)
    if config.provider.is_none() {
        tasks.push(admin_socket(&config, &store, &audit, &metrics, rx.clone()));
    }

    // housekeeping: scheduled rotation and deletion
    let mut rx3 = rx.clone();
    let hk_store = store.clone();
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let store = hk_store.clone();
                    // rotation and purge write (and fsync): keep them off the async threads
                    let _ = tokio::task::spawn_blocking(move || {
                        let now = crate::clock::unix_now();
                        if let Err(e) = store.rotate_due(now) { tracing::error!(error = %e, "scheduled rotation failed"); }
                        if let Err(e) = store.purge_due(now) { tracing::error!(error = %e, "scheduled deletion failed"); }
                    })
                    .await;
                }
                _ = rx3.changed() => {}
            }
            if *rx3.borrow() {
                break;
            }
        }
    }));

    // the KMS faces, on their own listener
    let mut kms_addr = None;
    if let Some(addr) = config.kms_listen {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let bound = l
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        let faces = observe_faces(
            kms_faces(&store, &config, shared_limits.as_ref()),
            &metrics,
            &audit,
        );
        let mut rx4 = rx.clone();
        tasks.push(tokio::spawn(crate::kms::serve(
            l,
            kms_acceptor,
            faces,
            async move {
                let _ = rx4.changed().await;
            },
            crate::listen::ListenLimits {
                max_connections: config.max_connections,
                header_read_timeout: config.header_read_timeout,
                drain: config.drain_timeout,
            },
        )));
        tracing::info!(listen = %bound, tls = config.kms_tls.is_some(), "KMS listening (Tencent, Alibaba, Infisical dialects)");
        kms_addr = Some(bound);
    }

    // policy hot reload on file change
    let reloader = PolicyReloader::new(
        config.policies.clone(),
        state.clone(),
        store.clone(),
        metrics.clone(),
        audit.clone(),
        config.create_policy_keys,
    );
    let reloader = Arc::new(match remote {
        Some(r) => reloader.with_remote_keys(r),
        None => reloader,
    });
    if config.reload.watch {
        let mut rx5 = rx.clone();
        tasks.push(tokio::spawn(reloader.clone().watch(
            config.reload.poll,
            async move {
                let _ = rx5.wait_for(|v| *v).await;
            },
        )));
    }

    // the admin listener: metrics and health
    let mut admin_addr = None;
    let (admin_stop, admin_rx) = watch::channel(false);
    let mut admin_task = None;
    if let Some(addr) = config.admin_listen {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let bound = l
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        let view = AdminView {
            metrics: metrics.clone(),
            cache: cache.clone(),
            store: store.clone(),
            routes: state.clone(),
            ready: ready.clone(),
        };
        let mut rx6 = admin_rx;
        admin_task = Some(tokio::spawn(crate::metrics::serve_admin(
            l,
            view,
            async move {
                let _ = rx6.wait_for(|v| *v).await;
            },
            crate::listen::ListenLimits {
                max_connections: config.max_connections,
                header_read_timeout: config.header_read_timeout,
                // scrapes and probes are short; it stops after the others
                drain: std::time::Duration::from_secs(2),
            },
        )));
        tracing::info!(listen = %bound, "admin listening (/metrics, /healthz, /readyz)");
        admin_addr = Some(bound);
    }
    // the web console: read-only views of the above, on its own listener
    let mut console_addr = None;
    if let Some(settings) = &config.console {
        let started = crate::console::start(
            &config,
            settings,
            crate::console::Sources {
                state: state.clone(),
                metrics: metrics.clone(),
                store: store.clone(),
            },
            rx.clone(),
        )
        .await?;
        tasks.extend(started.tasks);
        console_addr = Some(started.addr);
    }
    ready.set_listening();

    // one line that says what this process does: an operator reading the
    // log should not have to reconstruct it from the config and flags
    let off = || "off".to_string();
    let shadow = if config.shadow {
        "on (every route)".to_string()
    } else if loaded.shadow_routes > 0 {
        format!("{} of {} routes", loaded.shadow_routes, loaded.routes)
    } else {
        off()
    };
    let audit_sink = config
        .audit
        .sink
        .as_ref()
        .map_or_else(off, crate::audit::sink_name);
    let capture = config
        .shadow_capture
        .as_ref()
        .map_or_else(off, |c| c.file.display().to_string());
    tracing::info!(
        listen = %proxy_addr,
        tls = config.tls.is_some(),
        upstream = %config.upstream,
        policies = %config.policies.display(),
        policy_files = loaded.files,
        routes = loaded.routes,
        shadow = %shadow,
        audit = %audit_sink,
        capture = %capture,
        kms_listener = %kms_addr.map_or_else(off, |a| a.to_string()),
        admin_listener = %admin_addr.map_or_else(off, |a| a.to_string()),
        console_listener = %console_addr.map_or_else(off, |a| a.to_string()),
        limits = %config.limits.as_ref().map_or_else(
            || "node".to_string(),
            |l| crate::limits::redact(&l.url)
        ),
        "sealgate proxy listening"
    );
    Ok(App {
        proxy_addr,
        kms_addr,
        admin_addr,
        console_addr,
        store,
        cache,
        state,
        config,
        metrics,
        audit,
        reloader,
        ready,
        shutdown: tx,
        tasks,
        admin_stop,
        admin_task,
    })
}
