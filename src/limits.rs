//! Where quotas are counted: in this process (the default), or — with
//! `--limits redis://HOST:PORT` — in Redis, shared by every node that points
//! at the same server, so a documented quota of 300 Encrypt/s is 300 for the
//! fleet, not 300 per node.
//!
//! A [`Limiter`] is what a KMS face or the proxy's route table asks. It holds
//! the quota table (a [`RateLimiter`], which also counts locally when there is
//! no Redis) and, when a [`SharedLimits`] backend is configured, asks Redis
//! first: one `EVALSHA` of a GCRA script per request, the same buckets as the
//! local limiter — per (caller, class), `rate` per period plus `burst`. The
//! script reads Redis's own clock (`TIME`) and decides and writes in one
//! atomic step, so nodes whose clocks differ still share one bucket and no
//! read-then-write race lets two nodes spend the same token. Over any T
//! seconds the fleet accepts at most `rate·T/period + burst` per bucket.
//!
//! When Redis cannot be reached (refused, timed out, killed), a request is
//! counted locally under the quota divided by `limits.nodes` (each node its
//! share; never less than 1), the switch is logged once at WARN, counted in
//! metrics, and Redis is probed again at most once a second; the first
//! answer switches back, logged once at INFO. No restart is needed either way.
//! A route or action with no quota costs no Redis round trip.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::clock::{Clock, SystemClock};
use crate::ratelimit::{Quota, RateLimiter, RetryAfter};

/// How long one Redis decision may take before the request is counted
/// locally instead (loopback answers in well under a millisecond).
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

/// After Redis failed, how long requests are counted locally before Redis is
/// asked again.
pub const REDIS_RETRY: Duration = Duration::from_secs(1);

/// GCRA (the generic cell rate algorithm) on one key, atomically.
///
/// KEYS[1] the bucket; ARGV[1] the emission interval (µs per token, a
/// float), ARGV[2] the burst (tokens). The key holds the theoretical arrival
/// time (TAT, µs since the epoch by Redis's clock). A request is allowed when
/// the new TAT is at most `burst` intervals ahead of now. Returns
/// `{1, 0}` (allowed) or `{0, µs until one token is back}`.
const GCRA: &str = r#"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local wait = new_tat - burst * interval - now
if wait > 0 then
  return {0, math.ceil(wait)}
end
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return {1, 0}
"#;

/// `[limits]` as configured: the Redis URL, the node count the fallback
/// divides by, and the key prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// `redis://HOST:PORT[/DB]` (or `rediss://`).
    pub url: String,
    /// Nodes sharing the quotas: while Redis is unreachable each node allows
    /// `quota / nodes`.
    pub nodes: u32,
    /// Prefix of every Redis key sealgate writes.
    pub prefix: String,
}

/// Default `limits.prefix`.
pub const DEFAULT_PREFIX: &str = "sealgate";

impl LimitsConfig {
    /// Checks the URL's form (scheme, host) without connecting; the message
    /// names the URL without any password in it.
    pub fn validate(&self) -> Result<(), String> {
        let info = redis::IntoConnectionInfo::into_connection_info(self.url.as_str())
            .map_err(|e| format!("limits.url {}: {e}", redact(&self.url)))?;
        drop(info);
        if self.nodes == 0 {
            return Err("limits.nodes must be at least 1".into());
        }
        if self.prefix.is_empty() || self.prefix.contains(char::is_whitespace) {
            return Err("limits.prefix must be non-empty, without spaces".into());
        }
        Ok(())
    }
}

/// `url` with any password replaced by `***`, for logs and messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let user_info = &url[s + 3..at];
            match user_info.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &user_info[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// What the limits backend is doing, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendStats {
    /// Redis answered the last time it was asked.
    pub up: bool,
    /// Decisions made by Redis.
    pub shared_decisions: u64,
    /// Decisions made locally because Redis could not be reached.
    pub fallback_decisions: u64,
    /// Times Redis became unreachable.
    pub outages: u64,
}

/// The process's connection to the shared limits (one per process; every
/// [`Limiter`] holds an `Arc` of it).
pub struct SharedLimits {
    config: LimitsConfig,
    client: redis::Client,
    conn: tokio::sync::Mutex<Option<redis::aio::ConnectionManager>>,
    script: redis::Script,
    up: AtomicBool,
    retry_at: Mutex<Option<Instant>>,
    shared: AtomicU64,
    fallback: AtomicU64,
    outages: AtomicU64,
}

impl std::fmt::Debug for SharedLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLimits")
            .field("url", &redact(&self.config.url))
            .field("nodes", &self.config.nodes)
            .field("up", &self.up.load(Ordering::Relaxed))
            .finish()
    }
}

