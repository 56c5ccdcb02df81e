//! The boundary between a [`Rooms`] registry and the other nodes of a
//! cluster: a [`Backplane`] carries emits and presence through a broker
//! (Redis, NATS: crate `chito-backplane`), and a [`RemoteSink`] is how what
//! it receives enters the registry — for local delivery only, never
//! published again, so nothing loops.
//!
//! The payload travels, never frames: a frame depends on each connection's
//! negotiation, so every node builds one [`Payload`] of
//! [`SharedMessage`](crate::SharedMessage)s from it and encodes each once
//! per wire form for its own members.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::emit::Select;
use super::id::{MemberId, NodeId};
use super::sink::Payload;
use super::{EmitReport, Inner, Rooms};

/// One emit on its way to the other nodes.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The node that emitted it.
    pub origin: NodeId,
    /// Increasing per origin, from 1: receivers drop what they delivered
    /// already (their own echoes included).
    pub seq: u64,
    /// Who it is for. A backplane carries it on the channel of each of
    /// `rooms`, of each other node with one of `members`, or — when both
    /// are empty — of everyone; a node reached on several channels
    /// delivers once (`seq`).
    pub target: Select,
    /// The message or batch (a reference count: publishing copies
    /// nothing).
    pub payload: Payload,
}

/// A local join or leave, for the other nodes' views of a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresenceUpdate {
    /// `member` is in `room`, with the data it published (also sent again
    /// when [`Rooms::set_presence_data`] changes it).
    Joined {
        /// The room.
        room: Arc<str>,
        /// Who joined.
        member: MemberId,
        /// What the application published about the member (a display
        /// name, say).
        data: Option<Arc<str>>,
    },
    /// `member` left `room` (or disconnected).
    Left {
        /// The room.
        room: Arc<str>,
        /// Who left.
        member: MemberId,
    },
}

/// One room's members on one node, for presence snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomSnapshot {
    /// The room.
    pub room: Arc<str>,
    /// Each member's number on its node ([`MemberId::number`]) and
    /// presence data.
    pub members: Vec<(u64, Option<Arc<str>>)>,
}

/// Why a publish was not handed to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishError {
    /// The backplane's outgoing queue is full (the broker is slow or
    /// unreachable): the emit reached local members only.
    QueueFull,
    /// The message is larger than the broker accepts.
    TooLarge {
        /// The broker's limit, in bytes.
        limit: usize,
    },
    /// The backplane has shut down.
    Closed,
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::QueueFull => f.write_str("the backplane's publish queue is full"),
            PublishError::TooLarge { limit } => {
                write!(
                    f,
                    "the message is larger than the broker's limit of {limit} bytes"
                )
            }
            PublishError::Closed => f.write_str("the backplane has shut down"),
        }
    }
}

impl std::error::Error for PublishError {}

/// Whether an emit was handed to the backplane, in its [`EmitReport`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Publish {
    /// The registry has no backplane, or the emit could not reach another
    /// node (a direct send to a local member).
    #[default]
    NoBackplane,
    /// Queued for the broker. The origin cannot know the fate of remote
    /// members: each node reports its own.
    Queued,
    /// Not published: local members only.
    Failed(PublishError),
}

/// The members of a room on other nodes, as a query answers them.
pub type RemoteMembers = Vec<(MemberId, Option<Arc<str>>)>;

/// A future answering [`Backplane::query_members`].
pub type MembersQuery = Pin<Box<dyn Future<Output = RemoteMembers> + Send>>;

/// Carries a registry's traffic to and from the other nodes of a cluster,
/// through a broker. Implemented per broker in crate `chito-backplane`, so
/// chito gains no dependency.
///
/// Every method is called outside the registry's locks and must not block:
/// hand work to the backplane's own task.
pub trait Backplane: Send + Sync + 'static {
    /// Called once by [`Rooms::with_backplane`], before anything else: how
    /// received traffic enters the registry.
    fn attach(&self, sink: RemoteSink);

    /// Called by every emit after local delivery. Queue it (bounded) for
    /// the broker; a full queue is [`PublishError::QueueFull`].
    fn publish(&self, envelope: Envelope) -> Result<(), PublishError>;

    /// `room`'s local member count went from 0 to 1: receive its traffic.
    /// A hint — joins and leaves race with these calls, so the registry
    /// ([`RemoteSink::has_local_members`]) is the truth.
    fn subscribe(&self, room: &str);

    /// `room`'s local member count went from 1 to 0. Implementations
    /// defer it (a member that flaps would resubscribe at once) and check
    /// [`RemoteSink::has_local_members`] before acting.
    fn unsubscribe(&self, room: &str);

    /// A local join or leave, or new presence data of a member in a room.
    fn publish_presence(&self, update: PresenceUpdate);

    /// Asks the other nodes for their members of `room` now; the answers
    /// are collected until every known node replied or `timeout` passed.
    fn query_members(&self, room: &str, timeout: Duration) -> MembersQuery;
}

