//! Rooms: named groups of connections, and messages sent to many of them,
//! encoded once.
//!
//! A [`Rooms`] registry holds members — each a [`Sink`]: a tokio
//! [`Handle`], or a transport of the application's own — and the rooms
//! they are in. Sending to a room builds one [`Payload`] (a
//! [`SharedMessage`](crate::SharedMessage), or a [`SharedBatch`] of them
//! that must arrive together); each member's connection queues a reference
//! to it and writes the frame built once for its negotiation (see
//! [`SharedMessage`](crate::SharedMessage)), so a message for N members is
//! framed (and compressed, where the members allow) once, not N times, and
//! its payload is never copied per member.
//!
//! Every emit is a [`Select`]ion ([`Rooms::emit_select`]; `emit`,
//! `emit_many`, `send_to`, `broadcast` … are shorthands for one): the
//! members of some rooms and some listed members, minus the members of
//! some rooms and some listed members.
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
use std::collections::hash_map::{Entry, RandomState};
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use crate::handle::Handle;

mod backplane;
mod cluster;
mod dedup;
mod emit;
mod hold;
mod id;
mod remote;
mod sink;
mod stats;

pub use crate::connection::SharedBatch;
pub use backplane::{
    Backplane, Delivery, Envelope, MembersQuery, PresenceUpdate, Publish, PublishError,
    RemoteMembers, RemoteSink, RoomSnapshot,
};
pub use emit::Select;
pub use hold::RoomHold;
pub use id::{MemberId, NodeId, ParseIdError};
pub use sink::{Payload, RestoreError, Sink};
pub use stats::{RoomStats, RoomsStats};

use dedup::Dedup;
use remote::{Change, RemoteView};
use stats::{NodeCounters, RoomCounters};

/// A change in a room's membership, for presence displays. With a
/// backplane, remote members' joins and leaves are announced too
/// (`member.node() != rooms.node()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence<'a> {
    /// `member` joined `room` (or, for a remote member, published new
    /// presence data).
    Joined {
        /// The room.
        room: &'a str,
        /// Who joined.
        member: MemberId,
    },
    /// `member` left `room` (or disconnected; for a remote member, also
    /// when its node stopped refreshing its presence).
    Left {
        /// The room.
        room: &'a str,
        /// Who left.
        member: MemberId,
    },
}

/// What happened to one emit, on this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmitReport {
    /// Local members whose queue took the message.
    pub delivered: usize,
    /// Local members skipped because their queue was full.
    pub full: Vec<MemberId>,
    /// Local members that were closing or closed (removed from every
    /// room), or closed now as slow consumers.
    pub closed: Vec<MemberId>,
    /// Whether the emit was handed to the backplane for the other nodes.
    pub published: Publish,
}

type PresenceHook = Arc<dyn Fn(Presence<'_>) + Send + Sync>;
/// See [`Rooms::on_remote_payload`].
type RemoteHook = Arc<dyn Fn(&Select, Payload) -> Payload + Send + Sync>;
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
            .field("node", &self.inner.node)
            .field("shards", &self.inner.rooms.len())
            .field("backplane", &self.inner.backplane.is_some())
            .finish()
    }
}

struct Inner {
    node: NodeId,
    rooms: Shards<RoomShard>,
    members: Shards<MemberShard>,
    hasher: RandomState,
    next_id: AtomicU64,
    /// Tells a restored member from the one that had its id before.
    next_generation: AtomicU64,
    presence: RwLock<Option<PresenceHook>>,
    remote_hook: RwLock<Option<RemoteHook>>,
    backplane: Option<Arc<dyn Backplane>>,
    /// The last sequence number given to an envelope of this node.
    seq: AtomicU64,
    remote: RwLock<RemoteView>,
    dedup: Mutex<Dedup>,
    counters: NodeCounters,
}

/// A room on this node: it exists while it has a local member or a
/// [`RoomHold`], and this node is subscribed to its traffic meanwhile.
#[derive(Default)]
struct Room {
    members: HashMap<MemberId, Arc<dyn Sink>>,
    /// Live [`RoomHold`]s.
    holds: usize,
    counters: RoomCounters,
}

impl Room {
    /// Whether the room is still needed on this node.
    fn wanted(&self) -> bool {
        !self.members.is_empty() || self.holds > 0
    }
}

struct MemberEntry {
    sink: Arc<dyn Sink>,
    /// Which registration of the id this is ([`Membership`]).
    generation: u64,
    /// The member's handle, if it was added as one ([`Rooms::handle`]).
    handle: Option<Handle>,
    rooms: HashSet<Arc<str>>,
    meta: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
    data: Option<Arc<str>>,
}

