//! The io_uring server (`chito::uring`) over loopback, with chito's tokio
//! client: echoes of every shape, many connections, handles from other
//! threads and tasks, rooms, timers, shutdown, refusals, a panicking
//! handler. Every wait is bounded.
#![cfg(all(feature = "uring", feature = "tokio", target_os = "linux"))]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chito::handshake::{Accept, Rejection};
use chito::uring::{Handle, Server, ServerHandle, Shutdown};
use chito::{CloseCode, CloseFrame, Config, Error, Handler, Message, OwnedEvent, Sender};

const WAIT: Duration = Duration::from_secs(20);

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, sender: &mut Sender<'_>, message: Message<'_>) {
        let _ = sender.send(message);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `future` on a fresh runtime, bounded by [`WAIT`].
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    runtime().block_on(async move {
        tokio::time::timeout(WAIT, future)
            .await
            .expect("client timed out")
    })
}

fn echo_server() -> ServerHandle {
    Server::bind("127.0.0.1:0")
        .unwrap()
        .spawn(|_open: &mut chito::uring::Open<'_>| Echo)
        .unwrap()
}

fn url(addr: SocketAddr) -> String {
    format!("ws://{addr}/echo")
}

/// Reads events until a message (pings and pongs are skipped).
async fn next_message(ws: &mut chito::tokio::WebSocket<tokio::net::TcpStream>) -> OwnedEvent {
    loop {
        match ws.recv().await.expect("recv") {
            OwnedEvent::Ping(_) | OwnedEvent::Pong(_) => {}
            other => return other,
        }
    }
}

#[test]
fn echoes_text_binary_and_large_messages() {
    let server = echo_server();
    let url = url(server.local_addr());
    block_on(async move {
        let (mut ws, _) = chito::tokio::connect(&url).await.unwrap();
        ws.send(Message::Text("hello")).await.unwrap();
        assert_eq!(
            next_message(&mut ws).await,
            OwnedEvent::Text("hello".into())
        );
        ws.send(Message::Binary(&[0, 1, 2, 255])).await.unwrap();
        assert_eq!(
            next_message(&mut ws).await,
            OwnedEvent::Binary(vec![0, 1, 2, 255])
        );
        // 1 MiB: 256 provided buffers' worth, echoed in one message.
        let large: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        ws.send(Message::Binary(&large)).await.unwrap();
        assert_eq!(next_message(&mut ws).await, OwnedEvent::Binary(large));
        ws.close(CloseCode::Normal, "bye").await.unwrap();
        match ws.recv().await.unwrap() {
            OwnedEvent::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Normal),
            other => panic!("{other:?}"),
        }
    });
}

// ---- raw peers --------------------------------------------------------------

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn raw_connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream
}

fn upgrade_request(addr: SocketAddr, path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Reads an HTTP head (up to the blank line).
fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Everything the server sends until it closes.
fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let _ = stream.read_to_end(&mut all);
    all
}

/// A raw peer past the handshake.
fn raw_open(addr: SocketAddr) -> TcpStream {
    let mut stream = raw_connect(addr);
    stream
        .write_all(upgrade_request(addr, "/").as_bytes())
        .unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    stream
}

/// A client frame: `first` is FIN/RSV/opcode, masked with a fixed key.
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![first];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= 0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Reads one unmasked server frame: (first byte, payload).
fn read_frame(stream: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).ok()?;
    let len = match head[1] & 0x7f {
        126 => {
            let mut n = [0u8; 2];
            stream.read_exact(&mut n).ok()?;
            u16::from_be_bytes(n) as usize
        }
        127 => {
            let mut n = [0u8; 8];
            stream.read_exact(&mut n).ok()?;
            u64::from_be_bytes(n) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0; len];
    stream.read_exact(&mut payload).ok()?;
    Some((head[0], payload))
}

/// The close code of the first close frame the server sends.
fn close_code_from(stream: &mut TcpStream) -> Option<u16> {
    loop {
        let (first, payload) = read_frame(stream)?;
        if first & 0x0f == 0x8 {
            return payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
        }
    }
}

