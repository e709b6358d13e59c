//! Symmetric cryptography: Encrypt / Decrypt / ReEncrypt and data keys
//! under the initial version, the Advance* actions under the primary one.

use super::*;

impl AlibabaFace {
    /// Encrypt.
    pub(super) fn encrypt(
        &self,
        caller: Caller<'_>,
        e: wire::Encrypt,
    ) -> Result<Value, AlibabaError> {
        let m = self.resolve(caller, &e.key.key_id)?;
        let ctx = context::aad(&e.encryption_context);
        if e.dry_run {
            let v = self.dry_run(&m.key_id)?;
            return Ok(json!({
                "KeyId": m.key_id.to_string(),
                "KeyVersionId": version_id(&m.key_id, v),
                "CiphertextBlob": "",
            }));
        }
        let (v, blob) = self.seal_initial(&m.key_id, e.plaintext.expose(), ctx)?;
        Ok(json!({
            "KeyId": m.key_id.to_string(),
            "KeyVersionId": version_id(&m.key_id, v),
            "CiphertextBlob": b64(&blob),
        }))
    }

    /// Decrypt.
    pub(super) fn decrypt(
        &self,
        caller: Caller<'_>,
        d: wire::Decrypt,
    ) -> Result<Value, AlibabaError> {
        let store = &self.store;
        let blob = Self::decode_blob(&d.ciphertext_blob)?;
        let (id, v) = self.blob_key(caller, &blob)?;
        let opened = store
            .decrypt(&blob, context::aad(&d.encryption_context))
            .map_err(key_error)?;
        Ok(json!({
            "KeyId": id.to_string(),
            "KeyVersionId": version_id(&id, v),
            "Plaintext": if d.dry_run { String::new() } else { plaintext_text(&opened.plaintext) },
        }))
    }

    /// ReEncrypt.
    pub(super) fn re_encrypt(
        &self,
        caller: Caller<'_>,
        r: wire::ReEncrypt,
    ) -> Result<Value, AlibabaError> {
        let store = &self.store;
        if r.source_key_id.is_some()
            || r.source_key_version_id.is_some()
            || r.source_encryption_algorithm.is_some()
        {
            return Err(AlibabaError::new(
                codes::UNSUPPORTED_OPERATION,
                "Asymmetric source keys (SourceKeyId, SourceKeyVersionId, SourceEncryptionAlgorithm) are not served; sealgate holds symmetric keys only.",
            ));
        }
        let blob = Self::decode_blob(&r.ciphertext_blob)?;
        let (src, src_v) = self.blob_key(caller, &blob)?;
        let dest = self.resolve(caller, &r.destination_key.key_id)?;
        let opened = store
            .decrypt(&blob, context::aad(&r.source_encryption_context))
            .map_err(key_error)?;
        if r.dry_run {
            let v = self.dry_run(&dest.key_id)?;
            return Ok(json!({
                "KeyId": dest.key_id.to_string(),
                "KeyVersionId": version_id(&dest.key_id, v),
                "CiphertextBlob": "",
                "SourceKeyId": src.to_string(),
                "SourceKeyVersionId": version_id(&src, src_v),
            }));
        }
        let (v, new_blob) = self.seal_initial(
            &dest.key_id,
            opened.plaintext.expose(),
            context::aad(&r.destination_encryption_context),
        )?;
        Ok(json!({
            "KeyId": dest.key_id.to_string(),
            "KeyVersionId": version_id(&dest.key_id, v),
            "CiphertextBlob": b64(&new_blob),
            "SourceKeyId": src.to_string(),
            "SourceKeyVersionId": version_id(&src, src_v),
        }))
    }

    /// AdvanceEncrypt.
    pub(super) fn advance_encrypt_openapi(
        &self,
        caller: Caller<'_>,
        a: wire::AdvanceEncrypt,
    ) -> Result<Value, AlibabaError> {
        let s = self.advance_encrypt(caller, a)?;
        let h = &s.sealed.header;
        Ok(json!({
            "KeyId": s.key_id,
            "KeyVersionId": h.key_version_id,
            "CiphertextBlob": b64(&s.sealed.blob),
            "Algorithm": h.algorithm.as_str(),
            "Iv": b64(&h.iv),
            "PaddingMode": h.padding.map(|p| p.as_str()).unwrap_or(""),
        }))
    }

    /// AdvanceDecrypt.
    pub(super) fn advance_decrypt_openapi(
        &self,
        caller: Caller<'_>,
        d: wire::AdvanceDecrypt,
    ) -> Result<Value, AlibabaError> {
        let o = self.advance_decrypt(caller, d)?;
        Ok(json!({
            "KeyId": o.key_id,
            "KeyVersionId": o.key_version_id,
            "Plaintext": b64(o.plaintext.expose()),
            "Algorithm": o.algorithm.map(|a| a.as_str()).unwrap_or(""),
            "PaddingMode": o.padding.map(|p| p.as_str()).unwrap_or(""),
        }))
    }

    /// AdvanceGenerateDataKey.
    pub(super) fn advance_generate_data_key_openapi(
        &self,
        caller: Caller<'_>,
        g: wire::AdvanceGenerateDataKey,
    ) -> Result<Value, AlibabaError> {
        let (s, dk) = self.advance_generate_data_key(caller, g)?;
        let h = &s.sealed.header;
        Ok(json!({
            "KeyId": s.key_id,
            "KeyVersionId": h.key_version_id,
            "Iv": b64(&h.iv),
            "Plaintext": b64(dk.expose()),
            "CiphertextBlob": b64(&s.sealed.blob),
            "Algorithm": h.algorithm.as_str(),
        }))
    }
}
