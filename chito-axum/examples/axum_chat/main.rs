//! The browser chat of `examples/chat` served by axum:
//! `cargo run -p chito-axum --example axum_chat --features rooms --
//! 127.0.0.1:8080`, then open http://127.0.0.1:8080/ in a few browser tabs.
//!
//! The same page, JSON protocol, rooms and presence as `examples/chat`
//! (both include `examples/chat/chat.rs`), but axum parses HTTP and routes:
//! one `Router` serves the page at `/` and the WebSocket at `/ws`, where
//! `chito_axum::WebSocketUpgrade` validates the handshake (permessage-deflate
//! is negotiated with browsers that offer it) and each socket's `Handle`
//! joins chito's `Rooms`.
//!
//! Pass `127.0.0.1:0` to let the system choose a port; the first line
//! printed names the address in use.

#[path = "../../../examples/chat/chat.rs"]
mod chat;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Extension, Router};
use chat::Member;
use chito::rooms::Rooms;
use chito::Config;
use chito_axum::WebSocketUpgrade;

/// What every request handler shares.
#[derive(Clone)]
struct Chat {
    rooms: Rooms,
    /// One config for every connection, shared rather than cloned.
    config: Arc<Config>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;
    println!("chat server listening on http://{local}/");

    let chat = Chat {
        rooms: Rooms::new(),
        config: Arc::new(chat::config()),
    };
    chat::announce_members(&chat.rooms);

    let app = Router::new()
        .route("/", get(page))
        .route("/index.html", get(page))
        // `any`, not `get`: a WebSocket over HTTP/2 (RFC 8441) is a CONNECT.
        .route("/ws", any(socket))
        // The extractor checks the handshake's head against the limits of
        // an `Arc<Config>` it finds here, so one config governs both the
        // handshake and the connection, as in examples/chat.
        .layer(Extension(Arc::clone(&chat.config)))
        .with_state(chat);
    // The peer's address, for the log lines about abnormal closes.
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service).await
}

async fn page() -> Response {
    // axum turns header pairs it cannot use into a 500; these are constants.
    (chat::PAGE_HEADERS, chat::INDEX_HTML).into_response()
}

async fn socket(
    ws: WebSocketUpgrade,
    State(chat): State<Chat>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
) -> Response {
    // HTTP/1.1 names the host in `Host`; HTTP/2 in `:authority`, which
    // hyper keeps in the request's URI.
    let request = ws.request();
    let host = request
        .header_str("Host")
        .or_else(|| uri.authority().map(|authority| authority.as_str()));
    if !chat::same_origin(request.header_str("Origin"), host) {
        return (StatusCode::FORBIDDEN, "cross-origin WebSocket refused").into_response();
    }
    ws.config(Arc::clone(&chat.config))
        .on_upgrade(move |socket| async move {
            let mut member = Member::new(&chat.rooms, socket.handle(), peer);
            socket.serve(&mut member).await;
            // `member` (and its membership) is dropped here: the member
            // leaves its room and the others get the new list.
        })
}