impl SharedLimits {
    /// A backend for `config` (checked with [`LimitsConfig::validate`]);
    /// connects on first use, so a node starts even while Redis is down
    /// (counting locally until it answers).
    pub fn new(config: LimitsConfig) -> Result<Self, String> {
        config.validate()?;
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| format!("limits.url {}: {e}", redact(&config.url)))?;
        Ok(Self {
            config,
            client,
            conn: tokio::sync::Mutex::new(None),
            script: redis::Script::new(GCRA),
            up: AtomicBool::new(true),
            retry_at: Mutex::new(None),
            shared: AtomicU64::new(0),
            fallback: AtomicU64::new(0),
            outages: AtomicU64::new(0),
        })
    }

    /// The configuration (URL as given: redact before showing it).
    pub fn config(&self) -> &LimitsConfig {
        &self.config
    }

    /// Counters for metrics.
    pub fn stats(&self) -> BackendStats {
        BackendStats {
            up: self.up.load(Ordering::Relaxed),
            shared_decisions: self.shared.load(Ordering::Relaxed),
            fallback_decisions: self.fallback.load(Ordering::Relaxed),
            outages: self.outages.load(Ordering::Relaxed),
        }
    }

    /// Takes one token from the shared bucket `key` of `quota`, or says how
    /// long to wait; `None` when Redis could not decide (the caller counts
    /// locally).
    async fn take(&self, key: &str, quota: Quota) -> Option<Result<(), RetryAfter>> {
        if self.backing_off() {
            self.fallback.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let interval_us =
            f64::from(quota.period.secs()) * 1_000_000.0 / f64::from(quota.rate.max(1));
        let burst = quota.burst.max(1);
        let decided = tokio::time::timeout(REDIS_TIMEOUT, async {
            let mut conn = self.connection().await?;
            let (allowed, wait_us): (i64, i64) = self
                .script
                .key(key)
                .arg(interval_us)
                .arg(burst)
                .invoke_async(&mut conn)
                .await?;
            Ok::<_, redis::RedisError>((allowed, wait_us))
        })
        .await;
        match decided {
            Ok(Ok((allowed, wait_us))) => {
                self.mark_up();
                self.shared.fetch_add(1, Ordering::Relaxed);
                if allowed == 1 {
                    Some(Ok(()))
                } else {
                    let wait = Duration::from_micros(u64::try_from(wait_us).unwrap_or(0));
                    Some(Err(RetryAfter(wait.max(Duration::from_micros(1)))))
                }
            }
            Ok(Err(e)) => {
                self.mark_down(&e.to_string());
                self.fallback.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(_) => {
                self.mark_down("no answer within the timeout");
                self.fallback.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// The connection, made on first use (and again after a failure).
    async fn connection(&self) -> Result<redis::aio::ConnectionManager, redis::RedisError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(REDIS_TIMEOUT)
            .set_response_timeout(REDIS_TIMEOUT)
            .set_number_of_retries(1);
        let c = redis::aio::ConnectionManager::new_with_config(self.client.clone(), config).await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    fn backing_off(&self) -> bool {
        let mut retry = self.retry_at.lock().unwrap_or_else(|p| p.into_inner());
        match *retry {
            Some(at) if Instant::now() < at => true,
            Some(_) => {
                // this request is the probe; the others keep counting locally
                *retry = Some(Instant::now() + REDIS_RETRY);
                false
            }
            None => false,
        }
    }

    fn mark_down(&self, why: &str) {
        *self.retry_at.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Instant::now() + REDIS_RETRY);
        if self.up.swap(false, Ordering::SeqCst) {
            self.outages.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                url = %redact(&self.config.url),
                nodes = self.config.nodes,
                error = %why,
                "the shared limits backend is unreachable; counting quotas per node (each node its share: quota / nodes) until it answers"
            );
        }
    }

    fn mark_up(&self) {
        *self.retry_at.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if !self.up.swap(true, Ordering::SeqCst) {
            tracing::info!(
                url = %redact(&self.config.url),
                "the shared limits backend answers again; quotas are fleet-wide"
            );
        }
    }
}

/// A quota table and where it is counted. See the module docs.
#[derive(Debug)]
pub struct Limiter<C: Clock = SystemClock> {
    /// Who counts: `tencent`, `alibaba`, `infisical` or `proxy` (part of the
    /// Redis key, so two tables never share a bucket).
    scope: &'static str,
    /// The quotas; counts locally when there is no shared backend.
    table: RateLimiter<C>,
    /// With a shared backend: the shared backend and this node's share of
    /// each quota, counted locally while the backend is unreachable.
    shared: Option<(std::sync::Arc<SharedLimits>, RateLimiter<C>)>,
}

impl<C: Clock + Clone> Limiter<C> {
    /// Counts `table`'s quotas in this process only.
    pub fn local(scope: &'static str, table: RateLimiter<C>) -> Self {
        Self {
            scope,
            table,
            shared: None,
        }
    }

    /// Counts `table`'s quotas in `backend` when it is given, else locally.
    pub fn new(
        scope: &'static str,
        table: RateLimiter<C>,
        backend: Option<std::sync::Arc<SharedLimits>>,
    ) -> Self {
        match backend {
            None => Self::local(scope, table),
            Some(backend) => {
                let nodes = backend.config.nodes.max(1);
                let share = table.scaled(table.clock().clone(), |q| node_share(q, nodes));
                Self {
                    scope,
                    table,
                    shared: Some((backend, share)),
                }
            }
        }
    }

    /// Counts in `backend` from now on (when given): the same table.
    pub fn shared_by(self, backend: Option<std::sync::Arc<SharedLimits>>) -> Self {
        match self.shared {
            Some(_) => self,
            None => Self::new(self.scope, self.table, backend),
        }
    }

    /// The quota table (class names, quotas).
    pub fn table(&self) -> &RateLimiter<C> {
        &self.table
    }

    /// Whether requests are counted in a shared backend.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Takes one token for `caller` doing `action`, or says how long to wait.
    pub async fn check(&self, caller: &str, action: &str) -> Result<(), RetryAfter> {
        let Some((backend, share)) = &self.shared else {
            return self.table.check(caller, action);
        };
        let quota = self.table.quota_for(action);
        if quota.rate == 0 {
            return self.table.check(caller, action);
        }
        let key = format!(
            "{}:rl:{}:{}:{}",
            backend.config.prefix,
            self.scope,
            self.table.class_of(action),
            caller
        );
        match backend.take(&key, quota).await {
            Some(decision) => decision,
            None => share.check(caller, action),
        }
    }
}

impl<C: Clock + Clone> Limiter<C> {
    /// [`check`](Self::check) for a caller on a synchronous path inside the
    /// runtime (a KMS face decides after authenticating, in plain code).
    /// Without a shared backend it is the local check. With one, the Redis
    /// round trip runs under `block_in_place`, so the worker's other tasks
    /// move to another worker meanwhile; outside a multi-thread runtime
    /// (where that is not possible) the node's share decides.
    pub fn check_now(&self, caller: &str, action: &str) -> Result<(), RetryAfter> {
        let Some((_, share)) = &self.shared else {
            return self.table.check(caller, action);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| h.block_on(self.check(caller, action)))
            }
            _ => share.check(caller, action),
        }
    }
}

