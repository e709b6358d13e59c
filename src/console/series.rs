//! The console's time series: the metrics counters ([`Metrics::snapshot`])
//! sampled every few seconds into a ring buffer. Nothing is counted here:
//! a plot is the difference between consecutive samples of the counters
//! `/metrics` exposes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::metrics::{CountsSnapshot, Metrics};

/// Samples kept: ten minutes at the default interval of 5 s.
pub(crate) const SAMPLES: usize = 120;

/// Which per-route counter a plot shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counter {
    /// Fields sealed.
    Sealed,
    /// Envelopes opened.
    Opened,
    /// Selected values passed through as plaintext.
    PlaintextPassed,
    /// Requests refused by the route's rate limit.
    RateLimited,
    /// Fields a shadow route would have sealed or opened.
    Shadow,
}

impl Counter {
    fn of(self, s: &CountsSnapshot, route: &str) -> u64 {
        let family = match self {
            Counter::Sealed => &s.sealed,
            Counter::Opened => &s.opened,
            Counter::PlaintextPassed => &s.plaintext_passed,
            Counter::RateLimited => &s.rate_limited,
            Counter::Shadow => &s.shadow_fields,
        };
        family.get(route).copied().unwrap_or(0)
    }
}

/// The ring buffer of samples, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Series {
    samples: Mutex<VecDeque<CountsSnapshot>>,
}

impl Series {
    /// Takes one sample of `metrics`, dropping the oldest past [`SAMPLES`].
    pub(crate) fn sample(&self, metrics: &Metrics) {
        let snap = metrics.snapshot();
        let mut s = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        if s.len() == SAMPLES {
            s.pop_front();
        }
        s.push_back(snap);
    }

    /// Per interval, how much `counter` of `route` grew (oldest first).
    pub(crate) fn deltas(&self, route: &str, counter: Counter) -> Vec<u64> {
        let s = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        let values: Vec<u64> = s.iter().map(|x| counter.of(x, route)).collect();
        values
            .windows(2)
            .map(|w| w[1].saturating_sub(w[0]))
            .collect()
    }

    /// Per interval, how many open failures (every reason) there were.
    pub(crate) fn failure_deltas(&self) -> Vec<u64> {
        let s = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        let values: Vec<u64> = s.iter().map(|x| x.open_failures.values().sum()).collect();
        values
            .windows(2)
            .map(|w| w[1].saturating_sub(w[0]))
            .collect()
    }
}

/// Samples `metrics` into `series` every `every` until `shutdown`.
pub(crate) async fn run(
    series: Arc<Series>,
    metrics: Arc<Metrics>,
    every: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = tick.tick() => series.sample(&metrics),
            () = &mut shutdown => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_are_differences_of_the_metrics_counters() {
        let m = Metrics::new();
        let s = Series::default();
        s.sample(&m);
        m.fields("users", 3, 1);
        s.sample(&m);
        m.fields("users", 2, 0);
        m.open_failure("does_not_open");
        s.sample(&m);
        assert_eq!(s.deltas("users", Counter::Sealed), vec![3, 2]);
        assert_eq!(s.deltas("users", Counter::Opened), vec![1, 0]);
        assert_eq!(s.deltas("other", Counter::Sealed), vec![0, 0]);
        assert_eq!(s.failure_deltas(), vec![0, 1]);
        for _ in 0..SAMPLES + 5 {
            s.sample(&m);
        }
        assert_eq!(s.deltas("users", Counter::Sealed).len(), SAMPLES - 1);
    }
}
