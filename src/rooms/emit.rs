//! Sending to many: every emit variant, local delivery (one
//! `SharedMessage` reference queued per member), the report, and the hand
//! over to the backplane after local delivery.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::backplane::{Envelope, Publish, Target};
use super::id::MemberId;
use super::stats::add;
use super::{read, EmitReport, Rooms};
use crate::connection::{Message, SharedMessage};
use crate::handle::{Handle, QueueError};

impl Rooms {
    /// Sends `message` to every member of `room`, on every node.
    pub fn emit(&self, room: &str, message: Message<'_>) -> EmitReport {
        self.emit_shared(room, &SharedMessage::new(message))
    }

    /// Sends a prepared [`SharedMessage`] to every member of `room`, on
    /// every node.
    pub fn emit_shared(&self, room: &str, message: &SharedMessage) -> EmitReport {
        let mut report = EmitReport::default();
        self.deliver_rooms(&[room], &Skip::default(), message, &mut report);
        self.finish(&mut report, message);
        report.published = self.publish(message, || Target::Rooms {
            rooms: vec![Arc::from(room)],
            except: None,
            except_rooms: Vec::new(),
        });
        report
    }

    /// Sends `message` to every member of `room` but `except` (typically
    /// the sender), on every node.
    pub fn emit_except(&self, room: &str, message: Message<'_>, except: MemberId) -> EmitReport {
        let shared = SharedMessage::new(message);
        let mut report = EmitReport::default();
        let skip = Skip::member(except);
        self.deliver_rooms(&[room], &skip, &shared, &mut report);
        self.finish(&mut report, &shared);
        report.published = self.publish(&shared, || Target::Rooms {
            rooms: vec![Arc::from(room)],
            except: Some(except),
            except_rooms: Vec::new(),
        });
        report
    }

    /// Sends `message` to the members of `room` on this node only, never
    /// to other nodes (for what each node computes itself, such as a
    /// member list it shows).
    pub fn emit_local(&self, room: &str, message: Message<'_>) -> EmitReport {
        let shared = SharedMessage::new(message);
        let mut report = EmitReport::default();
        self.deliver_rooms(&[room], &Skip::default(), &shared, &mut report);
        self.finish(&mut report, &shared);
        report
    }

    /// Sends `message` once to every member of any of `rooms`, on every
    /// node: a member in several of them gets one copy.
    pub fn emit_many(&self, rooms: &[&str], message: Message<'_>) -> EmitReport {
        let shared = SharedMessage::new(message);
        let mut report = EmitReport::default();
        self.deliver_rooms(rooms, &Skip::default(), &shared, &mut report);
        self.finish(&mut report, &shared);
        report.published = self.publish(&shared, || Target::Rooms {
            rooms: rooms.iter().map(|r| Arc::from(*r)).collect(),
            except: None,
            except_rooms: Vec::new(),
        });
        report
    }

    /// Sends a prepared message once to every member, on every node, of
    /// any of `select.rooms`, except the members of any of
    /// `select.except_rooms` and `select.except` (Socket.IO's
    /// `to(rooms).except(rooms)`). The except-rooms travel as names: each
    /// node leaves out its own members of them, as only it knows them
    /// exactly.
    pub fn emit_select(&self, select: &Select<'_>, message: &SharedMessage) -> EmitReport {
        let mut report = EmitReport::default();
        let skip = self.skip(select.except, select.except_rooms);
        self.deliver_rooms(select.rooms, &skip, message, &mut report);
        self.finish(&mut report, message);
        report.published = self.publish(message, || Target::Rooms {
            rooms: select.rooms.iter().map(|r| Arc::from(*r)).collect(),
            except: select.except,
            except_rooms: select.except_rooms.iter().map(|r| Arc::from(*r)).collect(),
        });
        report
    }

    /// Who an emit leaves out: `except`, and the local members of
    /// `except_rooms` (collected once per emit).
    pub(super) fn skip<R: AsRef<str>>(&self, except: Option<MemberId>, except_rooms: &[R]) -> Skip {
        let mut members = HashSet::new();
        for room in except_rooms {
            let room = room.as_ref();
            if let Some(r) = read(self.room_shard(room)).get(room) {
                members.extend(r.members.keys().copied());
            }
        }
        Skip {
            member: except,
            members,
        }
    }

    /// Sends `message` to every registered member, in a room or not, on
    /// every node.
    pub fn broadcast(&self, message: Message<'_>) -> EmitReport {
        let shared = SharedMessage::new(message);
        let mut report = EmitReport::default();
        self.deliver_everyone(&shared, &mut report);
        self.finish(&mut report, &shared);
        report.published = self.publish(&shared, || Target::Everyone);
        report
    }

    /// Sends `message` to one member, on whichever node holds it.
    pub fn send_to(&self, member: MemberId, message: Message<'_>) -> EmitReport {
        let shared = SharedMessage::new(message);
        let mut report = EmitReport::default();
        if member.node() == self.inner.node {
            self.deliver_member(member, &shared, &mut report);
            self.finish(&mut report, &shared);
        } else {
            add(&self.inner.counters.emits, 1);
            report.published = self.publish(&shared, || Target::Member(member));
        }
        report
    }

