//! Client keys of the KMS instance API: the RSA public keys
//! `alibabacloud-dkms-gcs` clients sign with, registered by id
//! (`sealgate credentials add-client-key`) in a file in the data directory.
//!
//! The file, `<data-dir>/alibaba-client-keys.json`, holds public keys only
//! (no secret), written atomically (temp file + rename, mode 0600) under an
//! advisory lock so two CLI runs do not lose each other's changes. The
//! running server re-reads it when its size or modification time changes,
//! so a key registered while sealgate runs works on the next request.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use fs4::fs_std::FileExt;
use serde::{Deserialize, Serialize};

use super::instance::ClientPublicKey;

/// File name of the registry inside the data directory.
pub const CLIENT_KEYS_FILE: &str = "alibaba-client-keys.json";
const LOCK_FILE: &str = "alibaba-client-keys.lock";
const FORMAT: &str = "sealgate-alibaba-client-keys-v1";
/// Longest client key id.
pub const MAX_ID_LEN: usize = 128;

/// Why a client key could not be registered or removed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientKeyError {
    /// The id is not 1-128 of letters, digits, `.`, `_`, `-`.
    #[error("client key id must be 1-128 of letters, digits, '.', '_' or '-'")]
    BadId,
    /// The public key does not parse as RSA.
    #[error("{0}")]
    BadKey(#[from] super::instance::BadPublicKey),
    /// A client key with this id is already registered.
    #[error("client key {0} is already registered")]
    Exists(String),
    /// No client key with this id.
    #[error("no client key {0}")]
    NotFound(String),
    /// The registry file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// One registered client key, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ClientKeyInfo {
    /// The id the SDK sends as `x-kms-acccesskeyid` (the client key file's `KeyId`).
    pub id: String,
    /// When it was registered (unix seconds).
    pub created_at: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    /// Base64 of the public key as given (PEM text or DER).
    public_key: String,
    created_at: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct RegistryFile {
    format: String,
    keys: BTreeMap<String, Entry>,
}

impl Default for RegistryFile {
    fn default() -> Self {
        Self {
            format: FORMAT.into(),
            keys: BTreeMap::new(),
        }
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> ClientKeyError + '_ {
    move |e| ClientKeyError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn check_id(id: &str) -> Result<(), ClientKeyError> {
    let ok = (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ClientKeyError::BadId)
    }
}

fn read_file(path: &Path) -> Result<RegistryFile, ClientKeyError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RegistryFile::default()),
        Err(e) => return Err(io_err(path)(e)),
    };
    let file: RegistryFile = serde_json::from_slice(&text).map_err(|e| ClientKeyError::Io {
        path: path.to_path_buf(),
        message: format!("not a client key registry: {e}"),
    })?;
    if file.format != FORMAT {
        return Err(ClientKeyError::Io {
            path: path.to_path_buf(),
            message: format!("unknown format {:?}", file.format),
        });
    }
    Ok(file)
}

