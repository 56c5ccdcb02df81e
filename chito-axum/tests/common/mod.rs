//! What the integration tests share: the bound every test runs within, a
//! real axum server on a free loopback port, and the echo route whose
//! socket reports what it saw.
#![allow(dead_code)] // each test file uses its own part

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use axum::Router;
use chito::handshake::{Negotiated, UpgradeForm};
use chito::{CloseCode, Message, OwnedEvent};
use chito_axum::{WebSocket, WebSocketUpgrade};
use http::{Method, Version};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// The longest any one test may take, peers and installs included.
pub const BOUND: Duration = Duration::from_secs(120);

/// Runs `test` within [`BOUND`].
pub async fn bounded<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, test)
        .await
        .expect("the test did not finish within its bound")
}

/// Serves `app` with `axum::serve` on a free loopback port.
pub async fn start(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// What the server saw of one WebSocket, reported when its socket ended.
#[derive(Debug)]
pub struct Report {
    pub version: Version,
    pub method: Method,
    pub form: UpgradeForm,
    /// The request's path, without the query.
    pub path: String,
    /// What `protocols([...])` selected.
    pub selected: Option<String>,
    /// What the connection ran with.
    pub negotiated: Negotiated,
    /// The peer's close frame (code, reason), if one came.
    pub close: Option<(u16, String)>,
}

pub type Reports = mpsc::UnboundedSender<Report>;

/// The echo route: text and binary come back; the text `close, please`
/// makes the server close with 1001 instead. The server speaks `superchat`
/// and `chat`, listed in the other order than the tests' clients prefer
/// them, so that the client's order is seen to decide.
pub async fn echo(
    State(reports): State<Reports>,
    version: Version,
    method: Method,
    ws: WebSocketUpgrade,
) -> Response {
    let ws = ws.protocols(["superchat", "chat"]);
    let mut report = Report {
        version,
        method,
        form: ws.request().form(),
        path: ws.request().path().to_owned(),
        selected: ws.selected_protocol().map(str::to_owned),
        negotiated: Negotiated::default(),
        close: None,
    };
    ws.on_upgrade(move |mut socket: WebSocket| async move {
        report.negotiated = socket.connection().negotiated().clone();
        while let Ok(event) = socket.recv().await {
            let sent = match &event {
                OwnedEvent::Text(text) if text == "close, please" => {
                    socket.close(CloseCode::GoingAway, "server is done").await
                }
                OwnedEvent::Text(text) => socket.send(Message::Text(text)).await,
                OwnedEvent::Binary(bytes) => socket.send(Message::Binary(bytes)).await,
                OwnedEvent::Close(frame) => {
                    report.close = frame
                        .as_ref()
                        .map(|f| (f.code.as_u16(), f.reason.to_string()));
                    Ok(())
                }
                OwnedEvent::Ping(_) | OwnedEvent::Pong(_) => Ok(()),
            };
            if sent.is_err() {
                break;
            }
        }
        let _ = reports.send(report);
    })
}
