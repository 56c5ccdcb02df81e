//! Which channels a node holds: the fixed ones (broadcast, presence, its
//! node channel) and a room's while it has a local member — subscribed on
//! the 0 -> 1 edge, released after a debounce on 1 -> 0 — and all of them
//! again after a reconnect (resync), followed by a presence snapshot.

use std::collections::HashSet;
use std::sync::{Arc, Weak};

use tokio::sync::mpsc;

use crate::backplane::{lock, Shared};
use crate::settings::BackplaneEvent;

/// Work for the task that owns subscriptions (one at a time, in order).
pub(crate) enum Control {
    Subscribe(String),
    Unsubscribe(String),
    /// After attach or a reconnect: every channel again, then a snapshot.
    Resync {
        reconnected: bool,
    },
}

/// A room this node wants to hear: `generation` cancels pending
/// unsubscribes when the room comes back to life.
pub(crate) struct RoomSub {
    pub(crate) generation: u64,
}

impl Shared {
    /// [`Backplane::subscribe`](chito::rooms::Backplane::subscribe).
    pub(crate) fn subscribe_room(&self, room: &str) {
        let s = self;
        let mut rooms = lock(&s.rooms);
        match rooms.get_mut(room) {
            // Still subscribed (an unsubscribe is pending): cancel it.
            Some(sub) => sub.generation += 1,
            None => {
                rooms.insert(room.to_owned(), RoomSub { generation: 0 });
                let _ = s.control.send(Control::Subscribe(room.to_owned()));
            }
        }
    }

    /// [`Backplane::unsubscribe`](chito::rooms::Backplane::unsubscribe):
    /// after the debounce, if the room has no local member then.
    pub(crate) fn unsubscribe_room_later(self: &Arc<Self>, room: &str) {
        let s = self;
        let generation = match lock(&s.rooms).get_mut(room) {
            Some(sub) => {
                sub.generation += 1;
                sub.generation
            }
            None => return,
        };
        let weak = Arc::downgrade(s);
        let room = room.to_owned();
        let debounce = s.settings.unsubscribe_debounce;
        s.runtime.spawn(async move {
            tokio::time::sleep(debounce).await;
            let Some(s) = weak.upgrade() else { return };
            // The registry is the truth: a member may have come back
            // without a new 0 -> 1 edge reaching us yet.
            if s.sink
                .get()
                .is_some_and(|sink| sink.has_local_members(&room))
            {
                return;
            }
            let mut rooms = lock(&s.rooms);
            if rooms
                .get(&room)
                .is_some_and(|sub| sub.generation == generation)
            {
                rooms.remove(&room);
                let _ = s.control.send(Control::Unsubscribe(room));
            }
        });
    }

    /// The channels every node holds: broadcasts, presence, its own node
    /// channel. `true` for those in the JetStream stream.
    fn fixed_channels(&self) -> Vec<(String, bool)> {
        let mut fixed = vec![
            (self.channels.all(), true),
            (self.channels.presence(), false),
        ];
        if let Some(node) = self.node() {
            fixed.push((self.channels.node(node), false));
        }
        fixed
    }
}

/// Subscriptions, one change at a time so a subscribe and a later
/// unsubscribe of one room reach the broker in that order.
pub(crate) async fn control_task(weak: Weak<Shared>, mut rx: mpsc::UnboundedReceiver<Control>) {
    let mut held: HashSet<String> = HashSet::new();
    while let Some(op) = rx.recv().await {
        let Some(s) = weak.upgrade() else { return };
        match op {
            Control::Subscribe(room) => {
                let channel = s.channels.room(&room);
                if s.transport.subscribe(&channel, true).await.is_ok() {
                    held.insert(channel);
                }
            }
            Control::Unsubscribe(room) => {
                let channel = s.channels.room(&room);
                if held.remove(&channel) {
                    let _ = s.transport.unsubscribe(&channel, true).await;
                }
            }
            Control::Resync { reconnected } => {
                if reconnected {
                    s.transport.resync().await;
                }
                // Rooms with local members may have come while the broker
                // was away: the registry is the truth.
                if let Some(sink) = s.sink.get() {
                    let mut rooms = lock(&s.rooms);
                    for room in sink.local_rooms() {
                        rooms.entry(room).or_insert(RoomSub { generation: 0 });
                    }
                }
                let wanted: Vec<(String, bool)> = s
                    .fixed_channels()
                    .into_iter()
                    .chain(lock(&s.rooms).keys().map(|r| (s.channels.room(r), true)))
                    .collect();
                for (channel, durable) in wanted {
                    if s.transport.subscribe(&channel, durable).await.is_ok() {
                        held.insert(channel);
                    }
                }
                s.publish_snapshot();
                if reconnected {
                    s.emit_event(BackplaneEvent::Connected);
                }
            }
        }
        s.counters.set_subscriptions(held.len());
    }
}
