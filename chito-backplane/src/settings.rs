//! Settings, events, stats and errors: the plain types of the public API.

use std::fmt;
use std::time::Duration;

/// How a [`BrokerBackplane`](crate::BrokerBackplane) behaves. Start from
/// `Settings::default()` and change what you need.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Namespace of every channel/subject (`chito.<namespace>.…`), so
    /// several applications can share one broker. ASCII letters, digits,
    /// `_` and `-` only (it is one NATS subject token). Default `"chito"`.
    pub namespace: String,
    /// How many messages (emits, presence, snapshots) may wait for the
    /// broker. Publishing past this returns `PublishError::QueueFull`.
    /// Default 10 000.
    pub queue_messages: usize,
    /// How many payload bytes may wait for the broker. Default 64 MiB.
    pub queue_bytes: usize,
    /// How long a room stays subscribed after its last local member
    /// left (so a member who reconnects does not cause churn). Default
    /// 30 s.
    pub unsubscribe_debounce: Duration,
    /// How often this node publishes its presence snapshot (and expires
    /// other nodes'). Default 10 s.
    pub presence_period: Duration,
    /// After how many missed periods another node's members are dropped.
    /// Default 3.
    pub presence_expiry_periods: u32,
    /// The largest encoded envelope published; larger emits fail with
    /// `PublishError::TooLarge`. With NATS the server's `max_payload` is
    /// used when it is smaller. Default 1 MiB.
    pub max_payload: usize,
    /// Presence snapshots are cut into messages of at most this many bytes
    /// (and `max_payload`): small rooms share a message, a room larger
    /// than one message is split across several and put back together by
    /// the receiving nodes (which hold at most 64 MiB of incomplete rooms,
    /// 4 per node, and give up a room whose parts have not all come within
    /// the presence expiry: counted in
    /// [`BackplaneStats::snapshot_rooms_dropped`]). Default 64 KiB.
    pub snapshot_chunk_bytes: usize,
    /// How long [`BrokerBackplane::connect`](crate::BrokerBackplane::connect)
    /// waits for the broker. Default 5 s.
    pub connect_timeout: Duration,
    /// First delay between reconnect attempts (doubling up to
    /// `reconnect_max_delay`). Default 100 ms.
    pub reconnect_delay: Duration,
    /// Largest delay between reconnect attempts. Default 2 s.
    pub reconnect_max_delay: Duration,
    /// How long one publish may take before it counts as failed (and is
    /// tried again, at most three times). Default 5 s.
    pub publish_timeout: Duration,
    /// Redis: publish and subscribe with SPUBLISH/SSUBSCRIBE (sharded
    /// pub/sub, Redis 7+), which keeps a channel's traffic on the shard
    /// owning it in a Redis Cluster. Same as the `redis+sharded://` scheme.
    pub redis_sharded: bool,
    /// NATS: at-least-once delivery of room and broadcast emits through
    /// JetStream. Same as the `nats+jetstream://` scheme (which then needs
    /// this to name the node's durable consumer, or takes the default).
    pub jetstream: Option<JetStreamSettings>,
    /// Capacity of the [`BackplaneEvent`] channel. Default 256.
    pub events_capacity: usize,
}

impl Settings {
    /// How long another node's presence lives without a refresh.
    pub(crate) fn presence_expiry(&self) -> std::time::Duration {
        self.presence_period
            .saturating_mul(self.presence_expiry_periods.max(1))
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            namespace: "chito".into(),
            queue_messages: 10_000,
            queue_bytes: 64 << 20,
            unsubscribe_debounce: Duration::from_secs(30),
            presence_period: Duration::from_secs(10),
            presence_expiry_periods: 3,
            max_payload: 1 << 20,
            snapshot_chunk_bytes: 64 << 10,
            connect_timeout: Duration::from_secs(5),
            reconnect_delay: Duration::from_millis(100),
            reconnect_max_delay: Duration::from_secs(2),
            publish_timeout: Duration::from_secs(5),
            redis_sharded: false,
            jetstream: None,
            events_capacity: 256,
        }
    }
}

/// JetStream settings (NATS server 2.10 or newer: the node's consumer has
/// several filter subjects).
#[derive(Debug, Clone)]
pub struct JetStreamSettings {
    /// The node's durable consumer: a name that stays the same when the
    /// node restarts (host name, pod name…), so a restarted node resumes
    /// from its last acknowledgement. Two live nodes must not share it.
    /// Letters, digits, `_` and `-`.
    pub durable_name: String,
    /// How long the stream keeps messages: how long a node may be away and
    /// still receive what it missed. Default 30 s.
    pub max_age: Duration,
    /// The stream's window for dropping a republished `Nats-Msg-Id`.
    /// Default 30 s (at most `max_age`).
    pub duplicate_window: Duration,
    /// After (re)start, how long messages for rooms without a local member
    /// are kept unacknowledged, waiting for the members to come back
    /// (their clients reconnect and rejoin). Later such messages are
    /// acknowledged and dropped. Default 5 s.
    pub resume_grace: Duration,
    /// How long the server waits for an acknowledgement before it
    /// redelivers. Default 5 s.
    pub ack_wait: Duration,
    /// Keep the stream in files rather than memory (survives a NATS server
    /// restart). Default false.
    pub file_storage: bool,
}

