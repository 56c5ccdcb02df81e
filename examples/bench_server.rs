//! The echo server the benchmark measures, no logging: chito's tokio adapter
//! on a current-thread runtime (the default), or chito's io_uring driver on
//! one loop on this thread (`--driver uring`, Linux, feature `uring`).
//!
//! ```text
//! cargo run --release --features tokio --example bench_server -- 127.0.0.1:9002
//! cargo run --release --features tokio,uring --example bench_server -- 127.0.0.1:9002 --driver uring
//! ```
//!
//! It prints the address it listens on, then echoes until killed.
//! `bench/benches/echo.rs` compiles this same file as a module and calls
//! [`serve`] (and [`serve_uring`]), so the bench and this example run one
//! code path.

use chito::{Handler, Message, Sender};
use tokio::net::TcpListener;

/// Sends every text or binary message back as it came.
pub struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, sender: &mut Sender<'_>, message: Message<'_>) {
        let _ = sender.send(message);
    }
}

/// Accepts connections forever, one task per connection, each running the
/// opening handshake and then [`Echo`] until the connection ends.
pub async fn serve(listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // Out of file descriptors and the like: that connection is lost,
            // not the server. Back off a moment rather than spin.
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            let Ok(ws) = chito::tokio::Builder::new(stream).accept().await else {
                return;
            };
            ws.serve(&mut Echo).await;
        });
    }
}

/// Serves [`Echo`] on `listener` with chito's io_uring driver: one loop on
/// this thread, its defaults otherwise; returns only if the loop fails.
///
/// # Errors
/// io_uring is unavailable here (the error says why), or the loop failed.
#[cfg(all(feature = "uring", target_os = "linux"))]
pub fn serve_uring(listener: std::net::TcpListener) -> std::io::Result<()> {
    use chito::uring::{BindError, Server};
    let server = Server::from_listener(listener).map_err(|e| match e {
        BindError::Io(e) | BindError::Unavailable(e) => e,
    })?;
    server.run(|_| Echo)
}

/// Which driver serves the connections.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Driver {
    Tokio,
    #[cfg(all(feature = "uring", target_os = "linux"))]
    Uring,
}

/// `[ADDR] [--driver tokio|uring]`.
fn parse_args() -> Result<(String, Driver), String> {
    let mut addr = None;
    let mut driver = Driver::Tokio;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--driver" {
            driver = match args.next().as_deref() {
                Some("tokio") => Driver::Tokio,
                #[cfg(all(feature = "uring", target_os = "linux"))]
                Some("uring") => Driver::Uring,
                #[cfg(not(all(feature = "uring", target_os = "linux")))]
                Some("uring") => {
                    return Err("--driver uring needs Linux and the `uring` feature".into())
                }
                other => return Err(format!("--driver: tokio or uring, not {other:?}")),
            };
        } else if addr.is_none() {
            addr = Some(arg);
        } else {
            return Err(format!("unexpected argument {arg:?}"));
        }
    }
    Ok((addr.unwrap_or_else(|| "127.0.0.1:9002".into()), driver))
}

fn main() -> std::io::Result<()> {
    let (addr, driver) = parse_args().map_err(std::io::Error::other)?;
    match driver {
        Driver::Tokio => run_tokio(&addr),
        #[cfg(all(feature = "uring", target_os = "linux"))]
        Driver::Uring => {
            let listener = std::net::TcpListener::bind(&addr)?;
            println!("{}", listener.local_addr()?);
            serve_uring(listener)
        }
    }
}

/// The tokio server on a current-thread runtime.
fn run_tokio(addr: &str) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind(addr).await?;
        println!("{}", listener.local_addr()?);
        serve(listener).await;
        Ok(())
    })
}
