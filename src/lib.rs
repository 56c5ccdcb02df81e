//! # chito — a sans-IO WebSocket core
//!
//! chito implements RFC 6455 as a state machine that never touches a socket
//! or a clock: bytes in, events out; messages in, bytes out. Thin adapters
//! run it over blocking streams ([`blocking`]); the same core runs on any
//! transport you drive yourself.
//!
//! - [`frame`]: the wire format of a frame header (§5.2).
//! - [`mask`]: client-to-server masking (§5.3).
//! - [`close`]: close codes and close frames (§5.5.1, §7.4).
//! - [`connection`]: the state machine — fragmentation, control frames,
//!   UTF-8, limits, the closing handshake, keepalive timers (§5–§8).
//! - [`handshake`]: the HTTP/1.1 opening handshake, both roles (§4).
//! - `deflate` (feature `deflate`, on by default): permessage-deflate
//!   (RFC 7692) negotiation and per-message compression with bounded memory.
//! - [`handler`]: the event trait ([`Handler`]) driven by the adapters.
//! - [`blocking`]: the adapter for any `Read + Write`.
//! - `tokio` (feature `tokio`): the adapter for any `AsyncRead + AsyncWrite`.
//! - `rooms` (feature `rooms`): named groups of connections; a message for
//!   many members is encoded once.
//!
//! ```
//! use chito::{Config, Connection, Event, Role};
//!
//! let mut client = Connection::new(Role::Client, Config::default());
//! let mut server = Connection::new(Role::Server, Config::default());
//! client.send_text("hello").unwrap();
//! server.feed(client.pending_output());
//! let n = client.pending_output().len();
//! client.consume_output(n);
//! assert_eq!(server.poll_event().unwrap(), Some(Event::Text("hello")));
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod blocking;
pub mod close;
pub mod config;
pub mod connection;
#[cfg(feature = "deflate")]
pub mod deflate;
pub mod error;
pub mod frame;
pub mod handler;
pub mod handshake;
pub mod mask;
mod rand;
mod role;
#[cfg(feature = "rooms")]
pub mod rooms;
#[cfg(feature = "tokio")]
pub mod tokio;
mod utf8;

pub use close::{CloseCode, CloseFrame};
pub use config::{Config, Overflow};
pub use connection::{Connection, Event, Message, MessageKind, OwnedEvent, Role, Sender, State};
pub use error::{Error, ProtocolError, Timeout, UsageError};
pub use handler::Handler;
pub use handshake::Negotiated;

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(all(doctest, feature = "rooms", feature = "deflate"))]
pub struct ReadmeDoctests;
