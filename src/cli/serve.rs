//! `sealgate serve`: load the config, set up logging, run until SIGTERM or
//! SIGINT, then drain.

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

/// Sets up the global tracing subscriber (`RUST_LOG` wins over the config).
pub fn init_tracing(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => b.json().try_init(),
        LogFormat::Pretty => b.try_init(),
    };
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
    };
    let cfg = config::load(args.config.as_deref(), &overrides)?;
    init_tracing(&cfg.log_level, cfg.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    rt.block_on(async move {
        let app = crate::app::start(cfg).await?;
        wait_for_signal().await;
        tracing::info!("shutting down: draining in-flight requests");
        app.shutdown().await;
        tracing::info!("stopped");
        Ok(())
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