    /// Queues `message` to the local members of any of `rooms` (one copy
    /// each) but those `skip` names.
    pub(super) fn deliver_rooms<R: AsRef<str>>(
        &self,
        rooms: &[R],
        skip: &Skip,
        message: &SharedMessage,
        report: &mut EmitReport,
    ) {
        let len = message.len() as u64;
        // One room needs no bookkeeping of who has it already.
        let mut seen = (rooms.len() > 1).then(HashSet::new);
        for room in rooms {
            let room = room.as_ref();
            let shard = read(self.room_shard(room));
            let Some(r) = shard.get(room) else {
                continue;
            };
            let (delivered, full) = (report.delivered, report.full.len());
            for (id, handle) in &r.members {
                if skip.contains(*id) || seen.as_mut().is_some_and(|s| !s.insert(*id)) {
                    continue;
                }
                deliver(*id, handle, message, report);
            }
            let delivered = (report.delivered - delivered) as u64;
            add(&r.counters.emits, 1);
            add(&r.counters.deliveries, delivered);
            add(&r.counters.bytes_out, delivered * len);
            add(&r.counters.full, (report.full.len() - full) as u64);
        }
    }

    pub(super) fn deliver_everyone(&self, message: &SharedMessage, report: &mut EmitReport) {
        for shard in self.inner.members.iter() {
            for (id, entry) in read(shard).iter() {
                deliver(*id, &entry.handle, message, report);
            }
        }
    }

    pub(super) fn deliver_member(
        &self,
        member: MemberId,
        message: &SharedMessage,
        report: &mut EmitReport,
    ) {
        match self.handle(member) {
            Some(handle) => deliver(member, &handle, message, report),
            None => report.closed.push(member),
        }
    }

    /// Counts a local delivery and removes members found closed.
    pub(super) fn finish(&self, report: &mut EmitReport, message: &SharedMessage) {
        let counters = &self.inner.counters;
        add(&counters.emits, 1);
        self.count_delivery(report, message);
        self.prune(report);
    }

    pub(super) fn count_delivery(&self, report: &EmitReport, message: &SharedMessage) {
        let counters = &self.inner.counters;
        add(&counters.deliveries, report.delivered as u64);
        add(
            &counters.bytes_out,
            report.delivered as u64 * message.len() as u64,
        );
        add(&counters.full, report.full.len() as u64);
        add(&counters.closed, report.closed.len() as u64);
    }

    /// Hands an emit to the backplane, if there is one.
    pub(super) fn publish(
        &self,
        message: &SharedMessage,
        target: impl FnOnce() -> Target,
    ) -> Publish {
        let Some(backplane) = &self.inner.backplane else {
            return Publish::NoBackplane;
        };
        let envelope = Envelope {
            origin: self.inner.node,
            seq: self.inner.seq.fetch_add(1, Ordering::Relaxed) + 1,
            target: target(),
            message: message.clone(),
        };
        match backplane.publish(envelope) {
            Ok(()) => {
                add(&self.inner.counters.published, 1);
                Publish::Queued
            }
            Err(error) => {
                add(&self.inner.counters.publish_failed, 1);
                Publish::Failed(error)
            }
        }
    }

    /// Removes members found closed during an emit (outside the locks).
    pub(super) fn prune(&self, report: &EmitReport) {
        for id in &report.closed {
            if id.node() == self.inner.node {
                self.remove(*id);
            }
        }
    }
}

/// Which rooms an emit selects, and whom it leaves out
/// ([`Rooms::emit_select`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Select<'a> {
    /// Every member of any of these rooms (one copy each)…
    pub rooms: &'a [&'a str],
    /// … but the members of any of these rooms…
    pub except_rooms: &'a [&'a str],
    /// … and this member (typically the sender).
    pub except: Option<MemberId>,
}

/// The members an emit leaves out on this node.
#[derive(Default)]
pub(super) struct Skip {
    member: Option<MemberId>,
    members: HashSet<MemberId>,
}

impl Skip {
    fn member(id: MemberId) -> Skip {
        Skip {
            member: Some(id),
            members: HashSet::new(),
        }
    }

    fn contains(&self, id: MemberId) -> bool {
        self.member == Some(id) || self.members.contains(&id)
    }
}

fn deliver(id: MemberId, handle: &Handle, message: &SharedMessage, report: &mut EmitReport) {
    match handle.try_send_shared(message) {
        Ok(()) => report.delivered += 1,
        // A shared message is never invalid itself: `Invalid` comes from a
        // full queue whose overflow policy names a close code that cannot
        // be sent, and the member stays, like under `Overflow::Reject`.
        Err(QueueError::Full | QueueError::Invalid(_)) => report.full.push(id),
        Err(QueueError::Closed | QueueError::ClosedSlowConsumer) => report.closed.push(id),
    }
}
