//! Key life: create, describe, list, state, deletion, alias, description
//! and rotation.

use super::*;

fn check_rotatable(m: &KeyMetadata) -> Result<(), TencentError> {
    if m.origin == KeyOrigin::External {
        return Err(TencentError::new(
            codes::EXTERNAL_CMK_CAN_NOT_ROTATE,
            "EXTERNAL CMKs do not rotate.",
        ));
    }
    if !m.key_usage.is_symmetric() {
        return Err(TencentError::new(
            codes::ROTATE_NOT_SUPPORTED,
            "Only ENCRYPT_DECRYPT CMKs rotate.",
        ));
    }
    Ok(())
}

impl TencentFace {
    /// Enables or disables every listed key, after checking all of them.
    pub(super) fn batch(
        &self,
        caller: &Principal,
        ids: &[String],
        enable: bool,
    ) -> Result<Value, TencentError> {
        for id in ids {
            let m = self.key(caller, id)?;
            if !matches!(m.key_state, KeyState::Enabled | KeyState::Disabled) {
                return Err(key_error(
                    m.key_state
                        .unusable_error()
                        .unwrap_or(KeyError::CmkDisabled),
                ));
            }
        }
        for id in ids {
            if enable {
                self.store.enable(id).map_err(key_error)?;
            } else {
                self.store.disable(id).map_err(key_error)?;
            }
        }
        Ok(json!({}))
    }

    pub(super) fn visible_keys(&self, caller: &Principal) -> Vec<KeyMetadata> {
        let all = self.store.list(0, usize::MAX).keys;
        if self.limited(caller) {
            all.into_iter()
                .filter(|m| self.access.may_list(caller, &m.key_id.to_string()))
                .collect()
        } else {
            all
        }
    }

    /// CreateKey.
    pub(super) fn create_key(
        &self,
        caller: &Principal,
        c: wire::CreateKey,
    ) -> Result<Value, TencentError> {
        let store = &self.store;
        if self.limited(caller) {
            return Err(unauthorized());
        }
        let m = store
            .create(CreateKeyRequest {
                alias: Some(c.alias),
                description: c.description.unwrap_or_default(),
                key_usage: store_usage(c.key_usage),
                origin: if c.external {
                    KeyOrigin::External
                } else {
                    KeyOrigin::Kms
                },
                tags: c
                    .tags
                    .into_iter()
                    .map(|t| Tag {
                        tag_key: t.tag_key,
                        tag_value: t.tag_value,
                    })
                    .collect(),
                owner: caller.id().to_string(),
            })
            .map_err(key_error)?;
        caller.note_key(m.key_id);
        Ok(json!({
            "KeyId": m.key_id.to_string(),
            "Alias": m.alias.clone().unwrap_or_default(),
            "CreateTime": ts(Some(m.create_time)),
            "Description": m.description,
            "KeyState": m.key_state.as_str(),
            "KeyUsage": usage_str(m.key_usage),
            "TagCode": 0,
            "TagMsg": "",
        }))
    }

    /// DescribeKey.
    pub(super) fn describe_key(
        &self,
        caller: &Principal,
        k: wire::KeyRef,
    ) -> Result<Value, TencentError> {
        let m = self.key(caller, &k.key_id)?;
        Ok(json!({ "KeyMetadata": metadata_value(&m) }))
    }

    /// DescribeKeys.
    pub(super) fn describe_keys(
        &self,
        caller: &Principal,
        k: wire::KeyIds,
    ) -> Result<Value, TencentError> {
        let mut out = Vec::with_capacity(k.key_ids.len());
        for id in &k.key_ids {
            out.push(metadata_value(&self.key(caller, id)?));
        }
        Ok(json!({ "KeyMetadatas": out }))
    }

    /// ListKeys.
    pub(super) fn list_keys(
        &self,
        caller: &Principal,
        l: wire::ListKeys,
    ) -> Result<Value, TencentError> {
        let keys = if l.role == 1 {
            Vec::new()
        } else {
            self.visible_keys(caller)
        };
        let page: Vec<Value> = keys
            .iter()
            .skip(l.offset as usize)
            .take(l.limit as usize)
            .map(|m| json!({ "KeyId": m.key_id.to_string() }))
            .collect();
        Ok(json!({ "Keys": page, "TotalCount": keys.len() }))
    }

    /// ListKeyDetail.
    pub(super) fn list_key_detail(
        &self,
        caller: &Principal,
        l: wire::ListKeyDetail,
    ) -> Result<Value, TencentError> {
        let mut keys: Vec<KeyMetadata> = if l.role == 1 {
            Vec::new()
        } else {
            self.visible_keys(caller)
        };
        keys.retain(|m| {
            let state_ok = l
                .key_state
                .is_none_or(|s| s.as_str() == m.key_state.as_str());
            let usage_ok = l
                .key_usage
                .is_none_or(|u| u.as_str() == usage_str(m.key_usage));
            let origin_ok = match l.origin {
                wire::OriginFilter::All => true,
                wire::OriginFilter::TencentKms => m.origin == KeyOrigin::Kms,
                wire::OriginFilter::External => m.origin == KeyOrigin::External,
            };
            let search_ok = l.search_key_alias.as_deref().is_none_or(|s| {
                m.key_id.to_string().contains(s)
                    || m.alias.as_deref().is_some_and(|a| a.contains(s))
            });
            let tags_ok = l.tag_filters.iter().all(|f| {
                m.tags.iter().any(|t| {
                    t.tag_key == f.tag_key
                        && (f.tag_value.is_empty() || f.tag_value.contains(&t.tag_value))
                })
            });
            state_ok && usage_ok && origin_ok && search_ok && tags_ok
        });
        if !l.ascending {
            keys.reverse();
        }
        let page: Vec<Value> = keys
            .iter()
            .skip(l.offset as usize)
            .take(l.limit as usize)
            .map(metadata_value)
            .collect();
        Ok(json!({ "TotalCount": keys.len(), "KeyMetadatas": page }))
    }

