//! [`Backoff`]: how long to wait before each reconnection attempt, and
//! when to stop. Sans-IO: no clock and no randomness of its own — the
//! caller passes the random value and the connection's lifetime, so every
//! rule here is a pure function a test can pin down.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Exponential backoff with full jitter: before retry `n` (0 for the first
/// wait of a series) the client sleeps a uniformly random time in
/// `[0, min(cap, base · 2ⁿ)]` — the "Full Jitter" of AWS's "Exponential
/// Backoff And Jitter", which spreads the clients of a restarted server
/// over the whole window instead of bunching them at its edges.
///
/// The default: base 500 ms, cap 30 s, unlimited attempts. Half a second
/// keeps a restart of a few seconds almost unnoticed; thirty seconds keeps
/// a long outage from costing more than two tries a minute per client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    max_attempts: Option<u32>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::exponential(Duration::from_millis(500), Duration::from_secs(30))
    }
}

impl Backoff {
    /// Waits bounded by `base · 2ⁿ` before retry `n`, never above `cap`;
    /// unlimited attempts.
    pub fn exponential(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap,
            max_attempts: None,
        }
    }

    /// At most this many connection attempts in a row (the first one
    /// included) before giving up; `None`: never give up. A connection that
    /// stays up for the client's `reset_after` starts a new count. `Some(0)`
    /// is taken as `Some(1)`: the first attempt is always made.
    pub fn max_attempts(mut self, max_attempts: Option<u32>) -> Self {
        self.max_attempts = max_attempts.map(|n| n.max(1));
        self
    }

    /// The most connection attempts in a row, if bounded.
    pub fn attempt_limit(&self) -> Option<u32> {
        self.max_attempts
    }

    /// The upper end of the wait before retry `retry` (0-based):
    /// `min(cap, base · 2^retry)`, saturating instead of overflowing.
    pub fn bound(&self, retry: u32) -> Duration {
        let grown = 1u32
            .checked_shl(retry)
            .and_then(|factor| self.base.checked_mul(factor));
        match grown {
            Some(bound) => bound.min(self.cap),
            None => self.cap,
        }
    }

    /// The wait before retry `retry` (0-based) for the random value
    /// `random`: `bound(retry) · random / u64::MAX`, so `0` gives no wait
    /// and `u64::MAX` the whole bound.
    pub fn delay(&self, retry: u32, random: u64) -> Duration {
        // Nanoseconds clamped to u64 (584 years) so the product below fits
        // in u128.
        let bound = self.bound(retry).as_nanos().min(u128::from(u64::MAX));
        let nanos = bound * u128::from(random) / u128::from(u64::MAX);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// The count of one series of connection attempts: from the client's start,
/// or from the end of a connection that stayed up long enough, to the next
/// such connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct Series {
    /// Connection attempts made in this series.
    attempts: u32,
    /// Waits taken in this series (the exponent of the next bound).
    waits: u32,
}

impl Series {
    /// Counts a connection attempt; its 1-based number in the series.
    pub(crate) fn begin_attempt(&mut self) -> u32 {
        self.attempts = self.attempts.saturating_add(1);
        self.attempts
    }

    /// Connection attempts made in this series.
    pub(crate) fn attempts(&self) -> u32 {
        self.attempts
    }

    /// A connection ended after `up_for`: if that is at least `reset_after`
    /// the server was serving again, so a new series starts (and the next
    /// wait is short again); a shorter connection (accepted, then dropped
    /// at once: a crash loop, a refused login) counts as a failed attempt
    /// so a flapping server is not hammered.
    pub(crate) fn connection_lasted(&mut self, up_for: Duration, reset_after: Duration) {
        if up_for >= reset_after {
            *self = Series::default();
        }
    }

    /// The next attempt's number and the wait before it, or `None` once
    /// `backoff`'s attempt limit is reached.
    pub(crate) fn next_wait(&mut self, backoff: &Backoff, random: u64) -> Option<(u32, Duration)> {
        if backoff
            .attempt_limit()
            .is_some_and(|max| self.attempts >= max)
        {
            return None;
        }
        let delay = backoff.delay(self.waits, random);
        self.waits = self.waits.saturating_add(1);
        Some((self.attempts.saturating_add(1), delay))
    }
}

/// The default source of jitter: SipHash keyed by std's OS-seeded
/// [`RandomState`] (whose keys change with every `new` on a thread), over
/// nothing. Unpredictable enough that clients restarted together do not
/// draw the same waits; no `rand` dependency.
pub(crate) fn os_seeded_u64() -> u64 {
    RandomState::new().build_hasher().finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn series_counts_attempts_and_waits_until_the_limit() {
        let backoff = Backoff::exponential(10 * MS, 1000 * MS).max_attempts(Some(3));
        let mut series = Series::default();
        assert_eq!(series.begin_attempt(), 1);
        // Random = max: the wait is the whole bound, growing 10, 20 ms.
        assert_eq!(series.next_wait(&backoff, u64::MAX), Some((2, 10 * MS)));
        assert_eq!(series.begin_attempt(), 2);
        assert_eq!(series.next_wait(&backoff, u64::MAX), Some((3, 20 * MS)));
        assert_eq!(series.begin_attempt(), 3);
        assert_eq!(series.next_wait(&backoff, u64::MAX), None);
    }

    #[test]
    fn a_long_enough_connection_resets_the_series_and_a_short_one_does_not() {
        let backoff = Backoff::exponential(10 * MS, 1000 * MS);
        let reset_after = 500 * MS;
        let mut series = Series::default();
        series.begin_attempt();
        series.connection_lasted(499 * MS, reset_after);
        assert_eq!(series.attempts(), 1);
        assert_eq!(series.next_wait(&backoff, u64::MAX), Some((2, 10 * MS)));
        series.begin_attempt();
        series.connection_lasted(499 * MS, reset_after);
        // Still growing: the second wait's bound is 20 ms.
        assert_eq!(series.next_wait(&backoff, u64::MAX), Some((3, 20 * MS)));
        series.begin_attempt();
        series.connection_lasted(reset_after, reset_after);
        assert_eq!(series.attempts(), 0);
        assert_eq!(series.next_wait(&backoff, u64::MAX), Some((1, 10 * MS)));
    }

    #[test]
    fn jitter_values_differ() {
        let a = os_seeded_u64();
        let b = os_seeded_u64();
        assert_ne!(a, b);
    }
}
