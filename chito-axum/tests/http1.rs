//! The extractor behind a real axum 0.8 server (`axum::serve` on
//! 127.0.0.1:0) over HTTP/1.1, with real peers: chito's own client
//! (permessage-deflate, subprotocols, 1 MiB messages, closes from either
//! end), `serve` with a chito `Handler`, chito's rooms, Python's
//! `websockets` (installed by the test itself, as tests/interop_python.rs
//! does), and raw requests that must be refused — by the extractor with
//! chito's answers, or by hyper before the extractor runs.
//!
//! Every test runs within `common::BOUND`.
#![cfg(feature = "deflate")]

mod common;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use axum::routing::{any, get};
use axum::Router;
use chito::handshake::{ClientRequest, UpgradeForm, UpgradeResponse};
use chito::{CloseCode, Handler, Message, OwnedEvent, Sender};
use chito_axum::WebSocketUpgrade;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use common::{bounded, echo, start, Report, Reports};

/// The routes: `/echo` echoes (see [`common::echo`]), `/plain` is a page
/// that is not a WebSocket, `/any` takes the extractor for every method,
/// `/handler` is `serve(Handler)`, whose callbacks go to `calls`.
fn app(reports: Reports, calls: mpsc::UnboundedSender<String>) -> Router {
    Router::new()
        .route("/echo", get(echo))
        .route("/any", any(echo))
        .route("/plain", get(|| async { "plain" }))
        .route("/handler", get(shout).with_state(calls))
        .with_state(reports)
}

/// [`app`] on a free loopback port; the receivers of its sockets' reports
/// and of the handler's calls.
async fn start_app() -> (
    SocketAddr,
    mpsc::UnboundedReceiver<Report>,
    mpsc::UnboundedReceiver<String>,
) {
    let (reports, seen) = mpsc::unbounded_channel();
    let (calls, called) = mpsc::unbounded_channel();
    (start(app(reports, calls)).await, seen, called)
}

/// `serve` with a chito [`Handler`]: greets, answers text in capitals and
/// binary reversed, and reports its callbacks.
async fn shout(
    State(calls): State<mpsc::UnboundedSender<String>>,
    ws: WebSocketUpgrade,
) -> Response {
    ws.serve(Shouter {
        report: calls,
        calls: Vec::new(),
    })
}

struct Shouter {
    report: mpsc::UnboundedSender<String>,
    calls: Vec<String>,
}

impl Handler for Shouter {
    fn on_open(&mut self, sender: &mut Sender<'_>) {
        self.calls.push("open".into());
        sender.send(Message::Text("welcome")).unwrap();
    }

    fn on_message(&mut self, sender: &mut Sender<'_>, message: Message<'_>) {
        match message {
            Message::Text(text) => {
                self.calls.push(format!("text {text}"));
                sender.send(Message::Text(&text.to_uppercase())).unwrap();
            }
            Message::Binary(bytes) => {
                self.calls.push(format!("binary {}", bytes.len()));
                let reversed: Vec<u8> = bytes.iter().rev().copied().collect();
                sender.send(Message::Binary(&reversed)).unwrap();
            }
        }
    }

    fn on_close(&mut self, frame: &chito::CloseFrame<'_>) {
        self.calls
            .push(format!("close {} {}", frame.code.as_u16(), frame.reason));
        let _ = self.report.send(self.calls.join("; "));
    }
}

// ---- chito's client, over a stream that counts what crosses the wire ------

/// Bytes that crossed the client's TCP stream, and whether it ended.
#[derive(Debug, Clone, Default)]
struct Wire {
    written: Arc<AtomicUsize>,
    read: Arc<AtomicUsize>,
    eof: Arc<AtomicBool>,
}

impl Wire {
    /// (written, read) so far.
    fn counts(&self) -> (usize, usize) {
        (
            self.written.load(Ordering::Relaxed),
            self.read.load(Ordering::Relaxed),
        )
    }
}

