//! Policy files → compiled routes and JSONPath selectors. PURE (only
//! `load.rs` reads a directory, and the JWT key files a route names).
//!
//! A policy set is a list of routes read from TOML files. A route matches a
//! request by method, host and path template, and names the JSON fields
//! (RFC 9535 JSONPath) to seal on the way to the upstream and to open on the
//! way back. Selectors are compiled once, at load; [`rewrite`] applies them
//! to a body, changing only the bytes of the selected values.
//!
//! Precedence when several routes match: a route with a `host` beats one
//! without; then the more specific path (compared segment by segment from the
//! left: a literal beats a `{param}`, which beats a trailing `/*`; an exact
//! end beats `/*`); then a route with `methods` beats one without. Two routes
//! that tie on all three and can match the same request are rejected at load.

mod error;
mod file;
mod labels;
mod load;
mod reveal;
mod rewrite;
mod route;
mod searchable;
mod selector;
pub mod suggest;
mod template;

#[cfg(test)]
mod tests;

use std::fmt::Write as _;

pub use error::{PolicyError, Problem};
pub use labels::{check_labels, LabelFinding, LabelGap, LabelPattern};
pub use load::load_dir;
pub use reveal::{
    claim_matches, Cidr, JwtKey, JwtVerifier, Mask, Reveal, RevealTo, DEFAULT_JWT_LEEWAY_SECS,
    MAX_JWT_LEEWAY_SECS, MIN_HS256_SECRET, SUBJECT_ATTRIBUTES,
};
/// How many leading bytes need no escaping in a JSON string (eight per step).
pub(crate) use rewrite::fast::plain_run as json_plain_run;
pub use rewrite::{path_at, rewrite, rewrite_into, FieldSite, RewriteError, SitesSummary};
pub use route::{
    OnNonJson, OnOpenFailure, OnPlaintext, RateLimitSpec, Route, RouteMatch, RouteMode, Rules,
};
pub use searchable::{SearchParam, Searchable};
pub use selector::{
    label_of, label_tails, parse_normalized_path, InRecord, Selected, Selector, SelectorError,
    SelectorSet, Step,
};
pub use template::{ambiguous_path, canonical_context, ContextTemplate, MediaRange, PathTemplate};

/// The validated routes of all policy files. `Send + Sync`; share it in an `Arc`.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    routes: Vec<Route>,
}

