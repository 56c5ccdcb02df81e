//! The tokio adapter over real loopback sockets: echo, split halves across
//! tasks, sender handles, backpressure policies, every timer, graceful
//! shutdown and idle memory.
#![cfg(feature = "tokio")]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chito::tokio::{Builder, Overflow, QueueError, Shutdown};
use chito::{
    CloseCode, CloseFrame, Config, Error, Handler, Message, OwnedEvent, Sender, Timeout, UsageError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default, Clone)]
struct Record {
    closed: Arc<Mutex<Option<u16>>>,
    errors: Arc<Mutex<Vec<String>>>,
}

struct Echo(Record);

impl Handler for Echo {
    fn on_message(&mut self, sender: &mut Sender<'_>, message: Message<'_>) {
        let _ = sender.send(message);
    }
    fn on_close(&mut self, frame: &CloseFrame<'_>) {
        *self.0.closed.lock().unwrap() = Some(frame.code.as_u16());
    }
    fn on_error(&mut self, error: &Error) {
        self.0.errors.lock().unwrap().push(format!("{error:?}"));
    }
}

/// Serves one connection with `config`, returning the address and what the
/// handler saw.
async fn echo_server(config: Config) -> (String, Record, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let record = Record::default();
    let r = record.clone();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let ws = Builder::new(stream).config(config).accept().await.unwrap();
        ws.serve(&mut Echo(r)).await;
    });
    (addr, record, task)
}

#[tokio::test]
async fn echo_roundtrip_and_clean_close() {
    let (addr, record, task) = echo_server(Config::default()).await;
    let (mut ws, _) = chito::tokio::connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    ws.send(Message::Text("hello")).await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), OwnedEvent::Text("hello".into()));
    let big = vec![3u8; 5 << 20];
    ws.send(Message::Binary(&big)).await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), OwnedEvent::Binary(big));
    ws.close(CloseCode::Normal, "bye").await.unwrap();
    assert!(matches!(
        ws.recv().await.unwrap(),
        OwnedEvent::Close(Some(_))
    ));
    task.await.unwrap();
    assert_eq!(*record.closed.lock().unwrap(), Some(1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_halves_work_from_different_tasks() {
    let (addr, _record, _task) = echo_server(Config::default()).await;
    let (ws, _) = chito::tokio::connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    let (writer, mut reader) = ws.split();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let writer = writer.clone();
            tokio::spawn(async move {
                for i in 0..250 {
                    writer
                        .send(Message::Text(&format!("{w}:{i}")))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let mut next = [0usize; 4];
    for _ in 0..1000 {
        match reader.recv().await.unwrap() {
            OwnedEvent::Text(t) => {
                let (w, i) = t.split_once(':').unwrap();
                let (w, i): (usize, usize) = (w.parse().unwrap(), i.parse().unwrap());
                // Each writer's messages arrive in its order.
                assert_eq!(i, next[w]);
                next[w] += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(next, [250; 4]);
}

/// A server whose handler hands its `Handle` out, so another task pushes.
#[tokio::test]
async fn handle_sends_from_another_task_to_a_served_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let ws = Builder::new(stream).accept().await.unwrap();
        let handle = ws.handle();
        let pusher = tokio::spawn(async move {
            for i in 0..100 {
                handle
                    .send(Message::Text(&format!("push {i}")))
                    .await
                    .unwrap();
            }
        });
        ws.serve(&mut Echo(Record::default())).await;
        pusher.await.unwrap();
    });
    let (mut ws, _) = chito::tokio::connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    for i in 0..100 {
        assert_eq!(
            ws.recv().await.unwrap(),
            OwnedEvent::Text(format!("push {i}"))
        );
    }
    ws.close(CloseCode::Normal, "").await.unwrap();
    while !matches!(ws.recv().await, Ok(OwnedEvent::Close(_)) | Err(_)) {}
    server.await.unwrap();
}

/// A client that completes the handshake and then never reads.
async fn silent_client(addr: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 129];
    let mut got = 0;
    while !head[..got].ends_with(b"\r\n\r\n") {
        got += stream.read(&mut head[got..got + 1]).await.unwrap();
    }
    stream
}

/// Queues `chunk` again and again (letting the driver run between) until
/// the handle refuses it; the refusal.
async fn send_until_refused(handle: &chito::tokio::Handle, chunk: &[u8]) -> Result<(), QueueError> {
    for _ in 0..10_000 {
        handle.try_send(Message::Binary(chunk))?;
        tokio::task::yield_now().await;
    }
    Ok(())
}

async fn served_handle(
    max_queued_bytes: usize,
    overflow: Overflow,
) -> (chito::tokio::Handle, TcpStream, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let ws = Builder::new(stream)
            .max_queued_bytes(max_queued_bytes)
            .queue_overflow(overflow)
            .accept()
            .await
            .unwrap();
        tx.send(ws.handle()).unwrap();
        ws.serve(&mut Echo(Record::default())).await;
    });
    let client = silent_client(&addr).await;
    (rx.await.unwrap(), client, server)
}

#[tokio::test]
async fn backpressure_reject_bounds_the_queue() {
    let (handle, _client, _server) = served_handle(256 << 10, Overflow::Reject).await;
    let chunk = vec![1u8; 16 << 10];
    let mut full = false;
    for _ in 0..10_000 {
        match handle.try_send(Message::Binary(&chunk)) {
            Ok(()) => {}
            Err(QueueError::Full) => {
                full = true;
                break;
            }
            Err(e) => panic!("{e:?}"),
        }
        tokio::task::yield_now().await;
    }
    // The kernel's socket buffers absorb some; the queue never exceeds its bound.
    assert!(full, "queue never filled");
    assert!(
        handle.buffered_amount() <= (256 << 10) + (16 << 10) + 14,
        "{}",
        handle.buffered_amount()
    );
    assert!(!handle.is_closed());
}

#[tokio::test]
async fn backpressure_close_policy_closes_the_slow_consumer() {
    let overflow = Overflow::Close(CloseCode::TryAgainLater);
    let (handle, mut client, _server) = served_handle(128 << 10, overflow).await;
    let chunk = vec![1u8; 16 << 10];
    let result = send_until_refused(&handle, &chunk).await;
    assert_eq!(result, Err(QueueError::ClosedSlowConsumer));
    assert!(handle.is_closed());
    // Reading now, the client finds a close 1013 after the queued data.
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let n = client.read(&mut buf).await.unwrap();
            if n == 0 {
                return false;
            }
            // Keep the last 3 bytes so a frame split across reads is found.
            let keep = seen.len().min(3);
            seen.drain(..seen.len() - keep);
            seen.extend_from_slice(&buf[..n]);
            if seen.windows(4).any(|w| w == [0x88, 0x0F, 0x03, 0xF5]) {
                return true;
            }
        }
    })
    .await
    .unwrap();
    assert!(found, "no close 1013 frame");
}

