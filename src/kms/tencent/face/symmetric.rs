//! Symmetric cryptography: Encrypt, Decrypt, ReEncrypt, data keys and
//! random bytes; a returned plaintext optionally wrapped under the caller's
//! RSA public key.

use super::*;

/// Decodes a PEM (or bare Base64) SubjectPublicKeyInfo.
fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .filter(|l| !l.trim_start().starts_with("-----"))
        .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
        .collect();
    B64.decode(body).ok()
}

/// Encrypts `plaintext` under the caller's RSA public key (the optional
/// `EncryptionPublicKey` of Decrypt and GenerateDataKey).
fn wrap_for_caller(w: &ReturnWrapping, plaintext: &[u8]) -> Result<Vec<u8>, TencentError> {
    let bad_key = || {
        TencentError::invalid(
            "EncryptionPublicKey",
            "must be a PEM RSA public key (SubjectPublicKeyInfo)",
        )
    };
    let rsa = |der: &[u8]| PublicEncryptingKey::from_der(der).map_err(|_| bad_key());
    let failed = || {
        TencentError::new(
            codes::FAILED_OPERATION_ENCRYPTION_ERROR,
            "Encryption failed.",
        )
    };
    match w.algorithm {
        EnvelopeAlgorithm::Sm2 | EnvelopeAlgorithm::Sm2C1C3C2Asn1 => Err(TencentError::new(
            codes::UNSUPPORTED_KEY_USAGE_IN_CURRENT_REGION,
            "SM2 is not supported by this KMS; set EncryptionAlgorithm to an RSAES_* value.",
        )),
        EnvelopeAlgorithm::RsaPkcs1V15 => {
            let der = pem_to_der(&w.public_key_pem).ok_or_else(bad_key)?;
            let k = Pkcs1PublicEncryptingKey::new(rsa(&der)?).map_err(|_| bad_key())?;
            let mut out = vec![0u8; k.ciphertext_size()];
            let n = k.encrypt(plaintext, &mut out).map_err(|_| failed())?.len();
            out.truncate(n);
            Ok(out)
        }
        EnvelopeAlgorithm::RsaOaepSha1 | EnvelopeAlgorithm::RsaOaepSha256 => {
            let der = pem_to_der(&w.public_key_pem).ok_or_else(bad_key)?;
            let k = OaepPublicEncryptingKey::new(rsa(&der)?).map_err(|_| bad_key())?;
            let alg = if w.algorithm == EnvelopeAlgorithm::RsaOaepSha1 {
                &OAEP_SHA1_MGF1SHA1
            } else {
                &OAEP_SHA256_MGF1SHA256
            };
            let mut out = vec![0u8; k.ciphertext_size()];
            let n = k
                .encrypt(alg, plaintext, &mut out, None)
                .map_err(|_| failed())?
                .len();
            out.truncate(n);
            Ok(out)
        }
    }
}

/// The returned `Plaintext`: Base64 of the plaintext, or of it encrypted
/// under the caller's public key.
fn returned_plaintext(
    wrapping: &Option<ReturnWrapping>,
    plaintext: &SecretBytes,
) -> Result<String, TencentError> {
    match wrapping {
        None => Ok(b64(plaintext.expose())),
        Some(w) => Ok(b64(&wrap_for_caller(w, plaintext.expose())?)),
    }
}

impl TencentFace {
    /// Encrypt.
    pub(super) fn encrypt(
        &self,
        caller: &Principal,
        e: wire::Encrypt,
    ) -> Result<Value, TencentError> {
        let store = &self.store;
        self.key(caller, &e.key_id)?;
        let ct = store
            .encrypt(
                &e.key_id,
                e.plaintext.expose(),
                context::aad(&e.encryption_context),
            )
            .map_err(key_error)?;
        Ok(json!({
            "CiphertextBlob": b64(&ct.blob),
            "KeyId": ct.key_id.to_string(),
        }))
    }

