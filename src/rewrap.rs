//! Re-sealing stored envelopes under the primary version of their key
//! (after a rotation), without the plaintext leaving the process:
//! `sealgate rewrap`.
//!
//! Every string in a JSON document that is an envelope (`sg1.` or `sgd1.`)
//! is opened with the given context and the label the proxy would use for
//! its place (the member names of its path from its record,
//! [`crate::policy::label_of`]; the record is found by trying the whole path,
//! then each shorter tail) and sealed again under the label that opened, the same kind (random or deterministic), under the
//! primary version of its own key, or of `--key` when given. Envelopes
//! already under that primary are left as they are.
//!
//! Runs in the CLI when it opens the store itself, and in the server for
//! the admin socket's `Rewrap` request while the server holds the store
//! ([`crate::keys::admin::handle_rewrap`]).

use serde_json::Value;

use crate::envelope::{self, DetEnvelope, Envelope};
use crate::keys::{DataKeyCache, KeyError, KeyId};
use crate::policy::{label_of, Step};

/// What a rewrap did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RewrapCounts {
    /// Envelopes sealed again under a primary version.
    pub rewrapped: u64,
    /// Envelopes already under the primary, left as they are.
    pub current: u64,
}

/// Why a document could not be rewrapped. Carries the path, never a value.
#[derive(Debug, thiserror::Error)]
pub enum RewrapError {
    /// An envelope did not parse or open with this context and its label.
    #[error("the envelope at {path} does not open (wrong --context, moved, or damaged)")]
    DoesNotOpen {
        /// Normalized path of the value.
        path: String,
    },
    /// An envelope of the provider form (`sg2.`): its data key is wrapped
    /// by a remote KMS, which versions its own keys.
    #[error(
        "the envelope at {path} is of the provider form (sg2.): its data key is wrapped by a \
         remote KMS, not by sealgate's key store, so sealgate rewrap does not apply; rotate the \
         key in that KMS (its Decrypt keeps opening what older versions wrapped)"
    )]
    ProviderForm {
        /// Normalized path of the value.
        path: String,
    },
    /// The key store refused.
    #[error("the envelope at {path}: {source}")]
    Key {
        /// Normalized path of the value.
        path: String,
        /// The store's error.
        source: KeyError,
    },
}

fn path_text(steps: &[Step]) -> String {
    let mut s = String::from("$");
    for st in steps {
        match st {
            Step::Member(m) => s.push_str(&format!("[{}]", Value::String(m.clone()))),
            Step::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Rewraps every envelope in `value`.
pub fn rewrap_value(
    cache: &DataKeyCache,
    key: Option<&str>,
    context: &str,
    value: &mut Value,
    counts: &mut RewrapCounts,
) -> Result<(), RewrapError> {
    let mut steps = Vec::new();
    walk(cache, key, context, value, &mut steps, counts)
}

fn walk(
    cache: &DataKeyCache,
    key: Option<&str>,
    context: &str,
    value: &mut Value,
    steps: &mut Vec<Step>,
    counts: &mut RewrapCounts,
) -> Result<(), RewrapError> {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                steps.push(Step::Member(k.clone()));
                walk(cache, key, context, v, steps, counts)?;
                steps.pop();
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                steps.push(Step::Index(i));
                walk(cache, key, context, v, steps, counts)?;
                steps.pop();
            }
        }
        Value::String(s) if envelope::looks_like_envelope(s) => {
            if let Some(new) = rewrap_one(cache, key, context, s, steps, counts)? {
                *s = new;
            }
        }
        _ => {}
    }
    Ok(())
}