#[tokio::test]
async fn backpressure_wait_policy_resumes_when_the_peer_reads() {
    let (handle, mut client, _server) = served_handle(64 << 10, Overflow::Reject).await;
    let sender = tokio::spawn(async move {
        let chunk = vec![2u8; 16 << 10];
        for _ in 0..2000 {
            handle.send(Message::Binary(&chunk)).await.unwrap();
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !sender.is_finished(),
        "32 MB cannot fit in a 64 KiB queue plus socket buffers"
    );
    let mut total = 0;
    let mut buf = vec![0u8; 1 << 16];
    while total < 2000 * (16 << 10) {
        total += client.read(&mut buf).await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(5), sender)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn keepalive_fails_a_peer_that_never_answers() {
    let mut config = Config::default();
    config.ping_interval = Some(Duration::from_millis(100));
    config.pong_timeout = Duration::from_millis(150);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let record = Record::default();
    let r = record.clone();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let ws = Builder::new(stream).config(config).accept().await.unwrap();
        ws.serve(&mut Echo(r)).await;
    });
    let started = Instant::now();
    let _client = silent_client(&addr).await;
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(240) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    let errors = record.errors.lock().unwrap().clone();
    assert!(errors.iter().any(|e| e.contains("Keepalive")), "{errors:?}");
    assert_eq!(*record.closed.lock().unwrap(), Some(1006));
}

#[tokio::test]
async fn keepalive_pings_keep_a_responsive_peer_alive() {
    let mut config = Config::default();
    config.ping_interval = Some(Duration::from_millis(50));
    config.pong_timeout = Duration::from_millis(100);
    let (addr, record, task) = echo_server(config).await;
    let (mut ws, _) = chito::tokio::connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    let mut pings = 0;
    let deadline = Instant::now() + Duration::from_millis(600);
    while Instant::now() < deadline {
        if let Ok(Ok(OwnedEvent::Ping(_))) =
            tokio::time::timeout(Duration::from_millis(100), ws.recv()).await
        {
            pings += 1;
        }
    }
    assert!(pings >= 4, "{pings} pings");
    assert!(
        record.closed.lock().unwrap().is_none(),
        "closed a live peer"
    );
    ws.close(CloseCode::Normal, "").await.unwrap();
    while !matches!(ws.recv().await, Ok(OwnedEvent::Close(_)) | Err(_)) {}
    task.await.unwrap();
}

#[tokio::test]
async fn idle_timeout_sends_going_away() {
    let mut config = Config::default();
    config.idle_timeout = Some(Duration::from_millis(150));
    let (addr, _record, task) = echo_server(config).await;
    let (mut ws, _) = chito::tokio::connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    match tokio::time::timeout(Duration::from_secs(3), ws.recv())
        .await
        .unwrap()
        .unwrap()
    {
        OwnedEvent::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::GoingAway),
        other => panic!("{other:?}"),
    }
    task.await.unwrap();
}

