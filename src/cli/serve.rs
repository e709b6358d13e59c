//! `sealgate serve`: load the config, set up logging, run until SIGTERM or
//! SIGINT, then drain. SIGHUP reloads the policy directory.
//!
//! Shutdown: the proxy stops accepting, `/readyz` turns 503, in-flight
//! requests finish (up to `timeouts.drain_ms`), the audit log is flushed
//! and closed, and the process exits 0.

use std::path::PathBuf;

use crate::config::{self, LogFormat, Overrides};

/// Flags of `sealgate serve`; each wins over the config file.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Config file (TOML).
    #[arg(long, env = "SEALGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Proxy listen address (default 127.0.0.1:8080).
    #[arg(long)]
    pub listen: Option<String>,
    /// Upstream base URL, e.g. http://127.0.0.1:3000.
    #[arg(long)]
    pub upstream: Option<String>,
    /// Policy directory (default ./policies).
    #[arg(long)]
    pub policies: Option<PathBuf>,
    /// Data directory of the key store (default ./sealgate-data).
    #[arg(long, env = "SEALGATE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Key store on PostgreSQL, shared by the nodes of a fleet:
    /// postgres://USER@HOST:PORT/DB (`[store] url`). Without it, the
    /// embedded store in the data directory.
    #[arg(long = "store", env = "SEALGATE_STORE_URL", value_name = "URL")]
    pub store_url: Option<String>,
    /// KMS listener address (Tencent, Alibaba and Infisical faces).
    #[arg(long)]
    pub kms_listen: Option<String>,
    /// Root key file (default DATA_DIR/root.key).
    #[arg(long)]
    pub root_key_file: Option<PathBuf>,
    /// Log format: pretty or json.
    #[arg(long)]
    pub log_format: Option<String>,
    /// Log filter, e.g. info or sealgate=debug,warn (RUST_LOG wins).
    #[arg(long)]
    pub log_level: Option<String>,
    /// Admin listener for /metrics, /healthz and /readyz, e.g. 127.0.0.1:9090.
    #[arg(long)]
    pub admin_listen: Option<String>,
    /// Append audit records to this file (hash-chained JSON lines).
    #[arg(long)]
    pub audit_file: Option<PathBuf>,
    /// Shadow mode for every route: traffic passes unchanged; sealgate
    /// reports what the policies would have sealed and opened.
    #[arg(long)]
    pub shadow: bool,
    /// Write observed field paths and value classes (never values) of JSON
    /// bodies to FILE, for `sealgate policy suggest --capture FILE`.
    #[arg(long)]
    pub shadow_capture: Option<PathBuf>,
    /// Create the keys policies name that the store lacks (`[keys]
    /// create_policy_keys`; `=false` never creates them). Unset: only while
    /// the store holds no key at all (first start).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub create_policy_keys: Option<bool>,
    /// Count KMS quotas and route rate limits in Redis, shared by every node
    /// given the same URL (`[limits] url`), e.g. redis://127.0.0.1:6379.
    /// Unset: each node counts its own.
    #[arg(long, env = "SEALGATE_LIMITS_URL", value_name = "URL")]
    pub limits: Option<String>,
    /// Serve the web console on ADDR (`[console] listen`), e.g.
    /// 127.0.0.1:9443; loopback only unless `[console.tls]` is set. Off
    /// when unset. The log-in token is printed once on standard error.
    #[arg(long, value_name = "ADDR")]
    pub console_listen: Option<String>,
    /// TLS flags (boxed: they would make every `Command` this large).
    #[command(flatten)]
    pub tls: Box<TlsArgs>,
}