struct Counted {
    stream: TcpStream,
    wire: Wire,
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let (before, room) = (buf.filled().len(), buf.remaining());
        std::task::ready!(Pin::new(&mut this.stream).poll_read(cx, buf))?;
        let n = buf.filled().len() - before;
        this.wire.read.fetch_add(n, Ordering::Relaxed);
        if n == 0 && room > 0 {
            this.wire.eof.store(true, Ordering::Relaxed);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = std::task::ready!(Pin::new(&mut this.stream).poll_write(cx, buf))?;
        this.wire.written.fetch_add(n, Ordering::Relaxed);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

type Client = chito::tokio::WebSocket<Counted>;

/// chito's client (default `Config`: offers permessage-deflate) on `path`,
/// offering `protocols` in that order of preference.
async fn connect(
    addr: SocketAddr,
    path: &str,
    protocols: &[&str],
) -> (Client, UpgradeResponse, Wire) {
    let wire = Wire::default();
    let stream = Counted {
        stream: TcpStream::connect(addr).await.unwrap(),
        wire: wire.clone(),
    };
    let mut request = ClientRequest::new(addr.to_string(), path);
    for protocol in protocols {
        request = request.with_protocol(*protocol);
    }
    let (ws, response) = chito::tokio::Builder::new(stream)
        .connect(&request)
        .await
        .unwrap();
    (ws, response, wire)
}

/// Compressible messages, as a chat or an API would send: JSON-like text
/// and repetitive binary.
fn compressible(i: usize) -> (String, Vec<u8>) {
    let text = format!(
        r#"{{"seq":{i},"user":"someone","body":"{}"}}"#,
        "all work and no play makes a dull socket ".repeat(1 + i % 30)
    );
    let binary = [b"chito-axum".as_slice(), &[(i % 5) as u8; 100]]
        .concat()
        .repeat(1 + i % 25);
    (text, binary)
}

/// `len` bytes that deflate cannot shrink (xorshift).
fn incompressible(len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

async fn expect_text(ws: &mut Client, expected: &str) {
    match ws.recv().await.unwrap() {
        OwnedEvent::Text(text) => assert!(
            text == expected,
            "got {} bytes of text, expected {}",
            text.len(),
            expected.len()
        ),
        other => panic!("expected text, got {other:?}"),
    }
}

async fn expect_binary(ws: &mut Client, expected: &[u8]) {
    match ws.recv().await.unwrap() {
        OwnedEvent::Binary(bytes) => assert!(
            bytes == expected,
            "got {} bytes of binary, expected {}",
            bytes.len(),
            expected.len()
        ),
        other => panic!("expected binary, got {other:?}"),
    }
}

/// Text and binary both ways with permessage-deflate negotiated on both
/// ends (and the wire carrying far fewer bytes than the payload), the
/// client's first choice among the server's subprotocols, 1 MiB messages
/// both compressible and not, and a close started by the client: it sees
/// the server's close frame, then the stream ends.
#[tokio::test]
async fn chito_client_deflate_protocol_large_messages_and_close() {
    bounded(async {
        let (addr, mut seen, _calls) = start_app().await;
        let (mut ws, response, wire) = connect(addr, "/echo", &["chat", "superchat"]).await;

        // The answer: 101, the client's first choice, deflate accepted.
        assert_eq!(response.status(), 101);
        assert_eq!(response.protocol(), Some("chat"));
        assert_eq!(response.header_str("Sec-WebSocket-Protocol"), Some("chat"));
        let extensions = response
            .header_str("Sec-WebSocket-Extensions")
            .expect("the server accepted no extension");
        assert!(extensions.starts_with("permessage-deflate"), "{extensions}");
        assert!(response
            .extensions()
            .iter()
            .any(|e| e.name == "permessage-deflate"));
        let negotiated = ws.connection().negotiated();
        assert!(negotiated.deflate.is_some(), "client runs without deflate");
        assert_eq!(negotiated.protocol.as_deref(), Some("chat"));

        // Compressible traffic travels compressed, both ways.
        let (written0, read0) = wire.counts();
        let mut payload = 0;
        for i in 0..60 {
            let (text, binary) = compressible(i);
            payload += text.len() + binary.len();
            ws.send(Message::Text(&text)).await.unwrap();
            expect_text(&mut ws, &text).await;
            ws.send(Message::Binary(&binary)).await.unwrap();
            expect_binary(&mut ws, &binary).await;
        }
        let (written, read) = wire.counts();
        let (sent, received) = (written - written0, read - read0);
        assert!(
            sent * 4 < payload,
            "client→server {sent} bytes on the wire for {payload} of payload"
        );
        assert!(
            received * 4 < payload,
            "server→client {received} bytes on the wire for {payload} of payload"
        );

        // 1 MiB messages: compressible text, incompressible binary.
        let big_text = "0123456789abcdef".repeat(1 << 16);
        assert_eq!(big_text.len(), 1 << 20);
        ws.send(Message::Text(&big_text)).await.unwrap();
        expect_text(&mut ws, &big_text).await;
        let big_binary = incompressible(1 << 20);
        let (written0, read0) = wire.counts();
        ws.send(Message::Binary(&big_binary)).await.unwrap();
        expect_binary(&mut ws, &big_binary).await;
        let (written, read) = wire.counts();
        assert!(written - written0 >= 1 << 20 && read - read0 >= 1 << 20);

        // The client closes; the server's close frame comes back, then
        // the stream ends.
        ws.close(CloseCode::Normal, "client is done").await.unwrap();
        match ws.recv().await.unwrap() {
            OwnedEvent::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Normal),
            other => panic!("expected the server's close frame, got {other:?}"),
        }
        assert!(ws.recv().await.is_err(), "an event after the close");
        assert!(wire.eof.load(Ordering::Relaxed), "the stream did not end");

        let report = seen.recv().await.unwrap();
        assert_eq!(report.version, http::Version::HTTP_11);
        assert_eq!(report.method, http::Method::GET);
        assert_eq!(report.form, UpgradeForm::Upgrade);
        assert_eq!(report.path, "/echo");
        assert_eq!(report.selected.as_deref(), Some("chat"));
        assert_eq!(report.negotiated.protocol.as_deref(), Some("chat"));
        assert!(
            report.negotiated.deflate.is_some(),
            "server runs without deflate"
        );
        assert_eq!(report.close, Some((1000, "client is done".to_owned())));
    })
    .await;
}

/// The server closes (1001 and a reason): the client sees that close
/// frame, its own echo goes back, and the stream ends.
#[tokio::test]
async fn the_server_closes_and_the_client_sees_its_close_frame() {
    bounded(async {
        let (addr, mut seen, _calls) = start_app().await;
        let (mut ws, _, wire) = connect(addr, "/echo", &[]).await;
        ws.send(Message::Text("close, please")).await.unwrap();
        match ws.recv().await.unwrap() {
            OwnedEvent::Close(Some(frame)) => {
                assert_eq!(frame.code, CloseCode::GoingAway);
                assert_eq!(frame.reason, "server is done");
            }
            other => panic!("expected the server's close frame, got {other:?}"),
        }
        assert!(ws.recv().await.is_err(), "an event after the close");
        assert!(wire.eof.load(Ordering::Relaxed), "the stream did not end");
        // The server got the client's answer to its close.
        let report = seen.recv().await.unwrap();
        assert_eq!(report.close.map(|(code, _)| code), Some(1001));
    })
    .await;
}

/// No overlap between the client's and the server's subprotocols (or no
/// offer at all): no `Sec-WebSocket-Protocol` in the answer, none
/// selected on either end, and the connection still works.
#[tokio::test]
async fn no_subprotocol_when_none_overlaps() {
    bounded(async {
        let (addr, mut seen, _calls) = start_app().await;
        for offered in [&["graphql-ws", "mqtt"][..], &[]] {
            let (mut ws, response, _) = connect(addr, "/echo", offered).await;
            assert_eq!(response.protocol(), None, "offered {offered:?}");
            assert_eq!(response.header("Sec-WebSocket-Protocol"), None);
            assert_eq!(ws.connection().negotiated().protocol, None);
            ws.send(Message::Text("still works")).await.unwrap();
            expect_text(&mut ws, "still works").await;
            ws.close(CloseCode::Normal, "").await.unwrap();
            assert!(matches!(ws.recv().await.unwrap(), OwnedEvent::Close(_)));
            let report = seen.recv().await.unwrap();
            assert_eq!(report.selected, None);
            assert_eq!(report.negotiated.protocol, None);
        }
    })
    .await;
}

/// `WebSocketUpgrade::serve` runs a chito `Handler`: `on_open` first
/// (its greeting arrives first), a callback per message, `on_close` once
/// with the client's close frame.
#[tokio::test]
async fn serve_runs_a_chito_handler() {
    bounded(async {
        let (addr, _seen, mut calls) = start_app().await;
        let (mut ws, _, _) = connect(addr, "/handler", &[]).await;
        expect_text(&mut ws, "welcome").await;
        ws.send(Message::Text("hello")).await.unwrap();
        expect_text(&mut ws, "HELLO").await;
        ws.send(Message::Binary(&[1, 2, 3])).await.unwrap();
        expect_binary(&mut ws, &[3, 2, 1]).await;
        ws.close(CloseCode::Normal, "bye").await.unwrap();
        assert!(matches!(
            ws.recv().await.unwrap(),
            OwnedEvent::Close(Some(_))
        ));
        assert_eq!(
            calls.recv().await.unwrap(),
            "open; text hello; binary 3; close 1000 bye"
        );
    })
    .await;
}

/// The `Handle` of a socket the extractor handed out joins chito's rooms;
/// an emit reaches both clients in the room, not one in another room, and
/// members leave when their connections end.
#[cfg(feature = "rooms")]
#[tokio::test]
async fn sockets_join_rooms_and_both_members_get_an_emit() {
    use chito::rooms::Rooms;

    async fn join(
        State(rooms): State<Rooms>,
        axum::extract::Path(room): axum::extract::Path<String>,
        ws: WebSocketUpgrade,
    ) -> Response {
        ws.on_upgrade(move |socket| async move {
            let member = rooms.add(socket.handle());
            rooms.join(member.id(), &room);
            socket
                .serve(&mut Member {
                    rooms: rooms.clone(),
                    room,
                })
                .await;
            drop(member);
        })
    }

    /// Says `joined` once in its room; emits what it receives to the room.
    struct Member {
        rooms: Rooms,
        room: String,
    }

    impl Handler for Member {
        fn on_open(&mut self, sender: &mut Sender<'_>) {
            sender.send(Message::Text("joined")).unwrap();
        }

        fn on_message(&mut self, _: &mut Sender<'_>, message: Message<'_>) {
            let report = self.rooms.emit(&self.room, message);
            assert!(report.full.is_empty() && report.closed.is_empty());
        }
    }

    bounded(async {
        let rooms = Rooms::new();
        let app = Router::new()
            .route("/room/{room}", get(join))
            .with_state(rooms.clone());
        let addr = start(app).await;
        let (mut alice, _, _) = connect(addr, "/room/lobby", &[]).await;
        let (mut bob, _, _) = connect(addr, "/room/lobby", &[]).await;
        let (mut carol, _, _) = connect(addr, "/room/elsewhere", &[]).await;
        for ws in [&mut alice, &mut bob, &mut carol] {
            expect_text(ws, "joined").await;
        }
        assert_eq!(rooms.count("lobby"), 2);
        assert_eq!(rooms.count("elsewhere"), 1);

        alice.send(Message::Text("hello, lobby")).await.unwrap();
        expect_text(&mut alice, "hello, lobby").await;
        expect_text(&mut bob, "hello, lobby").await;
        bob.send(Message::Binary(b"from bob")).await.unwrap();
        expect_binary(&mut alice, b"from bob").await;
        expect_binary(&mut bob, b"from bob").await;
        // Carol, in another room, got neither: her next event is her own
        // room's emit.
        carol.send(Message::Text("only here")).await.unwrap();
        expect_text(&mut carol, "only here").await;

        for ws in [&mut alice, &mut bob, &mut carol] {
            ws.close(CloseCode::Normal, "").await.unwrap();
            assert!(matches!(ws.recv().await.unwrap(), OwnedEvent::Close(_)));
        }
        while rooms.member_count() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(rooms.count("lobby"), 0);
    })
    .await;
}

// ---- Python's websockets ------------------------------------------------------

const WEBSOCKETS_VERSION: &str = "17.4";

/// A directory holding Python's `websockets`, for PYTHONPATH: installed
/// from PyPI into the target directory on first use (the same directory
/// chito's own interop tests use).
async fn websockets_path() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("py-websockets-{WEBSOCKETS_VERSION}"));
    if !dir.join("websockets").is_dir() {
        let status = tokio::process::Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
            ])
            .arg(&dir)
            .arg(format!("websockets=={WEBSOCKETS_VERSION}"))
            .kill_on_drop(true)
            .status()
            .await
            .expect("python3 must be installed to run the interop tests");
        assert!(
            status.success(),
            "pip install websockets=={WEBSOCKETS_VERSION} failed"
        );
    }
    dir
}

