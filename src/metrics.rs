//! Operational metrics in the Prometheus text format, and the admin
//! listener that serves them with `/healthz` and `/readyz`.
//!
//! The format is small enough to write by hand (no registry crate): each
//! family is a `Mutex<BTreeMap>` from its label values to a counter or a
//! histogram, rendered in a stable order. Labels only ever hold route
//! names, methods, status codes, action names and error codes — never a
//! field value, a key byte or anything a client can make unbounded (client
//! supplied names are cleaned and capped, see [`clean_label`]).

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::net::TcpListener;

use crate::keys::{CacheStats, DataKeyCache, KeyStore};

/// Upper bounds (seconds) of the latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Most distinct client-named label values (KMS actions) kept; more become `other`.
const MAX_CLIENT_LABELS: usize = 256;

/// One latency histogram.
#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Observations at or below each bucket bound (not cumulative here).
    buckets: [u64; LATENCY_BUCKETS.len()],
    /// Sum of observations, seconds.
    sum: f64,
    /// Number of observations.
    count: u64,
}

impl Histogram {
    /// Adds one observation.
    fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| s <= *b) {
            self.buckets[i] += 1;
        }
        self.sum += s;
        self.count += 1;
    }
}

/// A family of counters keyed by label values.
type Family<K> = Mutex<BTreeMap<K, u64>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Adds `d` to `route`'s histogram; the route's name is copied only the
/// first time it is seen.
fn observe(family: &Mutex<BTreeMap<String, Histogram>>, route: &str, d: Duration) {
    let mut map = lock(family);
    match map.get_mut(route) {
        Some(h) => h.observe(d),
        None => map.entry(route.to_string()).or_default().observe(d),
    }
}

fn bump<K: Ord>(f: &Family<K>, k: K, n: u64) {
    *lock(f).entry(k).or_insert(0) += n;
}

/// Every metric sealgate keeps; shared by the proxy, the KMS faces, the
/// audit log and the reloader. Cache counters are read from the cache at
/// scrape time.
#[derive(Debug, Default)]
pub struct Metrics {
    /// (route, method, status) → requests.
    requests: Family<(String, &'static str, u16)>,
    /// route → proxy overhead (total time minus upstream time).
    overhead: Mutex<BTreeMap<String, Histogram>>,
    /// route → upstream time (response head, plus body when rewritten).
    upstream: Mutex<BTreeMap<String, Histogram>>,
    /// route → fields sealed.
    sealed: Family<String>,
    /// route → envelopes opened.
    opened: Family<String>,
    /// reason → fields that did not open.
    open_failures: Family<&'static str>,
    /// route → selected values passed through as plaintext (migration progress).
    plaintext_passed: Family<String>,
    /// (route, direction, op) → fields a shadow route would have sealed or opened.
    shadow_fields: Family<(String, &'static str, &'static str)>,
    /// (route, direction, selector) → bodies in which a shadow selector matched nothing.
    shadow_unmatched: Family<(String, &'static str, String)>,
    /// Lines written to the shadow capture file.
    shadow_captured: AtomicU64,
    /// (source, action) → key store operations.
    key_ops: Family<(String, String)>,
    /// (source, action) → requests refused by a rate limit.
    rate_limited: Family<(String, String)>,
    /// Policy reloads that took effect.
    reloads_ok: AtomicU64,
    /// Policy reloads refused (the running set stayed).
    reloads_failed: AtomicU64,
    /// Audit records dropped because the writer fell behind.
    audit_dropped: AtomicU64,
    /// Audit records written.
    audit_written: AtomicU64,
    /// The shared limits backend (`--limits`), read at scrape time.
    limits: std::sync::OnceLock<std::sync::Arc<crate::limits::SharedLimits>>,
    /// (action, outcome) → calls to the remote key provider (each attempt).
    provider_calls: Family<(&'static str, &'static str)>,
    /// action → time per remote provider call.
    provider_seconds: Mutex<BTreeMap<String, Histogram>>,
    /// Callers served by another caller's remote provider call.
    provider_coalesced: AtomicU64,
    /// A remote key provider is configured (its metrics are shown).
    provider_on: AtomicBool,
    /// The last policy reload: when, why and what came of it.
    last_reload: Mutex<Option<LastReload>>,
}

/// The last policy reload, for the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastReload {
    /// When it ran (unix seconds).
    pub at: u64,
    /// What triggered it (`SIGHUP`, `file change`, …).
    pub trigger: String,
    /// Whether the new set took effect.
    pub ok: bool,
    /// Routes loaded, or why it was refused (files, routes, fields; no value).
    pub detail: String,
}

/// A copy of the counters the console shows, taken at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CountsSnapshot {
    /// route → fields sealed.
    pub sealed: BTreeMap<String, u64>,
    /// route → envelopes opened.
    pub opened: BTreeMap<String, u64>,
    /// route → selected values passed through as plaintext.
    pub plaintext_passed: BTreeMap<String, u64>,
    /// reason → fields that did not open.
    pub open_failures: BTreeMap<&'static str, u64>,
    /// route → proxy requests refused by the route's rate limit.
    pub rate_limited: BTreeMap<String, u64>,
    /// route → fields a shadow route would have sealed or opened.
    pub shadow_fields: BTreeMap<String, u64>,
    /// route → proxied requests.
    pub requests: BTreeMap<String, u64>,
    /// Policy reloads that took effect.
    pub reloads_ok: u64,
    /// Policy reloads refused.
    pub reloads_failed: u64,
    /// The last reload, if any ran.
    pub last_reload: Option<LastReload>,
}

