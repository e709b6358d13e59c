//! The key store: every CMK's metadata and its material sealed under the
//! root key, in an embedded redb database in a data directory (the
//! default), or in PostgreSQL shared by several nodes ([`super::pg`], see
//! [`KeyStore::open_postgres`]). Either way the whole store is also held in
//! memory and every read is served from there.
//!
//! Every change is a [`Change`] planned against the in-memory [`State`],
//! committed to redb with `Durability::Immediate`, and only then applied to
//! the in-memory state: an operation that returned `Ok` survives a crash.
//! One process owns a data directory (exclusive lock on `<data-dir>/lock`);
//! others reach it through the admin socket.
//!
//! After an I/O error (a full disk) redb refuses every later write on that
//! handle ("previous I/O error"). The store then closes and reopens the
//! database file (right after the failure, and again before each write
//! while that has not worked), reloads the in-memory state from disk and
//! bumps the epoch; reads are served from memory throughout. Not PURE: file
//! system and database I/O.

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};

use fs4::fs_std::FileExt;
use rand::distributions::{Alphanumeric, DistString};
use rand::rngs::OsRng;
use rand::RngCore;
use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use super::asymmetric::PrivateKey;
use super::blob::{blob_cmk, open_blob, seal_blob, BlobCipher};
use super::keywrap::{unwrap_dek, wrap_dek};
use super::model::{
    Backup, Change, CreateKeyRequest, CredentialInfo, CredentialRecord, ImportReport, KeyCommand,
    KeyId, KeyMetadata, KeyRecord, KeyState, KeyUsage, Limits, MaterialSource, Mutation, Outcome,
    SealedVersion, State,
};
use super::pg::{BackendStats, PgBackend, Pulled, StoreUrl};
use super::provider::{KeyError, KeyProvider};
use super::root::{RootKeyError, RootKeySource, RootSealer};
use crate::clock::{Clock, SystemClock};
use crate::envelope::{CmkRef, WrappedDek};
use crate::secret::{CmkMaterial, DataKey, SecretBytes};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const KEYS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("keys");
const CREDENTIALS: TableDefinition<&str, &[u8]> = TableDefinition::new("credentials");
const META_KEY_CHECK: &str = "key_check";
/// The AAD id the decoy credential secret is sealed under (no real id has a
/// NUL byte: they are `AKID` + letters and digits).
const DECOY_CREDENTIAL_ID: &str = "\0decoy";

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "keys.redb";
/// File name of the process lock inside the data directory.
pub const LOCK_FILE: &str = "lock";
/// File name of the admin socket inside the data directory.
pub const ADMIN_SOCKET: &str = "admin.sock";
/// Largest plaintext `encrypt` takes (bytes).
pub const MAX_PLAINTEXT: usize = 4096;
/// Largest data key / random byte count (bytes).
pub const MAX_RANDOM_BYTES: usize = 1024;
/// Default limit on the number of keys.
pub const DEFAULT_MAX_KEYS: usize = 10_000;

/// Store settings.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Most keys the store holds, in any state.
    pub max_keys: usize,
    /// Source of time for create times, rotation and deletion dates (its
    /// wall time, [`Clock::unix_secs`]).
    pub clock: Arc<dyn Clock>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_keys: DEFAULT_MAX_KEYS,
            clock: Arc::new(SystemClock),
        }
    }
}

/// Why a store could not be opened. Messages name paths, never key bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process holds the data directory.
    #[error(
        "data directory {0} is in use by another process (is `sealgate serve` running?); \
         key commands go through its admin socket instead"
    )]
    Locked(PathBuf),
    /// The root key does not open this store (the data directory or the
    /// PostgreSQL store named).
    #[error(
        "wrong root key for the key store in {0}: it does not open the store's key-check value \
         (every node sharing a store needs the same root key)"
    )]
    WrongRootKey(String),
    /// The PostgreSQL database holds no sealgate key store, and this
    /// command does not create one.
    #[error(
        "no key store in {0}: the database has no sealgate tables; this command does not \
         create them (`sealgate keys init --store URL` or `sealgate serve --store URL` does)"
    )]
    Uninitialized(String),
    /// The PostgreSQL store failed (unreachable, refused, schema too new).
    #[error("key store database {store}: {message}")]
    Postgres {
        /// The store's URL, without any password.
        store: String,
        /// What failed.
        message: String,
    },
    /// The root key could not be loaded or created.
    #[error(transparent)]
    RootKey(#[from] RootKeyError),
    /// File system failure on the data directory.
    #[error("data directory {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The database failed.
    #[error("key store database {path}: {message}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// Records that do not hang together.
    #[error("key store in {path} is inconsistent: {message}")]
    Corrupt {
        /// The data directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl From<StoreError> for KeyError {
    fn from(e: StoreError) -> Self {
        KeyError::Store(e.to_string())
    }
}

/// One page of `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyList {
    /// Number of keys in the store.
    pub total_count: usize,
    /// The page, ordered by creation time then KeyId.
    pub keys: Vec<KeyMetadata>,
}

/// Data sealed under a CMK by `encrypt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ciphertext {
    /// The CMK.
    pub key_id: KeyId,
    /// The CMK version used (the primary at the time).
    pub version: u32,
    /// The blob (see `keys::blob` for the layout).
    pub blob: Vec<u8>,
}

/// What `decrypt` returns.
#[derive(Debug, Clone)]
pub struct Decrypted {
    /// The CMK that had sealed it.
    pub key_id: KeyId,
    /// The plaintext.
    pub plaintext: SecretBytes,
}

/// What `generate_data_key_blob` returns.
#[derive(Debug, Clone)]
pub struct GeneratedDataKey {
    /// The CMK.
    pub key_id: KeyId,
    /// The data key in clear.
    pub plaintext: SecretBytes,
    /// The data key sealed under the CMK's primary version.
    pub blob: Vec<u8>,
}

/// What `re_encrypt` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReEncrypted {
    /// The CMK that had sealed the source blob.
    pub source_key_id: KeyId,
    /// Its version.
    pub source_version: u32,
    /// The data sealed under the new CMK.
    pub ciphertext: Ciphertext,
}

/// Size of a data key to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKeySpec {
    /// 16 bytes.
    Aes128,
    /// 32 bytes.
    Aes256,
    /// 1–1024 bytes.
    Bytes(usize),
}

impl DataKeySpec {
    /// From the KMS parameters: `number_of_bytes` wins over `key_spec`
    /// (`AES_128` / `AES_256`); at least one is needed.
    pub fn from_params(
        key_spec: Option<&str>,
        number_of_bytes: Option<u64>,
    ) -> Result<DataKeySpec, KeyError> {
        match (number_of_bytes, key_spec) {
            (Some(n), _) => {
                if (1..=MAX_RANDOM_BYTES as u64).contains(&n) {
                    Ok(DataKeySpec::Bytes(n as usize))
                } else {
                    Err(KeyError::InvalidParameter(
                        "NumberOfBytes must be 1-1024".into(),
                    ))
                }
            }
            (None, Some("AES_128")) => Ok(DataKeySpec::Aes128),
            (None, Some("AES_256")) => Ok(DataKeySpec::Aes256),
            (None, Some(_)) => Err(KeyError::InvalidParameter("KeySpec".into())),
            (None, None) => Err(KeyError::InvalidParameter(
                "KeySpec or NumberOfBytes is required".into(),
            )),
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        match self {
            DataKeySpec::Aes128 => 16,
            DataKeySpec::Aes256 => 32,
            DataKeySpec::Bytes(n) => *n,
        }
    }

    /// True for a zero-length spec (never valid).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Which version of a key an operation uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionChoice {
    /// The primary version (the newest rotation).
    Primary,
    /// The first version the key had (Alibaba's `Encrypt` keeps using it
    /// after rotations).
    Initial,
    /// This version number.
    Number(u32),
}

/// A new credential: the only time its secret is shown.
#[derive(Debug, Clone)]
pub struct NewCredential {
    /// Public id (`AKID…`).
    pub id: String,
    /// The secret (40 letters and digits).
    pub secret: SecretBytes,
}

/// What `verify` checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VerifyReport {
    /// Keys checked.
    pub keys: usize,
    /// Versions whose material opened under the root key.
    pub versions: usize,
    /// Credentials whose secret opened.
    pub credentials: usize,
}

