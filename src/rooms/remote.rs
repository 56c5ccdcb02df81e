//! What a node knows of the other nodes' members: built from their
//! presence deltas and periodic snapshots, each entry dated, so that a
//! node that stops refreshing (crashed, or cut off) disappears after the
//! expiry. Eventually consistent: pub/sub loses messages, snapshots repair.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::backplane::{PresenceUpdate, RoomSnapshot};
use super::id::{MemberId, NodeId};

/// A change to announce to the presence hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    Joined(Arc<str>, MemberId),
    Left(Arc<str>, MemberId),
}

#[derive(Debug)]
struct RemoteRoom {
    refreshed: Instant,
    members: HashMap<u64, Option<Arc<str>>>,
}

#[derive(Debug)]
struct RemoteNode {
    last_seen: Instant,
    rooms: HashMap<Arc<str>, RemoteRoom>,
}

impl RemoteNode {
    fn new(now: Instant) -> RemoteNode {
        RemoteNode {
            last_seen: now,
            rooms: HashMap::new(),
        }
    }
}

/// The remote members of every room, by node.
#[derive(Debug, Default)]
pub(crate) struct RemoteView {
    nodes: HashMap<NodeId, RemoteNode>,
}

impl RemoteView {
    /// Applies a delta from another node.
    pub(crate) fn apply(&mut self, update: PresenceUpdate, now: Instant) -> Option<Change> {
        match update {
            PresenceUpdate::Joined { room, member, data } => {
                let node = self
                    .nodes
                    .entry(member.node())
                    .or_insert_with(|| RemoteNode::new(now));
                node.last_seen = now;
                let entry = node
                    .rooms
                    .entry(room.clone())
                    .or_insert_with(|| RemoteRoom {
                        refreshed: now,
                        members: HashMap::new(),
                    });
                entry.refreshed = now;
                match entry.members.insert(member.number(), data.clone()) {
                    // Presence data changed: announced like a join, so
                    // displays refresh the member's name.
                    Some(old) if old == data => None,
                    _ => Some(Change::Joined(room, member)),
                }
            }
            PresenceUpdate::Left { room, member } => {
                let node = self.nodes.get_mut(&member.node())?;
                node.last_seen = now;
                let entry = node.rooms.get_mut(&room)?;
                entry.members.remove(&member.number())?;
                if entry.members.is_empty() {
                    node.rooms.remove(&room);
                }
                Some(Change::Left(room, member))
            }
        }
    }

    /// Replaces `origin`'s members of each listed room.
    pub(crate) fn snapshot(
        &mut self,
        origin: NodeId,
        rooms: Vec<RoomSnapshot>,
        now: Instant,
        changes: &mut Vec<Change>,
    ) {
        let node = self
            .nodes
            .entry(origin)
            .or_insert_with(|| RemoteNode::new(now));
        node.last_seen = now;
        for snapshot in rooms {
            let members: HashMap<u64, Option<Arc<str>>> = snapshot.members.into_iter().collect();
            let old = node.rooms.remove(&snapshot.room);
            let old_members = old.map(|r| r.members).unwrap_or_default();
            for (number, data) in &members {
                if old_members.get(number) != Some(data) {
                    changes.push(Change::Joined(
                        snapshot.room.clone(),
                        MemberId::new(origin, *number),
                    ));
                }
            }
            for number in old_members.keys() {
                if !members.contains_key(number) {
                    changes.push(Change::Left(
                        snapshot.room.clone(),
                        MemberId::new(origin, *number),
                    ));
                }
            }
            if !members.is_empty() {
                node.rooms.insert(
                    snapshot.room,
                    RemoteRoom {
                        refreshed: now,
                        members,
                    },
                );
            }
        }
    }

    /// Drops rooms and nodes not refreshed for `max_age`.
    pub(crate) fn expire(&mut self, max_age: Duration, now: Instant, changes: &mut Vec<Change>) {
        let stale = |at: Instant| now.saturating_duration_since(at) > max_age;
        let mut gone = Vec::new();
        for (id, node) in &mut self.nodes {
            if stale(node.last_seen) {
                gone.push(*id);
                continue;
            }
            node.rooms.retain(|room, entry| {
                if stale(entry.refreshed) {
                    for number in entry.members.keys() {
                        changes.push(Change::Left(room.clone(), MemberId::new(*id, *number)));
                    }
                    false
                } else {
                    true
                }
            });
        }
        for id in gone {
            self.remove_node(id, changes);
        }
    }