/// What [`RemoteSink::deliver`] did with an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Delivered to the local members it was for.
    Delivered(EmitReport),
    /// This node emitted it: its members have it already.
    OwnEcho,
    /// Delivered before (an emit to several rooms arrives once per room; an
    /// at-least-once broker redelivers).
    Duplicate,
    /// The registry is gone.
    Closed,
}

/// How a backplane hands received traffic to its registry. Holds the
/// registry weakly (the registry holds the backplane), so dropping every
/// [`Rooms`] clone frees both; calls then do nothing.
#[derive(Clone)]
pub struct RemoteSink {
    node: NodeId,
    rooms: Weak<Inner>,
}

impl fmt::Debug for RemoteSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteSink")
            .field("node", &self.node)
            .finish()
    }
}

impl RemoteSink {
    pub(super) fn new(rooms: &Rooms) -> RemoteSink {
        RemoteSink {
            node: rooms.node(),
            rooms: Arc::downgrade(&rooms.inner),
        }
    }

    fn rooms(&self) -> Option<Rooms> {
        self.rooms.upgrade().map(|inner| Rooms { inner })
    }

    /// The registry's node.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Delivers a received emit to the local members it is for, unless
    /// this node sent it or delivered it before.
    pub fn deliver(&self, envelope: Envelope) -> Delivery {
        match self.rooms() {
            Some(rooms) => rooms.deliver_remote(envelope),
            None => Delivery::Closed,
        }
    }

    /// A join or leave on another node (this node's own are ignored).
    pub fn presence(&self, update: PresenceUpdate) {
        if let Some(rooms) = self.rooms() {
            rooms.remote_presence(update);
        }
    }

    /// `origin`'s members of each listed room, replacing what was known;
    /// refreshes `origin`'s liveness (an empty list is a heartbeat).
    pub fn snapshot(&self, origin: NodeId, rooms: Vec<RoomSnapshot>) {
        if let Some(registry) = self.rooms() {
            registry.remote_snapshot(origin, rooms);
        }
    }

    /// Forgets remote rooms and nodes not refreshed for `max_age`; their
    /// members leave (announced to [`Rooms::on_presence`]).
    pub fn expire(&self, max_age: Duration) {
        if let Some(rooms) = self.rooms() {
            rooms.expire_remote(max_age);
        }
    }

    /// `node` shut down: its members leave now.
    pub fn node_gone(&self, node: NodeId) {
        if let Some(rooms) = self.rooms() {
            rooms.remote_node_gone(node);
        }
    }

    /// The rooms with a local member or a [`RoomHold`](super::RoomHold)
    /// (to subscribe again after a reconnect), sorted.
    pub fn local_rooms(&self) -> Vec<String> {
        self.rooms()
            .map(|rooms| rooms.wanted_room_names())
            .unwrap_or_default()
    }

    /// True if this node needs `room`'s traffic: it has a local member or
    /// a [`RoomHold`](super::RoomHold).
    pub fn has_local_members(&self, room: &str) -> bool {
        self.rooms().is_some_and(|rooms| rooms.wants_room(room))
    }

    /// This node's rooms and members, for a presence snapshot.
    pub fn local_snapshot(&self) -> Vec<RoomSnapshot> {
        self.rooms()
            .map(|rooms| rooms.local_snapshot())
            .unwrap_or_default()
    }

    /// This node's members of `room` with their presence data (to answer a
    /// query).
    pub fn local_members(&self, room: &str) -> RemoteMembers {
        self.rooms()
            .map(|rooms| rooms.local_members_with_data(room))
            .unwrap_or_default()
    }

    /// The other nodes currently known alive, sorted.
    pub fn known_nodes(&self) -> Vec<NodeId> {
        self.rooms()
            .map(|rooms| rooms.remote_nodes())
            .unwrap_or_default()
    }
}
