//! Presence snapshots in parts: this node's rooms cut into messages of at
//! most a budget of bytes (a room too large for one message is split
//! across several, each numbered `part` of `parts`), and other nodes' parts
//! put back together per (origin, room, round) before the room is applied
//! whole — with the memory this holds bounded.
//!
//! Nothing here does I/O or reads the clock: the caller passes `now`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chito::rooms::{NodeId, RoomSnapshot};

use crate::wire::{self, Member, RoomPart};

/// Cuts `rooms` into the messages of one snapshot, each about `budget`
/// bytes encoded at most: whole rooms share a message while they fit; a
/// room larger than one message is split into parts (each part fills one
/// message; the last one may share its message with the rooms after it).
/// Always at least one message: an empty snapshot is the heartbeat.
///
/// A message exceeds `budget` only if one member alone does (then that
/// member is a part of its own).
pub(crate) fn cut(rooms: &[RoomSnapshot], budget: usize) -> Vec<Vec<RoomPart<&[Member]>>> {
    let mut messages = Vec::new();
    let mut current: Vec<RoomPart<&[Member]>> = Vec::new();
    let mut size = wire::SNAPSHOT_HEADER;
    for room in rooms {
        let head = wire::room_part_header(&room.room);
        let whole = head + room.members.iter().map(wire::member_size).sum::<usize>();
        let whole_part = RoomPart {
            room: room.room.clone(),
            part: 0,
            parts: 1,
            members: &room.members[..],
        };
        if size + whole <= budget {
            size += whole;
            current.push(whole_part);
            continue;
        }
        if !current.is_empty() {
            messages.push(std::mem::take(&mut current));
        }
        size = wire::SNAPSHOT_HEADER;
        let room_budget = budget.saturating_sub(wire::SNAPSHOT_HEADER + head);
        let ranges = split(&room.members, room_budget);
        let Ok(parts) = u32::try_from(ranges.len()) else {
            continue; // beyond u32 parts: cannot be numbered (never in practice)
        };
        let mut pieces = Vec::with_capacity(ranges.len());
        for (part, range) in (0..parts).zip(ranges) {
            let members = room.members.get(range).unwrap_or_default();
            let bytes = head + members.iter().map(wire::member_size).sum::<usize>();
            pieces.push((
                RoomPart {
                    room: room.room.clone(),
                    part,
                    parts,
                    members,
                },
                bytes,
            ));
        }
        // Every piece but the last is a message of its own; the last one
        // starts the next message.
        if let Some((last, bytes)) = pieces.pop() {
            messages.extend(pieces.into_iter().map(|(p, _)| vec![p]));
            size += bytes;
            current.push(last);
        }
    }
    messages.push(current);
    messages
}

/// Consecutive ranges of `members`, each at most `budget` bytes encoded
/// (at least one member each, so a member larger than `budget` is a range
/// of its own). At least one range, empty for an empty list.
fn split(members: &[Member], budget: usize) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    let mut size = 0;
    for (i, member) in members.iter().enumerate() {
        let s = wire::member_size(member);
        if i > start && size + s > budget {
            ranges.push(start..i);
            start = i;
            size = 0;
        }
        size += s;
    }
    ranges.push(start..members.len());
    ranges
}

/// Bounds on what [`Reassembly`] holds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Rooms being reassembled per origin; a new one beyond this drops
    /// that origin's oldest.
    pub(crate) per_origin: usize,
    /// Rooms being reassembled in all; a new one beyond this drops the
    /// oldest.
    pub(crate) total: usize,
    /// Memory held (members, data, bookkeeping), estimated; past it the
    /// oldest rooms are dropped.
    pub(crate) bytes: usize,
    /// A room whose parts have not all come this long after its first is
    /// dropped.
    pub(crate) max_age: Duration,
}

impl Limits {
    /// The bounds a backplane uses: a few large rooms in flight per node
    /// (one is usual: a node's parts arrive in order), 64 MiB in all, and
    /// `max_age` the presence expiry (a round older than that would be
    /// stale anyway).
    pub(crate) fn with_max_age(max_age: Duration) -> Limits {
        Limits {
            per_origin: 4,
            total: 1024,
            bytes: 64 << 20,
            max_age,
        }
    }
}

