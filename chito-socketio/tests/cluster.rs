//! Socket.IO rooms across nodes (docs/socketio.md §5): two servers in one
//! process, each with its own `Rooms` on one Redis backplane (a
//! redis-server on a free loopback port, as chito-backplane's tests start
//! it), and WebSocket clients on 127.0.0.1. A room emit on one node
//! reaches the room's sockets on the other; its except-rooms are evaluated
//! by the receiving node against its own members.

use std::time::Duration;

use chito::rooms::Rooms;
use chito::{Message, OwnedEvent};
use chito_backplane::{BrokerBackplane, Settings};
use chito_socketio::socketio::{Socket, SocketIo};
use serde::Deserialize;

type Client = chito::tokio::WebSocket<tokio::net::TcpStream>;

/// What a client asks for in its CONNECT payload: the rooms to join.
#[derive(Deserialize)]
struct Auth {
    rooms: Vec<String>,
}

// The brokers of chito-backplane's tests: a redis-server on a free
// loopback port, installed with apt-get when missing (as root), so this
// test needs nothing installed by hand and never skips. Its redis queries
// are behind chito-backplane's feature `redis`, which this crate has not:
// compiled out here.
#[allow(unexpected_cfgs)]
#[path = "../../chito-backplane/tests/common/mod.rs"]
mod common;

use common::Redis;

async fn node(redis_url: &str) -> (SocketIo, u16) {
    let backplane = BrokerBackplane::connect(redis_url, Settings::default())
        .await
        .expect("connect to redis");
    let io = SocketIo::builder()
        .rooms(Rooms::with_backplane(backplane))
        .build();
    io.ns("/", |socket: Socket| {
        if let Ok(auth) = serde_json::from_str::<Auth>(socket.auth().get()) {
            for room in &auth.rooms {
                socket.join(room);
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(io.clone().serve(listener));
    (io, port)
}

/// A WebSocket client connected to `/` of the server on `port`, in `rooms`.
async fn client(port: u16, rooms: &[&str]) -> Client {
    let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = chito::tokio::connect(&url).await.expect("connect");
    let open = next_text(&mut ws).await;
    assert!(open.starts_with('0'), "{open}");
    let connect = format!("40{}", serde_json::json!({ "rooms": rooms }));
    ws.send(Message::Text(&connect)).await.expect("send");
    let answer = next_text(&mut ws).await;
    assert!(answer.starts_with("40{\"sid\""), "{answer}");
    ws
}

/// The next text message, pings answered on the way.
async fn next_text(ws: &mut Client) -> String {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), ws.recv())
            .await
            .expect("a message within 10 s")
            .expect("open");
        if let OwnedEvent::Text(text) = event {
            if text == "2" {
                ws.send(Message::Text("3")).await.expect("pong");
                continue;
            }
            return text;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_emit_reaches_other_nodes_and_they_apply_its_except_rooms() {
    let redis = Redis::start();
    let url = redis.url();
    let (io_a, port_a) = node(&url).await;
    let (_io_b, port_b) = node(&url).await;

    let mut on_a = client(port_a, &["red"]).await;
    let mut on_b = client(port_b, &["red"]).await;
    let mut muted_on_b = client(port_b, &["red", "muted"]).await;
    let mut elsewhere_on_b = client(port_b, &["blue"]).await;

    // B subscribes to `red` asynchronously: emit until its member hears.
    let mut ready = false;
    for _ in 0..100 {
        io_a.to("red").emit("ready", &0).expect("emit");
        let heard = tokio::time::timeout(Duration::from_millis(100), on_b.recv()).await;
        if matches!(heard, Ok(Ok(OwnedEvent::Text(ref text))) if text.starts_with("42[\"ready\"")) {
            ready = true;
            break;
        }
    }
    assert!(ready, "node B never received node A's room emit");
    // Drain the other probes (each of these got every `ready`).
    tokio::time::sleep(Duration::from_millis(300)).await;
    for ws in [&mut on_a, &mut on_b, &mut muted_on_b] {
        while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(50), ws.recv()).await {}
    }

    io_a.to("red")
        .except("muted")
        .emit("chat", &"hello")
        .expect("emit");
    // Then to everyone in red: the muted socket's first message must be
    // this one (one origin's emits arrive in order).
    io_a.to("red").emit("end", &1).expect("emit");

    assert_eq!(next_text(&mut on_a).await, r#"42["chat","hello"]"#);
    assert_eq!(next_text(&mut on_b).await, r#"42["chat","hello"]"#);
    assert_eq!(next_text(&mut muted_on_b).await, r#"42["end",1]"#);
    assert_eq!(next_text(&mut on_b).await, r#"42["end",1]"#);
    // Not in red: nothing at all.
    let nothing = tokio::time::timeout(Duration::from_millis(300), elsewhere_on_b.recv()).await;
    assert!(
        nothing.is_err(),
        "a socket outside the room got {nothing:?}"
    );
}
