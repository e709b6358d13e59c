//! The console's pages, rendered on the server from what sealgate already
//! holds: the policy set in force, the metrics counters (and their samples),
//! the shadow capture, the key store's listings and the audit log. No page
//! renders a field value: routes show selectors, findings show field paths
//! and value classes, keys show metadata.

use std::fmt::Write as _;

use super::findings::{class_name, shape, Summary};
use super::html::{esc, sparkline, table, time};
use super::series::{Counter, Series};
use crate::keys::KeyStore;
use crate::metrics::CountsSnapshot;
use crate::policy::suggest::Direction;
use crate::policy::{PolicySet, Route, RouteMode, Rules, Selector};

/// How many audit lines the audit page shows.
pub(crate) const AUDIT_TAIL: usize = 20;

/// What the routes page says about the proxy around the routes.
pub(crate) struct RoutesContext<'a> {
    /// The policy directory.
    pub(crate) dir: &'a str,
    /// `--shadow`: every route in shadow.
    pub(crate) shadow_all: bool,
    /// When this process started (unix seconds).
    pub(crate) started: u64,
    /// How often the counters are sampled for the plots.
    pub(crate) sample_every: std::time::Duration,
}

/// "5 s", "200 ms": a sampling interval for people.
fn interval(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// "10 min", "24 s": the span the kept samples cover.
fn span(d: std::time::Duration) -> String {
    let all = d * u32::try_from(super::series::SAMPLES).unwrap_or(u32::MAX);
    if all.as_secs() >= 120 {
        format!("{} min", all.as_secs() / 60)
    } else {
        format!("{} s", all.as_secs())
    }
}

fn code_list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<String> = items.map(|s| format!("<code>{}</code>", esc(s))).collect();
    if v.is_empty() {
        "<span class=\"muted\">none</span>".into()
    } else {
        v.join(", ")
    }
}

fn selectors(rules: &Rules, seal: bool) -> Vec<&str> {
    let sets = if seal {
        vec![&rules.encrypt, &rules.deterministic]
    } else {
        vec![&rules.decrypt]
    };
    sets.into_iter()
        .flat_map(|s| s.iter().map(Selector::as_str))
        .collect()
}

/// An HTML id from a route name: letters, digits and `-` only.
fn anchor(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("route-{s}")
}

fn count_cell(label: &str, total: u64, points: &[u64]) -> String {
    format!(
        "<div class=\"count\"><span>{}</span><span class=\"n\">{total}</span>{}</div>",
        esc(label),
        sparkline(label, points)
    )
}

fn route_section(
    r: &Route,
    ctx: &RoutesContext<'_>,
    now: &CountsSnapshot,
    series: &Series,
) -> String {
    let shadow_all = ctx.shadow_all;
    let mode = match (shadow_all, r.mode) {
        (true, _) | (_, RouteMode::Shadow) => "shadow (traffic passes unchanged)",
        (_, RouteMode::Migrate) => "migrate",
        (_, RouteMode::Enforce) => "enforce",
    };
    let methods = r.methods().map_or("any".to_string(), |m| m.join(", "));
    let seals: Vec<&str> = selectors(&r.request, true)
        .into_iter()
        .chain(selectors(&r.response, true))
        .collect();
    let opens: Vec<&str> = selectors(&r.response, false)
        .into_iter()
        .chain(selectors(&r.request, false))
        .collect();
    let params: Vec<String> = r
        .searchable
        .query
        .iter()
        .chain(r.searchable.path.iter())
        .map(|p| p.name.clone())
        .collect();
    let id = anchor(&r.name);
    let mut out = format!(
        "<section class=\"route\" aria-labelledby=\"{id}\"><h2 id=\"{id}\">{}</h2>",
        esc(&r.name)
    );
    let rows = vec![
        vec!["Methods".into(), esc(&methods)],
        vec![
            "Path".into(),
            format!("<code>{}</code>", esc(r.path().as_str())),
        ],
        vec!["Host".into(), esc(r.host().unwrap_or("any"))],
        vec!["Key".into(), format!("<code>{}</code>", esc(&r.key))],
        vec![
            "Context".into(),
            format!("<code>{}</code>", esc(r.context_template())),
        ],
        vec!["Seals".into(), code_list(seals.into_iter())],
        vec!["Opens".into(), code_list(opens.into_iter())],
        vec![
            "Sealed in the URL".into(),
            code_list(params.iter().map(String::as_str)),
        ],
        vec!["Mode".into(), esc(mode)],
        vec!["File".into(), esc(r.file())],
    ];
    out.push_str(&table(
        &format!("Route {}", r.name),
        &["Setting", "Value"],
        &rows,
    ));
    let get = |m: &std::collections::BTreeMap<String, u64>| m.get(&r.name).copied().unwrap_or(0);
    let _ = write!(
        out,
        "<h3>Live counts <span class=\"muted\">({} requests since start; plots: per {}, last {})</span></h3><div class=\"counts\">",
        get(&now.requests),
        interval(ctx.sample_every),
        span(ctx.sample_every)
    );
    for (label, total, counter) in [
        ("Fields sealed", get(&now.sealed), Counter::Sealed),
        ("Envelopes opened", get(&now.opened), Counter::Opened),
        (
            "Plaintext passed",
            get(&now.plaintext_passed),
            Counter::PlaintextPassed,
        ),
        ("Rate-limited", get(&now.rate_limited), Counter::RateLimited),
        (
            "Shadow: would seal or open",
            get(&now.shadow_fields),
            Counter::Shadow,
        ),
    ] {
        out.push_str(&count_cell(label, total, &series.deltas(&r.name, counter)));
    }
    out.push_str("</div></section>");
    out
}

