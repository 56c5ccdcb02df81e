//! [`RoomHold`]: keeps a room's broker subscription without a local
//! member.

use std::collections::hash_map::Entry;
use std::fmt;
use std::sync::Arc;

use super::{write, Room, Rooms};

/// Keeps this node subscribed to a room's traffic while it lives, even
/// with no local member, so emits from other nodes keep reaching
/// [`Rooms::on_remote_payload`] (a session waiting for its client to come
/// back must not miss them). Dropping the last hold of a room without
/// members lets the subscription go, as the last leave does.
pub struct RoomHold {
    rooms: Rooms,
    room: Arc<str>,
}

impl fmt::Debug for RoomHold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoomHold")
            .field("room", &self.room)
            .finish()
    }
}

impl RoomHold {
    /// The room held.
    pub fn room(&self) -> &str {
        &self.room
    }
}

impl Rooms {
    /// Keeps `room`'s broker subscription (and remote emits to it flowing
    /// to the [`Rooms::on_remote_payload`] hook) while the guard lives,
    /// even with no local member. Without a backplane it changes nothing.
    pub fn hold(&self, room: &str) -> RoomHold {
        let name: Arc<str> = Arc::from(room);
        // Members and holds of a room are counted under one lock, so the
        // 0 -> 1 edge of the two together is seen exactly once.
        let created = {
            let mut shard = write(self.room_shard(room));
            match shard.entry(name.clone()) {
                Entry::Occupied(slot) => {
                    slot.into_mut().holds += 1;
                    false
                }
                Entry::Vacant(slot) => {
                    slot.insert(Room {
                        holds: 1,
                        ..Room::default()
                    });
                    true
                }
            }
        };
        if created {
            if let Some(backplane) = &self.inner.backplane {
                backplane.subscribe(room);
            }
        }
        RoomHold {
            rooms: self.clone(),
            room: name,
        }
    }
}

impl Drop for RoomHold {
    fn drop(&mut self) {
        let rooms = &self.rooms;
        let emptied = {
            let mut shard = write(rooms.room_shard(&self.room));
            match shard.get_mut(&*self.room) {
                Some(room) => {
                    room.holds = room.holds.saturating_sub(1);
                    let emptied = !room.wanted();
                    if emptied {
                        shard.remove(&*self.room);
                    }
                    emptied
                }
                None => false,
            }
        };
        if emptied {
            rooms.rooms_emptied(std::slice::from_ref(&self.room));
        }
    }
}
