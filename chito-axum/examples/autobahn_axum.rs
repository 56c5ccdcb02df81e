//! Echo server for the Autobahn fuzzing client behind axum
//! (`autobahn/run.sh server --runtime axum`): an axum `Router` whose route
//! upgrades through [`chito_axum::WebSocketUpgrade`] and serves the echo
//! handler of `examples/autobahn_server.rs`, with the same configuration as
//! that example's runtimes (chito's defaults, `TCP_NODELAY` as its tokio
//! runtime sets it).
//!
//! `cargo run --release -p chito-axum --example autobahn_axum -- 127.0.0.1:9001`

use axum::response::Response;
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use chito_axum::WebSocketUpgrade;

/// The standalone server's example, for its [`Echo`](autobahn_server::Echo)
/// handler; its `main` and its runtimes are not used here.
#[allow(dead_code, unexpected_cfgs)]
#[path = "../../examples/autobahn_server.rs"]
mod autobahn_server;

async fn upgrade(ws: WebSocketUpgrade) -> Response {
    ws.serve(autobahn_server::Echo)
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    eprintln!("autobahn_axum on {addr}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&addr)
            .await?
            .tap_io(|stream| {
                let _ = stream.set_nodelay(true);
            });
        let app = Router::new().route("/", get(upgrade));
        axum::serve(listener, app).await
    })
}