/// The routes page: the set as loaded, the last reload, open failures by
/// reason, and per route its settings and live counts with plots.
pub(crate) fn routes(
    set: &PolicySet,
    ctx: &RoutesContext<'_>,
    now: &CountsSnapshot,
    series: &Series,
) -> String {
    let routes = set.routes();
    let shadow_routes = routes
        .iter()
        .filter(|r| ctx.shadow_all || r.mode == RouteMode::Shadow)
        .count();
    let mut out = format!(
        "<p class=\"notice\">{} route(s) from <code>{}</code>; {} in shadow mode. \
         <a href=\"/routes\">Refresh</a></p>",
        routes.len(),
        esc(ctx.dir),
        shadow_routes
    );
    out.push_str("<h2>Last reload</h2>");
    match &now.last_reload {
        Some(r) => {
            let _ = write!(
                out,
                "<p><span class=\"{}\">{}</span> at {} ({}): {}</p>",
                if r.ok { "ok" } else { "bad" },
                if r.ok { "Reloaded" } else { "Refused" },
                esc(&time(r.at)),
                esc(&r.trigger),
                esc(&r.detail)
            );
        }
        None => {
            let _ = write!(
                out,
                "<p>No reload since start ({}): the set loaded at start is in force.</p>",
                esc(&time(ctx.started))
            );
        }
    }
    let _ = write!(
        out,
        "<p class=\"muted\">Reloads since start: {} ok, {} refused.</p>",
        now.reloads_ok, now.reloads_failed
    );
    out.push_str("<h2>Open failures</h2>");
    if now.open_failures.is_empty() {
        out.push_str("<p>No field failed to open since start.</p>");
    } else {
        let rows: Vec<Vec<String>> = now
            .open_failures
            .iter()
            .map(|(reason, n)| vec![format!("<code>{}</code>", esc(reason)), n.to_string()])
            .collect();
        out.push_str(&table(
            "Fields that did not open, by reason",
            &["Reason", "Fields"],
            &rows,
        ));
    }
    out.push_str(&count_cell(
        "Open failures (every reason)",
        now.open_failures.values().sum(),
        &series.failure_deltas(),
    ));
    if routes.is_empty() {
        out.push_str("<p>No routes: every request passes through untouched.</p>");
    }
    for r in routes {
        out.push_str(&route_section(r, ctx, now, series));
    }
    out
}

