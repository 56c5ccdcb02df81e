//! Rooms across several server processes: a [`chito::rooms::Backplane`]
//! over a real broker, Redis pub/sub or NATS.
//!
//! Each server process ("node") keeps its own `chito::rooms::Rooms`
//! registry and delivers to its own connections; a [`BrokerBackplane`]
//! carries emits, presence and member queries between nodes:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use chito_backplane::{BrokerBackplane, Settings};
//! use chito::rooms::Rooms;
//!
//! let backplane = BrokerBackplane::connect("redis://127.0.0.1:6379", Settings::default()).await?;
//! let rooms = Rooms::with_backplane(backplane.clone());
//! // … serve connections, join rooms, emit: members on every node get it.
//! backplane.shutdown().await; // say goodbye: other nodes drop our members now
//! # Ok(()) }
//! ```
//!
//! # Brokers
//!
//! | URL | broker | delivery |
//! |-----|--------|----------|
//! | `redis://host:port` | Redis PUBLISH/SUBSCRIBE | at most once |
//! | `redis+sharded://host:port` | Redis SPUBLISH/SSUBSCRIBE (Redis 7+; for Redis Cluster, where a room's traffic then stays on one shard) | at most once |
//! | `nats://host:port` | NATS core | at most once |
//! | `nats+jetstream://host:port` | NATS JetStream for room and broadcast emits (nats-server 2.10+) | at least once, deduplicated |
//!
//! # Channels (Redis) and subjects (NATS)
//!
//! * `chito.<ns>.room.<R>`: emits to room `R`, where `<R>` is the room name
//!   in unpadded base64url (NATS subject tokens cannot hold `.`, `*`, `>`
//!   or spaces; Redis uses the same names), `_` for the empty name. A node
//!   subscribes while the room has a local member (unsubscribing
//!   [`Settings::unsubscribe_debounce`] after the last one left).
//! * `chito.<ns>.all`: broadcasts.
//! * `chito.<ns>.node.<node id>`: sends to one member, and query replies.
//! * `chito.<ns>.presence`: joins, leaves, snapshots, goodbyes, queries.
//!
//! The messages themselves use a compact binary format, described in the
//! `wire` module's source.
//!
//! # Guarantees and failures
//!
//! Per room and publisher, order is kept: one FIFO queue per node drained
//! by one task over one connection. Publishing never blocks: a full queue
//! drops the publish (`PublishError::QueueFull`, counted,
//! [`BackplaneEvent::Lagged`]). When the broker goes away, local delivery
//! goes on; on its return the node subscribes again to its rooms, publishes
//! its presence snapshot and sends [`BackplaneEvent::Connected`].
//!
//! # JetStream
//!
//! With [`Settings::jetstream`], room and broadcast emits go through a
//! stream `CHITO_<ns>` over `chito.<ns>.room.>` and `chito.<ns>.all`
//! (`max_age` short, 30 s by default), published with `Nats-Msg-Id` =
//! `<origin>:<seq>` (`:<i>` added for the i-th further room of a multi-room
//! emit) so retried publishes are dropped by the server. Each node reads
//! through one durable pull consumer named by
//! [`JetStreamSettings::durable_name`], filtered to its rooms, and
//! acknowledges after local delivery. A node restarted under the same name
//! within `max_age` resumes from its last acknowledgement: messages for
//! rooms without a local member are left unacknowledged for
//! [`JetStreamSettings::resume_grace`] while its clients come back. The
//! node's id is new after a restart, so chito's duplicate filter starts
//! empty: a message delivered but not yet acknowledged when the node died
//! is delivered again (the only duplicates; acknowledgements follow
//! delivery within microseconds). Direct sends and presence stay on NATS
//! core: they name node ids, which do not survive a restart.
//!
//! # Metrics
//!
//! Every counter of [`BackplaneStats`] is also recorded through the
//! `metrics` facade as `chito_backplane_*` (see [`record_rooms_metrics`]
//! for the registry's own numbers).
#![deny(missing_docs)]
#![forbid(unsafe_code)]
// Without a broker feature the crate still builds (its API and wire
// format), but nothing can connect: the broker plumbing is unused.
#![cfg_attr(
    not(any(feature = "redis", feature = "nats")),
    allow(dead_code, unused_variables, unused_mut, unreachable_code)
)]

