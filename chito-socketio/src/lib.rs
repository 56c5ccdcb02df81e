//! Socket.IO v5 over Engine.IO v4 on chito: a server the official
//! Socket.IO clients (browser, Node, Swift, Java/Kotlin, Python, C++)
//! connect to unchanged. It passes both official protocol suites
//! (engine.io 24/24, socket.io 32/32) and is tested with
//! `socket.io-client` 4.8 in Node and in headless Chromium.
//!
//! ```no_run
//! use chito_socketio::socketio::{Ack, Data, RecoveryConfig, Socket, SocketIo};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct Auth { name: String }
//!
//! #[derive(Deserialize, Serialize)]
//! struct ChatMsg { room: String, text: String }
//!
//! # async fn run() -> std::io::Result<()> {
//! let io = SocketIo::builder()
//!     .connection_state_recovery(RecoveryConfig::default())
//!     .build();
//! // A connect handler; a CONNECT whose auth is not an `Auth` is refused
//! // with a CONNECT_ERROR.
//! io.ns("/", |socket: Socket, Data(auth): Data<Auth>| {
//!     let _ = socket.emit("welcome", &format!("hello, {}", auth.name));
//!     socket.on("join", |socket: Socket, Data(room): Data<String>| socket.join(&room));
//!     // Async handlers are spawned; `ack.send` answers with one value.
//!     socket.on("chat", |socket: Socket, Data(msg): Data<ChatMsg>, ack: Ack| async move {
//!         socket.within(&msg.room).emit("chat", &msg)?; // the room, sender included
//!         ack.send(&"ok")
//!     });
//! });
//! // Anywhere else: one emit to a room, encoded once for all its members.
//! let _ = io.to("general").emit("news", "chito-socketio is up");
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! io.serve(listener).await
//! # }
//! ```
//!
//! - [`socketio`]: the server ([`socketio::SocketIo`], built with
//!   [`socketio::SocketIoBuilder`]): static and dynamic namespaces with
//!   connect middlewares, events and acknowledgements both ways, binary
//!   attachments, rooms (`join`/`leave`, `to`/`within`/`except`/
//!   `broadcast`) on `chito::rooms` — across processes when the builder's
//!   [`rooms`](socketio::SocketIoBuilder::rooms) registry has a backplane
//!   (crate `chito-backplane`) — connection state recovery, disconnect
//!   reasons, the connect timeout. Handlers are functions of extractors
//!   ([`socketio::extract`]: `Data<T>`, `Ack`, `State<T>`, …), sync or
//!   async. Every emit is encoded once, however many sockets receive it.
//! - [`engineio`]: Engine.IO v4, sans-IO at its heart (packets, polling
//!   payloads, the session state machine with its heartbeat and write
//!   pacing, the upgrade probe), served on hyper 1 by
//!   [`engineio::EngineIo`]: long-polling and WebSocket on chito's tokio
//!   adapter (permessage-deflate as chito negotiates it), bounded queues,
//!   `max_sessions`, CORS, `allow_request`, graceful shutdown. Usable
//!   alone.
//! - [`SocketIoService`]: a server as a tower `Service`, to mount in
//!   hyper 1 or an axum router (`route_service("/socket.io/",
//!   io.service())`).
//!
//! Feature `server` (default) is everything above but the sans-IO codecs
//! (`engineio`'s packet, payload, session, upgrade; `socketio`'s packet and
//! binary), which build without it, with no hyper or tokio (the fuzz
//! targets use them so); feature `axum` builds the axum test.
//!
//! docs/socketio.md in the repository is the design, with what is done,
//! where it differs from the JavaScript server, and what is left
//! (recovery is per node; `fetch_sockets`, broadcast acks and `volatile`
//! emits do not exist yet).
#![deny(missing_docs)]

pub mod engineio;
#[cfg(feature = "server")]
pub mod service;
pub mod socketio;

#[cfg(feature = "server")]
pub use service::SocketIoService;
