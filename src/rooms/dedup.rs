//! Dropping envelopes a node has already delivered: its own echoes, and
//! the same `(origin, seq)` arriving twice — an emit to several rooms
//! travels on each room's channel, and an at-least-once broker redelivers.

use std::collections::HashMap;

use super::id::NodeId;

/// How many sequence numbers behind the highest one seen are still told
/// apart. Redeliveries can arrive out of order, so a maximum alone would
/// drop late first deliveries; older ones than this are dropped as seen.
pub(crate) const WINDOW: u64 = 1024;
const WORDS: usize = (WINDOW / 64) as usize;

/// Most origins remembered at once; beyond it the one heard from least
/// recently is forgotten (its next envelope is then taken as new), so a
/// broker sending made-up origins cannot grow the table without bound.
const MAX_ORIGINS: usize = 4096;

/// The sequence numbers seen from one origin: the highest, and a bitmap of
/// the `WINDOW` below and including it.
#[derive(Debug)]
struct SeqWindow {
    highest: u64,
    seen: [u64; WORDS],
    last_used: u64,
}

impl SeqWindow {
    fn new(seq: u64, tick: u64) -> SeqWindow {
        let mut window = SeqWindow {
            highest: seq,
            seen: [0; WORDS],
            last_used: tick,
        };
        window.mark(seq);
        window
    }

    fn bit(seq: u64) -> (usize, u64) {
        let slot = seq % WINDOW;
        ((slot / 64) as usize, 1u64 << (slot % 64))
    }

    fn mark(&mut self, seq: u64) {
        let (word, mask) = Self::bit(seq);
        if let Some(w) = self.seen.get_mut(word) {
            *w |= mask;
        }
    }

    fn is_marked(&self, seq: u64) -> bool {
        let (word, mask) = Self::bit(seq);
        self.seen.get(word).is_some_and(|w| w & mask != 0)
    }

    /// True if `seq` is new (and records it).
    fn accept(&mut self, seq: u64) -> bool {
        if seq > self.highest {
            // Clear the slots the window slides past.
            let advance = seq - self.highest;
            if advance >= WINDOW {
                self.seen = [0; WORDS];
            } else {
                for s in self.highest + 1..=seq {
                    let (word, mask) = Self::bit(s);
                    if let Some(w) = self.seen.get_mut(word) {
                        *w &= !mask;
                    }
                }
            }
            self.highest = seq;
            self.mark(seq);
            true
        } else if self.highest - seq >= WINDOW || self.is_marked(seq) {
            false
        } else {
            self.mark(seq);
            true
        }
    }
}

/// The windows of every origin heard from.
#[derive(Debug, Default)]
pub(crate) struct Dedup {
    origins: HashMap<NodeId, SeqWindow>,
    tick: u64,
}

impl Dedup {
    /// True if `(origin, seq)` has not been accepted before.
    pub(crate) fn accept(&mut self, origin: NodeId, seq: u64) -> bool {
        self.tick += 1;
        let tick = self.tick;
        if let Some(window) = self.origins.get_mut(&origin) {
            window.last_used = tick;
            return window.accept(seq);
        }
        if self.origins.len() >= MAX_ORIGINS {
            let oldest = self
                .origins
                .iter()
                .min_by_key(|(_, w)| w.last_used)
                .map(|(node, _)| *node);
            if let Some(node) = oldest {
                self.origins.remove(&node);
            }
        }
        self.origins.insert(origin, SeqWindow::new(seq, tick));
        true
    }

    /// Forgets `origin` (a node that left).
    pub(crate) fn forget(&mut self, origin: NodeId) {
        self.origins.remove(&origin);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_dropped_in_any_order_within_the_window() {
        let mut d = Dedup::default();
        let a = NodeId::from_u64(1);
        let b = NodeId::from_u64(2);
        assert!(d.accept(a, 5));
        assert!(!d.accept(a, 5));
        assert!(d.accept(b, 5), "origins are independent");
        assert!(d.accept(a, 3), "a late first delivery is new");
        assert!(!d.accept(a, 3));
        assert!(d.accept(a, 4));
        assert!(d.accept(a, 6));
        assert!(!d.accept(a, 4));
        // Slide far: everything at or below highest - WINDOW is old.
        assert!(d.accept(a, 6 + WINDOW));
        assert!(!d.accept(a, 6));
        assert!(d.accept(a, 8), "inside the window, unseen");
        assert!(
            d.accept(a, 5 + 2 * WINDOW),
            "a jump past the window clears it"
        );
        assert!(d.accept(a, 4 + 2 * WINDOW));
        assert!(!d.accept(a, 4 + 2 * WINDOW));
    }

    #[test]
    fn slots_reused_after_sliding_are_cleared() {
        let mut d = Dedup::default();
        let a = NodeId::from_u64(1);
        for seq in 1..=3 * WINDOW {
            assert!(d.accept(a, seq), "{seq}");
        }
        for seq in 2 * WINDOW + 1..=3 * WINDOW {
            assert!(!d.accept(a, seq), "{seq}");
        }
    }

    #[test]
    fn origins_are_bounded() {
        let mut d = Dedup::default();
        for n in 0..MAX_ORIGINS as u64 + 10 {
            d.accept(NodeId::from_u64(n), 1);
        }
        assert_eq!(d.origins.len(), MAX_ORIGINS);
    }
}