#[test]
fn echoes_a_fragmented_message_whole() {
    let server = echo_server();
    let mut peer = raw_open(server.local_addr());
    // RFC 6455 §5.4: text "Hel" + continuation "lo, " + final "world".
    peer.write_all(&client_frame(0x01, b"Hel")).unwrap();
    peer.write_all(&client_frame(0x00, b"lo, ")).unwrap();
    // A ping between fragments (§5.5: control frames may be interleaved).
    peer.write_all(&client_frame(0x89, b"p")).unwrap();
    peer.write_all(&client_frame(0x80, b"world")).unwrap();
    let (first, payload) = read_frame(&mut peer).unwrap();
    assert_eq!((first, payload.as_slice()), (0x8a, &b"p"[..]), "the pong");
    let (first, payload) = read_frame(&mut peer).unwrap();
    assert_eq!(first, 0x81, "one final text frame");
    assert_eq!(payload, b"Hello, world");
}

#[test]
fn serves_a_thousand_connections_at_once() {
    let server = echo_server();
    let url = url(server.local_addr());
    let echoed = block_on(async move {
        let mut clients = Vec::new();
        for i in 0..1000 {
            let url = url.clone();
            clients.push(tokio::spawn(async move {
                let (mut ws, _) = chito::tokio::connect(&url).await.unwrap();
                let text = format!("client {i}");
                ws.send(Message::Text(&text)).await.unwrap();
                let back = next_message(&mut ws).await;
                (ws, back == OwnedEvent::Text(text))
            }));
        }
        let mut open = Vec::new();
        for client in clients {
            open.push(client.await.unwrap());
        }
        // All 1000 are open at once here.
        open.iter().filter(|(_, ok)| *ok).count()
    });
    assert_eq!(echoed, 1000);
}

/// The handles of the connections a server accepted.
type Handles = Arc<Mutex<Vec<Handle>>>;

fn handle_server(handles: &Handles) -> ServerHandle {
    let handles = handles.clone();
    Server::bind("127.0.0.1:0")
        .unwrap()
        .spawn(move |open: &mut chito::uring::Open<'_>| {
            handles.lock().unwrap().push(open.handle());
            Echo
        })
        .unwrap()
}

