//! EXTERNAL keys: wrapping parameters handed out, key material unwrapped
//! and imported.

use super::*;

/// Unwraps imported key material with the wrapping key.
fn unwrap_material(p: &PendingImport, wrapped: &[u8]) -> Option<SecretBytes> {
    let mut out = vec![0u8; p.key.key_size_bytes()];
    let n = match p.algorithm {
        RsaAlgorithm::Pkcs1V15 => {
            let k = Pkcs1PrivateDecryptingKey::new(p.key.clone()).ok()?;
            k.decrypt(wrapped, &mut out).ok()?.len()
        }
        RsaAlgorithm::OaepSha1 | RsaAlgorithm::OaepSha256 => {
            let k = OaepPrivateDecryptingKey::new(p.key.clone()).ok()?;
            let alg = if p.algorithm == RsaAlgorithm::OaepSha1 {
                &OAEP_SHA1_MGF1SHA1
            } else {
                &OAEP_SHA256_MGF1SHA256
            };
            k.decrypt(alg, wrapped, &mut out, None).ok()?.len()
        }
    };
    out.truncate(n);
    Some(SecretBytes::new(out))
}

impl TencentFace {
    /// An EXTERNAL key the caller may use.
    pub(super) fn external_key(
        &self,
        caller: &Principal,
        key: &str,
    ) -> Result<KeyMetadata, TencentError> {
        let m = self.key(caller, key)?;
        if m.origin != KeyOrigin::External {
            return Err(TencentError::new(
                codes::NOT_EXTERNAL_CMK,
                "The CMK is not an EXTERNAL (Type 2) key.",
            ));
        }
        Ok(m)
    }

    /// GetParametersForImport.
    pub(super) fn get_parameters_for_import(
        &self,
        caller: &Principal,
        g: wire::GetParametersForImport,
    ) -> Result<Value, TencentError> {
        let m = self.external_key(caller, &g.key_id)?;
        if m.key_state != KeyState::PendingImport {
            return Err(TencentError::new(
                codes::CMK_STATE_NOT_SUPPORT,
                "The CMK already has its key material.",
            ));
        }
        let failed = || TencentError::new(codes::INTERNAL_ERROR, "Internal error.");
        let key = PrivateDecryptingKey::generate(KeySize::Rsa2048).map_err(|_| failed())?;
        let public = key.public_key().as_der().map_err(|_| failed())?;
        let token = Alphanumeric.sample_string(&mut OsRng, 48);
        let valid_to = now_secs() + IMPORT_PARAMETERS_TTL;
        self.imports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                m.key_id,
                PendingImport {
                    token: token.clone(),
                    algorithm: g.wrapping_algorithm,
                    key,
                    valid_to,
                },
            );
        Ok(json!({
            "KeyId": m.key_id.to_string(),
            "ImportToken": token,
            "PublicKey": b64(public.as_ref()),
            "ParametersValidTo": valid_to,
        }))
    }

    /// ImportKeyMaterial.
    pub(super) fn import_key_material(
        &self,
        caller: &Principal,
        i: wire::ImportKeyMaterial,
    ) -> Result<Value, TencentError> {
        let store = &self.store;
        let m = self.external_key(caller, &i.key_id)?;
        if m.key_state != KeyState::PendingImport {
            return Err(TencentError::new(
                codes::CMK_STATE_NOT_SUPPORT,
                "The CMK already has its key material.",
            ));
        }
        if i.valid_to != 0 {
            return Err(TencentError::new(
                codes::UNSUPPORTED_OPERATION,
                "Key material expiry is not supported; omit ValidTo or pass 0.",
            ));
        }
        let material = {
            let mut imports = self.imports.lock().unwrap_or_else(PoisonError::into_inner);
            let p = imports.get(&m.key_id).ok_or_else(|| {
                TencentError::invalid(
                    "ImportToken",
                    "no import parameters were issued for this CMK (call GetParametersForImport)",
                )
            })?;
            if !bool::from(p.token.as_bytes().ct_eq(i.import_token.as_bytes())) {
                return Err(TencentError::invalid(
                    "ImportToken",
                    "not the token issued for this CMK",
                ));
            }
            if p.valid_to <= now_secs() {
                imports.remove(&m.key_id);
                return Err(TencentError::new(
                    codes::TOKEN_EXPIRED,
                    "The import token has expired; call GetParametersForImport again.",
                ));
            }
            let material = unwrap_material(p, &i.encrypted_key_material)
                .filter(|k| k.len() == 32)
                .ok_or_else(|| {
                    TencentError::new(
                        codes::INVALID_PARAMETER_DECRYPT_MATERIAL_ERROR,
                        "EncryptedKeyMaterial does not decrypt to 32 bytes of key material under the wrapping key.",
                    )
                })?;
            imports.remove(&m.key_id);
            material
        };
        store
            .import_key_material(&i.key_id, &material)
            .map_err(key_error)?;
        Ok(json!({}))
    }

    /// DeleteImportedKeyMaterial.
    pub(super) fn delete_imported_key_material(
        &self,
        caller: &Principal,
        k: wire::KeyRef,
    ) -> Result<Value, TencentError> {
        self.external_key(caller, &k.key_id)?;
        Err(TencentError::new(
            codes::UNSUPPORTED_OPERATION,
            "Deleting imported key material is not supported; schedule the CMK's deletion instead.",
        ))
    }
}
