//! A blocking WebSocket echo server (a thread per connection):
//! `cargo run --example echo_server_blocking`, then connect
//! to ws://127.0.0.1:9001 (e.g. `websocat ws://127.0.0.1:9001`).
use chito::{blocking, Handler, Message, Sender};

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, sender: &mut Sender<'_>, message: Message<'_>) {
        let _ = sender.send(message);
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let listener = std::net::TcpListener::bind(&addr)?;
    println!("echo server listening on ws://{addr}");
    for stream in listener.incoming() {
        // An accept error (e.g. out of file descriptors) hits one
        // connection, not the server.
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                eprintln!("accept failed: {e}");
                continue;
            }
        };
        std::thread::spawn(move || match blocking::Builder::tcp(stream).accept() {
            Ok(ws) => ws.serve(&mut Echo),
            Err(e) => eprintln!("handshake failed: {e}"),
        });
    }
    Ok(())
}