fn wait_for_handles(handles: &Handles, n: usize) -> Vec<Handle> {
    let deadline = Instant::now() + WAIT;
    loop {
        let list = handles.lock().unwrap().clone();
        if list.len() >= n {
            return list;
        }
        assert!(Instant::now() < deadline, "{} handles of {n}", list.len());
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_handle_sends_from_another_thread_and_from_a_tokio_task() {
    let handles = Handles::default();
    let server = handle_server(&handles);
    let url = url(server.local_addr());
    let rt = runtime();
    rt.block_on(async {
        let (mut ws, _) = chito::tokio::connect(&url).await.unwrap();
        let handle = wait_for_handles(&handles, 1).remove(0);
        let from_thread = handle.clone();
        std::thread::spawn(move || {
            from_thread
                .try_send(Message::Text("from a thread"))
                .unwrap();
        })
        .join()
        .unwrap();
        let first = tokio::time::timeout(WAIT, next_message(&mut ws))
            .await
            .unwrap();
        assert_eq!(first, OwnedEvent::Text("from a thread".into()));
        tokio::spawn(async move {
            handle.send(Message::Binary(b"from a task")).await.unwrap();
            let shared = chito::SharedMessage::text("shared".to_owned());
            handle.try_send_shared(&shared).unwrap();
        })
        .await
        .unwrap();
        let second = tokio::time::timeout(WAIT, next_message(&mut ws))
            .await
            .unwrap();
        assert_eq!(second, OwnedEvent::Binary(b"from a task".to_vec()));
        let third = tokio::time::timeout(WAIT, next_message(&mut ws))
            .await
            .unwrap();
        assert_eq!(third, OwnedEvent::Text("shared".into()));
        // The echo still works alongside.
        ws.send(Message::Text("echo")).await.unwrap();
        let fourth = tokio::time::timeout(WAIT, next_message(&mut ws))
            .await
            .unwrap();
        assert_eq!(fourth, OwnedEvent::Text("echo".into()));
    });
}

#[test]
fn a_handle_closes_its_connection_and_knows_when_it_ended() {
    let handles = Handles::default();
    let server = handle_server(&handles);
    let url = url(server.local_addr());
    block_on(async move {
        let (mut ws, _) = chito::tokio::connect(&url).await.unwrap();
        let handle = wait_for_handles(&handles, 1).remove(0);
        handle.close(CloseCode::TryAgainLater, "bye").unwrap();
        match ws.recv().await.unwrap() {
            OwnedEvent::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::TryAgainLater),
            other => panic!("{other:?}"),
        }
        assert!(handle.is_closed());
        assert!(handle.try_send(Message::Text("late")).is_err());
    });
}

/// Records how each connection ended: `on_close`'s code and the errors
/// before it.
#[derive(Default)]
struct Ends {
    ended: Mutex<Vec<(u16, Vec<String>)>>,
}

impl Ends {
    fn wait(&self, n: usize) -> Vec<(u16, Vec<String>)> {
        let deadline = Instant::now() + WAIT;
        loop {
            let ended = self.ended.lock().unwrap().clone();
            if ended.len() >= n {
                return ended;
            }
            assert!(
                Instant::now() < deadline,
                "{} ends of {n}: {ended:?}",
                ended.len()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Echoes; panics on "panic"; records its end.
struct Recorder {
    ends: Arc<Ends>,
    errors: Vec<String>,
}

impl Handler for Recorder {
    fn on_message(&mut self, sender: &mut Sender<'_>, message: Message<'_>) {
        if message == Message::Text("panic") {
            panic!("the handler panics on purpose");
        }
        let _ = sender.send(message);
    }

    fn on_error(&mut self, error: &Error) {
        self.errors.push(format!("{error:?}"));
    }

    fn on_close(&mut self, frame: &CloseFrame<'_>) {
        let errors = std::mem::take(&mut self.errors);
        self.ends
            .ended
            .lock()
            .unwrap()
            .push((frame.code.as_u16(), errors));
    }
}

fn recording(server: Server, ends: &Arc<Ends>) -> ServerHandle {
    let ends = ends.clone();
    server
        .spawn(move |_open: &mut chito::uring::Open<'_>| Recorder {
            ends: ends.clone(),
            errors: Vec::new(),
        })
        .unwrap()
}

#[test]
fn keepalive_gives_up_on_a_peer_that_never_answers_pings() {
    let mut config = Config::default();
    config.ping_interval = Some(Duration::from_millis(100));
    config.pong_timeout = Duration::from_millis(200);
    config.auto_pong = true;
    let ends = Arc::new(Ends::default());
    let server = recording(Server::bind("127.0.0.1:0").unwrap().config(config), &ends);
    let started = Instant::now();
    let mut peer = raw_open(server.local_addr());
    // The peer reads but never answers: pings come, then the end.
    let (first, payload) = read_frame(&mut peer).unwrap();
    assert_eq!((first, payload.as_slice()), (0x89, &b"chito"[..]));
    let rest = read_to_close(&mut peer);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}; {rest:?}");
    let ended = ends.wait(1);
    assert_eq!(ended[0].0, 1006, "{ended:?}");
    assert!(ended[0].1[0].contains("Keepalive"), "{ended:?}");
}

#[test]
fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let mut config = Config::default();
    config.idle_timeout = Some(Duration::from_millis(200));
    config.close_timeout = Duration::from_millis(300);
    let ends = Arc::new(Ends::default());
    let server = recording(Server::bind("127.0.0.1:0").unwrap().config(config), &ends);
    let started = Instant::now();
    let mut peer = raw_open(server.local_addr());
    // RFC 6455 §7.1.2: the server starts the closing handshake (1001).
    assert_eq!(close_code_from(&mut peer), Some(1001));
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(190), "{elapsed:?}");
    // The peer never answers: the close timeout ends the transport.
    read_to_close(&mut peer);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(ends.wait(1).len(), 1);
}

#[test]
fn accept_with_refuses_with_the_status_the_client_sees() {
    let server = Server::bind("127.0.0.1:0")
        .unwrap()
        .accept_with(|request| {
            if request.path() == "/private" {
                Err(Rejection::new(403, "forbidden"))
            } else {
                Ok(Accept::default())
            }
        })
        .spawn(|_open: &mut chito::uring::Open<'_>| Echo)
        .unwrap();
    let addr = server.local_addr();
    let mut peer = raw_connect(addr);
    peer.write_all(upgrade_request(addr, "/private").as_bytes())
        .unwrap();
    let answer = String::from_utf8_lossy(&read_to_close(&mut peer)).into_owned();
    assert!(answer.starts_with("HTTP/1.1 403 "), "{answer}");
    // The client's view: the handshake fails with the status.
    let refused = block_on(chito::tokio::connect(&format!("ws://{addr}/private")));
    let error = refused.expect_err("refused");
    assert!(error.to_string().contains("403"), "{error}");
    // Other paths are served.
    let mut ok = raw_open(addr);
    ok.write_all(&client_frame(0x81, b"hi")).unwrap();
    assert_eq!(read_frame(&mut ok).unwrap(), (0x81, b"hi".to_vec()));
}

#[test]
fn a_panicking_handler_ends_only_its_own_connection() {
    let ends = Arc::new(Ends::default());
    let server = recording(Server::bind("127.0.0.1:0").unwrap(), &ends);
    let addr = server.local_addr();
    let mut calm = raw_open(addr);
    calm.write_all(&client_frame(0x81, b"before")).unwrap();
    assert_eq!(read_frame(&mut calm).unwrap(), (0x81, b"before".to_vec()));
    let mut doomed = raw_open(addr);
    doomed.write_all(&client_frame(0x81, b"panic")).unwrap();
    // Its transport ends, without an echo.
    let rest = read_to_close(&mut doomed);
    assert!(!rest.windows(5).any(|w| w == b"panic"), "{rest:?}");
    // The other connection and new ones are served as before.
    calm.write_all(&client_frame(0x81, b"after")).unwrap();
    assert_eq!(read_frame(&mut calm).unwrap(), (0x81, b"after".to_vec()));
    let mut fresh = raw_open(addr);
    fresh.write_all(&client_frame(0x82, b"new")).unwrap();
    assert_eq!(read_frame(&mut fresh).unwrap(), (0x82, b"new".to_vec()));
}

#[test]
fn a_panicking_factory_refuses_only_that_handshake() {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let server = Server::bind("127.0.0.1:0")
        .unwrap()
        .spawn(move |_open: &mut chito::uring::Open<'_>| {
            if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("the factory panics on purpose");
            }
            Echo
        })
        .unwrap();
    let addr = server.local_addr();
    let mut first = raw_connect(addr);
    first
        .write_all(upgrade_request(addr, "/").as_bytes())
        .unwrap();
    let answer = String::from_utf8_lossy(&read_to_close(&mut first)).into_owned();
    assert!(answer.starts_with("HTTP/1.1 500 "), "{answer}");
    let mut second = raw_open(addr);
    second.write_all(&client_frame(0x81, b"ok")).unwrap();
    assert_eq!(read_frame(&mut second).unwrap(), (0x81, b"ok".to_vec()));
}

