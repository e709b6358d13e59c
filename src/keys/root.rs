//! The root key: where it comes from (env var, key file, the caller), how a
//! new one is written, and sealing CMK material and credential secrets under
//! it with AES-256-GCM.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::Engine;
use rand::rngs::OsRng;
use rand::RngCore;
use zeroize::Zeroizing;

use crate::secret::RootKey;

/// Environment variable holding the root key as base64 of 32 bytes.
pub const ROOT_KEY_ENV: &str = "SEALGATE_ROOT_KEY";
/// File name of the default root key inside the data directory.
pub const ROOT_KEY_FILE: &str = "root.key";

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const AAD_CMK: &[u8] = b"sealgate/cmk/v1";
const AAD_CREDENTIAL: &[u8] = b"sealgate/credential/v1";
const AAD_KEY_CHECK: &[u8] = b"sealgate/key-check/v1";
const KEY_CHECK_PLAINTEXT: &[u8] = b"sealgate root key check v1";

/// Where the root key comes from.
#[derive(Debug, Clone)]
pub enum RootKeySource {
    /// `SEALGATE_ROOT_KEY` if set, else `<data-dir>/root.key` (created with
    /// mode 0600 when the store is new).
    Auto,
    /// A key file (base64 text of 32 bytes); created with mode 0600 when it
    /// is missing and the store is new.
    File(PathBuf),
    /// Base64 text of 32 bytes (e.g. read from a secret manager by the caller).
    Base64(String),
    /// The key itself.
    Key(RootKey),
}

/// Why the root key could not be had. Messages name paths, never key bytes.
#[derive(Debug, thiserror::Error)]
pub enum RootKeyError {
    /// The text is not base64 of exactly 32 bytes.
    #[error("root key from {0} is not base64 of 32 bytes")]
    Malformed(String),
    /// The key file is missing but the data directory already holds a store.
    #[error(
        "root key file {0} not found, but its key store already exists; \
         restore the root key from its backup"
    )]
    Missing(PathBuf),
    /// The key file may be read by others.
    #[error(
        "root key file {path} has mode {mode:o}; it must be readable only by its owner (chmod 600)"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Reading or writing the key file failed.
    #[error("root key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl RootKeySource {
    /// Produces the key. `store_is_new` allows creating a missing key file.
    pub fn load(&self, data_dir: &Path, store_is_new: bool) -> Result<RootKey, RootKeyError> {
        match self {
            RootKeySource::Auto => match take_root_key_env() {
                EnvRootKey::Key(k) => Ok(k.clone()),
                EnvRootKey::Malformed => Err(RootKeyError::Malformed(ROOT_KEY_ENV.to_string())),
                EnvRootKey::Unset => {
                    load_file(&data_dir.join(ROOT_KEY_FILE), data_dir, store_is_new)
                }
            },
            RootKeySource::File(p) => load_file(p, data_dir, store_is_new),
            RootKeySource::Base64(v) => decode(v, "the given base64 text"),
            RootKeySource::Key(k) => Ok(k.clone()),
        }
    }

    /// The key file this source reads when that file lies inside
    /// `data_dir` (a disk that holds the store must not hold its key too);
    /// `None` for a key from elsewhere or from `SEALGATE_ROOT_KEY`.
    pub fn file_in_data_dir(&self, data_dir: &Path) -> Option<PathBuf> {
        let path = match self {
            RootKeySource::Auto => match take_root_key_env() {
                EnvRootKey::Unset => data_dir.join(ROOT_KEY_FILE),
                EnvRootKey::Key(_) | EnvRootKey::Malformed => return None,
            },
            RootKeySource::File(p) => p.clone(),
            RootKeySource::Base64(_) | RootKeySource::Key(_) => return None,
        };
        path.starts_with(data_dir).then_some(path)
    }
}

/// Warns that the root key file `path` lies inside the data directory.
pub fn warn_in_data_dir(path: &Path) {
    tracing::warn!(
        path = %path.display(),
        "the root key lives inside the data directory; move it off the data disk \
         (pass its path or set SEALGATE_ROOT_KEY) and keep a backup"
    );
}

/// What `SEALGATE_ROOT_KEY` held when it was taken.
#[derive(Debug)]
pub enum EnvRootKey {
    /// It was not set.
    Unset,
    /// It held this key.
    Key(RootKey),
    /// It was set but is not base64 of 32 bytes.
    Malformed,
}