/// Canonical method label: one of the standard methods, else `OTHER`
/// (extension methods are client-chosen text).
pub fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// A client-supplied name (a KMS action) made safe as a label value:
/// ASCII letters, digits, `_`, `.` and `-` only, at most 64 characters;
/// anything else is `unknown`.
pub fn clean_label(s: &str) -> String {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        s.to_string()
    } else {
        "unknown".to_string()
    }
}

impl Metrics {
    /// A fresh set of zeroed metrics.
    pub fn new() -> Self {
        Self::default()
    }

    /// Shows the remote key provider's metrics (even before its first call).
    pub fn watch_provider(&self) {
        self.provider_on.store(true, Ordering::Relaxed);
    }

    /// Counts one call (one attempt) to the remote key provider.
    pub fn provider_call(&self, action: &'static str, outcome: &'static str, took: Duration) {
        bump(&self.provider_calls, (action, outcome), 1);
        lock(&self.provider_seconds)
            .entry(action.to_string())
            .or_default()
            .observe(took);
    }

    /// Counts a caller served by another caller's provider call.
    pub fn provider_coalesced(&self) {
        self.provider_coalesced.fetch_add(1, Ordering::Relaxed);
    }

    /// Reports the shared limits backend's state and counters at each scrape.
    pub fn watch_limits(&self, limits: std::sync::Arc<crate::limits::SharedLimits>) {
        let _ = self.limits.set(limits);
    }

    /// Counts one proxied request and its latencies. `route` is the policy
    /// route's name (`-` when none matched).
    pub fn observe_request(
        &self,
        route: &str,
        method: &Method,
        status: u16,
        total: Duration,
        upstream: Option<Duration>,
    ) {
        bump(
            &self.requests,
            (route.to_string(), method_label(method), status),
            1,
        );
        let up = upstream.unwrap_or_default();
        observe(&self.overhead, route, total.saturating_sub(up));
        if let Some(up) = upstream {
            observe(&self.upstream, route, up);
        }
    }

    /// Counts fields sealed and opened on `route`.
    pub fn fields(&self, route: &str, sealed: u32, opened: u32) {
        if sealed > 0 {
            bump(&self.sealed, route.to_string(), u64::from(sealed));
        }
        if opened > 0 {
            bump(&self.opened, route.to_string(), u64::from(opened));
        }
    }

    /// Counts selected values passed through as plaintext on `route`
    /// (stored before sealgate; a migrating route reaches 0 when done).
    pub fn plaintext_passed(&self, route: &str, n: u32) {
        if n > 0 {
            bump(&self.plaintext_passed, route.to_string(), u64::from(n));
        }
    }

