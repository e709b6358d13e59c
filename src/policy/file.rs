//! The policy file format as written (raw serde types, unknown keys denied),
//! and its validation into runtime [`Route`]s. Read → parse → validate.

use serde::Deserialize;

use super::error::Problem;
use super::reveal::OneOrMany;
use super::route::{OnNonJson, OnOpenFailure, OnPlaintext, RateLimitSpec, Route, RouteMode, Rules};
use super::selector::SelectorSet;
use super::template::{ContextTemplate, MediaRange, PathTemplate};

/// Methods a route may name.
const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT",
];

/// One `[[route]]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRoute {
    name: String,
    methods: Option<Vec<String>>,
    path: String,
    host: Option<String>,
    content_types: Option<Vec<String>>,
    key: String,
    context: Option<String>,
    records: Option<OneOrMany>,
    request: Option<FileRules>,
    response: Option<FileRules>,
    on_non_json: Option<OnNonJson>,
    on_plaintext: Option<OnPlaintext>,
    on_open_failure: Option<OnOpenFailure>,
    max_body_bytes: Option<u64>,
    rate_limit: Option<FileRateLimit>,
    mode: Option<RouteMode>,
    open_all: Option<bool>,
    open_contexts: Option<Vec<String>>,
    open_labels: Option<Vec<String>>,
    query_params: Option<Vec<String>>,
    path_params: Option<Vec<String>>,
    stale_key_header: Option<bool>,
    open_keys: Option<Vec<String>>,
    reveal: Option<super::reveal::FileReveal>,
}

/// `request` / `response` tables as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRules {
    records: Option<OneOrMany>,
    #[serde(default)]
    encrypt: Vec<String>,
    #[serde(default)]
    decrypt: Vec<String>,
    #[serde(default)]
    deterministic: Vec<String>,
}

/// `rate_limit` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRateLimit {
    per_second: u32,
    burst: Option<u32>,
}

/// Parses one file's text into routes; every problem found is pushed to `problems`.
pub(crate) fn parse_file(file: &str, text: &str, problems: &mut Vec<Problem>) -> Vec<Route> {
    let table: toml::Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => {
            problems.push(Problem::file(file, e.to_string().trim_end().to_owned()));
            return Vec::new();
        }
    };
    let mut routes = Vec::new();
    for (key, value) in table {
        if key != "route" {
            problems.push(Problem {
                file: file.to_owned(),
                route: None,
                field: Some(key),
                message: "unknown top-level key (expected only [[route]] tables)".into(),
            });
            continue;
        }
        let toml::Value::Array(items) = value else {
            problems.push(Problem::file(
                file,
                "'route' must be an array of tables: write [[route]]",
            ));
            continue;
        };
        for (i, item) in items.into_iter().enumerate() {
            let name = item
                .get("name")
                .and_then(|n| n.as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| format!("#{} (unnamed)", i + 1));
            match item.try_into::<FileRoute>() {
                Ok(raw) => {
                    if let Some(route) = validate(file, raw, problems) {
                        routes.push(route);
                    }
                }
                Err(e) => problems.push(serde_problem(file, &name, &e.to_string())),
            }
        }
    }
    routes
}

/// Turns a toml deserialisation message (`…\nin `field``) into a problem naming the field.
fn serde_problem(file: &str, route: &str, message: &str) -> Problem {
    let message = message.trim_end();
    let (text, field) = match message.rsplit_once("\nin `") {
        Some((text, field)) => (text, Some(field.trim_end_matches('`').to_owned())),
        None => (message, None),
    };
    let field = field.or_else(|| {
        text.strip_prefix("unknown field `")
            .and_then(|r| r.split('`').next())
            .map(str::to_owned)
    });
    let field = field.or_else(|| {
        text.strip_prefix("missing field `")
            .and_then(|r| r.split('`').next())
            .map(str::to_owned)
    });
    Problem {
        file: file.to_owned(),
        route: Some(route.to_owned()),
        field,
        message: text.replace('\n', " "),
    }
}

/// A key name `serve` can resolve or create: a KeyId, or an alias by the
/// key store's own rule, so `policy check` refuses what start-up would.
fn check_key_name(key: &str) -> Result<(), String> {
    use crate::keys::model::{validate_alias, KeyId, ALIAS_MAX_LEN};
    if KeyId::parse(key).is_some() || validate_alias(key).is_ok() {
        return Ok(());
    }
    Err(format!(
        "'{key}' is neither a KeyId nor a valid alias (1-{ALIAS_MAX_LEN} letters, digits, \
         '-', '_', starting with a letter or digit, not starting with 'kms-')"
    ))
}

