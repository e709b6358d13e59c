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
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// KMS listener address (Tencent, Alibaba and Infisical faces).
    #[arg(long)]
    pub kms_listen: Option<String>,
    /// Root key file (default <data-dir>/root.key).
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
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
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
    let overrides = Overrides {
        listen: args.listen,
        upstream: args.upstream,
        policies: args.policies,
        data_dir: args.data_dir,
        kms_listen: args.kms_listen,
        root_key_file: args.root_key_file,
        log_format: args.log_format,
        log_level: args.log_level,
        admin_listen: args.admin_listen,
        audit_file: args.audit_file,
        shadow: args.shadow.then_some(true),
        shadow_capture: args.shadow_capture,
    };
    let cfg = config::load(args.config.as_deref(), &overrides)?;
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