    /// EnableKey.
    pub(super) fn enable_key(
        &self,
        caller: &Principal,
        k: wire::KeyRef,
    ) -> Result<Value, TencentError> {
        let store = &self.store;
        self.key(caller, &k.key_id)?;
        store.enable(&k.key_id).map_err(key_error)?;
        Ok(json!({}))
    }

    /// DisableKey.
    pub(super) fn disable_key(
        &self,
        caller: &Principal,
        k: wire::KeyRef,
    ) -> Result<Value, TencentError> {
        let store = &self.store;
        self.key(caller, &k.key_id)?;
        store.disable(&k.key_id).map_err(key_error)?;
        Ok(json!({}))
    }

    /// ScheduleKeyDeletion.
    pub(super) fn schedule_key_deletion(
        &self,
        caller: &Principal,
        r: wire::ScheduleKeyDeletion,
    ) -> Result<Value, TencentError> {
        let store = &self.store;
        let m = self.key(caller, &r.key_id)?;
        if m.key_state == KeyState::Enabled {
            return Err(TencentError::new(
                codes::CMK_SHOULD_BE_DISABLED,
                "Disable the CMK before scheduling its deletion.",
            ));
        }
        let m = store
            .schedule_deletion(&r.key_id, r.pending_window_in_days)
            .map_err(key_error)?;
        Ok(json!({
            "DeletionDate": ts(m.deletion_date),
            "KeyId": m.key_id.to_string(),
        }))
    }

    /// CancelKeyDeletion.
    pub(super) fn cancel_key_deletion(
        &self,
        caller: &Principal,
        k: wire::KeyRef,
    ) -> Result<Value, TencentError> {
        let store = &self.store;
        let m = self.key(caller, &k.key_id)?;
        if m.key_state != KeyState::PendingDelete {
            return Err(TencentError::new(
                codes::CMK_NOT_PENDING_DELETE,
                "The CMK is not pending deletion.",
            ));
        }
        let m = store.cancel_deletion(&k.key_id).map_err(key_error)?;
        Ok(json!({ "KeyId": m.key_id.to_string() }))
    }

    /// UpdateAlias.
    pub(super) fn update_alias(
        &self,
        caller: &Principal,
        u: wire::UpdateAlias,
    ) -> Result<Value, TencentError> {
        let store = &self.store;
        self.key(caller, &u.key_id)?;
        store.update_alias(&u.key_id, &u.alias).map_err(key_error)?;
        Ok(json!({}))
    }

    /// UpdateKeyDescription.
    pub(super) fn update_key_description(
        &self,
        caller: &Principal,
        u: wire::UpdateKeyDescription,
    ) -> Result<Value, TencentError> {
        let store = &self.store;
        self.key(caller, &u.key_id)?;
        store
            .update_description(&u.key_id, &u.description)
            .map_err(key_error)?;
        Ok(json!({}))
    }

    /// EnableKeyRotation.
    pub(super) fn enable_key_rotation(
        &self,
        caller: &Principal,
        r: wire::EnableKeyRotation,
    ) -> Result<Value, TencentError> {
        let store = &self.store;
        let m = self.key(caller, &r.key_id)?;
        check_rotatable(&m)?;
        store
            .enable_rotation(&r.key_id, Some(r.rotate_days))
            .map_err(key_error)?;
        Ok(json!({}))
    }

    /// DisableKeyRotation.
    pub(super) fn disable_key_rotation(
        &self,
        caller: &Principal,
        k: wire::KeyRef,
    ) -> Result<Value, TencentError> {
        let store = &self.store;
        self.key(caller, &k.key_id)?;
        store.disable_rotation(&k.key_id).map_err(key_error)?;
        Ok(json!({}))
    }

    /// GetKeyRotationStatus.
    pub(super) fn get_key_rotation_status(
        &self,
        caller: &Principal,
        k: wire::KeyRef,
    ) -> Result<Value, TencentError> {
        let m = self.key(caller, &k.key_id)?;
        Ok(json!({ "KeyRotationEnabled": m.key_rotation_enabled }))
    }

    /// RotateKey.
    pub(super) fn rotate_key(
        &self,
        caller: &Principal,
        k: wire::KeyRef,
    ) -> Result<Value, TencentError> {
        let store = &self.store;
        let m = self.key(caller, &k.key_id)?;
        check_rotatable(&m)?;
        store.rotate(&k.key_id).map_err(|e| match e {
            KeyError::CmkDisabled => {
                TencentError::new(codes::CMK_STATE_NOT_SUPPORT, "Only an enabled CMK rotates.")
            }
            e => key_error(e),
        })?;
        Ok(json!({ "TaskId": uuid::Uuid::new_v4().to_string() }))
    }
}