    /// Counts fields a shadow route would have sealed (`op` = `seal`) or
    /// opened (`open`) in one direction (`request` / `response`).
    pub fn shadow_fields(&self, route: &str, direction: &'static str, op: &'static str, n: u32) {
        if n > 0 {
            bump(
                &self.shadow_fields,
                (route.to_string(), direction, op),
                u64::from(n),
            );
        }
    }

    /// Counts one body in which a shadow route's selector matched nothing.
    pub fn shadow_unmatched(&self, route: &str, direction: &'static str, selector: &str) {
        bump(
            &self.shadow_unmatched,
            (route.to_string(), direction, selector.to_string()),
            1,
        );
    }

    /// Counts lines written to the shadow capture.
    pub fn shadow_captured(&self, n: u64) {
        self.shadow_captured.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one field that did not open, by a stable reason code.
    pub fn open_failure(&self, reason: &'static str) {
        bump(&self.open_failures, reason, 1);
    }

    /// Counts one key store operation (`source`: `proxy`, `admin`, or a KMS dialect).
    pub fn key_op(&self, source: &str, action: &str) {
        let key = (
            source.to_string(),
            self.capped(&self.key_ops, source, action),
        );
        bump(&self.key_ops, key, 1);
    }

    /// Counts one request refused by a rate limit.
    pub fn rate_limited(&self, source: &str, action: &str) {
        let key = (
            source.to_string(),
            self.capped(&self.rate_limited, source, action),
        );
        bump(&self.rate_limited, key, 1);
    }

    /// Counts one policy reload.
    pub fn policy_reload(&self, ok: bool) {
        let c = if ok {
            &self.reloads_ok
        } else {
            &self.reloads_failed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Keeps what the last policy reload was (shown by the console).
    pub fn note_reload(&self, trigger: &str, ok: bool, detail: String) {
        *lock(&self.last_reload) = Some(LastReload {
            at: crate::clock::unix_now(),
            trigger: trigger.to_string(),
            ok,
            detail,
        });
    }

    /// A copy of the per-route counters, open failures and reloads (the
    /// console samples it; no second bookkeeping).
    pub fn snapshot(&self) -> CountsSnapshot {
        let mut requests: BTreeMap<String, u64> = BTreeMap::new();
        for ((route, _, _), n) in lock(&self.requests).iter() {
            *requests.entry(route.clone()).or_default() += n;
        }
        let mut shadow_fields: BTreeMap<String, u64> = BTreeMap::new();
        for ((route, _, _), n) in lock(&self.shadow_fields).iter() {
            *shadow_fields.entry(route.clone()).or_default() += n;
        }
        CountsSnapshot {
            sealed: lock(&self.sealed).clone(),
            opened: lock(&self.opened).clone(),
            plaintext_passed: lock(&self.plaintext_passed).clone(),
            open_failures: lock(&self.open_failures).clone(),
            rate_limited: lock(&self.rate_limited)
                .iter()
                .filter(|((source, _), _)| source == "proxy")
                .map(|((_, route), n)| (route.clone(), *n))
                .collect(),
            shadow_fields,
            requests,
            reloads_ok: self.reloads_ok.load(Ordering::Relaxed),
            reloads_failed: self.reloads_failed.load(Ordering::Relaxed),
            last_reload: lock(&self.last_reload).clone(),
        }
    }

    /// Counts one audit record dropped (writer behind) or written.
    pub fn audit_record(&self, written: bool) {
        let c = if written {
            &self.audit_written
        } else {
            &self.audit_dropped
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The cleaned action label, or `other` once a family holds too many.
    fn capped(&self, family: &Family<(String, String)>, source: &str, action: &str) -> String {
        let action = clean_label(action);
        let f = lock(family);
        if f.len() >= MAX_CLIENT_LABELS && !f.contains_key(&(source.to_string(), action.clone())) {
            return "other".to_string();
        }
        action
    }

    /// The whole exposition, with the cache's counters.
    pub fn render(&self, cache: Option<CacheStats>) -> String {
        let mut out = String::new();
        header_line(
            &mut out,
            "sealgate_requests_total",
            "counter",
            "Proxied requests by route, method and status.",
        );
        for ((route, method, status), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "sealgate_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                esc(route)
            );
        }
        histogram_family(
            &mut out,
            "sealgate_proxy_overhead_seconds",
            "Time spent in sealgate per request (total minus upstream time).",
            &lock(&self.overhead),
        );
        histogram_family(
            &mut out,
            "sealgate_upstream_seconds",
            "Time waiting for the upstream per request.",
            &lock(&self.upstream),
        );
        for (name, help, fam) in [
            (
                "sealgate_fields_sealed_total",
                "Field values sealed, by route.",
                &self.sealed,
            ),
            (
                "sealgate_fields_opened_total",
                "Field envelopes opened, by route.",
                &self.opened,
            ),
        ] {
            header_line(&mut out, name, "counter", help);
            for (route, n) in lock(fam).iter() {
                let _ = writeln!(out, "{name}{{route=\"{}\"}} {n}", esc(route));
            }
        }
        header_line(
            &mut out,
            "sealgate_fields_plaintext_passed_total",
            "counter",
            "Selected values passed through as plaintext (stored before sealgate), by route.",
        );
        for (route, n) in lock(&self.plaintext_passed).iter() {
            let _ = writeln!(
                out,
                "sealgate_fields_plaintext_passed_total{{route=\"{}\"}} {n}",
                esc(route)
            );
        }
        header_line(
            &mut out,
            "sealgate_shadow_fields_total",
            "counter",
            "Fields a shadow route would have sealed or opened, by route, direction and op.",
        );
        for ((route, dir, op), n) in lock(&self.shadow_fields).iter() {
            let _ = writeln!(
                out,
                "sealgate_shadow_fields_total{{route=\"{}\",direction=\"{dir}\",op=\"{op}\"}} {n}",
                esc(route)
            );
        }
        header_line(
            &mut out,
            "sealgate_shadow_unmatched_selectors_total",
            "counter",
            "Bodies in which a shadow route's selector matched nothing, by route, direction and selector.",
        );
        for ((route, dir, sel), n) in lock(&self.shadow_unmatched).iter() {
            let _ = writeln!(
                out,
                "sealgate_shadow_unmatched_selectors_total{{route=\"{}\",direction=\"{dir}\",selector=\"{}\"}} {n}",
                esc(route),
                esc(sel)
            );
        }
        header_line(
            &mut out,
            "sealgate_shadow_capture_lines_total",
            "counter",
            "Observations written to the shadow capture file.",
        );
        let _ = writeln!(
            out,
            "sealgate_shadow_capture_lines_total {}",
            self.shadow_captured.load(Ordering::Relaxed)
        );
        header_line(
            &mut out,
            "sealgate_open_failures_total",
            "counter",
            "Fields that did not open, by reason.",
        );
        for (reason, n) in lock(&self.open_failures).iter() {
            let _ = writeln!(
                out,
                "sealgate_open_failures_total{{reason=\"{reason}\"}} {n}"
            );
        }
        for (name, help, fam) in [
            (
                "sealgate_key_operations_total",
                "Key store operations by source and action.",
                &self.key_ops,
            ),
            (
                "sealgate_rate_limited_total",
                "Requests refused by a rate limit, by source and action.",
                &self.rate_limited,
            ),
        ] {
            header_line(&mut out, name, "counter", help);
            for ((source, action), n) in lock(fam).iter() {
                let _ = writeln!(
                    out,
                    "{name}{{source=\"{}\",action=\"{}\"}} {n}",
                    esc(source),
                    esc(action)
                );
            }
        }
        header_line(
            &mut out,
            "sealgate_policy_reloads_total",
            "counter",
            "Policy reloads by result.",
        );
        let _ = writeln!(
            out,
            "sealgate_policy_reloads_total{{result=\"ok\"}} {}",
            self.reloads_ok.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "sealgate_policy_reloads_total{{result=\"failed\"}} {}",
            self.reloads_failed.load(Ordering::Relaxed)
        );
        header_line(
            &mut out,
            "sealgate_audit_records_total",
            "counter",
            "Audit records by outcome (dropped: the writer fell behind).",
        );
        let _ = writeln!(
            out,
            "sealgate_audit_records_total{{outcome=\"written\"}} {}",
            self.audit_written.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "sealgate_audit_records_total{{outcome=\"dropped\"}} {}",
            self.audit_dropped.load(Ordering::Relaxed)
        );
        header_line(
            &mut out,
            "sealgate_access_log_dropped_total",
            "counter",
            "Access log lines dropped because standard error fell behind.",
        );
        let _ = writeln!(
            out,
            "sealgate_access_log_dropped_total {}",
            crate::access_log::dropped()
        );
        if let Some(c) = cache {
            for (name, help, v) in [
                (
                    "sealgate_dek_cache_hits_total",
                    "Data key cache hits.",
                    c.hits,
                ),
                (
                    "sealgate_dek_cache_misses_total",
                    "Data key cache misses.",
                    c.misses,
                ),
                (
                    "sealgate_dek_cache_evictions_total",
                    "Cached data keys dropped (age, use or capacity).",
                    c.evictions,
                ),
                (
                    "sealgate_dek_cache_provider_calls_total",
                    "Calls from the data key cache to the key store.",
                    c.provider_calls,
                ),
            ] {
                header_line(&mut out, name, "counter", help);
                let _ = writeln!(out, "{name} {v}");
            }
        }
        if self.provider_on.load(Ordering::Relaxed) {
            header_line(
                &mut out,
                "sealgate_provider_calls_total",
                "counter",
                "Calls to the remote key provider (each attempt), by action and outcome.",
            );
            for ((action, outcome), n) in lock(&self.provider_calls).iter() {
                let _ = writeln!(
                    out,
                    "sealgate_provider_calls_total{{action=\"{action}\",outcome=\"{outcome}\"}} {n}"
                );
            }
            header_line(
                &mut out,
                "sealgate_provider_call_seconds",
                "histogram",
                "Time per call to the remote key provider, by action.",
            );
            for (action, h) in lock(&self.provider_seconds).iter() {
                let mut cumulative = 0;
                for (bound, n) in LATENCY_BUCKETS.iter().zip(h.buckets.iter()) {
                    cumulative += n;
                    let _ = writeln!(
                        out,
                        "sealgate_provider_call_seconds_bucket{{action=\"{action}\",le=\"{bound}\"}} {cumulative}"
                    );
                }
                let _ = writeln!(
                    out,
                    "sealgate_provider_call_seconds_bucket{{action=\"{action}\",le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(
                    out,
                    "sealgate_provider_call_seconds_sum{{action=\"{action}\"}} {}",
                    h.sum
                );
                let _ = writeln!(
                    out,
                    "sealgate_provider_call_seconds_count{{action=\"{action}\"}} {}",
                    h.count
                );
            }
            header_line(
                &mut out,
                "sealgate_provider_coalesced_total",
                "counter",
                "Callers served by a remote provider call another caller made (single flight).",
            );
            let _ = writeln!(
                out,
                "sealgate_provider_coalesced_total {}",
                self.provider_coalesced.load(Ordering::Relaxed)
            );
        }
        if let Some(l) = self.limits.get() {
            let s = l.stats();
            header_line(
                &mut out,
                "sealgate_limits_backend_up",
                "gauge",
                "1 while the shared limits backend (Redis) answers; 0 while quotas are counted per node.",
            );
            let _ = writeln!(out, "sealgate_limits_backend_up {}", u8::from(s.up));
            header_line(
                &mut out,
                "sealgate_limits_decisions_total",
                "counter",
                "Rate-limit decisions by where they were made: redis (fleet-wide) or node (fallback share).",
            );
            let _ = writeln!(
                out,
                "sealgate_limits_decisions_total{{backend=\"redis\"}} {}",
                s.shared_decisions
            );
            let _ = writeln!(
                out,
                "sealgate_limits_decisions_total{{backend=\"node\"}} {}",
                s.fallback_decisions
            );
            header_line(
                &mut out,
                "sealgate_limits_outages_total",
                "counter",
                "Times the shared limits backend became unreachable.",
            );
            let _ = writeln!(out, "sealgate_limits_outages_total {}", s.outages);
        }
        out
    }
}

/// The PostgreSQL key store's counters; nothing for the embedded store.
fn store_metrics(store: &KeyStore) -> String {
    let Some(s) = store.backend_stats() else {
        return String::new();
    };
    let mut out = String::new();
    for (name, kind, help, v) in [
        (
            "sealgate_store_round_trips_total",
            "counter",
            "PostgreSQL statements and connects made for callers (writes, loads, catch-up pulls); warm reads make none.",
            s.round_trips as f64,
        ),
        (
            "sealgate_store_wait_seconds_total",
            "counter",
            "Time callers waited for PostgreSQL.",
            s.wait.as_secs_f64(),
        ),
        (
            "sealgate_store_sync_pulls_total",
            "counter",
            "Pulls of other nodes' changes by the listener (notifications and polls).",
            s.sync_pulls as f64,
        ),
        (
            "sealgate_store_rows_applied_total",
            "counter",
            "Key store rows written elsewhere and applied here.",
            s.rows_applied as f64,
        ),
        (
            "sealgate_store_revision",
            "gauge",
            "Revision of the last key store change applied here.",
            store.revision() as f64,
        ),
        (
            "sealgate_store_propagation_lag_seconds",
            "gauge",
            "Commit elsewhere to applied here, for the last changes pulled (database clock).",
            s.last_lag.as_secs_f64(),
        ),
        (
            "sealgate_store_propagation_lag_max_seconds",
            "gauge",
            "Largest propagation lag since the store opened.",
            s.max_lag.as_secs_f64(),
        ),
    ] {
        header_line(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {v}");
    }
    out
}

fn header_line(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn histogram_family(out: &mut String, name: &str, help: &str, fam: &BTreeMap<String, Histogram>) {
    header_line(out, name, "histogram", help);
    for (route, h) in fam {
        let route = esc(route);
        let mut cumulative = 0;
        for (bound, n) in LATENCY_BUCKETS.iter().zip(h.buckets.iter()) {
            cumulative += n;
            let _ = writeln!(
                out,
                "{name}_bucket{{route=\"{route}\",le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(out, "{name}_sum{{route=\"{route}\"}} {}", h.sum);
        let _ = writeln!(out, "{name}_count{{route=\"{route}\"}} {}", h.count);
    }
}

/// Escapes a label value (backslash, quote, newline).
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// What `/readyz` checks.
#[derive(Debug, Default)]
pub struct Readiness {
    /// Every listener is bound and serving.
    listening: AtomicBool,
    /// Shutdown has begun: not ready for new traffic.
    draining: AtomicBool,
}

impl Readiness {
    /// Marks every listener bound.
    pub fn set_listening(&self) {
        self.listening.store(true, Ordering::SeqCst);
    }
    /// Marks shutdown begun.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }
}

/// The keys the routes in force name: what readiness checks the store for.
/// The proxy implements it; the admin listener needs nothing else of it.
pub trait RouteKeys: Send + Sync {
    /// The key names of the routes in force, one per route.
    fn route_keys(&self) -> Vec<String>;
}

/// What the admin listener serves.
#[derive(Clone)]
pub struct AdminView {
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// The data key cache (its counters are scraped).
    pub cache: Arc<DataKeyCache>,
    /// The key store (readiness: it answers a read).
    pub store: Arc<KeyStore>,
    /// The proxy's policies (readiness: the keys its routes name).
    pub routes: Arc<dyn RouteKeys>,
    /// Listener and drain flags.
    pub ready: Arc<Readiness>,
}

fn text(status: StatusCode, ctype: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, http::HeaderValue::from_static(ctype));
    r
}

/// Answers one admin request: `/metrics`, `/healthz`, `/readyz`.
pub fn admin_response<B>(view: &AdminView, req: &Request<B>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => text(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            view.metrics.render(Some(view.cache.stats())) + &store_metrics(&view.store),
        ),
        "/healthz" => text(
            StatusCode::OK,
            "application/json",
            "{\"status\":\"ok\"}".into(),
        ),
        "/readyz" => {
            let keys = view.routes.route_keys();
            // the store is open and holds every key the routes name
            let store = keys.iter().all(|k| view.store.resolve(k).is_ok());
            let routes = keys.len();
            let listening = view.ready.listening.load(Ordering::SeqCst);
            let draining = view.ready.draining.load(Ordering::SeqCst);
            let ready = store && listening && !draining;
            let body = serde_json::json!({
                "ready": ready,
                "checks": {
                    "store_keys": store,
                    "policies_loaded": true,
                    "routes": routes,
                    "listeners": listening,
                    "draining": draining,
                }
            });
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            text(status, "application/json", body.to_string())
        }
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// Serves the admin endpoints on `listener` (plaintext; HTTP/1.1 or h2c)
/// until `shutdown` resolves, on the one accept loop every listener runs.
pub async fn serve_admin(
    listener: TcpListener,
    view: AdminView,
    shutdown: impl Future<Output = ()>,
    limits: crate::listen::ListenLimits,
) {
    let acceptor = crate::tls::Acceptor::plain(true);
    crate::listen::serve(
        "admin",
        listener,
        acceptor,
        limits,
        shutdown,
        move |_, req| {
            let answer = admin_response(&view, &req);
            async move { answer }
        },
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_with_their_labels() {
        let m = Metrics::new();
        for _ in 0..3 {
            m.observe_request(
                "users",
                &Method::POST,
                200,
                Duration::from_millis(3),
                Some(Duration::from_millis(1)),
            );
        }
        m.fields("users", 4, 2);
        m.open_failure("does_not_open");
        m.key_op("proxy", "GenerateDataKey");
        m.rate_limited("proxy", "users");
        m.policy_reload(true);
        let text = m.render(None);
        assert!(text
            .contains("sealgate_requests_total{route=\"users\",method=\"POST\",status=\"200\"} 3"));
        assert!(text.contains("sealgate_fields_sealed_total{route=\"users\"} 4"));
        assert!(text.contains("sealgate_fields_opened_total{route=\"users\"} 2"));
        assert!(text.contains("sealgate_open_failures_total{reason=\"does_not_open\"} 1"));
        assert!(text.contains(
            "sealgate_key_operations_total{source=\"proxy\",action=\"GenerateDataKey\"} 1"
        ));
        assert!(text.contains("sealgate_policy_reloads_total{result=\"ok\"} 1"));
        assert!(text.contains("sealgate_upstream_seconds_count{route=\"users\"} 3"));
        assert!(
            text.contains("sealgate_proxy_overhead_seconds_bucket{route=\"users\",le=\"+Inf\"} 3")
        );
        // 2 ms overhead lands in the 2.5 ms bucket and every one above it
        assert!(
            text.contains("sealgate_proxy_overhead_seconds_bucket{route=\"users\",le=\"0.001\"} 0")
        );
        assert!(text
            .contains("sealgate_proxy_overhead_seconds_bucket{route=\"users\",le=\"0.0025\"} 3"));
    }

    #[test]
    fn client_names_cannot_inject_or_grow_labels() {
        assert_eq!(clean_label("Encrypt"), "Encrypt");
        assert_eq!(clean_label("a\"}b"), "unknown");
        assert_eq!(clean_label(&"x".repeat(65)), "unknown");
        let m = Metrics::new();
        for i in 0..(MAX_CLIENT_LABELS + 10) {
            m.key_op("tencent", &format!("A{i}"));
        }
        assert!(m
            .render(None)
            .contains("sealgate_key_operations_total{source=\"tencent\",action=\"other\"} 10"));
    }

    #[test]
    fn extension_methods_share_one_label() {
        let m = Metrics::new();
        let odd = Method::from_bytes(b"BREW").unwrap();
        m.observe_request("-", &odd, 405, Duration::ZERO, None);
        assert!(m
            .render(None)
            .contains("sealgate_requests_total{route=\"-\",method=\"OTHER\",status=\"405\"} 1"));
    }
}