/// Keeps a member registered; dropping it (e.g. when the connection's task
/// ends) removes the member from every room.
#[derive(Debug)]
pub struct Membership {
    rooms: Rooms,
    id: MemberId,
    generation: u64,
}

impl Membership {
    /// The member's id.
    pub fn id(&self) -> MemberId {
        self.id
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        // Only the registration this guard made: after the member was
        // removed and its id restored ([`Rooms::add_sink_as`]), dropping
        // the old guard must not remove the new one.
        self.rooms
            .remove_where(self.id, |entry| entry.generation == self.generation);
    }
}

impl MemberEntry {
    fn new(sink: Arc<dyn Sink>, handle: Option<Handle>, generation: u64) -> MemberEntry {
        MemberEntry {
            sink,
            generation,
            handle,
            rooms: HashSet::new(),
            meta: HashMap::new(),
            data: None,
        }
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

fn lock<T>(lock: &Mutex<T>) -> MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(|p| p.into_inner())
}

impl Default for Rooms {
    fn default() -> Self {
        Rooms::new()
    }
}

/// Shards of a registry made by [`Rooms::new`] and [`Rooms::with_backplane`].
const DEFAULT_SHARDS: usize = 64;

impl Rooms {
    /// A registry with 64 shards, local to this process.
    pub fn new() -> Self {
        Rooms::with_shards(DEFAULT_SHARDS)
    }

    /// A registry with `shards` shards (at least 1) for rooms and for
    /// members, local to this process.
    pub fn with_shards(shards: usize) -> Self {
        Rooms::build(shards, None)
    }

    /// A registry (64 shards) that is one node of a cluster: every emit
    /// also reaches the members on the other nodes through `backplane`, and
    /// member lists and counts include theirs. Calls
    /// [`Backplane::attach`] before returning.
    pub fn with_backplane(backplane: Arc<dyn Backplane>) -> Self {
        let rooms = Rooms::build(DEFAULT_SHARDS, Some(backplane.clone()));
        backplane.attach(RemoteSink::new(&rooms));
        rooms
    }

    fn build(shards: usize, backplane: Option<Arc<dyn Backplane>>) -> Self {
        Rooms {
            inner: Arc::new(Inner {
                node: NodeId::random(),
                rooms: Shards::new(shards, || RwLock::new(HashMap::new())),
                members: Shards::new(shards, || RwLock::new(HashMap::new())),
                hasher: RandomState::new(),
                next_id: AtomicU64::new(1),
                next_generation: AtomicU64::new(0),
                presence: RwLock::new(None),
                remote_hook: RwLock::new(None),
                backplane,
                seq: AtomicU64::new(0),
                remote: RwLock::new(RemoteView::default()),
                dedup: Mutex::new(Dedup::default()),
                counters: NodeCounters::default(),
            }),
        }
    }

    /// This registry's node id (its members' ids carry it).
    pub fn node(&self) -> NodeId {
        self.inner.node
    }

