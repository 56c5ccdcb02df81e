//! [`Outbox`]: what [`send`](super::ReconnectingClient::send) does while
//! no connection is up, and the bounded queue that holds messages until
//! the next one is.

use std::collections::VecDeque;

use chito::Message;

use super::events::{HoldLimit, SendError};

/// What a send does while the client is not connected (connecting,
/// waiting to retry, or moving held messages into a new connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outbox {
    /// Hold the message and send it on the next connection, after the
    /// `on_connected` hook's messages, once and in order. The queue holds at
    /// most `max_messages` messages and `max_bytes` payload bytes; a send
    /// that would pass either is refused ([`SendError::HoldFull`] says
    /// which), and nothing already held is dropped.
    Hold {
        /// The most messages held.
        max_messages: usize,
        /// The most payload bytes held, all messages together.
        max_bytes: usize,
    },
    /// Refuse the message at once ([`SendError::Disconnected`]): for data
    /// that is stale by the time a connection is back (positions, prices).
    Reject,
}

impl Default for Outbox {
    /// Hold up to 1024 messages and 1 MiB: seconds of a chat or
    /// command stream across a server restart, bounded however long the
    /// outage lasts.
    fn default() -> Self {
        Outbox::Hold {
            max_messages: 1024,
            max_bytes: 1 << 20,
        }
    }
}

/// A held message, owned.
#[derive(Debug)]
pub(crate) enum Held {
    Text(String),
    Binary(Vec<u8>),
}

impl Held {
    pub(crate) fn as_message(&self) -> Message<'_> {
        match self {
            Held::Text(text) => Message::Text(text),
            Held::Binary(data) => Message::Binary(data),
        }
    }

    fn len(&self) -> usize {
        match self {
            Held::Text(text) => text.len(),
            Held::Binary(data) => data.len(),
        }
    }
}

/// The messages held while disconnected. A message taken out to be sent
/// still counts against the bounds until it is handed over (or put back if
/// the connection ends first), so the bounds hold at every moment.
#[derive(Debug)]
pub(crate) struct HoldQueue {
    policy: Outbox,
    items: VecDeque<Held>,
    /// Messages held, the one being handed over included.
    messages: usize,
    /// Payload bytes held, the one being handed over included.
    bytes: usize,
}

impl HoldQueue {
    pub(crate) fn new(policy: Outbox) -> Self {
        HoldQueue {
            policy,
            items: VecDeque::new(),
            messages: 0,
            bytes: 0,
        }
    }

    /// Holds a copy of `message`, or says why not.
    pub(crate) fn push(&mut self, message: Message<'_>) -> Result<(), SendError> {
        let Outbox::Hold {
            max_messages,
            max_bytes,
        } = self.policy
        else {
            return Err(SendError::Disconnected);
        };
        if self.messages >= max_messages {
            return Err(SendError::HoldFull(HoldLimit::Messages(max_messages)));
        }
        let len = message.as_bytes().len();
        if self.bytes.saturating_add(len) > max_bytes {
            return Err(SendError::HoldFull(HoldLimit::Bytes(max_bytes)));
        }
        self.items.push_back(match message {
            Message::Text(text) => Held::Text(text.to_owned()),
            Message::Binary(data) => Held::Binary(data.to_vec()),
        });
        self.messages += 1;
        self.bytes += len;
        Ok(())
    }

    /// The oldest held message, to be handed over; it still counts until
    /// [`HoldQueue::handed_over`] or [`HoldQueue::put_back`].
    pub(crate) fn take_front(&mut self) -> Option<Held> {
        self.items.pop_front()
    }

    /// The message taken last was handed to a connection.
    pub(crate) fn handed_over(&mut self, held: &Held) {
        self.messages = self.messages.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(held.len());
    }

    /// The message taken last could not be handed over (the connection
    /// ended): it goes first again.
    pub(crate) fn put_back(&mut self, held: Held) {
        self.items.push_front(held);
    }

    /// Whether nothing is held (or being handed over).
    pub(crate) fn is_empty(&self) -> bool {
        self.messages == 0
    }

    /// Drops everything held (the client is ending).
    pub(crate) fn clear(&mut self) {
        self.items.clear();
        self.messages = 0;
        self.bytes = 0;
    }
}
