//! Counters of a registry and of each room, for health and stats pages and
//! for metrics exporters (crate `chito-backplane` records them through the
//! `metrics` facade). Relaxed atomics: each counter is exact, a set of them
//! read together is not a snapshot of one instant.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{read, Rooms};

/// Node-wide figures of a [`Rooms`](super::Rooms) registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomsStats {
    /// Registered local members (connections).
    pub members: usize,
    /// Rooms with a local member.
    pub rooms: usize,
    /// Other nodes known alive.
    pub remote_nodes: usize,
    /// Remote members, counted once per room they are in.
    pub remote_members: usize,
    /// Emits started on this node (every variant).
    pub emits: u64,
    /// Messages queued to local members, from local and remote emits.
    pub deliveries: u64,
    /// Payload bytes queued to local members (a message's length once per
    /// member that took it).
    pub bytes_out: u64,
    /// Deliveries skipped because the member's queue was full.
    pub full: u64,
    /// Members found closed (or closed as slow consumers) by an emit.
    pub closed: u64,
    /// Emits handed to the backplane.
    pub published: u64,
    /// Emits the backplane refused (queue full, too large, shut down).
    pub publish_failed: u64,
    /// Envelopes received from other nodes and delivered.
    pub remote_received: u64,
    /// Envelopes dropped as own echoes or duplicates.
    pub remote_dropped: u64,
}

/// The figures of one room on this node. They start at zero when the room
/// gets its first local member and end with its last.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomStats {
    /// Local members.
    pub local_members: usize,
    /// Members on other nodes (eventually consistent).
    pub remote_members: usize,
    /// Emits that reached the room here, local or remote.
    pub emits: u64,
    /// Messages queued to its local members.
    pub deliveries: u64,
    /// Payload bytes queued to its local members.
    pub bytes_out: u64,
    /// Deliveries skipped because a member's queue was full.
    pub full: u64,
}

/// The registry's counters.
#[derive(Debug, Default)]
pub(crate) struct NodeCounters {
    pub(crate) emits: AtomicU64,
    pub(crate) deliveries: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) full: AtomicU64,
    pub(crate) closed: AtomicU64,
    pub(crate) published: AtomicU64,
    pub(crate) publish_failed: AtomicU64,
    pub(crate) remote_received: AtomicU64,
    pub(crate) remote_dropped: AtomicU64,
}

/// A room's counters, kept with the room.
#[derive(Debug, Default)]
pub(crate) struct RoomCounters {
    pub(crate) emits: AtomicU64,
    pub(crate) deliveries: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) full: AtomicU64,
}

pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

pub(crate) fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Rooms {
    /// This node's figures.
    pub fn stats(&self) -> RoomsStats {
        let c = &self.inner.counters;
        let remote = read(&self.inner.remote);
        RoomsStats {
            members: self.member_count(),
            rooms: self
                .inner
                .rooms
                .iter()
                .map(|s| read(s).values().filter(|r| !r.members.is_empty()).count())
                .sum(),
            remote_nodes: remote.nodes().len(),
            remote_members: remote.member_count(),
            emits: get(&c.emits),
            deliveries: get(&c.deliveries),
            bytes_out: get(&c.bytes_out),
            full: get(&c.full),
            closed: get(&c.closed),
            published: get(&c.published),
            publish_failed: get(&c.publish_failed),
            remote_received: get(&c.remote_received),
            remote_dropped: get(&c.remote_dropped),
        }
    }

    /// The figures of `room` on this node; `None` if it has no member on
    /// any node.
    pub fn room_stats(&self, room: &str) -> Option<RoomStats> {
        let remote_members = read(&self.inner.remote).count(room);
        let shard = read(self.room_shard(room));
        // A room held without members has none.
        let local = shard.get(room).filter(|r| !r.members.is_empty());
        let stats = local.map(|r| RoomStats {
            local_members: r.members.len(),
            remote_members,
            emits: get(&r.counters.emits),
            deliveries: get(&r.counters.deliveries),
            bytes_out: get(&r.counters.bytes_out),
            full: get(&r.counters.full),
        });
        match stats {
            Some(stats) => Some(stats),
            None if remote_members > 0 => Some(RoomStats {
                remote_members,
                ..RoomStats::default()
            }),
            None => None,
        }
    }
}
