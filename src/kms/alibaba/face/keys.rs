//! Key life: create, describe, list, state, deletion, description, versions
//! and rotation.

use super::*;

impl AlibabaFace {
    /// CreateKey.
    pub(super) fn create_key(
        &self,
        caller: Caller<'_>,
        c: wire::CreateKey,
    ) -> Result<Value, AlibabaError> {
        let store = &self.store;
        let Caller::Credential(owner) = caller else {
            return Err(forbidden_ram());
        };
        if self.limited(caller) {
            return Err(forbidden_ram());
        }
        let key_usage = store_usage(c.key_spec, c.key_usage)?;
        if !key_usage.is_symmetric() {
            if c.origin == wire::Origin::External {
                return Err(AlibabaError::new(
                    codes::UNSUPPORTED_OPERATION,
                    "sealgate imports key material (Origin EXTERNAL) for Aliyun_AES_256 keys only.",
                ));
            }
            if c.enable_automatic_rotation {
                return Err(AlibabaError::invalid(
                    "EnableAutomaticRotation",
                    "automatic rotation is for symmetric keys only",
                ));
            }
        }
        if c.protection_level != wire::ProtectionLevel::Software {
            return Err(AlibabaError::new(
                codes::UNSUPPORTED_OPERATION,
                "sealgate keys are software-protected (ProtectionLevel SOFTWARE).",
            ));
        }
        let meta = store
            .create(CreateKeyRequest {
                alias: None,
                description: c.description.unwrap_or_default(),
                key_usage,
                origin: match c.origin {
                    wire::Origin::AliyunKms => KeyOrigin::Kms,
                    wire::Origin::External => KeyOrigin::External,
                },
                tags: c
                    .tags
                    .into_iter()
                    .map(|t| Tag {
                        tag_key: t.key,
                        tag_value: t.value,
                    })
                    .collect(),
                owner: owner.id().to_string(),
            })
            .map_err(key_error)?;
        owner.note_key(meta.key_id);
        let meta = match (
            c.enable_automatic_rotation,
            interval_days(c.rotation_interval),
        ) {
            (true, Some(days)) => store
                .enable_rotation(&meta.key_id.to_string(), Some(days))
                .map_err(key_error)?,
            _ => meta,
        };
        Ok(json!({ "KeyMetadata": key_metadata(&meta) }))
    }

    /// DescribeKey.
    pub(super) fn describe_key(
        &self,
        caller: Caller<'_>,
        r: wire::KeyRef,
    ) -> Result<Value, AlibabaError> {
        let m = self.resolve(caller, &r.key_id)?;
        Ok(json!({ "KeyMetadata": key_metadata(&m) }))
    }

    /// ListKeys.
    pub(super) fn list_keys(
        &self,
        caller: Caller<'_>,
        l: wire::ListKeys,
    ) -> Result<Value, AlibabaError> {
        let store = &self.store;
        let all = store.list(0, usize::MAX).keys;
        let limited = self.limited(caller);
        let visible: Vec<KeyMetadata> = all
            .into_iter()
            .filter(|m| !limited || self.may_list(caller, &m.key_id))
            .filter(|m| l.filters.iter().all(|f| filter_matches(m, f)))
            .collect();
        let total = visible.len();
        let keys: Vec<Value> = page(visible, l.page)
            .iter()
            .map(|m| json!({ "KeyId": m.key_id.to_string(), "KeyArn": arn(&m.key_id) }))
            .collect();
        Ok(json!({
            "Keys": { "Key": keys },
            "TotalCount": total,
            "PageNumber": l.page.number,
            "PageSize": l.page.size,
        }))
    }

    /// EnableKey.
    pub(super) fn enable_key(
        &self,
        caller: Caller<'_>,
        r: wire::KeyRef,
    ) -> Result<Value, AlibabaError> {
        let store = &self.store;
        let ok = || Ok(json!({}));
        let m = self.resolve(caller, &r.key_id)?;
        store.enable(&m.key_id.to_string()).map_err(key_error)?;
        ok()
    }

    /// DisableKey.
    pub(super) fn disable_key(
        &self,
        caller: Caller<'_>,
        r: wire::KeyRef,
    ) -> Result<Value, AlibabaError> {
        let store = &self.store;
        let ok = || Ok(json!({}));
        let m = self.resolve(caller, &r.key_id)?;
        store.disable(&m.key_id.to_string()).map_err(key_error)?;
        ok()
    }

