//! Socket.IO v5: packets, binary attachments, namespaces, sockets,
//! acknowledgements, and the [`SocketIo`] server on Engine.IO.

pub mod ack;
pub mod args;
pub mod binary;
pub mod broadcast;
mod client;
pub mod extract;
pub mod handler;
pub mod io;
pub mod namespace;
pub mod packet;
mod recovery;
mod rooms;
pub mod socket;

pub use ack::{AckError, AckFuture};
pub use args::{Args, ArgsError};
pub use binary::Binary;
pub use broadcast::BroadcastOperator;
pub use extract::{
    Bin, Data, Event, Extension, Extensions, FromConnect, FromDisconnect, FromEvent, Rejection,
    State, TryData,
};
pub use handler::{
    ConnectHandler, ConnectMiddleware, DisconnectHandler, EventHandler, HandlerResult, HandlerStats,
};
pub use io::{DynNamespaceRef, NamespaceRef, SocketIo, SocketIoBuilder, SocketIoConfig};
pub use namespace::ConnectError;
pub use recovery::RecoveryConfig;
pub use socket::{Ack, DisconnectReason, EmitError, Socket};