/// The key store. `Send + Sync`; share it as `Arc<KeyStore>`.
///
/// Lock order: `writer`, then `db`, then `state`.
#[derive(Debug)]
pub struct KeyStore {
    data_dir: PathBuf,
    /// The open database; `None` while a reopen after an I/O error has
    /// failed (the store is read-only until a write reopens it).
    db: RwLock<Option<Database>>,
    /// Set after redb reported an I/O error (or memory could not be
    /// re-read from disk): the next write reopens the database first.
    reopen_needed: AtomicBool,
    sealer: RootSealer,
    key_check: Vec<u8>,
    /// A random secret sealed as a credential's is, opened in place of an
    /// unknown or revoked credential's ([`KeyStore::credential_for_check`]),
    /// so such an id costs the work a real one does.
    decoy_credential: Vec<u8>,
    /// The in-memory state, its revision and the epoch; shared with the
    /// PostgreSQL listener thread.
    synced: Arc<Synced>,
    writer: Mutex<()>,
    options: StoreOptions,
    /// The data directory's lock (embedded backend only: PostgreSQL
    /// serves many processes at once).
    _lock: Option<File>,
    /// The PostgreSQL backend, when the store lives there.
    pg: Option<PgBackend>,
}

/// The read side every backend keeps in memory: the state, the revision
/// of the last change applied (PostgreSQL; always 0 for redb) and the
/// epoch, bumped after every applied change (see [`KeyProvider::epoch`]).
///
/// Lock order: `revision`, then `state`.
#[derive(Debug, Default)]
pub(crate) struct Synced {
    state: RwLock<State>,
    revision: Mutex<i64>,
    epoch: AtomicU64,
}

impl Synced {
    /// The revision of the last change applied.
    pub(crate) fn revision(&self) -> i64 {
        *self.revision.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies rows pulled from PostgreSQL that are newer than what memory
    /// holds (a write or another pull may have got there first); bumps the
    /// epoch if a key changed. Answers the number of rows applied. A
    /// row that does not decode is logged and skipped.
    pub(crate) fn apply_pulled(&self, rows: Pulled) -> usize {
        if rows.is_empty() {
            return 0;
        }
        let mut rev = self.revision.lock().unwrap_or_else(PoisonError::into_inner);
        let mut top = *rev;
        let mut mutations = Vec::new();
        for row in rows {
            if row.revision <= *rev {
                continue;
            }
            top = top.max(row.revision);
            match row.mutation() {
                Ok(m) => mutations.push(m),
                Err(e) => {
                    tracing::error!(error = %e, "skipped a key store row that does not decode")
                }
            }
        }
        *rev = top;
        let n = mutations.len();
        // credentials do not touch cached data keys: only key changes
        // move the epoch
        let keys_changed = mutations
            .iter()
            .any(|m| !matches!(m, Mutation::PutCredential(_)));
        if n > 0 {
            self.state
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .commit(mutations);
        }
        if keys_changed {
            self.epoch.fetch_add(1, Ordering::SeqCst);
        }
        n
    }
}

struct StoreSource<'a> {
    sealer: &'a RootSealer,
}

impl MaterialSource for StoreSource<'_> {
    fn new_key_id(&mut self) -> KeyId {
        KeyId::new_random()
    }

    fn sealed_material(
        &mut self,
        key: KeyId,
        version: u32,
        usage: KeyUsage,
    ) -> Result<Vec<u8>, KeyError> {
        let sealed = match usage.asymmetric_spec() {
            Some(spec) => {
                let pkcs8 = spec.generate_pkcs8()?;
                self.sealer
                    .seal_material(key.as_bytes(), version, pkcs8.expose())
            }
            None => {
                let material = CmkMaterial::generate(&mut OsRng);
                self.sealer
                    .seal_material(key.as_bytes(), version, material.expose())
            }
        };
        sealed.map_err(|_| KeyError::Store("sealing failed".into()))
    }
}

