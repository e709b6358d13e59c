//! Asymmetric keys (aws-lc-rs): public keys, RSA decryption, signing and
//! verification, and the algorithms offered.

use super::*;

/// Tencent's signing algorithm names, per key usage. `ECC_P256_R1` is the
/// documented name for ASYMMETRIC_SIGN_VERIFY_ECC keys (`ECC` is accepted as
/// well); ASYMMETRIC_SIGN_VERIFY_ECDSA384 keys sign with `ECC_P384_R1`
/// (ECDSA P-384, SHA-384) — the document names no algorithm for them.
const SIGNING_ALGORITHMS: &[(KeyUsage, &str, SigningAlgorithm)] = &[
    (
        KeyUsage::AsymmetricSignVerifyRsa2048,
        "RSA_PSS_SHA_256",
        SigningAlgorithm::RsaPssSha256,
    ),
    (
        KeyUsage::AsymmetricSignVerifyRsa2048,
        "RSA_PKCS1_SHA_256",
        SigningAlgorithm::RsaPkcs1Sha256,
    ),
    (
        KeyUsage::AsymmetricSignVerifyRsa4096,
        "RSA_PSS_SHA_256",
        SigningAlgorithm::RsaPssSha256,
    ),
    (
        KeyUsage::AsymmetricSignVerifyRsa4096,
        "RSA_PKCS1_SHA_256",
        SigningAlgorithm::RsaPkcs1Sha256,
    ),
    (
        KeyUsage::AsymmetricSignVerifyRsa3072,
        "RSA_PSS_SHA_256",
        SigningAlgorithm::RsaPssSha256,
    ),
    (
        KeyUsage::AsymmetricSignVerifyRsa3072,
        "RSA_PKCS1_SHA_256",
        SigningAlgorithm::RsaPkcs1Sha256,
    ),
    (
        KeyUsage::AsymmetricSignVerifyEcc,
        "ECC_P256_R1",
        SigningAlgorithm::EcdsaP256Sha256,
    ),
    (
        KeyUsage::AsymmetricSignVerifyEcc,
        "ECC",
        SigningAlgorithm::EcdsaP256Sha256,
    ),
    (
        KeyUsage::AsymmetricSignVerifyEcdsa384,
        "ECC_P384_R1",
        SigningAlgorithm::EcdsaP384Sha384,
    ),
];

/// The scheme `name` means for a key of `usage`; `UsageMismatch` for a key
/// that does not sign, `InvalidParameter` for a name it does not sign with.
fn signing_algorithm(usage: KeyUsage, name: &str) -> Result<SigningAlgorithm, KeyError> {
    if !usage.is_signing() {
        return Err(KeyError::UsageMismatch);
    }
    SIGNING_ALGORITHMS
        .iter()
        .find(|(u, n, _)| *u == usage && *n == name)
        .map(|(_, _, a)| *a)
        .ok_or_else(|| {
            let names: Vec<&str> = SIGNING_ALGORITHMS
                .iter()
                .filter(|(u, _, _)| *u == usage)
                .map(|(_, n, _)| *n)
                .collect();
            KeyError::InvalidParameter(format!(
                "Algorithm {name} is not one of this {} key's: {}",
                usage_str(usage),
                names.join(", ")
            ))
        })
}

fn sign_input(message: &[u8], message_type: MessageType) -> SignInput<'_> {
    match message_type {
        MessageType::Raw => SignInput::Raw(message),
        MessageType::Digest => SignInput::Digest(message),
    }
}

/// ListAlgorithms: what this KMS serves (SM2 is not listed).
fn list_algorithms() -> Value {
    let info = |usage: KeyUsage, algorithm: &str| json!({ "KeyUsage": usage_str(usage), "Algorithm": algorithm });
    let signing: Vec<Value> = SIGNING_ALGORITHMS
        .iter()
        .filter(|(u, n, _)| {
            // Tencent's own usages only
            !matches!(
                u,
                KeyUsage::AsymmetricSignVerifyRsa4096 | KeyUsage::AsymmetricSignVerifyRsa3072
            ) && *n != "ECC"
        })
        .map(|(u, n, _)| info(*u, n))
        .collect();
    json!({
        "SymmetricAlgorithms": [info(KeyUsage::EncryptDecrypt, "AES_256")],
        "AsymmetricAlgorithms": [
            info(KeyUsage::AsymmetricDecryptRsa2048, "RSAES_PKCS1_V1_5"),
            info(KeyUsage::AsymmetricDecryptRsa2048, "RSAES_OAEP_SHA_1"),
            info(KeyUsage::AsymmetricDecryptRsa2048, "RSAES_OAEP_SHA_256"),
        ],
        "AsymmetricSignVerifyAlgorithms": signing,
    })
}

