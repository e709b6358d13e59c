//! `sealgate credentials …`: API credentials for the KMS faces (id +
//! secret; the secret is shown once, at creation, and stored sealed under the
//! root key).

use std::io::Write;

use super::keys::{from_value, print_json, stdout_err, CliError, StoreArgs, Target};
use crate::keys::admin::AdminRequest;
use crate::keys::CredentialInfo;

/// `sealgate credentials` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum CredentialsCommand {
    /// Create a credential; prints its id and secret (shown only now).
    Create {
        /// Store and output options.
        #[command(flatten)]
        store: StoreArgs,
        /// Limit the credential to this key (KeyId or alias; repeatable).
        /// Without any, it may use every key.
        #[arg(long = "allow-key", value_name = "KEY")]
        allow_keys: Vec<String>,
    },
    /// List credentials (no secrets).
    List {
        /// Store and output options.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a credential for good.
    Revoke {
        /// Store and output options.
        #[command(flatten)]
        store: StoreArgs,
        /// Credential id (AKID…).
        id: String,
    },
}

/// Runs one `credentials` subcommand, printing to stdout.
pub fn run(cmd: CredentialsCommand) -> Result<(), CliError> {
    run_to(cmd, &mut std::io::stdout().lock())
}

/// Runs one `credentials` subcommand, printing to `out`.
pub fn run_to(cmd: CredentialsCommand, out: &mut dyn Write) -> Result<(), CliError> {
    match cmd {
        CredentialsCommand::Create { store, allow_keys } => {
            let allowed_keys = (!allow_keys.is_empty()).then_some(allow_keys);
            let v = Target::open(&store)?.call(AdminRequest::CreateCredential { allowed_keys })?;
            if store.json {
                return print_json(out, &v);
            }
            let field = |k: &str| v.get(k).and_then(|s| s.as_str()).unwrap_or_default();
            writeln!(
                out,
                "Id:     {}\nSecret: {}\nThe secret is shown only now; store it safely.",
                field("Id"),
                field("Secret")
            )
            .map_err(stdout_err)
        }
        CredentialsCommand::List { store } => {
            let v = Target::open(&store)?.call(AdminRequest::ListCredentials)?;
            if store.json {
                return print_json(out, &v);
            }
            let list: Vec<CredentialInfo> = from_value(v)?;
            let w = |out: &mut dyn Write| -> std::io::Result<()> {
                writeln!(
                    out,
                    "{:<36}  {:<10}  {:<8}  KEYS",
                    "ID", "CREATED", "REVOKED"
                )?;
                for c in &list {
                    let keys = c.allowed_keys.as_ref().map_or_else(
                        || "all".to_string(),
                        |ks| {
                            ks.iter()
                                .map(|k| k.to_string())
                                .collect::<Vec<_>>()
                                .join(",")
                        },
                    );
                    writeln!(
                        out,
                        "{:<36}  {:<10}  {:<8}  {}",
                        c.id,
                        c.created_at,
                        if c.revoked { "yes" } else { "no" },
                        keys
                    )?;
                }
                Ok(())
            };
            w(out).map_err(stdout_err)
        }
        CredentialsCommand::Revoke { store, id } => {
            let v = Target::open(&store)?.call(AdminRequest::RevokeCredential { id })?;
            if store.json {
                return print_json(out, &v);
            }
            let c: CredentialInfo = from_value(v)?;
            writeln!(out, "Revoked credential {}", c.id).map_err(stdout_err)
        }
    }
}
