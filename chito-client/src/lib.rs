//! A WebSocket client on [chito] for real networks.
//!
//! chito's own `chito::tokio::connect` opens plain TCP to a `ws://` URL and
//! leaves everything else to the caller. This crate is what a client needs
//! between it and a server on the Internet:
//!
//! * [`Connector`]: `ws://` and `wss://` (rustls, feature `rustls`), through
//!   an HTTP CONNECT or SOCKS5 proxy chosen explicitly or from the
//!   environment; every failure names the hop that failed
//!   ([`ConnectError`]).
//! * [`Connector::connect_blocking`]: the same routes and errors for
//!   blocking code, on chito's blocking adapter ([`BlockingStream`]).
//! * [`reconnect::ReconnectingClient`]: one logical connection kept alive
//!   across drops, with backoff, hooks and a bounded hold queue.
//!
//! The protocol itself (handshake, frames, keepalive pings) is chito's; this
//! crate only opens the transport and hands it to chito's tokio adapter.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use chito::{Message, OwnedEvent};
//!
//! let (mut ws, _response) = chito_client::Connector::new()
//!     .connect("ws://127.0.0.1:9001/feed")
//!     .await?;
//! ws.send(Message::Text("hello")).await?;
//! while let Ok(event) = ws.recv().await {
//!     if let OwnedEvent::Text(text) = event {
//!         println!("{text}");
//!     }
//! }
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod blocking;
mod connector;
mod error;
mod proxy;
pub mod reconnect;
mod stream;
mod tls;

pub use blocking::BlockingStream;
pub use connector::Connector;
pub use error::ProxyError;
pub use error::{ConnectError, Hop};
pub use proxy::{Proxy, ProxyUrlError, SocksReply};
pub use stream::ClientStream;
pub use tls::TlsError;