    /// Calls `hook` after every join and leave, local or (with a
    /// backplane) remote, outside any lock.
    pub fn on_presence<F: Fn(Presence<'_>) + Send + Sync + 'static>(&self, hook: F) {
        *write(&self.inner.presence) = Some(Arc::new(hook));
    }

    fn room_shard(&self, room: &str) -> &RoomShard {
        self.inner.rooms.pick(self.inner.hasher.hash_one(room))
    }

    fn member_shard(&self, id: MemberId) -> &MemberShard {
        self.inner.members.pick(id.number())
    }

    fn announce(&self, event: Presence<'_>) {
        let hook = read(&self.inner.presence).clone();
        if let Some(hook) = hook {
            hook(event);
        }
    }

    fn announce_changes(&self, changes: Vec<Change>) {
        for change in changes {
            match change {
                Change::Joined(room, member) => self.announce(Presence::Joined {
                    room: &room,
                    member,
                }),
                Change::Left(room, member) => self.announce(Presence::Left {
                    room: &room,
                    member,
                }),
            }
        }
    }

    /// Tells the backplane (if any) about local joins and leaves, after
    /// the locks are released.
    fn local_presence(&self, update: PresenceUpdate) {
        let (room, member, joined) = match &update {
            PresenceUpdate::Joined { room, member, .. } => (room.clone(), *member, true),
            PresenceUpdate::Left { room, member } => (room.clone(), *member, false),
        };
        if let Some(backplane) = &self.inner.backplane {
            backplane.publish_presence(update);
        }
        if joined {
            self.announce(Presence::Joined {
                room: &room,
                member,
            });
        } else {
            self.announce(Presence::Left {
                room: &room,
                member,
            });
        }
    }

    /// Tells the backplane that local rooms emptied.
    fn rooms_emptied(&self, rooms: &[Arc<str>]) {
        if let Some(backplane) = &self.inner.backplane {
            for room in rooms {
                backplane.unsubscribe(room);
            }
        }
    }

    /// Registers a connection. Keep the returned [`Membership`] for the
    /// connection's lifetime: dropping it leaves every room.
    pub fn add(&self, handle: Handle) -> Membership {
        let id = self.next_member_id();
        self.insert_member(id, Arc::new(handle.clone()), Some(handle))
    }

    /// Registers a member that is not a tokio [`Handle`] (a transport of
    /// the application's own), as [`Rooms::add`] does.
    pub fn add_sink(&self, sink: Arc<dyn Sink>) -> Membership {
        let id = self.next_member_id();
        self.insert_member(id, sink, None)
    }

    /// Registers a member again under `id`, which this node gave out before
    /// and is not present now — a session recovered after its connection
    /// was lost keeps its id. It is in no room: join them again.
    ///
    /// # Errors
    /// [`RestoreError::OtherNode`] for an id of another node,
    /// [`RestoreError::NotIssued`] for a number this node never gave out
    /// (it would be given out later, to another member),
    /// [`RestoreError::Present`] while a member has the id.
    pub fn add_sink_as(
        &self,
        id: MemberId,
        sink: Arc<dyn Sink>,
    ) -> Result<Membership, RestoreError> {
        if id.node() != self.inner.node {
            return Err(RestoreError::OtherNode);
        }
        if id.number() == 0 || id.number() >= self.inner.next_id.load(Ordering::Relaxed) {
            return Err(RestoreError::NotIssued);
        }
        let generation = self.next_generation();
        match write(self.member_shard(id)).entry(id) {
            Entry::Occupied(_) => return Err(RestoreError::Present),
            Entry::Vacant(slot) => {
                slot.insert(MemberEntry::new(sink, None, generation));
            }
        }
        Ok(self.membership(id, generation))
    }

    fn next_member_id(&self) -> MemberId {
        let number = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        MemberId::new(self.inner.node, number)
    }

    fn next_generation(&self) -> u64 {
        self.inner.next_generation.fetch_add(1, Ordering::Relaxed)
    }

    fn insert_member(
        &self,
        id: MemberId,
        sink: Arc<dyn Sink>,
        handle: Option<Handle>,
    ) -> Membership {
        let generation = self.next_generation();
        write(self.member_shard(id)).insert(id, MemberEntry::new(sink, handle, generation));
        self.membership(id, generation)
    }

    fn membership(&self, id: MemberId, generation: u64) -> Membership {
        Membership {
            rooms: self.clone(),
            id,
            generation,
        }
    }

    /// Removes a member from every room and from the registry.
    pub fn remove(&self, id: MemberId) {
        self.remove_where(id, |_| true);
    }

    /// Removes member `id` if `this` says its entry is the one meant.
    fn remove_where(&self, id: MemberId, this: impl FnOnce(&MemberEntry) -> bool) {
        let mut emptied = Vec::new();
        let entry = {
            let mut members = write(self.member_shard(id));
            let entry = match members.get(&id) {
                Some(entry) if this(entry) => members.remove(&id),
                _ => None,
            };
            // Under the member's lock: see `join`.
            for room in entry.iter().flat_map(|e| &e.rooms) {
                if self.drop_from_room(room, id) {
                    emptied.push(room.clone());
                }
            }
            entry
        };
        self.rooms_emptied(&emptied);
        if let Some(entry) = entry {
            for room in entry.rooms {
                self.local_presence(PresenceUpdate::Left { room, member: id });
            }
        }
    }

    /// Puts `id` in `room` (created if needed). Returns false if the member
    /// is unknown (or not local), closed, or already there.
    pub fn join(&self, id: MemberId, room: &str) -> bool {
        let name: Arc<str> = Arc::from(room);
        let (created, data) = {
            let mut members = write(self.member_shard(id));
            let Some(entry) = members.get_mut(&id) else {
                return false;
            };
            // A closed member would be pruned by the next emit: joining it
            // would announce a join and a leave to every node for nothing.
            if entry.sink.is_closed() || !entry.rooms.insert(name.clone()) {
                return false;
            }
            let sink = entry.sink.clone();
            // Both indexes change under the member's lock (order: member
            // shard, then room shard; nothing takes them the other way), so
            // concurrent joins and leaves of one member cannot interleave
            // and leave the indexes disagreeing.
            let mut rooms = write(self.room_shard(room));
            let (created, slot) = match rooms.entry(name.clone()) {
                Entry::Occupied(slot) => (false, slot.into_mut()),
                Entry::Vacant(slot) => (true, slot.insert(Room::default())),
            };
            slot.members.insert(id, sink);
            (created, entry.data.clone())
        };
        if created {
            // The 0 -> 1 edge (of members and holds together): this node
            // now needs the room's traffic.
            if let Some(backplane) = &self.inner.backplane {
                backplane.subscribe(room);
            }
        }
        self.local_presence(PresenceUpdate::Joined {
            room: name,
            member: id,
            data,
        });
        true
    }

    /// Takes `id` out of `room`; an empty room disappears. Returns false if
    /// it was not there.
    pub fn leave(&self, id: MemberId, room: &str) -> bool {
        let (removed, emptied) = {
            let mut members = write(self.member_shard(id));
            let removed = members
                .get_mut(&id)
                .and_then(|entry| entry.rooms.take(room));
            // Under the member's lock: see `join`.
            let emptied = removed
                .as_ref()
                .is_some_and(|name| self.drop_from_room(name, id));
            (removed, emptied)
        };
        let Some(name) = removed else {
            return false;
        };
        if emptied {
            self.rooms_emptied(std::slice::from_ref(&name));
        }
        self.local_presence(PresenceUpdate::Left {
            room: name,
            member: id,
        });
        true
    }

    /// Takes `id` out of every room; it stays registered.
    pub fn leave_all(&self, id: MemberId) {
        let mut emptied = Vec::new();
        let rooms = {
            let mut members = write(self.member_shard(id));
            let rooms = match members.get_mut(&id) {
                Some(entry) => std::mem::take(&mut entry.rooms),
                None => return,
            };
            // Under the member's lock: see `join`.
            for room in &rooms {
                if self.drop_from_room(room, id) {
                    emptied.push(room.clone());
                }
            }
            rooms
        };
        self.rooms_emptied(&emptied);
        for room in rooms {
            self.local_presence(PresenceUpdate::Left { room, member: id });
        }
    }

    /// Takes `id` out of `room`; true if the room is now unwanted (no
    /// member, no hold: gone).
    fn drop_from_room(&self, room: &str, id: MemberId) -> bool {
        let mut shard = write(self.room_shard(room));
        if let Some(entry) = shard.get_mut(room) {
            entry.members.remove(&id);
            if !entry.wanted() {
                shard.remove(room);
                return true;
            }
        }
        false
    }

    /// The rooms `id` is in, sorted (for a remote member, as its node's
    /// presence last said).
    pub fn rooms_of(&self, id: MemberId) -> Vec<String> {
        let mut rooms: Vec<String> = if id.node() == self.inner.node {
            read(self.member_shard(id))
                .get(&id)
                .map(|entry| entry.rooms.iter().map(|r| r.to_string()).collect())
                .unwrap_or_default()
        } else {
            read(&self.inner.remote).rooms_of(id)
        };
        rooms.sort();
        rooms
    }

    /// The members of `room` on every node, sorted: the local ones now,
    /// the remote ones as their nodes' presence last said (eventually
    /// consistent; [`Rooms::fetch_members`] asks them).
    pub fn members(&self, room: &str) -> Vec<MemberId> {
        let mut members = self.local_members(room);
        members.extend(
            read(&self.inner.remote)
                .members(room)
                .into_iter()
                .map(|(id, _)| id),
        );
        members.sort();
        members
    }

    /// The members of `room` on this node, sorted.
    pub fn local_members(&self, room: &str) -> Vec<MemberId> {
        let mut members: Vec<MemberId> = read(self.room_shard(room))
            .get(room)
            .map(|r| r.members.keys().copied().collect())
            .unwrap_or_default();
        members.sort();
        members
    }

    /// The members of `room` on every node with their presence data, the
    /// remote ones asked now through the backplane, waiting at most
    /// `timeout` for the other nodes to answer. Sorted by id.
    pub async fn fetch_members(&self, room: &str, timeout: Duration) -> RemoteMembers {
        let mut members = self.local_members_with_data(room);
        if let Some(backplane) = &self.inner.backplane {
            let remote = backplane.query_members(room, timeout).await;
            let node = self.inner.node;
            members.extend(remote.into_iter().filter(|(id, _)| id.node() != node));
        }
        members.sort_by_key(|(id, _)| *id);
        members.dedup_by_key(|(id, _)| *id);
        members
    }

    /// How many members `room` has on every node (0 if none): local ones
    /// now, remote ones as their nodes' presence last said.
    pub fn count(&self, room: &str) -> usize {
        self.local_count(room) + read(&self.inner.remote).count(room)
    }

    /// How many members `room` has on this node.
    pub fn local_count(&self, room: &str) -> usize {
        read(self.room_shard(room))
            .get(room)
            .map_or(0, |r| r.members.len())
    }

    /// The names of all rooms with a member on any node, sorted.
    pub fn room_names(&self) -> Vec<String> {
        let mut names = self.local_room_names();
        names.extend(read(&self.inner.remote).room_names().map(|r| r.to_string()));
        names.sort();
        names.dedup();
        names
    }

    /// The names of the rooms with a local member, sorted.
    fn local_room_names(&self) -> Vec<String> {
        self.room_names_where(|room| !room.members.is_empty())
    }

    /// The names of the rooms with a local member or a hold (whose traffic
    /// this node needs), sorted.
    fn wanted_room_names(&self) -> Vec<String> {
        self.room_names_where(|_| true)
    }

    fn room_names_where(&self, keep: impl Fn(&Room) -> bool) -> Vec<String> {
        let mut names: Vec<String> = self
            .inner
            .rooms
            .iter()
            .flat_map(|shard| {
                read(shard)
                    .iter()
                    .filter(|(_, room)| keep(room))
                    .map(|(name, _)| name.to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        names.sort();
        names
    }

    /// Whether this node needs `room`'s traffic: it has a local member or
    /// a hold.
    fn wants_room(&self, room: &str) -> bool {
        read(self.room_shard(room)).contains_key(room)
    }

    /// How many members are registered on this node.
    pub fn member_count(&self) -> usize {
        self.inner
            .members
            .iter()
            .map(|shard| read(shard).len())
            .sum()
    }

    /// Stores a typed value for local member `id` (user id, display name,
    /// auth claims), replacing one of the same type. Returns false for an
    /// unknown member. It stays on this node; see
    /// [`Rooms::set_presence_data`] for what other nodes see.
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

    /// Reads the value of type `T` stored for local member `id`.
    pub fn with_meta<T: Any + Send + Sync, R>(
        &self,
        id: MemberId,
        f: impl FnOnce(&T) -> R,
    ) -> Option<R> {
        let members = read(self.member_shard(id));
        let value = members.get(&id)?.meta.get(&TypeId::of::<T>())?;
        value.downcast_ref::<T>().map(f)
    }

    /// A clone of the value of type `T` stored for local member `id`.
    pub fn meta<T: Any + Send + Sync + Clone>(&self, id: MemberId) -> Option<T> {
        self.with_meta(id, T::clone)
    }

    /// Sets what other nodes (and this one) see of local member `id` in
    /// presence: a display name, an avatar URL, a small JSON object. It
    /// travels with every join and snapshot, so keep it small. Returns
    /// false for an unknown member.
    pub fn set_presence_data(&self, id: MemberId, data: impl Into<Arc<str>>) -> bool {
        let data = Some(data.into());
        let rooms: Vec<Arc<str>> = {
            let mut members = write(self.member_shard(id));
            let Some(entry) = members.get_mut(&id) else {
                return false;
            };
            entry.data = data.clone();
            entry.rooms.iter().cloned().collect()
        };
        if let Some(backplane) = &self.inner.backplane {
            for room in rooms {
                backplane.publish_presence(PresenceUpdate::Joined {
                    room,
                    member: id,
                    data: data.clone(),
                });
            }
        }
        true
    }

    /// The presence data of a member, local or remote.
    pub fn presence_data(&self, id: MemberId) -> Option<Arc<str>> {
        if id.node() == self.inner.node {
            read(self.member_shard(id)).get(&id)?.data.clone()
        } else {
            read(&self.inner.remote).data(id)
        }
    }

    /// The sender handle of local member `id`, if it was added as one
    /// ([`Rooms::add`]; `None` for [`Rooms::add_sink`]).
    pub fn handle(&self, id: MemberId) -> Option<Handle> {
        read(self.member_shard(id))
            .get(&id)
            .and_then(|entry| entry.handle.clone())
    }

    /// Calls `hook` once for every emit received from another node, after
    /// duplicates are dropped and before local delivery, with the emit's
    /// selection; local members get the payload it returns (e.g. with a
    /// node-local sequence number spliced in, for a log that replays it).
    /// It runs on the backplane's receiving task, outside the registry's
    /// locks: keep it short.
    pub fn on_remote_payload<F: Fn(&Select, Payload) -> Payload + Send + Sync + 'static>(
        &self,
        hook: F,
    ) {
        *write(&self.inner.remote_hook) = Some(Arc::new(hook));
    }
}
