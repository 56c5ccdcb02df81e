//! The send queue of a connection that one task drives and other tasks
//! feed: bounded in bytes, with a policy for a full queue, and checked
//! against the protocol before anything is queued. It is independent of
//! any runtime (the tokio adapter's `Handle` wraps it); the task that owns
//! the socket moves queued messages into the core between writes.

use std::collections::VecDeque;
use std::fmt;
use std::task::Waker;

use crate::close::CloseCode;
use crate::connection::UsageError;
use crate::connection::{check_close, check_control, Connection, Message, SharedMessage};

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
            Outgoing::Close(_, reason) => reason.len() + 8,
        }
    }
}

/// The queue's state, behind the owner's lock.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    items: VecDeque<Outgoing>,
    /// Bytes queued plus bytes encoded but not yet written.
    pub(crate) buffered: usize,
    /// Wakes the task that owns the socket.
    driver: Option<Waker>,
    /// No more messages are accepted.
    pub(crate) closed: bool,
    /// The connection must end now (a shutdown deadline passed).
    pub(crate) aborted: bool,
}

/// What [`Queue::push`] did.
#[derive(Debug)]
pub(crate) enum Pushed {
    Queued,
    /// The queue is full ([`Overflow::Reject`]); the item comes back.
    Full(Outgoing),
    /// The queue overflowed and now closes the slow consumer.
    SlowConsumerClosed,
    Refused(QueueError),
}

impl Queue {
    /// Queues `item` within `max_bytes`, applying `overflow` when full.
    pub(crate) fn push(&mut self, item: Outgoing, max_bytes: usize, overflow: Overflow) -> Pushed {
        if self.closed {
            return Pushed::Refused(QueueError::Closed);
        }
        let cost = item.cost();
        if self.buffered + cost > max_bytes && self.buffered > 0 {
            return match overflow {
                Overflow::Reject => Pushed::Full(item),
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
    pub(crate) fn finish_with(&mut self, close: Outgoing) {
        self.buffered += close.cost();
        self.items.push_back(close);
        self.closed = true;
        self.wake_driver();
    }

    /// Ends the connection now (a shutdown deadline).
    pub(crate) fn abort(&mut self) {
        self.aborted = true;
        self.closed = true;
        self.wake_driver();
    }

    pub(crate) fn has_items(&self) -> bool {
        !self.items.is_empty()
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
    pub(crate) fn account(&mut self, unwritten: usize) -> bool {
        let before = self.buffered;
        self.buffered = self.items.iter().map(Outgoing::cost).sum::<usize>() + unwritten;
        self.buffered < before
    }
}