mod contract;
mod counters;
#[cfg(feature = "nats")]
mod nats;
#[cfg(feature = "redis")]
mod redis;
mod settings;
mod wire;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use contract::{
    Backplane, Delivery, Envelope, MemberId, MembersQuery, NodeId, PresenceUpdate, PublishError,
    RemoteSink, RoomSnapshot, Target,
};
use counters::{Counters, C};
pub use settings::{BackplaneEvent, BackplaneStats, ConnectError, JetStreamSettings, Settings};

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

/// The broker client behind a backplane.
pub(crate) enum Transport {
    #[cfg(feature = "redis")]
    Redis(redis::RedisTransport),
    // Boxed: the JetStream state is large and the enum sits in Shared.
    #[cfg(feature = "nats")]
    Nats(Box<nats::NatsTransport>),
    /// Built without a broker feature: `connect` refuses every URL, so
    /// this is never made.
    #[cfg(not(any(feature = "redis", feature = "nats")))]
    None(std::convert::Infallible),
}

/// One broker message to publish.
pub(crate) struct Outbound {
    pub(crate) channel: String,
    pub(crate) payload: Bytes,
    /// JetStream: goes to the stream with this `Nats-Msg-Id`.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) msg_id: Option<String>,
}

/// Calls the same method on whichever client this is (both transports
/// have the same inherent methods).
macro_rules! on_broker {
    ($transport:expr, $t:ident => $call:expr) => {
        match $transport {
            #[cfg(feature = "redis")]
            Transport::Redis($t) => $call,
            #[cfg(feature = "nats")]
            Transport::Nats($t) => $call,
            #[cfg(not(any(feature = "redis", feature = "nats")))]
            Transport::None(never) => match *never {},
        }
    };
}

impl Transport {
    fn name(&self) -> &'static str {
        on_broker!(self, t => t.name())
    }

    async fn publish(&self, out: &Outbound) -> Result<(), String> {
        on_broker!(self, t => t.publish(out).await)
    }

    /// `durable`: a room or broadcast channel (JetStream consumer filter).
    async fn subscribe(&self, channel: &str, durable: bool) -> Result<(), String> {
        on_broker!(self, t => t.subscribe(channel, durable).await)
    }

    async fn unsubscribe(&self, channel: &str, durable: bool) -> Result<(), String> {
        on_broker!(self, t => t.unsubscribe(channel, durable).await)
    }

    /// After a reconnect, before subscribing again: what the broker may
    /// have lost (a restarted NATS server has no memory stream).
    async fn resync(&self) {
        on_broker!(self, t => t.resync().await)
    }

    fn start(&self, shared: Weak<Shared>) {
        on_broker!(self, t => t.start(shared))
    }

    /// The backplane is gone: stop the tasks and let the connections go.
    fn abort(&self, runtime: &tokio::runtime::Handle) {
        on_broker!(self, t => t.abort(runtime))
    }

    async fn close(&self) {
        on_broker!(self, t => t.close().await)
    }

    /// Whether emits to rooms and broadcasts go through JetStream.
    fn durable(&self) -> bool {
        on_broker!(self, t => t.jetstream())
    }
}

/// Channel names of one namespace.
pub(crate) struct Channels {
    prefix: String,
}

impl Channels {
    fn new(namespace: &str) -> Self {
        Channels {
            prefix: format!("chito.{namespace}."),
        }
    }

    /// `chito.<ns>.room.<base64url(room)>`, `_` for the empty name (which
    /// base64 would make an empty, invalid, NATS token; every other name
    /// encodes to two characters or more).
    pub(crate) fn room(&self, room: &str) -> String {
        let token = if room.is_empty() {
            "_".to_owned()
        } else {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(room)
        };
        format!("{}room.{token}", self.prefix)
    }

    /// `chito.<ns>.room.>`: every room subject (NATS wildcard).
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn rooms_wildcard(&self) -> String {
        format!("{}room.>", self.prefix)
    }

    pub(crate) fn all(&self) -> String {
        format!("{}all", self.prefix)
    }

    pub(crate) fn node(&self, node: NodeId) -> String {
        format!("{}node.{node}", self.prefix)
    }

    pub(crate) fn presence(&self) -> String {
        format!("{}presence", self.prefix)
    }
}

/// What waits in the publish queue.
enum Outgoing {
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
            Outgoing::Emit(e) => 64 + e.message.len(),
            Outgoing::Presence(_) | Outgoing::Goodbye(_) => 64,
            Outgoing::Raw { payload, .. } => payload.len(),
        }
    }
}

