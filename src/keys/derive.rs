//! Keys derived from a CMK version's material, for deterministic
//! (searchable) fields: `HMAC-SHA256(material, "sealgate derive v1" || 0x00 || label)`.
//!
//! The derivation runs inside the key store (the material never leaves it);
//! the same version and label always give the same key, a different label
//! an unrelated one.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use hmac::{Hmac, Mac};
use lru::LruCache;
use sha2::{Digest, Sha256};

use crate::envelope::{CmkRef, DetKey};
use crate::secret::{CmkMaterial, DataKey};

/// Label prefix of the keys deterministic fields are sealed with; the
/// route context follows it.
pub const DET_LABEL: &[u8] = b"deterministic field\0";

/// Domain-separation prefix of every derivation.
const DOMAIN: &[u8] = b"sealgate derive v1\0";

/// Derives a 32-byte key from `material` and `label`.
pub fn derive_key(material: &CmkMaterial, label: &[u8]) -> DataKey {
    // HMAC takes a key of any length, so this cannot fail for 32 bytes
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(material.expose()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(DOMAIN);
    mac.update(label);
    DataKey::from_bytes(mac.finalize().into_bytes().into())
}

/// Cache id of a derived key: a hash of what it was derived for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DerivedId([u8; 32]);

impl DerivedId {
    /// The key for the primary version of the CMK named `key`.
    pub fn primary(key: &str, context: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(b"p");
        h.update((key.len() as u64).to_le_bytes());
        h.update(key.as_bytes());
        h.update(context);
        DerivedId(h.finalize().into())
    }

    /// The key for one CMK version.
    pub fn version(cmk: &CmkRef, context: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(b"v");
        h.update(cmk.key_id);
        h.update(cmk.version.to_le_bytes());
        h.update(context);
        DerivedId(h.finalize().into())
    }
}

/// A small LRU of derived keys with their creation time and provider epoch.
pub struct DerivedKeys(Mutex<LruCache<DerivedId, DerivedEntry>>);

/// A cached derived key, when it was made, and the provider epoch then.
type DerivedEntry = (Arc<DetKey>, Instant, u64);

impl DerivedKeys {
    /// Room for `capacity` keys.
    pub fn new(capacity: NonZeroUsize) -> Self {
        DerivedKeys(Mutex::new(LruCache::new(capacity)))
    }

    /// The cached key, if `usable(created, epoch)` says it still is.
    pub fn get(
        &self,
        id: &DerivedId,
        usable: impl Fn(Instant, u64) -> bool,
    ) -> Option<Arc<DetKey>> {
        let mut m = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match m.get(id) {
            Some((k, created, epoch)) if usable(*created, *epoch) => Some(Arc::clone(k)),
            Some(_) => {
                m.pop(id);
                None
            }
            None => None,
        }
    }

    /// Caches a key.
    pub fn put(&self, id: DerivedId, key: Arc<DetKey>, created: Instant, epoch: u64) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .put(id, (key, created, epoch));
    }

    /// Drops every key.
    pub fn clear(&self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_inputs_same_key_other_label_other_key() {
        let m = CmkMaterial::from_bytes([3; 32]);
        let a = derive_key(&m, b"users");
        assert_eq!(a.expose(), derive_key(&m, b"users").expose());
        assert_ne!(a.expose(), derive_key(&m, b"orders").expose());
        assert_ne!(
            a.expose(),
            derive_key(&CmkMaterial::from_bytes([4; 32]), b"users").expose()
        );
    }
}
