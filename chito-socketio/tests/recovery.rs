//! Connection state recovery end to end (docs/socketio.md §7, §11): a raw
//! Socket.IO client over WebSocket (chito's tokio client, no JS) connects,
//! joins a room, loses its TCP connection, and comes back with its `pid`
//! and last offset.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chito::OwnedEvent;
use chito_socketio::socketio::{
    Ack, Args, Binary, DisconnectReason, RecoveryConfig, Socket, SocketIo,
};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// What the server's handlers saw.
#[derive(Debug)]
enum Seen {
    Connected {
        id: String,
        recovered: bool,
        auth: String,
    },
    Disconnected(&'static str),
}

/// A server on an ephemeral port; `/` counts its middleware's runs.
async fn start(
    recovery: RecoveryConfig,
) -> (
    SocketAddr,
    SocketIo,
    UnboundedReceiver<Seen>,
    Arc<AtomicUsize>,
) {
    let io = SocketIo::builder()
        .connection_state_recovery(recovery)
        .build();
    let (seen, seen_rx) = unbounded_channel();
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&runs);
    io.ns("/", move |socket: Socket| on_connect(socket, seen.clone()))
        .with(move |_: &Socket| {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(io.clone().serve(listener));
    (addr, io, seen_rx, runs)
}

fn on_connect(socket: Socket, seen: UnboundedSender<Seen>) {
    let _ = seen.send(Seen::Connected {
        id: socket.id().to_owned(),
        recovered: socket.recovered(),
        auth: socket.auth().get().to_owned(),
    });
    socket.on("join", |socket: Socket, args: Args, ack: Ack| {
        let room: String = args.first().unwrap();
        socket.join(&room);
        let _ = ack.send(&"joined");
    });
    socket.on_disconnect(move |reason: DisconnectReason| {
        let _ = seen.send(Seen::Disconnected(reason.as_str()));
    });
}

/// A Socket.IO client speaking the protocol by hand over one WebSocket.
struct RawClient {
    ws: chito::tokio::WebSocket<TcpStream>,
}

impl RawClient {
    async fn open(addr: SocketAddr) -> Self {
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let (ws, _) = chito::tokio::connect(&url).await.unwrap();
        let mut client = Self { ws };
        let open = client.next().await;
        assert!(open.starts_with("0{"), "{open}");
        client
    }

    async fn send(&mut self, text: &str) {
        self.ws.send(chito::Message::Text(text)).await.unwrap();
    }

    /// The next Socket.IO message (Engine.IO `4` stripped; pings answered).
    async fn try_next(&mut self, within: Duration) -> Option<String> {
        loop {
            let event = tokio::time::timeout(within, self.ws.recv()).await.ok()?;
            match event.unwrap() {
                OwnedEvent::Text(text) if text == "2" => self.send("3").await,
                OwnedEvent::Text(text) => {
                    let text = text.to_string();
                    if text.starts_with('0') {
                        return Some(text);
                    }
                    return Some(text.strip_prefix('4').unwrap().to_owned());
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    async fn next(&mut self) -> String {
        match self.try_next(Duration::from_secs(5)).await {
            Some(text) => text,
            None => panic!("nothing received in 5 s"),
        }
    }

    /// CONNECT to `/` with `auth`; the answer's sid and pid.
    async fn connect(&mut self, auth: &Value) -> (String, String) {
        self.send(&format!("40{auth}")).await;
        let answer = self.next().await;
        let payload: Value = serde_json::from_str(answer.strip_prefix('0').unwrap()).unwrap();
        let object = payload.as_object().unwrap();
        assert_eq!(object.len(), 2, "{answer}");
        (
            object["sid"].as_str().unwrap().to_owned(),
            object["pid"].as_str().unwrap().to_owned(),
        )
    }

    async fn join(&mut self, room: &str) {
        self.send(&format!("420[\"join\",\"{room}\"]")).await;
        assert_eq!(self.next().await, "30[\"joined\"]");
    }

    /// The next EVENT's arguments, name first.
    async fn event(&mut self) -> Vec<Value> {
        let text = self.next().await;
        let args = text.strip_prefix('2').unwrap();
        serde_json::from_str(args).unwrap()
    }
}

async fn connected(seen: &mut UnboundedReceiver<Seen>) -> (String, bool, String) {
    match tokio::time::timeout(Duration::from_secs(5), seen.recv()).await {
        Ok(Some(Seen::Connected {
            id,
            recovered,
            auth,
        })) => (id, recovered, auth),
        other => panic!("expected a connection, got {other:?}"),
    }
}

async fn disconnected(seen: &mut UnboundedReceiver<Seen>) -> &'static str {
    match tokio::time::timeout(Duration::from_secs(5), seen.recv()).await {
        Ok(Some(Seen::Disconnected(reason))) => reason,
        other => panic!("expected a disconnection, got {other:?}"),
    }
}

/// The offset socket.io-client keeps: an event's last argument.
fn offset(args: &[Value]) -> String {
    args.last().unwrap().as_str().unwrap().to_owned()
}

/// Connects, joins `room`, receives one event to get an offset, and loses
/// its TCP connection: the sid, pid and offset it would come back with.
async fn join_and_drop(
    addr: SocketAddr,
    io: &SocketIo,
    seen: &mut UnboundedReceiver<Seen>,
    room: &str,
) -> (String, String, String) {
    let mut client = RawClient::open(addr).await;
    let (sid, pid) = client.connect(&serde_json::json!({})).await;
    let (id, recovered, _) = connected(seen).await;
    assert_eq!((id.as_str(), recovered), (sid.as_str(), false));
    client.join(room).await;
    io.to(room).emit("first", &0).unwrap();
    let first = client.event().await;
    assert_eq!(first[..2], [Value::from("first"), Value::from(0)]);
    let offset = offset(&first);
    // The TCP connection goes without a close frame.
    drop(client);
    assert_eq!(disconnected(seen).await, "transport close");
    (sid, pid, offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_client_gets_exactly_what_it_missed_then_live_events() {
    let (addr, io, mut seen, runs) = start(RecoveryConfig::default()).await;
    let (sid, pid, last) = join_and_drop(addr, &io, &mut seen, "r").await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    for i in 1..=3 {
        io.to("r").emit("missed", &i).unwrap();
    }
    // Neither is for the session: another room, everyone but room `r`.
    io.to("s").emit("elsewhere", &0).unwrap();
    io.except("r").emit("not-r", &0).unwrap();

    let mut client = RawClient::open(addr).await;
    let auth = serde_json::json!({"token": "t", "pid": pid, "offset": last});
    let (again, same_pid) = client.connect(&auth).await;
    assert_eq!(
        (again.as_str(), same_pid.as_str()),
        (sid.as_str(), pid.as_str())
    );
    let (id, recovered, seen_auth) = connected(&mut seen).await;
    assert_eq!(id, sid);
    assert!(recovered);
    // The client library's keys are not the application's.
    assert_eq!(seen_auth, r#"{"token":"t"}"#);
    // skip_middlewares (the default): the middleware did not run again.
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    let mut offsets = vec![last];
    for i in 1..=3 {
        let args = client.event().await;
        assert_eq!(args[..2], [Value::from("missed"), Value::from(i)]);
        assert_eq!(args.len(), 3);
        offsets.push(offset(&args));
    }
    let mut distinct = offsets.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "{offsets:?}");

    // The room was restored: a live emit reaches it, once, after the replay.
    io.to("r").emit("live", &4).unwrap();
    let live = client.event().await;
    assert_eq!(live[..2], [Value::from("live"), Value::from(4)]);
    assert_eq!(client.try_next(Duration::from_millis(300)).await, None);

    // The pid resumed once: a copy of the credentials gets a fresh socket.
    let mut copy = RawClient::open(addr).await;
    let (other, other_pid) = copy.connect(&auth).await;
    assert_ne!(other, sid);
    assert_ne!(other_pid, pid);
    assert!(!connected(&mut seen).await.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_duration_the_client_gets_a_fresh_session() {
    let recovery = RecoveryConfig {
        max_disconnection_duration: Duration::from_millis(200),
        ..RecoveryConfig::default()
    };
    let (addr, io, mut seen, _) = start(recovery).await;
    let (sid, pid, last) = join_and_drop(addr, &io, &mut seen, "r").await;
    io.to("r").emit("missed", &1).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;

    let mut client = RawClient::open(addr).await;
    let (fresh, fresh_pid) = client
        .connect(&serde_json::json!({"pid": pid, "offset": last}))
        .await;
    assert_ne!(fresh, sid);
    assert_ne!(fresh_pid, pid);
    let (id, recovered, auth) = connected(&mut seen).await;
    assert_eq!(
        (id.as_str(), recovered, auth.as_str()),
        (fresh.as_str(), false, "{}")
    );
    // No missed events and no rooms: the room emit does not reach it.
    io.to("r").emit("live", &2).unwrap();
    assert_eq!(client.try_next(Duration::from_millis(300)).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_credentials_get_a_fresh_session_and_keep_the_real_one() {
    let (addr, io, mut seen, _) = start(RecoveryConfig::default()).await;
    let (sid, pid, last) = join_and_drop(addr, &io, &mut seen, "r").await;
    io.to("r").emit("missed", &1).unwrap();

    let huge = "x".repeat(100_000);
    let bad = [
        serde_json::json!({"pid": pid, "offset": "00000000-1"}),
        serde_json::json!({"pid": pid, "offset": huge}),
        serde_json::json!({"pid": huge, "offset": last}),
        serde_json::json!({"pid": 1, "offset": last}),
        serde_json::json!({"pid": pid}),
    ];
    for auth in &bad {
        let mut client = RawClient::open(addr).await;
        let (fresh, _) = client.connect(auth).await;
        assert_ne!(fresh, sid);
        let (_, recovered, seen_auth) = connected(&mut seen).await;
        assert!(!recovered);
        assert!(!seen_auth.contains("pid"), "{seen_auth}");
        drop(client);
        assert_eq!(disconnected(&mut seen).await, "transport close");
    }
    // None of them used the session up.
    let mut client = RawClient::open(addr).await;
    let (again, _) = client
        .connect(&serde_json::json!({"pid": pid, "offset": last}))
        .await;
    assert_eq!(again, sid);
    assert!(connected(&mut seen).await.1);
    let args = client.event().await;
    assert_eq!(args[..2], [Value::from("missed"), Value::from(1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_emitted_throughout_a_reconnection_arrive_once_in_order() {
    const COUNT: u64 = 10_000;
    let (addr, io, mut seen, _) = start(RecoveryConfig::default()).await;
    let mut client = RawClient::open(addr).await;
    let (sid, pid) = client.connect(&serde_json::json!({})).await;
    connected(&mut seen).await;
    client.join("r").await;
    let emitter = {
        let io = io.clone();
        tokio::spawn(async move {
            for i in 0..COUNT {
                io.to("r").emit("n", &i).unwrap();
                // As fast as the runtime goes, so emits land between the
                // resumed socket joining its rooms and its replay.
                tokio::task::yield_now().await;
            }
        })
    };
    let mut got = Vec::new();
    let mut last = String::new();
    while got.len() < 50 {
        let args = client.event().await;
        got.push(args[1].as_u64().unwrap());
        last = offset(&args);
    }
    drop(client);
    assert_eq!(disconnected(&mut seen).await, "transport close");
    tokio::time::sleep(Duration::from_millis(20)).await;

    // Reconnects while the emits go on: the replay races live emits.
    let mut client = RawClient::open(addr).await;
    let (again, _) = client
        .connect(&serde_json::json!({"pid": pid, "offset": last}))
        .await;
    assert_eq!(again, sid);
    while got.last() != Some(&(COUNT - 1)) {
        let args = client.event().await;
        got.push(args[1].as_u64().unwrap());
    }
    emitter.await.unwrap();
    // Each number once, in order: the first misplaced ones, if any.
    let first = got[0];
    let misplaced: Vec<(usize, u64)> = got
        .iter()
        .enumerate()
        .filter(|&(at, &n)| n != first + at as u64)
        .map(|(at, &n)| (at, n))
        .take(5)
        .collect();
    assert_eq!(misplaced, [], "(position, number) from {first}");
    assert_eq!(got.len() as u64, COUNT - first);
    assert_eq!(client.try_next(Duration::from_millis(200)).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_binary_event_comes_back_with_its_attachment_and_middlewares_run_if_asked() {
    let recovery = RecoveryConfig {
        skip_middlewares: false,
        ..RecoveryConfig::default()
    };
    let (addr, io, mut seen, runs) = start(recovery).await;
    let (sid, pid, last) = join_and_drop(addr, &io, &mut seen, "r").await;
    io.to("r")
        .emit("bin", &Binary::from(vec![1u8, 2, 3]))
        .unwrap();

    let mut client = RawClient::open(addr).await;
    let (again, _) = client
        .connect(&serde_json::json!({"pid": pid, "offset": last}))
        .await;
    assert_eq!(again, sid);
    assert!(connected(&mut seen).await.1);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    // A BINARY_EVENT with one attachment; the offset after the placeholder.
    let text = client.next().await;
    let args = text.strip_prefix("51-").unwrap();
    let args: Vec<Value> = serde_json::from_str(args).unwrap();
    assert_eq!(args[0], "bin");
    assert_eq!(args[1], serde_json::json!({"_placeholder": true, "num": 0}));
    assert!(args[2].is_string());
    let attachment = tokio::time::timeout(Duration::from_secs(5), client.ws.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(&attachment, OwnedEvent::Binary(data) if data[..] == [1, 2, 3]),
        "{attachment:?}"
    );
}
