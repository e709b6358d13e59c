//! The CMK store: key state machine, storage, root key, DEK wrap/unwrap and
//! the data-key cache.
//!
//! - [`model`]: key metadata and the state machine (PURE);
//! - [`root`]: the root key and sealing under it;
//! - [`mod@derive`]: keys derived from CMK material (deterministic fields);
//! - [`asymmetric`]: RSA / ECDSA private keys of asymmetric CMKs (aws-lc-rs);
//! - [`keywrap`]: DEK wrap/unwrap (AES-KW, RFC 3394);
//! - [`blob`]: the ciphertext blob of KMS Encrypt/Decrypt (PURE);
//! - [`store`]: [`KeyStore`], over the embedded redb backend or
//!   [`pg`], the PostgreSQL backend several nodes share;
//! - [`cache`]: the data-key cache the proxy seals and opens through;
//! - [`remote`]: remote KMS providers (Tencent, Alibaba, Infisical) for
//!   nodes whose CMKs live in a cloud KMS (`[provider]`);
//! - [`admin`]: the admin unix socket the CLI uses while the server runs.

pub mod admin;
pub mod asymmetric;
pub mod blob;
pub mod cache;
pub mod derive;
pub mod keywrap;
pub mod model;
pub mod pg;
pub mod provider;
pub mod remote;
pub mod root;
pub mod store;

pub use cache::{CacheConfig, CacheStats, DataKeyCache};
pub use model::{
    Backup, CreateKeyRequest, CredentialInfo, ImportReport, KeyCommand, KeyId, KeyMetadata,
    KeyOrigin, KeyPurpose, KeySpec, KeyState, KeyUsage, KeyVersionInfo, Tag,
};
pub use pg::{BackendStats, StoreUrl};
pub use provider::{KeyError, KeyProvider, RemoteDataKey};
pub use root::RootKeySource;
pub use store::{
    Ciphertext, DataKeySpec, Decrypted, GeneratedDataKey, KeyList, KeyStore, NewCredential,
    ReEncrypted, StoreError, StoreOptions, VerifyReport,
};

/// Opens the store a validated config names (for `serve`: warns at every
/// start while the root key file lies inside the data directory; the store
/// itself warns only when it is created).
///
/// With `[provider]` the CMKs live in a remote KMS: the store is an empty
/// one in memory ([`KeyStore::in_memory`]), and nothing is created or read
/// on disk — no root key, no store file, no data directory.
pub fn open_for_config(c: &crate::config::Config) -> Result<KeyStore, StoreError> {
    if c.provider.is_some() {
        return KeyStore::in_memory(&c.data_dir, StoreOptions::default());
    }
    let root = c
        .root_key_file
        .clone()
        .map(RootKeySource::File)
        .unwrap_or(RootKeySource::Auto);
    let options = StoreOptions {
        max_keys: c.max_keys,
        ..Default::default()
    };
    if let Some(url) = &c.store_url {
        // per-node files only (the admin socket, the default root key file)
        if !c.data_dir.exists() {
            let io = |source| StoreError::Io {
                path: c.data_dir.clone(),
                source,
            };
            std::fs::create_dir_all(&c.data_dir).map_err(io)?;
            std::fs::set_permissions(
                &c.data_dir,
                std::os::unix::fs::PermissionsExt::from_mode(0o700),
            )
            .map_err(io)?;
        }
        let store = KeyStore::open_postgres(url, &c.data_dir, root.clone(), options)?;
        if let Some(path) = root.file_in_data_dir(&c.data_dir) {
            root::warn_in_data_dir(&path);
        }
        return Ok(store);
    }
    let existed = c.data_dir.join(store::DB_FILE).exists();
    let store = KeyStore::open(&c.data_dir, root.clone(), options)?;
    if existed {
        if let Some(path) = root.file_in_data_dir(&c.data_dir) {
            root::warn_in_data_dir(&path);
        }
    }
    Ok(store)
}
