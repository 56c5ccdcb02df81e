//! A feed reader that survives server restarts.
//!
//! ```text
//! cargo run --example echo_server --features tokio          # in the repository root
//! cargo run -p chito-client --example client_reconnect -- ws://127.0.0.1:9001 30
//! ```
//!
//! It subscribes on every connection (the `on_connected` hook), sends a
//! tick each second (held while the server is down, sent once it is back)
//! and prints every event. Stop and restart the echo server to watch it
//! reconnect. The second argument (default: no limit) is how many ticks to
//! send before closing.

use std::time::Duration;

use chito::{CloseCode, Message};
use chito_client::reconnect::{Backoff, ClientEvent, ReconnectingClient};
use chito_client::Connector;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "ws://127.0.0.1:9001".into());
    let ticks: Option<u64> = args.next().and_then(|n| n.parse().ok());

    let mut client = ReconnectingClient::builder(url.clone(), Connector::new())
        .backoff(Backoff::exponential(
            Duration::from_millis(250),
            Duration::from_secs(5),
        ))
        .on_connected(|connected| {
            println!(
                "hook: connected (attempt {}, reconnected: {}): subscribing",
                connected.attempt(),
                connected.reconnected()
            );
            let _ = connected.send(Message::Text("subscribe feed"));
        })
        .on_give_up(|cause| println!("hook: giving up: {cause}"))
        .spawn();
    println!("reading {url}");

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut sent = 0u64;
    loop {
        tokio::select! {
            event = client.recv() => match event {
                Some(ClientEvent::Connecting { attempt }) => println!("connecting (attempt {attempt})"),
                Some(ClientEvent::Connected { attempt, reconnected, response }) => println!(
                    "connected (attempt {attempt}, reconnected: {reconnected}, subprotocol {:?})",
                    response.protocol()
                ),
                Some(ClientEvent::Text(text)) => println!("< {text}"),
                Some(ClientEvent::Binary(data)) => println!("< {} bytes", data.len()),
                Some(ClientEvent::Disconnected { cause }) => println!("disconnected: {cause}"),
                Some(ClientEvent::RetryIn { attempt, delay }) => {
                    println!("attempt {attempt} in {} ms", delay.as_millis())
                }
                Some(ClientEvent::GaveUp { cause }) => println!("gave up: {cause}"),
                Some(ClientEvent::Closed) => println!("closed"),
                Some(other) => println!("{other:?}"),
                None => break,
            },
            _ = tick.tick(), if ticks.map_or(true, |n| sent < n) => {
                sent += 1;
                let text = format!("tick {sent}");
                match client.send(Message::Text(&text)).await {
                    Ok(()) => println!("> {text} ({:?})", client.state()),
                    Err(e) => println!("> {text} not sent: {e}"),
                }
                if ticks == Some(sent) {
                    // Give the last echo a moment, then close for good.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let _ = client.close(CloseCode::Normal, "done");
                }
            }
        }
    }
}
