//! The reverse proxy: server, the phases of one request, bodies, the
//! upstream client, and the one place errors become responses.
//!
//! One request, phase by phase, over one [`pipeline::RequestCtx`] (see
//! [`pipeline`]): `route` (request id, host, path, route match, mode, route
//! rate limit) → `request_headers` (reveal decision) → `request_body` (read
//! bounded, seal selected fields; shadow measures) → `upstream` (target,
//! hop-by-hop, X-Forwarded-*, Host; send) → `response_headers` (hop-by-hop,
//! what the body needs) → `response_body` (open, reveal, seal; open-all
//! streams; shadow measures) → `logging`. Errors are typed
//! ([`error::ProxyError`]) and answered in one place, [`error::ProxyError::answer`].
//!
//! Modules import downwards only: `pipeline` → the phases' helpers
//! (`boundary`, `fields`, `params`, `reveal`, `shadow`, `discover`, `stale`,
//! `upstream`, `headers`) → `counts` and `error`.

pub mod boundary;
pub mod counts;
pub mod discover;
pub mod error;
pub mod fields;
pub mod headers;
pub mod params;
pub mod pipeline;
pub mod reveal;
pub mod server;
pub mod shadow;
pub mod stale;
pub mod upstream;

use bytes::Bytes;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::clock::SystemClock;
use crate::keys::DataKeyCache;
use crate::limits::Limiter;
use crate::policy::PolicySet;
use crate::ratelimit::{Quota, RateLimiter};

/// The body type the proxy sends both ways.
pub type ProxyBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;
/// Boxed error for bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Everything a request needs, shared by all connections.
pub struct ProxyState {
    /// Most client connections held open at once.
    pub max_connections: usize,
    /// The policy set in force and its route rate limits; swapped whole on
    /// reload, so a request keeps the set it started with.
    pub policies: RwLock<Arc<ActivePolicies>>,
    /// Data keys for sealing and opening.
    pub cache: Arc<DataKeyCache>,
    /// The upstream client.
    pub upstream: upstream::Upstream,
    /// Default maximum buffered body size.
    pub max_body_bytes: usize,
    /// Client header-read timeout.
    pub header_read_timeout: Duration,
    /// Request, latency and field counters.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Where sealed and opened batches are recorded.
    pub audit: Arc<crate::audit::AuditLog>,
    /// Shadow mode and its capture file.
    pub shadow: shadow::Shadow,
    /// Requests for a host no route names: passed or refused.
    pub unmatched_hosts: crate::config::UnmatchedHosts,
    /// Where route rate limits are counted when shared by the fleet
    /// (`--limits`); `None`: in this process.
    pub shared_limits: Option<Arc<crate::limits::SharedLimits>>,
}

/// A validated policy set with the rate limiter its routes ask for.
pub struct ActivePolicies {
    /// The routes.
    pub set: PolicySet,
    /// One bucket per route that has a `rate_limit`.
    pub limits: Limiter,
}

impl ActivePolicies {
    /// Builds the route limiter for `set`, counted in `shared` when given.
    pub fn new(set: PolicySet, shared: Option<Arc<crate::limits::SharedLimits>>) -> Self {
        let quotas = set
            .routes()
            .iter()
            .filter_map(|r| {
                r.rate_limit.as_ref().map(|q| {
                    (
                        r.name.clone(),
                        Quota {
                            burst: q.burst,
                            ..Quota::per_second(q.per_second)
                        },
                    )
                })
            })
            .collect();
        let table = RateLimiter::new(SystemClock, Quota::per_second(u32::MAX), quotas);
        Self {
            set,
            limits: Limiter::new("proxy", table, shared),
        }
    }
}

impl ProxyState {
    /// The current policy set.
    pub fn policies(&self) -> Arc<ActivePolicies> {
        match self.policies.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Swaps in a new, already validated policy set.
    pub fn replace_policies(&self, set: PolicySet) {
        let set = Arc::new(ActivePolicies::new(set, self.shared_limits.clone()));
        match self.policies.write() {
            Ok(mut g) => *g = set,
            Err(p) => *p.into_inner() = set,
        }
    }
}

impl crate::metrics::RouteKeys for ProxyState {
    fn route_keys(&self) -> Vec<String> {
        self.policies()
            .set
            .routes()
            .iter()
            .map(|r| r.key.clone())
            .collect()
    }
}
