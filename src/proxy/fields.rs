//! Sealing and opening the selected fields of one JSON body, with the
//! route's key and context. Errors come back as [`ProxyError`]s that carry
//! no field value.

use super::counts::{FieldCounts, FieldOp};
use super::error::{BodyError, BodySide, ClientError, ProxyError};
use crate::envelope::{self, CmkRef, DetEnvelope, Envelope, Opened, SealingKey};
use crate::keys::{DataKeyCache, KeyError};
use crate::policy::{self, OnOpenFailure, OnPlaintext, SelectorSet};

/// The AAD context of one field: the route's context and the field label.
pub(super) fn field_context(context: &str, label: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(context.len() + 1 + label.len());
    push_field_context(&mut v, context, label);
    v
}

/// Appends [`field_context`] to `out` (to reuse one buffer for many fields).
fn push_field_context(out: &mut Vec<u8>, context: &str, label: &str) {
    out.extend_from_slice(context.as_bytes());
    out.push(0);
    out.extend_from_slice(label.as_bytes());
}

/// Seals every value `selectors` pick in `body` under `key`.
/// Returns `None` when nothing was selected.
///
/// One data-key lookup serves the whole body (the cache counts all its
/// values and bytes at once), each envelope is written straight into the
/// rewritten body, and one buffer holds every field's AAD in turn.
///
/// `partition` picks the cached data key (see [`DataKeyCache::partition`]);
/// `context` goes into every field's AAD.
#[allow(clippy::too_many_arguments)]
pub fn seal_fields(
    cache: &DataKeyCache,
    key: &str,
    partition: &str,
    context: &str,
    body: &[u8],
    selectors: &SelectorSet,
    counts: &mut FieldCounts,
    side: BodySide,
) -> Result<Option<Vec<u8>>, ProxyError> {
    let mut rng = rand::thread_rng();
    let mut aad = Vec::new();
    policy::rewrite_into(
        body,
        selectors,
        |sites| {
            cache
                .sealing_key_for_batch(key, partition.as_bytes(), sites.count, sites.raw_bytes)
                .map_err(ProxyError::from_key)
        },
        |site, out, batch_key| {
            let single;
            let sk: &SealingKey = match batch_key {
                Some(k) => k,
                None => {
                    single = cache
                        .sealing_key(key, partition.as_bytes(), site.raw.len())
                        .map_err(ProxyError::from_key)?;
                    &single
                }
            };
            aad.clear();
            push_field_context(&mut aad, context, site.label);
            out.push(b'"');
            envelope::seal_append(sk, site.raw, &aad, &mut rng, out)
                .map_err(|_| ProxyError::Client(ClientError::SelectedValueNotJson))?;
            out.push(b'"');
            counts.note(FieldOp::Seal, sk.cmk);
            Ok(Some(()))
        },
    )
    .map_err(|e| ProxyError::from_rewrite(e, side))
}

/// Whose envelopes a route opens, and its name for error messages.
#[derive(Debug, Clone, Copy)]
pub struct OpenScope<'a> {
    /// The route's name.
    pub route: &'a str,
    /// KeyIds of the CMKs whose envelopes the route opens (its own key and
    /// those it lists in `open_keys`, as far as the provider knows them).
    /// Only these open: an empty list opens nothing.
    pub keys: &'a [[u8; 16]],
}

impl OpenScope<'_> {
    /// Fails closed: a key the route does not name, or names but the
    /// provider cannot resolve now, is foreign.
    fn allows(&self, cmk: &CmkRef) -> bool {
        self.keys.contains(&cmk.key_id)
    }
}

/// The KeyIds of a route's own key and its `open_keys` that the provider
/// knows now. A name it cannot resolve (an alias deleted or moved away, a
/// key this node's store does not hold, a store that cannot be read) adds
/// nothing: its envelopes do not open, rather than any key's opening.
pub fn route_key_ids(cache: &DataKeyCache, route: &policy::Route) -> Vec<[u8; 16]> {
    std::iter::once(&route.key)
        .chain(&route.open_keys)
        .filter_map(|k| cache.key_id_of(k))
        .collect()
}

/// Why a field did not open, in words (the metric code is the short form).
fn reason_text(reason: &str) -> &'static str {
    match reason {
        "malformed" => "it is not a well-formed envelope (damaged or truncated)",
        "unknown_key" => "its envelope names a key this store does not hold",
        "foreign_key" => "it was sealed under a key this route does not open (see open_keys)",
        "does_not_open" => {
            "wrong label or context (sealed at another place or route), or tampered with"
        }
        "key_unavailable" => "its key version is retired, disabled or pending deletion",
        _ => "the key store refused",
    }
}

