//! Presence across nodes: deltas (joins and leaves), the periodic
//! snapshot of this node's rooms in chunks, expiry of silent nodes, and
//! member queries with their replies. Goodbyes and deltas received go
//! straight to the [`RemoteSink`](chito::rooms::RemoteSink) (`receive`).

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use chito::rooms::{MemberId, MembersQuery, NodeId, RemoteMembers, RemoteSink, RoomSnapshot};
use tokio::sync::mpsc;

use crate::backplane::{lock, Shared};
use crate::publish::Outgoing;
use crate::wire;

/// Where the replies to one member query go.
pub(crate) type Replies = mpsc::UnboundedSender<(NodeId, Vec<(MemberId, Option<Arc<str>>)>)>;

impl Shared {
    /// Queues this node's presence snapshot, in chunks of whole rooms.
    pub(crate) fn publish_snapshot(&self) {
        let Some(sink) = self.sink.get() else {
            return;
        };
        let node = sink.node();
        let rooms = sink.local_snapshot();
        let mut chunk: Vec<RoomSnapshot> = Vec::new();
        let mut size = 0;
        let mut chunks = Vec::new();
        for room in rooms {
            let s = wire::snapshot_room_size(&room);
            if !chunk.is_empty() && size + s > self.settings.snapshot_chunk_bytes {
                chunks.push(std::mem::take(&mut chunk));
                size = 0;
            }
            size += s;
            chunk.push(room);
        }
        // Always at least one message: an empty snapshot is the heartbeat
        // that keeps this node known.
        chunks.push(chunk);
        for chunk in chunks {
            if let Ok(payload) = wire::encode_snapshot(node, &chunk) {
                let _ = self.enqueue(Outgoing::Raw {
                    channel: self.channels.presence(),
                    payload,
                    presence: true,
                });
            }
        }
    }

    /// A snapshot chunk from another node.
    pub(crate) fn snapshot_received(
        &self,
        sink: &RemoteSink,
        origin: NodeId,
        rooms: Vec<RoomSnapshot>,
    ) {
        let new = !sink.known_nodes().contains(&origin);
        sink.snapshot(origin, rooms);
        if new {
            // A node we did not know (just started, or back):
            // it learns about us now rather than at our next
            // period. It knows us after this, so no echo loop.
            self.publish_snapshot();
        }
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

/// Every presence period: the snapshot, then expiry of silent nodes.
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
            sink.expire(period.saturating_mul(s.settings.presence_expiry_periods.max(1)));
        }
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
