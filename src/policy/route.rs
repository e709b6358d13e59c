//! Validated runtime routes: what to match, which fields to seal or open, and
//! what to do when a body or field is not what the policy expects.

use serde::Deserialize;

use super::selector::SelectorSet;
use super::template::{ContextTemplate, MediaRange, PathTemplate};

/// What to do with a body the route would rewrite but that is not JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnNonJson {
    /// Answer with an error; never forward it (the default: no plaintext escapes).
    #[default]
    Refuse,
    /// Forward it untouched.
    Pass,
}

/// What to do when a field to decrypt is not an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnPlaintext {
    /// Leave the value as it is (the default: data written before sealgate still reads).
    #[default]
    Pass,
    /// Fail the message.
    Refuse,
}

/// What to do when an envelope does not open (wrong key, moved field, tampering).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnOpenFailure {
    /// Fail the message (the default).
    #[default]
    Refuse,
    /// Leave the envelope string in place.
    KeepEnvelope,
}

/// How a route applies its policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RouteMode {
    /// Seal and open as the rules say (the default).
    #[default]
    Enforce,
    /// Pass traffic unchanged; report what the rules would have sealed and
    /// opened, and which selectors matched nothing (see `proxy::shadow`).
    Shadow,
    /// Enforce, with plaintext already stored upstream passed through on
    /// reads (`on_plaintext = "pass"` is required) and sealed on the next
    /// write; plaintext passed and values sealed are counted per route.
    Migrate,
}

/// A per-route token bucket: `per_second` refill, up to `burst` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitSpec {
    /// Tokens added per second (> 0).
    pub per_second: u32,
    /// Bucket size (> 0; defaults to `per_second`).
    pub burst: u32,
}

/// The selectors of one direction (request or response).
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Fields to seal into envelopes.
    pub encrypt: SelectorSet,
    /// Fields to open from envelopes.
    pub decrypt: SelectorSet,
    /// Fields to seal deterministically (searchable: equal values, equal envelopes).
    pub deterministic: SelectorSet,
}

impl Rules {
    /// True when this direction rewrites nothing.
    pub fn is_empty(&self) -> bool {
        self.encrypt.is_empty() && self.decrypt.is_empty() && self.deterministic.is_empty()
    }

    /// True when this direction seals something (randomly or deterministically).
    pub fn seals(&self) -> bool {
        !(self.encrypt.is_empty() && self.deterministic.is_empty())
    }
}

/// One validated route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Unique name across the policy set.
    pub name: String,
    /// CMK alias or KeyId that seals this route's fields.
    pub key: String,
    /// What to do to request bodies.
    pub request: Rules,
    /// What to do to response bodies.
    pub response: Rules,
    /// Non-JSON body on a route that rewrites that direction.
    pub on_non_json: OnNonJson,
    /// Field to decrypt that is not an envelope.
    pub on_plaintext: OnPlaintext,
    /// Envelope that does not open.
    pub on_open_failure: OnOpenFailure,
    /// Body size limit for this route, overriding the global one.
    pub max_body_bytes: Option<usize>,
    /// Rate limit for this route.
    pub rate_limit: Option<RateLimitSpec>,
    /// Enforce, shadow or migrate.
    pub mode: RouteMode,
    /// Open every envelope found anywhere in a JSON response, with no
    /// response paths listed (labels come from where each one sits).
    pub open_all: bool,
    /// Contexts besides the route's own to try when opening what is found.
    pub open_contexts: Vec<String>,
    /// Field labels to try for envelopes found in a body that is not JSON
    /// (its position gives none), e.g. `["ssn", "cards.number"]`.
    pub open_labels: Vec<String>,
    /// Query and path parameters sealed deterministically.
    pub searchable: super::searchable::Searchable,
    /// Answer with `Sealgate-Stale-Key` when an opened envelope's CMK
    /// version is not the primary.
    pub stale_key_header: bool,
    /// Keys besides `key` whose envelopes this route opens (e.g. the key a
    /// table was sealed under before a move); any other key's do not open.
    pub open_keys: Vec<String>,
    /// Who sees the opened response fields in clear, and the mask for everyone else.
    pub reveal: Option<super::reveal::Reveal>,
    pub(crate) file: String,
    pub(crate) methods: Option<Vec<String>>,
    pub(crate) host: Option<String>,
    pub(crate) path: PathTemplate,
    pub(crate) content_types: Vec<MediaRange>,
    pub(crate) context: ContextTemplate,
}

impl Route {
    /// The file the route came from.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Methods it matches (upper case); `None` = any method.
    pub fn methods(&self) -> Option<&[String]> {
        self.methods.as_deref()
    }

    /// Host it matches (lower case); `None` = any host.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The path template.
    pub fn path(&self) -> &PathTemplate {
        &self.path
    }

    /// The context template as written (default: the route name).
    pub fn context_template(&self) -> &str {
        self.context.as_str()
    }

    /// Media ranges of bodies the route treats as JSON.
    pub fn content_types(&self) -> &[MediaRange] {
        &self.content_types
    }

    /// True when a body with this `Content-Type` header is JSON for this route.
    ///
    /// Parameters (`; charset=…`) are ignored. `None` (no header) is not JSON:
    /// the proxy should apply `on_non_json` only to non-empty bodies.
    pub fn accepts_content_type(&self, content_type: Option<&str>) -> bool {
        let Some(ct) = content_type else {
            return false;
        };
        let essence = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let Some((kind, subtype)) = essence.split_once('/') else {
            return false;
        };
        self.content_types.iter().any(|r| r.contains(kind, subtype))
    }

    pub(crate) fn matches_method(&self, method: &str) -> bool {
        match &self.methods {
            None => true,
            Some(list) => list.iter().any(|m| m.eq_ignore_ascii_case(method)),
        }
    }

    pub(crate) fn matches_host(&self, host: Option<&str>) -> bool {
        let Some(want) = &self.host else {
            return true;
        };
        let Some(got) = host else {
            return false;
        };
        let got = got.to_ascii_lowercase();
        if want.contains(':') && !want.ends_with(']') {
            return got.trim_end_matches('.') == *want;
        }
        strip_port(&got).trim_end_matches('.') == want
    }

    /// Precedence key: host-specific > any host, then path specificity, then method-specific > any.
    pub(crate) fn precedence(&self) -> Precedence {
        (
            self.host.is_some(),
            self.path.specificity(),
            self.methods.is_some(),
        )
    }

    /// True when some request matches both routes and neither takes precedence.
    pub(crate) fn ambiguous_with(&self, other: &Route) -> bool {
        if self.precedence() != other.precedence() {
            return false;
        }
        let hosts = self.host == other.host;
        let methods = match (&self.methods, &other.methods) {
            (Some(a), Some(b)) => a.iter().any(|m| b.contains(m)),
            _ => true,
        };
        hosts && methods && self.path.same_shape_overlaps(&other.path)
    }
}

/// Route precedence: (has host, path specificity, has methods); greater wins.
pub(crate) type Precedence = (bool, Vec<u8>, bool);

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    }
}

/// A route that matched a request, with the path parameters it captured.
#[derive(Debug, Clone)]
pub struct RouteMatch<'a> {
    /// The route.
    pub route: &'a Route,
    /// `{param}` values, percent-decoded, in template order.
    pub params: Vec<(String, String)>,
}

impl RouteMatch<'_> {
    /// The encryption context with the path parameters substituted.
    pub fn context(&self) -> String {
        self.route.context.render(&self.params)
    }
}
