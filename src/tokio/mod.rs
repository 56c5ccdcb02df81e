//! Tokio adapter: runs a [`crate::Connection`] over any
//! `AsyncRead + AsyncWrite + Unpin` (a `TcpStream`, a TLS stream, hyper's
//! upgraded connection).
//!
//! This module only moves bytes and runs timers; the protocol lives in the
//! core. One task owns the socket and drives the connection — either
//! [`WebSocket::serve`] with a [`crate::Handler`], or a loop around
//! [`WebSocket::recv`]. Any number of other tasks send through a cloneable
//! [`Handle`] into a queue bounded in bytes; the owning task wakes,
//! encodes what is queued and writes everything pending in one `write`.
//!
//! Memory: while a connection waits for input with nothing half-received
//! it holds no read or write buffer (`read`). Files: `builder` (the
//! opening handshake and settings), `driver` (the socket's task), `read`;
//! the [`Handle`] with its queue and the [`Shutdown`] coordinator are
//! runtime-independent and shared with any other driver.
//!
//! ```no_run
//! use chito::{Handler, Message, Sender};
//!
//! struct Echo;
//! impl Handler for Echo {
//!     fn on_message(&mut self, sender: &mut Sender<'_>, message: Message<'_>) {
//!         let _ = sender.send(message);
//!     }
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
//! loop {
//!     let (stream, _) = listener.accept().await?;
//!     ::tokio::spawn(async move {
//!         let Ok(ws) = chito::tokio::Builder::new(stream).accept().await else {
//!             return;
//!         };
//!         ws.serve(&mut Echo).await;
//!     });
//! }
//! # }
//! ```
//!
//! # `futures`: `Stream` and `Sink`
//!
//! With the `futures` feature, [`WebSocket`] and [`ReadHalf`] are
//! `futures::Stream`s of `Result<OwnedEvent, Error>` (the peer's close is
//! an event; `None` once the connection has ended; an error comes once,
//! then `None`), and [`WebSocket`] and [`Handle`] are `futures::Sink`s of
//! [`Message`](crate::Message), so code written for tokio-tungstenite or
//! axum ports as it is. [`WebSocket::split`] gives the sender first, as
//! `StreamExt::split` does. Where an inherent method has the name of a
//! `SinkExt` one, the inherent one is called: `sender.send(message)` on a
//! [`Handle`] is [`Handle::send`] (it waits for room in the queue, not for
//! the write; `SinkExt::send(&mut sender, message)` waits for both), and
//! `sender.close()` does not compile — the inherent `close` takes a code
//! and a reason; `SinkExt::close(&mut sender)` sends 1000.
//!
//! ```no_run
//! # #[cfg(feature = "futures")]
//! # async fn run(ws: chito::tokio::WebSocket<tokio::net::TcpStream>) {
//! use chito::{Message, OwnedEvent};
//! use futures_util::{SinkExt, StreamExt};
//!
//! let (mut sender, mut receiver) = ws.split();
//! // The sender is a cloneable `Handle`: any task can own it.
//! let mut send_task = ::tokio::spawn(async move {
//!     for i in 0..10 {
//!         let text = format!("tick {i}");
//!         if sender.send(Message::Text(&text)).await.is_err() {
//!             return;
//!         }
//!     }
//!     let _ = SinkExt::close(&mut sender).await;
//! });
//! // The receiver drives the connection: keep polling it.
//! let mut recv_task = ::tokio::spawn(async move {
//!     while let Some(Ok(event)) = receiver.next().await {
//!         match event {
//!             OwnedEvent::Text(text) => println!("{text}"),
//!             OwnedEvent::Close(_) => break,
//!             _ => {}
//!         }
//!     }
//! });
//! ::tokio::select! {
//!     _ = &mut send_task => recv_task.await.unwrap_or_default(),
//!     _ = &mut recv_task => send_task.abort(),
//! }
//! # }
//! ```

mod builder;
mod driver;
mod read;

use ::tokio::net::TcpStream;

pub use crate::handle::{Handle, Overflow, QueueError};
pub use crate::shutdown::Shutdown;
pub use builder::Builder;
pub use driver::{ReadHalf, WebSocket};

use crate::adapter;
use crate::config::Config;
use crate::error::Error;
use crate::handshake::UpgradeResponse;

/// Connects to a `ws://` URL over TCP and performs the client handshake.
///
/// Plain TCP only, no proxy. `wss://`, HTTP and SOCKS5 proxies and a
/// client that reconnects are the `chito-client` crate's (it keeps rustls
/// out of chito); or open a TLS stream yourself and use
/// [`Builder::connect`].
///
/// # Errors
/// [`Error::Request`] for a bad URL or a `wss://` URL; [`Error::Handshake`] if the server
/// refused; [`Error::Io`].
pub async fn connect(url: &str) -> Result<(WebSocket<TcpStream>, UpgradeResponse), Error> {
    connect_with(url, Config::default()).await
}

/// [`connect`] with a [`Config`].
///
/// # Errors
/// As [`connect`].
pub async fn connect_with(
    url: &str,
    config: Config,
) -> Result<(WebSocket<TcpStream>, UpgradeResponse), Error> {
    let (addr, request) = adapter::tcp_target(url)?;
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Builder::new(stream).config(config).connect(&request).await
}

#[cfg(test)]
mod size_guard {
    use std::future::Future;

    fn size_of_future<F: Future>(_: &F) -> usize {
        std::mem::size_of::<F>()
    }

    struct Quiet;
    impl crate::Handler for Quiet {}

    /// Every idle connection is a task holding these futures: a stack
    /// array or an unboxed handshake here costs every connection. The
    /// accept-then-serve task of the examples is kept to 152 bytes: tokio
    /// allocates a task in steps of 128 bytes with about 100 bytes of its
    /// own, so 152 fits a 256-byte task and 160 would take 384.
    #[test]
    fn per_connection_futures_stay_small() {
        let runtime = ::tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let listener = ::tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .unwrap();
            let addr = listener.local_addr().unwrap();
            let _client = ::tokio::net::TcpStream::connect(addr).await.unwrap();
            let (stream, _) = listener.accept().await.unwrap();
            let task = async move {
                let Ok(ws) = super::Builder::new(stream).accept().await else {
                    return;
                };
                ws.serve(&mut Quiet).await;
            };
            // Debug builds are a little larger (tokio's stream carries more
            // there, and futures are laid out less tightly).
            let debug = cfg!(debug_assertions);
            let bound = if debug { 168 } else { 152 };
            assert!(
                size_of_future(&task) <= bound,
                "task {}",
                size_of_future(&task)
            );
            drop(task);

            let _client = ::tokio::net::TcpStream::connect(addr).await.unwrap();
            let (stream, _) = listener.accept().await.unwrap();
            let ws = super::Builder::new(stream).upgraded(crate::Connection::new(
                crate::Role::Server,
                crate::Config::shared_default(),
            ));
            assert!(
                std::mem::size_of_val(&ws) <= if debug { 80 } else { 72 },
                "WebSocket {}",
                std::mem::size_of_val(&ws)
            );
            let mut handler = Quiet;
            let serve = ws.serve(&mut handler);
            assert!(
                size_of_future(&serve) <= if debug { 120 } else { 112 },
                "serve {}",
                size_of_future(&serve)
            );
        });
    }
}