    /// Decrypt.
    pub(super) fn decrypt(
        &self,
        caller: &Principal,
        d: wire::Decrypt,
    ) -> Result<Value, TencentError> {
        let store = &self.store;
        let blob = self.blob(caller, &d.ciphertext_blob)?;
        let out = store
            .decrypt(&blob, context::aad(&d.encryption_context))
            .map_err(key_error)?;
        Ok(json!({
            "KeyId": out.key_id.to_string(),
            "Plaintext": returned_plaintext(&d.return_wrapping, &out.plaintext)?,
        }))
    }

    /// ReEncrypt.
    pub(super) fn re_encrypt(
        &self,
        caller: &Principal,
        r: wire::ReEncrypt,
    ) -> Result<Value, TencentError> {
        let store = &self.store;
        let blob = self.blob(caller, &r.ciphertext_blob)?;
        let source = blob_cmk(&blob).map_err(key_error)?;
        let dest = match &r.destination_key_id {
            Some(d) => d.clone(),
            None => KeyId::from_bytes(source.key_id).to_string(),
        };
        self.key(caller, &dest)?;
        let out = store
            .re_encrypt(
                &blob,
                context::aad(&r.source_encryption_context),
                &dest,
                context::aad(&r.destination_encryption_context),
            )
            .map_err(key_error)?;
        Ok(json!({
            "CiphertextBlob": b64(&out.ciphertext.blob),
            "KeyId": out.ciphertext.key_id.to_string(),
            "SourceKeyId": out.source_key_id.to_string(),
            "ReEncrypted": true,
        }))
    }

    /// GenerateDataKey.
    pub(super) fn generate_data_key(
        &self,
        caller: &Principal,
        g: wire::GenerateDataKey,
    ) -> Result<Value, TencentError> {
        let store = &self.store;
        self.key(caller, &g.key_id)?;
        if g.hosted_by_kms {
            return Err(TencentError::new(
                codes::UNSUPPORTED_OPERATION,
                "Data keys hosted by the KMS (IsHostedByKms=1) are not offered; use IsHostedByKms=0.",
            ));
        }
        let n = g.number_of_bytes as usize;
        let out = store
            .generate_data_key_blob(
                &g.key_id,
                crate::keys::DataKeySpec::Bytes(n),
                context::aad(&g.encryption_context),
            )
            .map_err(key_error)?;
        Ok(json!({
            "KeyId": out.key_id.to_string(),
            "Plaintext": returned_plaintext(&g.return_wrapping, &out.plaintext)?,
            "CiphertextBlob": b64(&out.blob),
        }))
    }

    /// GenerateRandom.
    pub(super) fn generate_random(
        &self,
        _caller: &Principal,
        g: wire::GenerateRandom,
    ) -> Result<Value, TencentError> {
        let store = &self.store;
        let r = store
            .generate_random(g.number_of_bytes as usize)
            .map_err(key_error)?;
        Ok(json!({ "Plaintext": b64(r.expose()) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_public_keys_decode() {
        let pem = "-----BEGIN PUBLIC KEY-----\nAAEC\nAwQF\n-----END PUBLIC KEY-----\n";
        assert_eq!(pem_to_der(pem), Some(vec![0, 1, 2, 3, 4, 5]));
        assert_eq!(pem_to_der("AAECAwQF"), Some(vec![0, 1, 2, 3, 4, 5]));
        assert_eq!(pem_to_der("-----BEGIN X-----\n%%%\n"), None);
    }

    #[test]
    fn sm2_return_wrapping_is_unsupported_and_bad_keys_are_refused() {
        let secret = SecretBytes::new(vec![1; 32]);
        let sm2 = ReturnWrapping {
            public_key_pem: "AAEC".into(),
            algorithm: EnvelopeAlgorithm::Sm2,
        };
        assert_eq!(
            returned_plaintext(&Some(sm2), &secret).unwrap_err().code,
            "UnsupportedOperation.UnsupportedKeyUsageInCurrentRegion"
        );
        let junk = ReturnWrapping {
            public_key_pem: "AAEC".into(),
            algorithm: EnvelopeAlgorithm::RsaOaepSha256,
        };
        assert_eq!(
            returned_plaintext(&Some(junk), &secret).unwrap_err().code,
            "InvalidParameter"
        );
        assert_eq!(returned_plaintext(&None, &secret).unwrap(), b64(&[1; 32]));
    }
}
