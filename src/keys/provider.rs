//! The seam between the data-key cache and whatever holds the CMKs: the
//! local store, or a remote KMS (`keys::remote`).

use crate::envelope::{CmkRef, WrappedDek};
use crate::secret::DataKey;

/// Errors a key provider reports; each KMS face maps them to its own codes.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// No CMK with that KeyId or alias.
    #[error("CMK not found")]
    CmkNotFound,
    /// The CMK is disabled.
    #[error("CMK is disabled")]
    CmkDisabled,
    /// The CMK is scheduled for deletion.
    #[error("CMK is pending deletion")]
    CmkPendingDelete,
    /// The CMK is an EXTERNAL key whose material has not been imported.
    #[error("CMK is pending import of key material")]
    CmkPendingImport,
    /// The CMK's usage does not allow this operation.
    #[error("CMK usage does not allow this operation")]
    UsageMismatch,
    /// A wrapped key or ciphertext did not open under the named CMK version.
    #[error("ciphertext does not open")]
    DoesNotOpen,
    /// The named CMK version does not exist.
    #[error("CMK version not found")]
    VersionNotFound,
    /// The alias is malformed.
    #[error("invalid alias")]
    InvalidAlias,
    /// Another CMK already has this alias.
    #[error("alias already exists")]
    AliasAlreadyExists,
    /// A parameter is out of range (the message names it; never a secret).
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    /// The configured limit on the number of keys is reached.
    #[error("key limit exceeded")]
    LimitExceeded,
    /// The key is in a state that does not allow this change.
    #[error("invalid key state: {0}")]
    InvalidState(String),
    /// The store failed (I/O, corruption); the message is safe to log.
    #[error("key store failure: {0}")]
    Store(String),
    /// The key usage is valid but this store cannot hold such keys yet.
    #[error("key usage not supported")]
    UnsupportedKeyUsage,
    /// Two tags share a tag key.
    #[error("duplicate tag key")]
    DuplicateTagKey,
    /// The CMK version is below the key's minimum decryption version: what
    /// it sealed no longer opens.
    #[error("CMK version is below the key's minimum decryption version")]
    VersionRetired,
    /// A backup import would overwrite a different key, alias or credential.
    #[error("import conflict: {0}")]
    ImportConflict(String),
    /// The remote KMS holding the CMKs could not serve the call within the
    /// retry budget (unreachable, timing out, failing or throttling). The
    /// message names the provider and what went wrong, never a credential.
    #[error("{0}")]
    Unavailable(String),
}

/// A data key a remote KMS generated: its plaintext and the CiphertextBlob
/// that the same KMS's Decrypt turns back into it.
pub struct RemoteDataKey {
    /// What audit and metrics record as the key (derived from the remote KeyId).
    pub cmk: CmkRef,
    /// The remote CiphertextBlob (decoded bytes), carried by every envelope.
    pub blob: Vec<u8>,
    /// The plaintext DEK.
    pub key: DataKey,
}

/// What the data-key cache needs from a CMK holder.
pub trait KeyProvider: Send + Sync {
    /// Generates a fresh random 256-bit DEK and wraps it under the primary
    /// version of the CMK named by `key` (a KeyId or an alias).
    /// Fails if the CMK is missing, not enabled, or not ENCRYPT_DECRYPT.
    fn generate_data_key(&self, key: &str) -> Result<(CmkRef, WrappedDek, DataKey), KeyError>;

    /// Unwraps a DEK wrapped under the given CMK version.
    /// Fails if the CMK is missing or not enabled, or the bytes do not unwrap.
    fn unwrap_data_key(&self, cmk: &CmkRef, wrapped: &WrappedDek) -> Result<DataKey, KeyError>;

    /// Derives a 256-bit key from one version of the CMK named by `key`
    /// (`None` = the primary) and `label`, inside the holder: the material
    /// never leaves it. Same inputs, same key. Used by deterministic fields.
    fn derive_key(
        &self,
        key: &str,
        version: Option<u32>,
        label: &[u8],
    ) -> Result<(CmkRef, DataKey), KeyError> {
        let _ = (key, version, label);
        Err(KeyError::UnsupportedKeyUsage)
    }

    /// A counter that moves whenever any key changes (rotation, state,
    /// alias, minimum decryption version): caches drop what they hold when
    /// it moves, so a rotation or a disable takes effect at once.
    fn epoch(&self) -> u64 {
        0
    }

    /// The primary version of the key with this id, if known.
    fn primary_version(&self, key_id: &[u8; 16]) -> Option<u32> {
        let _ = key_id;
        None
    }

    /// The KeyId of the CMK named by `key` (a KeyId or an alias), if this
    /// holder knows it: a route opens only envelopes of its own keys.
    fn key_id_of(&self, key: &str) -> Option<[u8; 16]> {
        let _ = key;
        None
    }

    /// True when a remote KMS holds the CMKs: the cache then seals with
    /// [`generate_remote_data_key`](Self::generate_remote_data_key), opens
    /// envelopes of the provider form with
    /// [`decrypt_remote_data_key`](Self::decrypt_remote_data_key), and waits
    /// for them without stalling the async runtime.
    fn is_remote(&self) -> bool {
        false
    }

    /// Asks the remote KMS for a fresh 256-bit DEK under the CMK `key`,
    /// bound to the route's context template `template` (canonical form)
    /// through the remote EncryptionContext, where the KMS has one.
    fn generate_remote_data_key(
        &self,
        key: &str,
        template: &str,
    ) -> Result<RemoteDataKey, KeyError> {
        let _ = (key, template);
        Err(KeyError::UnsupportedKeyUsage)
    }

    /// Asks the remote KMS to decrypt a DEK's CiphertextBlob, made for the
    /// context template `template` (the same EncryptionContext is sent).
    fn decrypt_remote_data_key(&self, blob: &[u8], template: &str) -> Result<DataKey, KeyError> {
        let _ = (blob, template);
        Err(KeyError::UnsupportedKeyUsage)
    }

    /// Called once for each caller the cache served with the result of a
    /// call another caller made (single flight), for metrics.
    fn note_coalesced(&self) {}
}