fn write_file(path: &Path, file: &RegistryFile) -> Result<(), ClientKeyError> {
    let json = serde_json::to_vec_pretty(file).map_err(|e| ClientKeyError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(&json).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// Runs `change` on the registry of `data_dir` under its lock and writes
/// the result.
fn update(
    data_dir: &Path,
    change: impl FnOnce(&mut RegistryFile) -> Result<(), ClientKeyError>,
) -> Result<(), ClientKeyError> {
    std::fs::create_dir_all(data_dir).map_err(io_err(data_dir))?;
    let lock_path = data_dir.join(LOCK_FILE);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(io_err(&lock_path))?;
    lock.lock_exclusive().map_err(io_err(&lock_path))?;
    let path = data_dir.join(CLIENT_KEYS_FILE);
    let mut file = read_file(&path)?;
    change(&mut file)?;
    write_file(&path, &file)
}

/// Registers the RSA public key `public_key` (PEM or DER,
/// SubjectPublicKeyInfo or PKCS#1) under `id` in `data_dir`.
pub fn add_client_key(
    data_dir: &Path,
    id: &str,
    public_key: &[u8],
    now: u64,
) -> Result<ClientKeyInfo, ClientKeyError> {
    check_id(id)?;
    ClientPublicKey::parse(public_key)?;
    update(data_dir, |file| {
        if file.keys.contains_key(id) {
            return Err(ClientKeyError::Exists(id.to_string()));
        }
        file.keys.insert(
            id.to_string(),
            Entry {
                public_key: B64.encode(public_key),
                created_at: now,
            },
        );
        Ok(())
    })?;
    Ok(ClientKeyInfo {
        id: id.to_string(),
        created_at: now,
    })
}

/// Removes the client key `id` from `data_dir`.
pub fn remove_client_key(data_dir: &Path, id: &str) -> Result<(), ClientKeyError> {
    update(data_dir, |file| {
        file.keys
            .remove(id)
            .map(|_| ())
            .ok_or_else(|| ClientKeyError::NotFound(id.to_string()))
    })
}

/// The client keys registered in `data_dir`, by id.
pub fn list_client_keys(data_dir: &Path) -> Result<Vec<ClientKeyInfo>, ClientKeyError> {
    let file = read_file(&data_dir.join(CLIENT_KEYS_FILE))?;
    Ok(file
        .keys
        .into_iter()
        .map(|(id, e)| ClientKeyInfo {
            id,
            created_at: e.created_at,
        })
        .collect())
}

/// What the file looked like when it was last read.
type Stamp = Option<(SystemTime, u64, u64)>;

#[derive(Default)]
struct Loaded {
    stamp: Stamp,
    keys: Arc<BTreeMap<String, ClientPublicKey>>,
}

/// The server's view of the registry: re-read when the file changes.
pub struct ClientKeys {
    path: PathBuf,
    loaded: Mutex<Loaded>,
}

impl std::fmt::Debug for ClientKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKeys")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ClientKeys {
    /// The registry of `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join(CLIENT_KEYS_FILE),
            loaded: Mutex::new(Loaded::default()),
        }
    }

    fn stamp(&self) -> Stamp {
        let m = std::fs::metadata(&self.path).ok()?;
        Some((m.modified().ok()?, m.len(), m.ino()))
    }

    /// The public key registered as `id`, if any. An unreadable registry
    /// is logged and treated as empty (every instance request then fails
    /// as an unknown client key).
    pub fn lookup(&self, id: &str) -> Option<ClientPublicKey> {
        let stamp = self.stamp();
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if loaded.stamp != stamp || stamp.is_none() {
            let keys = match read_file(&self.path) {
                Ok(file) => file
                    .keys
                    .into_iter()
                    .filter_map(|(id, e)| {
                        let raw = B64.decode(e.public_key).ok()?;
                        match ClientPublicKey::parse(&raw) {
                            Ok(k) => Some((id, k)),
                            Err(_) => {
                                tracing::error!(client_key = %id, "registered client key does not parse; ignored");
                                None
                            }
                        }
                    })
                    .collect(),
                Err(e) => {
                    tracing::error!(error = %e, "client key registry unreadable");
                    BTreeMap::new()
                }
            };
            *loaded = Loaded {
                stamp,
                keys: Arc::new(keys),
            };
        }
        loaded.keys.get(id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem() -> Vec<u8> {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::rsa::{KeyPair, KeySize};
        use aws_lc_rs::signature::KeyPair as _;
        let kp = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let der = kp.public_key().as_der().unwrap();
        let b64 = B64.encode(der.as_ref());
        format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n").into_bytes()
    }

    #[test]
    fn registered_keys_are_found_by_a_running_reader() {
        let dir = tempfile::tempdir().unwrap();
        let reader = ClientKeys::new(dir.path());
        assert!(reader.lookup("KAAP.one").is_none());
        add_client_key(dir.path(), "KAAP.one", &pem(), 7).unwrap();
        assert!(reader.lookup("KAAP.one").is_some());
        assert!(matches!(
            add_client_key(dir.path(), "KAAP.one", &pem(), 8),
            Err(ClientKeyError::Exists(_))
        ));
        add_client_key(dir.path(), "KAAP.two", &pem(), 9).unwrap();
        let ids: Vec<String> = list_client_keys(dir.path())
            .unwrap()
            .into_iter()
            .map(|k| k.id)
            .collect();
        assert_eq!(ids, ["KAAP.one", "KAAP.two"]);
        remove_client_key(dir.path(), "KAAP.one").unwrap();
        assert!(reader.lookup("KAAP.one").is_none());
        assert!(reader.lookup("KAAP.two").is_some());
        let mode = std::fs::metadata(dir.path().join(CLIENT_KEYS_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn bad_ids_and_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            add_client_key(dir.path(), "../x", &pem(), 1),
            Err(ClientKeyError::BadId)
        ));
        assert!(matches!(
            add_client_key(dir.path(), "KAAP.x", b"not a key", 1),
            Err(ClientKeyError::BadKey(_))
        ));
        assert!(list_client_keys(dir.path()).unwrap().is_empty());
    }
}