/// Work for the task that owns subscriptions (one at a time, in order).
enum Control {
    Subscribe(String),
    Unsubscribe(String),
    /// After attach or a reconnect: every channel again, then a snapshot.
    Resync {
        reconnected: bool,
    },
}

/// A room this node wants to hear: `generation` cancels pending
/// unsubscribes when the room comes back to life.
struct RoomSub {
    generation: u64,
}

type Replies = mpsc::UnboundedSender<(NodeId, Vec<(MemberId, Option<Arc<str>>)>)>;

pub(crate) struct Shared {
    settings: Settings,
    channels: Channels,
    transport: Transport,
    runtime: tokio::runtime::Handle,
    sink: OnceLock<RemoteSink>,
    queue: mpsc::Sender<Outgoing>,
    queued_bytes: AtomicUsize,
    control: mpsc::UnboundedSender<Control>,
    events: broadcast::Sender<BackplaneEvent>,
    counters: Counters,
    connected: watch::Sender<bool>,
    rooms: Mutex<HashMap<String, RoomSub>>,
    queries: Mutex<HashMap<u64, Replies>>,
    next_query: AtomicU64,
    /// Drops since the last `Lagged` event.
    lag: AtomicU64,
    max_payload: AtomicUsize,
    closed: watch::Sender<bool>,
    /// Until then (JetStream), messages for rooms without local members
    /// wait rather than being acknowledged.
    grace_until: Mutex<Option<Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each update under these locks is one map operation: a panic cannot
    // leave them half-done, so poisoning is ignored.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What became of a received message (JetStream acknowledges on `Done`).
pub(crate) enum Received {
    Done,
    /// For rooms without a local member, within the resume grace.
    NotYet,
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
                    settings.jetstream = Some(JetStreamSettings::default());
                }
                if let Some(js) = &mut settings.jetstream {
                    if js.durable_name.is_empty() {
                        // No stable name given: one per start, so nothing
                        // is resumed after a restart (documented).
                        js.durable_name = format!("node-{:016x}", rand_u64());
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
        });
        shared.counters.set_connected(true);
        let weak = Arc::downgrade(&shared);
        shared.transport.start(weak.clone());
        shared
            .runtime
            .spawn(drain(weak.clone(), queue_rx, shared.connected.subscribe()));
        shared.runtime.spawn(control_task(weak.clone(), control_rx));
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
    /// `Settings::publish_timeout` for the queue.
    pub async fn shutdown(&self) {
        let s = &self.shared;
        let (tx, rx) = oneshot::channel();
        if s.sink.get().is_some() && s.queue.send(Outgoing::Goodbye(tx)).await.is_ok() {
            let _ = tokio::time::timeout(s.settings.publish_timeout, rx).await;
        }
        s.closed.send_replace(true);
        s.transport.close().await;
        s.counters.set_connected(false);
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Dropped without shutdown (no goodbye: other nodes expire us).
        self.transport.abort(&self.runtime);
    }
}

/// A random u64 without a dependency: std's hasher keys are random per
/// process, mixed with the time.
#[cfg_attr(not(feature = "nats"), allow(dead_code))]
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

impl Shared {
    fn emit_event(&self, event: BackplaneEvent) {
        // No receiver is fine: nobody asked for events.
        let _ = self.events.send(event);
    }

    fn enqueue(&self, item: Outgoing) -> Result<(), PublishError> {
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
    fn flush_lag(&self) {
        let dropped = self.lag.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            self.emit_event(BackplaneEvent::Lagged { dropped });
        }
    }

