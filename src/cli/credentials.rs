//! `sealgate credentials …`: API credentials for the KMS faces (id +
//! secret; the secret is shown once, at creation, and stored sealed under the
//! root key), and the client public keys of Alibaba's KMS instance API
//! (`add-client-key`, `list-client-keys`, `remove-client-key`).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::keys::{
    from_value, print_json, rfc3339, stdout_err, write_table, CliError, StoreArgs, Target,
};
use crate::keys::admin::AdminRequest;
use crate::keys::CredentialInfo;
use crate::kms::alibaba::client_keys::{self, ClientKeyInfo};

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
    /// Register the RSA public key of an Alibaba KMS instance API client key
    /// (`alibabacloud-dkms-gcs`); the id is the client key file's `KeyId`.
    /// Works while `sealgate serve` runs (it re-reads the registry).
    AddClientKey {
        /// Store and output options.
        #[command(flatten)]
        store: StoreArgs,
        /// Client key id (the `KeyId` of the SDK's client key file).
        #[arg(long)]
        id: String,
        /// The public key: PEM or DER, SubjectPublicKeyInfo or PKCS#1
        /// (e.g. `openssl pkey -in client.key -pubout`).
        #[arg(long = "public-key", value_name = "FILE")]
        public_key: PathBuf,
    },
    /// List the registered instance API client keys.
    ListClientKeys {
        /// Store and output options.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove an instance API client key.
    RemoveClientKey {
        /// Store and output options.
        #[command(flatten)]
        store: StoreArgs,
        /// Client key id.
        id: String,
    },
}

/// The data directory, which must already hold a key store (a typo should
/// not register keys nobody reads).
fn store_dir(store: &StoreArgs) -> Result<&Path, CliError> {
    // with a PostgreSQL store the registry stays a per-node file in the
    // data directory, which must exist
    let per_node = store.store_url.is_some() && store.data_dir.is_dir();
    if per_node || store.data_dir.join(crate::keys::store::DB_FILE).exists() {
        Ok(&store.data_dir)
    } else {
        Err(CliError::Usage(format!(
            "no key store in {}",
            store.data_dir.display()
        )))
    }
}

/// A credential as `--json` prints it. Every `credentials` JSON output uses
/// lower-case snake_case names (`{"id": …, "secret": …}` from `create`), the
/// shape the documentation shows and scripts read; the admin protocol's
/// PascalCase (`Id`, `Secret`) stays inside the socket.
#[derive(Debug, Serialize)]
struct CredentialJson {
    id: String,
    created_at: u64,
    revoked: bool,
    allowed_keys: Option<Vec<String>>,
}

impl From<CredentialInfo> for CredentialJson {
    fn from(c: CredentialInfo) -> Self {
        Self {
            id: c.id,
            created_at: c.created_at,
            revoked: c.revoked,
            allowed_keys: c
                .allowed_keys
                .map(|ks| ks.iter().map(|k| k.to_string()).collect()),
        }
    }
}

/// A client key as `--json` prints it (same casing rule as [`CredentialJson`]).
#[derive(Debug, Serialize)]
struct ClientKeyJson {
    id: String,
    created_at: u64,
}

impl From<&ClientKeyInfo> for ClientKeyJson {
    fn from(k: &ClientKeyInfo) -> Self {
        Self {
            id: k.id.clone(),
            created_at: k.created_at,
        }
    }
}

fn print_serialized(out: &mut dyn Write, v: &impl Serialize) -> Result<(), CliError> {
    let v = serde_json::to_value(v)
        .map_err(|e| CliError::Usage(format!("cannot render the answer as JSON: {e}")))?;
    print_json(out, &v)
}

fn client_key_err(e: client_keys::ClientKeyError) -> CliError {
    CliError::Usage(e.to_string())
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
            let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default();
            if store.json {
                let pair = serde_json::json!({ "id": field("Id"), "secret": field("Secret") });
                return print_json(out, &pair);
            }
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
            let list: Vec<CredentialInfo> = from_value(v)?;
            if store.json {
                let list: Vec<CredentialJson> = list.into_iter().map(Into::into).collect();
                return print_serialized(out, &list);
            }
            let rows = list
                .iter()
                .map(|c| {
                    let keys = c.allowed_keys.as_ref().map_or_else(
                        || "all".to_string(),
                        |ks| {
                            ks.iter()
                                .map(|k| k.to_string())
                                .collect::<Vec<_>>()
                                .join(",")
                        },
                    );
                    vec![
                        c.id.clone(),
                        rfc3339(c.created_at),
                        if c.revoked { "yes" } else { "no" }.into(),
                        keys,
                    ]
                })
                .collect::<Vec<_>>();
            write_table(out, &["ID", "CREATED", "REVOKED", "KEYS"], &rows).map_err(stdout_err)
        }
        CredentialsCommand::Revoke { store, id } => {
            let v = Target::open(&store)?.call(AdminRequest::RevokeCredential { id })?;
            let c: CredentialInfo = from_value(v)?;
            if store.json {
                return print_serialized(out, &CredentialJson::from(c));
            }
            writeln!(out, "Revoked credential {}", c.id).map_err(stdout_err)
        }
        CredentialsCommand::AddClientKey {
            store,
            id,
            public_key,
        } => {
            let dir = store_dir(&store)?;
            let pem = std::fs::read(&public_key).map_err(|source| CliError::Io {
                path: public_key.clone(),
                source,
            })?;
            let info = client_keys::add_client_key(dir, &id, &pem, crate::clock::unix_now())
                .map_err(client_key_err)?;
            if store.json {
                return print_serialized(out, &ClientKeyJson::from(&info));
            }
            writeln!(out, "Registered client key {}", info.id).map_err(stdout_err)
        }
        CredentialsCommand::ListClientKeys { store } => {
            let list: Vec<ClientKeyInfo> =
                client_keys::list_client_keys(store_dir(&store)?).map_err(client_key_err)?;
            if store.json {
                let list: Vec<ClientKeyJson> = list.iter().map(Into::into).collect();
                return print_serialized(out, &list);
            }
            let rows = list
                .iter()
                .map(|k| vec![k.id.clone(), rfc3339(k.created_at)])
                .collect::<Vec<_>>();
            write_table(out, &["ID", "CREATED"], &rows).map_err(stdout_err)
        }
        CredentialsCommand::RemoveClientKey { store, id } => {
            client_keys::remove_client_key(store_dir(&store)?, &id).map_err(client_key_err)?;
            writeln!(out, "Removed client key {id}").map_err(stdout_err)
        }
    }
}
