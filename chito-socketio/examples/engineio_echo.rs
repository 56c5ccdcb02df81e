//! A raw Engine.IO v4 echo server, configured as the official engine.io
//! protocol test suite's README asks (`pingInterval` 300, `pingTimeout`
//! 200, `maxPayload` 1e6, CORS `*`, every message sent back as it came).
//!
//! `cargo run -p chito-socketio --example engineio_echo [port]` serves
//! `/engine.io/` on that port (3000, where the suite connects) of both
//! 127.0.0.1 and ::1 (Node may resolve `localhost` to either).

use std::time::Duration;

use chito_socketio::engineio::{
    EngineConfig, EngineEvent, EngineHandler, EngineIo, EngineServerConfig, EngineSocket,
};

struct Echo;

impl EngineHandler for Echo {
    fn on_event(&self, socket: &EngineSocket, event: EngineEvent) {
        match event {
            EngineEvent::Text(text) => {
                socket.send_text(&text);
            }
            EngineEvent::Binary(data) => {
                socket.send_binary(data);
            }
            EngineEvent::Upgraded | EngineEvent::Closed(_) => {}
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = match std::env::args().nth(1) {
        Some(port) => port
            .parse()
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "bad port"))?,
        None => 3000,
    };
    let config = EngineServerConfig {
        engine: EngineConfig {
            ping_interval: Duration::from_millis(300),
            ping_timeout: Duration::from_millis(200),
            max_payload: 1_000_000,
            ..EngineConfig::default()
        },
        cors_any_origin: true,
        ..EngineServerConfig::default()
    };
    let server = EngineIo::new(config, Echo);
    let v4 = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    // ::1 may be missing (no IPv6): IPv4 alone is served then.
    if let Ok(v6) = tokio::net::TcpListener::bind(("::1", port)).await {
        tokio::spawn(server.clone().serve(v6));
    }
    println!("engine.io echo on http://localhost:{port}/engine.io/");
    server.serve(v4).await
}