fn db_err(path: &Path) -> impl Fn(redb::Error) -> StoreError + '_ {
    move |e| StoreError::Database {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn key_err(e: impl Into<redb::Error>) -> KeyError {
    KeyError::Store(e.into().to_string())
}

/// Whether a redb error is an I/O failure, after which that database handle
/// refuses every write (`PreviousIo`) until it is closed and reopened.
fn is_io(e: &redb::Error) -> bool {
    matches!(e, redb::Error::Io(_) | redb::Error::PreviousIo)
}

/// Why `persist` failed.
enum PersistError {
    /// The database failed.
    Db(Box<redb::Error>),
    /// The database is closed after an I/O error (a reopen failed).
    Closed,
    /// A record did not encode.
    Encode(String),
}

impl PersistError {
    fn db(e: impl Into<redb::Error>) -> Self {
        PersistError::Db(Box::new(e.into()))
    }

    /// Whether the database must be reopened before it takes writes again.
    fn needs_reopen(&self) -> bool {
        match self {
            PersistError::Db(e) => is_io(e),
            PersistError::Closed => true,
            PersistError::Encode(_) => false,
        }
    }
}

impl From<PersistError> for KeyError {
    fn from(e: PersistError) -> Self {
        match e {
            PersistError::Db(e) => KeyError::Store(e.to_string()),
            PersistError::Closed => KeyError::Store(CLOSED.into()),
            PersistError::Encode(m) => KeyError::Store(m),
        }
    }
}

/// What a write or `verify` says while the database is closed.
const CLOSED: &str = "the key store database is closed after an I/O error and could not be \
                      reopened yet; the next write tries again";

impl KeyStore {
    /// Opens (or creates) the store in `data_dir`. On an empty directory it
    /// creates the root key (per `root`), the database and the key-check value.
    pub fn open(
        data_dir: impl AsRef<Path>,
        root: RootKeySource,
        options: StoreOptions,
    ) -> Result<KeyStore, StoreError> {
        let data_dir = data_dir.as_ref().to_path_buf();
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { path, source }
        };
        if !data_dir.exists() {
            std::fs::create_dir_all(&data_dir).map_err(io(&data_dir))?;
            std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io(&data_dir))?;
        }
        let lock_path = data_dir.join(LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        if !lock.try_lock_exclusive().map_err(io(&lock_path))? {
            return Err(StoreError::Locked(data_dir));
        }

        let db_path = data_dir.join(DB_FILE);
        let is_new = !db_path.exists();
        let root_key = root.load(&data_dir, is_new)?;
        let sealer = RootSealer::new(&root_key);
        drop(root_key);

        let db = match Database::create(&db_path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StoreError::Locked(data_dir))
            }
            Err(e) => return Err(db_err(&db_path)(e.into())),
        };
        if is_new {
            std::fs::set_permissions(&db_path, std::fs::Permissions::from_mode(0o600))
                .map_err(io(&db_path))?;
        }

        let (key_check, keys, credentials) = Self::load(&db, &db_path, &data_dir)?;
        let key_check = match key_check {
            Some(check) => {
                if !sealer.verify_key_check(&check) {
                    return Err(StoreError::WrongRootKey(data_dir.display().to_string()));
                }
                check
            }
            None => {
                if !keys.is_empty() || !credentials.is_empty() {
                    return Err(StoreError::Corrupt {
                        path: data_dir,
                        message: "keys stored but no key-check value".into(),
                    });
                }
                let check = sealer.make_key_check().map_err(|_| StoreError::Corrupt {
                    path: data_dir.clone(),
                    message: "could not seal the key-check value".into(),
                })?;
                Self::init_tables(&db, &check).map_err(|e| StoreError::Database {
                    path: db_path.clone(),
                    message: e.to_string(),
                })?;
                check
            }
        };
        let state =
            State::from_records(keys, credentials).map_err(|message| StoreError::Corrupt {
                path: data_dir.clone(),
                message,
            })?;
        tracing::info!(
            data_dir = %data_dir.display(),
            keys = state.key_count(),
            "key store open"
        );
        let decoy_secret = Alphanumeric.sample_string(&mut OsRng, 40);
        let decoy_credential = sealer
            .seal_credential(DECOY_CREDENTIAL_ID, decoy_secret.as_bytes())
            .map_err(|_| StoreError::Corrupt {
                path: data_dir.clone(),
                message: "cannot seal under the root key".into(),
            })?;
        Ok(KeyStore {
            data_dir,
            db: RwLock::new(Some(db)),
            reopen_needed: AtomicBool::new(false),
            sealer,
            key_check,
            decoy_credential,
            synced: Arc::new(Synced {
                state: RwLock::new(state),
                ..Synced::default()
            }),
            writer: Mutex::new(()),
            options,
            _lock: Some(lock),
            pg: None,
        })
    }

    /// Opens the store in the PostgreSQL database `url`
    /// (`postgres://USER@HOST:PORT/DB`), creating its schema and key-check
    /// value when the database holds none (with the root key, created in
    /// `data_dir` per `root` if it does not exist yet). `data_dir` holds
    /// only per-node files: the root key file by default, the admin socket.
    pub fn open_postgres(
        url: &str,
        data_dir: impl AsRef<Path>,
        root: RootKeySource,
        options: StoreOptions,
    ) -> Result<KeyStore, StoreError> {
        Self::open_pg(url, data_dir.as_ref(), root, options, true)
    }

    /// Like [`open_postgres`](Self::open_postgres), but a database without
    /// a sealgate store is refused untouched ([`StoreError::Uninitialized`]):
    /// the admin commands do not create stores.
    pub fn open_postgres_existing(
        url: &str,
        data_dir: impl AsRef<Path>,
        root: RootKeySource,
        options: StoreOptions,
    ) -> Result<KeyStore, StoreError> {
        Self::open_pg(url, data_dir.as_ref(), root, options, false)
    }

    /// A store that lives in memory only, sealed under a random root key
    /// that is never written anywhere: what a node whose CMKs live in a
    /// remote KMS (`[provider]`) holds. It starts empty, takes no lock and
    /// creates, reads and writes no file; `data_dir` only names where such
    /// files would be.
    pub fn in_memory(
        data_dir: impl AsRef<Path>,
        options: StoreOptions,
    ) -> Result<KeyStore, StoreError> {
        let data_dir = data_dir.as_ref().to_path_buf();
        let corrupt = |message: &str| StoreError::Corrupt {
            path: data_dir.clone(),
            message: message.into(),
        };
        let root_key = crate::secret::RootKey::generate(&mut OsRng);
        let sealer = RootSealer::new(&root_key);
        drop(root_key);
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| corrupt(&format!("in-memory key store: {e}")))?;
        let key_check = sealer
            .make_key_check()
            .map_err(|_| corrupt("could not seal the key-check value"))?;
        Self::init_tables(&db, &key_check)
            .map_err(|e| corrupt(&format!("in-memory key store: {e}")))?;
        let decoy_secret = Alphanumeric.sample_string(&mut OsRng, 40);
        let decoy_credential = sealer
            .seal_credential(DECOY_CREDENTIAL_ID, decoy_secret.as_bytes())
            .map_err(|_| corrupt("cannot seal under the root key"))?;
        Ok(KeyStore {
            data_dir,
            db: RwLock::new(Some(db)),
            reopen_needed: AtomicBool::new(false),
            sealer,
            key_check,
            decoy_credential,
            synced: Arc::new(Synced::default()),
            writer: Mutex::new(()),
            options,
            _lock: None,
            pg: None,
        })
    }

    fn open_pg(
        url: &str,
        data_dir: &Path,
        root: RootKeySource,
        options: StoreOptions,
        create: bool,
    ) -> Result<KeyStore, StoreError> {
        let url = StoreUrl::parse(url).map_err(|message| StoreError::Postgres {
            store: "(store URL)".into(),
            message,
        })?;
        let shown = url.to_string();
        let pg_err = |e: super::pg::PgError| StoreError::Postgres {
            store: shown.clone(),
            message: e.0,
        };
        let corrupt = |message: String| StoreError::Corrupt {
            path: PathBuf::from(&shown),
            message,
        };
        let data_dir = data_dir.to_path_buf();
        // the data directory is made only to hold a new root key file
        if create && !data_dir.exists() && root.file_in_data_dir(&data_dir).is_some() {
            let io = |source| StoreError::Io {
                path: data_dir.clone(),
                source,
            };
            std::fs::create_dir_all(&data_dir).map_err(io)?;
            std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io)?;
        }
        let Some((pg, opened)) = PgBackend::start(url, create).map_err(pg_err)? else {
            return Err(StoreError::Uninitialized(shown));
        };
        let is_new = opened.key_check.is_none();
        if is_new && !create {
            return Err(StoreError::Uninitialized(shown));
        }
        let root_key = root.load(&data_dir, is_new)?;
        let sealer = RootSealer::new(&root_key);
        drop(root_key);
        let key_check = match opened.key_check {
            Some(check) => check,
            None => {
                let check = sealer
                    .make_key_check()
                    .map_err(|_| corrupt("could not seal the key-check value".into()))?;
                // another node may have initialised the store meanwhile:
                // the value there afterwards is the one that counts
                pg.init_key_check(check).map_err(pg_err)?
            }
        };
        if !sealer.verify_key_check(&key_check) {
            return Err(StoreError::WrongRootKey(shown));
        }
        let mut revision = 0;
        let mut keys = Vec::new();
        let mut credentials = Vec::new();
        for row in pg.pull(0, super::pg::OP_TIMEOUT).map_err(pg_err)? {
            revision = revision.max(row.revision);
            match row.mutation().map_err(corrupt)? {
                Mutation::PutKey(rec) => keys.push(*rec),
                Mutation::PutCredential(c) => credentials.push(c),
                Mutation::DeleteKey(_) => {}
            }
        }
        let state = State::from_records(keys, credentials).map_err(corrupt)?;
        tracing::info!(store = %shown, keys = state.key_count(), revision, "key store open");
        let decoy_secret = Alphanumeric.sample_string(&mut OsRng, 40);
        let decoy_credential = sealer
            .seal_credential(DECOY_CREDENTIAL_ID, decoy_secret.as_bytes())
            .map_err(|_| corrupt("cannot seal under the root key".into()))?;
        let synced = Arc::new(Synced {
            state: RwLock::new(state),
            revision: Mutex::new(revision),
            epoch: AtomicU64::new(0),
        });
        pg.start_listener(Arc::downgrade(&synced)).map_err(pg_err)?;
        Ok(KeyStore {
            data_dir,
            db: RwLock::new(None),
            reopen_needed: AtomicBool::new(false),
            sealer,
            key_check,
            decoy_credential,
            synced,
            writer: Mutex::new(()),
            options,
            _lock: None,
            pg: Some(pg),
        })
    }

    #[allow(clippy::type_complexity)]
    fn load(
        db: &Database,
        db_path: &Path,
        data_dir: &Path,
    ) -> Result<(Option<Vec<u8>>, Vec<KeyRecord>, Vec<CredentialRecord>), StoreError> {
        let dberr = db_err(db_path);
        let corrupt = |message: String| StoreError::Corrupt {
            path: data_dir.to_path_buf(),
            message,
        };
        let txn = db.begin_read().map_err(|e| dberr(e.into()))?;
        let key_check = match txn.open_table(META) {
            Ok(t) => t
                .get(META_KEY_CHECK)
                .map_err(|e| dberr(e.into()))?
                .map(|v| v.value().to_vec()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(dberr(e.into())),
        };
        let mut keys = Vec::new();
        match txn.open_table(KEYS) {
            Ok(t) => {
                for row in t.iter().map_err(|e| dberr(e.into()))? {
                    let (_, v) = row.map_err(|e| dberr(e.into()))?;
                    let rec: KeyRecord = serde_json::from_slice(v.value())
                        .map_err(|e| corrupt(format!("unreadable key record: {e}")))?;
                    keys.push(rec);
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(dberr(e.into())),
        }
        let mut credentials = Vec::new();
        match txn.open_table(CREDENTIALS) {
            Ok(t) => {
                for row in t.iter().map_err(|e| dberr(e.into()))? {
                    let (_, v) = row.map_err(|e| dberr(e.into()))?;
                    let rec: CredentialRecord = serde_json::from_slice(v.value())
                        .map_err(|e| corrupt(format!("unreadable credential record: {e}")))?;
                    credentials.push(rec);
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(dberr(e.into())),
        }
        Ok((key_check, keys, credentials))
    }

    fn init_tables(db: &Database, check: &[u8]) -> Result<(), KeyError> {
        let mut txn = db.begin_write().map_err(key_err)?;
        txn.set_durability(Durability::Immediate);
        {
            let mut meta = txn.open_table(META).map_err(key_err)?;
            meta.insert(META_KEY_CHECK, check).map_err(key_err)?;
            txn.open_table(KEYS).map_err(key_err)?;
            txn.open_table(CREDENTIALS).map_err(key_err)?;
        }
        txn.commit().map_err(key_err)?;
        Ok(())
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Where the admin socket of this data directory lives.
    pub fn admin_socket_path(&self) -> PathBuf {
        self.data_dir.join(ADMIN_SOCKET)
    }

    /// The store's clock reading: wall time, unix seconds.
    pub fn now(&self) -> u64 {
        self.options.clock.unix_secs()
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.synced
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Plans, persists (durably) and then applies one change.
    fn apply(&self, change: Change, now: u64) -> Result<Outcome, KeyError> {
        let limits = Limits {
            max_keys: self.options.max_keys,
        };
        self.write(|st| {
            let plan = st.plan(
                change,
                now,
                limits,
                &mut StoreSource {
                    sealer: &self.sealer,
                },
            )?;
            Ok((plan.mutations, plan.outcome))
        })
    }

    /// Runs `plan` against the freshest state under the writer lock and
    /// commits the writes it returns (none: nothing is written). On
    /// PostgreSQL this happens inside the store-wide transaction, after
    /// pulling what other nodes changed, so the plan sees every committed
    /// change of the fleet.
    fn write<R>(
        &self,
        plan: impl FnOnce(&State) -> Result<(Vec<Mutation>, R), KeyError>,
    ) -> Result<R, KeyError> {
        if let Some(pg) = &self.pg {
            // the bound on an unreachable database counts the wait for
            // this node's earlier writes too
            let arrived = std::time::Instant::now();
            return super::pg::off_the_runtime(|| {
                let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
                self.write_pg(pg, arrived, plan)
            });
        }
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        self.ensure_writable()?;
        let (mutations, out) = plan(&self.read())?;
        if !mutations.is_empty() {
            self.commit(mutations)?;
        }
        Ok(out)
    }

    /// [`write`](Self::write) on PostgreSQL. A plan that fails, or writes
    /// nothing, rolls the transaction back.
    fn write_pg<R>(
        &self,
        pg: &PgBackend,
        arrived: std::time::Instant,
        plan: impl FnOnce(&State) -> Result<(Vec<Mutation>, R), KeyError>,
    ) -> Result<R, KeyError> {
        let (session, pulled) = pg
            .begin_write(self.synced.revision(), arrived)
            .map_err(|e| self.pg_error(e))?;
        self.synced.apply_pulled(pulled);
        let (mutations, out) = plan(&self.read())?;
        if mutations.is_empty() {
            return Ok(out);
        }
        let revision = session
            .commit(mutations.clone())
            .map_err(|e| self.pg_error(e))?;
        let mut rev = self
            .synced
            .revision
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // the listener may have pulled this commit (and newer ones) already
        if *rev < revision {
            self.synced
                .state
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .commit(mutations);
            *rev = revision;
            self.synced.epoch.fetch_add(1, Ordering::SeqCst);
        }
        Ok(out)
    }

    /// A database failure as a key error: [`KeyError::Unavailable`] when
    /// the database could not be reached (the proxy's 503
    /// `key_unavailable`), [`KeyError::Store`] when it answered with an
    /// error.
    fn pg_error(&self, e: super::pg::PgError) -> KeyError {
        let store = self.pg.as_ref().map(|p| p.url().to_string());
        tracing::error!(store = store.as_deref().unwrap_or(""), error = %e.0, "key store database failed");
        let message = format!(
            "key store database {}: {}",
            store.as_deref().unwrap_or(""),
            e.0
        );
        if e.is_unreachable() {
            KeyError::Unavailable(message)
        } else {
            KeyError::Store(message)
        }
    }

    /// Runs a read; when it misses (no such key or version) on PostgreSQL,
    /// pulls what other nodes changed once (coalesced with concurrent
    /// misses) and reads again: a key created or rotated on another node a
    /// moment ago is found without waiting for the listener. When that pull
    /// fails the answer is the database's error, not "not found": the key
    /// may exist.
    fn fresh<R>(&self, read: impl Fn() -> Result<R, KeyError>) -> Result<R, KeyError> {
        let missed_at = std::time::Instant::now();
        let out = read();
        match (&out, &self.pg) {
            (Err(KeyError::CmkNotFound | KeyError::VersionNotFound), Some(pg)) => {
                super::pg::off_the_runtime(|| pg.catch_up(&self.synced, missed_at))
                    .map_err(|e| self.pg_error(e))?;
                read()
            }
            _ => out,
        }
    }

    /// The PostgreSQL backend's counters (`None` for the embedded store).
    pub fn backend_stats(&self) -> Option<BackendStats> {
        self.pg.as_ref().map(PgBackend::stats)
    }

    /// The PostgreSQL store's URL without any password (`None` for the
    /// embedded store).
    pub fn store_url(&self) -> Option<String> {
        self.pg.as_ref().map(|p| p.url().to_string())
    }

    /// The revision of the last change this node has applied (PostgreSQL;
    /// 0 for the embedded store).
    pub fn revision(&self) -> i64 {
        self.synced.revision()
    }

    /// Persists `mutations` durably, then applies them to memory. The writer
    /// lock must be held. On failure memory is re-read from disk (the
    /// commit may or may not have reached it) and the error returned; after
    /// an I/O error the database is closed and reopened first.
    fn commit(&self, mutations: Vec<Mutation>) -> Result<(), KeyError> {
        match self.persist(&mutations) {
            Ok(()) => {
                self.synced
                    .state
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .commit(mutations);
                self.synced.epoch.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
            Err(e) if e.needs_reopen() => {
                let e = KeyError::from(e);
                tracing::error!(error = %e, "key store write failed with an I/O error; reopening the database");
                self.reopen_needed.store(true, Ordering::SeqCst);
                if let Err(again) = self.reopen() {
                    tracing::error!(
                        error = %again,
                        "reopening the key store database failed; it stays read-only until a write reopens it"
                    );
                }
                Err(e)
            }
            Err(e) => {
                let e = KeyError::from(e);
                tracing::error!(error = %e, "key store commit failed; reloading state from disk");
                self.reload();
                Err(e)
            }
        }
    }

    /// Before a write (writer lock held): reopens the database if an
    /// earlier I/O error asked for it.
    fn ensure_writable(&self) -> Result<(), KeyError> {
        if !self.reopen_needed.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.reopen().map_err(|e| {
            tracing::error!(error = %e, "reopening the key store database failed");
            KeyError::Store(format!(
                "the key store database could not be reopened after an I/O error: {e}"
            ))
        })
    }

    /// Closes and reopens the database file, then replaces the in-memory
    /// state with what is on disk and bumps the epoch. The writer lock must
    /// be held. On failure the database stays closed (`None`), memory keeps
    /// the last committed state and `reopen_needed` stays set.
    fn reopen(&self) -> Result<(), StoreError> {
        let db_path = self.data_dir.join(DB_FILE);
        let mut slot = self.db.write().unwrap_or_else(PoisonError::into_inner);
        // redb locks the file per handle: the old handle must be closed
        // before the file opens again.
        drop(slot.take());
        // `open`, not `create`: a missing file is an error, never a new store.
        let db = Database::open(&db_path).map_err(|e| db_err(&db_path)(e.into()))?;
        let (key_check, keys, credentials) = Self::load(&db, &db_path, &self.data_dir)?;
        let corrupt = |message: String| StoreError::Corrupt {
            path: self.data_dir.clone(),
            message,
        };
        if key_check.as_deref() != Some(self.key_check.as_slice()) {
            return Err(corrupt(
                "the key-check value changed while the store was open".into(),
            ));
        }
        let state = State::from_records(keys, credentials).map_err(corrupt)?;
        *slot = Some(db);
        let count = state.key_count();
        *self
            .synced
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner) = state;
        self.synced.epoch.fetch_add(1, Ordering::SeqCst);
        self.reopen_needed.store(false, Ordering::SeqCst);
        tracing::warn!(
            keys = count,
            "key store database reopened after an I/O error; state reloaded from disk"
        );
        Ok(())
    }

    fn persist(&self, mutations: &[Mutation]) -> Result<(), PersistError> {
        let guard = self.db.read().unwrap_or_else(PoisonError::into_inner);
        let db = guard.as_ref().ok_or(PersistError::Closed)?;
        let mut txn = db.begin_write().map_err(PersistError::db)?;
        txn.set_durability(Durability::Immediate);
        {
            let mut keys = txn.open_table(KEYS).map_err(PersistError::db)?;
            let mut creds = txn.open_table(CREDENTIALS).map_err(PersistError::db)?;
            for m in mutations {
                match m {
                    Mutation::PutKey(rec) => {
                        let json = serde_json::to_vec(rec.as_ref())
                            .map_err(|e| PersistError::Encode(e.to_string()))?;
                        keys.insert(rec.metadata.key_id.as_bytes().as_slice(), json.as_slice())
                            .map_err(PersistError::db)?;
                    }
                    Mutation::DeleteKey(id) => {
                        keys.remove(id.as_bytes().as_slice())
                            .map_err(PersistError::db)?;
                    }
                    Mutation::PutCredential(c) => {
                        let json = serde_json::to_vec(c)
                            .map_err(|e| PersistError::Encode(e.to_string()))?;
                        creds
                            .insert(c.id.as_str(), json.as_slice())
                            .map_err(PersistError::db)?;
                    }
                }
            }
        }
        txn.commit().map_err(PersistError::db)?;
        Ok(())
    }

    /// Re-reads memory from the open database after a failed commit. If
    /// that fails, the next write reopens the database (and re-reads) first.
    fn reload(&self) {
        let db_path = self.data_dir.join(DB_FILE);
        let guard = self.db.read().unwrap_or_else(PoisonError::into_inner);
        let loaded = match guard.as_ref() {
            Some(db) => Self::load(db, &db_path, &self.data_dir)
                .map_err(|e| e.to_string())
                .and_then(|(_, k, c)| State::from_records(k, c)),
            None => Err(CLOSED.to_string()),
        };
        match loaded {
            Ok(state) => {
                *self
                    .synced
                    .state
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = state;
                self.synced.epoch.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => {
                tracing::error!(error = %e, "reloading key store state failed; the next write reopens the database");
                self.reopen_needed.store(true, Ordering::SeqCst);
            }
        }
    }

    /// Plans and commits one change about a key; answers the key's
    /// metadata as this change wrote it (not a later change another node
    /// made meanwhile, which memory may already show).
    fn apply_key(&self, change: Change, now: u64) -> Result<KeyMetadata, KeyError> {
        let limits = Limits {
            max_keys: self.options.max_keys,
        };
        self.write(|st| {
            let plan = st.plan(
                change,
                now,
                limits,
                &mut StoreSource {
                    sealer: &self.sealer,
                },
            )?;
            let Outcome::Key(id) = plan.outcome else {
                return Err(KeyError::Store("unexpected outcome".into()));
            };
            let written = plan.mutations.iter().rev().find_map(|m| match m {
                Mutation::PutKey(r) if r.metadata.key_id == id => Some(r.metadata.clone()),
                _ => None,
            });
            let meta = match written {
                Some(m) => m,
                None => st
                    .key(&id)
                    .map(|r| r.metadata.clone())
                    .ok_or(KeyError::CmkNotFound)?,
            };
            Ok((plan.mutations, meta))
        })
    }

    /// Applies one command; returns the key's metadata after the change,
    /// once it is durable.
    pub fn execute(&self, cmd: KeyCommand) -> Result<KeyMetadata, KeyError> {
        let label = command_name(&cmd);
        let meta = self.apply_key(Change::Command(cmd), self.now())?;
        tracing::info!(key_id = %meta.key_id, command = label, state = %meta.key_state, "key changed");
        Ok(meta)
    }

    /// Creates a key (Type 1 enabled with version 1; EXTERNAL pending import).
    pub fn create(&self, req: CreateKeyRequest) -> Result<KeyMetadata, KeyError> {
        self.execute(KeyCommand::Create(req))
    }

    /// Creates an ENCRYPT_DECRYPT key with this alias (the server does this
    /// for keys its policies name); returns the new KeyId.
    pub fn create_alias_key(&self, alias: &str, description: &str) -> Result<KeyId, KeyError> {
        self.create(CreateKeyRequest {
            alias: Some(alias.into()),
            description: description.into(),
            ..CreateKeyRequest::default()
        })
        .map(|m| m.key_id)
    }

    /// Finds a key's id by KeyId or alias.
    pub fn resolve(&self, key: &str) -> Result<KeyId, KeyError> {
        self.fresh(|| self.read().resolve(key).map(|r| r.metadata.key_id))
    }

    /// Describes a key by KeyId or alias.
    pub fn describe(&self, key: &str) -> Result<KeyMetadata, KeyError> {
        self.fresh(|| self.read().resolve(key).map(|r| r.metadata.clone()))
    }

    /// One page of keys, ordered by creation time then KeyId.
    pub fn list(&self, offset: usize, limit: usize) -> KeyList {
        let st = self.read();
        let mut all: Vec<&KeyRecord> = st.keys().collect();
        all.sort_by_key(|r| (r.metadata.create_time, r.metadata.key_id));
        KeyList {
            total_count: all.len(),
            keys: all
                .into_iter()
                .skip(offset)
                .take(limit)
                .map(|r| r.metadata.clone())
                .collect(),
        }
    }

    /// Disabled → Enabled.
    pub fn enable(&self, key: &str) -> Result<KeyMetadata, KeyError> {
        self.execute(KeyCommand::Enable { key: key.into() })
    }

    /// Enabled → Disabled.
    pub fn disable(&self, key: &str) -> Result<KeyMetadata, KeyError> {
        self.execute(KeyCommand::Disable { key: key.into() })
    }

    /// Schedules deletion after `pending_window_days` (7–30).
    pub fn schedule_deletion(
        &self,
        key: &str,
        pending_window_days: u32,
    ) -> Result<KeyMetadata, KeyError> {
        self.execute(KeyCommand::ScheduleDeletion {
            key: key.into(),
            pending_window_days,
        })
    }

    /// Cancels a scheduled deletion; the key comes back Disabled.
    pub fn cancel_deletion(&self, key: &str) -> Result<KeyMetadata, KeyError> {
        self.execute(KeyCommand::CancelDeletion { key: key.into() })
    }

    /// Sets or changes the alias.
    pub fn update_alias(&self, key: &str, alias: &str) -> Result<KeyMetadata, KeyError> {
        self.execute(KeyCommand::UpdateAlias {
            key: key.into(),
            alias: alias.into(),
        })
    }

    /// Replaces the description.
    pub fn update_description(
        &self,
        key: &str,
        description: &str,
    ) -> Result<KeyMetadata, KeyError> {
        self.execute(KeyCommand::UpdateDescription {
            key: key.into(),
            description: description.into(),
        })
    }

    /// Turns on automatic rotation (period 7–365 days, default 365).
    pub fn enable_rotation(
        &self,
        key: &str,
        rotate_days: Option<u32>,
    ) -> Result<KeyMetadata, KeyError> {
        self.execute(KeyCommand::EnableRotation {
            key: key.into(),
            rotate_days,
        })
    }

    /// Turns off automatic rotation.
    pub fn disable_rotation(&self, key: &str) -> Result<KeyMetadata, KeyError> {
        self.execute(KeyCommand::DisableRotation { key: key.into() })
    }

    /// Versions below `version` stop decrypting; at most the primary.
    pub fn set_min_decryption_version(
        &self,
        key: &str,
        version: u32,
    ) -> Result<KeyMetadata, KeyError> {
        self.execute(KeyCommand::SetMinDecryptionVersion {
            key: key.into(),
            version,
        })
    }

    /// Makes a new primary version now.
    pub fn rotate(&self, key: &str) -> Result<KeyMetadata, KeyError> {
        self.execute(KeyCommand::Rotate { key: key.into() })
    }

    /// Imports 32 bytes of material into an EXTERNAL key pending import; it
    /// becomes version 1 and the key is enabled.
    pub fn import_key_material(
        &self,
        key: &str,
        material: &SecretBytes,
    ) -> Result<KeyMetadata, KeyError> {
        let material = CmkMaterial::from_slice(material.expose())
            .ok_or_else(|| KeyError::InvalidParameter("key material must be 32 bytes".into()))?;
        let key_id = self.resolve(key)?;
        let sealed = self
            .sealer
            .seal_material(key_id.as_bytes(), 1, material.expose())
            .map_err(|_| KeyError::Store("sealing failed".into()))?;
        let meta = self.apply_key(
            Change::ImportMaterial {
                key: key_id,
                sealed,
            },
            self.now(),
        )?;
        tracing::info!(key_id = %key_id, "key material imported");
        Ok(meta)
    }

    /// Rotates every enabled key whose automatic rotation is due at `now`;
    /// returns the keys rotated.
    pub fn rotate_due(&self, now: u64) -> Result<Vec<KeyId>, KeyError> {
        let due: Vec<KeyId> = self
            .read()
            .keys()
            .filter(|r| {
                let m = &r.metadata;
                m.key_rotation_enabled
                    && m.key_state == KeyState::Enabled
                    && m.next_rotate_time.is_some_and(|t| t <= now)
            })
            .map(|r| r.metadata.key_id)
            .collect();
        let mut done = Vec::new();
        for key in due {
            match self.apply(Change::AutoRotate { key }, now) {
                Ok(_) => {
                    tracing::info!(key_id = %key, "key rotated automatically");
                    done.push(key);
                }
                Err(e @ KeyError::Store(_)) => return Err(e),
                // Changed under us (disabled, deleted): skip it this round.
                Err(_) => {}
            }
        }
        Ok(done)
    }

    /// Deletes for good every key whose deletion date has passed at `now`;
    /// returns the keys purged.
    pub fn purge_due(&self, now: u64) -> Result<Vec<KeyId>, KeyError> {
        let due: Vec<KeyId> = self
            .read()
            .keys()
            .filter(|r| {
                r.metadata.key_state == KeyState::PendingDelete
                    && r.metadata.deletion_date.is_some_and(|t| t <= now)
            })
            .map(|r| r.metadata.key_id)
            .collect();
        let mut done = Vec::new();
        for key in due {
            match self.apply(Change::Purge { key }, now) {
                Ok(_) => {
                    tracing::warn!(key_id = %key, "key deleted after its pending window");
                    done.push(key);
                }
                Err(e @ KeyError::Store(_)) => return Err(e),
                Err(_) => {}
            }
        }
        Ok(done)
    }

    /// Material of one version of an enabled symmetric key.
    fn usable_material(
        &self,
        rec: &KeyRecord,
        version: Option<u32>,
    ) -> Result<(CmkRef, CmkMaterial), KeyError> {
        let m = &rec.metadata;
        if let Some(e) = m.key_state.unusable_error() {
            return Err(e);
        }
        if !m.key_usage.is_symmetric() {
            return Err(KeyError::UsageMismatch);
        }
        let version = match version {
            Some(v) => v,
            None => m.primary_version.ok_or(KeyError::CmkPendingImport)?,
        };
        let sealed = rec.sealed(version).ok_or(KeyError::VersionNotFound)?;
        if m.min_decryption_version.is_some_and(|min| version < min) {
            return Err(KeyError::VersionRetired);
        }
        let material = self
            .sealer
            .open_material(m.key_id.as_bytes(), version, sealed)
            .map_err(|_| KeyError::Store("CMK material does not open under the root key".into()))?;
        Ok((
            CmkRef {
                key_id: *m.key_id.as_bytes(),
                version,
            },
            material,
        ))
    }

    /// Runs `f` with the private key of an enabled asymmetric CMK's primary
    /// version (asymmetric keys have one version). `UsageMismatch` for a
    /// symmetric key.
    pub fn with_private_key<R>(
        &self,
        key: &str,
        f: impl FnOnce(&KeyMetadata, &PrivateKey) -> R,
    ) -> Result<R, KeyError> {
        // the state lock is held only to copy out what is needed: opening
        // and parsing an RSA key is the slow part
        let (meta, spec, version, sealed) = self.fresh(|| {
            let st = self.read();
            let rec = st.resolve(key)?;
            let m = &rec.metadata;
            if let Some(e) = m.key_state.unusable_error() {
                return Err(e);
            }
            let spec = m
                .key_usage
                .asymmetric_spec()
                .ok_or(KeyError::UsageMismatch)?;
            let version = m.primary_version.ok_or(KeyError::CmkPendingImport)?;
            let sealed = rec.sealed(version).ok_or(KeyError::VersionNotFound)?;
            Ok((m.clone(), spec, version, sealed.to_vec()))
        })?;
        let pkcs8 = self
            .sealer
            .open_private_key(meta.key_id.as_bytes(), version, &sealed)
            .map_err(|_| KeyError::Store("CMK material does not open under the root key".into()))?;
        let private = PrivateKey::from_pkcs8(spec, pkcs8)?;
        Ok(f(&meta, &private))
    }

    /// The AEAD of the blobs of the key `cmk` names (its usage never changes).
    pub fn blob_cipher(&self, cmk: &CmkRef) -> BlobCipher {
        let aes128 = self
            .read()
            .key(&KeyId::from_bytes(cmk.key_id))
            .is_some_and(|r| r.metadata.key_usage == KeyUsage::EncryptDecryptAes128);
        if aes128 {
            BlobCipher::Aes128Gcm
        } else {
            BlobCipher::Aes256Gcm
        }
    }

    fn primary(&self, key: &str) -> Result<(CmkRef, CmkMaterial), KeyError> {
        self.fresh(|| {
            let st = self.read();
            let rec = st.resolve(key)?;
            self.usable_material(rec, None)
        })
    }

    fn version(&self, cmk: &CmkRef) -> Result<CmkMaterial, KeyError> {
        self.fresh(|| {
            let st = self.read();
            let rec = st
                .key(&KeyId::from_bytes(cmk.key_id))
                .ok_or(KeyError::CmkNotFound)?;
            self.usable_material(rec, Some(cmk.version)).map(|(_, m)| m)
        })
    }

    /// Runs `f` with the material of one version of an enabled symmetric
    /// key (KeyId or alias). The material stays borrowed: it leaves the store
    /// only as what `f` computes from it.
    pub fn with_version_material<R>(
        &self,
        key: &str,
        version: VersionChoice,
        f: impl FnOnce(CmkRef, &CmkMaterial) -> R,
    ) -> Result<R, KeyError> {
        let (cmk, material) = self.fresh(|| {
            let st = self.read();
            let rec = st.resolve(key)?;
            let number = match version {
                VersionChoice::Primary => None,
                VersionChoice::Initial => Some(
                    rec.metadata
                        .versions
                        .iter()
                        .map(|v| v.version)
                        .min()
                        .ok_or(KeyError::CmkPendingImport)?,
                ),
                VersionChoice::Number(n) => Some(n),
            };
            self.usable_material(rec, number)
        })?;
        Ok(f(cmk, &material))
    }

    /// Removes `alias` from the key that has it; returns that key's
    /// metadata. `CmkNotFound` if no key has this alias.
    pub fn delete_alias(&self, alias: &str) -> Result<KeyMetadata, KeyError> {
        let ids = self.rewrite_keys(|st| {
            let rec = st.resolve(alias)?;
            if rec.metadata.alias.as_deref() != Some(alias) {
                return Err(KeyError::CmkNotFound);
            }
            let mut changed = rec.clone();
            changed.metadata.alias = None;
            Ok(vec![changed])
        })?;
        let id = ids.first().ok_or(KeyError::CmkNotFound)?;
        tracing::info!(key_id = %id, "alias deleted");
        self.describe(&id.to_string())
    }

    /// Moves `alias` (which must exist) to `key` (KeyId or alias), which
    /// must not have another alias; both changes commit together.
    pub fn move_alias(&self, alias: &str, key: &str) -> Result<KeyMetadata, KeyError> {
        let ids = self.rewrite_keys(|st| {
            let from = st.resolve(alias)?;
            if from.metadata.alias.as_deref() != Some(alias) {
                return Err(KeyError::CmkNotFound);
            }
            let to = st.resolve(key)?;
            if to.metadata.key_id == from.metadata.key_id {
                return Ok(Vec::new());
            }
            if to.metadata.alias.is_some() {
                return Err(KeyError::InvalidParameter(
                    "the target key already has an alias (one alias per key)".into(),
                ));
            }
            let mut old = from.clone();
            old.metadata.alias = None;
            let mut new = to.clone();
            new.metadata.alias = Some(alias.to_string());
            // the old holder first: committing it frees the alias in the index
            Ok(vec![old, new])
        })?;
        if let Some(id) = ids.last() {
            tracing::info!(key_id = %id, "alias moved");
        }
        self.describe(alias)
    }

    /// Plans key-record rewrites under the writer lock, persists them in
    /// one transaction, then applies them; returns the keys written.
    fn rewrite_keys(
        &self,
        build: impl FnOnce(&State) -> Result<Vec<KeyRecord>, KeyError>,
    ) -> Result<Vec<KeyId>, KeyError> {
        self.write(|st| {
            let records = build(st)?;
            let ids = records.iter().map(|r| r.metadata.key_id).collect();
            let mutations = records
                .into_iter()
                .map(|r| Mutation::PutKey(Box::new(r)))
                .collect();
            Ok((mutations, ids))
        })
    }

    /// Seals up to 4096 bytes under the key's primary version, binding
    /// `context` (the encryption context bytes) as AAD.
    pub fn encrypt(
        &self,
        key: &str,
        plaintext: &[u8],
        context: &[u8],
    ) -> Result<Ciphertext, KeyError> {
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(KeyError::InvalidParameter(
                "Plaintext longer than 4096 bytes".into(),
            ));
        }
        let (cmk, material) = self.primary(key)?;
        let which = self.blob_cipher(&cmk);
        let blob = seal_blob(cmk, &material, which, plaintext, context, &mut OsRng)?;
        Ok(Ciphertext {
            key_id: KeyId::from_bytes(cmk.key_id),
            version: cmk.version,
            blob,
        })
    }

    /// Opens a blob made by `encrypt` (or `generate_data_key_blob`,
    /// `re_encrypt`); the key is found from the blob.
    pub fn decrypt(&self, blob: &[u8], context: &[u8]) -> Result<Decrypted, KeyError> {
        let cmk = blob_cmk(blob)?;
        let material = self.version(&cmk)?;
        let plaintext = open_blob(&material, self.blob_cipher(&cmk), blob, context)?;
        Ok(Decrypted {
            key_id: KeyId::from_bytes(cmk.key_id),
            plaintext,
        })
    }

    /// KMS GenerateDataKey: a random data key, in clear and sealed under the
    /// key's primary version with `context` bound.
    pub fn generate_data_key_blob(
        &self,
        key: &str,
        spec: DataKeySpec,
        context: &[u8],
    ) -> Result<GeneratedDataKey, KeyError> {
        let plaintext = self.generate_random(spec.len())?;
        let ct = self.encrypt(key, plaintext.expose(), context)?;
        Ok(GeneratedDataKey {
            key_id: ct.key_id,
            plaintext,
            blob: ct.blob,
        })
    }

    /// Opens `blob` (under `source_context`) and seals the plaintext under
    /// `dest_key` (with `dest_context`), without returning it.
    pub fn re_encrypt(
        &self,
        blob: &[u8],
        source_context: &[u8],
        dest_key: &str,
        dest_context: &[u8],
    ) -> Result<ReEncrypted, KeyError> {
        let cmk = blob_cmk(blob)?;
        let opened = self.decrypt(blob, source_context)?;
        let ciphertext = self.encrypt(dest_key, opened.plaintext.expose(), dest_context)?;
        Ok(ReEncrypted {
            source_key_id: opened.key_id,
            source_version: cmk.version,
            ciphertext,
        })
    }

    /// `n` (1–1024) random bytes from the OS RNG.
    pub fn generate_random(&self, n: usize) -> Result<SecretBytes, KeyError> {
        if !(1..=MAX_RANDOM_BYTES).contains(&n) {
            return Err(KeyError::InvalidParameter(
                "NumberOfBytes must be 1-1024".into(),
            ));
        }
        let mut b = vec![0u8; n];
        OsRng.fill_bytes(&mut b);
        Ok(SecretBytes::new(b))
    }

    /// Creates a credential, optionally limited to some keys (KeyIds or
    /// aliases, resolved to KeyIds now). The secret is returned only here.
    pub fn create_credential(
        &self,
        allowed_keys: Option<Vec<String>>,
    ) -> Result<NewCredential, KeyError> {
        let allowed = match allowed_keys {
            None => None,
            Some(keys) => {
                let st = self.read();
                let mut ids = Vec::new();
                for k in keys {
                    let id = st.resolve(&k)?.metadata.key_id;
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
                Some(ids)
            }
        };
        let id = format!("AKID{}", Alphanumeric.sample_string(&mut OsRng, 32));
        let secret = SecretBytes::new(Alphanumeric.sample_string(&mut OsRng, 40).into_bytes());
        let sealed_secret = self
            .sealer
            .seal_credential(&id, secret.expose())
            .map_err(|_| KeyError::Store("sealing failed".into()))?;
        let now = self.now();
        self.apply(
            Change::AddCredential(CredentialRecord {
                id: id.clone(),
                sealed_secret,
                created_at: now,
                revoked: false,
                allowed_keys: allowed,
            }),
            now,
        )?;
        tracing::info!(credential = %id, "credential created");
        Ok(NewCredential { id, secret })
    }

    /// All credentials (no secrets), by id.
    pub fn list_credentials(&self) -> Vec<CredentialInfo> {
        self.read()
            .credentials()
            .map(CredentialInfo::from)
            .collect()
    }

    /// Revokes a credential for good.
    pub fn revoke_credential(&self, id: &str) -> Result<CredentialInfo, KeyError> {
        self.apply(Change::RevokeCredential { id: id.into() }, self.now())?;
        tracing::info!(credential = %id, "credential revoked");
        self.read()
            .credential(id)
            .map(CredentialInfo::from)
            .ok_or_else(|| KeyError::InvalidParameter("no such credential".into()))
    }

    /// The secret of a credential that exists and is not revoked.
    pub fn lookup_secret(&self, id: &str) -> Option<SecretBytes> {
        let st = self.read();
        let c = st.credential(id).filter(|c| !c.revoked)?;
        match self.sealer.open_credential(&c.id, &c.sealed_secret) {
            Ok(s) => Some(SecretBytes::new(s.to_vec())),
            Err(_) => {
                tracing::error!(credential = %id, "credential secret does not open under the root key");
                None
            }
        }
    }

    /// The secret to check a presented credential `id` against, and whether
    /// that credential is live (exists, not revoked). An unknown or revoked
    /// id gets a random decoy secret that nobody knows, opened the same way
    /// a real one is: the caller's check then runs and fails exactly as for
    /// a wrong secret, so the answer (and the work) does not tell which ids
    /// exist.
    pub fn credential_for_check(&self, id: &str) -> (SecretBytes, bool) {
        let live = {
            let st = self.read();
            st.credential(id)
                .filter(|c| !c.revoked)
                .map(|c| (c.id.clone(), c.sealed_secret.clone()))
        };
        let (open_id, sealed, is_live) = match &live {
            Some((cid, sealed)) => (cid.as_str(), sealed.as_slice(), true),
            None => (DECOY_CREDENTIAL_ID, self.decoy_credential.as_slice(), false),
        };
        match self.sealer.open_credential(open_id, sealed) {
            Ok(s) => (SecretBytes::new(s.to_vec()), is_live),
            Err(_) => {
                if is_live {
                    tracing::error!(credential = %id, "credential secret does not open under the root key");
                }
                // 32 fresh random bytes: no presented secret matches them.
                let mut r = [0u8; 32];
                OsRng.fill_bytes(&mut r);
                (SecretBytes::new(r.to_vec()), false)
            }
        }
    }

    /// Whether credential `id` (existing, not revoked) may use `key`
    /// (KeyId or alias).
    pub fn allowed(&self, id: &str, key: &str) -> bool {
        let st = self.read();
        let Some(c) = st.credential(id).filter(|c| !c.revoked) else {
            return false;
        };
        match &c.allowed_keys {
            None => true,
            Some(list) => st
                .resolve(key)
                .is_ok_and(|r| list.contains(&r.metadata.key_id)),
        }
    }

    /// A backup of every key and credential; material stays sealed under
    /// the root key.
    pub fn export(&self) -> Backup {
        let st = self.read();
        Backup {
            format: Backup::FORMAT.into(),
            created_at: self.now(),
            key_check: self.key_check.clone(),
            keys: st.keys().cloned().collect(),
            credentials: st.credentials().cloned().collect(),
        }
    }

    /// Restores a backup made under the same root key. Keys and credentials
    /// already present must be identical; nothing is overwritten. All or
    /// nothing.
    pub fn import(&self, backup: Backup) -> Result<ImportReport, KeyError> {
        if backup.format != Backup::FORMAT {
            return Err(KeyError::InvalidParameter(
                "not a sealgate key backup".into(),
            ));
        }
        if !self.sealer.verify_key_check(&backup.key_check) {
            return Err(KeyError::InvalidParameter(
                "backup was sealed under a different root key".into(),
            ));
        }
        for rec in &backup.keys {
            for v in &rec.material {
                self.check_material(rec, v).map_err(|why| {
                    KeyError::InvalidParameter(format!(
                        "backup material of key {} version {} {why}",
                        rec.metadata.key_id, v.version
                    ))
                })?;
            }
        }
        for c in &backup.credentials {
            self.sealer
                .open_credential(&c.id, &c.sealed_secret)
                .map_err(|_| {
                    KeyError::InvalidParameter(format!(
                        "backup secret of credential {} does not open",
                        c.id
                    ))
                })?;
        }
        match self.apply(Change::RestoreBackup(Box::new(backup)), self.now())? {
            Outcome::Restored(report) => {
                tracing::info!(?report, "key backup imported");
                Ok(report)
            }
            _ => Err(KeyError::Store("unexpected outcome".into())),
        }
    }

    /// Checks that one version's sealed material opens under the root key
    /// as what the key's usage says it holds: 32 bytes for a symmetric key,
    /// a PKCS#8 private key of the usage's spec for an asymmetric one (so a
    /// backup holding RSA or ECDSA keys restores, and a swapped or truncated
    /// record is still caught). The error says why, for the caller's message;
    /// it never holds key bytes.
    fn check_material(&self, rec: &KeyRecord, v: &SealedVersion) -> Result<(), &'static str> {
        let m = &rec.metadata;
        if m.key_usage.is_symmetric() {
            self.sealer
                .open_material(m.key_id.as_bytes(), v.version, &v.sealed)
                .map(drop)
                .map_err(|_| "does not open under the root key as a 32-byte symmetric key")
        } else if let Some(spec) = m.key_usage.asymmetric_spec() {
            let pkcs8 = self
                .sealer
                .open_private_key(m.key_id.as_bytes(), v.version, &v.sealed)
                .map_err(|_| "does not open under the root key")?;
            PrivateKey::from_pkcs8(spec, pkcs8)
                .map(drop)
                .map_err(|_| "is not a private key of the key's usage")
        } else {
            Err("belongs to a key usage this store holds no material for")
        }
    }

    /// The part of [`verify`](Self::verify) that reads memory only.
    fn check_memory(&self, st: &State) -> Result<VerifyReport, KeyError> {
        let mut report = VerifyReport {
            keys: 0,
            versions: 0,
            credentials: 0,
        };
        for rec in st.keys() {
            super::model::check_record(rec).map_err(KeyError::Store)?;
            for v in &rec.material {
                self.check_material(rec, v).map_err(|why| {
                    KeyError::Store(format!(
                        "key {} version {} {why}",
                        rec.metadata.key_id, v.version
                    ))
                })?;
                report.versions += 1;
            }
            report.keys += 1;
        }
        for c in st.credentials() {
            self.sealer
                .open_credential(&c.id, &c.sealed_secret)
                .map_err(|_| KeyError::Store(format!("credential {} does not open", c.id)))?;
            report.credentials += 1;
        }
        Ok(report)
    }

    /// [`verify`](Self::verify) on PostgreSQL: memory, caught up to one
    /// snapshot of the database, must equal it (retried if other nodes
    /// write meanwhile).
    fn verify_pg(&self, pg: &PgBackend) -> Result<VerifyReport, KeyError> {
        for _ in 0..5 {
            let rows = pg
                .pull(0, super::pg::OP_TIMEOUT)
                .map_err(|e| self.pg_error(e))?;
            let top = rows.iter().map(|r| r.revision).max().unwrap_or(0);
            let mut keys = std::collections::BTreeMap::new();
            let mut credentials = std::collections::BTreeMap::new();
            for row in rows {
                match row.mutation().map_err(KeyError::Store)? {
                    Mutation::PutKey(rec) => {
                        keys.insert(rec.metadata.key_id, *rec);
                    }
                    Mutation::PutCredential(c) => {
                        credentials.insert(c.id.clone(), c);
                    }
                    Mutation::DeleteKey(_) => {}
                }
            }
            let since = self.synced.revision();
            if since < top {
                let newer = pg
                    .pull(since, super::pg::OP_TIMEOUT)
                    .map_err(|e| self.pg_error(e))?;
                self.synced.apply_pulled(newer);
            }
            let rev = self
                .synced
                .revision
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if *rev != top {
                continue;
            }
            let st = self.read();
            let report = self.check_memory(&st)?;
            let same_keys = report.keys == keys.len()
                && st.keys().all(|r| keys.get(&r.metadata.key_id) == Some(r));
            let same_credentials = report.credentials == credentials.len()
                && st.credentials().all(|c| credentials.get(&c.id) == Some(c));
            if !(same_keys && same_credentials) {
                return Err(KeyError::Store("database and memory disagree".into()));
            }
            return Ok(report);
        }
        Err(KeyError::Store(
            "the store kept changing while it was verified; try again".into(),
        ))
    }

    /// Checks the whole store: every record consistent, every version's
    /// material and every credential secret opens under the root key, and the
    /// database agrees with memory.
    pub fn verify(&self) -> Result<VerifyReport, KeyError> {
        if let Some(pg) = &self.pg {
            return self.verify_pg(pg);
        }
        let guard = self.db.read().unwrap_or_else(PoisonError::into_inner);
        let db = guard
            .as_ref()
            .ok_or_else(|| KeyError::Store(CLOSED.into()))?;
        let st = self.read();
        let report = self.check_memory(&st)?;
        let read_err = |e: redb::Error| {
            if is_io(&e) {
                self.reopen_needed.store(true, Ordering::SeqCst);
            }
            KeyError::Store(e.to_string())
        };
        let txn = db.begin_read().map_err(|e| read_err(e.into()))?;
        let keys = txn.open_table(KEYS).map_err(|e| read_err(e.into()))?;
        if keys.len().map_err(|e| read_err(e.into()))? != report.keys as u64 {
            return Err(KeyError::Store("database and memory disagree".into()));
        }
        for rec in st.keys() {
            let stored = keys
                .get(rec.metadata.key_id.as_bytes().as_slice())
                .map_err(|e| read_err(e.into()))?
                .ok_or_else(|| KeyError::Store("database and memory disagree".into()))?;
            let stored: KeyRecord = serde_json::from_slice(stored.value())
                .map_err(|e| KeyError::Store(e.to_string()))?;
            if &stored != rec {
                return Err(KeyError::Store("database and memory disagree".into()));
            }
        }
        Ok(report)
    }
}

fn command_name(cmd: &KeyCommand) -> &'static str {
    match cmd {
        KeyCommand::Create(_) => "create",
        KeyCommand::Enable { .. } => "enable",
        KeyCommand::Disable { .. } => "disable",
        KeyCommand::ScheduleDeletion { .. } => "schedule_deletion",
        KeyCommand::CancelDeletion { .. } => "cancel_deletion",
        KeyCommand::UpdateAlias { .. } => "update_alias",
        KeyCommand::UpdateDescription { .. } => "update_description",
        KeyCommand::EnableRotation { .. } => "enable_rotation",
        KeyCommand::DisableRotation { .. } => "disable_rotation",
        KeyCommand::Rotate { .. } => "rotate",
        KeyCommand::SetMinDecryptionVersion { .. } => "set_min_decryption_version",
    }
}

impl KeyProvider for KeyStore {
    fn derive_key(
        &self,
        key: &str,
        version: Option<u32>,
        label: &[u8],
    ) -> Result<(CmkRef, DataKey), KeyError> {
        let choice = version.map_or(VersionChoice::Primary, VersionChoice::Number);
        self.with_version_material(key, choice, |cmk, material| {
            (cmk, super::derive::derive_key(material, label))
        })
    }

    fn epoch(&self) -> u64 {
        self.synced.epoch.load(Ordering::SeqCst)
    }

    fn primary_version(&self, key_id: &[u8; 16]) -> Option<u32> {
        self.read()
            .key(&KeyId::from_bytes(*key_id))
            .and_then(|r| r.metadata.primary_version)
    }

    fn key_id_of(&self, key: &str) -> Option<[u8; 16]> {
        self.resolve(key).ok().map(|id| *id.as_bytes())
    }

    fn generate_data_key(&self, key: &str) -> Result<(CmkRef, WrappedDek, DataKey), KeyError> {
        let (cmk, material) = self.primary(key)?;
        let dek = DataKey::generate(&mut OsRng);
        let wrapped = wrap_dek(&material, &dek)?;
        Ok((cmk, wrapped, dek))
    }

    fn unwrap_data_key(&self, cmk: &CmkRef, wrapped: &WrappedDek) -> Result<DataKey, KeyError> {
        let material = self.version(cmk)?;
        unwrap_dek(&material, wrapped).ok_or(KeyError::DoesNotOpen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> KeyStore {
        KeyStore::open(dir, RootKeySource::Auto, StoreOptions::default()).unwrap()
    }

    fn create(store: &KeyStore, alias: &str) -> Result<KeyMetadata, KeyError> {
        store.create(CreateKeyRequest {
            alias: Some(alias.into()),
            ..CreateKeyRequest::default()
        })
    }

    /// A commit that reached the disk although the write reported an I/O
    /// error: the next write reopens the database, memory is re-read from
    /// disk (it shows that change) and the epoch moves.
    #[test]
    fn a_write_after_an_io_failure_reopens_and_reloads_memory_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let a = create(&store, "a").unwrap().key_id;
        let mut on_disk = store.read().key(&a).cloned().unwrap();
        on_disk.metadata.description = "durable after all".into();
        assert!(store
            .persist(&[Mutation::PutKey(Box::new(on_disk))])
            .is_ok());
        store.reopen_needed.store(true, Ordering::SeqCst);
        let epoch = store.epoch();
        // reads come from memory, which has not seen it
        assert_eq!(store.describe("a").unwrap().description, "");

        let b = create(&store, "b").unwrap().key_id;
        assert!(!store.reopen_needed.load(Ordering::SeqCst));
        assert_eq!(
            store.describe("a").unwrap().description,
            "durable after all"
        );
        assert_eq!(store.resolve("b").unwrap(), b);
        assert!(store.epoch() >= epoch + 2, "reopen and create each bump it");
        assert_eq!(store.verify().unwrap().keys, 2);
    }

    /// A reopen that fails (here: the file is gone) refuses the write with a
    /// clear error and leaves the store readable; the next write retries.
    #[test]
    fn a_failed_reopen_keeps_reads_working_and_the_next_write_retries() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let a = create(&store, "a").unwrap().key_id;
        let sealed = store.encrypt("a", b"before", b"ctx").unwrap();
        let db_path = dir.path().join(DB_FILE);
        let away = dir.path().join("keys.redb.away");
        std::fs::rename(&db_path, &away).unwrap();
        store.reopen_needed.store(true, Ordering::SeqCst);

        let err = create(&store, "b").unwrap_err().to_string();
        assert!(err.contains("could not be reopened"), "{err}");
        assert!(!db_path.exists(), "the reopen made up a new database");
        assert!(store.db.read().unwrap().is_none());
        assert_eq!(store.resolve("a").unwrap(), a);
        assert_eq!(
            store
                .decrypt(&sealed.blob, b"ctx")
                .unwrap()
                .plaintext
                .expose(),
            b"before"
        );
        assert!(store.encrypt("a", b"during", b"ctx").is_ok());
        assert!(store.resolve("b").is_err());
        let err = store.verify().unwrap_err().to_string();
        assert!(err.contains("closed after an I/O error"), "{err}");
        let err = store.create_credential(None).unwrap_err().to_string();
        assert!(err.contains("could not be reopened"), "{err}");

        std::fs::rename(&away, &db_path).unwrap();
        let b = create(&store, "b").unwrap().key_id;
        assert_eq!(store.verify().unwrap().keys, 2);
        drop(store);
        let store = open(dir.path());
        assert_eq!(store.resolve("a").unwrap(), a);
        assert_eq!(store.resolve("b").unwrap(), b);
        assert_eq!(store.verify().unwrap().keys, 2);
    }

    #[test]
    fn only_io_errors_ask_for_a_reopen() {
        let io = redb::Error::Io(std::io::Error::from_raw_os_error(27));
        assert!(PersistError::db(io).needs_reopen());
        assert!(PersistError::db(redb::Error::PreviousIo).needs_reopen());
        assert!(PersistError::Closed.needs_reopen());
        assert!(!PersistError::db(redb::Error::ValueTooLarge(1)).needs_reopen());
        assert!(!PersistError::Encode("x".into()).needs_reopen());
    }
}