fn validate(file: &str, raw: FileRoute, problems: &mut Vec<Problem>) -> Option<Route> {
    let before = problems.len();
    let name = raw.name.clone();
    let mut bad = |field: &str, message: String| {
        problems.push(Problem::field(file, &name, field, message));
    };

    if raw.name.is_empty()
        || !raw
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        bad(
            "name",
            "a route name is non-empty and uses only letters, digits, '-', '_', '.'".into(),
        );
    }

    let methods = match raw.methods {
        None => None,
        Some(list) if list.is_empty() => {
            bad(
                "methods",
                "an empty list matches nothing; omit 'methods' to match any method".into(),
            );
            None
        }
        Some(list) => {
            let mut out: Vec<String> = Vec::new();
            for m in list {
                let upper = m.to_ascii_uppercase();
                if !METHODS.contains(&upper.as_str()) {
                    bad(
                        "methods",
                        format!("'{m}' is not an HTTP method ({})", METHODS.join(", ")),
                    );
                } else if out.contains(&upper) {
                    bad("methods", format!("'{m}' is listed twice"));
                } else {
                    out.push(upper);
                }
            }
            Some(out)
        }
    };

    let path = match PathTemplate::parse(&raw.path) {
        Ok(t) => Some(t),
        Err(e) => {
            bad("path", format!("'{}': {e}", raw.path));
            None
        }
    };

    let host = match raw.host {
        None => None,
        Some(h) => {
            let lower = h.trim_end_matches('.').to_ascii_lowercase();
            let ok = !lower.is_empty()
                && lower
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c));
            if !ok {
                bad(
                    "host",
                    format!(
                        "'{h}' is not a host name (no scheme, path or wildcard; an optional :port)"
                    ),
                );
            }
            Some(lower)
        }
    };

    let content_types = match raw.content_types {
        None => vec![
            MediaRange::parse("application/json"),
            MediaRange::parse("*/*+json"),
        ]
        .into_iter()
        .flatten()
        .collect(),
        Some(list) if list.is_empty() => {
            bad(
                "content_types",
                "an empty list accepts no body; omit it for the JSON default".into(),
            );
            Vec::new()
        }
        Some(list) => list
            .iter()
            .filter_map(|t| match MediaRange::parse(t) {
                Ok(r) => Some(r),
                Err(e) => {
                    bad("content_types", e);
                    None
                }
            })
            .collect(),
    };

    if raw.key.trim().is_empty() {
        bad("key", "the key (a CMK alias or KeyId) is empty".into());
    } else if let Err(e) = check_key_name(raw.key.trim()) {
        bad("key", e);
    }
    let open_keys: Vec<String> = raw
        .open_keys
        .unwrap_or_default()
        .iter()
        .map(|k| k.trim().to_owned())
        .collect();
    for (i, k) in open_keys.iter().enumerate() {
        if k.is_empty() {
            bad(&format!("open_keys[{i}]"), "an empty key name".into());
        } else if let Err(e) = check_key_name(k) {
            bad(&format!("open_keys[{i}]"), e);
        } else if open_keys[..i].contains(k) || *k == raw.key.trim() {
            bad(
                &format!("open_keys[{i}]"),
                format!("'{k}' is listed twice (the route's own key always opens)"),
            );
        }
    }

    let context_text = raw.context.unwrap_or_else(|| raw.name.clone());
    let context = match &path {
        Some(p) => match ContextTemplate::parse(&context_text, &p.params().collect::<Vec<_>>()) {
            Ok(c) => Some(c),
            Err(e) => {
                bad("context", format!("'{context_text}': {e}"));
                None
            }
        },
        None => None,
    };

    let route_records = raw.records.clone();
    let mut rules = |side: &str, given: Option<FileRules>| -> Rules {
        let mut given = given.unwrap_or_default();
        let explicit = given.records.is_some() || route_records.is_some();
        let (records_field, records_texts) = match given.records.take() {
            Some(r) => (format!("{side}.records"), r.into_vec()),
            None => (
                "records".to_owned(),
                route_records
                    .clone()
                    .map(OneOrMany::into_vec)
                    .unwrap_or_default(),
            ),
        };
        let mut records = Vec::new();
        if records_texts.is_empty() && explicit {
            bad(
                &records_field,
                "an empty list selects no record; omit it and the body is the record".into(),
            );
        }
        for (i, t) in records_texts.iter().enumerate() {
            match super::selector::Selector::compile(t) {
                Ok(r) => {
                    if records
                        .iter()
                        .any(|o: &super::selector::Selector| o.same_query(&r))
                    {
                        bad(
                            &format!("{records_field}[{i}]"),
                            format!("'{t}' is listed twice"),
                        );
                    }
                    records.push(r);
                }
                Err(e) => bad(&format!("{records_field}[{i}]"), format!("'{t}': {e}")),
            }
        }
        let mut compile = |op: &str, texts: &[String]| -> SelectorSet {
            let mut ok = Vec::new();
            for (i, t) in texts.iter().enumerate() {
                match super::selector::Selector::compile(t) {
                    Ok(s) if s.selects_root_only() => bad(
                        &format!("{side}.{op}[{i}]"),
                        format!("'{t}' selects the whole body; select fields inside it"),
                    ),
                    Ok(s) => {
                        if let Some(o) = ok
                            .iter()
                            .find(|o: &&super::selector::Selector| o.same_query(&s))
                        {
                            let also = if o.as_str() == t {
                                String::new()
                            } else {
                                format!(" (as '{o}')")
                            };
                            bad(
                                &format!("{side}.{op}[{i}]"),
                                format!("'{t}' is listed twice{also}"),
                            );
                        }
                        ok.push(s);
                    }
                    Err(e) => bad(&format!("{side}.{op}[{i}]"), format!("'{t}': {e}")),
                }
            }
            SelectorSet::new(ok)
        };
        let encrypt = compile("encrypt", &given.encrypt);
        let decrypt = compile("decrypt", &given.decrypt);
        let deterministic = compile("deterministic", &given.deterministic);
        // compared compiled, so `$.email` and `$['email']` are one field
        let spelled = |a: &super::selector::Selector, b: &super::selector::Selector| {
            if a.as_str() == b.as_str() {
                String::new()
            } else {
                format!(" (as '{b}')")
            }
        };
        for d in &deterministic {
            for (op, set) in [("encrypt", &encrypt), ("decrypt", &decrypt)] {
                if let Some(o) = set.iter().find(|o| o.same_query(d)) {
                    bad(
                        &format!("{side}.deterministic"),
                        format!(
                            "'{d}' is also in {op}{}: list a field in deterministic only \
                             (it is sealed deterministically; decrypt opens both kinds)",
                            spelled(d, o)
                        ),
                    );
                }
            }
        }
        for e in &encrypt {
            if let Some(o) = decrypt.iter().find(|o| o.same_query(e)) {
                bad(
                    &format!("{side}.decrypt"),
                    format!(
                        "'{e}' is both encrypted and decrypted on the {side}{}",
                        spelled(e, o)
                    ),
                );
            }
        }
        Rules {
            encrypt: encrypt.with_records(records.clone()),
            decrypt: decrypt.with_records(records.clone()),
            deterministic: deterministic.with_records(records),
        }
    };
    let response_decrypt: Vec<String> = raw
        .response
        .as_ref()
        .map(|r| r.decrypt.clone())
        .unwrap_or_default();
    let request = rules("request", raw.request);
    let response = rules("response", raw.response);

    let max_body_bytes = match raw.max_body_bytes {
        Some(0) => {
            bad("max_body_bytes", "must be greater than 0".into());
            None
        }
        Some(n) => match usize::try_from(n) {
            Ok(n) => Some(n),
            Err(_) => {
                bad("max_body_bytes", "too large for this platform".into());
                None
            }
        },
        None => None,
    };

    let rate_limit = match raw.rate_limit {
        None => None,
        Some(r) => {
            let burst = r.burst.unwrap_or(r.per_second);
            if r.per_second == 0 {
                bad(
                    "rate_limit.per_second",
                    "must be greater than 0 (omit rate_limit for no limit)".into(),
                );
            }
            if r.burst == Some(0) {
                bad("rate_limit.burst", "must be greater than 0".into());
            }
            Some(RateLimitSpec {
                per_second: r.per_second,
                burst,
            })
        }
    };

    let mode = raw.mode.unwrap_or_default();
    if mode == RouteMode::Migrate {
        if raw.on_plaintext == Some(OnPlaintext::Refuse) {
            bad(
                "on_plaintext",
                "a route in migrate mode passes stored plaintext on reads: \
                 on_plaintext must be \"pass\""
                    .into(),
            );
        }
        if request.encrypt.is_empty() && response.decrypt.is_empty() {
            bad(
                "mode",
                "a route in migrate mode seals on writes or opens on reads: \
                 give it request.encrypt or response.decrypt"
                    .into(),
            );
        }
    }
    let searchable = super::searchable::parse(
        raw.query_params.as_deref(),
        raw.path_params.as_deref(),
        path.as_ref(),
        &mut bad,
    );
    if raw.path_params.is_some() && path.is_none() {
        bad("path_params", "needs a valid path template".into());
    }

    let reveal = raw.reveal.and_then(|r| {
        super::reveal::parse(
            r,
            &response_decrypt,
            raw.open_all.unwrap_or(false),
            &|path| super::load::read_key_file(file, path),
            &mut bad,
        )
    });
    // reveal masks what response.decrypt opens: the same records
    let reveal = reveal.map(|mut r| {
        let records = response.decrypt.records().to_vec();
        r.fields = r.fields.with_records(records.clone());
        r.open_unmasked = r.open_unmasked.with_records(records);
        r
    });

    if problems.len() != before {
        return None;
    }
    Some(Route {
        name: raw.name,
        key: raw.key.trim().to_owned(),
        request,
        response,
        on_non_json: raw.on_non_json.unwrap_or_default(),
        on_plaintext: raw.on_plaintext.unwrap_or_default(),
        on_open_failure: raw.on_open_failure.unwrap_or_default(),
        max_body_bytes,
        rate_limit,
        mode,
        open_all: raw.open_all.unwrap_or(false),
        open_contexts: raw.open_contexts.unwrap_or_default(),
        open_labels: raw.open_labels.unwrap_or_default(),
        searchable,
        stale_key_header: raw.stale_key_header.unwrap_or(false),
        open_keys,
        reveal,
        file: file.to_owned(),
        methods,
        host,
        path: path?,
        content_types,
        context: context?,
    })
}
