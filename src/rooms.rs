//! Rooms: named groups of connections, and messages sent to many of them,
//! encoded once.
//!
//! A [`Rooms`] registry holds members — each a tokio [`Handle`] — and the
//! rooms they are in. Sending to a room builds one [`SharedMessage`]; each
//! member's connection queues a reference to it and writes the frame built
//! once for its negotiation (see [`SharedMessage`]), so a message for N
//! members is framed (and compressed, where the members allow) once, not N
//! times, and its payload is never copied per member.
//!
//! Sending never waits: each member has its own bounded queue
//! ([`crate::tokio::Builder::max_queued_bytes`]); a member whose queue is
//! full is reported in the [`EmitReport`] and skipped, or closed as a slow
//! consumer, per [`crate::tokio::Builder::queue_overflow`]. One slow member
//! never delays the others.
//!
//! Rooms and members live in shards (by name and by id) behind read-write
//! locks, so joins in one room do not block sends to another.
//!
//! ```no_run
//! use chito::rooms::Rooms;
//! use chito::Message;
//!
//! # async fn serve(stream: tokio::net::TcpStream, rooms: Rooms) -> Result<(), chito::Error> {
//! let ws = chito::tokio::Builder::new(stream).accept().await?;
//! let me = rooms.add(ws.handle()); // leaves every room when dropped
//! rooms.join(me.id(), "lobby");
//! rooms.emit("lobby", Message::Text("someone joined"));
//! # Ok(()) }
//! ```

use std::any::{Any, TypeId};
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::connection::{Message, SharedMessage};
use crate::handle::{Handle, QueueError};

/// Identifies a member of a [`Rooms`] registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(u64);

impl MemberId {
    /// The numeric id (unique within its registry).
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

/// A change in a room's membership, for presence displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence<'a> {
    /// `member` joined `room`.
    Joined {
        /// The room.
        room: &'a str,
        /// Who joined.
        member: MemberId,
    },
    /// `member` left `room` (or disconnected).
    Left {
        /// The room.
        room: &'a str,
        /// Who left.
        member: MemberId,
    },
}

/// What happened to one emit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmitReport {
    /// Members whose queue took the message.
    pub delivered: usize,
    /// Members skipped because their queue was full.
    pub full: Vec<MemberId>,
    /// Members that were closing or closed (removed from every room), or
    /// closed now as slow consumers.
    pub closed: Vec<MemberId>,
}

type PresenceHook = Arc<dyn Fn(Presence<'_>) + Send + Sync>;
/// One shard of rooms, by name.
type RoomShard = RwLock<HashMap<Arc<str>, Room>>;
/// One shard of members, by id.
type MemberShard = RwLock<HashMap<MemberId, MemberEntry>>;

/// A registry of rooms and their members. Cloning shares the registry.
#[derive(Clone)]
pub struct Rooms {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Rooms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rooms")
            .field("shards", &self.inner.rooms.len())
            .field("rooms", &self.room_names().len())
            .finish()
    }
}

struct Inner {
    rooms: Shards<RoomShard>,
    members: Shards<MemberShard>,
    hasher: RandomState,
    next_id: AtomicU64,
    presence: RwLock<Option<PresenceHook>>,
}

#[derive(Default)]
struct Room {
    members: HashMap<MemberId, Handle>,
}

struct MemberEntry {
    handle: Handle,
    rooms: HashSet<Arc<str>>,
    meta: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
}

/// Keeps a member registered; dropping it (e.g. when the connection's task
/// ends) removes the member from every room.
#[derive(Debug)]
pub struct Membership {
    rooms: Rooms,
    id: MemberId,
}

impl Membership {
    /// The member's id.
    pub fn id(&self) -> MemberId {
        self.id
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.rooms.remove(self.id);
    }
}

/// A non-empty list of shards, picked by key.
struct Shards<T>(Box<[T]>);

impl<T> Shards<T> {
    /// `count` shards (at least one).
    fn new(count: usize, make: impl FnMut() -> T) -> Self {
        Shards(std::iter::repeat_with(make).take(count.max(1)).collect())
    }

    /// The shard `key` falls in.
    fn pick(&self, key: u64) -> &T {
        // `new` makes at least one shard, so the remainder of a division by
        // the length is an index.
        #[allow(clippy::indexing_slicing)]
        &self.0[(key % self.0.len() as u64) as usize]
    }

    fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // Every update under these locks is a single map operation: a panic
    // elsewhere cannot leave them half-done, so poisoning is ignored.
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

impl Default for Rooms {
    fn default() -> Self {
        Rooms::new()
    }
}

impl Rooms {
    /// A registry with 64 shards.
    pub fn new() -> Self {
        Rooms::with_shards(64)
    }