    /// ScheduleKeyDeletion.
    pub(super) fn schedule_key_deletion(
        &self,
        caller: Caller<'_>,
        s: wire::ScheduleKeyDeletion,
    ) -> Result<Value, AlibabaError> {
        let store = &self.store;
        let ok = || Ok(json!({}));
        let m = self.resolve(caller, &s.key.key_id)?;
        if s.pending_window_in_days > 30 {
            return Err(AlibabaError::invalid(
                "PendingWindowInDays",
                "sealgate keeps a pending window of 7 to 30 days",
            ));
        }
        store
            .schedule_deletion(&m.key_id.to_string(), s.pending_window_in_days)
            .map_err(key_error)?;
        ok()
    }

    /// CancelKeyDeletion.
    pub(super) fn cancel_key_deletion(
        &self,
        caller: Caller<'_>,
        r: wire::KeyRef,
    ) -> Result<Value, AlibabaError> {
        let store = &self.store;
        let ok = || Ok(json!({}));
        let m = self.resolve(caller, &r.key_id)?;
        let id = m.key_id.to_string();
        let after = store.cancel_deletion(&id).map_err(key_error)?;
        // Alibaba: a key whose deletion is cancelled is Enabled again.
        if after.key_state == KeyState::Disabled {
            store.enable(&id).map_err(key_error)?;
        }
        ok()
    }

    /// UpdateKeyDescription.
    pub(super) fn update_key_description(
        &self,
        caller: Caller<'_>,
        u: wire::UpdateKeyDescription,
    ) -> Result<Value, AlibabaError> {
        let store = &self.store;
        let ok = || Ok(json!({}));
        let m = self.resolve(caller, &u.key.key_id)?;
        store
            .update_description(&m.key_id.to_string(), &u.description)
            .map_err(key_error)?;
        ok()
    }

    /// CreateKeyVersion.
    pub(super) fn create_key_version(
        &self,
        caller: Caller<'_>,
        r: wire::KeyRef,
    ) -> Result<Value, AlibabaError> {
        let store = &self.store;
        let m = self.resolve(caller, &r.key_id)?;
        let after = store.rotate(&m.key_id.to_string()).map_err(key_error)?;
        let v = after
            .primary_version
            .and_then(|v| key_version(&after, v))
            .ok_or_else(|| internal("rotation left no primary version"))?;
        Ok(json!({ "KeyVersion": v }))
    }

    /// ListKeyVersions.
    pub(super) fn list_key_versions(
        &self,
        caller: Caller<'_>,
        l: wire::ListKeyVersions,
    ) -> Result<Value, AlibabaError> {
        let m = self.resolve(caller, &l.key.key_id)?;
        let all: Vec<Value> = m
            .versions
            .iter()
            .filter_map(|v| key_version(&m, v.version))
            .collect();
        let total = all.len();
        Ok(json!({
            "KeyVersions": { "KeyVersion": page(all, l.page) },
            "TotalCount": total,
            "PageNumber": l.page.number,
            "PageSize": l.page.size,
        }))
    }

    /// DescribeKeyVersion.
    pub(super) fn describe_key_version(
        &self,
        caller: Caller<'_>,
        d: wire::DescribeKeyVersion,
    ) -> Result<Value, AlibabaError> {
        let m = self.resolve(caller, &d.key.key_id)?;
        let v = parse_version_id(&m.key_id, &d.key_version_id)
            .and_then(|n| key_version(&m, n))
            .ok_or_else(|| key_error(KeyError::VersionNotFound))?;
        Ok(json!({ "KeyVersion": v }))
    }

    /// UpdateRotationPolicy.
    pub(super) fn update_rotation_policy(
        &self,
        caller: Caller<'_>,
        u: wire::UpdateRotationPolicy,
    ) -> Result<Value, AlibabaError> {
        let store = &self.store;
        let ok = || Ok(json!({}));
        let m = self.resolve(caller, &u.key.key_id)?;
        let id = m.key_id.to_string();
        if u.enable_automatic_rotation {
            store.enable_rotation(&id, interval_days(u.rotation_interval))
        } else {
            store.disable_rotation(&id)
        }
        .map_err(key_error)?;
        ok()
    }
}