const PY_CLIENT: &str = r#"
import asyncio, sys
from websockets.asyncio.client import connect

async def main(url):
    # websockets offers permessage-deflate by default; ask for it anyway.
    async with connect(url, subprotocols=["chat"], compression="deflate",
                       max_size=None) as ws:
        names = [e.name for e in ws.protocol.extensions]
        assert names == ["permessage-deflate"], names
        assert ws.subprotocol == "chat", ws.subprotocol
        answer = ws.response.headers["Sec-WebSocket-Extensions"]
        assert answer.startswith("permessage-deflate"), answer
        total = 0
        for i in range(60):
            text = '{"seq":%d,"user":"python","body":"%s"}' % (
                i, "all work and no play makes a dull socket " * (1 + i % 30))
            binary = (b"chito-axum" + bytes([i % 5]) * 100) * (1 + i % 25)
            for m in (text, binary):
                await ws.send(m)
                echo = await ws.recv()
                assert echo == m, (i, len(echo), len(m))
                total += len(m.encode() if isinstance(m, str) else m)
    print("OK", total, answer)

asyncio.run(main(sys.argv[1]))
"#;

/// Python's `websockets` connects through axum: it offers
/// permessage-deflate, the server accepts, the Python side sees the
/// extension negotiated, and compressed messages cross a counting relay in
/// both directions in far fewer bytes than their payload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_through_axum_with_deflate_both_ways() {
    bounded(async {
        let path = websockets_path().await;
        let (addr, mut seen, _calls) = start_app().await;

        // A relay between Python and axum that counts each direction.
        let relay = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay_addr = relay.local_addr().unwrap();
        let counts = tokio::spawn(async move {
            let (mut python, _) = relay.accept().await.unwrap();
            let mut server = TcpStream::connect(addr).await.unwrap();
            tokio::io::copy_bidirectional(&mut python, &mut server)
                .await
                .unwrap()
        });

        let output = tokio::process::Command::new("python3")
            .env("PYTHONPATH", &path)
            .args(["-c", PY_CLIENT, &format!("ws://{relay_addr}/echo")])
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.starts_with("OK "),
            "python client: {stdout}"
        );
        let mut words = stdout.split_whitespace().skip(1);
        let payload: usize = words.next().unwrap().parse().unwrap();
        let answer = words.collect::<Vec<_>>().join(" ");
        assert!(answer.starts_with("permessage-deflate"), "{answer}");

        let (to_server, to_python) = counts.await.unwrap();
        let to_server = usize::try_from(to_server).unwrap();
        let to_python = usize::try_from(to_python).unwrap();
        assert!(
            to_server * 4 < payload,
            "python→axum {to_server} bytes for {payload} of payload"
        );
        assert!(
            to_python * 4 < payload,
            "axum→python {to_python} bytes for {payload} of payload"
        );

        let report = seen.recv().await.unwrap();
        assert!(
            report.negotiated.deflate.is_some(),
            "server runs without deflate"
        );
        assert_eq!(report.selected.as_deref(), Some("chat"));
        assert_eq!(report.close.map(|(code, _)| code), Some(1000));
    })
    .await;
}