/// The findings page: per observed route, the fields that look sensitive,
/// with checkboxes and the form that downloads a draft for those selected.
pub(crate) fn findings(
    capture: Option<(&str, &Summary)>,
    csrf: &str,
    error: Option<&str>,
) -> String {
    let mut out = String::new();
    if let Some(e) = error {
        let _ = write!(out, "<p class=\"error\" role=\"alert\">{}</p>", esc(e));
    }
    let Some((file, summary)) = capture else {
        out.push_str(
            "<p class=\"notice\">Findings come from the shadow capture. Start sealgate with \
             <code>--shadow-capture FILE</code> (config <code>shadow_capture</code>), and \
             <code>--shadow</code> or routes in <code>mode = \"shadow\"</code>, then send traffic.</p>",
        );
        return out;
    };
    let _ = write!(
        out,
        "<p class=\"notice\">From the capture <code>{}</code>: field paths and value classes, never \
         values. Select findings and download a policy draft (the same generator as \
         <code>sealgate policy suggest</code>). <a href=\"/findings\">Refresh</a></p>",
        esc(file)
    );
    if let Some(e) = &summary.error {
        let _ = write!(out, "<p class=\"error\">{}</p>", esc(e));
    }
    if summary.bad_lines > 0 || summary.dropped > 0 {
        let _ = write!(
            out,
            "<p class=\"muted\">{} line(s) were not observations; {} finding(s) past the limit were not kept.</p>",
            summary.bad_lines, summary.dropped
        );
    }
    if summary.findings.is_empty() {
        out.push_str("<p>Nothing observed yet.</p>");
        return out;
    }
    let _ = write!(
        out,
        "<form method=\"post\" action=\"/findings/draft\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(csrf)
    );
    let mut current: Option<(&str, &str)> = None;
    let mut rows: Vec<Vec<String>> = Vec::new();
    let flush = |out: &mut String, route: Option<(&str, &str)>, rows: &mut Vec<Vec<String>>| {
        if let Some((m, p)) = route {
            let _ = write!(out, "<h2>{} <code>{}</code></h2>", esc(m), esc(p));
            out.push_str(&table(
                &format!("Fields seen on {m} {p}"),
                &["Select", "Where", "Class (times seen)", "Example shape"],
                rows,
            ));
        }
        rows.clear();
    };
    for (k, classes) in &summary.findings {
        let route = (k.method.as_str(), k.path.as_str());
        if current != Some(route) {
            flush(&mut out, current, &mut rows);
            current = Some(route);
        }
        let id = k.id();
        let place = match (k.direction, k.field.starts_with('{')) {
            (_, true) => "path segment",
            (Direction::Request, false) => "request body",
            (Direction::Response, false) => "response body",
        };
        let cls: Vec<String> = classes
            .iter()
            .map(|(c, n)| format!("{} ({n})", class_name(*c)))
            .collect();
        let shapes: Vec<String> = classes
            .keys()
            .map(|c| format!("<code>{}</code>", esc(shape(*c))))
            .collect();
        rows.push(vec![
            format!(
                "<input type=\"checkbox\" id=\"f-{id}\" name=\"f\" value=\"{id}\"> \
                 <label for=\"f-{id}\"><code>{}</code><span class=\"vh\"> in the {place} of {} {}</span></label>",
                esc(&k.field),
                esc(&k.method),
                esc(&k.path)
            ),
            place.to_string(),
            esc(&cls.join(", ")),
            shapes.join(" "),
        ]);
    }
    flush(&mut out, current, &mut rows);
    out.push_str(
        "<div class=\"field\"><label for=\"key\">Key the draft's routes name (alias or KeyId)</label>\
         <input type=\"text\" id=\"key\" name=\"key\" value=\"default\" required \
         pattern=\"[A-Za-z0-9_.:\\/\\-]{1,128}\" aria-describedby=\"key-help\">\
         <span id=\"key-help\" class=\"muted\">Letters, digits and <code>_ . / : -</code>.</span></div>\
         <button type=\"submit\">Download policy draft</button></form>",
    );
    out
}