/// Opens every envelope `selectors` pick in `body`.
#[allow(clippy::too_many_arguments)]
pub fn open_fields(
    cache: &DataKeyCache,
    scope: OpenScope<'_>,
    context: &str,
    body: &[u8],
    selectors: &SelectorSet,
    on_plaintext: OnPlaintext,
    on_open_failure: OnOpenFailure,
    counts: &mut FieldCounts,
    side: BodySide,
) -> Result<Option<Vec<u8>>, ProxyError> {
    let bad_place =
        |msg: &'static str| ProxyError::body(side, BodyError::FieldDoesNotOpen(msg.into()));
    // names the route, the field's place and the reason class: never the value
    let described = |mut e: ProxyError, reason: &str, label: &str, offset: usize| {
        let path = || policy::path_at(body, offset).unwrap_or_else(|| "?".into());
        let applied = e.describe_field(|| {
            format!(
                "route '{}': the field at {} (label '{label}') does not open: {} [{reason}]",
                scope.route,
                path(),
                if reason == "plaintext" {
                    "it holds plaintext where an envelope is required"
                } else {
                    reason_text(reason)
                }
            )
        });
        if applied {
            tracing::warn!(
                request_id = crate::audit::current_request()
                    .map(|r| r.request_id)
                    .unwrap_or_default(),
                route = scope.route,
                field = %path(),
                label,
                reason,
                "field does not open"
            );
        }
        e
    };
    let mut aad = Vec::new();
    policy::rewrite_into(
        body,
        selectors,
        |_| Ok(()),
        |site, out, ()| {
            let raw = site.raw;
            let text = (raw.len() >= 2 && raw[0] == b'"' && raw[raw.len() - 1] == b'"')
                .then(|| std::str::from_utf8(&raw[1..raw.len() - 1]).ok())
                .flatten()
                .filter(|s| envelope::looks_like_envelope(s));
            let Some(text) = text else {
                return match on_plaintext {
                    OnPlaintext::Pass => {
                        counts.passed_plaintext += 1;
                        Ok(None)
                    }
                    _ => {
                        counts.failed("plaintext");
                        Err(described(
                            bad_place("a field that must be sealed holds plaintext"),
                            "plaintext",
                            site.label,
                            site.offset,
                        ))
                    }
                };
            };
            // the reason is a fixed code for metrics; never the value
            let foreign = |cmk: &CmkRef| {
                (!scope.allows(cmk)).then(|| {
                    (
                        "foreign_key",
                        bad_place("a sealed field was sealed under a key this route does not open"),
                    )
                })
            };
            // the opened value: appended to `out` already (an envelope), or to copy there
            let attempt = if envelope::looks_deterministic(text) {
                open_deterministic(cache, context, site.label, text, &bad_place).and_then(
                    |(cmk, o)| match foreign(&cmk) {
                        Some(e) => Err(e),
                        None => Ok((cmk, Some(o))),
                    },
                )
            } else {
                Envelope::parse(text)
                    .map_err(|_| ("malformed", bad_place("a sealed field is malformed")))
                    .and_then(|env| {
                        let cmk = env.cmk();
                        if let Some(e) = foreign(&cmk) {
                            return Err(e);
                        }
                        let cipher = cache.envelope_key(&env).map_err(|e| match e {
                            // the envelope names a CMK this store does not hold: it was
                            // tampered or comes from elsewhere — the field's fault, not
                            // the route's key
                            KeyError::CmkNotFound
                            | KeyError::VersionNotFound
                            | KeyError::DoesNotOpen => (
                                "unknown_key",
                                bad_place("a sealed field names a key this store does not hold"),
                            ),
                            other => {
                                let e = ProxyError::from_key(other);
                                (e.code(), e)
                            }
                        })?;
                        aad.clear();
                        push_field_context(&mut aad, context, site.label);
                        env.open_append(&cipher, &aad, out)
                            .map(|()| (cmk, None))
                            .map_err(|_| {
                                ("does_not_open", bad_place("a sealed field does not open"))
                            })
                    })
            };
            match attempt {
                Ok((cmk, opened)) => {
                    counts.note(FieldOp::Open, cmk);
                    if let Some(opened) = opened {
                        out.extend_from_slice(opened.json());
                    }
                    Ok(Some(()))
                }
                Err((reason, e)) => match on_open_failure {
                    OnOpenFailure::KeepEnvelope if !e.is_key_store() => {
                        counts.failed(reason);
                        Ok(None)
                    }
                    _ => {
                        counts.failed(reason);
                        Err(described(e, reason, site.label, site.offset))
                    }
                },
            }
        },
    )
    .map_err(|e| ProxyError::from_rewrite(e, side))
}

