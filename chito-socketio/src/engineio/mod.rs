//! Engine.IO v4: the transport layer under Socket.IO (packets, polling
//! payloads, the session state machine, the upgrade to WebSocket).
//!
//! `packet`, `payload`, `sid`, `query`, `session` and `upgrade` are
//! sans-IO: no socket, no clock (time is passed in as an `Instant`).

pub mod config;
#[cfg(feature = "server")]
pub mod cors;
pub mod packet;
pub mod payload;
pub mod query;
pub mod session;
pub mod sid;
pub mod upgrade;

pub use config::{EngineConfig, QueueOverflow};
#[cfg(feature = "server")]
pub use cors::{Cors, CorsOrigin};
pub use packet::{Outgoing, Packet, PacketError, PacketType, SharedPacket, SharedPackets};
pub use query::{RequestError, TransportKind};
pub use session::{CloseReason, EngineEvent, GetAction, PostError, SendError, Session};
pub use sid::{Sid, SidGenerator};
pub use upgrade::{ProbeStatus, UpgradeRefusal};

// The I/O side (feature `server`): hyper, tokio, chito's tokio adapter.
#[cfg(feature = "server")]
mod polling;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
mod websocket;

#[cfg(feature = "server")]
pub use server::{
    AllowRequest, EngineHandler, EngineIo, EngineServerConfig, EngineSocket, RequestBody,
};
