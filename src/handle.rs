//! [`Handle`]: how other tasks send to a connection that one task drives.
//!
//! Each connection with a handle has a queue, bounded in bytes, with a
//! policy for a full queue; every message is checked against the protocol
//! before it is queued. The task that owns the socket moves queued messages
//! into the core between writes. Nothing here depends on a runtime (waiting
//! is plain `Waker`s), so any driver can offer handles, and `rooms` needs
//! only this module.

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

use crate::close::CloseCode;
use crate::connection::UsageError;
use crate::connection::{
    check_close, check_control, Connection, Message, SharedBatch, SharedMessage,
};

/// The bound and policy of a connection's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueLimit {
    /// Queued plus encoded-but-unwritten bytes the queue may hold.
    pub(crate) max_bytes: usize,
    pub(crate) overflow: Overflow,
}

impl Default for QueueLimit {
    fn default() -> Self {
        QueueLimit {
            max_bytes: 4 << 20,
            overflow: Overflow::Reject,
        }
    }
}

/// What a full queue does with one more message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Refuse the message ([`QueueError::Full`]); the connection goes on.
    Reject,
    /// Close the slow consumer with this code (1008 or 1013 are usual);
    /// queued messages are dropped. A code that cannot be sent (RFC 6455
    /// §7.4.1) makes the overflowing call fail with
    /// [`QueueError::Invalid`] instead, and nothing changes.
    Close(CloseCode),
}

/// Why a message was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// The queue is full ([`Overflow::Reject`]); nothing was queued.
    Full,
    /// The queue was full and the connection is being closed as a slow
    /// consumer ([`Overflow::Close`]).
    ClosedSlowConsumer,
    /// The connection is closing or closed.
    Closed,
    /// The message breaks a rule of the protocol (a ping over 125 bytes, a
    /// close code that cannot be sent, a close reason over 123 bytes);
    /// nothing was queued.
    Invalid(UsageError),
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::Full => f.write_str("outbound queue full"),
            QueueError::ClosedSlowConsumer => {
                f.write_str("outbound queue full: closing the slow consumer")
            }
            QueueError::Closed => f.write_str("connection closed"),
            QueueError::Invalid(e) => write!(f, "not sendable: {e}"),
        }
    }
}

impl std::error::Error for QueueError {}

/// A message waiting in the queue, already checked against the protocol.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Text(String),
    Binary(Vec<u8>),
    Shared(SharedMessage),
    /// Written whole, in order, once taken from the queue.
    Batch(SharedBatch),
    Ping(Vec<u8>),
    Close(CloseCode, String),
}

impl Outgoing {
    /// Copies a message for the queue; text stays a `String`, so it is not
    /// validated again when sent.
    pub(crate) fn message(message: Message<'_>) -> Outgoing {
        match message {
            Message::Text(text) => Outgoing::Text(text.to_owned()),
            Message::Binary(data) => Outgoing::Binary(data.to_vec()),
        }
    }

    /// A ping, if its payload may be sent (RFC 6455 §5.5).
    pub(crate) fn ping(payload: &[u8]) -> Result<Outgoing, QueueError> {
        check_control(payload).map_err(QueueError::Invalid)?;
        Ok(Outgoing::Ping(payload.to_vec()))
    }

    /// A close, if its code and reason may be sent (RFC 6455 §7.4, §5.5).
    pub(crate) fn close(code: CloseCode, reason: &str) -> Result<Outgoing, QueueError> {
        check_close(code, reason).map_err(QueueError::Invalid)?;
        Ok(Outgoing::Close(code, reason.to_owned()))
    }

    /// What the item counts against the queue's bound: its payload and a
    /// frame header.
    fn cost(&self) -> usize {
        match self {
            Outgoing::Text(text) => text.len() + 14,
            Outgoing::Binary(data) | Outgoing::Ping(data) => data.len() + 14,
            Outgoing::Shared(shared) => shared.len() + 14,
            Outgoing::Batch(batch) => batch.len() + 14 * batch.messages().len(),
            Outgoing::Close(_, reason) => reason.len() + 8,
        }
    }
}

/// The queue's state, behind the outbox's lock.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    items: VecDeque<Outgoing>,
    /// Bytes queued plus bytes encoded but not yet written.
    buffered: usize,
    /// Wakes the task that owns the socket.
    driver: Option<Waker>,
    /// Senders waiting for room.
    senders: Vec<Waker>,
    /// No more messages are accepted.
    closed: bool,
    /// The driver is done: nothing queued or unwritten will be written.
    ended: bool,
    /// The connection must end now (a shutdown deadline passed).
    aborted: bool,
}

