//! The admin socket: how `sealgate keys …` reaches a key store that a
//! running server holds. A unix socket at `<data-dir>/admin.sock` (mode
//! 0600) carrying newline-delimited JSON: one [`AdminRequest`] per line in,
//! one [`AdminResponse`] per line out. The server applies the request to its
//! own `KeyStore`, so a change is seen by the server at once.
//!
//! [`handle`] is the one dispatcher: the socket server and the CLI's
//! in-process path both call it. [`AdminRequest::Rewrap`] is the exception:
//! it needs a data-key cache in front of the store, which only the socket
//! server has (one per connection, so a `sealgate rewrap --lines` stream
//! reuses its keys); `sealgate rewrap` without a server opens the store
//! itself. Only envelopes travel over the socket: the plaintext stays in
//! the server process.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

use super::cache::{CacheConfig, DataKeyCache};
use super::model::{Backup, KeyCommand};
use super::provider::KeyError;
use super::store::KeyStore;
use crate::rewrap::{rewrap_value, RewrapCounts, RewrapError};

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
    /// Re-seals every envelope in each document under the primary version
    /// of its key (as `sealgate rewrap`, [`crate::rewrap`]); answers
    /// `{"Documents": [...], "Rewrapped": n, "Current": n}`, the documents
    /// in order. All or nothing: the first document that fails fails the
    /// request, with the message the direct path gives. Socket only.
    Rewrap {
        /// The route context the values were sealed under.
        context: String,
        /// Re-seal under this key's primary instead of each envelope's own key.
        key: Option<String>,
        /// The documents, as read (envelopes, never plaintext of sealed fields).
        documents: Vec<Value>,
    },
}

impl AdminRequest {
    /// A copy for observers: a rewrap's documents are left out (they can
    /// be large, and an observer only needs the operation and the key).
    fn summary(&self) -> AdminRequest {
        match self {
            AdminRequest::Rewrap { context, key, .. } => AdminRequest::Rewrap {
                context: context.clone(),
                key: key.clone(),
                documents: Vec::new(),
            },
            other => other.clone(),
        }
    }
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
        KeyError::Unavailable(_) => "Unavailable",
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
/// [`AdminRequest::Rewrap`] is refused here (`InvalidParameter`): it needs
/// the socket server's data-key cache ([`handle_rewrap`]).
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
        AdminRequest::Rewrap { .. } => Err(KeyError::InvalidParameter(
            "rewrap is answered by a running server's admin socket only".into(),
        )),
    }
}

/// Rewraps `documents` through `cache` (in front of the server's store):
/// the answer of [`AdminRequest::Rewrap`].
pub fn handle_rewrap(
    cache: &DataKeyCache,
    context: &str,
    key: Option<&str>,
    mut documents: Vec<Value>,
) -> Result<Value, RewrapError> {
    let mut counts = RewrapCounts::default();
    for doc in &mut documents {
        rewrap_value(cache, key, context, doc, &mut counts)?;
    }
    Ok(serde_json::json!({
        "Documents": documents,
        "Rewrapped": counts.rewrapped,
        "Current": counts.current,
    }))
}

/// The key error a rewrap failure is counted (and audited) as.
fn rewrap_key_error(e: &RewrapError) -> KeyError {
    match e {
        RewrapError::DoesNotOpen { .. } => KeyError::DoesNotOpen,
        RewrapError::ProviderForm { .. } => KeyError::UnsupportedKeyUsage,
        RewrapError::Key { source, .. } => source.clone(),
    }
}

/// What one socket request came to: the result observers see, and the
/// message to answer instead of the error's own (a rewrap answers with the
/// direct path's message, which names the failing path).
struct Applied {
    result: Result<Value, KeyError>,
    message: Option<String>,
}

/// Applies one socket request; `cache` is the connection's, made on first use.
fn apply(store: &Arc<KeyStore>, cache: &OnceLock<DataKeyCache>, req: AdminRequest) -> Applied {
    match req {
        AdminRequest::Rewrap {
            context,
            key,
            documents,
        } => {
            let cache = cache.get_or_init(|| {
                DataKeyCache::with_system_clock(store.clone(), CacheConfig::default())
            });
            match handle_rewrap(cache, &context, key.as_deref(), documents) {
                Ok(v) => Applied {
                    result: Ok(v),
                    message: None,
                },
                Err(e) => Applied {
                    result: Err(rewrap_key_error(&e)),
                    message: Some(e.to_string()),
                },
            }
        }
        other => Applied {
            result: handle(store, other),
            message: None,
        },
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
    // bind(2) creates the socket file with 0777 & !umask: under the usual
    // umask 022 it would be connectable by everyone until the chmod below
    let listener = bind_owner_only(socket_path)?;
    // still chmod: the umask guard is a no-op off Linux
    std::fs::set_permissions(socket_path, std::fs::Permissions::from_mode(0o600))?;
    tracing::info!(socket = %socket_path.display(), "admin socket listening");
    Ok(listener)
}

/// Binds under umask 077, so the socket file is owner-only from its creation.
fn bind_owner_only(socket_path: &Path) -> std::io::Result<UnixListener> {
    let _umask = RestrictiveUmask::set();
    UnixListener::bind(socket_path)
}

/// Sets the process umask to 077 and restores the previous one on drop.
///
/// The umask is process-wide: a file another thread creates meanwhile is
/// created owner-only too, which is stricter, never looser.
struct RestrictiveUmask {
    #[cfg(target_os = "linux")]
    previous: rustix::fs::Mode,
}

impl RestrictiveUmask {
    fn set() -> RestrictiveUmask {
        RestrictiveUmask {
            #[cfg(target_os = "linux")]
            previous: rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077)),
        }
    }
}

