//! The admin socket: how `sealgate keys …` reaches a key store that a
//! running server holds. A unix socket at `<data-dir>/admin.sock` (mode
//! 0600) carrying newline-delimited JSON: one [`AdminRequest`] per line in,
//! one [`AdminResponse`] per line out. The server applies the request to its
//! own `KeyStore`, so a change is seen by the server at once.
//!
//! [`handle`] is the one dispatcher: the socket server and the CLI's
//! in-process path both call it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

use super::model::{Backup, KeyCommand};
use super::provider::KeyError;
use super::store::KeyStore;

/// Largest request line accepted (a backup import can be large).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// One request over the admin socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "Op")]
pub enum AdminRequest {
    /// Apply a key command; answers the key's metadata.
    Execute {
        /// The command.
        command: KeyCommand,
    },
    /// Describe a key; answers its metadata.
    Describe {
        /// KeyId or alias.
        key: String,
    },
    /// A page of keys; answers a `KeyList`.
    List {
        /// Keys to skip.
        offset: usize,
        /// Most keys to return.
        limit: usize,
    },
    /// Answers a `Backup`.
    Export,
    /// Restores a backup; answers an `ImportReport`.
    Import {
        /// The backup.
        backup: Box<Backup>,
    },
    /// Creates a credential; answers `{"Id", "Secret"}`.
    CreateCredential {
        /// Keys it may use (KeyIds or aliases); `None` = all.
        allowed_keys: Option<Vec<String>>,
    },
    /// Answers every credential (no secrets).
    ListCredentials,
    /// Revokes a credential; answers its info.
    RevokeCredential {
        /// Credential id.
        id: String,
    },
}

/// The error half of a response: a stable code and a message safe to show.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AdminError {
    /// The `KeyError` variant name, e.g. `CmkNotFound`.
    pub code: String,
    /// Human-readable message.
    pub message: String,
}

/// One response line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub enum AdminResponse {
    /// Success, with the request's result.
    Ok(Value),
    /// Failure.
    Error(AdminError),
}

/// Stable code of a `KeyError`, as carried over the socket.
pub fn error_code(e: &KeyError) -> &'static str {
    match e {
        KeyError::CmkNotFound => "CmkNotFound",
        KeyError::CmkDisabled => "CmkDisabled",
        KeyError::CmkPendingDelete => "CmkPendingDelete",
        KeyError::CmkPendingImport => "CmkPendingImport",
        KeyError::UsageMismatch => "UsageMismatch",
        KeyError::DoesNotOpen => "DoesNotOpen",
        KeyError::VersionNotFound => "VersionNotFound",
        KeyError::VersionRetired => "VersionRetired",
        KeyError::InvalidAlias => "InvalidAlias",
        KeyError::AliasAlreadyExists => "AliasAlreadyExists",
        KeyError::InvalidParameter(_) => "InvalidParameter",
        KeyError::LimitExceeded => "LimitExceeded",
        KeyError::InvalidState(_) => "InvalidState",
        KeyError::Store(_) => "Store",
        KeyError::UnsupportedKeyUsage => "UnsupportedKeyUsage",
        KeyError::DuplicateTagKey => "DuplicateTagKey",
        KeyError::ImportConflict(_) => "ImportConflict",
    }
}

impl From<&KeyError> for AdminError {
    fn from(e: &KeyError) -> Self {
        AdminError {
            code: error_code(e).into(),
            message: e.to_string(),
        }
    }
}