/// One node's share of `q` when `nodes` share it: rate and burst divided,
/// each at least 1 (a switched-off action, rate 0, stays off).
pub fn node_share(q: Quota, nodes: u32) -> Quota {
    let part = |n: u32| if n == 0 { 0 } else { (n / nodes).max(1) };
    Quota {
        rate: part(q.rate),
        period: q.period,
        burst: part(q.burst.max(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::Period;

    #[test]
    fn a_share_divides_rate_and_burst_and_never_reaches_zero() {
        let q = Quota {
            rate: 300,
            period: Period::Second,
            burst: 300,
        };
        assert_eq!(node_share(q, 3), Quota::per_second(100));
        assert_eq!(node_share(Quota::per_second(2), 3), Quota::per_second(1));
        assert_eq!(node_share(Quota::per_second(0), 3).rate, 0);
        assert_eq!(node_share(Quota::per_minute(60), 4), Quota::per_minute(15));
    }

    #[test]
    fn passwords_never_reach_a_message() {
        assert_eq!(
            redact("redis://user:hunter2@10.0.0.1:6379/0"),
            "redis://user:***@10.0.0.1:6379/0"
        );
        assert_eq!(redact("redis://10.0.0.1:6379"), "redis://10.0.0.1:6379");
        let bad = LimitsConfig {
            url: "http://user:hunter2@x".into(),
            nodes: 1,
            prefix: DEFAULT_PREFIX.into(),
        };
        let e = bad.validate().unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        let zero = LimitsConfig {
            url: "redis://127.0.0.1:6379".into(),
            nodes: 0,
            prefix: DEFAULT_PREFIX.into(),
        };
        assert!(zero.validate().unwrap_err().contains("nodes"));
    }
}
