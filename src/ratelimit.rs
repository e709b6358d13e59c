//! Per-caller, per-action rate limits: token buckets with a quota table.
//!
//! Every KMS face and every proxy route asks [`RateLimiter::check`] before
//! doing work. A bucket belongs to one `(caller, class)` pair, where the class
//! is the action's name unless the table groups several actions under one
//! shared quota (Alibaba's "symmetric cryptographic operations", say). Each
//! class has a [`Quota`]; actions missing from the table get the default one.
//!
//! Buckets count on the monotonic reading of a [`Clock`] (a type
//! parameter, [`SystemClock`] by default), so tests drive time by hand with
//! a [`crate::clock::ManualClock`] and never sleep. A quota carries its [`Period`] (per
//! second, per minute) and its bucket refills over that real period. Token
//! arithmetic is done in integer units: `rate` requests in one period are
//! allowed exactly, with no floating-point drift.
//!
//! The bucket map is bounded ([`RateLimiter::with_max_buckets`]): when it is
//! full, buckets that have refilled completely are dropped (they carry no
//! state a fresh bucket would not have); if none can be dropped, a request
//! from a caller/class pair not yet in the map is refused rather than
//! evicting somebody else's partly spent bucket — evicting would hand an
//! attacker who cycles through names a way to reset other callers' limits.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::clock::{Clock, SystemClock};

/// The period a [`Quota`]'s rate is counted over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Period {
    /// Requests per second (Tencent, Alibaba, proxy routes).
    #[default]
    Second,
    /// Requests per minute (Infisical): the bucket refills `rate` tokens
    /// spread over a real minute, not a second of a slowed clock.
    Minute,
}

impl Period {
    /// Its length in whole seconds.
    pub const fn secs(self) -> u32 {
        match self {
            Period::Second => 1,
            Period::Minute => 60,
        }
    }

    /// `per second` / `per minute`, for messages and docs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Period::Second => "per second",
            Period::Minute => "per minute",
        }
    }
}

/// A rate: `rate` requests per `period` sustained, up to `burst` at once.
///
/// `rate == 0` refuses every request (an action switched off). A `burst`
/// of 0 is treated as 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Sustained requests per `period`.
    pub rate: u32,
    /// What `rate` is counted over.
    pub period: Period,
    /// Bucket capacity: how many requests may arrive at once.
    pub burst: u32,
}

impl Quota {
    /// `n` per second with a burst of the same size (one second's worth).
    pub const fn per_second(n: u32) -> Self {
        Self {
            rate: n,
            period: Period::Second,
            burst: n,
        }
    }

    /// `n` per minute with a burst of the same size (one minute's worth).
    pub const fn per_minute(n: u32) -> Self {
        Self {
            rate: n,
            period: Period::Minute,
            burst: n,
        }
    }

    /// `n` per `period`, burst one period's worth.
    pub const fn per(n: u32, period: Period) -> Self {
        Self {
            rate: n,
            period,
            burst: n,
        }
    }
}

/// A limiter's quotas as plain data: the quota of each named class, the
/// actions that share a class's bucket, and the quota of everything else.
/// Each KMS face describes its dialect's table (with the config's overrides
/// applied) and [`RateLimiter::from_quotas`] builds every limiter from one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaTable {
    /// The quota of an action that names no class in the table.
    pub default: Quota,
    /// `(class, quota)`; a class is an action's own name unless `members`
    /// puts the action in a shared one.
    pub classes: Vec<(String, Quota)>,
    /// `(action, class)`: the action spends the class's bucket.
    pub members: Vec<(String, String)>,
}

impl QuotaTable {
    /// A table with only a default.
    pub fn new(default: Quota) -> Self {
        Self {
            default,
            classes: Vec::new(),
            members: Vec::new(),
        }
    }

    /// Sets the quota of `class` (later entries win).
    pub fn quota(mut self, class: impl Into<String>, quota: Quota) -> Self {
        self.classes.push((class.into(), quota));
        self
    }

    /// Puts `action` in `class`'s bucket.
    pub fn member(mut self, action: impl Into<String>, class: impl Into<String>) -> Self {
        self.members.push((action.into(), class.into()));
        self
    }

