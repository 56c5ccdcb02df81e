//! The publish queue: one bounded FIFO queue per node (messages and
//! bytes), drained by one task over one broker connection, so a node's
//! messages reach the broker in the order they were queued; a failed
//! publish is retried.

use std::sync::atomic::Ordering;
use std::sync::Weak;

use bytes::Bytes;
use chito::rooms::{Envelope, NodeId, PresenceUpdate, PublishError};
use tokio::sync::{mpsc, oneshot, watch};

use crate::backplane::Shared;
use crate::counters::C;
use crate::settings::BackplaneEvent;
use crate::transport::Outbound;
use crate::wire;

/// What waits in the publish queue.
pub(crate) enum Outgoing {
    Emit(Envelope),
    Presence(PresenceUpdate),
    /// Already encoded (snapshots, queries, replies) for one channel.
    Raw {
        channel: String,
        payload: Vec<u8>,
        presence: bool,
    },
    /// Graceful shutdown: the goodbye after everything queued before it.
    Goodbye(oneshot::Sender<()>),
}

impl Outgoing {
    /// What the item counts for against `Settings::queue_bytes`.
    fn cost(&self) -> usize {
        match self {
            Outgoing::Emit(e) => 64 + e.payload.len(),
            Outgoing::Presence(_) | Outgoing::Goodbye(_) => 64,
            Outgoing::Raw { payload, .. } => payload.len(),
        }
    }
}

impl Shared {
    /// [`Backplane::publish`](chito::rooms::Backplane::publish): refused
    /// at once when too large, else queued.
    pub(crate) fn publish_emit(&self, envelope: Envelope) -> Result<(), PublishError> {
        let s = self;
        let limit = s.max_payload.load(Ordering::Relaxed);
        if envelope.payload.len() > limit {
            s.counters.add(C::TooLarge, 1);
            return Err(PublishError::TooLarge { limit });
        }
        s.enqueue(Outgoing::Emit(envelope))
    }

    pub(crate) fn enqueue(&self, item: Outgoing) -> Result<(), PublishError> {
        if *self.closed.borrow() {
            return Err(PublishError::Closed);
        }
        let cost = item.cost();
        let before = self.queued_bytes.fetch_add(cost, Ordering::Relaxed);
        let refused = if before.saturating_add(cost) > self.settings.queue_bytes {
            Some(PublishError::QueueFull)
        } else {
            match self.queue.try_send(item) {
                Ok(()) => None,
                Err(mpsc::error::TrySendError::Full(_)) => Some(PublishError::QueueFull),
                Err(mpsc::error::TrySendError::Closed(_)) => Some(PublishError::Closed),
            }
        };
        match refused {
            None => {
                self.counters.queued_delta(true);
                Ok(())
            }
            Some(e) => {
                self.queued_bytes.fetch_sub(cost, Ordering::Relaxed);
                if e == PublishError::QueueFull {
                    self.counters.add(C::DroppedQueueFull, 1);
                    self.lag.fetch_add(1, Ordering::Relaxed);
                }
                Err(e)
            }
        }
    }