/// One room of one origin's round, waiting for its other parts.
struct Pending {
    round: u64,
    parts: u32,
    received: BTreeMap<u32, Vec<Member>>,
    bytes: usize,
    started: Instant,
}

/// Parts of other nodes' large rooms, until each room is complete.
pub(crate) struct Reassembly {
    limits: Limits,
    pending: HashMap<(NodeId, Arc<str>), Pending>,
    bytes: usize,
}

/// What [`Reassembly::add`] made of a part.
#[derive(Debug, Default)]
pub(crate) struct Added {
    /// The room, whole, if this part completed it.
    pub(crate) complete: Option<RoomSnapshot>,
    /// Incomplete rooms given up meanwhile (superseded by a newer round,
    /// inconsistent, too old, or dropped to stay within the limits).
    pub(crate) dropped: u64,
}

/// The estimated memory one member takes while held.
fn held_size((_, data): &Member) -> usize {
    std::mem::size_of::<Member>() + data.as_ref().map_or(0, |d| 16 + d.len())
}

impl Reassembly {
    pub(crate) fn new(limits: Limits) -> Reassembly {
        Reassembly {
            limits,
            pending: HashMap::new(),
            bytes: 0,
        }
    }

    /// Rooms being reassembled now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    /// Estimated bytes held now.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes one part of `origin`'s snapshot `round`. A whole room (one
    /// part) comes back at once.
    pub(crate) fn add(
        &mut self,
        origin: NodeId,
        round: u64,
        part: RoomPart<Vec<Member>>,
        now: Instant,
    ) -> Added {
        let mut added = Added {
            complete: None,
            dropped: self.expire(now),
        };
        let key = (origin, part.room.clone());
        // An older round of this room still waiting is superseded; a
        // part of an older round than the one waiting is late: ignored
        // (its round was counted when it was superseded).
        match self.pending.get(&key) {
            Some(p) if p.round > round => return added,
            Some(p) if p.round < round || p.parts != part.parts => {
                // Superseded, or the same round with another part count
                // (not what a node sends): give it up.
                added.dropped += u64::from(self.remove(&key).is_some());
            }
            _ => {}
        }
        if part.parts <= 1 {
            added.complete = Some(RoomSnapshot {
                room: part.room,
                members: part.members,
            });
            return added;
        }
        let cost = part.members.iter().map(held_size).sum::<usize>() + 64 + part.room.len();
        if !self.pending.contains_key(&key) {
            added.dropped += self.make_room_for(origin);
            self.pending.insert(
                key.clone(),
                Pending {
                    round,
                    parts: part.parts,
                    received: BTreeMap::new(),
                    bytes: 0,
                    started: now,
                },
            );
        }
        let Some(pending) = self.pending.get_mut(&key) else {
            return added;
        };
        if pending.received.contains_key(&part.part) {
            return added; // a repeated part: the first one stands
        }
        pending.received.insert(part.part, part.members);
        pending.bytes += cost;
        self.bytes += cost;
        let done = pending.received.len() == usize::try_from(pending.parts).unwrap_or(usize::MAX);
        // Within the memory bound: the oldest others go first, then this
        // one if it alone is too large.
        while self.bytes > self.limits.bytes {
            let victim = self.oldest(|k| *k != key).unwrap_or_else(|| key.clone());
            added.dropped += u64::from(self.remove(&victim).is_some());
            if victim == key {
                return added;
            }
        }
        if done {
            if let Some(pending) = self.remove(&key) {
                let members = pending.received.into_values().flatten().collect();
                added.complete = Some(RoomSnapshot {
                    room: key.1,
                    members,
                });
            }
        }
        added
    }

