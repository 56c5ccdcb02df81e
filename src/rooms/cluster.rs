//! What a registry does for its backplane: remote emits delivered
//! locally (after the `(origin, seq)` window), remote presence applied to
//! the remote view and announced, and this node's members described for
//! snapshots and queries. [`RemoteSink`](super::RemoteSink) calls these.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::backplane::{Delivery, Envelope, PresenceUpdate, RemoteMembers, RoomSnapshot};
use super::emit::Route;
use super::id::NodeId;
use super::stats::add;
use super::{lock, read, write, EmitReport, Rooms};

impl Rooms {
    /// An emit from another node: local delivery only.
    pub(super) fn deliver_remote(&self, envelope: Envelope) -> Delivery {
        let counters = &self.inner.counters;
        if envelope.origin == self.inner.node {
            add(&counters.remote_dropped, 1);
            return Delivery::OwnEcho;
        }
        if !lock(&self.inner.dedup).accept(envelope.origin, envelope.seq) {
            add(&counters.remote_dropped, 1);
            return Delivery::Duplicate;
        }
        let hook = read(&self.inner.remote_hook).clone();
        let payload = match hook {
            Some(hook) => hook(&envelope.target, envelope.payload),
            None => envelope.payload,
        };
        let mut report = EmitReport::default();
        self.deliver_route(&Route::of(&envelope.target), &payload, &mut report);
        add(&counters.remote_received, 1);
        self.count_delivery(&report, &payload);
        self.prune(&report);
        Delivery::Delivered(report)
    }

    pub(super) fn remote_presence(&self, update: PresenceUpdate) {
        let member = match &update {
            PresenceUpdate::Joined { member, .. } | PresenceUpdate::Left { member, .. } => *member,
        };
        if member.node() == self.inner.node {
            return;
        }
        let change = write(&self.inner.remote).apply(update, Instant::now());
        self.announce_changes(change.into_iter().collect());
    }

    pub(super) fn remote_snapshot(&self, origin: NodeId, rooms: Vec<RoomSnapshot>) {
        if origin == self.inner.node {
            return;
        }
        let mut changes = Vec::new();
        write(&self.inner.remote).snapshot(origin, rooms, Instant::now(), &mut changes);
        self.announce_changes(changes);
    }

    pub(super) fn expire_remote(&self, max_age: Duration) {
        let mut changes = Vec::new();
        write(&self.inner.remote).expire(max_age, Instant::now(), &mut changes);
        self.announce_changes(changes);
    }

    pub(super) fn remote_node_gone(&self, node: NodeId) {
        let mut changes = Vec::new();
        write(&self.inner.remote).remove_node(node, &mut changes);
        lock(&self.inner.dedup).forget(node);
        self.announce_changes(changes);
    }

    pub(super) fn remote_nodes(&self) -> Vec<NodeId> {
        read(&self.inner.remote).nodes()
    }

    /// The local members of `room` with their presence data.
    pub(super) fn local_members_with_data(&self, room: &str) -> RemoteMembers {
        // The room's lock is released before members' locks are taken:
        // `join` takes them the other way round.
        self.local_members(room)
            .into_iter()
            .map(|id| {
                (
                    id,
                    read(self.member_shard(id))
                        .get(&id)
                        .and_then(|e| e.data.clone()),
                )
            })
            .collect()
    }

    pub(super) fn local_snapshot(&self) -> Vec<RoomSnapshot> {
        self.local_room_names()
            .into_iter()
            .map(|room| {
                let members = self
                    .local_members_with_data(&room)
                    .into_iter()
                    .map(|(id, data)| (id.number(), data))
                    .collect();
                RoomSnapshot {
                    room: Arc::from(room),
                    members,
                }
            })
            .filter(|s| !s.members.is_empty())
            .collect()
    }
}
