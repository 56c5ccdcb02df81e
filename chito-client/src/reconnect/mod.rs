//! A client that keeps one logical WebSocket connection alive across
//! server restarts, network drops and dead servers: [`ReconnectingClient`].
//!
//! A tokio task owns the connection, opened by a [`Connector`](crate::Connector)
//! (so `wss://` and proxies work as they do for a single connection), reads
//! it, and when it ends, waits and opens another. The user sends with
//! [`ReconnectingClient::send`] and reads [`ClientEvent`]s — every step is
//! one: connecting, connected, messages, disconnected (with its cause),
//! retry in N ms, gave up, closed.
//!
//! # Rules
//!
//! * **Backoff**: before retry `n` of a series the task waits a uniformly
//!   random time in `[0, min(cap, base · 2ⁿ)]` ([`Backoff`], full jitter).
//!   The first retry after a drop is jittered too (`n = 0`: up to `base`):
//!   when a server restarts, all its clients lose their connection in the
//!   same instant, and reconnecting at once would bring them back in one
//!   burst.
//! * **Series**: attempts are counted from the start, and again after any
//!   connection that stayed up `reset_after` (default 10 s). A connection
//!   that ends sooner counts as a failed attempt, so a server that accepts
//!   and drops at once is retried with growing waits and, with
//!   [`Backoff::max_attempts`], given up on.
//! * **When it reconnects**: after any close from the server (1000, 1001
//!   going away, 1011, 1012 service restart…) except a code in
//!   `final_close_codes` (default: 1008 policy violation), after transport
//!   errors (RST, EOF without a close frame: 1006), after a keepalive
//!   timeout, and after a failed attempt (the [`Disconnect::Connect`] error
//!   names the hop). It stops after the user's [`close`](ReconnectingClient::close)
//!   ([`ClientEvent::Closed`]), a final close code, the attempt limit, or a
//!   request that cannot be sent at all ([`ClientEvent::GaveUp`]; the
//!   `on_give_up` hook runs first, once).
//! * **Keepalive**: if the connector's `Config` has no `ping_interval`, the
//!   client pings every 20 s and fails the connection when nothing answers
//!   within 10 s, so a server that vanished without closing TCP (power
//!   loss, a dropped route) is noticed within 30 s. Set your own in the
//!   connector's `Config` to change it.
//! * **Messages while disconnected**: held in a bounded queue and sent on
//!   the next connection, once and in order, after what the
//!   `on_connected` hook sends ([`Outbox::Hold`], the default), or refused
//!   ([`Outbox::Reject`]).
//! * **Delivery is at most once**: a message handed to a connection (sent
//!   while connected, or a held one moved into a new connection) waits in
//!   chito's queue and the kernel's buffers until written and read; if the
//!   connection drops meanwhile it may be lost — the server may or may not
//!   have read it. It is never sent twice. Applications that need every
//!   message acknowledge them themselves.
//! * **Backpressure**: events wait in a small bounded buffer; while it is
//!   full the task stops reading the socket, so a slow reader slows the
//!   server down instead of growing memory.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use chito::{CloseCode, Message};
//! use chito_client::reconnect::{Backoff, ClientEvent, Outbox, ReconnectingClient};
//! use chito_client::Connector;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut client = ReconnectingClient::builder("ws://127.0.0.1:9001/feed", Connector::new())
//!     .backoff(
//!         Backoff::exponential(Duration::from_millis(250), Duration::from_secs(10))
//!             .max_attempts(Some(20)),
//!     )
//!     .reset_after(Duration::from_secs(5))
//!     .final_close_codes([CloseCode::PolicyViolation, CloseCode::Private(4001)])
//!     .while_disconnected(Outbox::Hold { max_messages: 100, max_bytes: 64 << 10 })
//!     .on_connected(|connected| {
//!         // Runs on every connection, before held messages are sent.
//!         let _ = connected.send(Message::Text(r#"{"subscribe":"prices"}"#));
//!     })
//!     .on_give_up(|cause| eprintln!("giving up: {cause}"))
//!     .spawn();
//!
//! client.send(Message::Text("hello")).await?;
//! while let Some(event) = client.recv().await {
//!     match event {
//!         ClientEvent::Text(text) => {
//!             if text == "bye" {
//!                 client.close(CloseCode::Normal, "done")?;
//!             }
//!         }
//!         ClientEvent::Disconnected { cause } => eprintln!("disconnected: {cause}"),
//!         ClientEvent::RetryIn { attempt, delay } => {
//!             eprintln!("attempt {attempt} in {delay:?}")
//!         }
//!         ClientEvent::GaveUp { cause } => eprintln!("{cause}"),
//!         _ => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod backoff;
mod client;
mod events;
mod outbox;

pub use backoff::Backoff;
pub use client::{
    Connected, ReconnectingClient, ReconnectingClientBuilder, DEFAULT_PING_INTERVAL,
    DEFAULT_PONG_TIMEOUT, DEFAULT_RESET_AFTER,
};
pub use events::{ClientEvent, ClientState, Disconnect, GiveUp, HoldLimit, SendError};
pub use outbox::Outbox;
