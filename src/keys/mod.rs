//! The CMK store: key state machine, storage, root key, DEK wrap/unwrap and
//! the data-key cache.
//!
//! - [`model`]: key metadata and the state machine (PURE);
//! - [`root`]: the root key and sealing under it;
//! - [`mod@derive`]: keys derived from CMK material (deterministic fields);
//! - [`asymmetric`]: RSA / ECDSA private keys of asymmetric CMKs (aws-lc-rs);
//! - [`keywrap`]: DEK wrap/unwrap (AES-KW, RFC 3394);
//! - [`blob`]: the ciphertext blob of KMS Encrypt/Decrypt (PURE);
//! - [`store`]: [`KeyStore`], the redb-backed store;
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
pub mod provider;
pub mod remote;
pub mod root;
pub mod store;

pub use cache::{CacheConfig, CacheStats, DataKeyCache};
pub use model::{
    Backup, CreateKeyRequest, CredentialInfo, ImportReport, KeyCommand, KeyId, KeyMetadata,
    KeyOrigin, KeyPurpose, KeySpec, KeyState, KeyUsage, KeyVersionInfo, Tag,
};
pub use provider::{KeyError, KeyProvider, RemoteDataKey};
pub use root::RootKeySource;
pub use store::{
    unix_now, Ciphertext, Clock, DataKeySpec, Decrypted, GeneratedDataKey, KeyList, KeyStore,
    ManualClock, NewCredential, ReEncrypted, StoreError, StoreOptions, SystemClock, VerifyReport,
};

/// Opens the store a validated config names (for `serve`: warns at every
/// start while the root key file lies inside the data directory; the store
/// itself warns only when it is created).
pub fn open_for_config(c: &crate::config::Config) -> Result<KeyStore, StoreError> {
    let root = c
        .root_key_file
        .clone()
        .map(RootKeySource::File)
        .unwrap_or(RootKeySource::Auto);
    let existed = c.data_dir.join(store::DB_FILE).exists();
    let store = KeyStore::open(
        &c.data_dir,
        root.clone(),
        StoreOptions {
            max_keys: c.max_keys,
            ..Default::default()
        },
    )?;
    if existed {
        if let Some(path) = root.file_in_data_dir(&c.data_dir) {
            root::warn_in_data_dir(&path);
        }
    }
    Ok(store)
}
