//! Acknowledgements (socket.io-protocol, "Acknowledgement";
//! docs/socketio.md §4, §8): ack ids for the server's events, the table of
//! acks a socket waits for, each with a deadline, and the future an
//! `emit_with_ack` returns.
//!
//! [`PendingAcks`] is sans-IO: time is passed in as an `Instant`, and what
//! waits on an entry is a type parameter, so it is unit-tested without a
//! runtime. [`AckFuture`] is the tokio side.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::sync::oneshot;

use super::args::Args;

/// Ack ids for the server's events. One counter per server, not per socket
/// (docs/socketio.md §4): an id is then free in every socket at once, so a
/// broadcast with ack can share one encoding.
#[derive(Debug, Default)]
pub struct AckIds(AtomicU64);

impl AckIds {
    /// A counter starting at 0 (the JS server's first id too).
    pub fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    /// The next id. After 2^64 ids it wraps; the entries still pending by
    /// then are long expired.
    pub fn next_id(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

/// The acks one socket waits for: id → (deadline, waiter), at most
/// `max_pending` at once (docs/socketio.md §9, `max_pending_acks`).
#[derive(Debug)]
pub struct PendingAcks<W> {
    entries: HashMap<u64, Pending<W>>,
    max_pending: usize,
}

#[derive(Debug)]
struct Pending<W> {
    deadline: Instant,
    waiter: W,
}

/// An ack table is full: too many `emit_with_ack` unanswered at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyAcks;

impl<W> PendingAcks<W> {
    /// An empty table holding at most `max_pending` entries.
    pub fn new(max_pending: usize) -> Self {
        Self {
            entries: HashMap::new(),
            max_pending,
        }
    }

    /// How many entries are pending (expired ones included until the next
    /// call that takes `now`).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Waits for the ack of `id` until `deadline`. Expired entries are
    /// dropped first, so the bound counts only live ones.
    pub fn insert(
        &mut self,
        id: u64,
        deadline: Instant,
        waiter: W,
        now: Instant,
    ) -> Result<(), TooManyAcks> {
        self.expire(now);
        if self.entries.len() >= self.max_pending {
            return Err(TooManyAcks);
        }
        self.entries.insert(id, Pending { deadline, waiter });
        Ok(())
    }

    /// The waiter of `id`, if it is pending and not past its deadline. An
    /// unknown id gives `None` and is not an error: the client may answer
    /// after our timeout (docs/socketio.md §4).
    pub fn take(&mut self, id: u64, now: Instant) -> Option<W> {
        let pending = self.entries.remove(&id)?;
        (now < pending.deadline).then_some(pending.waiter)
    }

    /// Forgets `id` (its waiter gave up).
    pub fn remove(&mut self, id: u64) {
        self.entries.remove(&id);
    }

    /// Drops every entry whose deadline is at or before `now`; returns
    /// their waiters.
    pub fn expire(&mut self, now: Instant) -> Vec<W> {
        let expired: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, pending)| pending.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        expired
            .into_iter()
            .filter_map(|id| self.entries.remove(&id))
            .map(|pending| pending.waiter)
            .collect()
    }

    /// The earliest deadline, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.entries.values().map(|pending| pending.deadline).min()
    }

    /// Takes every waiter (the socket disconnected).
    pub fn drain(&mut self) -> Vec<W> {
        self.entries
            .drain()
            .map(|(_, pending)| pending.waiter)
            .collect()
    }
}

/// Why an `emit_with_ack` gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckError {
    /// The client did not answer in time.
    Timeout,
    /// The socket disconnected before the answer.
    Disconnected,
}

impl fmt::Display for AckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("the client did not acknowledge in time"),
            Self::Disconnected => f.write_str("the socket disconnected before its ack"),
        }
    }
}

impl std::error::Error for AckError {}

/// The client's answer to one `emit_with_ack`: its arguments, or why
/// there is none. Dropping it gives up waiting.
pub struct AckFuture {
    receiver: oneshot::Receiver<Args>,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl fmt::Debug for AckFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckFuture")
            .field("deadline", &self.sleep.deadline())
            .finish()
    }
}

impl AckFuture {
    pub(crate) fn new(receiver: oneshot::Receiver<Args>, deadline: Instant) -> Self {
        Self {
            receiver,
            sleep: Box::pin(tokio::time::sleep_until(deadline.into())),
        }
    }
}

impl Future for AckFuture {
    type Output = Result<Args, AckError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // The answer wins over a deadline reached in the same instant.
        match Pin::new(&mut self.receiver).poll(cx) {
            Poll::Ready(Ok(args)) => return Poll::Ready(Ok(args)),
            // The sender was dropped: the socket disconnected (or its
            // table expired the entry, which only happens past the deadline).
            Poll::Ready(Err(_)) => {
                let late = self.sleep.deadline() <= tokio::time::Instant::now();
                return Poll::Ready(Err(if late {
                    AckError::Timeout
                } else {
                    AckError::Disconnected
                }));
            }
            Poll::Pending => {}
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(AckError::Timeout)),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ids_are_distinct_and_increasing() {
        let ids = AckIds::new();
        assert_eq!(ids.next_id(), 0);
        assert_eq!(ids.next_id(), 1);
        assert_eq!(ids.next_id(), 2);
    }

    #[test]
    fn an_answer_in_time_is_taken_once() {
        let now = Instant::now();
        let mut acks = PendingAcks::new(4);
        acks.insert(7, now + Duration::from_secs(5), "w", now)
            .unwrap();
        assert_eq!(acks.poll_timeout(), Some(now + Duration::from_secs(5)));
        assert_eq!(acks.take(7, now + Duration::from_secs(1)), Some("w"));
        assert_eq!(acks.take(7, now + Duration::from_secs(1)), None);
        assert!(acks.is_empty());
    }

    #[test]
    fn a_late_or_unknown_answer_is_dropped() {
        let now = Instant::now();
        let mut acks = PendingAcks::new(4);
        acks.insert(1, now + Duration::from_secs(5), (), now)
            .unwrap();
        assert_eq!(acks.take(2, now), None);
        assert_eq!(acks.take(1, now + Duration::from_secs(5)), None);
        assert!(acks.is_empty());
    }

    #[test]
    fn the_bound_counts_live_entries_only() {
        let now = Instant::now();
        let mut acks = PendingAcks::new(2);
        acks.insert(1, now + Duration::from_secs(1), 1, now)
            .unwrap();
        acks.insert(2, now + Duration::from_secs(9), 2, now)
            .unwrap();
        assert_eq!(
            acks.insert(3, now + Duration::from_secs(9), 3, now),
            Err(TooManyAcks)
        );
        // Entry 1 expires; its place is free again.
        let later = now + Duration::from_secs(2);
        acks.insert(3, later + Duration::from_secs(9), 3, later)
            .unwrap();
        assert_eq!(acks.len(), 2);
        assert_eq!(acks.take(1, later), None);
    }

    #[test]
    fn expire_and_drain_hand_back_waiters() {
        let now = Instant::now();
        let mut acks = PendingAcks::new(8);
        acks.insert(1, now + Duration::from_secs(1), 1, now)
            .unwrap();
        acks.insert(2, now + Duration::from_secs(3), 2, now)
            .unwrap();
        assert_eq!(acks.expire(now + Duration::from_secs(2)), vec![1]);
        assert_eq!(acks.drain(), vec![2]);
        assert_eq!(acks.poll_timeout(), None);
    }
}
