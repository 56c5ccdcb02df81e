//! axum's WebSocket echo example (the handler of axum's `extract::ws`
//! docs) on chito: `cargo run -p chito-axum --example axum_echo --
//! 127.0.0.1:3000` serves it at ws://127.0.0.1:3000/ws.
//!
//! README.md's "axum" section shows this file's handler as a diff from
//! axum's; the test at the end keeps that diff and this file the same, so
//! the code the README shows is code that compiles.

use axum::{response::Response, routing::any, Router};
use chito_axum::{Message, OwnedEvent, WebSocket, WebSocketUpgrade};

async fn handler(ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(handle_socket)
}

async fn handle_socket(mut socket: WebSocket) {
    // chito's recv() is a Result: Err once the connection is over.
    while let Ok(event) = socket.recv().await {
        let msg = match &event {
            OwnedEvent::Text(text) => Message::Text(text),
            OwnedEvent::Binary(bytes) => Message::Binary(bytes),
            // Pings are answered and closes completed by chito itself.
            _ => continue,
        };
        if socket.send(msg).await.is_err() {
            return;
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    // `any`, as in axum's example: an HTTP/2 WebSocket (RFC 8441) is a
    // CONNECT, not a GET.
    let app = Router::new().route("/ws", any(handler));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("echo server on ws://{}/ws", listener.local_addr()?);
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    /// The code after README.md's axum diff: its context (` `) and added
    /// (`+`) lines, without the marker column.
    fn readme_diff_result() -> String {
        let readme = include_str!("../../README.md");
        let Some((_, rest)) = readme.split_once("```diff\n") else {
            return String::new();
        };
        let diff = rest.split_once("```").map_or(rest, |(diff, _)| diff);
        let mut result = String::new();
        for line in diff.lines() {
            // Editors strip the single space of an empty context line.
            if line.is_empty() {
                result.push('\n');
            } else if let Some(kept) = line.strip_prefix([' ', '+']) {
                result.push_str(kept);
                result.push('\n');
            }
        }
        result
    }

    #[test]
    fn readme_diff_ends_in_this_file() {
        let result = readme_diff_result();
        assert!(
            result.lines().count() > 10,
            "README.md has no ```diff block of the axum swap"
        );
        assert!(
            include_str!("axum_echo.rs").contains(&result),
            "README.md's axum diff does not end in chito-axum/examples/axum_echo.rs:\n{result}"
        );
    }
}
