//! The reconnecting client against real servers on loopback (chito's tokio
//! adapter): kill and restart, a server that goes silent without a FIN,
//! final and non-final close codes, the user's close, the attempt limit,
//! the hold queue's bounds, and the backoff's arithmetic.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chito::{CloseCode, Config, Message, OwnedEvent};
use chito_client::reconnect::{
    Backoff, ClientEvent, ClientState, Disconnect, GiveUp, HoldLimit, Outbox, ReconnectingClient,
    SendError,
};
use chito_client::{Connector, Hop};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MS: Duration = Duration::from_millis(1);
/// No single wait in these tests should come near this.
const EVENT_TIMEOUT: Duration = Duration::from_secs(5);

/// What a test server does with each connection it accepts.
#[derive(Clone, Copy)]
struct Behavior {
    /// Connections numbered up to this (from 1) are closed by the server...
    close_first: usize,
    /// ...with this code...
    close_code: CloseCode,
    /// ...after this long. Later connections echo text and log it.
    close_after: Duration,
}

const ECHO: Behavior = Behavior {
    close_first: 0,
    close_code: CloseCode::Normal,
    close_after: Duration::ZERO,
};

/// A chito server on its own runtime, so the test can kill it the way a
/// process dies: every task dropped, every socket closed at once.
struct Server {
    runtime: Option<tokio::runtime::Runtime>,
    /// Text messages received, in order, across its connections.
    log: Arc<Mutex<Vec<String>>>,
    accepts: Arc<AtomicUsize>,
}

impl Server {
    fn start(listener: std::net::TcpListener, behavior: Behavior) -> Server {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let accepts = Arc::new(AtomicUsize::new(0));
        listener.set_nonblocking(true).unwrap();
        let (log2, accepts2) = (log.clone(), accepts.clone());
        runtime.spawn(async move {
            let listener = TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let number = accepts2.fetch_add(1, Ordering::SeqCst) + 1;
                let log = log2.clone();
                tokio::spawn(serve_one(stream, number, behavior, log));
            }
        });
        Server {
            runtime: Some(runtime),
            log,
            accepts,
        }
    }

    fn bind(port: u16, behavior: Behavior) -> Server {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        Server::start(listener, behavior)
    }

    fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn serve_one(
    stream: TcpStream,
    number: usize,
    behavior: Behavior,
    log: Arc<Mutex<Vec<String>>>,
) {
    let Ok(mut ws) = chito::tokio::Builder::new(stream).accept().await else {
        return;
    };
    if number <= behavior.close_first {
        tokio::time::sleep(behavior.close_after).await;
        let _ = ws.close(behavior.close_code, "test server closes").await;
        while ws.recv().await.is_ok() {}
        return;
    }
    while let Ok(event) = ws.recv().await {
        if let OwnedEvent::Text(text) = event {
            log.lock().unwrap().push(text.clone());
            if ws.send(Message::Text(&text)).await.is_err() {
                return;
            }
        }
    }
}

/// A port that was free a moment ago, with its listener.
fn bound_listener() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

async fn next(client: &mut ReconnectingClient) -> ClientEvent {
    tokio::time::timeout(EVENT_TIMEOUT, client.recv())
        .await
        .expect("an event within the timeout")
        .expect("the client has not ended")
}

/// Events until one matches `stop`, which is returned last.
async fn until(
    client: &mut ReconnectingClient,
    stop: impl Fn(&ClientEvent) -> bool,
) -> Vec<ClientEvent> {
    let mut seen = Vec::new();
    loop {
        let event = next(client).await;
        let done = stop(&event);
        seen.push(event);
        if done {
            return seen;
        }
    }
}

/// Every event up to the end (`None`).
async fn to_the_end(client: &mut ReconnectingClient) -> Vec<ClientEvent> {
    let mut seen = Vec::new();
    while let Some(event) = tokio::time::timeout(EVENT_TIMEOUT, client.recv())
        .await
        .expect("the client ends within the timeout")
    {
        seen.push(event);
    }
    seen
}

