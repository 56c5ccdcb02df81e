//! The embedding examples, exercised: hyper answers the upgrade and hands
//! the connection to chito; wss over tokio-rustls.
#![cfg(feature = "tokio")]

#[allow(dead_code)]
#[path = "../examples/hyper_upgrade.rs"]
mod hyper_upgrade;

#[allow(dead_code)]
#[path = "../examples/tls_echo.rs"]
mod tls_echo;

use chito::{CloseCode, Message, OwnedEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn hyper_upgrade_hands_over_to_chito() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(hyper_upgrade::run(listener));
    // A WebSocket client, with permessage-deflate negotiated through hyper.
    let (mut ws, response) = chito::tokio::connect(&format!("ws://{addr}/ws"))
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    #[cfg(feature = "deflate")]
    assert!(ws.connection().negotiated().deflate.is_some());
    for i in 0..20 {
        let text = format!("message {i} {}", "x".repeat(i * 50));
        ws.send(Message::Text(&text)).await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), OwnedEvent::Text(text));
    }
    ws.close(CloseCode::Normal, "").await.unwrap();
    assert!(matches!(ws.recv().await.unwrap(), OwnedEvent::Close(_)));
    // Plain HTTP still works, and a bad upgrade gets chito's refusal via hyper.
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 12\r\n\r\n")
        .await
        .unwrap();
    let mut reply = vec![0u8; 1024];
    let n = stream.read(&mut reply).await.unwrap();
    let reply = String::from_utf8_lossy(&reply[..n]);
    assert!(reply.starts_with("HTTP/1.1 426"), "{reply}");
    assert!(
        reply
            .to_ascii_lowercase()
            .contains("sec-websocket-version: 13"),
        "{reply}"
    );
}

#[tokio::test]
async fn wss_over_tokio_rustls() {
    let (server_config, client_config) = tls_echo::tls_configs();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(tls_echo::serve(listener, server_config));
    let replies = tls_echo::client(port, client_config, &["one", "two", "three"])
        .await
        .unwrap();
    assert_eq!(replies, ["one", "two", "three"]);
}