impl Drop for RestrictiveUmask {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        rustix::process::umask(self.previous);
    }
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
    // keys a rewrap on this connection unwrapped or derived, for its next requests
    let cache = Arc::new(OnceLock::new());
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
                let cache = cache.clone();
                let applied = tokio::task::spawn_blocking(move || {
                    let copy = observer.as_ref().map(|_| req.summary());
                    let applied = apply(&store, &cache, req);
                    if let (Some(o), Some(req)) = (observer, copy) {
                        o(&req, &applied.result);
                    }
                    applied
                });
                match applied.await {
                    Ok(Applied { result: Ok(v), .. }) => AdminResponse::Ok(v),
                    Ok(Applied {
                        result: Err(e),
                        message,
                    }) => {
                        let mut err = AdminError::from(&e);
                        if let Some(m) = message {
                            err.message = m;
                        }
                        AdminResponse::Error(err)
                    }
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

    /// Opens one connection, for several requests in a row.
    pub fn connect(&self) -> Result<AdminConnection, KeyError> {
        let stream = std::os::unix::net::UnixStream::connect(&self.path)
            .map_err(|e| unreachable(&self.path, e))?;
        let write = stream.try_clone().map_err(|e| unreachable(&self.path, e))?;
        Ok(AdminConnection {
            path: self.path.clone(),
            reader: BufReader::new(stream),
            write,
        })
    }

    /// Sends one request (on a connection of its own) and waits for its answer.
    pub fn request(&self, req: &AdminRequest) -> Result<Value, KeyError> {
        match self.connect()?.send(req)? {
            AdminResponse::Ok(v) => Ok(v),
            AdminResponse::Error(e) => Err(e.into()),
        }
    }
}

fn unreachable(path: &Path, e: std::io::Error) -> KeyError {
    KeyError::Store(format!("admin socket {}: {e}", path.display()))
}

/// One open connection to the admin socket: requests are answered in turn.
#[derive(Debug)]
pub struct AdminConnection {
    path: PathBuf,
    reader: BufReader<std::os::unix::net::UnixStream>,
    write: std::os::unix::net::UnixStream,
}

impl AdminConnection {
    /// Sends one request and waits for its answer; `Err` only when the
    /// socket could not carry it (unreachable, closed, request larger than
    /// [`MAX_REQUEST_BYTES`], unreadable answer).
    pub fn send(&mut self, req: &AdminRequest) -> Result<AdminResponse, KeyError> {
        let mut line = serde_json::to_vec(req).map_err(|e| KeyError::Store(e.to_string()))?;
        line.push(b'\n');
        if line.len() > MAX_REQUEST_BYTES {
            return Err(KeyError::InvalidParameter(format!(
                "the request is {} bytes; the admin socket takes at most {MAX_REQUEST_BYTES}",
                line.len()
            )));
        }
        self.write
            .write_all(&line)
            .map_err(|e| unreachable(&self.path, e))?;
        self.write.flush().map_err(|e| unreachable(&self.path, e))?;
        let mut resp = String::new();
        self.reader
            .read_line(&mut resp)
            .map_err(|e| unreachable(&self.path, e))?;
        if resp.is_empty() {
            return Err(KeyError::Store(format!(
                "admin socket {} closed without an answer",
                self.path.display()
            )));
        }
        serde_json::from_str::<AdminResponse>(&resp)
            .map_err(|e| KeyError::Store(format!("bad admin response: {e}")))
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

    /// The socket file is 0600 when bind(2) creates it, not only after the
    /// chmod: under the common umask 022 it would be born 0755 otherwise.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_socket_is_born_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        let before = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
        let born = bind_owner_only(&path).map(|_l| std::fs::metadata(&path));
        let after = rustix::process::umask(before);
        let mode = born.unwrap().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "socket born with mode {mode:o}");
        assert_eq!(after.bits(), 0o022, "the guard restored the umask");
        std::fs::remove_file(&path).unwrap();
        let _l = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn rewrap_requests_round_trip_and_are_socket_only() {
        let req = AdminRequest::Rewrap {
            context: "people".into(),
            key: None,
            documents: vec![serde_json::json!({"a": "sg1.x"})],
        };
        let wire = serde_json::to_string(&req).unwrap();
        assert!(wire.contains("\"Op\":\"Rewrap\""), "{wire}");
        assert_eq!(serde_json::from_str::<AdminRequest>(&wire).unwrap(), req);
        let AdminRequest::Rewrap { documents, .. } = req.summary() else {
            panic!("not a rewrap")
        };
        assert!(documents.is_empty());
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(
            dir.path(),
            super::super::RootKeySource::Auto,
            super::super::StoreOptions::default(),
        )
        .unwrap();
        assert!(matches!(
            handle(&store, req),
            Err(KeyError::InvalidParameter(_))
        ));
    }

