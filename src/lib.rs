//! # chito — a sans-IO WebSocket core
//!
//! chito implements RFC 6455 (and RFC 7692, permessage-deflate) as state
//! machines that never touch a socket or a clock: bytes in, events out;
//! messages in, bytes out. Thin adapters run them over blocking streams
//! ([`blocking`]) and tokio (`tokio`); the same core runs on any transport
//! you drive yourself.
//!
//! The core, from the leaves up (a module imports only from below it):
//! - [`frame`]: the wire format of a frame header (§5.2); [`mask`]:
//!   client-to-server masking (§5.3); [`close`]: close codes and frames
//!   (§5.5.1, §7.4); [`Role`]: which end this is (§5.1).
//! - `deflate` (feature `deflate`, on by default): permessage-deflate
//!   (RFC 7692): configuration, negotiation, codec, state pool.
//! - [`config`]: the protocol's limits and timers.
//! - [`handshake`]: the opening handshake, both roles, as state machines
//!   (§4).
//! - [`connection`]: the connection — fragmentation, control frames,
//!   UTF-8, limits, the closing handshake and the transport's end,
//!   keepalive timers, encode-once broadcast frames (§5–§8).
//!
//! Above the core: [`handler`] (the event trait the adapters drive),
//! [`error`] (the adapters' error), [`blocking`] and `tokio` (the
//! adapters), `uring` (feature `uring`, Linux: a completion-based server
//! loop over io_uring), `rooms` (feature `rooms`: named groups of connections, a
//! message for many encoded once). ARCHITECTURE.md draws how bytes flow.
//!
//! ```
//! use chito::{Config, Connection, Event, Message, Role};
//!
//! let mut client = Connection::new(Role::Client, Config::default());
//! let mut server = Connection::new(Role::Server, Config::default());
//! client.sender().send(Message::Text("hello")).unwrap();
//! server.feed(client.pending_output());
//! let n = client.pending_output().len();
//! client.consume_output(n);
//! let (event, _reply) = server.poll_event().unwrap().unwrap();
//! assert_eq!(event, Event::Text("hello"));
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Peer data must never make chito panic: outside tests, no indexing or
// slicing that can panic, no unwrap/expect, no explicit panics. Where an
// invariant makes an access safe, the code shows it (a checked accessor
// with a `debug_assert!`, or a type), rather than hiding it.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::string_slice,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

mod adapter;
pub mod blocking;
pub mod close;
pub mod config;
pub mod connection;
#[cfg(feature = "deflate")]
pub mod deflate;
pub mod error;
pub mod frame;
#[cfg(any(feature = "tokio", all(feature = "uring", target_os = "linux")))]
mod handle;
pub mod handler;
pub mod handshake;
pub mod mask;
mod rand;
mod role;
#[cfg(feature = "rooms")]
pub mod rooms;
#[cfg(any(feature = "tokio", all(feature = "uring", target_os = "linux")))]
mod shutdown;
#[cfg(feature = "tokio")]
pub mod tokio;
#[cfg(all(feature = "uring", target_os = "linux"))]
pub mod uring;
mod utf8;

pub use close::{CloseCode, CloseFrame};
pub use config::Config;
pub use connection::{
    CloseStep, Connection, ConnectionError, Event, InternalError, Message, MessageKind, OwnedEvent,
    ProtocolError, SendError, Sender, SharedBatch, SharedMessage, State, UsageError,
};
pub use error::{Error, Timeout};
pub use handler::Handler;
pub use role::Role;

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(all(doctest, feature = "rooms", feature = "deflate"))]
pub struct ReadmeDoctests;