// ---- refusals, with raw requests ------------------------------------------------

/// An HTTP/1.1 response head and body as read off the socket.
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

/// Reads one response (head, then a `Content-Length` body) from `stream`;
/// `buf` keeps what was read past it.
async fn read_answer(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Answer {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the connection ended before a response head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status = status_line[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.to_owned(), value.trim().to_owned())
        })
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().unwrap());
    while buf.len() < head_end + length {
        let mut chunk = [0; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the connection ended inside a response body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8(buf[head_end..head_end + length].to_vec()).unwrap();
    buf.drain(..head_end + length);
    Answer {
        status,
        headers,
        body,
    }
}

/// A handshake request for `target`: the sample request of RFC 6455 §1.3,
/// with `method`, headers named in `drop` left out and `extra` lines added.
fn handshake(method: &str, target: &str, drop: &[&str], extra: &[String]) -> Vec<u8> {
    let standard = [
        ("Host", "server.example.com"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ];
    let mut request = format!("{method} {target} HTTP/1.1\r\n");
    for (name, value) in standard {
        if !drop.contains(&name) {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    for line in extra {
        request.push_str(line);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request.into_bytes()
}

/// Sends `request` and reads the answer; then checks that the connection
/// was not upgraded — it still speaks HTTP/1.1: a plain `GET` on it gets
/// the page.
async fn refused(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let answer = read_answer(&mut stream, &mut buf).await;
    assert_ne!(answer.status, 101);
    stream
        .write_all(b"GET /plain HTTP/1.1\r\nHost: server.example.com\r\n\r\n")
        .await
        .unwrap();
    let plain = read_answer(&mut stream, &mut buf).await;
    assert_eq!((plain.status, plain.body.as_str()), (200, "plain"));
    answer
}

/// The raw request the refusals below are variations of is accepted: 101
/// with RFC 6455's sample accept value (so each refusal is the change's).
#[tokio::test]
async fn the_raw_request_is_accepted() {
    bounded(async {
        let (addr, _seen, _calls) = start_app().await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(&handshake("GET", "/echo", &[], &[]))
            .await
            .unwrap();
        let answer = read_answer(&mut stream, &mut Vec::new()).await;
        assert_eq!(answer.status, 101);
        assert_eq!(
            answer.header("Sec-WebSocket-Accept"),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
        assert_eq!(answer.header("Upgrade"), Some("websocket"));
    })
    .await;
}

/// A version other than 13: `426` naming version 13 (and `Upgrade`, which
/// a 426 must carry), chito's reason as the body.
#[tokio::test]
async fn a_wrong_version_is_426_naming_13() {
    bounded(async {
        let (addr, _seen, _calls) = start_app().await;
        let request = handshake(
            "GET",
            "/echo",
            &["Sec-WebSocket-Version"],
            &["Sec-WebSocket-Version: 8".into()],
        );
        let answer = refused(addr, &request).await;
        assert_eq!(answer.status, 426);
        assert_eq!(answer.header("Sec-WebSocket-Version"), Some("13"));
        assert_eq!(answer.header("Upgrade"), Some("websocket"));
        assert_eq!(answer.body, "Sec-WebSocket-Version must be 13");
    })
    .await;
}

/// No `Sec-WebSocket-Key`, or one that is not the base64 of 16 bytes:
/// `400`.
#[tokio::test]
async fn a_missing_or_bad_key_is_400() {
    bounded(async {
        let (addr, _seen, _calls) = start_app().await;
        let reason = "Sec-WebSocket-Key must be one base64-encoded 16-byte value";
        let missing = handshake("GET", "/echo", &["Sec-WebSocket-Key"], &[]);
        let answer = refused(addr, &missing).await;
        assert_eq!((answer.status, answer.body.as_str()), (400, reason));
        for key in ["not base64!", "c2hvcnQ=", "dGhlIHNhbXBsZSBub25jZQ==dGhl"] {
            let bad = handshake(
                "GET",
                "/echo",
                &["Sec-WebSocket-Key"],
                &[format!("Sec-WebSocket-Key: {key}")],
            );
            let answer = refused(addr, &bad).await;
            assert_eq!(
                (answer.status, answer.body.as_str()),
                (400, reason),
                "{key}"
            );
            assert_eq!(answer.header("Sec-WebSocket-Accept"), None);
        }
    })
    .await;
}

/// 70 header fields (hyper takes up to 100): chito's limit of 64 answers
/// `431`; so does a head over chito's 16 KiB in a few fields.
#[tokio::test]
async fn chitos_head_limits_answer_431() {
    bounded(async {
        let (addr, _seen, _calls) = start_app().await;
        let filler: Vec<String> = (0..65).map(|i| format!("X-Filler-{i}: {i}")).collect();
        let request = handshake("GET", "/echo", &[], &filler);
        // 5 fields of the handshake and 65 more.
        assert_eq!(
            String::from_utf8_lossy(&request).matches("\r\n").count(),
            1 + 70 + 1
        );
        let answer = refused(addr, &request).await;
        assert_eq!(answer.status, 431);
        assert_eq!(answer.body, "too many header fields");

        let cookie = format!("Cookie: c={}", "x".repeat(20 << 10));
        let answer = refused(addr, &handshake("GET", "/echo", &[], &[cookie])).await;
        assert_eq!(answer.status, 431);
        assert_eq!(answer.body, "request head too large");
    })
    .await;
}

/// Heads past hyper's own limits never reach the extractor: hyper answers
/// `431` itself (no body, no `Upgrade`) and closes the connection — for a
/// head over its read buffer (about 408 KiB) and for more than its 100
/// fields.
#[tokio::test]
async fn heads_past_hypers_limits_get_hypers_431() {
    bounded(async {
        let (addr, _seen, _calls) = start_app().await;
        let huge = format!("Cookie: c={}", "x".repeat(500 << 10));
        let many: Vec<String> = (0..120).map(|i| format!("X-Filler-{i}: {i}")).collect();
        for request in [
            handshake("GET", "/echo", &[], &[huge]),
            handshake("GET", "/echo", &[], &many),
        ] {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let (mut reader, mut writer) = stream.split();
            // hyper stops reading a head that is too large: write while
            // reading, and let the write fail.
            let write = async {
                let _ = writer.write_all(&request).await;
            };
            let mut answer = Vec::new();
            let read = async {
                let mut chunk = [0; 4096];
                loop {
                    match reader.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => answer.extend_from_slice(&chunk[..n]),
                    }
                }
            };
            tokio::join!(write, read);
            let answer = String::from_utf8(answer).unwrap();
            assert!(
                answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
                "{answer}"
            );
            assert!(!answer.to_ascii_lowercase().contains("upgrade"), "{answer}");
            assert!(answer.ends_with("\r\n\r\n"), "a body: {answer}");
        }
    })
    .await;
}

/// A `POST` upgrade: axum's `get` route answers `405` before the extractor
/// runs; routed with `any`, the extractor refuses it with chito's `400`.
#[tokio::test]
async fn a_post_is_405_from_the_router_and_400_from_the_extractor() {
    bounded(async {
        let (addr, _seen, _calls) = start_app().await;
        let answer = refused(addr, &handshake("POST", "/echo", &[], &[])).await;
        assert_eq!(answer.status, 405);
        let answer = refused(addr, &handshake("POST", "/any", &[], &[])).await;
        assert_eq!(answer.status, 400);
        assert_eq!(answer.body, "WebSocket handshake must use GET");
        // The same route takes a GET.
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(&handshake("GET", "/any", &[], &[]))
            .await
            .unwrap();
        assert_eq!(read_answer(&mut stream, &mut Vec::new()).await.status, 101);
    })
    .await;
}

/// `on_failed_upgrade` is called when the client goes away after sending
/// its request and before hyper hands the connection over; the socket's
/// callback never runs.
///
/// Deterministic: the handler builds its response (the extractor then
/// waits for hyper's upgrade) and only returns it once the client has
/// reset the connection. hyper, watching a connection with a request in
/// flight, sees the reset and drops the request's pending upgrade, or
/// fails writing the `101` to it; either way the upgrade fails.
#[tokio::test]
async fn on_failed_upgrade_is_called_when_the_client_leaves() {
    #[derive(Clone)]
    struct Leaving {
        reached: mpsc::UnboundedSender<()>,
        /// This connection's signal that its client is gone, one per
        /// request.
        gone: Arc<Mutex<Option<oneshot::Receiver<()>>>>,
        failed: mpsc::UnboundedSender<String>,
        upgraded: mpsc::UnboundedSender<()>,
    }

    async fn handler(State(state): State<Leaving>, ws: WebSocketUpgrade) -> Response {
        let failed = state.failed.clone();
        let upgraded = state.upgraded.clone();
        let response = ws
            .on_failed_upgrade(move |error: chito_axum::Error| {
                let _ = failed.send(error.to_string());
            })
            .on_upgrade(move |_socket| async move {
                let _ = upgraded.send(());
            });
        let gone = state.gone.lock().unwrap().take().unwrap();
        state.reached.send(()).unwrap();
        let _ = gone.await;
        response
    }

    bounded(async {
        let (reached, mut reached_rx) = mpsc::unbounded_channel();
        let (failed, mut failed_rx) = mpsc::unbounded_channel();
        let (upgraded, mut upgraded_rx) = mpsc::unbounded_channel();
        let gone = Arc::new(Mutex::new(None));
        let app = Router::new()
            .route("/leave", get(handler))
            .with_state(Leaving {
                reached,
                gone: gone.clone(),
                failed,
                upgraded,
            });
        let addr = start(app).await;
        for _ in 0..20 {
            let (client_gone, signal) = oneshot::channel();
            *gone.lock().unwrap() = Some(signal);
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream
                .write_all(&handshake("GET", "/leave", &[], &[]))
                .await
                .unwrap();
            reached_rx.recv().await.unwrap();
            // Reset, not a graceful close.
            stream.set_zero_linger().unwrap();
            drop(stream);
            let _ = client_gone.send(());
            let error = failed_rx.recv().await.unwrap();
            assert!(!error.is_empty());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(upgraded_rx.try_recv().is_err(), "a socket was handed over");
    })
    .await;
}
