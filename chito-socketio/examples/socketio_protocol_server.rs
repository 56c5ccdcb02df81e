//! The Socket.IO v5 server the official socket.io protocol test suite
//! expects (socket.io-protocol's README, "Test suite"): `pingInterval`
//! 300, `pingTimeout` 200, `maxPayload` 1e6, `connectTimeout` 1000, CORS
//! `*`; on `/` and `/custom` every socket is sent `auth` with its CONNECT
//! payload; on `/`, `message` is echoed as `message-back` and
//! `message-with-ack` acks its own arguments (binary attachments included).
//!
//! `cargo run -p chito-socketio --example socketio_protocol_server [port]`
//! serves `/socket.io/` on that port (3000, where the suite connects) of
//! both 127.0.0.1 and ::1 (Node may resolve `localhost` to either).

use std::time::Duration;

use chito_socketio::socketio::{Ack, Args, Socket, SocketIo};

fn main_namespace(socket: Socket) {
    // The reference server emits `socket.handshake.auth`.
    let _ = socket.emit("auth", socket.auth());
    // Handlers name only the extractors they use, in any order.
    socket.on("message", |socket: Socket, args: Args| {
        // `socket.emit("message-back", ...args)`: the arguments go back as
        // received, attachments too.
        let _ = socket.emit_args("message-back", &args);
    });
    socket.on("message-with-ack", |args: Args, ack: Ack| {
        ack.send_args(&args)
    });
}

fn custom_namespace(socket: Socket) {
    let _ = socket.emit("auth", socket.auth());
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = match std::env::args().nth(1) {
        Some(port) => port
            .parse()
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "bad port"))?,
        None => 3000,
    };
    let io = SocketIo::builder()
        .ping_interval(Duration::from_millis(300))
        .ping_timeout(Duration::from_millis(200))
        .max_payload(1_000_000)
        .connect_timeout(Duration::from_millis(1_000))
        .cors_any_origin()
        .build();
    io.ns("/", main_namespace);
    io.ns("/custom", custom_namespace);

    let v4 = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    // ::1 may be missing (no IPv6): IPv4 alone is served then.
    if let Ok(v6) = tokio::net::TcpListener::bind(("::1", port)).await {
        tokio::spawn(io.clone().serve(v6));
    }
    println!("socket.io protocol server on http://localhost:{port}/socket.io/");
    io.serve(v4).await
}
