//! Infisical key names (slugs unique per project) mapped onto the key store,
//! PURE.
//!
//! The store has one global alias namespace (1–60 characters of letters,
//! digits, `-`, `_`). An Infisical key made here gets the alias
//! `i<26 hex>-<name>`: the hex is the first 13 bytes of
//! SHA-256(`"sealgate/infisical/project\0"` ‖ projectId), so the same name
//! in two projects gives two aliases, and the store's alias uniqueness is
//! exactly Infisical's per-project name uniqueness (a rename is one atomic
//! alias update). The project id itself, which never changes, is kept in the
//! key's tag [`PROJECT_TAG`]. `1 + 26 + 1 + 32 = 60` characters at most.

use sha2::{Digest, Sha256};

use crate::keys::{KeyId, KeyMetadata};

/// Tag key holding the Infisical project id of a key made through this face.
pub const PROJECT_TAG: &str = "infisical-project";
/// Hex characters of the project hash in an alias.
const HASH_HEX: usize = 26;

fn project_hash(project_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"sealgate/infisical/project\0");
    h.update(project_id.as_bytes());
    let digest = h.finalize();
    hex::encode(&digest[..HASH_HEX / 2])
}

/// The store alias of key `name` in project `project_id`.
pub fn alias_for(project_id: &str, name: &str) -> String {
    format!("i{}-{}", project_hash(project_id), name)
}

/// The alias a deleted key is moved to, freeing its name at once.
pub fn deleted_alias(id: &KeyId) -> String {
    format!("deleted-{}", hex::encode(id.as_bytes()))
}

/// The project id tag of a key, if it has one.
pub fn project_of(meta: &KeyMetadata) -> Option<&str> {
    meta.tags
        .iter()
        .find(|t| t.tag_key == PROJECT_TAG)
        .map(|t| t.tag_value.as_str())
}

/// The Infisical (project, name) of a key made through this face; `None`
/// for keys made elsewhere (Tencent, policies, CLI) or deleted here.
pub fn infisical_name(meta: &KeyMetadata) -> Option<(&str, &str)> {
    let project = project_of(meta)?;
    let alias = meta.alias.as_deref()?;
    let rest = alias.strip_prefix('i')?;
    let (hash, name) = rest.split_at_checked(HASH_HEX)?;
    let name = name.strip_prefix('-')?;
    (hash == project_hash(project) && !name.is_empty()).then_some((project, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::model::validate_alias;
    use crate::keys::{KeyOrigin, KeyState, KeyUsage, Tag};

    fn meta(alias: Option<String>, project: Option<&str>) -> KeyMetadata {
        KeyMetadata {
            key_id: KeyId::new_random(),
            alias,
            description: String::new(),
            key_usage: KeyUsage::EncryptDecrypt,
            origin: KeyOrigin::Kms,
            key_state: KeyState::Enabled,
            create_time: 0,
            owner: String::new(),
            tags: project
                .map(|p| {
                    vec![Tag {
                        tag_key: PROJECT_TAG.into(),
                        tag_value: p.into(),
                    }]
                })
                .unwrap_or_default(),
            key_rotation_enabled: false,
            rotate_days: 365,
            last_rotate_time: None,
            next_rotate_time: None,
            deletion_date: None,
            min_decryption_version: None,
            primary_version: Some(1),
            versions: vec![],
        }
    }

    #[test]
    fn longest_alias_is_a_valid_store_alias() {
        let name = "a".repeat(32);
        let a = alias_for(&"p".repeat(255), &name);
        assert_eq!(a.len(), 60);
        validate_alias(&a).unwrap();
        validate_alias(&deleted_alias(&KeyId::new_random())).unwrap();
    }

    #[test]
    fn same_name_in_two_projects_differs() {
        assert_ne!(alias_for("p1", "k"), alias_for("p2", "k"));
        assert_eq!(alias_for("p1", "k"), alias_for("p1", "k"));
    }

    #[test]
    fn name_is_recovered_only_with_the_matching_project_tag() {
        let m = meta(Some(alias_for("proj", "my-key")), Some("proj"));
        assert_eq!(infisical_name(&m), Some(("proj", "my-key")));
        let m = meta(Some(alias_for("proj", "my-key")), Some("other"));
        assert_eq!(infisical_name(&m), None);
        let m = meta(Some("policy-key".into()), Some("proj"));
        assert_eq!(infisical_name(&m), None);
        let m = meta(Some(alias_for("proj", "k")), None);
        assert_eq!(infisical_name(&m), None);
        let m = meta(None, Some("proj"));
        assert_eq!(infisical_name(&m), None);
    }
}