fn is_connected(event: &ClientEvent) -> bool {
    matches!(event, ClientEvent::Connected { .. })
}

/// The position of the first event at or after `from` matching `wanted`.
fn position_after(
    events: &[ClientEvent],
    from: usize,
    wanted: impl Fn(&ClientEvent) -> bool,
) -> usize {
    events
        .iter()
        .skip(from)
        .position(wanted)
        .map(|i| i + from)
        .unwrap_or_else(|| panic!("not found after {from}: {events:#?}"))
}

/// Texts the client receives until it has `n`.
async fn texts(client: &mut ReconnectingClient, n: usize) -> Vec<String> {
    let mut texts = Vec::new();
    while texts.len() < n {
        if let ClientEvent::Text(text) = next(client).await {
            texts.push(text);
        }
    }
    texts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_and_restart_reconnects_hook_first_then_held_messages_once_in_order() {
    let (listener, port) = bound_listener();
    let mut first = Server::start(listener, ECHO);
    let base = 20 * MS;
    let cap = 200 * MS;
    let backoff = Backoff::exponential(base, cap);
    let hook_runs = Arc::new(AtomicUsize::new(0));
    let runs = hook_runs.clone();
    let mut client =
        ReconnectingClient::builder(format!("ws://127.0.0.1:{port}/feed"), Connector::new())
            .backoff(backoff)
            // Every wait is its whole bound: the delays can be checked exactly.
            .random_source(|| u64::MAX)
            .on_connected(move |connected| {
                let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
                assert_eq!(connected.reconnected(), n > 1);
                connected
                    .send(Message::Text(&format!("hello-{n}")))
                    .unwrap();
            })
            .spawn();

    let events = until(&mut client, is_connected).await;
    assert!(matches!(events[0], ClientEvent::Connecting { attempt: 1 }));
    assert!(matches!(
        events.last(),
        Some(ClientEvent::Connected {
            attempt: 1,
            reconnected: false,
            ..
        })
    ));
    client.send(Message::Text("live-1")).await.unwrap();
    assert_eq!(texts(&mut client, 2).await, ["hello-1", "live-1"]);
    assert_eq!(first.log(), ["hello-1", "live-1"]);

    // Kill: the server's sockets close under the client.
    first.kill();
    let down = until(&mut client, |e| {
        matches!(e, ClientEvent::Disconnected { .. })
    })
    .await;
    let Some(ClientEvent::Disconnected { cause }) = down.last() else {
        unreachable!()
    };
    assert!(matches!(cause, Disconnect::Transport(_)), "{cause:?}");
    assert_ne!(client.state(), ClientState::Connected);
    let held: Vec<String> = (0..10).map(|i| format!("held-{i}")).collect();
    for text in &held {
        client.send(Message::Text(text)).await.unwrap();
    }
    // Let a few attempts fail against the closed port.
    tokio::time::sleep(150 * MS).await;

    let second = Server::bind(port, ECHO);
    let restarted = Instant::now();
    let mut after = down;
    after.extend(until(&mut client, is_connected).await);
    let reconnect_time = restarted.elapsed();
    // At most one whole wait (the cap) plus a loopback connect.
    assert!(reconnect_time < cap + 1000 * MS, "{reconnect_time:?}");
    assert!(matches!(
        after.last(),
        Some(ClientEvent::Connected {
            reconnected: true,
            ..
        })
    ));

    // Disconnected, RetryIn, Connecting, …, Connected{reconnected}.
    let d = position_after(&after, 0, |e| matches!(e, ClientEvent::Disconnected { .. }));
    let r = position_after(&after, d, |e| matches!(e, ClientEvent::RetryIn { .. }));
    let c = position_after(&after, r, |e| matches!(e, ClientEvent::Connecting { .. }));
    let k = position_after(&after, c, is_connected);
    assert_eq!(k, after.len() - 1);
    // Each wait is the bound for its retry number: the series started with
    // the first connection, so retry n precedes attempt n + 2.
    let mut retries = 0;
    for event in &after {
        if let ClientEvent::RetryIn { attempt, delay } = event {
            assert_eq!(*delay, backoff.bound(attempt - 2), "attempt {attempt}");
            assert!(*delay <= cap);
            retries += 1;
        }
    }
    assert!(retries >= 2, "{after:#?}");
    assert_eq!(hook_runs.load(Ordering::SeqCst), 2);

    let mut expected = vec!["hello-2".to_owned()];
    expected.extend(held.iter().cloned());
    assert_eq!(texts(&mut client, expected.len()).await, expected);
    // Exactly once, in order, after the hook's message.
    assert_eq!(second.log(), expected);
    assert_eq!(second.accepts(), 1);
    // Sends go straight through again.
    client.send(Message::Text("live-2")).await.unwrap();
    assert_eq!(texts(&mut client, 1).await, ["live-2"]);
}

/// A TCP relay that can freeze its open connections: it keeps their
/// sockets open but stops passing bytes, like a server that hangs or a
/// path that dropped without a FIN or RST. Connections made after the
/// freeze pass bytes again.
struct Relay {
    addr: SocketAddr,
    frozen: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
}

impl Relay {
    async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let frozen: Arc<Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
        let flags = frozen.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let flag = Arc::new(AtomicBool::new(false));
                flags.lock().unwrap().push(flag.clone());
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pump(client_read, server_write, flag.clone()));
                tokio::spawn(pump(server_read, client_write, flag));
            }
        });
        Relay { addr, frozen }
    }

    fn freeze(&self) {
        for flag in self.frozen.lock().unwrap().iter() {
            flag.store(true, Ordering::SeqCst);
        }
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    let mut buf = [0u8; 4096];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.load(Ordering::SeqCst) {
            // Swallow everything from now on, and keep both sockets open.
            let _keep = (from, to);
            std::future::pending::<()>().await;
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_gone_silent_without_fin_is_found_by_keepalive_and_reconnected() {
    let (listener, port) = bound_listener();
    let _server = Server::start(listener, ECHO);
    let relay = Relay::start(SocketAddr::from(([127, 0, 0, 1], port))).await;

    let mut config = Config::default();
    config.ping_interval = Some(100 * MS);
    config.pong_timeout = 200 * MS;
    let mut client = ReconnectingClient::builder(
        format!("ws://{}/", relay.addr),
        Connector::new().config(config),
    )
    .backoff(Backoff::exponential(10 * MS, 50 * MS))
    .spawn();
    until(&mut client, is_connected).await;
    client.send(Message::Text("before")).await.unwrap();
    assert_eq!(texts(&mut client, 1).await, ["before"]);

    relay.freeze();
    let frozen_at = Instant::now();
    let events = until(&mut client, |e| {
        matches!(e, ClientEvent::Disconnected { .. })
    })
    .await;
    let detected = frozen_at.elapsed();
    let Some(ClientEvent::Disconnected { cause }) = events.last() else {
        unreachable!()
    };
    assert!(matches!(cause, Disconnect::KeepaliveTimeout), "{cause:?}");
    // Ping after 100 ms of silence, then 200 ms for the pong.
    assert!(
        detected >= 200 * MS && detected < 2 * EVENT_TIMEOUT / 5,
        "{detected:?}"
    );

    let events = until(&mut client, is_connected).await;
    assert!(matches!(
        events.last(),
        Some(ClientEvent::Connected {
            reconnected: true,
            ..
        })
    ));
    client.send(Message::Text("after")).await.unwrap();
    assert_eq!(texts(&mut client, 1).await, ["after"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_close_code_gives_up_once_and_other_codes_reconnect() {
    // 1012 (service restart) is not final: the client comes back.
    let (listener, port) = bound_listener();
    let server = Server::start(
        listener,
        Behavior {
            close_first: 1,
            close_code: CloseCode::ServiceRestart,
            close_after: Duration::ZERO,
        },
    );
    let mut client =
        ReconnectingClient::builder(format!("ws://127.0.0.1:{port}/"), Connector::new())
            .backoff(Backoff::exponential(5 * MS, 20 * MS))
            .spawn();
    let events = until(&mut client, |e| {
        matches!(
            e,
            ClientEvent::Connected {
                reconnected: true,
                ..
            }
        )
    })
    .await;
    let d = position_after(&events, 0, |e| {
        matches!(e, ClientEvent::Disconnected { .. })
    });
    let ClientEvent::Disconnected {
        cause: Disconnect::Closed(Some(frame)),
    } = &events[d]
    else {
        panic!("{events:#?}")
    };
    assert_eq!(frame.code, CloseCode::ServiceRestart);
    assert_eq!(server.accepts(), 2);
    drop(client);

    // 1008 (policy violation, final by default): one connection, then the end.
    let (listener, port) = bound_listener();
    let server = Server::start(
        listener,
        Behavior {
            close_first: usize::MAX,
            close_code: CloseCode::PolicyViolation,
            close_after: Duration::ZERO,
        },
    );
    let gave_up = Arc::new(Mutex::new(Vec::new()));
    let seen = gave_up.clone();
    let mut client =
        ReconnectingClient::builder(format!("ws://127.0.0.1:{port}/"), Connector::new())
            .backoff(Backoff::exponential(5 * MS, 20 * MS))
            .on_give_up(move |cause| seen.lock().unwrap().push(*cause))
            .spawn();
    let events = to_the_end(&mut client).await;
    let kinds: Vec<&str> = events.iter().map(kind).collect();
    assert_eq!(kinds, ["Connecting", "Connected", "Disconnected", "GaveUp"]);
    assert!(matches!(
        &events[2],
        ClientEvent::Disconnected { cause: Disconnect::Closed(Some(frame)) }
            if frame.code == CloseCode::PolicyViolation
    ));
    assert!(matches!(
        events[3],
        ClientEvent::GaveUp {
            cause: GiveUp::FinalCloseCode(CloseCode::PolicyViolation)
        }
    ));
    assert_eq!(
        *gave_up.lock().unwrap(),
        [GiveUp::FinalCloseCode(CloseCode::PolicyViolation)]
    );
    assert_eq!(client.state(), ClientState::Closed);
    assert_eq!(
        client.send(Message::Text("late")).await,
        Err(SendError::Closed)
    );
    tokio::time::sleep(100 * MS).await;
    assert_eq!(server.accepts(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_users_close_ends_with_closed_and_no_reconnect() {
    let (listener, port) = bound_listener();
    let server = Server::start(listener, ECHO);
    let mut client =
        ReconnectingClient::builder(format!("ws://127.0.0.1:{port}/"), Connector::new())
            .backoff(Backoff::exponential(5 * MS, 20 * MS))
            .spawn();
    until(&mut client, is_connected).await;
    client.send(Message::Text("one")).await.unwrap();
    assert_eq!(texts(&mut client, 1).await, ["one"]);
    assert_eq!(
        client.close(CloseCode::Abnormal, ""),
        Err(SendError::InvalidClose)
    );
    client.close(CloseCode::Normal, "bye").unwrap();
    assert_eq!(
        client.close(CloseCode::Normal, "bye"),
        Err(SendError::Closed)
    );
    let events = to_the_end(&mut client).await;
    let kinds: Vec<&str> = events.iter().map(kind).collect();
    assert_eq!(kinds, ["Closed"]);
    assert_eq!(client.state(), ClientState::Closed);
    tokio::time::sleep(100 * MS).await;
    assert_eq!(server.accepts(), 1);

    // Closing while waiting to retry ends at once too.
    let (listener, port) = bound_listener();
    drop(listener);
    let mut client =
        ReconnectingClient::builder(format!("ws://127.0.0.1:{port}/"), Connector::new())
            .backoff(Backoff::exponential(
                Duration::from_secs(60),
                Duration::from_secs(60),
            ))
            .random_source(|| u64::MAX)
            .spawn();
    until(&mut client, |e| matches!(e, ClientEvent::RetryIn { .. })).await;
    let asked = Instant::now();
    client.close(CloseCode::Normal, "").unwrap();
    let events = to_the_end(&mut client).await;
    assert!(
        matches!(events.as_slice(), [ClientEvent::Closed]),
        "{events:#?}"
    );
    assert!(asked.elapsed() < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_attempts_against_a_closed_port_gives_up_after_exactly_n() {
    let (listener, port) = bound_listener();
    drop(listener);
    let give_ups = Arc::new(AtomicUsize::new(0));
    let counter = give_ups.clone();
    let backoff = Backoff::exponential(MS, 4 * MS).max_attempts(Some(3));
    let mut client =
        ReconnectingClient::builder(format!("ws://127.0.0.1:{port}/"), Connector::new())
            .backoff(backoff)
            .random_source(|| u64::MAX)
            .on_give_up(move |_| {
                counter.fetch_add(1, Ordering::SeqCst);
            })
            .spawn();
    let events = to_the_end(&mut client).await;
    let kinds: Vec<&str> = events.iter().map(kind).collect();
    assert_eq!(
        kinds,
        [
            "Connecting",
            "Disconnected",
            "RetryIn",
            "Connecting",
            "Disconnected",
            "RetryIn",
            "Connecting",
            "Disconnected",
            "GaveUp"
        ]
    );
    let mut attempts = Vec::new();
    for event in &events {
        match event {
            ClientEvent::Connecting { attempt } => attempts.push(*attempt),
            ClientEvent::Disconnected {
                cause: Disconnect::Connect(error),
            } => assert_eq!(error.hop(), Hop::Tcp, "{error}"),
            ClientEvent::RetryIn { attempt, delay } => {
                assert_eq!(*delay, backoff.bound(attempt - 2))
            }
            ClientEvent::GaveUp { cause } => assert_eq!(*cause, GiveUp::MaxAttempts(3)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(attempts, [1, 2, 3]);
    assert_eq!(give_ups.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_url_gives_up_at_once() {
    let mut client = ReconnectingClient::builder("http://127.0.0.1:1/", Connector::new()).spawn();
    let events = to_the_end(&mut client).await;
    assert!(
        matches!(
            events.as_slice(),
            [
                ClientEvent::Connecting { attempt: 1 },
                ClientEvent::Disconnected { cause: Disconnect::Connect(e) },
                ClientEvent::GaveUp { cause: GiveUp::InvalidRequest },
            ] if e.hop() == Hop::Request
        ),
        "{events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_refuses_and_hold_refuses_the_message_that_does_not_fit() {
    let (listener, port) = bound_listener();
    drop(listener);
    let url = format!("ws://127.0.0.1:{port}/");

    let client = ReconnectingClient::builder(url.clone(), Connector::new())
        .while_disconnected(Outbox::Reject)
        .spawn();
    assert_eq!(
        client.send(Message::Text("x")).await,
        Err(SendError::Disconnected)
    );

    let client = ReconnectingClient::builder(url.clone(), Connector::new())
        .while_disconnected(Outbox::Hold {
            max_messages: 2,
            max_bytes: 1000,
        })
        .spawn();
    client.send(Message::Text("a")).await.unwrap();
    client.send(Message::Binary(b"b")).await.unwrap();
    assert_eq!(
        client.send(Message::Text("c")).await,
        Err(SendError::HoldFull(HoldLimit::Messages(2)))
    );

    let client = ReconnectingClient::builder(url, Connector::new())
        .while_disconnected(Outbox::Hold {
            max_messages: 100,
            max_bytes: 10,
        })
        .spawn();
    client.send(Message::Text("123456")).await.unwrap();
    assert_eq!(
        client.send(Message::Text("12345")).await,
        Err(SendError::HoldFull(HoldLimit::Bytes(10)))
    );
    // The refused one changed nothing: what fits still goes in.
    client.send(Message::Binary(b"1234")).await.unwrap();
    assert_eq!(
        client.send(Message::Text("1")).await,
        Err(SendError::HoldFull(HoldLimit::Bytes(10)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_lasts_reset_after_starts_a_new_series() {
    // The server closes every connection with 1001 after 150 ms.
    let behavior = Behavior {
        close_first: usize::MAX,
        close_code: CloseCode::GoingAway,
        close_after: 150 * MS,
    };
    for (reset_after, expected) in [(50 * MS, [1, 1, 1]), (Duration::from_secs(10), [2, 3, 4])] {
        let (listener, port) = bound_listener();
        let _server = Server::start(listener, behavior);
        let backoff = Backoff::exponential(2 * MS, 100 * MS);
        let mut client =
            ReconnectingClient::builder(format!("ws://127.0.0.1:{port}/"), Connector::new())
                .backoff(backoff)
                .reset_after(reset_after)
                .random_source(|| u64::MAX)
                .spawn();
        let mut retries = Vec::new();
        while retries.len() < 3 {
            if let ClientEvent::RetryIn { attempt, delay } = next(&mut client).await {
                retries.push((attempt, delay));
            }
        }
        let attempts: Vec<u32> = retries.iter().map(|r| r.0).collect();
        assert_eq!(attempts, expected, "reset_after {reset_after:?}");
        // A new series waits the first bound again; a continuing one grows.
        for (i, (_, delay)) in retries.iter().enumerate() {
            let retry = if expected[0] == 1 { 0 } else { i as u32 };
            assert_eq!(*delay, backoff.bound(retry));
        }
    }
}

#[test]
fn every_bound_is_min_of_cap_and_base_times_two_to_the_n() {
    let base = Duration::from_millis(3);
    let cap = Duration::from_secs(7);
    let backoff = Backoff::exponential(base, cap);
    let mut reached = None;
    for n in 0..200u32 {
        let grown = base
            .as_nanos()
            .checked_mul(1u128.checked_shl(n).unwrap_or(u128::MAX));
        let expected = match grown {
            Some(nanos) if nanos < cap.as_nanos() => Duration::from_nanos(nanos as u64),
            _ => cap,
        };
        assert_eq!(backoff.bound(n), expected, "n = {n}");
        if expected == cap && reached.is_none() {
            reached = Some(n);
        }
        if let Some(first) = reached {
            // Once reached, the cap holds.
            assert!(n < first || backoff.bound(n) == cap);
        }
    }
    // 3 ms · 2^12 = 12.3 s is the first over 7 s.
    assert_eq!(reached, Some(12));
    assert_eq!(backoff.bound(u32::MAX), cap);
}

#[test]
fn full_jitter_spans_zero_to_the_bound() {
    let backoff = Backoff::exponential(Duration::from_millis(10), Duration::from_secs(1));
    for n in 0..20 {
        let bound = backoff.bound(n);
        assert_eq!(backoff.delay(n, 0), Duration::ZERO);
        assert_eq!(backoff.delay(n, u64::MAX), bound);
        let half = backoff.delay(n, u64::MAX / 2);
        assert!(
            half.abs_diff(bound / 2) <= Duration::from_nanos(1),
            "{half:?}"
        );
    }
    // A spread of random values covers the window, each within it.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let (mut low, mut high) = (Duration::MAX, Duration::ZERO);
    let bound = backoff.bound(3);
    for _ in 0..1000 {
        // xorshift64: a test's stand-in for the injected source.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let delay = backoff.delay(3, state);
        assert!(delay <= bound);
        low = low.min(delay);
        high = high.max(delay);
    }
    assert!(
        low < bound / 20 && high > bound * 19 / 20,
        "{low:?}..{high:?}"
    );
}

#[test]
fn huge_durations_saturate_instead_of_panicking() {
    let backoff = Backoff::exponential(Duration::MAX, Duration::MAX);
    assert_eq!(backoff.bound(63), Duration::MAX);
    let delay = backoff.delay(63, u64::MAX);
    assert!(delay > Duration::from_secs(100 * 365 * 24 * 3600));
    assert_eq!(
        Backoff::default().max_attempts(Some(0)).attempt_limit(),
        Some(1)
    );
}

fn kind(event: &ClientEvent) -> &'static str {
    match event {
        ClientEvent::Connecting { .. } => "Connecting",
        ClientEvent::Connected { .. } => "Connected",
        ClientEvent::Text(_) => "Text",
        ClientEvent::Binary(_) => "Binary",
        ClientEvent::Disconnected { .. } => "Disconnected",
        ClientEvent::RetryIn { .. } => "RetryIn",
        ClientEvent::GaveUp { .. } => "GaveUp",
        ClientEvent::Closed => "Closed",
        _ => "other",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_stops_the_server_sending() {
    // The server sends 64 KiB messages as fast as it can write them.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let count = sent.clone();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut ws = chito::tokio::Builder::new(stream).accept().await.unwrap();
        // Incompressible, so permessage-deflate cannot shrink it to nothing.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let payload: Vec<u8> = (0..64 << 10)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        while ws.send(Message::Binary(&payload)).await.is_ok() {
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    let mut client = ReconnectingClient::builder(format!("ws://{addr}/"), Connector::new()).spawn();
    until(&mut client, is_connected).await;
    // Nobody reads: the client's buffer (64 events) fills, then its task
    // stops reading the socket, then the socket buffers fill and the server
    // waits. A stall counts once the server has sent more than the buffer
    // holds (a shorter pause is TCP's own window update timing).
    let mut stalled_at = None;
    for _ in 0..30 {
        let before = sent.load(Ordering::SeqCst);
        tokio::time::sleep(250 * MS).await;
        if sent.load(Ordering::SeqCst) == before && before > 64 {
            stalled_at = Some(before);
            break;
        }
    }
    let stalled_at = stalled_at.expect("the server stalls");
    tokio::time::sleep(300 * MS).await;
    assert_eq!(sent.load(Ordering::SeqCst), stalled_at);
    // Bounded: the event buffer (64 messages) plus what the kernel's
    // loopback buffers and chito's read buffer hold — far from unbounded.
    assert!(stalled_at * (64 << 10) < 256 << 20, "{stalled_at} messages");
    // Reading again lets the server go on.
    let mut read = 0;
    while read < stalled_at + 10 {
        if let ClientEvent::Binary(data) = next(&mut client).await {
            assert_eq!(data.len(), 64 << 10);
            read += 1;
        }
    }
    assert!(sent.load(Ordering::SeqCst) > stalled_at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_client_closes_the_connection_with_1000() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut ws = chito::tokio::Builder::new(stream).accept().await.unwrap();
        let mut close = None;
        while let Ok(event) = ws.recv().await {
            if let OwnedEvent::Close(frame) = event {
                close = frame.map(|f| f.code);
            }
        }
        let _ = tx.send(close);
    });
    let mut client = ReconnectingClient::builder(format!("ws://{addr}/"), Connector::new()).spawn();
    until(&mut client, is_connected).await;
    drop(client);
    let code = tokio::time::timeout(EVENT_TIMEOUT, rx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code, Some(CloseCode::Normal));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_that_panics_ends_the_client_and_sends_fail() {
    let (listener, port) = bound_listener();
    let _server = Server::start(listener, ECHO);
    let mut client =
        ReconnectingClient::builder(format!("ws://127.0.0.1:{port}/"), Connector::new())
            .on_connected(|_| panic!("the hook fails (expected by the test)"))
            .spawn();
    let events = to_the_end(&mut client).await;
    assert!(
        matches!(events.as_slice(), [ClientEvent::Connecting { attempt: 1 }]),
        "{events:#?}"
    );
    assert_eq!(client.state(), ClientState::Closed);
    assert_eq!(
        client.send(Message::Text("x")).await,
        Err(SendError::Closed)
    );
}