impl TencentFace {
    /// Runs `f` with the private key of an enabled asymmetric CMK the
    /// caller may use; a symmetric key is `InvalidKeyUsage`.
    pub(super) fn private_key<R>(
        &self,
        caller: &Principal,
        key: &str,
        f: impl FnOnce(&KeyMetadata, &PrivateKey) -> Result<R, KeyError>,
    ) -> Result<R, TencentError> {
        let m = self.key(caller, key)?;
        self.store
            .with_private_key(&m.key_id.to_string(), f)
            .and_then(|r| r)
            .map_err(asymmetric_error)
    }

    /// GetPublicKey.
    pub(super) fn get_public_key(
        &self,
        caller: &Principal,
        k: wire::KeyRef,
    ) -> Result<Value, TencentError> {
        let (m, der) = self.private_key(caller, &k.key_id, |m, key| {
            Ok((m.clone(), key.public_key_der()?))
        })?;
        Ok(json!({
            "KeyId": m.key_id.to_string(),
            "PublicKey": b64(&der),
            "PublicKeyPem": public_key_pem(&der),
        }))
    }

    /// AsymmetricRsaDecrypt.
    pub(super) fn asymmetric_rsa_decrypt(
        &self,
        caller: &Principal,
        r: wire::AsymmetricRsaDecrypt,
    ) -> Result<Value, TencentError> {
        let padding = match r.algorithm {
            RsaAlgorithm::Pkcs1V15 => RsaPadding::Pkcs1V15,
            RsaAlgorithm::OaepSha1 => RsaPadding::OaepSha1,
            RsaAlgorithm::OaepSha256 => RsaPadding::OaepSha256,
        };
        let (m, plaintext) = self.private_key(caller, &r.key_id, |m, key| {
            if !matches!(
                m.key_usage,
                KeyUsage::AsymmetricDecryptRsa2048 | KeyUsage::AsymmetricDecryptRsa3072
            ) {
                return Err(KeyError::UsageMismatch);
            }
            Ok((m.clone(), key.decrypt(padding, &r.ciphertext)?))
        })?;
        Ok(json!({
            "KeyId": m.key_id.to_string(),
            "Plaintext": b64(plaintext.expose()),
        }))
    }

    /// AsymmetricSm2Decrypt.
    pub(super) fn asymmetric_sm2_decrypt(
        &self,
        caller: &Principal,
        r: wire::AsymmetricSm2Decrypt,
    ) -> Result<Value, TencentError> {
        // no SM2 key can exist here: any key has the wrong usage
        let m = self.key(caller, &r.key_id)?;
        Err(TencentError::new(
            codes::INVALID_KEY_USAGE,
            format!(
                "The CMK's KeyUsage is {}, not ASYMMETRIC_DECRYPT_SM2 (SM2 is not supported by this KMS).",
                usage_str(m.key_usage)
            ),
        ))
    }

    /// SignByAsymmetricKey.
    pub(super) fn sign_by_asymmetric_key(
        &self,
        caller: &Principal,
        r: wire::SignByAsymmetricKey,
    ) -> Result<Value, TencentError> {
        let signature = self.private_key(caller, &r.key_id, |m, key| {
            let alg = signing_algorithm(m.key_usage, &r.algorithm)?;
            key.sign(alg, sign_input(&r.message, r.message_type))
        })?;
        Ok(json!({ "Signature": b64(&signature) }))
    }

    /// VerifyByAsymmetricKey.
    pub(super) fn verify_by_asymmetric_key(
        &self,
        caller: &Principal,
        r: wire::VerifyByAsymmetricKey,
    ) -> Result<Value, TencentError> {
        let valid = self.private_key(caller, &r.key_id, |m, key| {
            let alg = signing_algorithm(m.key_usage, &r.algorithm)?;
            key.verify(
                alg,
                sign_input(&r.message, r.message_type),
                &r.signature_value,
            )
        })?;
        Ok(json!({ "SignatureValid": valid }))
    }

    /// ListAlgorithms.
    pub(super) fn list_algorithms(&self, _caller: &Principal) -> Result<Value, TencentError> {
        Ok(list_algorithms())
    }
}