    /// Forgets `id` and all its members.
    pub(crate) fn remove_node(&mut self, id: NodeId, changes: &mut Vec<Change>) {
        if let Some(node) = self.nodes.remove(&id) {
            for (room, entry) in node.rooms {
                for number in entry.members.keys() {
                    changes.push(Change::Left(room.clone(), MemberId::new(id, *number)));
                }
            }
        }
    }

    /// How many remote members `room` has.
    pub(crate) fn count(&self, room: &str) -> usize {
        self.nodes
            .values()
            .filter_map(|n| n.rooms.get(room))
            .map(|r| r.members.len())
            .sum()
    }

    /// The remote members of `room` with their data.
    pub(crate) fn members(&self, room: &str) -> Vec<(MemberId, Option<Arc<str>>)> {
        let mut out = Vec::new();
        for (id, node) in &self.nodes {
            if let Some(entry) = node.rooms.get(room) {
                out.extend(
                    entry
                        .members
                        .iter()
                        .map(|(n, data)| (MemberId::new(*id, *n), data.clone())),
                );
            }
        }
        out
    }

    /// The presence data a remote member published in any of its rooms.
    pub(crate) fn data(&self, member: MemberId) -> Option<Arc<str>> {
        let node = self.nodes.get(&member.node())?;
        node.rooms
            .values()
            .find_map(|r| r.members.get(&member.number()))
            .cloned()
            .flatten()
    }

    /// The rooms a remote member is in.
    pub(crate) fn rooms_of(&self, member: MemberId) -> Vec<String> {
        self.nodes
            .get(&member.node())
            .map(|node| {
                node.rooms
                    .iter()
                    .filter(|(_, r)| r.members.contains_key(&member.number()))
                    .map(|(room, _)| room.to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The rooms with remote members.
    pub(crate) fn room_names(&self) -> impl Iterator<Item = &Arc<str>> {
        self.nodes.values().flat_map(|n| n.rooms.keys())
    }

    /// The nodes known alive.
    pub(crate) fn nodes(&self) -> Vec<NodeId> {
        let mut nodes: Vec<NodeId> = self.nodes.keys().copied().collect();
        nodes.sort();
        nodes
    }

    /// How many remote members there are (counted once per room).
    pub(crate) fn member_count(&self) -> usize {
        self.nodes
            .values()
            .flat_map(|n| n.rooms.values())
            .map(|r| r.members.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(name: &str) -> Arc<str> {
        Arc::from(name)
    }

    #[test]
    fn deltas_snapshots_and_expiry() {
        let mut view = RemoteView::default();
        let b = NodeId::from_u64(2);
        let t0 = Instant::now();
        let m1 = MemberId::new(b, 1);
        let joined = PresenceUpdate::Joined {
            room: room("r"),
            member: m1,
            data: Some(room("ada")),
        };
        assert_eq!(
            view.apply(joined.clone(), t0),
            Some(Change::Joined(room("r"), m1))
        );
        assert_eq!(view.apply(joined, t0), None, "repeat is not news");
        assert_eq!(view.count("r"), 1);
        assert_eq!(view.data(m1).as_deref(), Some("ada"));
        // A snapshot replaces: m1 gone, m2 new.
        let mut changes = Vec::new();
        view.snapshot(
            b,
            vec![RoomSnapshot {
                room: room("r"),
                members: vec![(2, None)],
            }],
            t0,
            &mut changes,
        );
        assert_eq!(
            changes,
            vec![
                Change::Joined(room("r"), MemberId::new(b, 2)),
                Change::Left(room("r"), m1)
            ]
        );
        assert_eq!(view.members("r"), vec![(MemberId::new(b, 2), None)]);
        // Not refreshed for longer than max_age: gone.
        let mut changes = Vec::new();
        view.expire(
            Duration::from_secs(1),
            t0 + Duration::from_secs(2),
            &mut changes,
        );
        assert_eq!(changes, vec![Change::Left(room("r"), MemberId::new(b, 2))]);
        assert_eq!(view.count("r"), 0);
        assert!(view.nodes().is_empty());
        // A Left for an unknown member is nothing.
        assert_eq!(
            view.apply(
                PresenceUpdate::Left {
                    room: room("r"),
                    member: m1
                },
                t0
            ),
            None
        );
    }
}
