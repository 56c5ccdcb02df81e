//! Socket.IO v5 over Engine.IO v4 on chito: the server the official
//! Socket.IO clients (browser, Node, Swift, Java/Kotlin, Python, C++)
//! connect to unchanged.
//!
//! In progress (issue #13); docs/socketio.md is the design and says what
//! is still to come. What exists:
//!
//! - [`engineio`]: Engine.IO v4, sans-IO at its heart (packets, polling
//!   payloads, the session state machine with its heartbeat, the upgrade
//!   probe), served on hyper 1 by [`engineio::EngineIo`]: long-polling and
//!   WebSocket on chito's tokio adapter, bounded queues, `max_sessions`,
//!   CORS, `allow_request`, graceful shutdown. It passes the official
//!   engine.io protocol suite (24/24, `tests/engineio_suite.rs`).
//! - [`socketio`]: Socket.IO v5 packets and binary attachments (sans-IO),
//!   and the server on Engine.IO: [`socketio::SocketIo`], namespaces
//!   (static and dynamic) with connect middleware, `Socket::on`/`emit`/
//!   `emit_with_ack`, acknowledgements both ways, rooms local to the
//!   process, broadcasts encoded once, disconnect reasons. It passes the
//!   official socket.io protocol suite (32/32, `tests/socketio_suite.rs`).
//! - Handlers are functions of extractors ([`socketio::extract`]: `Data<T>`,
//!   `Ack`, `State<T>`, …), sync or async; [`SocketIoService`] mounts a
//!   server in hyper 1 or axum as a tower `Service`.
#![deny(missing_docs)]

pub mod engineio;
pub mod service;
pub mod socketio;

pub use service::SocketIoService;
