//! Echo server for the Autobahn fuzzing client (`autobahn/run.sh server`).
//!
//! `cargo run --release --example autobahn_server -- 127.0.0.1:9001 [--runtime blocking]`
//!
//! Default configuration: whatever Autobahn checks is checked with the
//! limits every user gets.
use chito::{blocking, Handler, Message, Sender};

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, sender: &mut Sender<'_>, message: Message<'_>) {
        let _ = sender.send(message);
    }
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = args
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let runtime = runtime_flag(&args);
    if runtime != "blocking" {
        eprintln!("unknown runtime {runtime:?} (available: blocking)");
        std::process::exit(2);
    }
    let listener = std::net::TcpListener::bind(&addr)?;
    eprintln!("autobahn_server ({runtime}) on {addr}");
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
        // A thread per connection: the fuzzing client runs cases one by one.
        std::thread::spawn(move || {
            if let Ok(ws) = blocking::Builder::tcp(stream).accept() {
                ws.serve(&mut Echo);
            }
        });
    }
    Ok(())
}

fn runtime_flag(args: &[String]) -> String {
    args.iter()
        .position(|a| a == "--runtime")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "blocking".into())
}
