//! The loop's deadlines: a min-heap of (deadline, connection tag) with lazy
//! deletion — a slot remembers the deadline it has in the heap and pushes
//! only an earlier one; an entry that no longer matches its slot is
//! dropped when it surfaces (docs/uring.md §6.6). The earliest deadline is
//! the wait's timeout, so timers cost no submission.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// Deadlines of the loop's connections.
#[derive(Debug, Default)]
pub(super) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
}

impl Timers {
    /// Adds `deadline` for the connection `tag`.
    pub(super) fn push(&mut self, deadline: Instant, tag: u64) {
        self.heap.push(Reverse((deadline, tag)));
    }

    /// Whether any deadline is armed (else the loop need not read the
    /// clock).
    pub(super) fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The next entry due at `now`, taken off the heap.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<(Instant, u64)> {
        match self.heap.peek() {
            Some(Reverse((deadline, _))) if *deadline <= now => {
                let entry = self.heap.pop().map(|Reverse(entry)| entry);
                // A burst of handshakes leaves a large heap behind once
                // their deadlines passed: give the memory back.
                if self.heap.capacity() > 1024 && self.heap.len() * 4 < self.heap.capacity() {
                    self.heap.shrink_to(self.heap.len() * 2);
                }
                entry
            }
            _ => None,
        }
    }

    /// How long until the earliest deadline (zero if due).
    pub(super) fn timeout(&self, now: Instant) -> Option<Duration> {
        self.heap
            .peek()
            .map(|Reverse((deadline, _))| deadline.saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_deadline_order_and_only_when_due() {
        let now = Instant::now();
        let mut timers = Timers::default();
        timers.push(now + Duration::from_secs(3), 3);
        timers.push(now + Duration::from_secs(1), 1);
        timers.push(now + Duration::from_secs(2), 2);
        assert_eq!(timers.timeout(now), Some(Duration::from_secs(1)));
        assert_eq!(timers.pop_due(now), None);
        let later = now + Duration::from_secs(2);
        assert_eq!(timers.pop_due(later).map(|e| e.1), Some(1));
        assert_eq!(timers.pop_due(later).map(|e| e.1), Some(2));
        assert_eq!(timers.pop_due(later), None);
        assert!(!timers.is_empty());
    }
}
