//! Replay protection shared by the KMS faces: a bounded, time-windowed set
//! of `(credential id, token)` pairs, where the token is whatever makes one
//! signed request unique in its dialect (Alibaba's `SignatureNonce`,
//! Tencent's signature, or the legacy API's `Nonce` + `Timestamp`).
//!
//! A face remembers a token once the request's signature has verified, until
//! the request's timestamp has left the accepted clock-skew window (after
//! that the skew check refuses the request anyway), so a captured request
//! cannot be sent a second time while it would still pass.
//!
//! Entries are fixed-size digests of the pair, so memory is bounded by the
//! entry cap whatever the clients send. When the cap is reached by live
//! entries, new tokens are refused rather than live ones evicted: evicting
//! would reopen the window for a captured request. Time is the wall time of
//! a [`Clock`] (unix seconds, like the requests' timestamps), so tests drive
//! it with a [`crate::clock::ManualClock`].

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::clock::{Clock, SystemClock};

/// Default bound on remembered tokens: about 20 MB at most, and room for a
/// few hundred requests a second from every credential for the five-minute
/// window of Tencent's clock skew.
pub const DEFAULT_REPLAY_CAPACITY: usize = 200_000;

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayRefused {
    /// Seen before and still within its window: a replay.
    Used,
    /// The cache holds its cap of live tokens; the client should retry
    /// shortly (the faces answer with their throttling code).
    Full,
}

type Digest32 = [u8; 32];

#[derive(Debug, Default)]
struct Inner {
    expiry: HashMap<Digest32, i64>,
    by_expiry: BTreeSet<(i64, Digest32)>,
}

/// Remembers `(credential id, token)` pairs until their expiry, refusing a
/// pair seen before. Bounded by `capacity`; expired entries are dropped on
/// every call, by the time `clock` tells.
#[derive(Debug)]
pub struct ReplayCache<C: Clock = SystemClock> {
    capacity: usize,
    clock: C,
    inner: Mutex<Inner>,
}

impl Default for ReplayCache<SystemClock> {
    fn default() -> Self {
        Self::new(DEFAULT_REPLAY_CAPACITY)
    }
}

impl ReplayCache<SystemClock> {
    /// A cache on the system clock holding at most `capacity` live tokens
    /// (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self::with_clock(capacity, SystemClock)
    }
}

/// The entry for a pair: a digest over both, length-prefixed so that
/// `("ab", "c")` and `("a", "bc")` stay distinct.
fn entry(credential: &str, token: &str) -> Digest32 {
    let mut h = Sha256::new();
    h.update((credential.len() as u64).to_be_bytes());
    h.update(credential.as_bytes());
    h.update(token.as_bytes());
    h.finalize().into()
}

impl<C: Clock> ReplayCache<C> {
    /// A cache reading the time from `clock`, holding at most `capacity`
    /// live tokens (at least 1).
    pub fn with_clock(capacity: usize, clock: C) -> Self {
        Self {
            capacity: capacity.max(1),
            clock,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The clock this cache forgets entries by.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// Live entries (as of the last call that pruned).
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .expiry
            .len()
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records `token` for `credential` until `expires_at` (unix seconds;
    /// the entry is forgotten once the clock reaches it), or refuses it if
    /// the pair is already recorded or the cache is full.
    pub fn check_and_insert(
        &self,
        credential: &str,
        token: &str,
        expires_at: i64,
    ) -> Result<(), ReplayRefused> {
        let now = i64::try_from(self.clock.unix_secs()).unwrap_or(i64::MAX);
        let key = entry(credential, token);
        // A poisoned lock only means another request panicked mid-call; the
        // maps are still consistent (each change below is one insert/remove).
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(first) = g.by_expiry.first().copied() {
            if first.0 > now {
                break;
            }
            g.by_expiry.remove(&first);
            g.expiry.remove(&first.1);
        }
        if g.expiry.contains_key(&key) {
            return Err(ReplayRefused::Used);
        }
        if g.expiry.len() >= self.capacity {
            return Err(ReplayRefused::Full);
        }
        g.by_expiry.insert((expires_at, key));
        g.expiry.insert(key, expires_at);
        Ok(())
    }
}

/// When a request stamped `timestamp` may be forgotten, given the accepted
/// skew: one second after the skew check starts refusing it.
pub fn expiry_after_window(timestamp: i64, max_skew_secs: i64) -> i64 {
    timestamp
        .saturating_add(max_skew_secs.saturating_abs())
        .saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn forgets_after_the_window_and_is_bounded() {
        let c = ReplayCache::with_clock(2, ManualClock::new(0));
        assert!(c.check_and_insert("ak", "n1", 100).is_ok());
        c.clock().set_unix_secs(50);
        assert_eq!(
            c.check_and_insert("ak", "n1", 100),
            Err(ReplayRefused::Used)
        );
        // Another credential may use the same token.
        assert!(c.check_and_insert("bk", "n1", 200).is_ok());
        // Full of live tokens: refused, nothing evicted.
        c.clock().set_unix_secs(60);
        assert_eq!(
            c.check_and_insert("ak", "n2", 300),
            Err(ReplayRefused::Full)
        );
        assert_eq!(
            c.check_and_insert("ak", "n1", 100),
            Err(ReplayRefused::Used)
        );
        // At 100 the first expires and makes room.
        c.clock().set_unix_secs(100);
        assert!(c.check_and_insert("ak", "n2", 300).is_ok());
        c.clock().set_unix_secs(200);
        assert!(c.check_and_insert("ak", "n1", 400).is_ok());
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn pairs_do_not_run_into_each_other() {
        let c = ReplayCache::with_clock(10, ManualClock::new(0));
        assert!(c.check_and_insert("ab", "c", 10).is_ok());
        assert!(c.check_and_insert("a", "bc", 10).is_ok());
        assert_eq!(c.check_and_insert("ab", "c", 10), Err(ReplayRefused::Used));
    }

    #[test]
    fn expiry_is_one_second_past_the_window() {
        assert_eq!(expiry_after_window(1000, 300), 1301);
        assert_eq!(expiry_after_window(i64::MAX, 300), i64::MAX);
        // An entry stamped now lives exactly as long as the request passes
        // the skew check (|ts − now| <= 300).
        let c = ReplayCache::with_clock(10, ManualClock::new(1000));
        let exp = expiry_after_window(1000, 300);
        assert!(c.check_and_insert("id", "sig", exp).is_ok());
        c.clock().set_unix_secs(1300);
        assert_eq!(
            c.check_and_insert("id", "sig", exp),
            Err(ReplayRefused::Used)
        );
        c.clock().set_unix_secs(1301);
        assert!(c.check_and_insert("id", "sig", exp).is_ok());
    }
}
