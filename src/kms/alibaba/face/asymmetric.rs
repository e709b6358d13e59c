//! Asymmetric keys: the public key, signing and verification of a digest,
//! RSAES-OAEP encryption and decryption.

use super::*;

impl AlibabaFace {
    /// GetPublicKey.
    pub(super) fn get_public_key(
        &self,
        caller: Caller<'_>,
        v: wire::KeyVersionRef,
    ) -> Result<Value, AlibabaError> {
        let (m, kv) = self.asymmetric_key(caller, &v, Purpose::Any)?;
        if v.dry_run {
            return self.dry_run_asymmetric(&m, kv, "PublicKey", json!(""));
        }
        let der = self
            .store
            .with_private_key(&m.key_id.to_string(), |_, k| k.public_key_der())
            .and_then(|r| r)
            .map_err(key_error)?;
        Ok(json!({
            "KeyId": m.key_id.to_string(),
            "KeyVersionId": kv,
            "PublicKey": public_key_pem(&der),
        }))
    }

    /// AsymmetricSign.
    pub(super) fn asymmetric_sign(
        &self,
        caller: Caller<'_>,
        a: wire::AsymmetricSign,
    ) -> Result<Value, AlibabaError> {
        let (m, kv) = self.asymmetric_key(caller, &a.version, Purpose::Sign)?;
        let alg = signing_algorithm(&m, a.algorithm)?;
        if a.version.dry_run {
            return self.dry_run_asymmetric(&m, kv, "Value", json!(""));
        }
        let sig = self
            .store
            .with_private_key(&m.key_id.to_string(), |_, k| {
                k.sign(alg, SignInput::Digest(&a.digest))
            })
            .and_then(|r| r)
            .map_err(key_error)?;
        Ok(json!({
            "KeyId": m.key_id.to_string(),
            "KeyVersionId": kv,
            "Value": b64(&sig),
        }))
    }

    /// AsymmetricVerify.
    pub(super) fn asymmetric_verify(
        &self,
        caller: Caller<'_>,
        a: wire::AsymmetricVerify,
    ) -> Result<Value, AlibabaError> {
        let (m, kv) = self.asymmetric_key(caller, &a.version, Purpose::Sign)?;
        let alg = signing_algorithm(&m, a.algorithm)?;
        if a.version.dry_run {
            return self.dry_run_asymmetric(&m, kv, "Value", json!(false));
        }
        let valid = self
            .store
            .with_private_key(&m.key_id.to_string(), |_, k| {
                k.verify(alg, SignInput::Digest(&a.digest), &a.value)
            })
            .and_then(|r| r)
            .map_err(key_error)?;
        Ok(json!({
            "KeyId": m.key_id.to_string(),
            "KeyVersionId": kv,
            "Value": valid,
        }))
    }

    /// AsymmetricEncrypt.
    pub(super) fn asymmetric_encrypt(
        &self,
        caller: Caller<'_>,
        a: wire::AsymmetricEncrypt,
    ) -> Result<Value, AlibabaError> {
        let (m, kv) = self.asymmetric_key(caller, &a.version, Purpose::Decrypt)?;
        let oaep = oaep_algorithm(a.algorithm)?;
        if a.version.dry_run {
            return self.dry_run_asymmetric(&m, kv, "CiphertextBlob", json!(""));
        }
        let der = self
            .store
            .with_private_key(&m.key_id.to_string(), |_, k| k.public_key_der())
            .and_then(|r| r)
            .map_err(key_error)?;
        let blob = oaep_encrypt(&der, oaep, a.plaintext.expose())?;
        Ok(json!({
            "KeyId": m.key_id.to_string(),
            "KeyVersionId": kv,
            "CiphertextBlob": b64(&blob),
        }))
    }

    /// AsymmetricDecrypt.
    pub(super) fn asymmetric_decrypt(
        &self,
        caller: Caller<'_>,
        a: wire::AsymmetricDecrypt,
    ) -> Result<Value, AlibabaError> {
        let (m, kv) = self.asymmetric_key(caller, &a.version, Purpose::Decrypt)?;
        let padding = oaep_algorithm(a.algorithm)?;
        if a.version.dry_run {
            return self.dry_run_asymmetric(&m, kv, "Plaintext", json!(""));
        }
        let plaintext = self
            .store
            .with_private_key(&m.key_id.to_string(), |_, k| {
                k.decrypt(padding, &a.ciphertext_blob)
            })
            .and_then(|r| r)
            .map_err(|e| match e {
                KeyError::DoesNotOpen => {
                    invalid_ciphertext("does not decrypt with this key version and Algorithm")
                }
                e => key_error(e),
            })?;
        Ok(json!({
            "KeyId": m.key_id.to_string(),
            "KeyVersionId": kv,
            "Plaintext": b64(plaintext.expose()),
        }))
    }
}
