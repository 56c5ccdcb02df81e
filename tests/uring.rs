//! The io_uring server (`chito::uring`) over loopback, with chito's tokio
//! client: echoes of every shape, many connections, handles from other
//! threads and tasks, rooms, timers, shutdown, refusals, a panicking
//! handler. Every wait is bounded.
#![cfg(all(feature = "uring", feature = "tokio", target_os = "linux"))]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chito::handshake::{Accept, Rejection};
use chito::uring::{Handle, Server, ServerHandle, Shutdown};
use chito::{CloseCode, CloseFrame, Config, Error, Handler, Message, OwnedEvent, Sender};

const WAIT: Duration = Duration::from_secs(20);

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, sender: &mut Sender<'_>, message: Message<'_>) {
        let _ = sender.send(message);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `future` on a fresh runtime, bounded by [`WAIT`].
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    runtime().block_on(async move {
        tokio::time::timeout(WAIT, future)
            .await
            .expect("client timed out")
    })
}

fn echo_server() -> ServerHandle {
    Server::bind("127.0.0.1:0")
        .unwrap()
        .spawn(|_open: &mut chito::uring::Open<'_>| Echo)
        .unwrap()
}

fn url(addr: SocketAddr) -> String {
    format!("ws://{addr}/echo")
}

/// Reads events until a message (pings and pongs are skipped).
async fn next_message(ws: &mut chito::tokio::WebSocket<tokio::net::TcpStream>) -> OwnedEvent {
    loop {
        match ws.recv().await.expect("recv") {
            OwnedEvent::Ping(_) | OwnedEvent::Pong(_) => {}
            other => return other,
        }
    }
}

#[test]
fn echoes_text_binary_and_large_messages() {
    let server = echo_server();
    let url = url(server.local_addr());
    block_on(async move {
        let (mut ws, _) = chito::tokio::connect(&url).await.unwrap();
        ws.send(Message::Text("hello")).await.unwrap();
        assert_eq!(
            next_message(&mut ws).await,
            OwnedEvent::Text("hello".into())
        );
        ws.send(Message::Binary(&[0, 1, 2, 255])).await.unwrap();
        assert_eq!(
            next_message(&mut ws).await,
            OwnedEvent::Binary(vec![0, 1, 2, 255])
        );
        // 1 MiB: 256 provided buffers' worth, echoed in one message.
        let large: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        ws.send(Message::Binary(&large)).await.unwrap();
        assert_eq!(next_message(&mut ws).await, OwnedEvent::Binary(large));
        ws.close(CloseCode::Normal, "bye").await.unwrap();
        match ws.recv().await.unwrap() {
            OwnedEvent::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Normal),
            other => panic!("{other:?}"),
        }
    });
}
