//! Aliases: `alias/<name>`, one per key in sealgate.

use super::*;

impl AlibabaFace {
    /// CreateAlias.
    pub(super) fn create_alias(
        &self,
        caller: Caller<'_>,
        b: wire::AliasBinding,
    ) -> Result<Value, AlibabaError> {
        let store = &self.store;
        let ok = || Ok(json!({}));
        let m = self.resolve(caller, &b.key.key_id)?;
        let name = alias_name(&b.alias_name)?;
        if store.resolve(name).is_ok() {
            return Err(AlibabaError::new(
                codes::RESOURCE_EXISTS,
                "The specified alias already exists.",
            ));
        }
        if m.alias.is_some() {
            return Err(AlibabaError::new(
                codes::LIMIT_EXCEEDED,
                "The key already has an alias; sealgate keeps one alias per key (UpdateAlias or DeleteAlias it first).",
            ));
        }
        store
            .update_alias(&m.key_id.to_string(), name)
            .map_err(key_error)?;
        ok()
    }

    /// UpdateAlias.
    pub(super) fn update_alias(
        &self,
        caller: Caller<'_>,
        b: wire::AliasBinding,
    ) -> Result<Value, AlibabaError> {
        let store = &self.store;
        let ok = || Ok(json!({}));
        let name = alias_name(&b.alias_name)?;
        let current = self.resolve(caller, &b.alias_name)?;
        let target = self.resolve(caller, &b.key.key_id)?;
        if target.key_id != current.key_id && target.alias.is_some() {
            return Err(AlibabaError::new(
                codes::LIMIT_EXCEEDED,
                "The target key already has an alias; sealgate keeps one alias per key.",
            ));
        }
        store
            .move_alias(name, &target.key_id.to_string())
            .map_err(|e| match e {
                KeyError::CmkNotFound => alias_not_found(),
                e => key_error(e),
            })?;
        ok()
    }

    /// DeleteAlias.
    pub(super) fn delete_alias(
        &self,
        caller: Caller<'_>,
        d: wire::DeleteAlias,
    ) -> Result<Value, AlibabaError> {
        let store = &self.store;
        let ok = || Ok(json!({}));
        let name = alias_name(&d.alias_name)?;
        self.resolve(caller, &d.alias_name)?;
        store.delete_alias(name).map_err(|e| match e {
            KeyError::CmkNotFound => alias_not_found(),
            e => key_error(e),
        })?;
        ok()
    }

    /// ListAliases.
    pub(super) fn list_aliases(
        &self,
        caller: Caller<'_>,
        p: wire::Page,
    ) -> Result<Value, AlibabaError> {
        let store = &self.store;
        let mut with_alias: Vec<(String, KeyId)> = store
            .list(0, usize::MAX)
            .keys
            .into_iter()
            .filter(|m| self.may_list(caller, &m.key_id))
            .filter_map(|m| m.alias.map(|a| (a, m.key_id)))
            .collect();
        with_alias.sort();
        let total = with_alias.len();
        let aliases: Vec<Value> = page(with_alias, p)
            .into_iter()
            .map(|(a, id)| {
                json!({
                    "AliasName": format!("alias/{a}"),
                    "AliasArn": format!("{ARN_PREFIX}:alias/{a}"),
                    "KeyId": id.to_string(),
                })
            })
            .collect();
        Ok(json!({
            "Aliases": { "Alias": aliases },
            "TotalCount": total,
            "PageNumber": p.number,
            "PageSize": p.size,
        }))
    }

    /// ListAliasesByKeyId.
    pub(super) fn list_aliases_by_key_id(
        &self,
        caller: Caller<'_>,
        l: wire::ListAliasesByKeyId,
    ) -> Result<Value, AlibabaError> {
        let m = self.resolve(caller, &l.key.key_id)?;
        // sealgate keeps at most one alias per key
        let all: Vec<Value> = m
            .alias
            .iter()
            .map(|a| {
                json!({
                    "AliasName": format!("alias/{a}"),
                    "AliasArn": format!("{ARN_PREFIX}:alias/{a}"),
                    "KeyId": m.key_id.to_string(),
                })
            })
            .collect();
        let total = all.len();
        Ok(json!({
            "Aliases": { "Alias": page(all, l.page) },
            "TotalCount": total,
            "PageNumber": l.page.number,
            "PageSize": l.page.size,
        }))
    }
}
