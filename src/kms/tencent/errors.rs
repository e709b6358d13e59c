//! Store errors in Tencent's terms: the one place a [`KeyError`] becomes a
//! Tencent error code (see docs/kms-tencent.md for the table).

use super::wire::{codes, TencentError};
use crate::keys::KeyError;

/// The generic mapping of store errors to Tencent codes; actions with a more
/// precise documented code check for it before calling the store.
pub(super) fn key_error(e: KeyError) -> TencentError {
    match e {
        KeyError::CmkNotFound => TencentError::new(codes::CMK_NOT_FOUND, "The CMK does not exist."),
        KeyError::CmkDisabled => TencentError::new(codes::CMK_DISABLED, "The CMK is disabled."),
        KeyError::CmkPendingDelete => TencentError::new(
            codes::CMK_STATE_NOT_SUPPORT,
            "The CMK is pending deletion.",
        ),
        KeyError::CmkPendingImport => TencentError::new(
            codes::CMK_STATE_NOT_SUPPORT,
            "The CMK is waiting for its key material to be imported.",
        ),
        KeyError::InvalidState(m) => TencentError::new(codes::CMK_STATE_NOT_SUPPORT, m),
        KeyError::UsageMismatch => TencentError::new(
            codes::INVALID_KEY_USAGE,
            "The CMK's KeyUsage does not allow this operation.",
        ),
        KeyError::VersionRetired => TencentError::new(
            codes::CMK_STATE_NOT_SUPPORT,
            "The CMK version of this ciphertext is below the key's minimum decryption version.",
        ),
        KeyError::DoesNotOpen | KeyError::VersionNotFound => TencentError::new(
            codes::INVALID_CIPHERTEXT,
            "The ciphertext does not decrypt (wrong EncryptionContext, damaged or not made by this KMS).",
        ),
        KeyError::InvalidAlias => TencentError::value(
            codes::INVALID_ALIAS,
            "Alias",
            "1-60 letters, digits, - and _, starting with a letter or digit",
        ),
        KeyError::AliasAlreadyExists => TencentError::new(
            codes::ALIAS_ALREADY_EXISTS,
            "Another CMK already has this alias.",
        ),
        KeyError::InvalidParameter(m) => TencentError::new(codes::INVALID_PARAMETER, m),
        KeyError::LimitExceeded => TencentError::new(
            codes::CMK_LIMIT_EXCEEDED,
            "The number of CMKs has reached its limit.",
        ),
        KeyError::UnsupportedKeyUsage => TencentError::new(
            codes::UNSUPPORTED_KEY_USAGE_IN_CURRENT_REGION,
            "This KeyUsage is not supported by this KMS (no SM2; imported material is symmetric only).",
        ),
        KeyError::DuplicateTagKey => TencentError::new(
            codes::TAG_KEYS_DUPLICATED,
            "A tag key is listed twice.",
        ),
        KeyError::Store(m) | KeyError::ImportConflict(m) | KeyError::Unavailable(m) => {
            tracing::error!(error = %m, "Tencent face: key store failure");
            TencentError::new(codes::INTERNAL_ERROR, "Internal error.")
        }
    }
}

/// Errors of the asymmetric actions: as [`key_error`], except that a
/// ciphertext that does not decrypt is `FailedOperation.DecryptError` (RSA
/// padding failures say nothing more) and a bad algorithm is named.
pub(super) fn asymmetric_error(e: KeyError) -> TencentError {
    match e {
        KeyError::DoesNotOpen => TencentError::new(
            codes::FAILED_OPERATION_DECRYPT_ERROR,
            "The ciphertext does not decrypt with this key and Algorithm.",
        ),
        e => key_error(e),
    }
}

impl From<KeyError> for TencentError {
    fn from(e: KeyError) -> Self {
        key_error(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_to_documented_codes() {
        let cases = [
            (KeyError::CmkNotFound, "ResourceUnavailable.CmkNotFound"),
            (KeyError::CmkDisabled, "ResourceUnavailable.CmkDisabled"),
            (
                KeyError::CmkPendingDelete,
                "ResourceUnavailable.CmkStateNotSupport",
            ),
            (
                KeyError::CmkPendingImport,
                "ResourceUnavailable.CmkStateNotSupport",
            ),
            (
                KeyError::DoesNotOpen,
                "InvalidParameterValue.InvalidCiphertext",
            ),
            (
                KeyError::VersionNotFound,
                "InvalidParameterValue.InvalidCiphertext",
            ),
            (
                KeyError::AliasAlreadyExists,
                "InvalidParameterValue.AliasAlreadyExists",
            ),
            (KeyError::InvalidAlias, "InvalidParameterValue.InvalidAlias"),
            (KeyError::LimitExceeded, "LimitExceeded.CmkLimitExceeded"),
            (
                KeyError::UnsupportedKeyUsage,
                "UnsupportedOperation.UnsupportedKeyUsageInCurrentRegion",
            ),
            (
                KeyError::DuplicateTagKey,
                "InvalidParameterValue.TagKeysDuplicated",
            ),
            (KeyError::Store("disk on fire".into()), "InternalError"),
        ];
        for (e, code) in cases {
            assert_eq!(key_error(e.clone()).code, code, "{e:?}");
        }
        // Store failures do not leak their detail to the client.
        assert!(!key_error(KeyError::Store("disk on fire".into()))
            .message
            .contains("fire"));
    }
}
