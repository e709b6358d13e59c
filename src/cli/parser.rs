//! The top-level `sealgate` parser. It lives in the library (not in
//! `main.rs`) so tests can check command lines against the real definition
//! (`tests/doc_commands.rs`) and so completions and the man page are
//! generated from it.

/// The `sealgate` command line.
#[derive(Debug, clap::Parser)]
#[command(
    name = "sealgate",
    version,
    about = "Transparent envelope-encryption proxy and KMS"
)]
pub struct Cli {
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// `sealgate` subcommands; `main.rs` dispatches each to its module's `run`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the proxy (and, with --kms-listen, the KMS faces).
    Serve(super::serve::ServeArgs),
    /// Manage CMKs in the key store.
    #[command(subcommand)]
    Keys(super::keys::KeysCommand),
    /// Manage API credentials for the KMS faces.
    #[command(subcommand)]
    Credentials(super::credentials::CredentialsCommand),
    /// Check policy files.
    #[command(subcommand)]
    Policy(super::policy::PolicyCommand),
    /// Check the configuration, policies and keys without starting (like `nginx -t`).
    #[command(subcommand)]
    Config(super::config::ConfigCommand),
    /// Re-seal every envelope of a JSON document (stdin → stdout) under the primary key version.
    Rewrap(super::rewrap::RewrapArgs),
    /// Write a throwaway CA, server and client certificates (PEM) for trying TLS and mTLS.
    DevCert(super::devcert::DevCertArgs),
    /// Check an audit log.
    #[command(subcommand)]
    Audit(super::audit::AuditCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(super::generate::CompletionsArgs),
    /// Print the roff man page of sealgate or of a subcommand, or write them all.
    Man(super::generate::ManArgs),
}
