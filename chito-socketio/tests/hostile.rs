//! Hostile input over real sockets (issue #13 "Hostile input";
//! docs/socketio.md §9, §11): a `SocketIo` server on 127.0.0.1 gets
//! malformed packets, unknown types, bad ack ids, oversized payloads, too
//! many namespaces and attachments, attachments that never come, a polling
//! client that never GETs and thousands of half-open sessions — each must
//! get the answer §9 gives it, memory must stay bounded, and a
//! well-behaved client connected throughout must not notice.
//!
//! Clients speak the protocol by hand: WebSocket through chito's tokio
//! client (a reader task answers Engine.IO pings), polling through raw
//! HTTP/1.1 on a `TcpStream`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chito::{CloseCode, Message, OwnedEvent};
use chito_socketio::socketio::{
    Ack, AckError, Args, DisconnectReason, Socket, SocketIo, SocketIoConfig,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::task::JoinHandle;

/// Tests that measure the process's RSS take this lock for writing, all
/// others for reading: RSS is process-wide, and the tests of this file run
/// in parallel threads of one process.
static EXCLUSIVE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Short heartbeats so that timeouts come within the test's time.
const PING_INTERVAL: Duration = Duration::from_millis(300);
const PING_TIMEOUT: Duration = Duration::from_millis(200);
/// For tests with polling clients, which do not answer pings, where the
/// heartbeat is not the subject: no ping within the test.
const NO_PING: Duration = Duration::from_secs(10);
/// A small `maxPayload`, so that "too large" is cheap to send.
const MAX_PAYLOAD: usize = 10_000;

/// How long any expected answer may take on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(5);

// ------------------------------------------------------------------ server

/// What the server's handlers saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Connected { id: String, ns: String },
    Disconnected { id: String, reason: &'static str },
}

struct Server {
    addr: SocketAddr,
    io: SocketIo,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    async fn start(config: SocketIoConfig) -> Server {
        let io = SocketIo::new(config);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorder = Arc::clone(&seen);
        io.ns("/", move |socket| on_connect(socket, Arc::clone(&recorder)));
        // Any `/n<…>`: the namespaces of the "too many namespaces" case.
        let recorder = Arc::clone(&seen);
        io.dyn_ns(
            |name| name.starts_with("/n"),
            move |socket| on_connect(socket, Arc::clone(&recorder)),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(io.clone().serve(listener));
        Server { addr, io, seen }
    }

    /// Waits until the socket `id` disconnected; its reason.
    async fn disconnected(&self, id: &str) -> &'static str {
        match self.try_disconnected(id, PATIENCE).await {
            Some(reason) => reason,
            None => panic!("socket {id} not disconnected within {PATIENCE:?}"),
        }
    }

    async fn try_disconnected(&self, id: &str, within: Duration) -> Option<&'static str> {
        let deadline = Instant::now() + within;
        loop {
            let found = self
                .seen
                .lock()
                .unwrap()
                .iter()
                .find_map(|seen| match seen {
                    Seen::Disconnected { id: gone, reason } if gone == id => Some(*reason),
                    _ => None,
                });
            if found.is_some() || Instant::now() >= deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until the Engine.IO layer has `count` sessions.
    async fn sessions_become(&self, count: usize, within: Duration) -> Duration {
        let started = Instant::now();
        while self.io.engine().session_count() != count {
            assert!(
                started.elapsed() < within,
                "{} sessions, not {count}, after {within:?}",
                self.io.engine().session_count()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        started.elapsed()
    }
}

fn config(ping_interval: Duration, ping_timeout: Duration) -> SocketIoConfig {
    let mut config = SocketIoConfig::default();
    config.engine.engine.ping_interval = ping_interval;
    config.engine.engine.ping_timeout = ping_timeout;
    config.engine.engine.max_payload = MAX_PAYLOAD;
    config
}

fn on_connect(socket: Socket, seen: Arc<Mutex<Vec<Seen>>>) {
    seen.lock().unwrap().push(Seen::Connected {
        id: socket.id().to_owned(),
        ns: socket.ns().to_owned(),
    });
    socket.on("echo", |_: Socket, args: Args, ack: Ack| {
        let _ = ack.send_args(&args);
    });
    // Whether the first argument deserializes into a `serde_json::Value`.
    socket.on("parse", |_: Socket, args: Args, ack: Ack| {
        let _ = ack.send(&args.first::<serde_json::Value>().is_ok());
    });
    socket.on("join", |socket: Socket, args: Args, ack: Ack| {
        if let Ok(room) = args.first::<String>() {
            socket.join(&room);
        }
        let _ = ack.send(&"joined");
    });
    // `["ask", ms]`: the server asks the client `question` with an ack
    // timeout of `ms`, then tells it how that went with `asked`.
    socket.on("ask", |socket: Socket, args: Args, _: Ack| {
        let timeout = Duration::from_millis(args.first::<u64>().unwrap_or(100));
        tokio::spawn(async move {
            let outcome = match socket.emit_with_ack_timeout("question", &(), timeout) {
                Ok(answer) => match answer.await {
                    Ok(_) => "answered",
                    Err(AckError::Timeout) => "timeout",
                    Err(AckError::Disconnected) => "disconnected",
                },
                Err(_) => "not sent",
            };
            let _ = socket.emit("asked", &outcome);
        });
    });
    socket.on_disconnect(move |socket: Socket, reason: DisconnectReason| {
        seen.lock().unwrap().push(Seen::Disconnected {
            id: socket.id().to_owned(),
            reason: reason.as_str(),
        });
    });
}

/// The process's resident set (`VmRSS` of /proc/self/status), in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// The process's open file descriptors.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

// --------------------------------------------------------- WebSocket client

/// What a WebSocket client's reader task saw.
#[derive(Debug)]
enum Frame {
    Text(String),
    Binary(Vec<u8>),
    /// The server's close frame, with its code.
    Closed(Option<CloseCode>),
    /// The connection ended (after a close, or broken).
    Gone,
}

/// A Socket.IO client over one WebSocket. A reader task answers the
/// server's pings (while `answer_pings`) and hands everything else over.
struct WsClient {
    handle: chito::tokio::Handle,
    inbox: UnboundedReceiver<Frame>,
    answer_pings: Arc<AtomicBool>,
    reader: JoinHandle<()>,
    next_ack: u64,
}

impl Drop for WsClient {
    fn drop(&mut self) {
        // The reader owns the connection: the TCP connection goes with it.
        self.reader.abort();
    }
}

impl WsClient {
    /// Opens an Engine.IO session over WebSocket (its open packet read).
    async fn open(addr: SocketAddr) -> WsClient {
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let (mut ws, _) = chito::tokio::connect(&url).await.unwrap();
        let handle = ws.handle();
        let answer_pings = Arc::new(AtomicBool::new(true));
        let (frames, inbox) = unbounded_channel();
        let answering = Arc::clone(&answer_pings);
        let pong = handle.clone();
        let reader = tokio::spawn(async move {
            loop {
                let frame = match ws.recv().await {
                    Ok(OwnedEvent::Text(text)) if text == "2" => {
                        if answering.load(Ordering::SeqCst) {
                            // try_send: this task drives the writes, so it
                            // must not wait for queue room itself.
                            let _ = pong.try_send(Message::Text("3"));
                        }
                        continue;
                    }
                    Ok(OwnedEvent::Text(text)) => Frame::Text(text),
                    Ok(OwnedEvent::Binary(data)) => Frame::Binary(data),
                    Ok(OwnedEvent::Close(frame)) => Frame::Closed(frame.map(|f| f.code)),
                    Ok(_) => continue,
                    Err(_) => {
                        let _ = frames.send(Frame::Gone);
                        return;
                    }
                };
                if frames.send(frame).is_err() {
                    return;
                }
            }
        });
        let mut client = WsClient {
            handle,
            inbox,
            answer_pings,
            reader,
            next_ack: 1,
        };
        match client.frame().await {
            Frame::Text(open) => assert!(open.starts_with("0{"), "{open}"),
            other => panic!("expected the open packet, got {other:?}"),
        }
        client
    }

    /// Opens a session and connects to `/`; the socket id.
    async fn connected(addr: SocketAddr) -> (WsClient, String) {
        let mut client = WsClient::open(addr).await;
        let id = client.connect("/").await;
        (client, id)
    }

    async fn send(&self, text: &str) {
        self.handle.send(Message::Text(text)).await.unwrap();
    }

    async fn send_binary(&self, data: &[u8]) {
        self.handle.send(Message::Binary(data)).await.unwrap();
    }

    async fn try_frame(&mut self, within: Duration) -> Option<Frame> {
        tokio::time::timeout(within, self.inbox.recv())
            .await
            .ok()
            .flatten()
    }

    async fn frame(&mut self) -> Frame {
        match self.try_frame(PATIENCE).await {
            Some(frame) => frame,
            None => panic!("nothing received within {PATIENCE:?}"),
        }
    }

    /// The next Socket.IO packet (a text message without its Engine.IO `4`).
    async fn packet(&mut self) -> String {
        match self.frame().await {
            Frame::Text(text) => match text.strip_prefix('4') {
                Some(packet) => packet.to_owned(),
                None => panic!("not an Engine.IO message: {text}"),
            },
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    /// CONNECT to `ns`; the socket id of the answer.
    async fn connect(&mut self, ns: &str) -> String {
        let (request, answer) = if ns == "/" {
            ("40".to_owned(), "0".to_owned())
        } else {
            (format!("40{ns},"), format!("0{ns},"))
        };
        self.send(&request).await;
        let packet = self.packet().await;
        let payload = packet
            .strip_prefix(&answer)
            .unwrap_or_else(|| panic!("expected a CONNECT to {ns}, got {packet}"));
        let payload: serde_json::Value = serde_json::from_str(payload).unwrap();
        payload["sid"].as_str().unwrap().to_owned()
    }

    /// Sends `echo` with one argument and waits for its ack: the round
    /// trip.
    async fn echo(&mut self, value: &str) -> Duration {
        let id = self.next_ack;
        self.next_ack += 1;
        let started = Instant::now();
        self.send(&format!("42{id}[\"echo\",\"{value}\"]")).await;
        assert_eq!(self.packet().await, format!("3{id}[\"{value}\"]"));
        started.elapsed()
    }

    /// Waits for the server's close frame (skipping what comes before it);
    /// its code.
    async fn closed(&mut self) -> Option<CloseCode> {
        loop {
            match self.frame().await {
                Frame::Closed(code) => return code,
                Frame::Gone => panic!("connection ended without a close frame"),
                Frame::Text(_) | Frame::Binary(_) => {}
            }
        }
    }
}

// ----------------------------------------------------------- polling client

/// A parsed HTTP response.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: String,
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`, so the
/// answer ends at EOF).
async fn request(addr: SocketAddr, method: &str, target: &str, body: &str) -> Answer {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut raw))
        .await
        .expect("an answer in time")
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Answer {
        status,
        body: body.to_owned(),
    }
}

/// A Socket.IO client over HTTP long-polling.
struct Polling {
    addr: SocketAddr,
    target: String,
}

impl Polling {
    async fn open(addr: SocketAddr) -> Polling {
        let answer = request(addr, "GET", "/socket.io/?EIO=4&transport=polling", "").await;
        assert_eq!(answer.status, 200, "{answer:?}");
        let sid = sid_of_open(&answer.body);
        Polling {
            addr,
            target: format!("/socket.io/?EIO=4&transport=polling&sid={sid}"),
        }
    }

    /// Opens a session and connects to `/`; the socket id.
    async fn connected(addr: SocketAddr) -> (Polling, String) {
        let client = Polling::open(addr).await;
        assert_eq!(client.post("40").await.status, 200);
        let answer = client.get().await;
        let payload = answer
            .body
            .strip_prefix("40")
            .unwrap_or_else(|| panic!("expected the CONNECT answer, got {answer:?}"));
        let payload: serde_json::Value = serde_json::from_str(payload).unwrap();
        (client, payload["sid"].as_str().unwrap().to_owned())
    }

    async fn post(&self, body: &str) -> Answer {
        request(self.addr, "POST", &self.target, body).await
    }

    async fn get(&self) -> Answer {
        request(self.addr, "GET", &self.target, "").await
    }

    /// A GET that the server parks (nothing is queued), answered later.
    async fn park_get(&self) -> JoinHandle<Answer> {
        let (addr, target) = (self.addr, self.target.clone());
        let parked = tokio::spawn(async move { request(addr, "GET", &target, "").await });
        // Long enough for the request to reach the server and park (on a
        // loaded machine too).
        tokio::time::sleep(Duration::from_millis(100)).await;
        parked
    }
}

/// The sid of an open packet `0{"sid":"…",…}`.
fn sid_of_open(body: &str) -> String {
    let open: serde_json::Value = serde_json::from_str(
        body.strip_prefix('0')
            .unwrap_or_else(|| panic!("not an open packet: {body}")),
    )
    .unwrap();
    open["sid"].as_str().unwrap().to_owned()
}

/// `{"code":1,"message":"Session ID unknown"}`: the 400 a closed session's
/// requests get (Engine.IO v4, the reference server's error codes).
const UNKNOWN_SID: &str = r#"{"code":1,"message":"Session ID unknown"}"#;

/// What a closed polling session answers next: 400 `Session ID unknown`.
async fn assert_polling_session_gone(client: &Polling) {
    let answer = client.get().await;
    assert_eq!((answer.status, answer.body.as_str()), (400, UNKNOWN_SID));
}

// ------------------------------------------------------------------ tests

/// Packets that break the Socket.IO grammar (socket.io-protocol, "Packet
/// encoding") or carry an unknown type, with why each is invalid.
const MALFORMED: &[(&str, &str)] = &[
    ("4abc", "unknown Socket.IO type `a` (the suite's case)"),
    ("47", "unknown Socket.IO type 7"),
    ("47[\"echo\"]", "unknown Socket.IO type 7 with a payload"),
    ("42{}", "EVENT payload not an array (the suite's case)"),
    ("42", "EVENT without payload"),
    ("42[]", "EVENT without a name"),
    (
        "42abc[\"message-with-ack\",1]",
        "non-numeric ack id (the suite's case)",
    ),
    ("42-1[\"echo\",\"x\"]", "negative ack id"),
    ("4218446744073709551616[\"echo\",\"x\"]", "ack id past u64"),
    ("42[\"echo\",", "JSON cut short"),
    ("42[\"echo\" \"x\"]", "JSON without a comma"),
    ("42[{}]", "event name an object"),
    ("42[true,1]", "event name a boolean"),
    ("42[null]", "event name null"),
    ("42[[\"echo\"]]", "event name an array"),
    ("43", "ACK without id"),
    ("431", "ACK without payload"),
    ("41x", "DISCONNECT with a payload"),
    ("44{\"message\":\"x\"}", "CONNECT_ERROR from a client"),
    ("40[]", "CONNECT payload not an object"),
    ("9", "unknown Engine.IO type 9"),
    ("9abc", "unknown Engine.IO type 9 with data"),
    ("", "empty Engine.IO message"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_over_websocket_close_with_1002_and_parse_error() {
    let _shared = EXCLUSIVE.read().await;
    let server = Server::start(config(PING_INTERVAL, PING_TIMEOUT)).await;
    let (mut good, good_id) = WsClient::connected(server.addr).await;
    for (packet, why) in MALFORMED {
        let (mut hostile, id) = WsClient::connected(server.addr).await;
        hostile.send(packet).await;
        // docs/socketio.md §9: a parse error closes the session, WebSocket
        // close 1002; the sockets go with `parse error`.
        assert_eq!(
            hostile.closed().await,
            Some(CloseCode::ProtocolError),
            "{packet:?} ({why})"
        );
        assert_eq!(
            server.disconnected(&id).await,
            "parse error",
            "{packet:?} ({why})"
        );
        good.echo(why).await;
    }
    assert_eq!(
        server.try_disconnected(&good_id, Duration::ZERO).await,
        None
    );
    // Every hostile session is gone; the good one stays.
    server.sessions_become(1, PATIENCE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_over_polling_end_the_session() {
    let _shared = EXCLUSIVE.read().await;
    let server = Server::start(config(NO_PING, NO_PING)).await;
    let (mut good, good_id) = WsClient::connected(server.addr).await;
    for (packet, why) in MALFORMED {
        if packet.is_empty() {
            // An empty polling body is a payload without packets, not an
            // empty packet: not this case.
            continue;
        }
        let (hostile, id) = Polling::connected(server.addr).await;
        let parked = hostile.park_get().await;
        let posted = hostile.post(packet).await;
        // An Engine.IO packet that does not decode makes the body invalid:
        // 400 (the reference server's `parse error` on polling). A valid
        // Engine.IO message whose Socket.IO packet is invalid was a valid
        // body: 200 `ok` as in the reference server, and Socket.IO closes
        // the session after.
        let engine_level = packet.starts_with('9');
        let expected = if engine_level { 400 } else { 200 };
        assert_eq!(posted.status, expected, "{packet:?} ({why}): {posted:?}");
        // The parked GET learns of the close (`1`), and the session is gone.
        let parked = parked.await.unwrap();
        assert_eq!(
            (parked.status, parked.body.as_str()),
            (200, "1"),
            "{packet:?} ({why})"
        );
        assert_polling_session_gone(&hostile).await;
        assert_eq!(
            server.disconnected(&id).await,
            "parse error",
            "{packet:?} ({why})"
        );
        good.echo(why).await;
    }
    assert_eq!(
        server.try_disconnected(&good_id, Duration::ZERO).await,
        None
    );
}

/// `emit_with_ack` as the server sends it: `2<id>["question"]`; the id.
fn question_id(packet: &str) -> u64 {
    let id = packet
        .strip_prefix('2')
        .and_then(|rest| rest.strip_suffix("[\"question\"]"))
        .unwrap_or_else(|| panic!("expected a question with an ack id, got {packet}"));
    id.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_for_ids_never_sent_answered_or_timed_out_are_ignored() {
    let _shared = EXCLUSIVE.read().await;
    let server = Server::start(config(PING_INTERVAL, PING_TIMEOUT)).await;
    let (mut good, good_id) = WsClient::connected(server.addr).await;
    let (mut client, id) = WsClient::connected(server.addr).await;

    // Ids the server never sent, the largest u64 included, in a namespace
    // the client is in and in one it is not; a BINARY_ACK too.
    for packet in [
        "43999[\"x\"]",
        "4318446744073709551615[]",
        "43/nowhere,1[\"x\"]",
        "431000000[{\"deep\":[1,2,3]}]",
    ] {
        client.send(packet).await;
    }
    client
        .send("461-77[{\"_placeholder\":true,\"num\":0}]")
        .await;
    client.send_binary(&[1, 2, 3]).await;
    client.echo("after unknown ids").await;

    // An ack in time is taken once; the same ack again is ignored.
    client.send("42[\"ask\",5000]").await;
    let asked = question_id(&client.packet().await);
    client.send(&format!("43{asked}[\"yes\"]")).await;
    assert_eq!(client.packet().await, "2[\"asked\",\"answered\"]");
    client.send(&format!("43{asked}[\"again\"]")).await;
    client.echo("after a repeated ack").await;

    // An ack after the server's timeout is ignored.
    client.send("42[\"ask\",50]").await;
    let asked = question_id(&client.packet().await);
    assert_eq!(client.packet().await, "2[\"asked\",\"timeout\"]");
    client.send(&format!("43{asked}[\"late\"]")).await;
    client.echo("after a late ack").await;

    // Nothing else came, nobody was disconnected, and the session went on
    // past several heartbeats.
    tokio::time::sleep(PING_INTERVAL * 2).await;
    client.echo("still there").await;
    assert!(client.try_frame(Duration::from_millis(50)).await.is_none());
    good.echo("unaffected").await;
    for socket in [&id, &good_id] {
        assert_eq!(server.try_disconnected(socket, Duration::ZERO).await, None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_message_over_max_payload_closes_with_1009() {
    let _shared = EXCLUSIVE.read().await;
    let server = Server::start(config(PING_INTERVAL, PING_TIMEOUT)).await;
    let (mut good, good_id) = WsClient::connected(server.addr).await;
    let (mut hostile, id) = WsClient::connected(server.addr).await;
    // `4` + `21` (EVENT, the first ack id) + `["echo","` + value + `"]`:
    // exactly maxPayload passes...
    let overhead = "421[\"echo\",\"\"]".len();
    let fits = "x".repeat(MAX_PAYLOAD - overhead);
    hostile.echo(&fits).await;
    // ... one byte more is closed by chito with 1009 (RFC 6455 §7.4.1).
    let over = format!("422[\"echo\",\"{fits}y\"]");
    assert_eq!(over.len(), MAX_PAYLOAD + 1);
    hostile.send(&over).await;
    assert_eq!(hostile.closed().await, Some(CloseCode::MessageTooBig));
    // The reader sees the connection fail and closes the session as a
    // `transport close` (the JS server, whose `ws` reports the oversized
    // message as an error, says `transport error`).
    let reason = server.disconnected(&id).await;
    assert_eq!(reason, "transport close");
    good.echo("unaffected").await;
    assert_eq!(
        server.try_disconnected(&good_id, Duration::ZERO).await,
        None
    );
    server.sessions_become(1, PATIENCE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polling_post_over_max_payload_gets_413_and_closes_the_session() {
    let _shared = EXCLUSIVE.read().await;
    let server = Server::start(config(NO_PING, NO_PING)).await;
    let (mut good, good_id) = WsClient::connected(server.addr).await;
    let (hostile, id) = Polling::connected(server.addr).await;
    // A body of exactly maxPayload passes (here one packet)...
    let overhead = "421[\"echo\",\"\"]".len();
    let fits = "x".repeat(MAX_PAYLOAD - overhead);
    let body = format!("421[\"echo\",\"{fits}\"]");
    assert_eq!(body.len(), MAX_PAYLOAD);
    assert_eq!(hostile.post(&body).await.status, 200);
    assert_eq!(hostile.get().await.body, format!("431[\"{fits}\"]"));
    // ... one byte more is 413 and closes the session (docs/socketio.md §9).
    let parked = hostile.park_get().await;
    let posted = hostile.post(&format!("{body}y")).await;
    assert_eq!(posted.status, 413);
    let parked = parked.await.unwrap();
    assert_eq!((parked.status, parked.body.as_str()), (200, "1"));
    assert_polling_session_gone(&hostile).await;
    assert_eq!(server.disconnected(&id).await, "transport error");
    good.echo("unaffected").await;
    assert_eq!(
        server.try_disconnected(&good_id, Duration::ZERO).await,
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_namespaces_per_client_a_connect_error_and_the_session_goes_on() {
    let _shared = EXCLUSIVE.read().await;
    let server = Server::start(config(PING_INTERVAL, PING_TIMEOUT)).await;
    let (mut good, good_id) = WsClient::connected(server.addr).await;
    let (mut client, id) = WsClient::connected(server.addr).await;
    // `/` and 31 more: the default max_namespaces_per_client, 32.
    assert_eq!(SocketIoConfig::default().max_namespaces_per_client, 32);
    for n in 1..32 {
        client.connect(&format!("/n{n}")).await;
    }
    client.send("40/n32,").await;
    assert_eq!(
        client.packet().await,
        r#"4/n32,{"message":"Too many namespaces"}"#
    );
    // The session and its 32 sockets go on.
    client.echo("after the refusal").await;
    client.send("42/n31,1[\"echo\",\"in /n31\"]").await;
    assert_eq!(client.packet().await, "3/n31,1[\"in /n31\"]");
    // Leaving one makes room for another.
    client.send("41/n1,").await;
    client.connect("/n32").await;
    client.send("40/n33,").await;
    assert_eq!(
        client.packet().await,
        r#"4/n33,{"message":"Too many namespaces"}"#
    );
    good.echo("unaffected").await;
    for socket in [&id, &good_id] {
        assert_eq!(server.try_disconnected(socket, Duration::ZERO).await, None);
    }
}

/// A BINARY_EVENT `echo` with ack id `ack` and `count` placeholders.
fn binary_echo(ack: u64, count: usize) -> String {
    let placeholders: String = (0..count)
        .map(|num| format!(",{{\"_placeholder\":true,\"num\":{num}}}"))
        .collect();
    format!("45{count}-{ack}[\"echo\"{placeholders}]")
}

/// The BINARY_ACK that echoes `binary_echo(ack, count)`, without its `4`.
fn binary_echo_answer(ack: u64, count: usize) -> String {
    let placeholders: Vec<String> = (0..count)
        .map(|num| format!("{{\"_placeholder\":true,\"num\":{num}}}"))
        .collect();
    format!("6{count}-{ack}[{}]", placeholders.join(","))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_attachments_passes_and_one_more_is_a_parse_error() {
    let _shared = EXCLUSIVE.read().await;
    let server = Server::start(config(NO_PING, NO_PING)).await;
    let (mut good, good_id) = WsClient::connected(server.addr).await;
    let (mut client, id) = WsClient::connected(server.addr).await;
    // socket.io-parser's maxAttachments, 10: ten come back as sent.
    client.send(&binary_echo(1, 10)).await;
    for num in 0..10u8 {
        client.send_binary(&[num; 3]).await;
    }
    assert_eq!(client.packet().await, binary_echo_answer(1, 10));
    for num in 0..10u8 {
        match client.frame().await {
            Frame::Binary(data) => assert_eq!(data, [num; 3]),
            other => panic!("expected attachment {num}, got {other:?}"),
        }
    }
    // Eleven: `parse error`, WebSocket close 1002 (docs/socketio.md §9),
    // before any attachment is taken.
    client.send(&binary_echo(2, 11)).await;
    assert_eq!(client.closed().await, Some(CloseCode::ProtocolError));
    assert_eq!(server.disconnected(&id).await, "parse error");

    // Over polling (attachments as `b` + base64): the same answers.
    let (polling, polling_id) = Polling::connected(server.addr).await;
    let body = format!("{}\x1ebAQID", binary_echo(1, 1));
    assert_eq!(polling.post(&body).await.status, 200);
    // The BINARY_ACK and its attachment, in one GET's body or two.
    let mut packets = polling.get().await.body;
    if !packets.contains("\x1eb") {
        packets = format!("{packets}\x1e{}", polling.get().await.body);
    }
    assert_eq!(packets, format!("4{}\x1ebAQID", binary_echo_answer(1, 1)));
    let parked = polling.park_get().await;
    assert_eq!(polling.post(&binary_echo(2, 11)).await.status, 200);
    assert_eq!(parked.await.unwrap().body, "1");
    assert_polling_session_gone(&polling).await;
    assert_eq!(server.disconnected(&polling_id).await, "parse error");

    good.echo("unaffected").await;
    assert_eq!(
        server.try_disconnected(&good_id, Duration::ZERO).await,
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_that_never_come_are_bounded_and_end_in_a_defined_way() {
    let _shared = EXCLUSIVE.read().await;
    let mut config = config(PING_INTERVAL, PING_TIMEOUT);
    // What a waiting packet may hold: its text (one message, at most
    // maxPayload) and attachments up to this many bytes.
    config.binary_limits.max_attachment_bytes = 2 * MAX_PAYLOAD;
    let server = Server::start(config).await;
    let (mut good, good_id) = WsClient::connected(server.addr).await;
    let heartbeat = PING_INTERVAL + PING_TIMEOUT;

    // 1. A client that keeps answering pings keeps its session, the
    //    packet waiting: nothing expires a waiting packet (as in
    //    socket.io-parser), and it holds one message.
    let (mut waiting, waiting_id) = WsClient::connected(server.addr).await;
    waiting.send(&binary_echo(1, 1)).await;
    tokio::time::sleep(heartbeat * 3).await;
    assert_eq!(
        server.try_disconnected(&waiting_id, Duration::ZERO).await,
        None
    );
    // The attachment, late, completes it...
    waiting.send_binary(b"late").await;
    assert_eq!(waiting.packet().await, binary_echo_answer(1, 1));
    assert!(matches!(waiting.frame().await, Frame::Binary(data) if data == b"late"));
    // ... and one nobody announced is a parse error.
    waiting.send_binary(b"stray").await;
    assert_eq!(waiting.closed().await, Some(CloseCode::ProtocolError));
    assert_eq!(server.disconnected(&waiting_id).await, "parse error");

    // 2. A text packet instead of the attachments is a parse error
    //    (socket.io-parser: "got plaintext data when reconstructing").
    let (mut texting, texting_id) = WsClient::connected(server.addr).await;
    texting.send(&binary_echo(1, 2)).await;
    texting.send_binary(b"one").await;
    texting.send("42[\"echo\",\"two\"]").await;
    assert_eq!(texting.closed().await, Some(CloseCode::ProtocolError));
    assert_eq!(server.disconnected(&texting_id).await, "parse error");

    // 3. Attachments past max_attachment_bytes: a parse error when the
    //    total passes it, so what waits never exceeds it.
    let (mut big, big_id) = WsClient::connected(server.addr).await;
    big.send(&binary_echo(1, 3)).await;
    let chunk = vec![7u8; MAX_PAYLOAD];
    big.send_binary(&chunk).await;
    big.send_binary(&chunk).await;
    assert_eq!(
        server
            .try_disconnected(&big_id, Duration::from_millis(50))
            .await,
        None
    );
    big.send_binary(&[7]).await;
    assert_eq!(big.closed().await, Some(CloseCode::ProtocolError));
    assert_eq!(server.disconnected(&big_id).await, "parse error");

    // 4. A client that goes silent with a packet waiting: the heartbeat
    //    ends it (`ping timeout`, close 1000) within pingInterval +
    //    pingTimeout of its last pong.
    let (mut silent, silent_id) = WsClient::connected(server.addr).await;
    silent.send(&binary_echo(1, 2)).await;
    silent.send_binary(b"one").await;
    silent.answer_pings.store(false, Ordering::SeqCst);
    let stopped = Instant::now();
    assert_eq!(silent.closed().await, Some(CloseCode::Normal));
    let took = stopped.elapsed();
    assert_eq!(server.disconnected(&silent_id).await, "ping timeout");
    assert!(
        took <= heartbeat + Duration::from_millis(500),
        "closed {took:?} after the last pong"
    );

    good.echo("unaffected").await;
    assert_eq!(
        server.try_disconnected(&good_id, Duration::ZERO).await,
        None
    );
    server.sessions_become(1, PATIENCE).await;
}

/// The ticks (`2["tick",…]` packets) in a polling GET body.
fn ticks_in(body: &str) -> usize {
    body.split('\x1e')
        .filter(|packet| packet.starts_with("42[\"tick\""))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polling_client_that_never_gets_has_a_bounded_queue_and_ends_at_ping_timeout() {
    let _alone = EXCLUSIVE.write().await;
    let (ping_interval, ping_timeout) = (Duration::from_secs(2), Duration::from_secs(1));
    let mut config = config(ping_interval, ping_timeout);
    // The defaults: GET bodies up to 1 MB, 1 MiB queued per session,
    // overflowing messages skipped (docs/socketio.md §9).
    config.engine.engine.max_payload = 1_000_000;
    let max_queued = config.engine.engine.max_queued_bytes;
    assert_eq!(max_queued, 1 << 20);
    let server = Server::start(config).await;
    let (mut good, good_id) = WsClient::connected(server.addr).await;

    // Two polling clients in room `slow`: `never` never GETs again,
    // `drained` GETs once the emits are over, to show what was kept.
    let opened = Instant::now();
    let (never, never_id) = Polling::connected(server.addr).await;
    let (drained, drained_id) = Polling::connected(server.addr).await;
    for client in [&never, &drained] {
        assert_eq!(client.post("421[\"join\",\"slow\"]").await.status, 200);
    }
    assert_eq!(drained.get().await.body, "431[\"joined\"]");

    // 3 000 emits of 64 kB to the room: 192 MB for each client, while
    // the good client keeps echoing. (Large messages, so that what a
    // bounded queue keeps stands out of the allocator's noise in RSS; a
    // raw JSON argument, so that the unoptimised test build does not spend
    // its time escaping it.)
    const EMITS: usize = 3_000;
    let payload = format!("\"{}\"", "x".repeat(64_000));
    let cost = 1 + format!("2[\"tick\",{payload}]").len();
    let payload = serde_json::value::RawValue::from_string(payload).unwrap();
    let before = rss_kib();
    let flooding = Instant::now();
    let flood = {
        let io = server.io.clone();
        tokio::spawn(async move {
            for n in 0..EMITS {
                io.to("slow").emit("tick", &*payload).unwrap();
                if n % 100 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let mut slowest = Duration::ZERO;
    while !flood.is_finished() {
        slowest = slowest.max(good.echo("during the flood").await);
    }
    flood.await.unwrap();
    let flooded = flooding.elapsed();
    let grown = rss_kib().saturating_sub(before);
    println!(
        "never-GET: {EMITS} emits of {cost} B to 2 polling clients in {flooded:?}: RSS +{grown} KiB; \
         the good client's slowest echo {slowest:?}"
    );
    // Unbounded queues would hold 2 × 192 MB; bounded ones 2 × 1 MiB.
    assert!(grown < 32 * 1024, "RSS grew {grown} KiB");

    // What the drained client gets is exactly what fits in max_queued_bytes
    // (the first tick went into its empty queue; the rest were skipped).
    let expected = max_queued / cost;
    let mut received = 0;
    while received < expected {
        let answer = drained.get().await;
        assert_eq!(answer.status, 200);
        received += ticks_in(&answer.body);
    }
    assert_eq!(received, expected);

    // Neither answers the ping: `ping timeout` pingInterval + pingTimeout
    // after the open, within the timer's slack.
    for id in [&never_id, &drained_id] {
        assert_eq!(server.disconnected(id).await, "ping timeout");
    }
    let ended = opened.elapsed();
    assert!(
        ended >= ping_interval + ping_timeout - Duration::from_millis(100)
            && ended < ping_interval + ping_timeout + Duration::from_secs(1),
        "ended {ended:?} after the open"
    );
    assert_polling_session_gone(&never).await;
    server.sessions_become(1, PATIENCE).await;
    good.echo("unaffected").await;
    // The room emits never reached the good client.
    assert!(good.try_frame(Duration::from_millis(50)).await.is_none());
    assert_eq!(
        server.try_disconnected(&good_id, Duration::ZERO).await,
        None
    );
}

/// A keep-alive HTTP/1.1 connection for many small GETs.
struct KeepAlive {
    addr: SocketAddr,
    stream: BufReader<TcpStream>,
}

impl KeepAlive {
    async fn connect(addr: SocketAddr) -> KeepAlive {
        let stream = BufReader::new(TcpStream::connect(addr).await.unwrap());
        KeepAlive { addr, stream }
    }

    /// GET `target`; the status and the body (read by its Content-Length).
    async fn get(&mut self, target: &str) -> (u16, String) {
        let request = format!("GET {target} HTTP/1.1\r\nHost: {}\r\n\r\n", self.addr);
        self.stream
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .unwrap();
        let mut line = String::new();
        self.stream.read_line(&mut line).await.unwrap();
        let status = line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut length = 0;
        loop {
            line.clear();
            self.stream.read_line(&mut line).await.unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await.unwrap();
        (status, String::from_utf8(body).unwrap())
    }
}

/// Opens `count` polling sessions over `connections` keep-alive
/// connections, never coming back to any of them.
async fn half_open(addr: SocketAddr, count: usize, connections: usize) {
    let tasks: Vec<JoinHandle<()>> = (0..connections)
        .map(|c| {
            let share = count / connections + usize::from(c < count % connections);
            tokio::spawn(async move {
                let mut http = KeepAlive::connect(addr).await;
                for _ in 0..share {
                    let (status, body) = http.get("/socket.io/?EIO=4&transport=polling").await;
                    assert_eq!(status, 200);
                    sid_of_open(&body);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

/// The `q`-quantile of sorted `samples`.
fn quantile(samples: &[Duration], q: f64) -> Duration {
    let at = ((samples.len() - 1) as f64 * q).round() as usize;
    samples.get(at).copied().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_half_open_polling_sessions_stay_bounded_and_expire() {
    let _alone = EXCLUSIVE.write().await;
    const WARM_UP: usize = 200;
    const SESSIONS: usize = 10_000;
    // Long enough that no session of the batch expires before the batch
    // is measured, short enough to wait for their end.
    let (ping_interval, ping_timeout) = (Duration::from_secs(4), Duration::from_secs(1));
    let server = Server::start(config(ping_interval, ping_timeout)).await;
    let (mut good, good_id) = WsClient::connected(server.addr).await;
    let metrics = tokio::runtime::Handle::current().metrics();
    // Allocator arenas, tokio's and hyper's first allocations.
    half_open(server.addr, WARM_UP, 4).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (rss_before, fds_before, tasks_before) = (rss_kib(), open_fds(), metrics.num_alive_tasks());

    // The good client echoes all along; its round trips are the latency.
    let stop = Arc::new(AtomicBool::new(false));
    let echoing = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut most_fds = 0;
            while !stop.load(Ordering::SeqCst) {
                samples.push(good.echo("ping").await);
                most_fds = most_fds.max(open_fds());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (good, samples, most_fds)
        })
    };
    let started = Instant::now();
    half_open(server.addr, SESSIONS, 4).await;
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::SeqCst);
    let (mut good, mut samples, most_fds) = echoing.await.unwrap();
    let open = server.io.engine().session_count();
    let (rss_after, tasks_after) = (rss_kib(), metrics.num_alive_tasks());
    assert_eq!(open, 1 + WARM_UP + SESSIONS, "sessions expired too early");
    let per_session = (rss_after.saturating_sub(rss_before) * 1024) / SESSIONS as u64;
    samples.sort();
    let (p50, p99, max) = (
        quantile(&samples, 0.5),
        quantile(&samples, 0.99),
        quantile(&samples, 1.0),
    );
    println!(
        "half-open: {SESSIONS} handshakes in {took:?}; RSS {rss_before} -> {rss_after} KiB \
         ({per_session} B/session); fds {fds_before}, at most {most_fds}; tasks \
         {tasks_before} -> {tasks_after}; good echo over {} samples: p50 {p50:?} p99 {p99:?} \
         max {max:?}",
        samples.len()
    );
    assert!(per_session < 8 * 1024, "{per_session} B per session");
    assert!(most_fds < 1_000, "{most_fds} fds");
    assert!(samples.len() >= 10, "only {} echoes", samples.len());
    assert!(p99 < Duration::from_millis(250), "p99 {p99:?}");
    assert!(max < Duration::from_secs(1), "max {max:?}");

    // No pong ever came: every half-open session ends by pingInterval +
    // pingTimeout after its open; the good one stays.
    let waited = server
        .sessions_become(1, ping_interval + ping_timeout + PATIENCE)
        .await;
    let tasks_end = metrics.num_alive_tasks();
    println!(
        "half-open: all gone {waited:?} after the batch; RSS {} KiB; tasks {tasks_end}",
        rss_kib()
    );
    // Nothing of theirs is left running: each had a timer task and a
    // connect-timeout task (what remains is the server's accept loop, the
    // good client's connection and reader).
    assert!(
        tasks_end < 20,
        "{tasks_end} tasks still alive after every half-open session ended"
    );
    good.echo("unaffected").await;
    assert_eq!(
        server.try_disconnected(&good_id, Duration::ZERO).await,
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_never_connects_a_namespace_ends_at_connect_timeout() {
    let _shared = EXCLUSIVE.read().await;
    let mut config = config(Duration::from_secs(5), Duration::from_secs(5));
    let connect_timeout = Duration::from_millis(300);
    config.connect_timeout = connect_timeout;
    let server = Server::start(config).await;
    let (mut good, good_id) = WsClient::connected(server.addr).await;
    // docs/socketio.md §9: the Engine.IO session is closed, WebSocket
    // 1000, polling: the parked GET answered `1`.
    let opened = Instant::now();
    // One that connected a namespace in time and left it: the timeout
    // ended at its first connect (socket.io's Client clears it then).
    let (mut leaver, _) = WsClient::connected(server.addr).await;
    leaver.send("41").await;
    let mut ws = WsClient::open(server.addr).await;
    let polling = Polling::open(server.addr).await;
    let parked = polling.park_get().await;
    assert_eq!(ws.closed().await, Some(CloseCode::Normal));
    let parked = parked.await.unwrap();
    assert_eq!((parked.status, parked.body.as_str()), (200, "1"));
    let took = opened.elapsed();
    assert!(
        took >= connect_timeout && took < connect_timeout + Duration::from_secs(1),
        "{took:?}"
    );
    assert_polling_session_gone(&polling).await;
    // The good client, connected before its own deadline, stays past it,
    // and so does the one that left its namespace: it can connect again.
    tokio::time::sleep(connect_timeout).await;
    good.echo("unaffected").await;
    leaver.connect("/").await;
    leaver.echo("back").await;
    assert_eq!(
        server.try_disconnected(&good_id, Duration::ZERO).await,
        None
    );
    server.sessions_become(2, PATIENCE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_json_stays_raw_and_only_typed_reads_refuse_it() {
    let _shared = EXCLUSIVE.read().await;
    let server = Server::start(config(PING_INTERVAL, PING_TIMEOUT)).await;
    let (mut client, id) = WsClient::connected(server.addr).await;
    // 4 000 levels (8 kB, under maxPayload): far past serde_json's
    // recursion limit of 128, which applies when a handler reads the
    // argument as a type, not when the packet is decoded (arguments are
    // kept as raw JSON, skipped without recursion).
    let deep = format!("{}{}", "[".repeat(4_000), "]".repeat(4_000));
    client.send(&format!("421[\"echo\",{deep}]")).await;
    assert_eq!(client.packet().await, format!("31[{deep}]"));
    client.send(&format!("422[\"parse\",{deep}]")).await;
    assert_eq!(client.packet().await, "32[false]");
    // Within the limit it reads.
    let shallow = format!("{}{}", "[".repeat(100), "]".repeat(100));
    client.send(&format!("423[\"parse\",{shallow}]")).await;
    assert_eq!(client.packet().await, "33[true]");
    assert_eq!(server.try_disconnected(&id, Duration::ZERO).await, None);
}