/// The TLS flags of `sealgate serve`, one per key of `[tls]`, `[kms_tls]`
/// and `[upstream_tls]`.
#[derive(Debug, Default, clap::Args)]
pub struct TlsArgs {
    /// TLS on the proxy listener: PEM certificate chain, leaf first
    /// (`[tls] cert_file`; needs --tls-key).
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// TLS on the proxy listener: PEM private key (`[tls] key_file`).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// mTLS on the proxy listener: PEM CA certificates clients must
    /// present a certificate from (`[tls] client_ca_file`).
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// TLS on the KMS listener: PEM certificate chain (`[kms_tls] cert_file`;
    /// needs --kms-tls-key and --kms-listen).
    #[arg(long, value_name = "FILE")]
    pub kms_tls_cert: Option<PathBuf>,
    /// TLS on the KMS listener: PEM private key (`[kms_tls] key_file`).
    #[arg(long, value_name = "FILE")]
    pub kms_tls_key: Option<PathBuf>,
    /// mTLS on the KMS listener (`[kms_tls] client_ca_file`).
    #[arg(long, value_name = "FILE")]
    pub kms_tls_client_ca: Option<PathBuf>,
    /// CA certificates (PEM) to trust for an https:// upstream instead of
    /// the system roots (`[upstream_tls] ca_file`).
    #[arg(long, value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,
    /// Name sent as SNI to an https:// upstream and checked against its
    /// certificate, instead of the URL's host (`[upstream_tls] server_name`).
    #[arg(long, value_name = "NAME")]
    pub upstream_server_name: Option<String>,
}

impl ServeArgs {
    /// The flags as config overrides (each wins over the file).
    pub fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen.clone(),
            upstream: self.upstream.clone(),
            policies: self.policies.clone(),
            data_dir: self.data_dir.clone(),
            kms_listen: self.kms_listen.clone(),
            root_key_file: self.root_key_file.clone(),
            log_format: self.log_format.clone(),
            log_level: self.log_level.clone(),
            admin_listen: self.admin_listen.clone(),
            audit_file: self.audit_file.clone(),
            shadow: self.shadow.then_some(true),
            shadow_capture: self.shadow_capture.clone(),
            tls_cert: self.tls.tls_cert.clone(),
            tls_key: self.tls.tls_key.clone(),
            tls_client_ca: self.tls.tls_client_ca.clone(),
            kms_tls_cert: self.tls.kms_tls_cert.clone(),
            kms_tls_key: self.tls.kms_tls_key.clone(),
            kms_tls_client_ca: self.tls.kms_tls_client_ca.clone(),
            upstream_ca: self.tls.upstream_ca.clone(),
            upstream_server_name: self.tls.upstream_server_name.clone(),
            create_policy_keys: self.create_policy_keys,
            limits: self.limits.clone(),
            store_url: self.store_url.clone(),
            console_listen: self.console_listen.clone(),
        }
    }
}

/// Errors of `serve`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// Could not start.
    #[error(transparent)]
    Start(#[from] crate::app::StartError),
    /// The runtime failed to start.
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
}

/// Sets up the global tracing subscriber: the filter is `RUST_LOG` when it
/// is set and valid, else `level` (from the config or `--log-level`).
pub fn init_tracing(level: &str, format: LogFormat) {
    let (filter, bad_env) = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => match tracing_subscriber::EnvFilter::try_new(&v) {
            Ok(f) => (f, None),
            Err(e) => (
                tracing_subscriber::EnvFilter::new(level),
                Some(e.to_string()),
            ),
        },
        _ => (tracing_subscriber::EnvFilter::new(level), None),
    };
    // colour codes only for a person at a terminal: in journald, a file or
    // a pipe they are noise that breaks grep
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    // the per-request line is formatted on the request and written in
    // batches by its own thread, in the same format
    crate::access_log::install(format, ansi);
    let _ = match format {
        LogFormat::Json => b.json().try_init(),
        LogFormat::Pretty => b.try_init(),
    };
    if let Some(e) = bad_env {
        tracing::warn!(error = %e, level, "RUST_LOG is not a valid filter; using the configured level");
    }
}

/// Runs the server until a shutdown signal.
pub fn run(args: ServeArgs) -> Result<(), ServeError> {
    // out of the environment before any thread exists (the runtime below,
    // tracing): unsetenv must not race a getenv in another thread
    crate::keys::root::take_root_key_env();
    let overrides = args.overrides();
    let cfg = config::load(args.config.as_deref(), &overrides)?;
    // the provider's SecretKey too, while there is still one thread
    if let Some(p) = &cfg.provider {
        crate::keys::remote::take_secret_env(p);
    }
    init_tracing(&cfg.log_level, cfg.log_format);
    // no core dumps (they would hold keys), memory locked where allowed
    for warning in crate::hardening::harden_process() {
        tracing::warn!("{warning}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    rt.block_on(async move {
        // handlers first: a SIGHUP during start-up must not kill the process
        let mut signals = Signals::install().map_err(ServeError::Runtime)?;
        let app = crate::app::start(cfg).await?;
        loop {
            match signals.next().await {
                Signal::Reload => {
                    // the outcome (and every problem) is logged by the reloader
                    let _ = app.reload_policies("SIGHUP").await;
                }
                Signal::Stop(name) => {
                    tracing::info!(
                        signal = name,
                        drain_ms = app.config.drain_timeout.as_millis() as u64,
                        "shutting down: draining in-flight requests"
                    );
                    break;
                }
            }
        }
        app.shutdown().await;
        crate::access_log::flush();
        tracing::info!("stopped");
        Ok(())
    })
}

