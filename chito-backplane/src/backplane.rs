//! [`BrokerBackplane`]: connecting, the state its tasks share, the
//! connection's ups and downs, and the [`Backplane`] implementation that
//! hands each call to its part (publish queue, subscriptions, presence).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use chito::rooms::{
    Backplane, Envelope, MembersQuery, NodeId, PresenceUpdate, PublishError, RemoteSink,
};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::channels::Channels;
use crate::counters::{self, Counters, C};
#[cfg(feature = "nats")]
use crate::nats;
use crate::presence::{self, Replies};
use crate::publish::{self, Outgoing};
#[cfg(feature = "redis")]
use crate::redis;
use crate::settings::{self, BackplaneEvent, BackplaneStats, ConnectError, Settings};
use crate::snapshot::{Limits, Reassembly};
use crate::subscriptions::{self, Control, RoomSub};
use crate::transport::Transport;

/// A [`Backplane`] over Redis or NATS. Made by [`BrokerBackplane::connect`],
/// given to `Rooms::with_backplane`.
pub struct BrokerBackplane {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for BrokerBackplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerBackplane")
            .field("namespace", &self.shared.settings.namespace)
            .field("broker", &self.shared.transport.name())
            .finish()
    }
}

/// The state every task and the [`BrokerBackplane`] share.
pub(crate) struct Shared {
    pub(crate) settings: Settings,
    pub(crate) channels: Channels,
    pub(crate) transport: Transport,
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) sink: OnceLock<RemoteSink>,
    pub(crate) queue: mpsc::Sender<Outgoing>,
    pub(crate) queued_bytes: AtomicUsize,
    pub(crate) control: mpsc::UnboundedSender<Control>,
    pub(crate) events: broadcast::Sender<BackplaneEvent>,
    pub(crate) counters: Counters,
    pub(crate) connected: watch::Sender<bool>,
    pub(crate) rooms: Mutex<HashMap<String, RoomSub>>,
    pub(crate) queries: Mutex<HashMap<u64, Replies>>,
    pub(crate) next_query: AtomicU64,
    /// Drops since the last `Lagged` event.
    pub(crate) lag: AtomicU64,
    pub(crate) max_payload: AtomicUsize,
    pub(crate) closed: watch::Sender<bool>,
    /// Until then (JetStream), messages for rooms without local members
    /// wait rather than being acknowledged.
    pub(crate) grace_until: Mutex<Option<Instant>>,
    /// The last snapshot round published; held while one is queued.
    pub(crate) snapshot_round: Mutex<u64>,
    /// Other nodes' large rooms, part by part.
    pub(crate) reassembly: Mutex<Reassembly>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each update under these locks is one map operation: a panic cannot
    // leave them half-done, so poisoning is ignored.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl BrokerBackplane {
    /// Connects to the broker named by `url` (see the crate docs for the
    /// schemes). Must run inside a tokio runtime; the backplane's tasks run
    /// on it. Hand the result to `Rooms::with_backplane`.
    pub async fn connect(url: &str, settings: Settings) -> Result<Arc<Self>, ConnectError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ConnectError::NoRuntime)?;
        if !settings::is_token(&settings.namespace) {
            return Err(ConnectError::InvalidSettings(format!(
                "namespace {:?}: use letters, digits, _ and - (at most 64)",
                settings.namespace
            )));
        }
        if settings.queue_messages == 0 || settings.presence_period.is_zero() {
            return Err(ConnectError::InvalidSettings(
                "queue_messages and presence_period must not be zero".into(),
            ));
        }
        counters::describe();
        let mut settings = settings;
        let scheme = url.split("://").next().unwrap_or_default();
        let transport = match scheme {
            #[cfg(feature = "redis")]
            "redis" | "redis+sharded" | "rediss" => {
                if scheme == "redis+sharded" {
                    settings.redis_sharded = true;
                }
                let url = url.replacen("redis+sharded://", "redis://", 1);
                Transport::Redis(redis::RedisTransport::connect(&url, &settings).await?)
            }
            #[cfg(feature = "nats")]
            "nats" | "nats+jetstream" | "tls" => {
                if scheme == "nats+jetstream" && settings.jetstream.is_none() {
                    settings.jetstream = Some(settings::JetStreamSettings::default());
                }
                if let Some(js) = &mut settings.jetstream {
                    if js.durable_name.is_empty() {
                        // No stable name given: one per start, so nothing
                        // is resumed after a restart (documented).
                        js.durable_name = format!("node-{}", NodeId::random());
                    }
                    if !settings::is_token(&js.durable_name) {
                        return Err(ConnectError::InvalidSettings(format!(
                            "durable_name {:?}: use letters, digits, _ and -",
                            js.durable_name
                        )));
                    }
                }
                let url = url.replacen("nats+jetstream://", "nats://", 1);
                Transport::Nats(Box::new(
                    nats::NatsTransport::connect(&url, &settings).await?,
                ))
            }
            _ => return Err(ConnectError::UnsupportedScheme(url.to_owned())),
        };
        let (queue, queue_rx) = mpsc::channel(settings.queue_messages);
        let (control, control_rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(settings.events_capacity.max(1));
        let (connected, _) = watch::channel(true);
        let (closed, _) = watch::channel(false);
        let grace = settings
            .jetstream
            .as_ref()
            .map(|js| Instant::now() + js.resume_grace);
        let max_payload = settings.max_payload;
        let limits = Limits::with_max_age(settings.presence_expiry());
        let shared = Arc::new(Shared {
            channels: Channels::new(&settings.namespace),
            settings,
            transport,
            runtime,
            sink: OnceLock::new(),
            queue,
            queued_bytes: AtomicUsize::new(0),
            control,
            events,
            counters: Counters::default(),
            connected,
            rooms: Mutex::new(HashMap::new()),
            queries: Mutex::new(HashMap::new()),
            next_query: AtomicU64::new(1),
            lag: AtomicU64::new(0),
            max_payload: AtomicUsize::new(max_payload),
            closed,
            grace_until: Mutex::new(grace),
            snapshot_round: Mutex::new(0),
            reassembly: Mutex::new(Reassembly::new(limits)),
        });
        shared.counters.set_connected(true);
        let weak = Arc::downgrade(&shared);
        shared.transport.start(weak.clone());
        shared.runtime.spawn(publish::drain(
            weak.clone(),
            queue_rx,
            shared.connected.subscribe(),
        ));
        shared
            .runtime
            .spawn(subscriptions::control_task(weak.clone(), control_rx));
        Ok(Arc::new(BrokerBackplane { shared }))
    }

    /// Connection events, from now on (a `broadcast` channel: a receiver
    /// that falls behind `Settings::events_capacity` sees `Lagged` from
    /// tokio, not from us).
    pub fn events(&self) -> broadcast::Receiver<BackplaneEvent> {
        self.shared.events.subscribe()
    }

    /// The counters now.
    pub fn stats(&self) -> BackplaneStats {
        self.shared.counters.snapshot()
    }

    /// Whether the broker connection is up.
    pub fn is_connected(&self) -> bool {
        *self.shared.connected.borrow()
    }

    /// The channel/subject a room's emits travel on (for monitoring).
    pub fn room_channel(&self, room: &str) -> String {
        self.shared.channels.room(room)
    }

    /// Graceful stop: publishes what is queued, then a goodbye (other nodes
    /// drop this node's members at once instead of after the presence
    /// expiry), and closes the broker connection. Waits at most
    /// `Settings::publish_timeout` for the queue and as long again for the
    /// close, so it returns even while the broker is away. Afterwards
    /// `is_connected` is false (and `events` saw `Disconnected` if the
    /// connection was up until then).
    pub async fn shutdown(&self) {
        let s = &self.shared;
        let limit = s.settings.publish_timeout;
        if s.sink.get().is_some() {
            // Bounded as a whole: with the broker away the queue can be
            // full and never drain, and the goodbye never be sent.
            let goodbye = async {
                let (tx, rx) = oneshot::channel();
                if s.queue.send(Outgoing::Goodbye(tx)).await.is_ok() {
                    let _ = rx.await;
                }
            };
            let _ = tokio::time::timeout(limit, goodbye).await;
        }
        s.closed.send_replace(true);
        // A polite close (QUIT, drain) waits for the broker; one that is
        // away must not hold the process: then the connection is dropped.
        if tokio::time::timeout(limit, s.transport.close())
            .await
            .is_err()
        {
            s.transport.abort(&s.runtime);
        }
        // Down from here on, whether or not the transport had noticed the
        // broker going away before (a killed broker's reset can arrive
        // after this returns).
        s.on_disconnected("shut down".into());
        s.counters.set_connected(false);
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Dropped without shutdown (no goodbye: other nodes expire us).
        self.transport.abort(&self.runtime);
    }
}

