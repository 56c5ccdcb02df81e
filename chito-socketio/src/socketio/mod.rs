//! Socket.IO v5: packets, binary attachments, namespaces, sockets,
//! acknowledgements, and the [`SocketIo`] server on Engine.IO.

#[cfg(feature = "server")]
pub mod ack;
#[cfg(feature = "server")]
pub mod args;
pub mod binary;
#[cfg(feature = "server")]
pub mod broadcast;
#[cfg(feature = "server")]
mod client;
#[cfg(feature = "server")]
pub mod extract;
#[cfg(feature = "server")]
pub mod handler;
#[cfg(feature = "server")]
pub mod io;
#[cfg(feature = "server")]
pub mod namespace;
pub mod packet;
#[cfg(feature = "server")]
mod recovery;
#[cfg(feature = "server")]
mod rooms;
#[cfg(feature = "server")]
pub mod socket;

#[cfg(feature = "server")]
pub use ack::{AckError, AckFuture};
#[cfg(feature = "server")]
pub use args::{Args, ArgsError};
pub use binary::Binary;
#[cfg(feature = "server")]
pub use broadcast::BroadcastOperator;
#[cfg(feature = "server")]
pub use extract::{
    Bin, Data, Event, Extension, Extensions, FromConnect, FromDisconnect, FromEvent, Rejection,
    State, TryData,
};
#[cfg(feature = "server")]
pub use handler::{
    ConnectHandler, ConnectMiddleware, DisconnectHandler, EventHandler, HandlerResult, HandlerStats,
};
#[cfg(feature = "server")]
pub use io::{DynNamespaceRef, NamespaceRef, SocketIo, SocketIoBuilder, SocketIoConfig};
#[cfg(feature = "server")]
pub use namespace::ConnectError;
#[cfg(feature = "server")]
pub use recovery::RecoveryConfig;
#[cfg(feature = "server")]
pub use socket::{Ack, DisconnectReason, EmitError, Socket};
