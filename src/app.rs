//! Wiring: config → key store → data-key cache → policies → listeners.
//! `sealgate serve` and the in-process tests both start here.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::keys::{CacheConfig, DataKeyCache, KeyStore};
use crate::policy::PolicySet;
use crate::proxy::{upstream::Upstream, ActivePolicies, ProxyState};

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
    /// The key store.
    pub store: Arc<KeyStore>,
    /// The data-key cache.
    pub cache: Arc<DataKeyCache>,
    /// The proxy state (policies can be swapped through it).
    pub state: Arc<ProxyState>,
    /// The config it runs with.
    pub config: Config,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl App {
    /// Stops accepting, lets in-flight requests finish, and waits.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
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

/// Creates, as an alias, every key the policies name that does not exist
/// yet, so a first start on an empty data directory just works.
fn ensure_policy_keys(store: &KeyStore, set: &PolicySet) -> Result<(), StartError> {
    for route in set.routes() {
        if store.resolve(&route.key).is_ok() {
            continue;
        }
        if uuid::Uuid::parse_str(&route.key).is_ok() {
            return Err(StartError::Policy(format!(
                "route {:?} names key {} which is not in the store",
                route.name, route.key
            )));
        }
        let id = store
            .create_alias_key(
                &route.key,
                &format!("created for policy route {}", route.name),
            )
            .map_err(|e| {
                StartError::KeyStore(format!(
                    "creating key {:?} for route {:?}: {e}",
                    route.key, route.name
                ))
            })?;
        tracing::info!(alias = %route.key, key_id = %id, route = %route.name, "created CMK named by policy");
    }
    Ok(())
}

/// The KMS faces over `store`, with the config's quota overrides.
fn kms_faces(store: &Arc<KeyStore>, config: &Config) -> crate::kms::Faces {
    crate::kms::Faces {
        alibaba: Some(Arc::new(crate::kms::alibaba::AlibabaFace::new(
            store.clone(),
            &config.kms_quotas,
        ))),
        infisical: Some(Arc::new(crate::kms::infisical::InfisicalFace::from_config(
            store.clone(),
            config,
        ))),
        tencent: Some(Arc::new(crate::kms::tencent::TencentFace::new(
            store.clone(),
            &config.kms_quotas,
        ))),
        ..crate::kms::Faces::default()
    }
}

/// Opens everything and starts the listeners.
pub async fn start(config: Config) -> Result<App, StartError> {
    let store = Arc::new(
        crate::keys::open_for_config(&config).map_err(|e| StartError::KeyStore(e.to_string()))?,
    );
    let policies =
        crate::policy::load_dir(&config.policies).map_err(|e| StartError::Policy(e.to_string()))?;
    ensure_policy_keys(&store, &policies)?;
    let provider: Arc<dyn crate::keys::KeyProvider> = store.clone();
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
    let state = Arc::new(ProxyState {
        policies: RwLock::new(Arc::new(ActivePolicies::new(policies))),
        cache: cache.clone(),
        upstream,
        max_body_bytes: config.max_body_bytes,
        header_read_timeout: config.header_read_timeout,
    });
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
        Duration::from_secs(30),
    )));

    // admin socket: the CLI manages keys through it while we hold the store
    let sock = config.data_dir.join("admin.sock");
    let mut rx2 = rx.clone();
    let admin_store = store.clone();
    tasks.push(tokio::spawn(async move {
        tokio::select! {
            r = crate::keys::admin::serve(admin_store, sock) => {
                if let Err(e) = r { tracing::error!(error = %e, "admin socket stopped"); }
            }
            _ = rx2.wait_for(|v| *v) => {}
        }
    }));

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
                        let now = crate::keys::unix_now();
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
        let faces = kms_faces(&store, &config);
        let mut rx4 = rx.clone();
        tasks.push(tokio::spawn(crate::kms::serve(
            l,
            kms_acceptor,
            faces,
            async move {
                let _ = rx4.changed().await;
            },
            config.header_read_timeout,
        )));
        tracing::info!(listen = %bound, tls = config.kms_tls.is_some(), "KMS listening (Tencent, Alibaba, Infisical dialects)");
        kms_addr = Some(bound);
    }

    tracing::info!(listen = %proxy_addr, tls = config.tls.is_some(), upstream = %config.upstream, policies = %config.policies.display(), "sealgate proxy listening");
    Ok(App {
        proxy_addr,
        kms_addr,
        store,
        cache,
        state,
        config,
        shutdown: tx,
        tasks,
    })
}
