//! A WebSocket echo server on tokio:
//! `cargo run --example echo_server --features tokio`, then connect to
//! ws://127.0.0.1:9001 (for example `websocat ws://127.0.0.1:9001`).
use chito::{Handler, Message, Sender};

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, sender: &mut Sender<'_>, message: Message<'_>) {
        let _ = sender.send(message);
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("echo server listening on ws://{addr}");
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            match chito::tokio::Builder::new(stream).accept().await {
                Ok(ws) => ws.serve(&mut Echo).await,
                Err(e) => eprintln!("handshake failed: {e}"),
            }
        });
    }
}