    fn node(&self) -> Option<NodeId> {
        self.sink.get().map(RemoteSink::node)
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
                let list = match &envelope.target {
                    Target::Rooms { rooms, .. } => rooms
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
                        .collect(),
                    Target::Everyone => vec![Outbound {
                        channel: self.channels.all(),
                        payload,
                        msg_id: durable.then_some(id),
                    }],
                    Target::Member(m) => vec![Outbound {
                        channel: self.channels.node(m.node()),
                        payload,
                        msg_id: None,
                    }],
                };
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

    /// Queues this node's presence snapshot, in chunks of whole rooms.
    fn publish_snapshot(&self) {
        let Some(sink) = self.sink.get() else {
            return;
        };
        let node = sink.node();
        let rooms = sink.local_snapshot();
        let mut chunk: Vec<RoomSnapshot> = Vec::new();
        let mut size = 0;
        let mut chunks = Vec::new();
        for room in rooms {
            let s = wire::snapshot_room_size(&room);
            if !chunk.is_empty() && size + s > self.settings.snapshot_chunk_bytes {
                chunks.push(std::mem::take(&mut chunk));
                size = 0;
            }
            size += s;
            chunk.push(room);
        }
        // Always at least one message: an empty snapshot is the heartbeat
        // that keeps this node known.
        chunks.push(chunk);
        for chunk in chunks {
            if let Ok(payload) = wire::encode_snapshot(node, &chunk) {
                let _ = self.enqueue(Outgoing::Raw {
                    channel: self.channels.presence(),
                    payload,
                    presence: true,
                });
            }
        }
    }

    /// Handles one message from the broker.
    pub(crate) fn receive(&self, bytes: &[u8]) -> Received {
        let decoded = match wire::decode(bytes) {
            Ok(w) => w,
            Err(_) => {
                self.counters.add(C::Received, 1);
                self.counters.add(C::BytesIn, bytes.len() as u64);
                self.counters.add(C::BadEnvelope, 1);
                return Received::Done;
            }
        };
        let Some(sink) = self.sink.get() else {
            // Not attached to a registry yet: nothing to deliver to.
            return Received::NotYet;
        };
        let me = sink.node();
        if let wire::Wire::Emit(Envelope {
            origin,
            target: Target::Rooms { rooms, .. },
            ..
        }) = &decoded
        {
            if *origin != me && self.in_grace() && !rooms.iter().any(|r| sink.has_local_members(r))
            {
                return Received::NotYet;
            }
        }
        self.counters.add(C::Received, 1);
        self.counters.add(C::BytesIn, bytes.len() as u64);
        match decoded {
            wire::Wire::Emit(envelope) => match sink.deliver(envelope) {
                Delivery::Delivered(_) => self.counters.add(C::Delivered, 1),
                Delivery::OwnEcho => self.counters.add(C::OwnEcho, 1),
                Delivery::Duplicate => self.counters.add(C::Duplicate, 1),
                Delivery::Closed => {}
            },
            wire::Wire::Presence(origin, update) => {
                if origin != me {
                    self.counters.add(C::PresenceIn, 1);
                    sink.presence(update);
                }
            }
            wire::Wire::Snapshot(origin, rooms) => {
                if origin != me {
                    self.counters.add(C::PresenceIn, 1);
                    let new = !sink.known_nodes().contains(&origin);
                    sink.snapshot(origin, rooms);
                    if new {
                        // A node we did not know (just started, or back):
                        // it learns about us now rather than at our next
                        // period. It knows us after this, so no echo loop.
                        self.publish_snapshot();
                    }
                }
            }
            wire::Wire::Goodbye(origin) => {
                if origin != me {
                    self.counters.add(C::PresenceIn, 1);
                    sink.node_gone(origin);
                }
            }
            wire::Wire::Query { origin, id, room } => {
                if origin != me {
                    let members = sink.local_members(&room);
                    if let Ok(payload) = wire::encode_reply(me, id, &members) {
                        let _ = self.enqueue(Outgoing::Raw {
                            channel: self.channels.node(origin),
                            payload,
                            presence: true,
                        });
                    }
                }
            }
            wire::Wire::Reply {
                origin,
                id,
                members,
            } => {
                if let Some(tx) = lock(&self.queries).get(&id) {
                    let _ = tx.send((origin, members));
                }
            }
        }
        Received::Done
    }

    fn in_grace(&self) -> bool {
        let mut grace = lock(&self.grace_until);
        match *grace {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                *grace = None;
                false
            }
            None => false,
        }
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

    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn set_max_payload(&self, limit: usize) {
        self.max_payload.fetch_min(limit, Ordering::Relaxed);
    }
}

/// The one task that publishes, in queue order, over one connection.
async fn drain(
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

/// Subscriptions, one change at a time so a subscribe and a later
/// unsubscribe of one room reach the broker in that order.
async fn control_task(weak: Weak<Shared>, mut rx: mpsc::UnboundedReceiver<Control>) {
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

/// Every presence period: the snapshot, then expiry of silent nodes.
async fn presence_task(weak: Weak<Shared>) {
    let period = match weak.upgrade() {
        Some(s) => s.settings.presence_period,
        None => return,
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is now: attach already sent one
    loop {
        tick.tick().await;
        let Some(s) = weak.upgrade() else { return };
        if *s.closed.borrow() {
            return;
        }
        s.publish_snapshot();
        if let Some(sink) = s.sink.get() {
            sink.expire(period.saturating_mul(s.settings.presence_expiry_periods.max(1)));
        }
        s.flush_lag();
    }
}

impl Backplane for BrokerBackplane {
    fn attach(&self, sink: RemoteSink) {
        let s = &self.shared;
        if s.sink.set(sink).is_err() {
            return; // attached once only
        }
        let _ = s.control.send(Control::Resync { reconnected: false });
        s.runtime.spawn(presence_task(Arc::downgrade(s)));
    }

    fn publish(&self, envelope: Envelope) -> Result<(), PublishError> {
        let s = &self.shared;
        let limit = s.max_payload.load(Ordering::Relaxed);
        if envelope.message.len() > limit {
            s.counters.add(C::TooLarge, 1);
            return Err(PublishError::TooLarge { limit });
        }
        s.enqueue(Outgoing::Emit(envelope))
    }

    fn subscribe(&self, room: &str) {
        let s = &self.shared;
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

    fn unsubscribe(&self, room: &str) {
        let s = &self.shared;
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

    fn publish_presence(&self, update: PresenceUpdate) {
        // A dropped delta is repaired by the next snapshot.
        let _ = self.shared.enqueue(Outgoing::Presence(update));
    }

    fn query_members(&self, room: &str, timeout: Duration) -> MembersQuery {
        let s = self.shared.clone();
        let room = room.to_owned();
        Box::pin(async move {
            let Some(sink) = s.sink.get() else {
                return Vec::new();
            };
            let me = sink.node();
            let known: HashSet<NodeId> = sink.known_nodes().into_iter().collect();
            if known.is_empty() {
                return Vec::new();
            }
            let id = s.next_query.fetch_add(1, Ordering::Relaxed);
            let (tx, mut rx) = mpsc::unbounded_channel();
            lock(&s.queries).insert(id, tx);
            let mut found = Vec::new();
            if let Ok(payload) = wire::encode_query(me, id, &room) {
                let queued = s.enqueue(Outgoing::Raw {
                    channel: s.channels.presence(),
                    payload,
                    presence: true,
                });
                if queued.is_ok() {
                    let deadline = tokio::time::Instant::now() + timeout;
                    let mut replied = HashSet::new();
                    while !known.is_subset(&replied) {
                        match tokio::time::timeout_at(deadline, rx.recv()).await {
                            Ok(Some((node, members))) => {
                                if replied.insert(node) {
                                    found.extend(members);
                                }
                            }
                            _ => break,
                        }
                    }
                }
            }
            lock(&s.queries).remove(&id);
            found
        })
    }
}

/// Records a registry's own figures (`Rooms::stats`) through the
/// `metrics` facade as gauges named `chito_rooms_*` (members, rooms,
/// remote nodes and members, and the counters as totals so far), e.g. from
/// a periodic task or before a scrape. Per-room figures are left out: room
/// names as labels would make the metric set unbounded.
pub fn record_rooms_metrics(rooms: &chito::rooms::Rooms) {
    let s = rooms.stats();
    let gauges: [(&'static str, f64); 13] = [
        ("chito_rooms_members", s.members as f64),
        ("chito_rooms_rooms", s.rooms as f64),
        ("chito_rooms_remote_nodes", s.remote_nodes as f64),
        ("chito_rooms_remote_members", s.remote_members as f64),
        ("chito_rooms_emits", s.emits as f64),
        ("chito_rooms_deliveries", s.deliveries as f64),
        ("chito_rooms_bytes_out", s.bytes_out as f64),
        ("chito_rooms_full", s.full as f64),
        ("chito_rooms_closed", s.closed as f64),
        ("chito_rooms_published", s.published as f64),
        ("chito_rooms_publish_failed", s.publish_failed as f64),
        ("chito_rooms_remote_received", s.remote_received as f64),
        ("chito_rooms_remote_dropped", s.remote_dropped as f64),
    ];
    for (name, value) in gauges {
        metrics::gauge!(name).set(value);
    }
}
