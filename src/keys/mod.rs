//! The CMK store: key state machine, storage, root key, DEK wrap/unwrap and
//! the data-key cache.
//!
//! - [`model`]: key metadata and the state machine (PURE);
//! - [`root`]: the root key and sealing under it;
//! - [`keywrap`]: DEK wrap/unwrap (AES-KW, RFC 3394);
//! - [`blob`]: the ciphertext blob of KMS Encrypt/Decrypt (PURE);
//! - [`store`]: [`KeyStore`], the redb-backed store;
//! - [`admin`]: the admin unix socket the CLI uses while the server runs.

pub mod admin;
pub mod blob;
pub mod keywrap;
pub mod model;
pub mod provider;
pub mod root;
pub mod store;

pub use model::{
    Backup, CreateKeyRequest, CredentialInfo, ImportReport, KeyCommand, KeyId, KeyMetadata,
    KeyOrigin, KeyState, KeyUsage, KeyVersionInfo, Tag,
};
pub use provider::{KeyError, KeyProvider};
pub use root::RootKeySource;
pub use store::{
    unix_now, Ciphertext, Clock, DataKeySpec, Decrypted, GeneratedDataKey, KeyList, KeyStore,
    ManualClock, NewCredential, ReEncrypted, StoreError, StoreOptions, SystemClock, VerifyReport,
};
