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

mod backplane;
mod channels;
mod counters;
#[cfg(feature = "nats")]
mod nats;
mod presence;
mod publish;
mod receive;
#[cfg(feature = "redis")]
mod redis;
mod settings;
mod snapshot;
mod subscriptions;
mod transport;
mod wire;

pub use backplane::BrokerBackplane;
pub use counters::record_rooms_metrics;
pub use settings::{BackplaneEvent, BackplaneStats, ConnectError, JetStreamSettings, Settings};
