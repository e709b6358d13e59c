//! The `Sealgate-Stale-Key` response header: on a route with
//! `stale_key_header = true`, names each CMK version an opened envelope was
//! sealed under that is no longer the key's primary, so an operator sees
//! what is left to migrate (`sealgate rewrap`).

use http::{HeaderMap, HeaderName, HeaderValue};

use super::counts::{FieldCounts, FieldOp};
use crate::keys::{DataKeyCache, KeyId};

/// The header name.
pub const STALE_KEY: HeaderName = HeaderName::from_static("sealgate-stale-key");

/// Adds one `Sealgate-Stale-Key: <key id>:<version>` per stale CMK version opened.
pub fn mark_stale(cache: &DataKeyCache, counts: &FieldCounts, headers: &mut HeaderMap) {
    let mut seen = Vec::new();
    for b in counts.batches.iter().filter(|b| b.op == FieldOp::Open) {
        if seen.contains(&b.cmk) {
            continue;
        }
        seen.push(b.cmk);
        let primary = cache.primary_version(&b.cmk.key_id);
        if primary.is_some_and(|p| p != b.cmk.version) {
            let text = format!("{}:{}", KeyId::from_bytes(b.cmk.key_id), b.cmk.version);
            if let Ok(v) = HeaderValue::from_str(&text) {
                headers.append(STALE_KEY, v);
            }
        }
    }
}
