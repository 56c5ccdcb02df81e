//! The bounds, CORS and shutdown of `EngineIo` over real HTTP
//! (docs/socketio.md §9, §10): a server on 127.0.0.1, raw HTTP/1.1 requests
//! on a `TcpStream` (each `Connection: close`, so a response ends at EOF)
//! and chito's WebSocket client.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chito::{CloseCode, OwnedEvent};
use chito_socketio::engineio::{
    AllowRequest, Cors, CorsOrigin, EngineConfig, EngineEvent, EngineHandler, EngineIo,
    EngineServerConfig, EngineSocket, QueueOverflow, SendError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Echoes messages; on `flood:<count>:<size>` sends `count` messages of
/// `size` bytes and records what each send returned.
#[derive(Default, Clone)]
struct Flood {
    results: Arc<Mutex<Vec<Result<(), SendError>>>>,
}

impl EngineHandler for Flood {
    fn on_event(&self, socket: &EngineSocket, event: EngineEvent) {
        let EngineEvent::Text(text) = event else {
            return;
        };
        let Some(spec) = text.strip_prefix("flood:") else {
            socket.send_text(&text);
            return;
        };
        let mut numbers = spec.split(':').map(|n| n.parse::<usize>().unwrap());
        let (count, size) = (numbers.next().unwrap(), numbers.next().unwrap());
        let message = "x".repeat(size);
        let mut results = self.results.lock().unwrap();
        for _ in 0..count {
            let result = socket.try_send_text(&message);
            results.push(result);
            if result.is_err() && result != Err(SendError::Full) {
                break;
            }
        }
    }
}

async fn start(
    config: EngineServerConfig,
    handler: Flood,
) -> (
    SocketAddr,
    EngineIo,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let server = EngineIo::new(config, handler);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = tokio::spawn(server.clone().serve(listener));
    (addr, server, serving)
}

/// A parsed HTTP response.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request (`extra` header lines end with `\r\n`) and reads
/// the whole answer.
async fn request(addr: SocketAddr, method: &str, target: &str, extra: &str, body: &str) -> Answer {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("answer within 10 s")
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.to_owned(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// A polling handshake; the sid on success.
async fn handshake(addr: SocketAddr, extra: &str) -> (Answer, Option<String>) {
    let answer = request(
        addr,
        "GET",
        "/engine.io/?EIO=4&transport=polling",
        extra,
        "",
    )
    .await;
    let sid = answer
        .body
        .strip_prefix("0{\"sid\":\"")
        .and_then(|rest| rest.split('"').next())
        .map(str::to_owned);
    (answer, sid)
}

fn polling_target(sid: &str) -> String {
    format!("/engine.io/?EIO=4&transport=polling&sid={sid}")
}

const UPGRADE_HEADERS: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

/// A WebSocket-only handshake by hand (no client behind it: nothing is
/// answered); the stream and the status line's first 12 bytes.
async fn raw_upgrade(addr: SocketAddr) -> (TcpStream, [u8; 12]) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let upgrade = format!(
        "GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {addr}\r\n{UPGRADE_HEADERS}\r\n"
    );
    stream.write_all(upgrade.as_bytes()).await.unwrap();
    let mut status = [0u8; 12];
    stream.read_exact(&mut status).await.unwrap();
    (stream, status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_sessions_answers_503_on_both_handshakes_until_a_session_ends() {
    let config = EngineServerConfig {
        max_sessions: 1,
        ..EngineServerConfig::default()
    };
    let (addr, server, _serving) = start(config, Flood::default()).await;
    let (first, sid) = handshake(addr, "").await;
    assert_eq!(first.status, 200);
    let sid = sid.unwrap();
    let (second, _) = handshake(addr, "").await;
    assert_eq!(second.status, 503);
    assert_eq!(second.header("retry-after"), Some("1"));
    // A WebSocket handshake is refused before its 101.
    let (_ws, status) = raw_upgrade(addr).await;
    assert_eq!(&status, b"HTTP/1.1 503");
    // The existing session is served as usual.
    let posted = request(addr, "POST", &polling_target(&sid), "", "1").await;
    assert_eq!(posted.status, 200);
    // Closed by the client: its slot is free once it is forgotten (a GET
    // racing the close may still get `6` within 1 s).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(server.session_count(), 0);
    let (third, sid) = handshake(addr, "").await;
    assert_eq!(third.status, 200, "{third:?}");
    assert!(sid.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_request_refuses_handshakes_with_403_code_4() {
    let config = EngineServerConfig {
        allow_request: Some(AllowRequest::new(|parts| {
            parts
                .headers
                .get("x-token")
                .is_some_and(|v| v == "let-me-in")
        })),
        ..EngineServerConfig::default()
    };
    let (addr, _server, _serving) = start(config, Flood::default()).await;
    let (refused, _) = handshake(addr, "").await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.body, r#"{"code":4,"message":"Forbidden"}"#);
    assert_eq!(refused.header("content-type"), Some("application/json"));
    let (refused, _) = handshake(addr, "x-token: guess\r\n").await;
    assert_eq!(refused.status, 403);
    // WebSocket handshakes are filtered too.
    let ws = request(
        addr,
        "GET",
        "/engine.io/?EIO=4&transport=websocket",
        UPGRADE_HEADERS,
        "",
    )
    .await;
    assert_eq!(ws.status, 403);
    let (allowed, sid) = handshake(addr, "x-token: let-me-in\r\n").await;
    assert_eq!(allowed.status, 200);
    // Only handshakes are filtered (as the reference server's
    // `allowRequest`): the session's own requests carry its sid.
    let posted = request(addr, "POST", &polling_target(&sid.unwrap()), "", "4hi").await;
    assert_eq!(posted.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_polling_queue_rejects_sends_and_the_session_goes_on() {
    let config = EngineServerConfig {
        engine: EngineConfig {
            max_queued_bytes: 100,
            ..EngineConfig::default()
        },
        ..EngineServerConfig::default()
    };
    let handler = Flood::default();
    let (addr, _server, _serving) = start(config, handler.clone()).await;
    let (_, sid) = handshake(addr, "").await;
    let target = polling_target(&sid.unwrap());
    // 20 messages of 10 bytes (11 queued each with their `4`): 9 fit.
    let posted = request(addr, "POST", &target, "", "4flood:20:10").await;
    assert_eq!(posted.status, 200);
    let results = handler.results.lock().unwrap().clone();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 9);
    assert!(results[9..].iter().all(|r| *r == Err(SendError::Full)));
    let got = request(addr, "GET", &target, "", "").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body.split('\x1e').count(), 9);
    // Drained: the session takes messages again.
    let posted = request(addr, "POST", &target, "", "4echo").await;
    assert_eq!(posted.status, 200);
    let got = request(addr, "GET", &target, "", "").await;
    assert_eq!(got.body, "4echo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_websocket_consumer_is_closed_with_1008_under_close_session() {
    let config = EngineServerConfig {
        engine: EngineConfig {
            max_queued_bytes: 64 * 1024,
            queue_overflow: QueueOverflow::CloseSession,
            ..EngineConfig::default()
        },
        ..EngineServerConfig::default()
    };
    let handler = Flood::default();
    let (addr, server, _serving) = start(config, handler.clone()).await;
    let url = format!("ws://{addr}/engine.io/?EIO=4&transport=websocket");
    let (mut ws, _) = chito::tokio::connect(&url).await.unwrap();
    let Ok(OwnedEvent::Text(open)) = ws.recv().await else {
        panic!("no open packet");
    };
    assert!(open.starts_with("0{"));
    // 64 MB while the client reads nothing: more than loopback's socket
    // buffers and both queues hold.
    ws.send(chito::Message::Text("4flood:2000:32768"))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while handler.results.lock().unwrap().last() != Some(&Err(SendError::ClosedSlowConsumer)) {
        assert!(tokio::time::Instant::now() < deadline, "never overflowed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent = handler.results.lock().unwrap().len() - 1;
    assert!(sent < 2000);
    // The client reads what had reached the socket, then the close.
    let mut messages = 0;
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.recv()).await {
            Ok(Ok(OwnedEvent::Text(_))) => messages += 1,
            Ok(Ok(OwnedEvent::Close(frame))) => break frame.map(|f| f.code),
            Ok(Ok(_)) => {}
            other => panic!("expected a close, got {other:?}"),
        }
    };
    assert_eq!(code, Some(CloseCode::PolicyViolation));
    assert!(messages <= sent, "{messages} > {sent}");
    assert_eq!(server.session_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_lists_origins_with_credentials_and_answers_preflights() {
    let config = EngineServerConfig {
        cors: Cors {
            origin: CorsOrigin::List(vec!["http://good.example".into()]),
            credentials: true,
            allowed_headers: Some(vec!["content-type".into()]),
            max_age: Some(Duration::from_secs(60)),
        },
        ..EngineServerConfig::default()
    };
    let (addr, _server, _serving) = start(config, Flood::default()).await;
    let (good, _) = handshake(addr, "Origin: http://good.example\r\n").await;
    assert_eq!(good.status, 200);
    assert_eq!(
        good.header("access-control-allow-origin"),
        Some("http://good.example")
    );
    assert_eq!(
        good.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(good.header("vary"), Some("Origin"));
    let (bad, _) = handshake(addr, "Origin: http://evil.example\r\n").await;
    assert_eq!(bad.status, 200);
    assert_eq!(bad.header("access-control-allow-origin"), None);
    assert_eq!(bad.header("access-control-allow-credentials"), None);
    let preflight = request(
        addr,
        "OPTIONS",
        "/engine.io/?EIO=4&transport=polling",
        "Origin: http://good.example\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: Content-Type, X-Secret\r\n",
        "",
    )
    .await;
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("http://good.example")
    );
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("POST")
    );
    assert_eq!(
        preflight.header("access-control-allow-headers"),
        Some("Content-Type")
    );
    assert_eq!(preflight.header("access-control-max-age"), Some("60"));
    let refused = request(
        addr,
        "OPTIONS",
        "/engine.io/?EIO=4&transport=polling",
        "Origin: http://evil.example\r\nAccess-Control-Request-Method: POST\r\n",
        "",
    )
    .await;
    assert_eq!(refused.status, 204);
    assert_eq!(refused.header("access-control-allow-origin"), None);
    assert_eq!(refused.header("access-control-allow-methods"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_any_origin_is_cors_any() {
    let config = EngineServerConfig {
        cors_any_origin: true,
        ..EngineServerConfig::default()
    };
    let (addr, _server, _serving) = start(config, Flood::default()).await;
    let (answer, _) = handshake(addr, "Origin: http://any.example\r\n").await;
    assert_eq!(answer.header("access-control-allow-origin"), Some("*"));
    let preflight = request(addr, "OPTIONS", "/engine.io/", "", "").await;
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("GET,POST")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_parked_gets_with_close_and_websockets_with_1001() {
    let (addr, server, serving) = start(EngineServerConfig::default(), Flood::default()).await;
    let (_, sid) = handshake(addr, "").await;
    let target = polling_target(&sid.unwrap());
    let parked = tokio::spawn(async move { request(addr, "GET", &target, "", "").await });
    let url = format!("ws://{addr}/engine.io/?EIO=4&transport=websocket");
    let (mut ws, _) = chito::tokio::connect(&url).await.unwrap();
    assert!(matches!(ws.recv().await, Ok(OwnedEvent::Text(open)) if open.starts_with("0{")));
    // The client reads all along, so it answers the server's close and
    // the closing handshake ends within the grace.
    let closed = tokio::spawn(async move {
        loop {
            match ws.recv().await {
                Ok(OwnedEvent::Close(frame)) => break frame.map(|f| f.code),
                Ok(_) => {}
                Err(error) => panic!("{error}"),
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.session_count(), 2);

    let started = std::time::Instant::now();
    let dropped = server.shutdown(Duration::from_secs(3)).await;
    assert_eq!(dropped, 0);
    assert!(started.elapsed() < Duration::from_secs(3));

    let parked = parked.await.unwrap();
    assert_eq!(parked.status, 200);
    assert_eq!(parked.body, "1");
    assert_eq!(closed.await.unwrap(), Some(CloseCode::GoingAway));
    // `serve` returned and its listener is gone: nothing is accepted.
    assert!(serving.await.unwrap().is_ok());
    assert!(TcpStream::connect(addr).await.is_err());
    assert_eq!(server.session_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drops_websockets_that_do_not_close_by_the_deadline() {
    let (addr, server, _serving) = start(EngineServerConfig::default(), Flood::default()).await;
    // A raw upgrade that never answers the close: the server's closing
    // handshake cannot finish.
    let (mut stream, status) = raw_upgrade(addr).await;
    assert_eq!(&status, b"HTTP/1.1 101");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let dropped = server.shutdown(Duration::from_millis(300)).await;
    assert_eq!(dropped, 1);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
    // Then the connection ends: reading reaches EOF (or a reset).
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut rest)).await;
    assert!(ended.is_ok(), "connection still open");
}