#[test]
fn shutdown_sends_1001_refuses_handshakes_with_503_and_drops_stragglers() {
    let shutdown = Shutdown::new();
    let mut config = Config::default();
    config.close_timeout = Duration::from_secs(10);
    let ends = Arc::new(Ends::default());
    let server = recording(
        Server::bind("127.0.0.1:0")
            .unwrap()
            .config(config)
            .shutdown(&shutdown),
        &ends,
    );
    let addr = server.local_addr();
    let url = url(addr);
    let rt = runtime();
    rt.block_on(async {
        // A handshake in progress (connected first, so that the loop has
        // accepted it once it accepted the next two), a well-behaved
        // client, and a straggler that never answers the close.
        let mut midway = raw_connect(addr);
        midway.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        let (mut polite, _) = chito::tokio::connect(&url).await.unwrap();
        let mut straggler = raw_open(addr);
        let live = Instant::now() + WAIT;
        while shutdown.live_connections() < 2 {
            assert!(Instant::now() < live, "{}", shutdown.live_connections());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let s = shutdown.clone();
        let started = Instant::now();
        let stopping = tokio::spawn(async move { s.shutdown(Duration::from_millis(500)).await });
        // The polite client gets 1001 and answers it.
        match tokio::time::timeout(WAIT, polite.recv())
            .await
            .unwrap()
            .unwrap()
        {
            OwnedEvent::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::GoingAway),
            other => panic!("{other:?}"),
        }
        // The handshake in progress completes into a 503.
        let rest = upgrade_request(addr, "/");
        let rest = rest.split_once("\r\n").unwrap().1;
        midway.write_all(rest.as_bytes()).unwrap();
        let answer = String::from_utf8_lossy(&read_to_close(&mut midway)).into_owned();
        assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
        // The straggler sees the 1001 but does not answer: dropped at
        // the deadline.
        assert_eq!(close_code_from(&mut straggler), Some(1001));
        let dropped = tokio::time::timeout(WAIT, stopping).await.unwrap().unwrap();
        assert_eq!(dropped, 1, "the straggler");
        assert!(started.elapsed() >= Duration::from_millis(450));
        read_to_close(&mut straggler);
    });
    // The loop ends once its connections are gone.
    let joined = std::thread::spawn(move || server.join());
    let deadline = Instant::now() + WAIT;
    while !joined.is_finished() {
        assert!(Instant::now() < deadline, "the server did not end");
        std::thread::sleep(Duration::from_millis(10));
    }
    joined.join().unwrap().unwrap();
    assert_eq!(shutdown.live_connections(), 0);
    let ended = ends.wait(2);
    assert!(ended.iter().any(|(code, _)| *code == 1001), "{ended:?}");
    // New connections are not accepted any more.
    assert!(
        TcpStream::connect(addr).is_err() || {
            let mut late = raw_connect(addr);
            let _ = late.write_all(upgrade_request(addr, "/").as_bytes());
            !String::from_utf8_lossy(&read_to_close(&mut late)).starts_with("HTTP/1.1 101")
        }
    );
}