    /// A registry with `shards` shards (at least 1) for rooms and for
    /// members.
    pub fn with_shards(shards: usize) -> Self {
        Rooms {
            inner: Arc::new(Inner {
                rooms: Shards::new(shards, || RwLock::new(HashMap::new())),
                members: Shards::new(shards, || RwLock::new(HashMap::new())),
                hasher: RandomState::new(),
                next_id: AtomicU64::new(1),
                presence: RwLock::new(None),
            }),
        }
    }

    /// Calls `hook` after every join and leave (outside any lock).
    pub fn on_presence<F: Fn(Presence<'_>) + Send + Sync + 'static>(&self, hook: F) {
        *write(&self.inner.presence) = Some(Arc::new(hook));
    }

    fn room_shard(&self, room: &str) -> &RoomShard {
        self.inner.rooms.pick(self.inner.hasher.hash_one(room))
    }

    fn member_shard(&self, id: MemberId) -> &MemberShard {
        self.inner.members.pick(id.0)
    }

    fn announce(&self, event: Presence<'_>) {
        let hook = read(&self.inner.presence).clone();
        if let Some(hook) = hook {
            hook(event);
        }
    }

    /// Registers a connection. Keep the returned [`Membership`] for the
    /// connection's lifetime: dropping it leaves every room.
    pub fn add(&self, handle: Handle) -> Membership {
        let id = MemberId(self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        write(self.member_shard(id)).insert(
            id,
            MemberEntry {
                handle,
                rooms: HashSet::new(),
                meta: HashMap::new(),
            },
        );
        Membership {
            rooms: self.clone(),
            id,
        }
    }

    /// Removes a member from every room and from the registry.
    pub fn remove(&self, id: MemberId) {
        let entry = {
            let mut members = write(self.member_shard(id));
            let entry = members.remove(&id);
            // Under the member's lock: see `join`.
            for room in entry.iter().flat_map(|e| &e.rooms) {
                self.drop_from_room(room, id);
            }
            entry
        };
        if let Some(entry) = entry {
            for room in &entry.rooms {
                self.announce(Presence::Left { room, member: id });
            }
        }
    }

    /// Puts `id` in `room` (created if needed). Returns false if the member
    /// is unknown or already there.
    pub fn join(&self, id: MemberId, room: &str) -> bool {
        let name: Arc<str> = Arc::from(room);
        {
            let mut members = write(self.member_shard(id));
            let Some(entry) = members.get_mut(&id) else {
                return false;
            };
            if !entry.rooms.insert(name.clone()) {
                return false;
            }
            let handle = entry.handle.clone();
            // Both indexes change under the member's lock (order: member
            // shard, then room shard; nothing takes them the other way), so
            // concurrent joins and leaves of one member cannot interleave
            // and leave the indexes disagreeing.
            write(self.room_shard(room))
                .entry(name)
                .or_default()
                .members
                .insert(id, handle);
        }
        self.announce(Presence::Joined { room, member: id });
        true
    }

    /// Takes `id` out of `room`; an empty room disappears. Returns false if
    /// it was not there.
    pub fn leave(&self, id: MemberId, room: &str) -> bool {
        let removed = {
            let mut members = write(self.member_shard(id));
            let removed = members
                .get_mut(&id)
                .is_some_and(|entry| entry.rooms.remove(room));
            if removed {
                // Under the member's lock: see `join`.
                self.drop_from_room(room, id);
            }
            removed
        };
        if removed {
            self.announce(Presence::Left { room, member: id });
        }
        removed
    }

    /// Takes `id` out of every room; it stays registered.
    pub fn leave_all(&self, id: MemberId) {
        let rooms = {
            let mut members = write(self.member_shard(id));
            let rooms = match members.get_mut(&id) {
                Some(entry) => std::mem::take(&mut entry.rooms),
                None => return,
            };
            // Under the member's lock: see `join`.
            for room in &rooms {
                self.drop_from_room(room, id);
            }
            rooms
        };
        for room in &rooms {
            self.announce(Presence::Left { room, member: id });
        }
    }

    fn drop_from_room(&self, room: &str, id: MemberId) {
        let mut shard = write(self.room_shard(room));
        if let Some(entry) = shard.get_mut(room) {
            entry.members.remove(&id);
            if entry.members.is_empty() {
                shard.remove(room);
            }
        }
    }

    /// The rooms `id` is in, sorted.
    pub fn rooms_of(&self, id: MemberId) -> Vec<String> {
        let mut rooms: Vec<String> = read(self.member_shard(id))
            .get(&id)
            .map(|entry| entry.rooms.iter().map(|r| r.to_string()).collect())
            .unwrap_or_default();
        rooms.sort();
        rooms
    }

    /// The members of `room`, sorted.
    pub fn members(&self, room: &str) -> Vec<MemberId> {
        let mut members: Vec<MemberId> = read(self.room_shard(room))
            .get(room)
            .map(|r| r.members.keys().copied().collect())
            .unwrap_or_default();
        members.sort();
        members
    }

    /// How many members `room` has (0 if it does not exist).
    pub fn count(&self, room: &str) -> usize {
        read(self.room_shard(room))
            .get(room)
            .map_or(0, |r| r.members.len())
    }

    /// The names of all non-empty rooms, sorted.
    pub fn room_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .inner
            .rooms
            .iter()
            .flat_map(|shard| {
                read(shard)
                    .keys()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        names.sort();
        names
    }

    /// How many members are registered.
    pub fn member_count(&self) -> usize {
        self.inner
            .members
            .iter()
            .map(|shard| read(shard).len())
            .sum()
    }

    /// Stores a typed value for `id` (user id, display name, auth claims),
    /// replacing one of the same type. Returns false for an unknown member.
    pub fn set_meta<T: Any + Send + Sync>(&self, id: MemberId, value: T) -> bool {
        let mut members = write(self.member_shard(id));
        match members.get_mut(&id) {
            Some(entry) => {
                entry.meta.insert(TypeId::of::<T>(), Box::new(value));
                true
            }
            None => false,
        }
    }

    /// Reads the value of type `T` stored for `id`.
    pub fn with_meta<T: Any + Send + Sync, R>(
        &self,
        id: MemberId,
        f: impl FnOnce(&T) -> R,
    ) -> Option<R> {
        let members = read(self.member_shard(id));
        let value = members.get(&id)?.meta.get(&TypeId::of::<T>())?;
        value.downcast_ref::<T>().map(f)
    }

    /// A clone of the value of type `T` stored for `id`.
    pub fn meta<T: Any + Send + Sync + Clone>(&self, id: MemberId) -> Option<T> {
        self.with_meta(id, T::clone)
    }

    /// The sender handle of `id`.
    pub fn handle(&self, id: MemberId) -> Option<Handle> {
        read(self.member_shard(id))
            .get(&id)
            .map(|entry| entry.handle.clone())
    }

    /// Sends `message` to every member of `room`.
    pub fn emit(&self, room: &str, message: Message<'_>) -> EmitReport {
        self.emit_shared(room, &SharedMessage::new(message))
    }

    /// Sends `message` to every member of `room` but `except` (typically
    /// the sender).
    pub fn emit_except(&self, room: &str, message: Message<'_>, except: MemberId) -> EmitReport {
        let shared = SharedMessage::new(message);
        let mut report = EmitReport::default();
        if let Some(r) = read(self.room_shard(room)).get(room) {
            for (id, handle) in &r.members {
                if *id != except {
                    deliver(*id, handle, &shared, &mut report);
                }
            }
        }
        self.prune(&report);
        report
    }

    /// Sends a prepared [`SharedMessage`] to every member of `room`.
    pub fn emit_shared(&self, room: &str, message: &SharedMessage) -> EmitReport {
        let mut report = EmitReport::default();
        if let Some(r) = read(self.room_shard(room)).get(room) {
            for (id, handle) in &r.members {
                deliver(*id, handle, message, &mut report);
            }
        }
        self.prune(&report);
        report
    }

    /// Sends `message` once to every member of any of `rooms`: a member in
    /// several of them gets one copy.
    pub fn emit_many(&self, rooms: &[&str], message: Message<'_>) -> EmitReport {
        let shared = SharedMessage::new(message);
        let mut report = EmitReport::default();
        let mut seen = HashSet::new();
        for room in rooms {
            if let Some(r) = read(self.room_shard(room)).get(*room) {
                for (id, handle) in &r.members {
                    if seen.insert(*id) {
                        deliver(*id, handle, &shared, &mut report);
                    }
                }
            }
        }
        self.prune(&report);
        report
    }

    /// Sends `message` to every registered member, in a room or not.
    pub fn broadcast(&self, message: Message<'_>) -> EmitReport {
        let shared = SharedMessage::new(message);
        let mut report = EmitReport::default();
        for shard in self.inner.members.iter() {
            for (id, entry) in read(shard).iter() {
                deliver(*id, &entry.handle, &shared, &mut report);
            }
        }
        self.prune(&report);
        report
    }

    /// Removes members found closed during an emit (outside the locks).
    fn prune(&self, report: &EmitReport) {
        for id in &report.closed {
            self.remove(*id);
        }
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