/// The keys page: the key inventory and the credentials — metadata only.
pub(crate) fn keys(store: &KeyStore, remote: bool) -> String {
    let mut out = String::new();
    if remote {
        out.push_str(
            "<p class=\"notice\">CMKs are held by the remote KMS of <code>[provider]</code>; \
             the local store below keeps the KMS faces' keys and credentials.</p>",
        );
    }
    const SHOWN: usize = 1000;
    let list = store.list(0, SHOWN);
    let rows: Vec<Vec<String>> = list
        .keys
        .iter()
        .map(|k| {
            let usage = serde_json::to_value(k.key_usage)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let opt_time = |t: Option<u64>| t.map_or("—".to_string(), time);
            vec![
                esc(k.alias.as_deref().unwrap_or("—")),
                format!("<code>{}</code>", esc(&k.key_id.to_string())),
                esc(&usage),
                esc(k.key_state.as_str()),
                k.versions.len().to_string(),
                k.primary_version.map_or("—".into(), |v| v.to_string()),
                esc(&opt_time(k.last_rotate_time)),
                esc(&if k.key_rotation_enabled {
                    opt_time(k.next_rotate_time)
                } else {
                    "off".to_string()
                }),
                k.min_decryption_version
                    .map_or("every version".into(), |v| v.to_string()),
            ]
        })
        .collect();
    let _ = write!(
        out,
        "<h2>Keys</h2><p>{} key(s) in the store.</p>",
        list.total_count
    );
    if list.total_count > SHOWN {
        let _ = write!(out, "<p class=\"muted\">The first {SHOWN} are shown.</p>");
    }
    out.push_str(&table(
        "Key inventory (no material)",
        &[
            "Alias",
            "KeyId",
            "Usage",
            "State",
            "Versions",
            "Primary",
            "Last rotation",
            "Next rotation",
            "Min decryption version",
        ],
        &rows,
    ));
    let creds = store.list_credentials();
    let rows: Vec<Vec<String>> = creds
        .iter()
        .map(|c| {
            let scope = match &c.allowed_keys {
                None => "every key".to_string(),
                Some(keys) => keys
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            vec![
                format!("<code>{}</code>", esc(&c.id)),
                esc(&time(c.created_at)),
                esc(&scope),
                if c.revoked {
                    "<span class=\"bad\">revoked</span>".into()
                } else {
                    "active".into()
                },
            ]
        })
        .collect();
    let _ = write!(
        out,
        "<h2>Credentials</h2><p>{} credential(s).</p>",
        creds.len()
    );
    out.push_str(&table(
        "KMS credentials (no secrets)",
        &["Id", "Created", "Scope", "Status"],
        &rows,
    ));
    out
}

/// What the audit page shows.
pub(crate) enum AuditView {
    /// No audit log configured.
    Off,
    /// Written to standard output.
    Stdout,
    /// A file: its verification and its last lines.
    File {
        /// The file.
        path: String,
        /// `audit verify`'s result: lines checked and clean close, or the first break.
        verified: Result<crate::audit::VerifyReport, crate::audit::VerifyError>,
        /// The last lines, oldest first.
        tail: Vec<String>,
    },
}

/// The audit page: the chain's verification and its latest lines.
pub(crate) fn audit(view: &AuditView) -> String {
    match view {
        AuditView::Off => "<p class=\"notice\">No audit log is configured: start with \
             <code>--audit-file FILE</code> (config <code>[audit] file</code>).</p>"
            .into(),
        AuditView::Stdout => "<p class=\"notice\">Audit records go to standard output; verify \
             them where they are collected (<code>sealgate audit verify FILE</code>).</p>"
            .into(),
        AuditView::File {
            path,
            verified,
            tail,
        } => {
            let mut out = format!("<p>Audit log <code>{}</code>.</p><h2>Chain</h2>", esc(path));
            match verified {
                Ok(r) => {
                    let _ = write!(
                        out,
                        "<p><span class=\"ok\">Verified</span>: {} line(s), each hash and link intact{}.</p>",
                        r.lines,
                        if r.closed {
                            "; the writer closed it cleanly"
                        } else {
                            "; the writer is still appending"
                        }
                    );
                }
                Err(e) => {
                    let _ = write!(
                        out,
                        "<p><span class=\"bad\">Broken</span>: {}</p>",
                        esc(&e.to_string())
                    );
                }
            }
            let rows: Vec<Vec<String>> = tail
                .iter()
                .map(|line| {
                    let v: serde_json::Value =
                        serde_json::from_str(line).unwrap_or(serde_json::Value::Null);
                    let s = |k: &str| {
                        v.get(k)
                            .map(|x| match x {
                                serde_json::Value::String(s) => s.clone(),
                                other => other.to_string(),
                            })
                            .unwrap_or_default()
                    };
                    vec![
                        esc(&s("seq")),
                        esc(&s("time")),
                        format!("<code>{}</code>", esc(&s("action"))),
                        esc(&s("result")),
                        esc(&s("key_id")),
                        esc(&s("route")),
                        esc(&s("count")),
                    ]
                })
                .collect();
            let _ = write!(out, "<h2>Latest lines</h2>");
            out.push_str(&table(
                &format!("The last {} line(s)", tail.len()),
                &["Seq", "Time", "Action", "Result", "KeyId", "Route", "Count"],
                &rows,
            ));
            out
        }
    }
}

/// The login page: one labelled token field and the CSRF token.
pub(crate) fn login(csrf: &str, error: Option<&str>) -> String {
    let mut out = String::new();
    if let Some(e) = error {
        let _ = write!(out, "<p class=\"error\" role=\"alert\">{}</p>", esc(e));
    }
    let _ = write!(
        out,
        "<p>Log in with the token <code>sealgate serve</code> printed on standard error when it started.</p>\
         <form method=\"post\" action=\"/login\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <div class=\"field\"><label for=\"token\">Console token</label>\
         <input type=\"password\" id=\"token\" name=\"token\" autocomplete=\"off\" required autofocus></div>\
         <button type=\"submit\">Log in</button></form>",
        esc(csrf)
    );
    out
}
