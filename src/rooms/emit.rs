//! Sending to many: every emit is a [`Select`]ion, delivered locally (one
//! [`Payload`] reference queued per member) then handed to the backplane;
//! the emit variants are shorthands for one.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::backplane::{Envelope, Publish};
use super::id::MemberId;
use super::sink::{Payload, Sink};
use super::stats::add;
use super::{read, EmitReport, Rooms};
use crate::connection::{Message, SharedMessage};
use crate::handle::QueueError;

/// Whom an emit is for ([`Rooms::emit_select`]), on every node: the
/// members of any of `rooms` and the `members` listed — one copy each —
/// except the members of any of `except_rooms` and the `except_members`
/// listed. With `rooms` and `members` both empty it selects every member
/// (Socket.IO's `io.except(room).emit(..)`).
///
/// Except-rooms travel as names: each node leaves out its own members of
/// them, as only it knows them exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Select {
    /// Every member of any of these rooms…
    pub rooms: Vec<Arc<str>>,
    /// … and these members, wherever they are…
    pub members: Vec<MemberId>,
    /// … but not the members of any of these rooms…
    pub except_rooms: Vec<Arc<str>>,
    /// … nor these members (typically the sender).
    pub except_members: Vec<MemberId>,
}

impl Select {
    /// The members of `room`.
    pub fn room(room: &str) -> Select {
        Select {
            rooms: vec![Arc::from(room)],
            ..Select::default()
        }
    }

    /// Whether the selection takes `member`, which is in the rooms for
    /// which `in_room` is true (to replay a logged emit to a member that
    /// was away, by the rules delivery follows).
    pub fn selects(&self, member: MemberId, in_room: impl Fn(&str) -> bool) -> bool {
        let chosen = self.everyone()
            || self.members.contains(&member)
            || self.rooms.iter().any(|r| in_room(r));
        chosen
            && !self.except_members.contains(&member)
            && !self.except_rooms.iter().any(|r| in_room(r))
    }

    /// Whether it selects every member.
    pub(super) fn everyone(&self) -> bool {
        self.rooms.is_empty() && self.members.is_empty()
    }
}

impl Rooms {
    /// Sends `payload` to the members `select` chooses, on every node: the
    /// one path every emit takes.
    pub fn emit_select(&self, select: &Select, payload: impl Into<Payload>) -> EmitReport {
        let payload = payload.into();
        self.emit_route(&Route::of(select), &payload, true, || select.clone())
    }

    /// Sends `message` to every member of `room`, on every node.
    pub fn emit(&self, room: &str, message: Message<'_>) -> EmitReport {
        self.emit_shared(room, &SharedMessage::new(message))
    }

    /// Sends a prepared [`SharedMessage`] to every member of `room`, on
    /// every node.
    pub fn emit_shared(&self, room: &str, message: &SharedMessage) -> EmitReport {
        let payload = Payload::Single(message.clone());
        self.emit_route(&Route::rooms(&[room]), &payload, true, || {
            Select::room(room)
        })
    }

    /// Sends `message` to every member of `room` but `except` (typically
    /// the sender), on every node.
    pub fn emit_except(&self, room: &str, message: Message<'_>, except: MemberId) -> EmitReport {
        let payload = Payload::Single(SharedMessage::new(message));
        let rooms = [room];
        let route = Route {
            except_members: &[except],
            ..Route::rooms(&rooms)
        };
        self.emit_route(&route, &payload, true, || Select {
            except_members: vec![except],
            ..Select::room(room)
        })
    }

    /// Sends `message` to the members of `room` on this node only, never
    /// to other nodes (for what each node computes itself, such as a
    /// member list it shows).
    pub fn emit_local(&self, room: &str, message: Message<'_>) -> EmitReport {
        let payload = Payload::Single(SharedMessage::new(message));
        self.emit_route(&Route::rooms(&[room]), &payload, false, || {
            Select::room(room)
        })
    }

