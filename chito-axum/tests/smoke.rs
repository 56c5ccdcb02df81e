//! The extractor behind a real axum server, HTTP/1.1, chito's client.

use axum::{response::Response, routing::get, Router};
use chito::{Message, OwnedEvent};
use chito_axum::{WebSocket, WebSocketUpgrade};

async fn echo(ws: WebSocketUpgrade) -> Response {
    ws.protocols(["echo"]).on_upgrade(run)
}

async fn run(mut socket: WebSocket) {
    while let Ok(event) = socket.recv().await {
        let sent = match &event {
            OwnedEvent::Text(text) => socket.send(Message::Text(text)).await,
            OwnedEvent::Binary(bytes) => socket.send(Message::Binary(bytes)).await,
            _ => Ok(()),
        };
        if sent.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn echo_through_axum() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/ws", get(echo));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (mut ws, response) = chito::tokio::connect(&format!("ws://{addr}/ws"))
        .await
        .unwrap();
    let _ = response;
    ws.send(Message::Text("hello")).await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), OwnedEvent::Text("hello".into()));
    ws.close(chito::CloseCode::Normal, "").await.unwrap();
    assert!(matches!(ws.recv().await.unwrap(), OwnedEvent::Close(_)));
}

/// With the `futures` feature the socket is a `Stream` and a `Sink`, and
/// `split()` gives (sender, receiver) as axum's own does.
#[cfg(feature = "futures")]
#[tokio::test]
async fn stream_and_sink_through_axum() {
    use futures_util::{SinkExt, StreamExt};

    async fn split_echo(ws: WebSocketUpgrade) -> Response {
        ws.on_upgrade(|socket| async move {
            let (mut sender, mut receiver) = socket.split();
            while let Some(Ok(event)) = receiver.next().await {
                if let OwnedEvent::Text(text) = event {
                    if SinkExt::send(&mut sender, Message::Text(&text))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        })
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/ws", get(split_echo));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (mut ws, _) = chito::tokio::connect(&format!("ws://{addr}/ws"))
        .await
        .unwrap();
    for i in 0..10 {
        ws.send(Message::Text(&format!("m{i}"))).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            OwnedEvent::Text(format!("m{i}"))
        );
    }
    SinkExt::close(&mut ws).await.unwrap();
    assert!(matches!(ws.next().await, Some(Ok(OwnedEvent::Close(_)))));
    assert!(ws.next().await.is_none());
}