impl PolicySet {
    /// Parses and validates `(file name, text)` pairs; collects every problem.
    pub fn from_sources(files: &[(String, String)]) -> Result<PolicySet, PolicyError> {
        let mut problems = Vec::new();
        let mut routes: Vec<Route> = Vec::new();
        for (name, text) in files {
            routes.extend(file::parse_file(name, text, &mut problems));
        }
        for (i, route) in routes.iter().enumerate() {
            for earlier in &routes[..i] {
                if earlier.name == route.name {
                    problems.push(Problem::field(
                        &route.file,
                        &route.name,
                        "name",
                        format!(
                            "route name already used in {} (names are unique across all files)",
                            earlier.file
                        ),
                    ));
                } else if earlier.ambiguous_with(route) {
                    problems.push(Problem::field(
                        &route.file,
                        &route.name,
                        "path",
                        format!(
                            "'{}' overlaps route '{}' ({}, '{}') with equal precedence: \
                             the same request could match either; make one more specific \
                             (a literal segment, a host, or disjoint methods)",
                            route.path.as_str(),
                            earlier.name,
                            earlier.file,
                            earlier.path.as_str()
                        ),
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(PolicySet { routes })
        } else {
            Err(PolicyError { problems })
        }
    }

    /// A set with no routes: every request passes through untouched.
    pub fn empty() -> PolicySet {
        PolicySet::default()
    }

    /// The routes, in file order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// True when there are no routes.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The route for a request, if any; `path` may carry a query (it is ignored).
    ///
    /// Paths are matched in normalised form (percent-decoded, empty and dot
    /// segments resolved, literals ASCII case-insensitive, a trailing `/`
    /// ignored) so a spelling variant cannot dodge a route; see
    /// [`ambiguous_path`] for requests the proxy should refuse outright.
    pub fn match_route(
        &self,
        method: &str,
        host: Option<&str>,
        path: &str,
    ) -> Option<RouteMatch<'_>> {
        self.best(method, host, &template::request_segments(path))
    }

    /// How the proxy routes a request: the route, and what else the path
    /// tells about it. Errs with a reason (for a 400) when two readings of
    /// the path lead to different routes.
    ///
    /// Besides [`match_route`](Self::match_route)'s normalisation, a format
    /// suffix on the last segment (`/users.json`, `/users.`) is read both
    /// ways, as Rails, Django REST and Spring do: if only one reading
    /// matches a route, that route applies; if both match the same route,
    /// the path as written gives the parameters; if they match different
    /// routes the request is ambiguous.
    pub fn resolve(
        &self,
        method: &str,
        host: Option<&str>,
        path: &str,
    ) -> Result<Resolution<'_>, &'static str> {
        let written = template::request_segments(path);
        let stripped = template::strip_format_suffix(&written);
        let as_written = self.best(method, host, &written);
        let suffixless = stripped
            .as_deref()
            .and_then(|segs| self.best(method, host, segs));
        let matched = match (as_written, suffixless) {
            (Some(a), Some(b)) if !std::ptr::eq(a.route, b.route) => {
                return Err("a format suffix makes the path name another route")
            }
            (Some(a), _) => Some(a),
            (None, b) => b,
        };
        // a route that seals request bodies for other methods, and is at
        // least as specific as the match (more, when the match seals too),
        // is the one the body was meant for
        let floor = matched.as_ref().map(|m| {
            (
                (m.route.host.is_some(), m.route.path.specificity()),
                m.route.request.seals(),
            )
        });
        let mut covered = false;
        let mut sealing_sibling = None;
        for seg in std::iter::once(&written).chain(stripped.as_ref()) {
            for route in &self.routes {
                if !route.matches_host(host) || !route.path.fits(seg) {
                    continue;
                }
                covered = true;
                let key = (route.host.is_some(), route.path.specificity());
                let outranks = floor
                    .as_ref()
                    .is_none_or(|(f, seals)| key > *f || (!seals && key == *f));
                if route.request.seals()
                    && !route.matches_method(method)
                    && outranks
                    && sealing_sibling.is_none()
                {
                    sealing_sibling = Some(route);
                }
            }
        }
        Ok(Resolution {
            matched,
            covered,
            sealing_sibling,
        })
    }

    /// True when some route is scoped to `host` (compared as routes compare it).
    pub fn names_host(&self, host: Option<&str>) -> bool {
        self.routes
            .iter()
            .any(|r| r.host.is_some() && r.matches_host(host))
    }

    fn best(
        &self,
        method: &str,
        host: Option<&str>,
        segments: &[std::borrow::Cow<'_, str>],
    ) -> Option<RouteMatch<'_>> {
        let mut best: Option<(RouteMatch<'_>, route::Precedence)> = None;
        for route in &self.routes {
            if !route.matches_method(method) || !route.matches_host(host) {
                continue;
            }
            let Some(params) = route.path.matches(segments) else {
                continue;
            };
            let key = route.precedence();
            if best.as_ref().is_none_or(|(_, b)| key > *b) {
                best = Some((RouteMatch { route, params }, key));
            }
        }
        best.map(|(m, _)| m)
    }

    /// Human-readable account of what each route does (`sealgate policy check`).
    pub fn describe(&self) -> String {
        let mut out = String::new();
        if self.routes.is_empty() {
            out.push_str("no routes: every request passes through untouched\n");
            return out;
        }
        let _ = writeln!(out, "{} route(s)", self.routes.len());
        for r in &self.routes {
            let _ = writeln!(out, "\nroute {}  ({})", r.name, r.file);
            let methods = r.methods().map_or("any method".to_owned(), |m| m.join(","));
            let host = r.host().unwrap_or("any host");
            let _ = writeln!(out, "  match     {methods} {} on {host}", r.path.as_str());
            let types: Vec<String> = r.content_types.iter().map(|t| t.to_string()).collect();
            let _ = writeln!(out, "  json      {}", types.join(", "));
            let _ = writeln!(
                out,
                "  key       {}  context \"{}\"",
                r.key,
                r.context.as_str()
            );
            for (side, rules) in [("request", &r.request), ("response", &r.response)] {
                if !rules.is_empty() && !rules.encrypt.records().is_empty() {
                    let list: Vec<&str> = rules
                        .encrypt
                        .records()
                        .iter()
                        .map(Selector::as_str)
                        .collect();
                    let _ = writeln!(out, "  {side:<9} records {}", list.join(", "));
                }
                for (op, set) in [
                    ("encrypt", &rules.encrypt),
                    ("decrypt", &rules.decrypt),
                    ("deterministic", &rules.deterministic),
                ] {
                    if !set.is_empty() {
                        let list: Vec<&str> = set.iter().map(Selector::as_str).collect();
                        let _ = writeln!(out, "  {side:<9} {op} {}", list.join(", "));
                    }
                }
            }
            if r.request.is_empty() && r.response.is_empty() {
                let _ = writeln!(out, "  fields    none (bodies pass untouched)");
            }
            let _ = writeln!(
                out,
                "  on        non-JSON body: {}; plaintext where an envelope is expected: {}; envelope that does not open: {}",
                match r.on_non_json {
                    OnNonJson::Refuse => "refuse",
                    OnNonJson::Pass => "pass",
                },
                match r.on_plaintext {
                    OnPlaintext::Pass => "pass",
                    OnPlaintext::Refuse => "refuse",
                },
                match r.on_open_failure {
                    OnOpenFailure::Refuse => "refuse",
                    OnOpenFailure::KeepEnvelope => "keep envelope",
                },
            );
            match r.mode {
                RouteMode::Enforce => {}
                RouteMode::Shadow => {
                    let _ = writeln!(
                        out,
                        "  mode      shadow: traffic passes unchanged; would-be seals and opens are reported"
                    );
                }
                RouteMode::Migrate => {
                    let _ = writeln!(
                        out,
                        "  mode      migrate: stored plaintext passes on reads, is sealed on the next write"
                    );
                }
            }
            for (kind, params) in [("query", &r.searchable.query), ("path", &r.searchable.path)] {
                if !params.is_empty() {
                    let list: Vec<String> = params
                        .iter()
                        .map(|p| format!("{} (as {})", p.name, p.label))
                        .collect();
                    let _ = writeln!(
                        out,
                        "  {kind:<9} seal deterministically: {}",
                        list.join(", ")
                    );
                }
            }
            if r.open_all {
                let _ = writeln!(
                    out,
                    "  open      every envelope found in the response (contexts: {:?} and {:?})",
                    r.context_template(),
                    r.open_contexts
                );
            }
            if let Some(rv) = &r.reveal {
                let who: Vec<String> = rv.to.iter().map(RevealTo::describe).collect();
                let fields: Vec<&str> = rv.fields.iter().map(Selector::as_str).collect();
                let mask = match &rv.mask {
                    Mask::KeepLast(n) => format!("the last {n} characters"),
                    Mask::Fixed(s) => format!("{s:?}"),
                    Mask::Null => "null".to_owned(),
                    Mask::Envelope => "the envelope".to_owned(),
                };
                let _ = writeln!(
                    out,
                    "  reveal    {} in clear to {}; everyone else gets {mask}",
                    fields.join(", "),
                    who.join(" or ")
                );
                if let Some(jwt) = &rv.jwt {
                    let _ = writeln!(out, "  reveal    {}", jwt.describe());
                }
            }
            if let Some(n) = r.max_body_bytes {
                let _ = writeln!(out, "  limit     body at most {n} bytes");
            }
            if let Some(l) = r.rate_limit {
                let _ = writeln!(
                    out,
                    "  limit     {} requests/s, burst {}",
                    l.per_second, l.burst
                );
            }
        }
        out
    }
}

/// What [`PolicySet::resolve`] learned about a request.
#[derive(Debug)]
pub struct Resolution<'a> {
    /// The route that applies, if any.
    pub matched: Option<RouteMatch<'a>>,
    /// True when some route (for any method) names this host and path.
    pub covered: bool,
    /// A route at least as specific as the match that seals request fields
    /// but does not list this method: a body sent with this method would
    /// dodge its sealing.
    pub sealing_sibling: Option<&'a Route>,
}

#[allow(dead_code)]
fn assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<PolicySet>();
}
