//! The `sealgate` binary: parse the command line and call into the library.

use clap::Parser;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "sealgate",
    version,
    about = "Transparent envelope-encryption proxy and KMS"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Run the proxy (and, with --kms-listen, the KMS faces).
    Serve(sealgate::cli::serve::ServeArgs),
    /// Manage CMKs in the key store.
    #[command(subcommand)]
    Keys(sealgate::cli::keys::KeysCommand),
    /// Manage API credentials for the KMS faces.
    #[command(subcommand)]
    Credentials(sealgate::cli::credentials::CredentialsCommand),
    /// Check policy files.
    #[command(subcommand)]
    Policy(sealgate::cli::policy::PolicyCommand),
    /// Check the configuration, policies and keys without starting (like `nginx -t`).
    #[command(subcommand)]
    Config(sealgate::cli::config::ConfigCommand),
    /// Re-seal every envelope of a JSON document (stdin → stdout) under the primary key version.
    Rewrap(sealgate::cli::rewrap::RewrapArgs),
    /// Write a throwaway CA, server and client certificates (PEM) for trying TLS and mTLS.
    DevCert(sealgate::cli::devcert::DevCertArgs),
    /// Check an audit log.
    #[command(subcommand)]
    Audit(sealgate::cli::audit::AuditCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        // admin commands: warnings (e.g. where the root key was created) to stderr
        sealgate::cli::serve::init_tracing("warn", sealgate::config::LogFormat::Pretty);
    }
    let result = match cli.command {
        Command::Serve(args) => sealgate::cli::serve::run(args).map_err(|e| e.to_string()),
        Command::Keys(cmd) => sealgate::cli::keys::run(cmd).map_err(|e| e.to_string()),
        Command::Credentials(cmd) => {
            sealgate::cli::credentials::run(cmd).map_err(|e| e.to_string())
        }
        Command::Policy(cmd) => sealgate::cli::policy::run(cmd).map_err(|e| e.to_string()),
        Command::Config(cmd) => sealgate::cli::config::run(cmd).map_err(|e| e.to_string()),
        Command::Rewrap(args) => sealgate::cli::rewrap::run(args),
        Command::DevCert(args) => sealgate::cli::devcert::run(args).map_err(|e| e.to_string()),
        Command::Audit(cmd) => sealgate::cli::audit::run(cmd).map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