    /// Several rewraps on one connection, through the socket server: the
    /// answers carry the new version; a failure answers the direct path's
    /// message; the observer never sees the documents.
    #[tokio::test]
    async fn rewrap_over_the_socket() {
        use std::sync::Mutex;
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            KeyStore::open(
                dir.path().join("data"),
                super::super::RootKeySource::Auto,
                super::super::StoreOptions::default(),
            )
            .unwrap(),
        );
        store.create_alias_key("people", "").unwrap();
        let cache = DataKeyCache::with_system_clock(store.clone(), CacheConfig::default());
        let aad = |label: &str| format!("people\0{label}").into_bytes();
        let sk = cache.sealing_key("people", b"people", 8).unwrap();
        let notes =
            crate::envelope::seal(&sk, br#""secret""#, &aad("notes"), &mut rand::thread_rng())
                .unwrap();
        let dk = cache.deterministic_key("people", b"people").unwrap();
        let email =
            crate::envelope::seal_deterministic(&dk, br#""a@x.io""#, &aad("email")).unwrap();
        drop(cache);
        store.rotate("people").unwrap();

        let sock = dir.path().join("admin.sock");
        let listener = bind(&sock).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let observer: AdminObserver = Arc::new(move |req, r| {
            seen2.lock().unwrap().push((req.clone(), r.is_ok()));
        });
        let server = tokio::spawn(serve_observed(store.clone(), listener, Some(observer)));
        let doc = serde_json::json!({ "email": email, "n": 1, "notes": notes });
        let answers = tokio::task::spawn_blocking(move || {
            let mut conn = AdminClient::new(sock).connect().unwrap();
            let mut answers = Vec::new();
            for (context, docs) in [
                ("people", vec![doc.clone(), doc.clone()]),
                ("people", vec![doc.clone()]),
                ("other", vec![doc.clone()]),
            ] {
                answers.push(
                    conn.send(&AdminRequest::Rewrap {
                        context: context.into(),
                        key: None,
                        documents: docs,
                    })
                    .unwrap(),
                );
            }
            answers
        })
        .await
        .unwrap();
        server.abort();

        let AdminResponse::Ok(first) = &answers[0] else {
            panic!("{:?}", answers[0])
        };
        assert_eq!(
            (&first["Rewrapped"], &first["Current"]),
            (&4.into(), &0.into())
        );
        let out = first["Documents"].as_array().unwrap();
        assert_eq!(out.len(), 2);
        for d in out {
            assert_eq!(d["n"], 1);
            let n = crate::envelope::Envelope::parse(d["notes"].as_str().unwrap()).unwrap();
            assert_eq!(n.cmk().version, 2);
            let e = crate::envelope::DetEnvelope::parse(d["email"].as_str().unwrap()).unwrap();
            assert_eq!(e.cmk().version, 2);
            let cache = DataKeyCache::with_system_clock(store.clone(), CacheConfig::default());
            let c = cache.opening_key(&n.cmk(), n.wrapped()).unwrap();
            assert_eq!(n.open(&c, &aad("notes")).unwrap().json(), br#""secret""#);
        }
        // deterministic: equal in, equal out
        assert_eq!(out[0]["email"], out[1]["email"]);
        let AdminResponse::Ok(second) = &answers[1] else {
            panic!("{:?}", answers[1])
        };
        assert_eq!(second["Documents"][0]["email"], out[0]["email"]);
        let AdminResponse::Error(e) = &answers[2] else {
            panic!("{:?}", answers[2])
        };
        assert_eq!(e.code, "DoesNotOpen");
        assert_eq!(
            e.message,
            "the envelope at $[\"email\"] does not open (wrong --context, moved, or damaged)"
        );
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        for (req, _) in seen.iter() {
            let AdminRequest::Rewrap { documents, .. } = req else {
                panic!("{req:?}")
            };
            assert!(documents.is_empty());
        }
        assert_eq!(
            seen.iter().map(|(_, ok)| *ok).collect::<Vec<_>>(),
            [true, true, false]
        );
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
