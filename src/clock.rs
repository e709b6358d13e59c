//! The one source of time: the [`Clock`] trait, the real clock
//! ([`SystemClock`]) and the clock tests drive by hand ([`ManualClock`]).
//!
//! A clock gives two readings, and each user takes the one its question is
//! about:
//!
//! - **monotonic** — [`Clock::instant`], a [`std::time::Instant`]. It never
//!   goes back and knows no date, so it measures how long something took or
//!   how old it is: rate-limit token buckets ([`crate::ratelimit`],
//!   [`crate::limits`]) and the age of cached data keys
//!   ([`crate::keys::DataKeyCache`]).
//! - **wall time** — [`Clock::unix_secs`], whole seconds since the unix
//!   epoch. It is a date that is stored, shown and compared with dates from
//!   elsewhere, and it may jump when the host's time is set: key-store
//!   creation, rotation and deletion dates ([`crate::keys::StoreOptions`]),
//!   replay windows of signed KMS requests, whose bound is the request's own
//!   timestamp ([`crate::kms::replay`]), and Infisical access-token expiry.
//!
//! Code that keeps time takes a clock: as a type parameter where it sits on
//! a hot path (`RateLimiter<C: Clock = SystemClock>`, `ReplayCache<C>`:
//! [`SystemClock`] is a unit type, so the default costs no more than calling
//! `Instant::now` in place), or as an `Arc<dyn Clock>` where a handle of one
//! type is passed around (the key store's options, the data-key cache).
//! Code with no test that needs to move time reads the system directly
//! ([`unix_now`] for wall time, `Instant::now` for durations).
//!
//! Tests drive time with a [`ManualClock`], shared as an
//! `Arc<ManualClock>` (an `Arc` of a clock is a clock):
//! [`ManualClock::advance`] moves both readings forward together, as real
//! time passes; [`ManualClock::set_unix_secs`] sets the wall time alone, as
//! an operator or NTP would, and never moves the monotonic reading. Nothing
//! sleeps.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use sealgate::clock::{Clock, ManualClock};
//!
//! let clock = Arc::new(ManualClock::new(1_700_000_000));
//! let (t0, i0) = (clock.unix_secs(), clock.instant());
//! clock.advance(Duration::from_secs(90));
//! assert_eq!(clock.unix_secs(), t0 + 90);
//! assert_eq!(clock.instant() - i0, Duration::from_secs(90));
//! clock.set_unix_secs(t0);
//! assert_eq!(clock.unix_secs(), t0);
//! assert_eq!(clock.instant() - i0, Duration::from_secs(90), "monotonic");
//! ```

use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where time is read from: a monotonic instant and the wall time.
pub trait Clock: Send + Sync + Debug {
    /// The current monotonic instant: for durations and ages.
    fn instant(&self) -> Instant;

    /// The current wall time in whole unix seconds: for dates.
    fn unix_secs(&self) -> u64;
}

/// The host's clocks: [`Instant::now`] and [`SystemTime::now`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[inline]
    fn instant(&self) -> Instant {
        Instant::now()
    }

    #[inline]
    fn unix_secs(&self) -> u64 {
        unix_now()
    }
}

/// The system's wall time in unix seconds (0 if the host's clock is set
/// before 1970), for code that takes no [`Clock`].
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    #[inline]
    fn instant(&self) -> Instant {
        (**self).instant()
    }

    #[inline]
    fn unix_secs(&self) -> u64 {
        (**self).unix_secs()
    }
}

/// A clock that only moves when told to, for unit and integration tests.
///
/// Its monotonic reading starts at an arbitrary instant (the one it was made
/// at) and moves only by [`advance`](Self::advance); its wall time starts
/// at the unix second given to [`new`](Self::new) (the epoch for
/// [`Default`]) and keeps sub-second advances, so ten advances of 100 ms
/// make one second.
#[derive(Debug)]
pub struct ManualClock {
    origin: Instant,
    now: Mutex<Readings>,
}

#[derive(Debug, Clone, Copy)]
struct Readings {
    /// Monotonic time since `origin`.
    elapsed: Duration,
    /// Wall time since the unix epoch.
    since_epoch: Duration,
}

impl ManualClock {
    /// A clock whose wall time is unix second `unix_secs`.
    pub fn new(unix_secs: u64) -> Self {
        Self {
            origin: Instant::now(),
            now: Mutex::new(Readings {
                elapsed: Duration::ZERO,
                since_epoch: Duration::from_secs(unix_secs),
            }),
        }
    }

    /// Lets `by` pass: both the monotonic reading and the wall time move
    /// forward by it.
    pub fn advance(&self, by: Duration) {
        let mut r = self.readings();
        r.elapsed = r.elapsed.saturating_add(by);
        r.since_epoch = r.since_epoch.saturating_add(by);
    }

    /// Sets the wall time to unix second `unix_secs` (forward or back); the
    /// monotonic reading does not move.
    pub fn set_unix_secs(&self, unix_secs: u64) {
        self.readings().since_epoch = Duration::from_secs(unix_secs);
    }

    fn readings(&self) -> std::sync::MutexGuard<'_, Readings> {
        // Every change is one field assignment: a panic elsewhere leaves
        // the readings whole.
        self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for ManualClock {
    /// A clock standing at the unix epoch.
    fn default() -> Self {
        Self::new(0)
    }
}

impl Clock for ManualClock {
    fn instant(&self) -> Instant {
        self.origin + self.readings().elapsed
    }

    fn unix_secs(&self) -> u64 {
        self.readings().since_epoch.as_secs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_reads_the_host() {
        let before = Instant::now();
        let c = SystemClock;
        assert!(c.instant() >= before);
        let secs = c.unix_secs();
        assert!(secs > 1_600_000_000, "{secs}");
        assert!(unix_now() >= secs);
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let c = ManualClock::new(100);
        let i0 = c.instant();
        assert_eq!((c.instant(), c.unix_secs()), (i0, 100));
        for _ in 0..10 {
            c.advance(Duration::from_millis(100));
        }
        assert_eq!(c.unix_secs(), 101, "sub-second advances add up");
        assert_eq!(c.instant() - i0, Duration::from_secs(1));
        c.set_unix_secs(50);
        assert_eq!(c.unix_secs(), 50, "wall time may go back");
        assert_eq!(c.instant() - i0, Duration::from_secs(1), "monotonic stays");
        assert_eq!(ManualClock::default().unix_secs(), 0);
    }

    #[test]
    fn an_arc_of_a_clock_is_a_clock() {
        let c = Arc::new(ManualClock::new(7));
        let shared: Arc<dyn Clock> = c.clone();
        c.advance(Duration::from_secs(3));
        assert_eq!(shared.unix_secs(), 10);
        assert_eq!(Clock::unix_secs(&c), 10);
    }
}
