//! Engine.IO v4: the transport layer under Socket.IO (packets, polling
//! payloads, the session state machine, the upgrade to WebSocket).
//!
//! `packet`, `payload`, `sid`, `query`, `session` and `upgrade` are
//! sans-IO: no socket, no clock (time is passed in as an `Instant`).

pub mod config;
pub mod cors;
pub mod packet;
pub mod payload;
pub mod query;
pub mod session;
pub mod sid;
pub mod upgrade;

pub use config::{EngineConfig, QueueOverflow};
pub use cors::{Cors, CorsOrigin};
pub use packet::{Outgoing, Packet, PacketError, PacketType, SharedPacket, SharedPackets};
pub use query::{RequestError, TransportKind};
pub use session::{CloseReason, EngineEvent, GetAction, PostError, SendError, Session};
pub use sid::{Sid, SidGenerator};
pub use upgrade::{ProbeStatus, UpgradeRefusal};

mod polling;
pub mod server;
mod websocket;

pub use server::{
    AllowRequest, EngineHandler, EngineIo, EngineServerConfig, EngineSocket, RequestBody,
};