/// What a signal asks for.
enum Signal {
    /// SIGHUP: reload the policies.
    Reload,
    /// SIGTERM or SIGINT: drain and exit.
    Stop(&'static str),
}

/// The signal streams `serve` listens to.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Stop("SIGTERM"),
            _ = self.int.recv() => Signal::Stop("SIGINT"),
            _ = self.hup.recv() => Signal::Reload,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn config_of(args: &[&str]) -> Result<config::Config, config::ConfigError> {
        let cmd = Cmd::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))
            .expect("flags parse");
        config::load(None, &cmd.serve.overrides())
    }

    #[test]
    fn tls_flags_reach_the_config() {
        let c = config_of(&[
            "--upstream=https://api.internal:8443",
            "--tls-cert=/etc/sg/server.pem",
            "--tls-key=/etc/sg/server-key.pem",
            "--tls-client-ca=/etc/sg/clients.pem",
            "--kms-listen=127.0.0.1:9000",
            "--kms-tls-cert=/etc/sg/kms.pem",
            "--kms-tls-key=/etc/sg/kms-key.pem",
            "--kms-tls-client-ca=/etc/sg/kms-clients.pem",
            "--upstream-ca=/etc/sg/upstream-ca.pem",
            "--upstream-server-name=api.example",
        ])
        .unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.cert_file, PathBuf::from("/etc/sg/server.pem"));
        assert_eq!(tls.key_file, PathBuf::from("/etc/sg/server-key.pem"));
        assert_eq!(
            tls.client_ca_file,
            Some(PathBuf::from("/etc/sg/clients.pem"))
        );
        let kms = c.kms_tls.unwrap();
        assert_eq!(kms.cert_file, PathBuf::from("/etc/sg/kms.pem"));
        assert_eq!(kms.key_file, PathBuf::from("/etc/sg/kms-key.pem"));
        assert_eq!(
            kms.client_ca_file,
            Some(PathBuf::from("/etc/sg/kms-clients.pem"))
        );
        assert_eq!(
            c.upstream_tls.ca_file,
            Some(PathBuf::from("/etc/sg/upstream-ca.pem"))
        );
        assert_eq!(c.upstream_tls.server_name.as_deref(), Some("api.example"));

        let plain = config_of(&["--upstream=http://127.0.0.1:3000"]).unwrap();
        assert!(plain.tls.is_none() && plain.kms_tls.is_none());
        assert_eq!(plain.upstream_tls, config::UpstreamTls::default());
    }

    #[test]
    fn create_policy_keys_flag_takes_an_optional_value() {
        use config::PolicyKeyCreation::*;
        for (args, want) in [
            (&["--upstream=http://x:1"][..], EmptyStoreOnly),
            (
                &["--upstream=http://x:1", "--create-policy-keys"][..],
                Always,
            ),
            (
                &["--upstream=http://x:1", "--create-policy-keys=false"][..],
                Never,
            ),
        ] {
            assert_eq!(
                config_of(args).unwrap().create_policy_keys,
                want,
                "{args:?}"
            );
        }
    }

    #[test]
    fn a_certificate_flag_without_its_key_names_the_missing_flag() {
        let e = config_of(&["--upstream=http://x:1", "--tls-cert=c.pem"]).unwrap_err();
        assert!(e.to_string().contains("--tls-key"), "{e}");
        let e = config_of(&[
            "--upstream=http://x:1",
            "--kms-listen=127.0.0.1:9000",
            "--kms-tls-key=k.pem",
        ])
        .unwrap_err();
        assert!(e.to_string().contains("--kms-tls-cert"), "{e}");
    }
}
