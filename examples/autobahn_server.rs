//! Echo server for the Autobahn fuzzing client (`autobahn/run.sh server`).
//!
//! `cargo run --release --all-features --example autobahn_server -- 127.0.0.1:9001 [--runtime blocking|tokio|uring]`
//!
//! Default configuration: whatever Autobahn checks is checked with the
//! limits every user gets.
use chito::{Handler, Message, Sender};

/// Sends every text or binary message back as it came. Also the handler of
/// `chito-axum/examples/autobahn_axum.rs`, which includes this file, so the
/// suite checks one echo behind every runtime.
pub struct Echo;

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
    let runtime = args
        .iter()
        .position(|a| a == "--runtime")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "blocking".into());
    eprintln!("autobahn_server ({runtime}) on {addr}");
    match runtime.as_str() {
        "blocking" => blocking(&addr),
        #[cfg(feature = "tokio")]
        "tokio" => tokio_server(&addr),
        #[cfg(all(feature = "uring", target_os = "linux"))]
        "uring" => uring_server(&addr),
        other => {
            eprintln!(
                "unknown runtime {other:?} (blocking, tokio with --features tokio, \
                 uring with --features uring on Linux)"
            );
            std::process::exit(2);
        }
    }
}

/// A thread per connection: the fuzzing client runs cases one by one.
fn blocking(addr: &str) -> std::io::Result<()> {
    let listener = std::net::TcpListener::bind(addr)?;
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
        std::thread::spawn(move || {
            if let Ok(ws) = chito::blocking::Builder::tcp(stream).accept() {
                ws.serve(&mut Echo);
            }
        });
    }
    Ok(())
}

#[cfg(feature = "tokio")]
fn tokio_server(addr: &str) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    eprintln!("accept failed: {e}");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                if let Ok(ws) = chito::tokio::Builder::new(stream).accept().await {
                    ws.serve(&mut Echo).await;
                }
            });
        }
    })
}

/// One io_uring loop on this thread; a refused io_uring says why.
#[cfg(all(feature = "uring", target_os = "linux"))]
fn uring_server(addr: &str) -> std::io::Result<()> {
    chito::uring::Server::bind(addr)?.run(|_open: &mut chito::uring::Open<'_>| Echo)
}