#[test]
fn several_loops_share_the_port() {
    let threads = Arc::new(Mutex::new(std::collections::HashSet::new()));
    let seen = threads.clone();
    let server = Server::bind("127.0.0.1:0")
        .unwrap()
        .loops(2)
        .spawn(move |_open: &mut chito::uring::Open<'_>| {
            seen.lock().unwrap().insert(std::thread::current().id());
            Echo
        })
        .unwrap();
    let addr = server.local_addr();
    for i in 0..40u8 {
        let mut peer = raw_open(addr);
        peer.write_all(&client_frame(0x82, &[i])).unwrap();
        assert_eq!(read_frame(&mut peer).unwrap(), (0x82, vec![i]));
    }
    // SO_REUSEPORT spreads connections by a hash of their addresses: over
    // 40 connections both loops served some.
    assert_eq!(threads.lock().unwrap().len(), 2);
}

#[cfg(feature = "rooms")]
#[test]
fn rooms_emit_to_members_on_the_uring_server_encoded_once() {
    use chito::rooms::{Membership, Rooms};

    struct Member {
        _membership: Membership,
    }
    impl Handler for Member {}

    let rooms = Rooms::new();
    let in_factory = rooms.clone();
    let server = Server::bind("127.0.0.1:0")
        .unwrap()
        .spawn(move |open: &mut chito::uring::Open<'_>| {
            let membership = in_factory.add(open.handle());
            in_factory.join(membership.id(), "room");
            Member {
                _membership: membership,
            }
        })
        .unwrap();
    let url = url(server.local_addr());
    block_on(async move {
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(chito::tokio::connect(&url).await.unwrap().0);
        }
        let deadline = Instant::now() + WAIT;
        while rooms.members("room").len() < 3 {
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let shared = chito::SharedMessage::text("to the room".to_owned());
        assert_eq!(rooms.emit_shared("room", &shared).delivered, 3);
        for client in &mut clients {
            assert_eq!(
                next_message(client).await,
                OwnedEvent::Text("to the room".into())
            );
        }
        assert_eq!(shared.encodings(), 1, "encoded once for the three");
    });
}
