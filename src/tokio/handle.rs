//! [`Handle`]: how other tasks send to a connection one task drives.

use std::sync::{Arc, Mutex, MutexGuard};

use ::tokio::sync::Notify;

use crate::close::CloseCode;
use crate::connection::{Message, SharedMessage};
use crate::outbox::{Outgoing, Overflow, Pushed, Queue, QueueError};

/// A connection's queue, shared by its driver and its handles.
#[derive(Debug)]
pub(super) struct Outbox {
    queue: Mutex<Queue>,
    /// Wakes senders waiting for queue space.
    pub(super) space: Notify,
    max_bytes: usize,
    overflow: Overflow,
}

impl Outbox {
    pub(super) fn new(max_bytes: usize, overflow: Overflow) -> Outbox {
        Outbox {
            queue: Mutex::new(Queue::default()),
            space: Notify::new(),
            max_bytes,
            overflow,
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding this lock cannot leave the queue
        // inconsistent (every update is a single assignment or push).
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Accepts no more messages; wakes waiting senders to tell them.
    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.space.notify_waiters();
    }
}

/// A cheap, cloneable sender for one connection, usable from any task.
///
/// Messages are checked against the protocol, then copied into the
/// connection's queue, which is bounded in bytes (queued plus encoded but
/// unwritten; see [`super::Builder::max_queued_bytes`]). When it is full,
/// [`Handle::try_send`] applies the [`Overflow`] policy and
/// [`Handle::send`] waits for room. The task driving the connection
/// encodes and writes queued messages in order.
#[derive(Debug, Clone)]
pub struct Handle {
    pub(super) outbox: Arc<Outbox>,
}

impl Handle {
    /// Queues a message without waiting.
    ///
    /// # Errors
    /// [`QueueError::Full`] or [`QueueError::ClosedSlowConsumer`] when the
    /// queue is full (per the [`Overflow`] policy); [`QueueError::Closed`].
    pub fn try_send(&self, message: Message<'_>) -> Result<(), QueueError> {
        self.push(Outgoing::message(message))
    }

    /// Queues a message, waiting while the queue is full.
    ///
    /// # Errors
    /// [`QueueError::Closed`] if the connection ends first.
    pub async fn send(&self, message: Message<'_>) -> Result<(), QueueError> {
        let mut item = Outgoing::message(message);
        loop {
            let notified = self.outbox.space.notified();
            ::tokio::pin!(notified);
            notified.as_mut().enable();
            match self.push_or_return(item) {
                Ok(()) => return Ok(()),
                Err((QueueError::Full, Some(back))) => item = back,
                Err((error, _)) => return Err(error),
            }
            notified.await;
        }
    }

    /// Queues a [`SharedMessage`] without waiting: a reference count, no
    /// copy; the frame is encoded at most once per wire form across all
    /// the connections it is sent to.
    ///
    /// # Errors
    /// As [`Handle::try_send`].
    pub fn try_send_shared(&self, message: &SharedMessage) -> Result<(), QueueError> {
        self.push(Outgoing::Shared(message.clone()))
    }

    /// Queues a ping.
    ///
    /// # Errors
    /// As [`Handle::try_send`], and [`QueueError::Invalid`] over 125 bytes.
    pub fn ping(&self, payload: &[u8]) -> Result<(), QueueError> {
        self.push(Outgoing::ping(payload)?)
    }

    /// Asks the connection to start the closing handshake. Messages queued
    /// before it are sent first; nothing can be queued after it.
    ///
    /// # Errors
    /// [`QueueError::Invalid`] for a code that cannot be sent (1005, 1006,
    /// 1015, reserved ranges; RFC 6455 §7.4) or a reason over 123 bytes —
    /// nothing changes; [`QueueError::Closed`] if already closing.
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<(), QueueError> {
        let close = Outgoing::close(code, reason)?;
        let mut queue = self.outbox.lock();
        if queue.closed {
            return Err(QueueError::Closed);
        }
        queue.finish_with(close);
        Ok(())
    }

    /// Bytes queued or encoded but not yet written to the transport.
    pub fn buffered_amount(&self) -> usize {
        self.outbox.lock().buffered
    }

    /// True once the connection no longer accepts messages.
    pub fn is_closed(&self) -> bool {
        self.outbox.lock().closed
    }

    /// Whether two handles reach the same connection.
    pub fn same_connection(&self, other: &Handle) -> bool {
        Arc::ptr_eq(&self.outbox, &other.outbox)
    }

    fn push(&self, item: Outgoing) -> Result<(), QueueError> {
        self.push_or_return(item).map_err(|(error, _)| error)
    }

    /// On a full queue under [`Overflow::Reject`], the item comes back.
    fn push_or_return(&self, item: Outgoing) -> Result<(), (QueueError, Option<Outgoing>)> {
        let outbox = &self.outbox;
        let pushed = outbox.lock().push(item, outbox.max_bytes, outbox.overflow);
        match pushed {
            Pushed::Queued => Ok(()),
            Pushed::Full(item) => Err((QueueError::Full, Some(item))),
            Pushed::SlowConsumerClosed => {
                outbox.space.notify_waiters();
                Err((QueueError::ClosedSlowConsumer, None))
            }
            Pushed::Refused(error) => Err((error, None)),
        }
    }
}
