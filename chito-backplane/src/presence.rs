//! Presence across nodes: deltas (joins and leaves), the periodic
//! snapshot of this node's rooms (cut and reassembled by `snapshot`),
//! expiry of silent nodes, goodbyes, and member queries with their
//! replies. Deltas received go straight to the
//! [`RemoteSink`](chito::rooms::RemoteSink) (`receive`).

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use chito::rooms::{MemberId, MembersQuery, NodeId, RemoteMembers, RemoteSink};
use tokio::sync::mpsc;

use crate::backplane::{lock, Shared};
use crate::counters::C;
use crate::publish::Outgoing;
use crate::snapshot;
use crate::wire::{self, Member, RoomPart};

/// Where the replies to one member query go.
pub(crate) type Replies = mpsc::UnboundedSender<(NodeId, Vec<(MemberId, Option<Arc<str>>)>)>;

impl Shared {
    /// Queues this node's presence snapshot: one round of messages of at
    /// most `snapshot_chunk_bytes` (and `max_payload`) each, a large room
    /// in parts.
    pub(crate) fn publish_snapshot(&self) {
        let Some(sink) = self.sink.get() else {
            return;
        };
        let node = sink.node();
        let limit = self.max_payload.load(Ordering::Relaxed);
        let budget = self.settings.snapshot_chunk_bytes.min(limit);
        // One round at a time, its messages queued together: a round's
        // parts are not interleaved with another round's.
        let mut round = lock(&self.snapshot_round);
        *round += 1;
        let rooms = sink.local_snapshot();
        for message in snapshot::cut(&rooms, budget) {
            match wire::encode_snapshot(node, *round, &message) {
                Ok(payload) if payload.len() <= limit => {
                    let _ = self.enqueue(Outgoing::Raw {
                        channel: self.channels.presence(),
                        payload,
                        presence: true,
                    });
                }
                // One member's data alone beyond the broker's limit.
                _ => self.counters.add(C::TooLarge, 1),
            }
        }
    }

    /// A snapshot message from another node: whole rooms are applied now,
    /// parts of a large room once all of that round's parts are in.
    pub(crate) fn snapshot_received(
        &self,
        sink: &RemoteSink,
        origin: NodeId,
        round: u64,
        parts: Vec<RoomPart<Vec<Member>>>,
    ) {
        let now = Instant::now();
        let mut complete = Vec::new();
        let mut dropped = 0;
        {
            let mut reassembly = lock(&self.reassembly);
            for part in parts {
                let added = reassembly.add(origin, round, part, now);
                complete.extend(added.complete);
                dropped += added.dropped;
            }
        }
        self.counters.add(C::SnapshotDropped, dropped);
        let new = !sink.known_nodes().contains(&origin);
        // Even with no room complete: the message says the node is alive.
        sink.snapshot(origin, complete);
        if new {
            // A node we did not know (just started, or back):
            // it learns about us now rather than at our next
            // period. It knows us after this, so no echo loop.
            self.publish_snapshot();
        }
    }

    /// `origin` said goodbye: its members leave now, its incomplete
    /// snapshot parts go.
    pub(crate) fn goodbye_received(&self, sink: &RemoteSink, origin: NodeId) {
        let dropped = lock(&self.reassembly).forget(origin);
        self.counters.add(C::SnapshotDropped, dropped);
        sink.node_gone(origin);
    }

    /// Another node asks for our members of `room`: the answer goes to
    /// its node channel.
    pub(crate) fn answer_query(&self, sink: &RemoteSink, origin: NodeId, id: u64, room: &str) {
        let members = sink.local_members(room);
        if let Ok(payload) = wire::encode_reply(sink.node(), id, &members) {
            let _ = self.enqueue(Outgoing::Raw {
                channel: self.channels.node(origin),
                payload,
                presence: true,
            });
        }
    }

    /// A reply to one of our queries, if it is still waiting.
    pub(crate) fn query_replied(&self, origin: NodeId, id: u64, members: RemoteMembers) {
        if let Some(tx) = lock(&self.queries).get(&id) {
            let _ = tx.send((origin, members));
        }
    }
}

/// Every presence period: the snapshot, then expiry of silent nodes and of
/// incomplete snapshot parts.
pub(crate) async fn presence_task(weak: Weak<Shared>) {
    let period = match weak.upgrade() {
        Some(s) => s.settings.presence_period,
        None => return,
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is now: attach already sent one
    loop {
        tick.tick().await;
        let Some(s) = weak.upgrade() else { return };
        if *s.closed.borrow() {
            return;
        }
        s.publish_snapshot();
        if let Some(sink) = s.sink.get() {
            sink.expire(s.settings.presence_expiry());
        }
        let dropped = lock(&s.reassembly).expire(Instant::now());
        s.counters.add(C::SnapshotDropped, dropped);
        s.flush_lag();
    }
}

/// [`Backplane::query_members`](chito::rooms::Backplane::query_members):
/// asks every node on the presence channel, collects the replies until
/// every known node answered or `timeout` passed.
pub(crate) fn query_members(s: Arc<Shared>, room: &str, timeout: Duration) -> MembersQuery {
    let room = room.to_owned();
    Box::pin(async move {
        let Some(sink) = s.sink.get() else {
            return Vec::new();
        };
        let me = sink.node();
        let known: HashSet<NodeId> = sink.known_nodes().into_iter().collect();
        if known.is_empty() {
            return Vec::new();
        }
        let id = s.next_query.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::unbounded_channel();
        lock(&s.queries).insert(id, tx);
        let mut found = Vec::new();
        if let Ok(payload) = wire::encode_query(me, id, &room) {
            let queued = s.enqueue(Outgoing::Raw {
                channel: s.channels.presence(),
                payload,
                presence: true,
            });
            if queued.is_ok() {
                let deadline = tokio::time::Instant::now() + timeout;
                let mut replied = HashSet::new();
                while !known.is_subset(&replied) {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some((node, members))) => {
                            if replied.insert(node) {
                                found.extend(members);
                            }
                        }
                        _ => break,
                    }
                }
            }
        }
        lock(&s.queries).remove(&id);
        found
    })
}