    /// Sends `message` once to every member of any of `rooms`, on every
    /// node: a member in several of them gets one copy. No room, no
    /// member.
    pub fn emit_many(&self, rooms: &[&str], message: Message<'_>) -> EmitReport {
        if rooms.is_empty() {
            // An empty selection would be everyone (see `Select`).
            return EmitReport::default();
        }
        let payload = Payload::Single(SharedMessage::new(message));
        self.emit_route(&Route::rooms(rooms), &payload, true, || Select {
            rooms: rooms.iter().map(|r| Arc::from(*r)).collect(),
            ..Select::default()
        })
    }

    /// Sends `message` to every registered member, in a room or not, on
    /// every node.
    pub fn broadcast(&self, message: Message<'_>) -> EmitReport {
        let payload = Payload::Single(SharedMessage::new(message));
        self.emit_route(&Route::<&str>::everyone(), &payload, true, Select::default)
    }

    /// Sends `message` to one member, on whichever node holds it.
    pub fn send_to(&self, member: MemberId, message: Message<'_>) -> EmitReport {
        let payload = Payload::Single(SharedMessage::new(message));
        let route = Route::<&str> {
            members: &[member],
            ..Route::everyone()
        };
        self.emit_route(&route, &payload, true, || Select {
            members: vec![member],
            ..Select::default()
        })
    }

    /// Delivers to the local members `route` chooses, then publishes
    /// (if `publish` and another node can hold one of them) the selection
    /// `select` builds.
    fn emit_route<R: AsRef<str>>(
        &self,
        route: &Route<'_, R>,
        payload: &Payload,
        publish: bool,
        select: impl FnOnce() -> Select,
    ) -> EmitReport {
        let mut report = EmitReport::default();
        self.deliver_route(route, payload, &mut report);
        add(&self.inner.counters.emits, 1);
        self.count_delivery(&report, payload);
        self.prune(&report);
        // Listed members of this node only: no other node has any.
        let node = self.inner.node;
        let elsewhere = !route.rooms.is_empty()
            || route.members.is_empty()
            || route.members.iter().any(|m| m.node() != node);
        if publish && elsewhere {
            report.published = self.publish(payload, select);
        }
        report
    }

    /// Queues `payload` to the local members `route` chooses, one copy
    /// each.
    pub(super) fn deliver_route<R: AsRef<str>>(
        &self,
        route: &Route<'_, R>,
        payload: &Payload,
        report: &mut EmitReport,
    ) {
        let skip = self.skip(route.except_members, route.except_rooms);
        if route.rooms.is_empty() && route.members.is_empty() {
            self.deliver_everyone(&skip, payload, report);
            return;
        }
        let len = payload.len() as u64;
        // One room or one member needs no bookkeeping of who has it.
        let mut seen = (route.rooms.len() + route.members.len() > 1).then(HashSet::new);
        for room in route.rooms {
            let room = room.as_ref();
            let shard = read(self.room_shard(room));
            let Some(r) = shard.get(room) else {
                continue;
            };
            let (delivered, full) = (report.delivered, report.full.len());
            for (id, sink) in &r.members {
                if skip.contains(*id) || seen.as_mut().is_some_and(|s| !s.insert(*id)) {
                    continue;
                }
                deliver(*id, &**sink, payload, report);
            }
            let delivered = (report.delivered - delivered) as u64;
            add(&r.counters.emits, 1);
            add(&r.counters.deliveries, delivered);
            add(&r.counters.bytes_out, delivered * len);
            add(&r.counters.full, (report.full.len() - full) as u64);
        }
        let node = self.inner.node;
        for &id in route.members {
            // Another node's members are its own to deliver to.
            if id.node() != node
                || skip.contains(id)
                || seen.as_mut().is_some_and(|s| !s.insert(id))
            {
                continue;
            }
            let sink = read(self.member_shard(id))
                .get(&id)
                .map(|entry| entry.sink.clone());
            match sink {
                Some(sink) => deliver(id, &*sink, payload, report),
                None => report.closed.push(id),
            }
        }
    }

    fn deliver_everyone(&self, skip: &Skip<'_>, payload: &Payload, report: &mut EmitReport) {
        for shard in self.inner.members.iter() {
            for (id, entry) in read(shard).iter() {
                if !skip.contains(*id) {
                    deliver(*id, &*entry.sink, payload, report);
                }
            }
        }
    }