impl From<AdminError> for KeyError {
    fn from(e: AdminError) -> Self {
        // Variants with a payload carry the message's detail part.
        let detail = |prefix: &str| {
            e.message
                .strip_prefix(prefix)
                .unwrap_or(&e.message)
                .to_string()
        };
        match e.code.as_str() {
            "CmkNotFound" => KeyError::CmkNotFound,
            "CmkDisabled" => KeyError::CmkDisabled,
            "CmkPendingDelete" => KeyError::CmkPendingDelete,
            "CmkPendingImport" => KeyError::CmkPendingImport,
            "UsageMismatch" => KeyError::UsageMismatch,
            "DoesNotOpen" => KeyError::DoesNotOpen,
            "VersionNotFound" => KeyError::VersionNotFound,
            "VersionRetired" => KeyError::VersionRetired,
            "InvalidAlias" => KeyError::InvalidAlias,
            "AliasAlreadyExists" => KeyError::AliasAlreadyExists,
            "InvalidParameter" => KeyError::InvalidParameter(detail("invalid parameter: ")),
            "LimitExceeded" => KeyError::LimitExceeded,
            "InvalidState" => KeyError::InvalidState(detail("invalid key state: ")),
            "UnsupportedKeyUsage" => KeyError::UnsupportedKeyUsage,
            "DuplicateTagKey" => KeyError::DuplicateTagKey,
            "ImportConflict" => KeyError::ImportConflict(detail("import conflict: ")),
            _ => KeyError::Store(detail("key store failure: ")),
        }
    }
}

fn to_value<T: Serialize>(v: &T) -> Result<Value, KeyError> {
    serde_json::to_value(v).map_err(|e| KeyError::Store(e.to_string()))
}

/// Applies one request to the store (blocking: it may commit to disk).
pub fn handle(store: &KeyStore, req: AdminRequest) -> Result<Value, KeyError> {
    match req {
        AdminRequest::Execute { command } => to_value(&store.execute(command)?),
        AdminRequest::Describe { key } => to_value(&store.describe(&key)?),
        AdminRequest::List { offset, limit } => to_value(&store.list(offset, limit)),
        AdminRequest::Export => to_value(&store.export()),
        AdminRequest::Import { backup } => to_value(&store.import(*backup)?),
        AdminRequest::CreateCredential { allowed_keys } => {
            let c = store.create_credential(allowed_keys)?;
            let secret = String::from_utf8_lossy(c.secret.expose()).into_owned();
            Ok(serde_json::json!({ "Id": c.id, "Secret": secret }))
        }
        AdminRequest::ListCredentials => to_value(&store.list_credentials()),
        AdminRequest::RevokeCredential { id } => to_value(&store.revoke_credential(&id)?),
    }
}

/// Binds the admin socket (mode 0600), replacing a stale socket file left
/// by a dead process. Call inside a tokio runtime.
pub fn bind(socket_path: &Path) -> std::io::Result<UnixListener> {
    match std::fs::symlink_metadata(socket_path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(socket_path)?,
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", socket_path.display()),
            ))
        }
        Err(_) => {}
    }
    let listener = UnixListener::bind(socket_path)?;
    std::fs::set_permissions(socket_path, std::fs::Permissions::from_mode(0o600))?;
    tracing::info!(socket = %socket_path.display(), "admin socket listening");
    Ok(listener)
}

/// Told of every request the socket applied, with its result (the server
/// audits admin commands through it).
pub type AdminObserver = Arc<dyn Fn(&AdminRequest, &Result<Value, KeyError>) + Send + Sync>;

/// Serves requests on a bound listener until the task is dropped.
pub async fn serve_listener(store: Arc<KeyStore>, listener: UnixListener) -> std::io::Result<()> {
    serve_observed(store, listener, None).await
}

/// [`serve_listener`], telling `observer` of each request and its result.
pub async fn serve_observed(
    store: Arc<KeyStore>,
    listener: UnixListener,
    observer: Option<AdminObserver>,
) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let store = store.clone();
        let observer = observer.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(store, stream, observer).await {
                tracing::debug!(error = %e, "admin connection ended");
            }
        });
    }
}

/// Binds `socket_path` and serves requests for `store` until the task is
/// dropped (the server spawns this).
pub async fn serve(store: Arc<KeyStore>, socket_path: impl AsRef<Path>) -> std::io::Result<()> {
    let listener = bind(socket_path.as_ref())?;
    serve_listener(store, listener).await
}