/// Opens one deterministic envelope found in a field labelled `label`.
/// The error pairs a fixed reason code (for metrics) with the response error.
fn open_deterministic(
    cache: &DataKeyCache,
    context: &str,
    label: &str,
    text: &str,
    bad_place: &dyn Fn(&'static str) -> ProxyError,
) -> Result<(CmkRef, Opened), (&'static str, ProxyError)> {
    let env = DetEnvelope::parse(text)
        .map_err(|_| ("malformed", bad_place("a sealed field is malformed")))?;
    let cmk = env.cmk();
    let k = cache
        .deterministic_opening_key(&cmk, context.as_bytes())
        .map_err(|e| {
            let e = ProxyError::from_key(e);
            (e.code(), e)
        })?;
    env.open(&k, &field_context(context, label))
        .map(|o| (cmk, o))
        .map_err(|_| ("does_not_open", bad_place("a sealed field does not open")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{CacheConfig, CreateKeyRequest, KeyStore, RootKeySource};
    use crate::policy::PolicySet;
    use std::sync::Arc;

    /// A local store with the keys `people` and `other`, its cache, and a
    /// route `read` on key `people` (with `open_keys`) opening `$.ssn`.
    fn setup(open_keys: &str) -> (tempfile::TempDir, Arc<KeyStore>, DataKeyCache, PolicySet) {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(KeyStore::open(dir.path(), RootKeySource::Auto, Default::default()).unwrap());
        for alias in ["people", "other"] {
            store
                .create(CreateKeyRequest {
                    alias: Some(alias.into()),
                    ..Default::default()
                })
                .unwrap();
        }
        let cache = DataKeyCache::with_system_clock(store.clone(), CacheConfig::default());
        let policy = format!(
            "[[route]]\nname = \"read\"\nmethods = [\"GET\"]\npath = \"/p\"\nkey = \"people\"\n\
             open_keys = [{open_keys}]\ncontext = \"p\"\nresponse.decrypt = [\"$.ssn\"]\n"
        );
        let set = PolicySet::from_sources(&[("p.toml".into(), policy)]).unwrap();
        (dir, store, cache, set)
    }

    /// `{"ssn": …}` sealed under `key` for the route's context.
    fn sealed_under(cache: &DataKeyCache, set: &PolicySet, key: &str) -> Vec<u8> {
        let route = &set.routes()[0];
        seal_fields(
            cache,
            key,
            "p",
            "p",
            br#"{"ssn":"123-45-6789"}"#,
            &route.response.decrypt,
            &mut FieldCounts::default(),
            BodySide::Request,
        )
        .unwrap()
        .unwrap()
    }

    /// Opens `body` as the route would; `Ok` holds whether the value came out.
    fn open_as_route(cache: &DataKeyCache, set: &PolicySet, body: &[u8]) -> Result<bool, String> {
        let route = &set.routes()[0];
        let keys = route_key_ids(cache, route);
        let mut counts = FieldCounts::default();
        let out = open_fields(
            cache,
            OpenScope {
                route: &route.name,
                keys: &keys,
            },
            "p",
            body,
            &route.response.decrypt,
            route.on_plaintext,
            route.on_open_failure,
            &mut counts,
            BodySide::Response,
        );
        match out {
            Ok(b) => Ok(String::from_utf8_lossy(&b.unwrap_or_default()).contains("123-45-6789")),
            Err(e) => {
                assert_eq!(counts.open_failures, [("foreign_key", 1)]);
                Err(e.code().to_string())
            }
        }
    }

    #[test]
    fn a_route_opens_its_own_key_and_refuses_another() {
        let (_dir, _store, cache, set) = setup("");
        let own = sealed_under(&cache, &set, "people");
        assert_eq!(open_as_route(&cache, &set, &own), Ok(true));
        let other = sealed_under(&cache, &set, "other");
        assert!(open_as_route(&cache, &set, &other).is_err());
    }

    /// The route's own key no longer resolves (its alias was deleted): the
    /// route opens nothing, where it used to open every key's envelopes.
    #[test]
    fn a_route_whose_key_does_not_resolve_opens_no_key() {
        let (_dir, store, cache, set) = setup("");
        let own = sealed_under(&cache, &set, "people");
        let other = sealed_under(&cache, &set, "other");
        store.delete_alias("people").unwrap();
        assert_eq!(cache.key_id_of("people"), None);
        assert!(route_key_ids(&cache, &set.routes()[0]).is_empty());
        assert!(open_as_route(&cache, &set, &other).is_err(), "fail-open");
        assert!(open_as_route(&cache, &set, &own).is_err());
    }

    /// What `open_keys` names and resolves still opens when the route's
    /// own key does not resolve; nothing else does.
    #[test]
    fn open_keys_open_even_when_the_own_key_does_not_resolve() {
        let (_dir, store, cache, set) = setup("\"other\"");
        let own = sealed_under(&cache, &set, "people");
        let other = sealed_under(&cache, &set, "other");
        store.delete_alias("people").unwrap();
        assert_eq!(open_as_route(&cache, &set, &other), Ok(true));
        assert!(open_as_route(&cache, &set, &own).is_err());
    }
}