impl Default for JetStreamSettings {
    fn default() -> Self {
        JetStreamSettings {
            durable_name: String::new(),
            max_age: Duration::from_secs(30),
            duplicate_window: Duration::from_secs(30),
            resume_grace: Duration::from_secs(5),
            ack_wait: Duration::from_secs(5),
            file_storage: false,
        }
    }
}

/// What happened to the broker connection, for the application (e.g. to
/// tell its clients to resync after a gap).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackplaneEvent {
    /// Connected (again) to the broker: subscriptions and the presence
    /// snapshot have been sent again.
    Connected,
    /// Lost the broker: local delivery goes on, publishes wait in the queue
    /// until it is full, then are dropped.
    Disconnected {
        /// What the client library said, or `"shut down"` after
        /// `BrokerBackplane::shutdown`.
        reason: String,
    },
    /// Publishes were dropped because the queue was full (broker away or
    /// too slow): remote members missed them.
    Lagged {
        /// How many since the last `Lagged`.
        dropped: u64,
    },
    /// A publish failed for good after its retries.
    PublishFailed {
        /// The last error.
        reason: String,
    },
    /// The broker dropped messages for this node (NATS slow consumer).
    SlowConsumer,
}

/// Counters since [`BrokerBackplane::connect`](crate::BrokerBackplane::connect).
/// The same numbers go to the `metrics` facade as `chito_backplane_*`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackplaneStats {
    /// Broker messages published (an emit to N rooms is N publishes).
    pub published: u64,
    /// Emits and presence messages dropped because the queue was full.
    pub publish_dropped_queue_full: u64,
    /// Emits refused as larger than `max_payload`.
    pub publish_too_large: u64,
    /// Publish attempts that failed (each is retried up to three times).
    pub publish_failed: u64,
    /// Broker messages received.
    pub received: u64,
    /// Received emits delivered to local members.
    pub delivered: u64,
    /// Received emits that were this node's own.
    pub own_echoes: u64,
    /// Received emits already delivered (several rooms, redelivery).
    pub duplicates: u64,
    /// Received messages that did not decode (counted and dropped).
    pub bad_envelopes: u64,
    /// Other nodes' rooms whose snapshot parts did not all arrive (lost,
    /// superseded by a newer round, too old, or beyond the memory bound),
    /// given up: the room is refreshed by a later snapshot.
    pub snapshot_rooms_dropped: u64,
    /// Presence messages (deltas, snapshots, goodbyes) received from other nodes.
    pub presence_in: u64,
    /// Presence messages published.
    pub presence_out: u64,
    /// Channels/subjects this node holds a subscription to now.
    pub subscriptions: u64,
    /// Messages waiting in the publish queue now.
    pub queued: u64,
    /// Whether the broker connection is up now.
    pub connected: bool,
    /// Times the connection came back after a loss.
    pub reconnects: u64,
    /// Broker payload bytes received.
    pub bytes_in: u64,
    /// Broker payload bytes published.
    pub bytes_out: u64,
}

impl BackplaneStats {
    /// The counters as a JSON object (no dependency needed), e.g. for a
    /// `/stats` endpoint.
    pub fn to_json(&self) -> String {
        format!(
            concat!(
                "{{\"published\":{},\"publish_dropped_queue_full\":{},\"publish_too_large\":{},",
                "\"publish_failed\":{},\"received\":{},\"delivered\":{},\"own_echoes\":{},",
                "\"duplicates\":{},\"bad_envelopes\":{},\"snapshot_rooms_dropped\":{},",
                "\"presence_in\":{},\"presence_out\":{},",
                "\"subscriptions\":{},\"queued\":{},\"connected\":{},\"reconnects\":{},",
                "\"bytes_in\":{},\"bytes_out\":{}}}"
            ),
            self.published,
            self.publish_dropped_queue_full,
            self.publish_too_large,
            self.publish_failed,
            self.received,
            self.delivered,
            self.own_echoes,
            self.duplicates,
            self.bad_envelopes,
            self.snapshot_rooms_dropped,
            self.presence_in,
            self.presence_out,
            self.subscriptions,
            self.queued,
            self.connected,
            self.reconnects,
            self.bytes_in,
            self.bytes_out
        )
    }
}

/// Why [`BrokerBackplane::connect`](crate::BrokerBackplane::connect) failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL's scheme is not one this build supports (`redis://`,
    /// `redis+sharded://` with feature `redis`; `nats://`,
    /// `nats+jetstream://` with feature `nats`).
    UnsupportedScheme(String),
    /// A setting is not usable (e.g. a namespace with a `.`).
    InvalidSettings(String),
    /// The broker could not be reached or refused us.
    Broker(String),
    /// No connection within `connect_timeout`.
    Timeout,
    /// Not called inside a tokio runtime.
    NoRuntime,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::UnsupportedScheme(s) => write!(f, "unsupported backplane URL: {s}"),
            ConnectError::InvalidSettings(s) => write!(f, "invalid backplane settings: {s}"),
            ConnectError::Broker(s) => write!(f, "broker: {s}"),
            ConnectError::Timeout => write!(f, "broker connection timed out"),
            ConnectError::NoRuntime => write!(f, "connect must run inside a tokio runtime"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// True for a name usable as one NATS subject token and a JetStream name.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
