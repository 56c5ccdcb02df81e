//! What arrives from the broker: decoded (bad bytes counted and dropped),
//! then handed to the [`RemoteSink`](chito::rooms::RemoteSink) — emits for
//! local delivery, presence to the remote view, queries answered.

use std::time::Instant;

use chito::rooms::{Delivery, Envelope};

use crate::backplane::{lock, Shared};
use crate::counters::C;
use crate::wire;

/// What became of a received message (JetStream acknowledges on `Done`).
pub(crate) enum Received {
    Done,
    /// For rooms without a local member, within the resume grace.
    NotYet,
}

impl Shared {
    /// Handles one message from the broker.
    pub(crate) fn receive(&self, bytes: &[u8]) -> Received {
        let decoded = match wire::decode(bytes) {
            Ok(w) => w,
            Err(_) => {
                self.counters.add(C::Received, 1);
                self.counters.add(C::BytesIn, bytes.len() as u64);
                self.counters.add(C::BadEnvelope, 1);
                return Received::Done;
            }
        };
        let Some(sink) = self.sink.get() else {
            // Not attached to a registry yet: nothing to deliver to.
            return Received::NotYet;
        };
        let me = sink.node();
        if let wire::Wire::Emit(Envelope { origin, target, .. }) = &decoded {
            // Received on a room channel only (no listed member of ours,
            // not for everyone) for rooms not wanted yet.
            let rooms_only =
                !target.rooms.is_empty() && !target.members.iter().any(|m| m.node() == me);
            if *origin != me
                && rooms_only
                && self.in_grace()
                && !target.rooms.iter().any(|r| sink.has_local_members(r))
            {
                return Received::NotYet;
            }
        }
        self.counters.add(C::Received, 1);
        self.counters.add(C::BytesIn, bytes.len() as u64);
        match decoded {
            wire::Wire::Emit(envelope) => match sink.deliver(envelope) {
                Delivery::Delivered(_) => self.counters.add(C::Delivered, 1),
                Delivery::OwnEcho => self.counters.add(C::OwnEcho, 1),
                Delivery::Duplicate => self.counters.add(C::Duplicate, 1),
                Delivery::Closed => {}
            },
            wire::Wire::Presence(origin, update) => {
                if origin != me {
                    self.counters.add(C::PresenceIn, 1);
                    sink.presence(update);
                }
            }
            wire::Wire::Snapshot {
                origin,
                round,
                rooms,
            } => {
                if origin != me {
                    self.counters.add(C::PresenceIn, 1);
                    self.snapshot_received(sink, origin, round, rooms);
                }
            }
            wire::Wire::Goodbye(origin) => {
                if origin != me {
                    self.counters.add(C::PresenceIn, 1);
                    self.goodbye_received(sink, origin);
                }
            }
            wire::Wire::Query { origin, id, room } => {
                if origin != me {
                    self.answer_query(sink, origin, id, &room);
                }
            }
            wire::Wire::Reply {
                origin,
                id,
                members,
            } => self.query_replied(origin, id, members),
        }
        Received::Done
    }

    fn in_grace(&self) -> bool {
        let mut grace = lock(&self.grace_until);
        match *grace {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                *grace = None;
                false
            }
            None => false,
        }
    }
}