    /// Applies operator overrides (`[kms.<dialect>.quotas]`, validated at
    /// load), each replacing the quota of the class it names.
    pub fn with_overrides(self, overrides: impl IntoIterator<Item = (String, Quota)>) -> Self {
        overrides
            .into_iter()
            .fold(self, |t, (class, q)| t.quota(class, q))
    }
}

/// A refused request: try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl std::fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rate limit exceeded; retry after {} ms",
            self.0.as_millis()
        )
    }
}

impl std::error::Error for RetryAfter {}

/// One second in nanoseconds. A token of a quota is `NANO * period.secs()`
/// units and refill adds `rate` units per elapsed nanosecond, so `rate`
/// tokens come back per period exactly, in integers.
const NANO: u128 = 1_000_000_000;

/// Default bound on the number of live buckets.
pub const DEFAULT_MAX_BUCKETS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Units available at `at` (see [`unit`]).
    tokens: u128,
    at: Instant,
}

/// One token of `q`, in units.
fn unit(q: Quota) -> u128 {
    NANO * u128::from(q.period.secs())
}

fn capacity(q: Quota) -> u128 {
    u128::from(q.burst.max(1)) * unit(q)
}

/// Units in `b` at `now`, capped at the quota's capacity.
fn refilled(b: &Bucket, q: Quota, now: Instant) -> u128 {
    let elapsed = now.saturating_duration_since(b.at).as_nanos();
    let added = elapsed.saturating_mul(u128::from(q.rate));
    b.tokens.saturating_add(added).min(capacity(q))
}

/// Token-bucket limiter keyed by `(caller, class)`.
#[derive(Debug)]
pub struct RateLimiter<C: Clock = SystemClock> {
    clock: C,
    default: Quota,
    quotas: HashMap<String, Quota>,
    classes: HashMap<String, String>,
    max_buckets: usize,
    buckets: Mutex<HashMap<(String, String), Bucket>>,
}