#[tokio::test]
async fn handshake_timeout_stops_a_slowloris() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        Builder::new(stream)
            .handshake_timeout(Duration::from_millis(200))
            .accept()
            .await
            .err()
    });
    let mut client = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    for byte in b"GET / HTTP/1.1\r\nHost: x\r\n" {
        if client.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        if server.is_finished() {
            break;
        }
    }
    let error = server.await.unwrap();
    assert!(
        matches!(error, Some(Error::Timeout(Timeout::Handshake))),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn close_handshake_times_out_when_the_peer_never_answers() {
    let mut config = Config::default();
    config.close_timeout = Duration::from_millis(200);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut ws = Builder::new(stream).config(config).accept().await.unwrap();
        ws.close(CloseCode::Normal, "").await.unwrap();
        let started = Instant::now();
        let result = ws.recv().await;
        (result, started.elapsed())
    });
    let _client = silent_client(&addr).await;
    let (result, elapsed) = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(result, Err(Error::Timeout(Timeout::CloseHandshake))),
        "{result:?}"
    );
    assert!(elapsed >= Duration::from_millis(190), "{elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_closes_everyone_then_drops_the_stragglers() {
    let shutdown = Shutdown::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let s = shutdown.clone();
    let acceptor = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = s.triggered() => break,
                accepted = listener.accept() => {
                    let (stream, _) = accepted.unwrap();
                    let s = s.clone();
                    tokio::spawn(async move {
                        if let Ok(ws) = Builder::new(stream).shutdown(&s).accept().await {
                            ws.serve(&mut Echo(Record::default())).await;
                        }
                    });
                }
            }
        }
    });
    // Four polite clients and one that never answers the close.
    let mut polite = Vec::new();
    for _ in 0..4 {
        let (ws, _) = chito::tokio::connect(&format!("ws://{addr}/"))
            .await
            .unwrap();
        polite.push(tokio::spawn(async move {
            let mut ws = ws;
            loop {
                match ws.recv().await {
                    Ok(OwnedEvent::Close(Some(frame))) => return frame.code,
                    Ok(_) => {}
                    Err(e) => panic!("{e:?}"),
                }
            }
        }));
    }
    let _rude = silent_client(&addr).await;
    while shutdown.live_connections() < 5 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let dropped = shutdown.shutdown(Duration::from_millis(500)).await;
    assert_eq!(dropped, 1, "only the client that never answered is dropped");
    assert!(started.elapsed() < Duration::from_secs(3));
    for p in polite {
        assert_eq!(p.await.unwrap(), CloseCode::GoingAway);
    }
    acceptor.await.unwrap();
    // New handshakes after shutdown are refused.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(shutdown.live_connections(), 0);
}

#[tokio::test]
async fn idle_connection_holds_no_buffers() {
    let (addr, _record, _task) = echo_server(Config::default()).await;
    let (mut ws, _) = chito::tokio::connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    for _ in 0..3 {
        ws.send(Message::Binary(&[7u8; 10_000])).await.unwrap();
        assert!(matches!(ws.recv().await.unwrap(), OwnedEvent::Binary(_)));
    }
    // Wait for input that never comes, then look.
    assert!(tokio::time::timeout(Duration::from_millis(50), ws.recv())
        .await
        .is_err());
    assert_eq!(ws.connection().buffer_capacity(), 0);
    assert_eq!(ws.connection().compression_memory(), 0);
    // And it still works.
    ws.send(Message::Text("again")).await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), OwnedEvent::Text("again".into()));
}