async fn connection(
    store: Arc<KeyStore>,
    stream: tokio::net::UnixStream,
    observer: Option<AdminObserver>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = tokio::io::BufReader::new(read);
    loop {
        let mut line = Vec::new();
        let n = (&mut reader)
            .take(MAX_REQUEST_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        if line.len() > MAX_REQUEST_BYTES {
            let resp = AdminResponse::Error(
                (&KeyError::InvalidParameter("request too large".into())).into(),
            );
            write_response(&mut write, &resp).await?;
            return Ok(());
        }
        let resp = match serde_json::from_slice::<AdminRequest>(&line) {
            Err(e) => AdminResponse::Error(
                (&KeyError::InvalidParameter(format!("bad admin request: {e}"))).into(),
            ),
            Ok(req) => {
                let store = store.clone();
                let observer = observer.clone();
                let applied = tokio::task::spawn_blocking(move || {
                    let copy = observer.as_ref().map(|_| req.clone());
                    let r = handle(&store, req);
                    if let (Some(o), Some(req)) = (observer, copy) {
                        o(&req, &r);
                    }
                    r
                });
                match applied.await {
                    Ok(Ok(v)) => AdminResponse::Ok(v),
                    Ok(Err(e)) => AdminResponse::Error((&e).into()),
                    Err(_) => AdminResponse::Error(
                        (&KeyError::Store("admin request task failed".into())).into(),
                    ),
                }
            }
        };
        write_response(&mut write, &resp).await?;
    }
}

async fn write_response(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    resp: &AdminResponse,
) -> std::io::Result<()> {
    let mut out = serde_json::to_vec(resp).map_err(std::io::Error::other)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    write.flush().await
}

/// A blocking client of the admin socket (the CLI uses it).
#[derive(Debug, Clone)]
pub struct AdminClient {
    path: PathBuf,
}

impl AdminClient {
    /// A client for the socket at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Sends one request and waits for its answer.
    pub fn request(&self, req: &AdminRequest) -> Result<Value, KeyError> {
        let unreachable = |e: std::io::Error| {
            KeyError::Store(format!("admin socket {}: {e}", self.path.display()))
        };
        let mut stream =
            std::os::unix::net::UnixStream::connect(&self.path).map_err(unreachable)?;
        let mut line = serde_json::to_vec(req).map_err(|e| KeyError::Store(e.to_string()))?;
        line.push(b'\n');
        stream.write_all(&line).map_err(unreachable)?;
        stream.flush().map_err(unreachable)?;
        let mut reader = BufReader::new(stream);
        let mut resp = String::new();
        reader.read_line(&mut resp).map_err(unreachable)?;
        if resp.is_empty() {
            return Err(KeyError::Store(format!(
                "admin socket {} closed without an answer",
                self.path.display()
            )));
        }
        match serde_json::from_str::<AdminResponse>(&resp)
            .map_err(|e| KeyError::Store(format!("bad admin response: {e}")))?
        {
            AdminResponse::Ok(v) => Ok(v),
            AdminResponse::Error(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_code_survives_the_socket() {
        let errors = [
            KeyError::CmkNotFound,
            KeyError::CmkDisabled,
            KeyError::CmkPendingDelete,
            KeyError::CmkPendingImport,
            KeyError::UsageMismatch,
            KeyError::DoesNotOpen,
            KeyError::VersionNotFound,
            KeyError::InvalidAlias,
            KeyError::AliasAlreadyExists,
            KeyError::InvalidParameter("Description".into()),
            KeyError::LimitExceeded,
            KeyError::InvalidState("x y".into()),
            KeyError::Store("disk".into()),
            KeyError::UnsupportedKeyUsage,
            KeyError::DuplicateTagKey,
            KeyError::ImportConflict("key k".into()),
        ];
        for e in errors {
            let wire = serde_json::to_string(&AdminResponse::Error((&e).into())).unwrap();
            let back: AdminResponse = serde_json::from_str(&wire).unwrap();
            let AdminResponse::Error(ae) = back else {
                panic!("not an error")
            };
            assert_eq!(KeyError::from(ae), e);
        }
    }

    #[test]
    fn requests_round_trip_as_json() {
        let req = AdminRequest::Execute {
            command: KeyCommand::ScheduleDeletion {
                key: "alias-1".into(),
                pending_window_days: 7,
            },
        };
        let wire = serde_json::to_string(&req).unwrap();
        assert!(wire.contains("\"Op\":\"Execute\""), "{wire}");
        assert_eq!(serde_json::from_str::<AdminRequest>(&wire).unwrap(), req);
    }
}
