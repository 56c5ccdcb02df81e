//! The echo server the benchmark measures: chito's tokio adapter on a
//! current-thread runtime, no logging.
//!
//! `cargo run --release --features tokio --example bench_server -- 127.0.0.1:9002`
//!
//! `bench/benches/echo.rs` compiles this same file as a module and calls
//! [`serve`], so the bench and this example run one code path.

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

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9002".into());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind(&addr).await?;
        println!("{}", listener.local_addr()?);
        serve(listener).await;
        Ok(())
    })
}