fn rewrap_one(
    cache: &DataKeyCache,
    key: Option<&str>,
    context: &str,
    text: &str,
    steps: &[Step],
    counts: &mut RewrapCounts,
) -> Result<Option<String>, RewrapError> {
    // the label starts at the value's record, which a document alone does
    // not say: try the whole path first, then each shorter tail (a record in
    // `items`, `data`, `rows[*].doc` …); re-seal under the label that opened
    let aads: Vec<Vec<u8>> = {
        let mut labels: Vec<String> = (0..=steps.len()).map(|k| label_of(&steps[k..])).collect();
        labels.dedup();
        labels
            .into_iter()
            .filter(|l| !l.is_empty())
            .map(|label| {
                let mut aad = context.as_bytes().to_vec();
                aad.push(0);
                aad.extend_from_slice(label.as_bytes());
                aad
            })
            .collect()
    };
    let path = || path_text(steps);
    let key_err = |source| RewrapError::Key {
        path: path(),
        source,
    };
    let dne = || RewrapError::DoesNotOpen { path: path() };
    if text.starts_with(envelope::PROVIDER_PREFIX) {
        return Err(RewrapError::ProviderForm { path: path() });
    }
    if envelope::looks_deterministic(text) {
        let env = DetEnvelope::parse(text).map_err(|_| dne())?;
        let cmk = env.cmk();
        let target = key.map_or_else(|| KeyId::from_bytes(cmk.key_id).to_string(), str::to_owned);
        let opener = cache
            .deterministic_opening_key(&cmk, context.as_bytes())
            .map_err(key_err)?;
        let (aad, opened) = aads
            .iter()
            .find_map(|aad| env.open(&opener, aad).ok().map(|o| (aad, o)))
            .ok_or_else(dne)?;
        let sealer = cache
            .deterministic_key(&target, context.as_bytes())
            .map_err(key_err)?;
        if sealer.cmk == cmk {
            counts.current += 1;
            return Ok(None);
        }
        let new = envelope::seal_deterministic(&sealer, opened.json(), aad).map_err(|_| dne())?;
        counts.rewrapped += 1;
        return Ok(Some(new));
    }
    let env = Envelope::parse(text).map_err(|_| dne())?;
    let cmk = env.cmk();
    let target = key.map_or_else(|| KeyId::from_bytes(cmk.key_id).to_string(), str::to_owned);
    let cipher = cache.envelope_key(&env).map_err(key_err)?;
    let (aad, opened) = aads
        .iter()
        .find_map(|aad| env.open(&cipher, aad).ok().map(|o| (aad, o)))
        .ok_or_else(dne)?;
    let sealer = cache
        .sealing_key(&target, context.as_bytes(), opened.json().len())
        .map_err(key_err)?;
    if sealer.cmk == cmk {
        counts.current += 1;
        return Ok(None);
    }
    let new =
        envelope::seal(&sealer, opened.json(), aad, &mut rand::thread_rng()).map_err(|_| dne())?;
    counts.rewrapped += 1;
    Ok(Some(new))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{provider_field, seal, CmkRef, SealingKey, WrappedDek};
    use crate::keys::{CacheConfig, KeyStore, RootKeySource};
    use crate::secret::{DataKey, DekCipher};
    use std::sync::Arc;

    #[test]
    fn an_sg2_envelope_is_refused_clearly_and_nothing_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(KeyStore::open(dir.path(), RootKeySource::Auto, Default::default()).unwrap());
        let cache = DataKeyCache::with_system_clock(store, CacheConfig::default());
        let k = SealingKey {
            cmk: CmkRef {
                key_id: [1; 16],
                version: 0,
            },
            wrapped: WrappedDek([0; 40]),
            cipher: DekCipher::new(&DataKey::from_bytes([3; 32])),
            remote: Some(provider_field(&[1; 16], "users", &[9; 48]).unwrap()),
        };
        let sealed = seal(&k, b"\"123\"", b"users\0ssn", &mut rand::thread_rng()).unwrap();
        let mut doc = serde_json::json!({ "ssn": sealed });
        let before = doc.clone();
        let mut counts = RewrapCounts::default();
        let e = rewrap_value(&cache, None, "users", &mut doc, &mut counts).unwrap_err();
        assert!(matches!(e, RewrapError::ProviderForm { .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("$[\"ssn\"]") && msg.contains("sg2.") && msg.contains("remote KMS"));
        assert_eq!(doc, before);
        assert_eq!(counts, RewrapCounts::default());
    }
}