/// What [`Queue::push`] did.
#[derive(Debug)]
enum Pushed {
    Queued,
    /// The queue is full ([`Overflow::Reject`]); nothing was queued.
    Full,
    /// The queue overflowed and now closes the slow consumer.
    SlowConsumerClosed,
    Refused(QueueError),
}

impl Queue {
    /// Whether `need` more bytes fit the bound. An empty queue takes
    /// anything, so a message larger than the bound can still be sent.
    fn fits(&self, need: usize, limit: QueueLimit) -> bool {
        self.buffered == 0 || self.buffered + need <= limit.max_bytes
    }

    /// Whether a push of `need` bytes may go ahead now: refused once
    /// closed; waits (registering `waker`) only while the queue is full
    /// and its policy is [`Overflow::Reject`] — under [`Overflow::Close`]
    /// the push itself applies the policy.
    fn poll_room(
        &mut self,
        need: usize,
        limit: QueueLimit,
        waker: &Waker,
    ) -> Poll<Result<(), QueueError>> {
        if self.closed {
            return Poll::Ready(Err(QueueError::Closed));
        }
        if limit.overflow == Overflow::Reject && !self.fits(need, limit) {
            // Registered under the lock that saw the queue full: the room
            // freed next wakes this task.
            self.wait_for_room(waker);
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    /// Queues `item` if `need` bytes fit within `max_bytes` (its own cost,
    /// or less for the `Sink` whose `poll_ready` already waited for
    /// room), applying `overflow` when full.
    fn push(&mut self, item: Outgoing, need: usize, limit: QueueLimit) -> Pushed {
        if self.closed {
            return Pushed::Refused(QueueError::Closed);
        }
        let cost = item.cost();
        if !self.fits(need, limit) {
            return match limit.overflow {
                Overflow::Reject => Pushed::Full,
                Overflow::Close(code) => match Outgoing::close(code, "slow consumer") {
                    Ok(close) => {
                        self.items.clear();
                        self.finish_with(close);
                        Pushed::SlowConsumerClosed
                    }
                    Err(invalid) => Pushed::Refused(invalid),
                },
            };
        }
        self.buffered += cost;
        self.items.push_back(item);
        self.wake_driver();
        Pushed::Queued
    }

    /// Queues `close` as the last item: nothing is accepted after it.
    fn finish_with(&mut self, close: Outgoing) {
        self.buffered += close.cost();
        self.items.push_back(close);
        self.closed = true;
        self.wake_driver();
    }

    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn has_items(&self) -> bool {
        !self.items.is_empty()
    }

    /// The connection must end now (a shutdown deadline passed).
    pub(crate) fn aborted(&self) -> bool {
        self.aborted
    }

    /// Remembers the task to wake when something is queued.
    pub(crate) fn register(&mut self, waker: &Waker) {
        if !self.driver.as_ref().is_some_and(|w| w.will_wake(waker)) {
            self.driver = Some(waker.clone());
        }
    }

    fn wake_driver(&mut self) {
        if let Some(waker) = self.driver.take() {
            waker.wake();
        }
    }

    /// Remembers a sender to wake when room is freed.
    fn wait_for_room(&mut self, waker: &Waker) {
        if !self.senders.iter().any(|w| w.will_wake(waker)) {
            self.senders.push(waker.clone());
        }
    }

    /// Moves queued items into `conn`, in order, while its output is below
    /// `high_water` bytes (so bursts wait here, where senders see them).
    pub(crate) fn drain_into(&mut self, conn: &mut Connection, high_water: usize) {
        while conn.buffered_amount() < high_water {
            let Some(item) = self.items.pop_front() else {
                break;
            };
            let mut sender = conn.sender();
            // Every item was checked when queued: a send fails only once
            // the connection is closing (or its compressor failed).
            let sent = match &item {
                Outgoing::Text(text) => sender.send(Message::Text(text)),
                Outgoing::Binary(data) => sender.send(Message::Binary(data)),
                Outgoing::Shared(shared) => sender.send_shared(shared),
                // One entry, so nothing queued after it can come between
                // its messages, and a full queue refused it whole.
                Outgoing::Batch(batch) => batch
                    .messages()
                    .iter()
                    .try_for_each(|shared| sender.send_shared(shared)),
                Outgoing::Ping(payload) => sender.send_ping(payload),
                Outgoing::Close(code, reason) => sender.close(*code, reason),
            };
            if sent.is_err() {
                // Nothing more can be sent on this connection.
                self.closed = true;
                self.items.clear();
            }
        }
        self.account(conn.buffered_amount());
    }

    /// Recounts the bytes senders see; true if room was freed.
    fn account(&mut self, unwritten: usize) -> bool {
        let before = self.buffered;
        self.buffered = self.items.iter().map(Outgoing::cost).sum::<usize>() + unwritten;
        self.buffered < before
    }
}

/// A connection's queue, shared by its driver and its handles.
#[derive(Debug)]
pub(crate) struct Outbox {
    queue: Mutex<Queue>,
    limit: QueueLimit,
}

impl Outbox {
    pub(crate) fn new(limit: QueueLimit) -> Outbox {
        Outbox {
            queue: Mutex::new(Queue::default()),
            limit,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding this lock cannot leave the queue
        // inconsistent (every update is a single assignment or push).
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Wakes the senders waiting for room (outside the lock).
    fn wake_senders(&self) {
        let senders = std::mem::take(&mut self.lock().senders);
        senders.into_iter().for_each(Waker::wake);
    }

    /// Accepts no more messages; tells waiting senders.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.wake_senders();
    }

    /// The driver is done with the connection: what is still queued or
    /// unwritten never will be. Tells waiting senders.
    pub(crate) fn end(&self) {
        let mut queue = self.lock();
        queue.closed = true;
        queue.ended = true;
        queue.items.clear();
        drop(queue);
        self.wake_senders();
    }

    /// After a write: recounts what `conn` has not written yet and wakes
    /// senders if room was freed.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn written(&self, conn: &Connection) {
        self.written_with(conn.buffered_amount());
    }

    /// After a write, for a driver that also has bytes in flight outside
    /// the connection (the uring loop's send buffers): recounts with
    /// `unwritten` and wakes senders if room was freed.
    pub(crate) fn written_with(&self, unwritten: usize) {
        if self.lock().account(unwritten) {
            self.wake_senders();
        }
    }
}

/// A cheap, cloneable sender for one connection, usable from any task or
/// thread.
///
/// Messages are checked against the protocol, then copied into the
/// connection's queue, which is bounded in bytes (queued plus encoded but
/// unwritten; the adapter's builder sets it, e.g.
/// `chito::tokio::Builder::max_queued_bytes`). When it is full,
/// [`Handle::try_send`] applies the [`Overflow`] policy and [`Handle::send`]
/// waits for room. The task driving the connection encodes and writes
/// queued messages in order.
#[derive(Debug, Clone)]
pub struct Handle {
    outbox: Arc<Outbox>,
}

impl Handle {
    pub(crate) fn new(outbox: Arc<Outbox>) -> Handle {
        Handle { outbox }
    }

    /// Queues a message without waiting.
    ///
    /// # Errors
    /// [`QueueError::Full`] or [`QueueError::ClosedSlowConsumer`] when the
    /// queue is full (per the [`Overflow`] policy); [`QueueError::Closed`].
    pub fn try_send(&self, message: Message<'_>) -> Result<(), QueueError> {
        let item = Outgoing::message(message);
        let cost = item.cost();
        self.push(item, cost)
    }

    /// Queues a message, waiting while the queue is full.
    ///
    /// # Errors
    /// [`QueueError::Closed`] if the connection ends first.
    pub async fn send(&self, message: Message<'_>) -> Result<(), QueueError> {
        let item = Outgoing::message(message);
        let cost = item.cost();
        let mut item = Some(item);
        poll_fn(|cx| {
            let limit = self.outbox.limit;
            let mut queue = self.outbox.lock();
            std::task::ready!(queue.poll_room(cost, limit, cx.waker()))?;
            let Some(item) = item.take() else {
                return Poll::Ready(Err(QueueError::Closed));
            };
            // Under the lock that found room: the push cannot find the
            // queue full.
            let pushed = queue.push(item, cost, limit);
            drop(queue);
            Poll::Ready(self.settle(pushed))
        })
        .await
    }

    /// Queues a [`SharedMessage`] without waiting: a reference count, no
    /// copy; the frame is encoded at most once per wire form across all
    /// the connections it is sent to.
    ///
    /// # Errors
    /// As [`Handle::try_send`].
    pub fn try_send_shared(&self, message: &SharedMessage) -> Result<(), QueueError> {
        let item = Outgoing::Shared(message.clone());
        let cost = item.cost();
        self.push(item, cost)
    }

    /// Queues the messages of a [`SharedBatch`] without waiting, as one
    /// entry: all of them or none, and nothing else comes between them.
    /// The queue's bound counts their sum; each frame is encoded at most
    /// once per wire form, as by [`Handle::try_send_shared`].
    ///
    /// # Errors
    /// As [`Handle::try_send`]; nothing of the batch is queued then.
    pub fn try_send_batch(&self, batch: &SharedBatch) -> Result<(), QueueError> {
        let item = Outgoing::Batch(batch.clone());
        let cost = item.cost();
        self.push(item, cost)
    }

    /// Queues a ping.
    ///
    /// # Errors
    /// As [`Handle::try_send`], and [`QueueError::Invalid`] over 125 bytes.
    pub fn ping(&self, payload: &[u8]) -> Result<(), QueueError> {
        let item = Outgoing::ping(payload)?;
        let cost = item.cost();
        self.push(item, cost)
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

    /// Ends the connection now, without a closing handshake (a shutdown
    /// deadline).
    pub(crate) fn abort(&self) {
        let mut queue = self.outbox.lock();
        queue.aborted = true;
        queue.closed = true;
        queue.wake_driver();
        drop(queue);
        self.outbox.wake_senders();
    }

    /// Queues `item` if `need` bytes fit (see [`Queue::push`]).
    fn push(&self, item: Outgoing, need: usize) -> Result<(), QueueError> {
        let pushed = self.outbox.lock().push(item, need, self.outbox.limit);
        self.settle(pushed)
    }

    /// Whether what was queued is still on its way: `Ok` while the
    /// connection's driver will write it, [`QueueError::Closed`] if the
    /// connection ended with bytes unwritten.
    ///
    /// This does not wait for the write: the task that reads the
    /// connection is the one that writes, and it is often the task that
    /// flushes (`while let Some(m) = receiver.next().await {
    /// sender.send(..).await }`), which would then wait for itself.
    // Only the `Sink`'s flush and close ask this.
    #[cfg(feature = "futures")]
    fn handed_over(&self) -> Result<(), QueueError> {
        let queue = self.outbox.lock();
        if queue.ended && queue.buffered > 0 {
            return Err(QueueError::Closed);
        }
        Ok(())
    }

    /// What a push means to the caller (outside the lock).
    fn settle(&self, pushed: Pushed) -> Result<(), QueueError> {
        match pushed {
            Pushed::Queued => Ok(()),
            Pushed::Full => Err(QueueError::Full),
            Pushed::SlowConsumerClosed => {
                self.outbox.wake_senders();
                Err(QueueError::ClosedSlowConsumer)
            }
            Pushed::Refused(error) => Err(error),
        }
    }
}

/// A [`Handle`] is a `futures::Sink` of messages, so code written for
/// tokio-tungstenite or axum (`sender.send(message).await` through
/// `SinkExt`, `forward`) runs on it. The task that reads the connection
/// (its [`ReadHalf`](crate::tokio::ReadHalf) or `serve`) writes what is
/// queued; a flush hands messages over to it and does not wait for the
/// write, so reading and sending in one task cannot wait for each other.
#[cfg(feature = "futures")]
impl<'a> futures_sink::Sink<Message<'a>> for Handle {
    type Error = QueueError;

    /// Waits while the queue is full under [`Overflow::Reject`], as
    /// [`Handle::send`] does; [`QueueError::Closed`] once closed.
    fn poll_ready(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Result<(), QueueError>> {
        self.outbox
            .lock()
            .poll_room(1, self.outbox.limit, cx.waker())
    }

    /// Copies the message into the queue, as [`Handle::try_send`].
    fn start_send(self: std::pin::Pin<&mut Self>, item: Message<'a>) -> Result<(), QueueError> {
        // `poll_ready` found room: the message goes in whole even if it is
        // larger than what is left (as one larger than the whole bound
        // goes into an empty queue), so the promise holds.
        self.push(Outgoing::message(item), 1)
    }

    /// Everything sent is queued for the driving task already: ready at
    /// once, or [`QueueError::Closed`] if the connection ended with queued
    /// bytes unwritten. [`Handle::buffered_amount`] says how much is not
    /// written yet.
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> Poll<Result<(), QueueError>> {
        Poll::Ready(self.handed_over())
    }

    /// Queues a close (1000) behind what is queued. Reading goes on until
    /// the peer's close arrives.
    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> Poll<Result<(), QueueError>> {
        match self.close(CloseCode::Normal, "") {
            // Closing already (an earlier poll of this close, another
            // handle, the reading side): only the writing is left.
            Ok(()) | Err(QueueError::Closed) => {}
            Err(error) => return Poll::Ready(Err(error)),
        }
        Poll::Ready(self.handed_over())
    }
}
