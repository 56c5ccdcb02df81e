//! `SocketIo::service()` routed by axum (feature `axum`): one port serves
//! an application route and Socket.IO, over long-polling (axum's `Body`
//! read as the POST bodies) and over WebSocket (hyper's `OnUpgrade` taken
//! from the request's extensions under `axum::serve`).

#![cfg(feature = "axum")]

use std::net::SocketAddr;
use std::time::Duration;

use chito::{Message, OwnedEvent};
use chito_socketio::socketio::{Ack, Data, Socket, SocketIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start() -> SocketAddr {
    let io = SocketIo::builder().max_payload(1_000).build();
    io.ns("/", |socket: Socket| {
        socket.on("double", |Data(n): Data<u64>, ack: Ack| {
            let _ = ack.send(&(n * 2));
        });
    });
    let app = axum::Router::new()
        .route("/health", axum::routing::get(|| async { "ok" }))
        .route_service("/socket.io/", io.service());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// One HTTP/1.1 request (`Connection: close`): the status and body.
async fn request(addr: SocketAddr, method: &str, target: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_axum_router_serves_its_routes_and_socketio_over_polling() {
    let addr = start().await;
    assert_eq!(
        request(addr, "GET", "/health", "").await,
        (200, "ok".to_owned())
    );
    assert_eq!(request(addr, "GET", "/elsewhere", "").await.0, 404);

    let (status, open) = request(addr, "GET", "/socket.io/?EIO=4&transport=polling", "").await;
    assert_eq!(status, 200);
    let sid = open
        .strip_prefix("0{\"sid\":\"")
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("not an open packet: {open}"))
        .to_owned();
    let target = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    assert_eq!(
        request(addr, "POST", &target, "40").await,
        (200, "ok".to_owned())
    );
    let (_, connected) = request(addr, "GET", &target, "").await;
    assert!(connected.starts_with("40{\"sid\":"), "{connected}");
    assert_eq!(
        request(addr, "POST", &target, r#"421["double",21]"#).await,
        (200, "ok".to_owned())
    );
    assert_eq!(
        request(addr, "GET", &target, "").await,
        (200, "431[42]".to_owned())
    );
    // axum's Body is bounded by maxPayload as hyper's is: 413.
    let big = format!(r#"42["double","{}"]"#, "x".repeat(2_000));
    assert_eq!(request(addr, "POST", &target, &big).await.0, 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_axum_router_upgrades_socketio_websockets() {
    let addr = start().await;
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = chito::tokio::connect(&url).await.unwrap();
    let mut texts = Vec::new();
    ws.send(Message::Text("40")).await.unwrap();
    ws.send(Message::Text(r#"427["double",4]"#)).await.unwrap();
    while texts.len() < 3 {
        let event = tokio::time::timeout(Duration::from_secs(5), ws.recv())
            .await
            .expect("a message within 5 s")
            .unwrap();
        if let OwnedEvent::Text(text) = event {
            texts.push(text.to_string());
        }
    }
    assert!(texts[0].starts_with("0{\"sid\":"), "{texts:?}");
    assert!(texts[1].starts_with("40{\"sid\":"), "{texts:?}");
    assert_eq!(texts[2], "437[8]");
}