    /// Who an emit leaves out: `except_members`, and the local members of
    /// `except_rooms` (collected once per emit).
    fn skip<'a, R: AsRef<str>>(
        &self,
        except_members: &'a [MemberId],
        except_rooms: &[R],
    ) -> Skip<'a> {
        let mut skip = Skip {
            listed: except_members,
            members: HashSet::new(),
        };
        if except_members.len() > Skip::LISTED {
            skip.members.extend(except_members.iter().copied());
            skip.listed = &[];
        }
        for room in except_rooms {
            let room = room.as_ref();
            if let Some(r) = read(self.room_shard(room)).get(room) {
                skip.members.extend(r.members.keys().copied());
            }
        }
        skip
    }

    pub(super) fn count_delivery(&self, report: &EmitReport, payload: &Payload) {
        let counters = &self.inner.counters;
        add(&counters.deliveries, report.delivered as u64);
        add(
            &counters.bytes_out,
            report.delivered as u64 * payload.len() as u64,
        );
        add(&counters.full, report.full.len() as u64);
        add(&counters.closed, report.closed.len() as u64);
    }

    /// Hands an emit to the backplane, if there is one.
    fn publish(&self, payload: &Payload, target: impl FnOnce() -> Select) -> Publish {
        let Some(backplane) = &self.inner.backplane else {
            return Publish::NoBackplane;
        };
        let envelope = Envelope {
            origin: self.inner.node,
            seq: self.inner.seq.fetch_add(1, Ordering::Relaxed) + 1,
            target: target(),
            payload: payload.clone(),
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

    /// Removes members found closed during an emit (outside the locks) —
    /// if still closed: the id may have been restored to a new member
    /// meanwhile ([`Rooms::add_sink_as`]).
    pub(super) fn prune(&self, report: &EmitReport) {
        for id in &report.closed {
            if id.node() == self.inner.node {
                self.remove_where(*id, |entry| entry.sink.is_closed());
            }
        }
    }
}

/// A [`Select`] borrowed, so the shorthands need not build one unless
/// they publish.
pub(super) struct Route<'a, R> {
    pub(super) rooms: &'a [R],
    pub(super) members: &'a [MemberId],
    pub(super) except_rooms: &'a [Arc<str>],
    pub(super) except_members: &'a [MemberId],
}

impl<'a, R> Route<'a, R> {
    fn rooms(rooms: &'a [R]) -> Self {
        Route {
            rooms,
            ..Route::everyone()
        }
    }

    fn everyone() -> Self {
        Route {
            rooms: &[],
            members: &[],
            except_rooms: &[],
            except_members: &[],
        }
    }
}

impl<'a> Route<'a, Arc<str>> {
    pub(super) fn of(select: &'a Select) -> Self {
        Route {
            rooms: &select.rooms,
            members: &select.members,
            except_rooms: &select.except_rooms,
            except_members: &select.except_members,
        }
    }
}

/// The members an emit leaves out on this node.
struct Skip<'a> {
    /// A few listed members, searched in place.
    listed: &'a [MemberId],
    members: HashSet<MemberId>,
}

impl Skip<'_> {
    /// How many listed members are searched without a set.
    const LISTED: usize = 8;

    fn contains(&self, id: MemberId) -> bool {
        self.listed.contains(&id) || self.members.contains(&id)
    }
}

fn deliver(id: MemberId, sink: &dyn Sink, payload: &Payload, report: &mut EmitReport) {
    match sink.deliver(payload) {
        Ok(()) => report.delivered += 1,
        // A shared payload is never invalid itself: `Invalid` comes from a
        // full queue whose overflow policy names a close code that cannot
        // be sent, and the member stays, like under `Overflow::Reject`.
        Err(QueueError::Full | QueueError::Invalid(_)) => report.full.push(id),
        Err(QueueError::Closed | QueueError::ClosedSlowConsumer) => report.closed.push(id),
    }
}