/// The close codes RFC 6455 §7.4.1 forbids on the wire, and two reserved ones.
const UNSENDABLE: [CloseCode; 5] = [
    CloseCode::Abnormal,
    CloseCode::NoStatusReceived,
    CloseCode::TlsHandshake,
    CloseCode::Reserved(1004),
    CloseCode::Reserved(999),
];

/// Issue 10's bug: `Handle::close` took a code that cannot be sent, the
/// driver then failed to send it and dropped the queue — no close frame
/// ever went out and the socket stayed open. The check now happens in the
/// core before anything is queued: the call fails and nothing changes.
#[tokio::test]
async fn handle_refuses_unsendable_close_and_the_connection_goes_on() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let ws = Builder::new(stream).accept().await.unwrap();
        tx.send(ws.handle()).unwrap();
        ws.serve(&mut Echo(Record::default())).await;
    });
    let (mut ws, _) = chito::tokio::connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    let handle = rx.await.unwrap();
    for code in UNSENDABLE {
        assert_eq!(
            handle.close(code, ""),
            Err(QueueError::Invalid(UsageError::UnsendableCloseCode(
                code.as_u16()
            )))
        );
        assert!(!handle.is_closed(), "{code}");
    }
    assert_eq!(
        handle.close(CloseCode::Normal, &"x".repeat(124)),
        Err(QueueError::Invalid(UsageError::CloseReasonTooLong))
    );
    assert_eq!(
        handle.ping(&[0; 126]),
        Err(QueueError::Invalid(UsageError::ControlPayloadTooLong))
    );
    // Nothing changed: messages flow both ways.
    handle.try_send(Message::Text("still open")).unwrap();
    assert_eq!(
        ws.recv().await.unwrap(),
        OwnedEvent::Text("still open".into())
    );
    ws.send(Message::Text("echo")).await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), OwnedEvent::Text("echo".into()));
    // A sendable close still closes, with its code on the wire.
    handle.close(CloseCode::PolicyViolation, "done").unwrap();
    assert!(handle.is_closed());
    match tokio::time::timeout(Duration::from_secs(5), ws.recv()).await {
        Ok(Ok(OwnedEvent::Close(Some(frame)))) => {
            assert_eq!(frame.code, CloseCode::PolicyViolation)
        }
        other => panic!("{other:?}"),
    }
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap();
}

/// The same bug through the overflow policy: a full queue whose policy
/// closes with an unsendable code refuses the message and changes nothing.
#[tokio::test]
async fn overflow_close_with_unsendable_code_refuses_and_changes_nothing() {
    let overflow = Overflow::Close(CloseCode::Abnormal);
    let (handle, _client, _server) = served_handle(64 << 10, overflow).await;
    let chunk = vec![1u8; 16 << 10];
    let result = send_until_refused(&handle, &chunk).await;
    assert_eq!(
        result,
        Err(QueueError::Invalid(UsageError::UnsendableCloseCode(1006)))
    );
    assert!(!handle.is_closed(), "the connection was not closed");
    let queued = handle.buffered_amount();
    assert!(
        queued > 0 && queued <= (64 << 10) + (16 << 10) + 14,
        "{queued}"
    );
    // A valid close still works.
    handle.close(CloseCode::TryAgainLater, "").unwrap();
    assert!(handle.is_closed());
}

/// The socket's own `close` checks in the core too.
#[tokio::test]
async fn websocket_close_refuses_unsendable_codes() {
    let (addr, _record, task) = echo_server(Config::default()).await;
    let (mut ws, _) = chito::tokio::connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    for code in UNSENDABLE {
        match ws.close(code, "").await {
            Err(Error::Usage(UsageError::UnsendableCloseCode(n))) => assert_eq!(n, code.as_u16()),
            other => panic!("{code}: {other:?}"),
        }
    }
    ws.send(Message::Text("still open")).await.unwrap();
    assert_eq!(
        ws.recv().await.unwrap(),
        OwnedEvent::Text("still open".into())
    );
    ws.close(CloseCode::Normal, "").await.unwrap();
    while !matches!(ws.recv().await, Ok(OwnedEvent::Close(_)) | Err(_)) {}
    task.await.unwrap();
}