impl<C: Clock> RateLimiter<C> {
    /// A limiter with `default` for actions not in `quotas` (keyed by action
    /// or class name).
    pub fn new(clock: C, default: Quota, quotas: HashMap<String, Quota>) -> Self {
        Self {
            clock,
            default,
            quotas,
            classes: HashMap::new(),
            max_buckets: DEFAULT_MAX_BUCKETS,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The limiter a [`QuotaTable`] describes.
    pub fn from_quotas(clock: C, table: QuotaTable) -> Self {
        let mut l = Self::new(clock, table.default, table.classes.into_iter().collect());
        l.classes = table.members.into_iter().collect();
        l
    }

    /// A limiter from a `(name, per_second)` table (burst = one second's worth).
    pub fn from_table<'a>(
        clock: C,
        default: Quota,
        table: impl IntoIterator<Item = (&'a str, u32)>,
    ) -> Self {
        let quotas = table
            .into_iter()
            .map(|(n, r)| (n.to_string(), Quota::per_second(r)))
            .collect();
        Self::new(clock, default, quotas)
    }

    /// Replaces quotas by name (config overrides); other entries stay.
    pub fn with_overrides(mut self, overrides: HashMap<String, Quota>) -> Self {
        self.quotas.extend(overrides);
        self
    }

    /// Replaces the default quota.
    pub fn with_default(mut self, default: Quota) -> Self {
        self.default = default;
        self
    }

    /// Makes `action` share the bucket (and quota) of `class`.
    pub fn with_class(mut self, action: &str, class: &str) -> Self {
        self.classes.insert(action.to_string(), class.to_string());
        self
    }

    /// Bounds the number of live buckets (at least 1).
    pub fn with_max_buckets(mut self, n: usize) -> Self {
        self.max_buckets = n.max(1);
        self
    }

    /// The same table (default, quotas, classes, bucket bound) with every
    /// quota mapped by `f`, counting on `clock` in fresh buckets.
    pub fn scaled<C2: Clock>(&self, clock: C2, f: impl Fn(Quota) -> Quota) -> RateLimiter<C2> {
        RateLimiter {
            clock,
            default: f(self.default),
            quotas: self
                .quotas
                .iter()
                .map(|(k, q)| (k.clone(), f(*q)))
                .collect(),
            classes: self.classes.clone(),
            max_buckets: self.max_buckets,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The clock it counts on.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// The class an action is counted under.
    pub fn class_of<'a>(&'a self, action: &'a str) -> &'a str {
        self.classes
            .get(action)
            .map(String::as_str)
            .unwrap_or(action)
    }

    /// The quota that applies to `action`.
    pub fn quota_for(&self, action: &str) -> Quota {
        self.quotas
            .get(self.class_of(action))
            .copied()
            .unwrap_or(self.default)
    }

    /// Takes one token for `caller` doing `action`, or says how long to wait.
    pub fn check(&self, caller: &str, action: &str) -> Result<(), RetryAfter> {
        let quota = self.quota_for(action);
        if quota.rate == 0 {
            return Err(RetryAfter(Duration::from_secs(u64::from(
                quota.period.secs(),
            ))));
        }
        let class = self.class_of(action);
        let now = self.clock.instant();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let key = (caller.to_string(), class.to_string());
        if !buckets.contains_key(&key) && buckets.len() >= self.max_buckets {
            self.prune(&mut buckets, now);
            if buckets.len() >= self.max_buckets {
                return Err(RetryAfter(Duration::from_secs(1)));
            }
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: capacity(quota),
            at: now,
        });
        let tokens = refilled(bucket, quota, now);
        let one = unit(quota);
        if tokens >= one {
            *bucket = Bucket {
                tokens: tokens - one,
                at: now,
            };
            Ok(())
        } else {
            *bucket = Bucket { tokens, at: now };
            let missing = one - tokens;
            let rate = u128::from(quota.rate);
            let nanos = missing.div_ceil(rate);
            Err(RetryAfter(Duration::from_nanos(
                u64::try_from(nanos).unwrap_or(u64::MAX),
            )))
        }
    }

    /// Drops buckets that have refilled to capacity: a fresh bucket is identical.
    fn prune(&self, buckets: &mut HashMap<(String, String), Bucket>, now: Instant) {
        buckets.retain(|(_, class), b| {
            let q = self.quotas.get(class).copied().unwrap_or(self.default);
            refilled(b, q, now) < capacity(q)
        });
    }

    /// Number of live buckets (for tests and metrics).
    pub fn bucket_count(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;

    fn limiter(table: &[(&str, u32)]) -> (Arc<ManualClock>, RateLimiter<Arc<ManualClock>>) {
        let clock = Arc::new(ManualClock::default());
        let l =
            RateLimiter::from_table(clock.clone(), Quota::per_second(100), table.iter().copied());
        (clock, l)
    }

    fn allowed(l: &RateLimiter<Arc<ManualClock>>, caller: &str, action: &str, n: usize) -> usize {
        (0..n).filter(|_| l.check(caller, action).is_ok()).count()
    }

    #[test]
    fn exactly_n_per_second_then_refused() {
        let (_c, l) = limiter(&[("Encrypt", 300)]);
        assert_eq!(allowed(&l, "alice", "Encrypt", 300), 300);
        let err = l.check("alice", "Encrypt").unwrap_err();
        // One token comes back after 1/300 s.
        assert_eq!(err.0, Duration::from_nanos(1_000_000_000u64.div_ceil(300)));
    }

    #[test]
    fn refills_over_time_and_caps_at_burst() {
        let (c, l) = limiter(&[("Encrypt", 10)]);
        assert_eq!(allowed(&l, "a", "Encrypt", 10), 10);
        assert!(l.check("a", "Encrypt").is_err());
        c.advance(Duration::from_millis(100));
        assert_eq!(allowed(&l, "a", "Encrypt", 5), 1, "one token per 100 ms");
        c.advance(Duration::from_secs(60));
        assert_eq!(allowed(&l, "a", "Encrypt", 50), 10, "never more than burst");
    }

    #[test]
    fn retry_after_is_honest() {
        let (c, l) = limiter(&[("X", 4)]);
        assert_eq!(allowed(&l, "a", "X", 4), 4);
        let RetryAfter(wait) = l.check("a", "X").unwrap_err();
        c.advance(wait - Duration::from_nanos(1));
        assert!(l.check("a", "X").is_err(), "one ns early is still refused");
        c.advance(Duration::from_nanos(1));
        assert!(
            l.check("a", "X").is_ok(),
            "after the advertised wait it passes"
        );
    }

    #[test]
    fn callers_are_independent() {
        let (_c, l) = limiter(&[("Decrypt", 3)]);
        assert_eq!(allowed(&l, "alice", "Decrypt", 5), 3);
        assert_eq!(allowed(&l, "bob", "Decrypt", 5), 3);
    }

    #[test]
    fn actions_are_independent_and_use_their_own_quota() {
        let (_c, l) = limiter(&[("Encrypt", 3), ("CreateKey", 1)]);
        assert_eq!(allowed(&l, "a", "Encrypt", 5), 3);
        assert_eq!(allowed(&l, "a", "CreateKey", 5), 1);
        assert_eq!(allowed(&l, "a", "Unlisted", 200), 100, "default quota");
    }

    #[test]
    fn classes_share_one_bucket() {
        let (_c, l) = limiter(&[("symmetric", 4)]);
        let l = l
            .with_class("Encrypt", "symmetric")
            .with_class("Decrypt", "symmetric");
        assert_eq!(allowed(&l, "a", "Encrypt", 3), 3);
        assert_eq!(allowed(&l, "a", "Decrypt", 3), 1, "shared with Encrypt");
    }

    #[test]
    fn overrides_replace_table_entries() {
        let (_c, l) = limiter(&[("Encrypt", 300), ("Decrypt", 300)]);
        let l = l.with_overrides(HashMap::from([(
            "Encrypt".to_string(),
            Quota {
                rate: 1,
                period: Period::Second,
                burst: 2,
            },
        )]));
        assert_eq!(l.quota_for("Decrypt"), Quota::per_second(300));
        assert_eq!(allowed(&l, "a", "Encrypt", 5), 2, "burst from the override");
    }

    #[test]
    fn a_per_minute_quota_allows_n_per_real_minute() {
        let clock = Arc::new(ManualClock::default());
        let l = RateLimiter::new(
            clock.clone(),
            Quota::per_second(100),
            HashMap::from([("write".to_string(), Quota::per_minute(90))]),
        );
        assert_eq!(
            allowed(&l, "a", "write", 200),
            90,
            "a minute's worth at once"
        );
        let RetryAfter(wait) = l.check("a", "write").unwrap_err();
        // One token comes back after 60/90 s of real time, not 1/90 s.
        assert_eq!(wait, Duration::from_nanos(60_000_000_000u64.div_ceil(90)));
        clock.advance(Duration::from_secs(1));
        assert_eq!(allowed(&l, "a", "write", 10), 1, "1.5 tokens per second");
        clock.advance(Duration::from_secs(59));
        assert_eq!(
            allowed(&l, "a", "write", 200),
            89,
            "90 in that minute, no more"
        );
        clock.advance(Duration::from_secs(3600));
        assert_eq!(
            allowed(&l, "a", "write", 200),
            90,
            "capped at one minute's worth"
        );
    }

    #[test]
    fn zero_rate_refuses_everything() {
        let (c, l) = limiter(&[("Off", 0)]);
        assert!(l.check("a", "Off").is_err());
        c.advance(Duration::from_secs(3600));
        assert!(l.check("a", "Off").is_err());
    }

    #[test]
    fn unknown_callers_cannot_grow_the_map_without_bound() {
        let (c, l) = limiter(&[("X", 1)]);
        let l = l.with_max_buckets(3);
        for name in ["a", "b", "c"] {
            assert!(l.check(name, "X").is_ok());
        }
        // Full, and every bucket is partly spent: a new name is refused, and the
        // spent buckets are not reset.
        assert!(l.check("d", "X").is_err());
        assert!(l.check("a", "X").is_err(), "a's bucket was not evicted");
        assert_eq!(l.bucket_count(), 3);
        // Once the old buckets have refilled they are pruned to make room.
        c.advance(Duration::from_secs(1));
        assert!(l.check("d", "X").is_ok());
        assert!(l.bucket_count() <= 3);
    }
}
