//! A namespace's rooms, kept locally (one process, no backplane).
//!
//! Why not `chito::rooms`: its members are WebSocket `Handle`s, and a
//! Socket.IO socket may be on HTTP long-polling; the core's `Sink` and
//! batch payloads (docs/socketio.md §5, items 1–2) are needed first. This
//! table has the same operations (join, leave, members of rooms minus
//! except-rooms) so the switch changes only its callers' plumbing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Room name → socket ids, and socket id → room names, kept in step.
#[derive(Debug, Default)]
pub(crate) struct RoomTable {
    members: HashMap<String, HashSet<Arc<str>>>,
    rooms_of: HashMap<Arc<str>, HashSet<String>>,
}

impl RoomTable {
    /// Adds `socket` to `room`; false if it was in it.
    pub(crate) fn join(&mut self, socket: &Arc<str>, room: &str) -> bool {
        let added = self
            .members
            .entry(room.to_owned())
            .or_default()
            .insert(Arc::clone(socket));
        self.rooms_of
            .entry(Arc::clone(socket))
            .or_default()
            .insert(room.to_owned());
        added
    }

    /// Removes `socket` from `room`; false if it was not in it. An empty
    /// room is forgotten.
    pub(crate) fn leave(&mut self, socket: &str, room: &str) -> bool {
        let removed = match self.members.get_mut(room) {
            Some(members) => {
                let removed = members.remove(socket);
                if members.is_empty() {
                    self.members.remove(room);
                }
                removed
            }
            None => false,
        };
        if let Some(rooms) = self.rooms_of.get_mut(socket) {
            rooms.remove(room);
            if rooms.is_empty() {
                self.rooms_of.remove(socket);
            }
        }
        removed
    }

    /// Removes `socket` from every room (it disconnected).
    pub(crate) fn leave_all(&mut self, socket: &str) {
        let Some(rooms) = self.rooms_of.remove(socket) else {
            return;
        };
        for room in rooms {
            if let Some(members) = self.members.get_mut(&room) {
                members.remove(socket);
                if members.is_empty() {
                    self.members.remove(&room);
                }
            }
        }
    }

    /// The rooms `socket` is in.
    pub(crate) fn rooms_of(&self, socket: &str) -> Vec<String> {
        self.rooms_of
            .get(socket)
            .map(|rooms| rooms.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The sockets in any of `rooms` and in none of `except` (each once).
    pub(crate) fn select(&self, rooms: &[String], except: &[String]) -> HashSet<Arc<str>> {
        let excluded: HashSet<&Arc<str>> = except
            .iter()
            .filter_map(|room| self.members.get(room))
            .flatten()
            .collect();
        rooms
            .iter()
            .filter_map(|room| self.members.get(room))
            .flatten()
            .filter(|socket| !excluded.contains(socket))
            .cloned()
            .collect()
    }

    /// The sockets in any of `except` (for an emit to a whole namespace).
    pub(crate) fn members_of_any(&self, rooms: &[String]) -> HashSet<Arc<str>> {
        rooms
            .iter()
            .filter_map(|room| self.members.get(room))
            .flatten()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_leave_select() {
        let (a, b, c): (Arc<str>, Arc<str>, Arc<str>) = ("a".into(), "b".into(), "c".into());
        let mut table = RoomTable::default();
        assert!(table.join(&a, "general"));
        assert!(!table.join(&a, "general"));
        table.join(&b, "general");
        table.join(&c, "general");
        table.join(&b, "muted");
        let chosen = table.select(&["general".into()], &["muted".into()]);
        assert_eq!(chosen.len(), 2);
        assert!(!chosen.contains("b"));
        assert!(table.leave("a", "general"));
        assert!(!table.leave("a", "general"));
        table.leave_all("b");
        assert!(table.rooms_of("b").is_empty());
        assert_eq!(table.select(&["general".into()], &[]).len(), 1);
        assert!(table.members_of_any(&["muted".into()]).is_empty());
    }
}
