//! Store errors in Alibaba's terms: the one place a [`KeyError`] becomes an
//! Alibaba error code and status (see docs/kms-alibaba.md).

use super::advance::AdvanceError;
use super::wire::{codes, AlibabaError};
use crate::keys::KeyError;

/// `InvalidCiphertext`, saying why.
pub(super) fn invalid_ciphertext(why: &str) -> AlibabaError {
    AlibabaError::new(
        codes::INVALID_CIPHERTEXT,
        format!("The CiphertextBlob {why}."),
    )
}

/// `InternalFailure`; the detail goes to the log only.
pub(super) fn internal(what: &str) -> AlibabaError {
    tracing::error!(what, "Alibaba face: internal failure");
    AlibabaError::new(
        codes::INTERNAL_FAILURE,
        "Internal error; retry, and report the RequestId if it persists.",
    )
}

/// The generic mapping of store errors to Alibaba codes; handlers that
/// know better (an alias that is not found) check first.
pub(super) fn key_error(e: KeyError) -> AlibabaError {
    match e {
        KeyError::CmkNotFound => AlibabaError::key_not_found(),
        KeyError::CmkDisabled => {
            AlibabaError::new(codes::KEY_DISABLED, "The specified key is disabled.")
        }
        KeyError::CmkPendingDelete => AlibabaError::new(
            codes::UNEXPECTED_STATE,
            "The specified key is pending deletion.",
        ),
        KeyError::CmkPendingImport => AlibabaError::new(
            codes::UNEXPECTED_STATE,
            "The specified key is waiting for its key material to be imported.",
        ),
        KeyError::InvalidState(m) => AlibabaError::new(codes::UNEXPECTED_STATE, m),
        KeyError::UsageMismatch | KeyError::UnsupportedKeyUsage => AlibabaError::new(
            codes::ONLY_SYMMETRIC_KEY,
            "The specified key is not a symmetric key. The API only supports symmetric keys.",
        ),
        KeyError::VersionRetired => AlibabaError::new(
            codes::UNEXPECTED_STATE,
            "The key version of this ciphertext is below the key's minimum decryption version.",
        ),
        KeyError::DoesNotOpen => invalid_ciphertext(
            "does not decrypt (wrong EncryptionContext or Aad, damaged, or not made by this KMS)",
        ),
        KeyError::VersionNotFound => AlibabaError::new(
            codes::KEY_VERSION_NOT_FOUND,
            "The specified key version is not found.",
        ),
        KeyError::InvalidAlias => AlibabaError::value(
            codes::INVALID_ALIAS_NAME,
            "AliasName",
            "alias/ followed by 1-60 letters, digits, - or _ (starting with a letter or digit) in sealgate",
        ),
        KeyError::AliasAlreadyExists | KeyError::ImportConflict(_) => AlibabaError::new(
            codes::RESOURCE_EXISTS,
            "The specified alias already exists.",
        ),
        KeyError::InvalidParameter(m) => AlibabaError::new(
            codes::INVALID_PARAMETER,
            format!("A specified parameter is not valid: {m}."),
        ),
        KeyError::LimitExceeded => AlibabaError::new(
            codes::LIMIT_EXCEEDED,
            "The number of keys has reached the limit.",
        ),
        KeyError::DuplicateTagKey => AlibabaError::invalid("Tags", "a TagKey is listed twice"),
        KeyError::Store(m) | KeyError::Unavailable(m) => internal(&m),
    }
}

/// Errors of the Advance* sealing in Alibaba's terms.
pub(super) fn advance_error(e: AdvanceError) -> AlibabaError {
    match e {
        AdvanceError::PlaintextTooLarge => AlibabaError::invalid(
            "Plaintext",
            "at most 6 KB per call; encrypt a data key instead (envelope encryption)",
        ),
        AdvanceError::EmptyPlaintext => AlibabaError::missing("Plaintext"),
        AdvanceError::AadTooLarge => AlibabaError::invalid("Aad", "at most 8192 bytes"),
        e @ AdvanceError::BadIvLength { .. } => AlibabaError::invalid("Iv", &e.to_string()),
        e @ AdvanceError::NotBlockAligned => AlibabaError::invalid("Plaintext", &e.to_string()),
        AdvanceError::BadKeyName => internal("KeyId or KeyVersionId too long for a blob"),
        AdvanceError::DoesNotOpen => {
            invalid_ciphertext("does not decrypt (wrong Aad, damaged, or not made by this KMS)")
        }
    }
}

impl From<KeyError> for AlibabaError {
    fn from(e: KeyError) -> Self {
        key_error(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_get_alibabas_codes_and_statuses() {
        let c = |e| {
            let a = key_error(e);
            (a.code, a.status)
        };
        assert_eq!(
            c(KeyError::UsageMismatch),
            ("Forbidden.OnlySymmetricKeySupported", 404)
        );
        assert_eq!(c(KeyError::CmkNotFound), ("Forbidden.KeyNotFound", 404));
        assert_eq!(c(KeyError::DoesNotOpen), ("InvalidCiphertext", 400));
        assert_eq!(c(KeyError::CmkDisabled), ("Rejected.Disabled", 409));
        assert_eq!(
            c(KeyError::VersionNotFound),
            ("Forbidden.KeyVersionNotFound", 404)
        );
        let internal = key_error(KeyError::Store("disk /x failed".into()));
        assert_eq!(internal.code, "InternalFailure");
        assert!(
            !internal.message.contains("/x"),
            "store detail stays in the log"
        );
    }
}