impl Shared {
    pub(crate) fn emit_event(&self, event: BackplaneEvent) {
        // No receiver is fine: nobody asked for events.
        let _ = self.events.send(event);
    }

    pub(crate) fn node(&self) -> Option<NodeId> {
        self.sink.get().map(RemoteSink::node)
    }

    /// The transport lost the broker.
    pub(crate) fn on_disconnected(&self, reason: String) {
        if self.connected.send_replace(false) {
            self.counters.set_connected(false);
            self.emit_event(BackplaneEvent::Disconnected { reason });
        }
    }

    /// The transport has the broker (again).
    pub(crate) fn on_connected(&self) {
        if *self.closed.borrow() {
            // Shut down: a late event of the transport does not reopen it.
            return;
        }
        if !self.connected.send_replace(true) {
            self.counters.set_connected(true);
            self.counters.add(C::Reconnects, 1);
            let _ = self.control.send(Control::Resync { reconnected: true });
        }
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn is_up(&self) -> bool {
        *self.connected.borrow()
    }

    pub(crate) fn on_slow_consumer(&self) {
        self.emit_event(BackplaneEvent::SlowConsumer);
    }

    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn set_max_payload(&self, limit: usize) {
        self.max_payload.fetch_min(limit, Ordering::Relaxed);
    }
}

impl Backplane for BrokerBackplane {
    fn attach(&self, sink: RemoteSink) {
        let s = &self.shared;
        if s.sink.set(sink).is_err() {
            return; // attached once only
        }
        let _ = s.control.send(Control::Resync { reconnected: false });
        s.runtime.spawn(presence::presence_task(Arc::downgrade(s)));
    }

    fn publish(&self, envelope: Envelope) -> Result<(), PublishError> {
        self.shared.publish_emit(envelope)
    }

    fn subscribe(&self, room: &str) {
        self.shared.subscribe_room(room);
    }

    fn unsubscribe(&self, room: &str) {
        self.shared.unsubscribe_room_later(room);
    }

    fn publish_presence(&self, update: PresenceUpdate) {
        // A dropped delta is repaired by the next snapshot.
        let _ = self.shared.enqueue(Outgoing::Presence(update));
    }

    fn query_members(&self, room: &str, timeout: Duration) -> MembersQuery {
        presence::query_members(self.shared.clone(), room, timeout)
    }
}