/// Reads `SEALGATE_ROOT_KEY` once per process, removes it from the
/// environment and wipes the text read; later calls return the same result.
///
/// Removed so that child processes and later `getenv` calls (any library,
/// a crash reporter) never see the key. `serve` calls this first thing, before
/// any thread exists, because `setenv`/`unsetenv` race with `getenv` in other
/// threads at the libc level. What it cannot undo: the environment block the
/// process was started with (`/proc/<pid>/environ`) keeps the text until exit.
pub fn take_root_key_env() -> &'static EnvRootKey {
    static TAKEN: std::sync::OnceLock<EnvRootKey> = std::sync::OnceLock::new();
    TAKEN.get_or_init(|| {
        let Some(raw) = std::env::var_os(ROOT_KEY_ENV) else {
            return EnvRootKey::Unset;
        };
        std::env::remove_var(ROOT_KEY_ENV);
        let text = Zeroizing::new(std::os::unix::ffi::OsStringExt::into_vec(raw));
        match decode_bytes(&text, ROOT_KEY_ENV) {
            Ok(k) => EnvRootKey::Key(k),
            Err(_) => EnvRootKey::Malformed,
        }
    })
}

/// Encodes a root key the way key files and the env var carry it.
pub fn encode_root_key(key: &RootKey) -> Zeroizing<String> {
    Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(key.expose()))
}

fn decode(text: &str, origin: &str) -> Result<RootKey, RootKeyError> {
    decode_bytes(text.as_bytes(), origin)
}

fn decode_bytes(text: &[u8], origin: &str) -> Result<RootKey, RootKeyError> {
    let bytes = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(text.trim_ascii())
            .map_err(|_| RootKeyError::Malformed(origin.to_string()))?,
    );
    RootKey::from_slice(&bytes).ok_or_else(|| RootKeyError::Malformed(origin.to_string()))
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RootKeyError + '_ {
    move |source| RootKeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn load_file(path: &Path, data_dir: &Path, store_is_new: bool) -> Result<RootKey, RootKeyError> {
    match std::fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(RootKeyError::Permissions {
                    path: path.to_path_buf(),
                    mode,
                });
            }
            let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io_err(path))?);
            let key = decode(&text, &path.display().to_string())?;
            // once per store, at its creation; `serve` repeats it at each
            // start (see `RootKeySource::file_in_data_dir`), but the admin
            // commands do not, so scripts calling them are not flooded
            if store_is_new && path.starts_with(data_dir) {
                warn_in_data_dir(path);
            }
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !store_is_new {
                return Err(RootKeyError::Missing(path.to_path_buf()));
            }
            let key = RootKey::generate(&mut OsRng);
            write_new_key_file(path, &key)?;
            tracing::warn!(
                path = %path.display(),
                "created a new root key at {}: back it up now and keep it off the data disk; \
                 without it no key in this store can ever be opened",
                path.display()
            );
            Ok(key)
        }
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Writes a key file atomically: temp file (0600), fsync, hard link into
/// place (never replaces an existing file), fsync the directory.
fn write_new_key_file(path: &Path, key: &RootKey) -> Result<(), RootKeyError> {
    let tmp = path.with_extension("key.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    let text = encode_root_key(key);
    f.write_all(text.as_bytes()).map_err(io_err(&tmp))?;
    f.write_all(b"\n").map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    drop(f);
    std::fs::hard_link(&tmp, path).map_err(io_err(path))?;
    std::fs::remove_file(&tmp).map_err(io_err(&tmp))?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            d.sync_all().map_err(io_err(dir))?;
        }
    }
    Ok(())
}

/// The root key's initialised cipher; seals what the store keeps at rest.
pub struct RootSealer {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for RootSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RootSealer(<redacted>)")
    }
}

/// Sealed bytes did not open under the root key (or, never in practice,
/// sealing failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("sealed value does not open under the root key")]
pub struct SealError;

impl RootSealer {
    /// Runs the key schedule.
    pub fn new(key: &RootKey) -> Self {
        Self {
            cipher: Aes256Gcm::new(key.expose().into()),
        }
    }

    fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let mut out = nonce.to_vec();
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| SealError)?;
        out.extend_from_slice(&ct);
        Ok(out)
    }

    fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError);
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .map(Zeroizing::new)
            .map_err(|_| SealError)
    }

    /// Seals one CMK version's material (AAD = key id + version): 32 bytes
    /// for a symmetric key, PKCS#8 DER for an asymmetric one.
    pub fn seal_material(
        &self,
        key_id: &[u8; 16],
        version: u32,
        material: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        self.seal(material, &cmk_aad(key_id, version))
    }

    /// Opens one CMK version's material.
    pub fn open_material(
        &self,
        key_id: &[u8; 16],
        version: u32,
        sealed: &[u8],
    ) -> Result<crate::secret::CmkMaterial, SealError> {
        let pt = self.open(sealed, &cmk_aad(key_id, version))?;
        crate::secret::CmkMaterial::from_slice(&pt).ok_or(SealError)
    }

    /// Opens one asymmetric CMK version's private key (PKCS#8 DER).
    pub fn open_private_key(
        &self,
        key_id: &[u8; 16],
        version: u32,
        sealed: &[u8],
    ) -> Result<crate::secret::SecretBytes, SealError> {
        let pt = self.open(sealed, &cmk_aad(key_id, version))?;
        Ok(crate::secret::SecretBytes::new(pt.to_vec()))
    }

    /// Seals a credential secret (AAD = credential id).
    pub fn seal_credential(&self, id: &str, secret: &[u8]) -> Result<Vec<u8>, SealError> {
        self.seal(secret, &[AAD_CREDENTIAL, id.as_bytes()].concat())
    }

    /// Opens a credential secret.
    pub fn open_credential(
        &self,
        id: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        self.open(sealed, &[AAD_CREDENTIAL, id.as_bytes()].concat())
    }

    /// A fresh key-check value: proves later that a root key is the right one.
    pub fn make_key_check(&self) -> Result<Vec<u8>, SealError> {
        self.seal(KEY_CHECK_PLAINTEXT, AAD_KEY_CHECK)
    }

    /// True when `check` was made under this root key.
    pub fn verify_key_check(&self, check: &[u8]) -> bool {
        self.open(check, AAD_KEY_CHECK)
            .is_ok_and(|pt| pt.as_slice() == KEY_CHECK_PLAINTEXT)
    }
}

fn cmk_aad(key_id: &[u8; 16], version: u32) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_CMK.len() + 20);
    aad.extend_from_slice(AAD_CMK);
    aad.extend_from_slice(key_id);
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn material_is_bound_to_key_id_and_version() {
        let s = RootSealer::new(&RootKey::from_bytes([7; 32]));
        let id = [1u8; 16];
        let sealed = s.seal_material(&id, 3, &[9; 32]).unwrap();
        assert_eq!(s.open_material(&id, 3, &sealed).unwrap().expose(), &[9; 32]);
        assert!(s.open_material(&id, 2, &sealed).is_err());
        assert!(s.open_material(&[2u8; 16], 3, &sealed).is_err());
        let other = RootSealer::new(&RootKey::from_bytes([8; 32]));
        assert!(other.open_material(&id, 3, &sealed).is_err());
        assert!(s.open_material(&id, 3, &sealed[..20]).is_err());
    }

    #[test]
    fn key_check_tells_root_keys_apart() {
        let a = RootSealer::new(&RootKey::from_bytes([1; 32]));
        let b = RootSealer::new(&RootKey::from_bytes([2; 32]));
        let check = a.make_key_check().unwrap();
        assert!(a.verify_key_check(&check));
        assert!(!b.verify_key_check(&check));
    }

    #[test]
    fn new_key_file_is_owner_only_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k").join("root.key");
        std::fs::create_dir(dir.path().join("k")).unwrap();
        let src = RootKeySource::File(path.clone());
        let k1 = src.load(dir.path(), true).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let k2 = src.load(dir.path(), false).unwrap();
        assert_eq!(k1.expose(), k2.expose());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            src.load(dir.path(), false),
            Err(RootKeyError::Permissions { .. })
        ));
    }

    #[test]
    fn missing_key_file_for_existing_store_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let src = RootKeySource::File(dir.path().join("nope.key"));
        assert!(matches!(
            src.load(dir.path(), false),
            Err(RootKeyError::Missing(_))
        ));
        assert!(!dir.path().join("nope.key").exists());
    }

    #[test]
    fn base64_source_must_be_32_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let good = encode_root_key(&RootKey::from_bytes([5; 32]));
        let k = RootKeySource::Base64(good.to_string())
            .load(dir.path(), true)
            .unwrap();
        assert_eq!(k.expose(), &[5; 32]);
        assert!(RootKeySource::Base64("AAAA".into())
            .load(dir.path(), true)
            .is_err());
        assert!(RootKeySource::Base64("not base64!".into())
            .load(dir.path(), true)
            .is_err());
    }
}
