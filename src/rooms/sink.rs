//! What a member is to the registry: a [`Sink`] that takes [`Payload`]s
//! (a tokio [`Handle`] is one), and why an id cannot be restored.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use crate::connection::{SharedBatch, SharedMessage};
use crate::handle::{Handle, QueueError};

/// What an emit sends to each member: one message, or a batch of messages
/// that must arrive together and in order. Cloning is a reference count.
#[derive(Debug, Clone)]
pub enum Payload {
    /// One message.
    Single(SharedMessage),
    /// Messages queued all or none, in order (a Socket.IO packet and its
    /// binary attachments).
    Batch(SharedBatch),
}

impl Payload {
    /// The messages, in order (one for [`Payload::Single`]).
    pub fn messages(&self) -> &[SharedMessage] {
        match self {
            Payload::Single(message) => std::slice::from_ref(message),
            Payload::Batch(batch) => batch.messages(),
        }
    }

    /// The sum of the messages' payload lengths, in bytes.
    pub fn len(&self) -> usize {
        match self {
            Payload::Single(message) => message.len(),
            Payload::Batch(batch) => batch.len(),
        }
    }

    /// Whether every message is empty (or there is none).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A value derived from the payload's messages once and cached with
    /// them, however many members ask (a transport's own encoding, built by
    /// the first member that needs it); `None` if a value of another type
    /// was cached first. Every clone of the payload shares the slot.
    pub fn derived<T: Any + Send + Sync>(
        &self,
        build: impl FnOnce(&[SharedMessage]) -> T,
    ) -> Option<Arc<T>> {
        match self {
            Payload::Single(message) => message.derived(build),
            Payload::Batch(batch) => batch.derived(build),
        }
    }
}

impl From<SharedMessage> for Payload {
    fn from(message: SharedMessage) -> Self {
        Payload::Single(message)
    }
}

impl From<SharedBatch> for Payload {
    fn from(batch: SharedBatch) -> Self {
        Payload::Batch(batch)
    }
}

/// A member of a [`Rooms`](super::Rooms) registry: where its emits go.
///
/// [`Handle`] is one ([`Rooms::add`](super::Rooms::add)); a transport of
/// the application's own (an HTTP long-polling session) implements it and
/// joins with [`Rooms::add_sink`](super::Rooms::add_sink).
///
/// The registry calls these methods under its shard locks, from the
/// emitting task: they must not block, and must not call the registry.
pub trait Sink: Send + Sync + 'static {
    /// Queues `payload` for the member without waiting: a batch all or
    /// none, in order.
    ///
    /// # Errors
    /// The member's queue policy decides, as a [`Handle`]'s
    /// [`Overflow`](crate::tokio::Overflow) does: [`QueueError::Full`]
    /// (skipped, reported in [`EmitReport::full`](super::EmitReport::full)),
    /// or [`QueueError::ClosedSlowConsumer`] once the sink closed itself as
    /// too slow, or [`QueueError::Closed`] — both remove the member from
    /// the registry.
    fn deliver(&self, payload: &Payload) -> Result<(), QueueError>;

    /// True once the member takes nothing more: [`Rooms::join`](super::Rooms::join)
    /// refuses it then, and an emit that found it closed removes it only
    /// if this says so. It must be true once `deliver` answered
    /// [`QueueError::Closed`] or [`QueueError::ClosedSlowConsumer`].
    fn is_closed(&self) -> bool;
}

impl Sink for Handle {
    fn deliver(&self, payload: &Payload) -> Result<(), QueueError> {
        match payload {
            Payload::Single(message) => self.try_send_shared(message),
            Payload::Batch(batch) => self.try_send_batch(batch),
        }
    }

    fn is_closed(&self) -> bool {
        Handle::is_closed(self)
    }
}

/// Why [`Rooms::add_sink_as`](super::Rooms::add_sink_as) refused an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreError {
    /// The id belongs to another node.
    OtherNode,
    /// This node never gave the id out.
    NotIssued,
    /// A member has the id now.
    Present,
}

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RestoreError::OtherNode => "the member id belongs to another node",
            RestoreError::NotIssued => "this node never gave out the member id",
            RestoreError::Present => "a member has this id now",
        })
    }
}

impl std::error::Error for RestoreError {}