    /// Gives up rooms whose first part came more than `max_age` ago;
    /// returns how many.
    pub(crate) fn expire(&mut self, now: Instant) -> u64 {
        let max_age = self.limits.max_age;
        let old: Vec<_> = self
            .pending
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.started) > max_age)
            .map(|(k, _)| k.clone())
            .collect();
        old.iter().filter_map(|k| self.remove(k)).count() as u64
    }

    /// `origin` is gone (goodbye): its incomplete rooms go too; returns
    /// how many.
    pub(crate) fn forget(&mut self, origin: NodeId) -> u64 {
        let gone: Vec<_> = self
            .pending
            .keys()
            .filter(|(o, _)| *o == origin)
            .cloned()
            .collect();
        gone.iter().filter_map(|k| self.remove(k)).count() as u64
    }

    /// Before a new room of `origin` is held: drops that origin's oldest
    /// if it has `per_origin` already, and the oldest of all if `total`
    /// are held. Returns how many were dropped.
    fn make_room_for(&mut self, origin: NodeId) -> u64 {
        let mut dropped = 0;
        let of_origin = self.pending.keys().filter(|(o, _)| *o == origin).count();
        if of_origin >= self.limits.per_origin {
            if let Some(k) = self.oldest(|(o, _)| *o == origin) {
                dropped += u64::from(self.remove(&k).is_some());
            }
        }
        if self.pending.len() >= self.limits.total {
            if let Some(k) = self.oldest(|_| true) {
                dropped += u64::from(self.remove(&k).is_some());
            }
        }
        dropped
    }

    fn oldest(&self, which: impl Fn(&(NodeId, Arc<str>)) -> bool) -> Option<(NodeId, Arc<str>)> {
        self.pending
            .iter()
            .filter(|(k, _)| which(k))
            .min_by_key(|(_, p)| p.started)
            .map(|(k, _)| k.clone())
    }

    fn remove(&mut self, key: &(NodeId, Arc<str>)) -> Option<Pending> {
        let pending = self.pending.remove(key)?;
        self.bytes = self.bytes.saturating_sub(pending.bytes);
        Some(pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(name: &str, members: u64, data: Option<&str>) -> RoomSnapshot {
        RoomSnapshot {
            room: name.into(),
            members: (0..members).map(|n| (n, data.map(Arc::from))).collect(),
        }
    }

    fn owned(part: &RoomPart<&[Member]>) -> RoomPart<Vec<Member>> {
        RoomPart {
            room: part.room.clone(),
            part: part.part,
            parts: part.parts,
            members: part.members.to_vec(),
        }
    }

    #[test]
    fn cut_keeps_small_rooms_whole_and_splits_large_ones() {
        let rooms = [
            room("a", 3, Some("Ann")),
            room("big", 5000, Some("a display name")),
            room("b", 1, None),
            room("c", 2, None),
        ];
        let budget = 4096;
        let messages = cut(&rooms, budget);
        let o = NodeId::from_u64(1);
        for m in &messages {
            let bytes = wire::encode_snapshot(o, 1, m).unwrap();
            assert!(bytes.len() <= budget, "{} > {budget}", bytes.len());
        }
        let parts: Vec<_> = messages.iter().flatten().collect();
        for whole in ["a", "b", "c"] {
            let p: Vec<_> = parts.iter().filter(|p| &*p.room == whole).collect();
            assert_eq!(p.len(), 1);
            assert_eq!((p[0].part, p[0].parts), (0, 1));
        }
        let big: Vec<_> = parts.iter().filter(|p| &*p.room == "big").collect();
        assert!(big.len() > 10, "{}", big.len());
        for (i, p) in big.iter().enumerate() {
            assert_eq!((p.part as usize, p.parts as usize), (i, big.len()));
        }
        let joined: Vec<Member> = big.iter().flat_map(|p| p.members.iter().cloned()).collect();
        assert_eq!(joined, rooms[1].members);
        // Small rooms share messages; the big room's last part shares
        // with the rooms after it.
        assert!(messages.len() <= big.len() + 1);
        // Nothing: one empty message (the heartbeat).
        assert_eq!(cut(&[], budget).len(), 1);
        assert!(cut(&[], budget)[0].is_empty());
        // A budget smaller than one member: one member per part.
        assert_eq!(cut(&[room("r", 3, Some("x"))], 1).len(), 3);
    }

    #[test]
    fn reassembly_applies_a_room_once_all_parts_are_in() {
        let o = NodeId::from_u64(7);
        let t = Instant::now();
        let rooms = [room("big", 1000, Some("n")), room("s", 2, None)];
        let messages = cut(&rooms, 1024);
        let mut parts: Vec<_> = messages.iter().flatten().map(owned).collect();
        parts.reverse(); // any order
        let mut r = Reassembly::new(Limits::with_max_age(Duration::from_secs(30)));
        let mut complete = Vec::new();
        for p in parts {
            let added = r.add(o, 1, p, t);
            assert_eq!(added.dropped, 0);
            complete.extend(added.complete);
        }
        complete.sort_by(|a, b| a.room.cmp(&b.room));
        assert_eq!(complete, rooms);
        assert_eq!((r.len(), r.bytes()), (0, 0));
    }

    #[test]
    fn reassembly_drops_superseded_late_old_and_oversized_rounds() {
        let o = NodeId::from_u64(7);
        let t = Instant::now();
        let part = |round_part: u32, parts: u32| RoomPart {
            room: Arc::from("r"),
            part: round_part,
            parts,
            members: vec![(u64::from(round_part), None)],
        };
        let mut r = Reassembly::new(Limits::with_max_age(Duration::from_secs(1)));
        // Round 1 loses its last part; round 2 supersedes it.
        assert_eq!(r.add(o, 1, part(0, 2), t).dropped, 0);
        let added = r.add(o, 2, part(0, 2), t);
        assert_eq!(added.dropped, 1);
        // A late part of round 1 is ignored; round 2 completes.
        let late = r.add(o, 1, part(1, 2), t);
        assert!(late.complete.is_none());
        assert_eq!(late.dropped, 0);
        let done = r.add(o, 2, part(1, 2), t).complete.unwrap();
        assert_eq!(done.members, vec![(0, None), (1, None)]);
        // The same round with another part count: given up.
        r.add(o, 3, part(0, 2), t);
        assert_eq!(r.add(o, 3, part(1, 3), t).dropped, 1);
        // Too old: dropped at the next add (or expire).
        assert_eq!(r.len(), 1);
        assert_eq!(r.expire(t + Duration::from_secs(2)), 1);
        assert_eq!(r.len(), 0);
        // Goodbye forgets the origin's rooms.
        r.add(o, 4, part(0, 2), t);
        assert_eq!(r.forget(o), 1);
        assert_eq!((r.len(), r.bytes()), (0, 0));
    }

    #[test]
    fn reassembly_stays_within_its_limits() {
        let t = Instant::now();
        let limits = Limits {
            per_origin: 2,
            total: 3,
            bytes: 10_000,
            max_age: Duration::from_secs(30),
        };
        let mut r = Reassembly::new(limits);
        let part = |room: &str, members: u64| RoomPart {
            room: Arc::from(room),
            part: 0,
            parts: u32::MAX, // forged: never completes
            members: (0..members).map(|n| (n, None)).collect(),
        };
        let o = NodeId::from_u64(1);
        let mut dropped = 0;
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            dropped += r
                .add(o, 1, part(name, 1), t + Duration::from_millis(i as u64))
                .dropped;
        }
        assert_eq!((r.len(), dropped), (2, 1), "two per origin");
        for n in 2..6 {
            dropped += r
                .add(
                    NodeId::from_u64(n),
                    1,
                    part("x", 1),
                    t + Duration::from_millis(10 + n),
                )
                .dropped;
        }
        assert_eq!(r.len(), 3, "three in all");
        assert_eq!(dropped, 4);
        // Past the byte bound, the oldest go, then the part itself.
        let big = r.add(
            NodeId::from_u64(9),
            1,
            part("y", 300),
            t + Duration::from_secs(1),
        );
        assert!(big.dropped >= 1);
        assert!(r.bytes() <= 10_000);
        let huge = r.add(
            NodeId::from_u64(9),
            2,
            part("z", 10_000),
            t + Duration::from_secs(2),
        );
        assert!(huge.complete.is_none());
        assert!(huge.dropped >= 1);
        assert!(r.bytes() <= 10_000);
        assert!(r.pending.keys().all(|(_, room)| &**room != "z"));
    }
}