    /// Reports the drops since the last report, if any.
    pub(crate) fn flush_lag(&self) {
        let dropped = self.lag.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            self.emit_event(BackplaneEvent::Lagged { dropped });
        }
    }

    /// Encodes a queued item into what to publish.
    fn encode(&self, item: Outgoing) -> Vec<(Outbound, bool)> {
        let durable = self.transport.durable();
        let limit = self.max_payload.load(Ordering::Relaxed);
        let (list, presence): (Vec<Outbound>, bool) = match item {
            Outgoing::Emit(envelope) => {
                let Ok(bytes) = wire::encode_emit(&envelope) else {
                    self.counters.add(C::TooLarge, 1);
                    return Vec::new();
                };
                if bytes.len() > limit {
                    self.counters.add(C::TooLarge, 1);
                    return Vec::new();
                }
                let payload = Bytes::from(bytes);
                let id = format!("{}:{}", envelope.origin, envelope.seq);
                let target = &envelope.target;
                // Durable (JetStream) room and everyone channels get a
                // message id per channel, so a retried publish is stored
                // once; node channels are not durable.
                let mut list: Vec<Outbound> = target
                    .rooms
                    .iter()
                    .enumerate()
                    .map(|(i, room)| Outbound {
                        channel: self.channels.room(room),
                        payload: payload.clone(),
                        msg_id: durable.then(|| {
                            if i == 0 {
                                id.clone()
                            } else {
                                format!("{id}:{i}")
                            }
                        }),
                    })
                    .collect();
                if target.rooms.is_empty() && target.members.is_empty() {
                    list.push(Outbound {
                        channel: self.channels.all(),
                        payload: payload.clone(),
                        msg_id: durable.then(|| id.clone()),
                    });
                }
                // Each other node with a listed member, once (its own
                // members were delivered to locally).
                let mut nodes: Vec<NodeId> = target
                    .members
                    .iter()
                    .map(|m| m.node())
                    .filter(|n| *n != envelope.origin)
                    .collect();
                nodes.sort_unstable();
                nodes.dedup();
                list.extend(nodes.into_iter().map(|node| Outbound {
                    channel: self.channels.node(node),
                    payload: payload.clone(),
                    msg_id: None,
                }));
                (list, false)
            }
            Outgoing::Presence(update) => {
                let Some(node) = self.node() else {
                    return Vec::new();
                };
                let Ok(bytes) = wire::encode_presence(node, &update) else {
                    return Vec::new();
                };
                (
                    vec![Outbound {
                        channel: self.channels.presence(),
                        payload: Bytes::from(bytes),
                        msg_id: None,
                    }],
                    true,
                )
            }
            Outgoing::Raw {
                channel,
                payload,
                presence,
            } => (
                vec![Outbound {
                    channel,
                    payload: Bytes::from(payload),
                    msg_id: None,
                }],
                presence,
            ),
            Outgoing::Goodbye(_) => (Vec::new(), true),
        };
        list.into_iter().map(|o| (o, presence)).collect()
    }
}

/// The one task that publishes, in queue order, over one connection.
pub(crate) async fn drain(
    weak: Weak<Shared>,
    mut rx: mpsc::Receiver<Outgoing>,
    mut connected: watch::Receiver<bool>,
) {
    while let Some(item) = rx.recv().await {
        let (outs, goodbye) = {
            let Some(s) = weak.upgrade() else { return };
            s.queued_bytes.fetch_sub(item.cost(), Ordering::Relaxed);
            s.counters.queued_delta(false);
            match item {
                Outgoing::Goodbye(done) => {
                    let outs = s.node().map(|n| {
                        (
                            Outbound {
                                channel: s.channels.presence(),
                                payload: Bytes::from(wire::encode_goodbye(n)),
                                msg_id: None,
                            },
                            true,
                        )
                    });
                    (outs.into_iter().collect(), Some(done))
                }
                item => (s.encode(item), None),
            }
        };
        for (out, presence) in outs {
            publish_one(&weak, &out, presence, &mut connected).await;
        }
        if let Some(done) = goodbye {
            let _ = done.send(());
        }
        if let Some(s) = weak.upgrade() {
            s.flush_lag();
        }
    }
}

/// Publishes `out` once the broker is there; a failed attempt is retried
/// (receivers drop duplicates by origin and sequence) up to three times.
async fn publish_one(
    weak: &Weak<Shared>,
    out: &Outbound,
    presence: bool,
    connected: &mut watch::Receiver<bool>,
) {
    let mut attempts = 0;
    loop {
        // Wait for the broker without holding the backplane alive.
        if connected.wait_for(|up| *up).await.is_err() {
            return;
        }
        let Some(s) = weak.upgrade() else { return };
        if *s.closed.borrow() && !presence {
            return;
        }
        let result = tokio::time::timeout(s.settings.publish_timeout, s.transport.publish(out))
            .await
            .unwrap_or_else(|_| Err("publish timed out".into()));
        match result {
            Ok(()) => {
                s.counters.add(C::Published, 1);
                s.counters.add(C::BytesOut, out.payload.len() as u64);
                if presence {
                    s.counters.add(C::PresenceOut, 1);
                }
                return;
            }
            Err(reason) => {
                s.counters.add(C::PublishFailed, 1);
                attempts += 1;
                if attempts >= 3 {
                    s.emit_event(BackplaneEvent::PublishFailed { reason });
                    return;
                }
                let delay = s.settings.reconnect_delay;
                drop(s);
                tokio::time::sleep(delay).await;
            }
        }
    }
}
