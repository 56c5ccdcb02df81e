//! WebSockets over HTTP/2 (RFC 8441) through a real axum 0.8 server:
//! `axum::serve` speaks HTTP/2 on a plain TCP connection that starts with
//! the HTTP/2 preface (h2c with prior knowledge) and, with axum's `http2`
//! feature, announces `SETTINGS_ENABLE_CONNECT_PROTOCOL` (axum's serve
//! calls hyper's `enable_connect_protocol`).
//!
//! The client is the `h2` crate: it waits for the server's setting, sends
//! the extended `CONNECT` (`:protocol websocket`, `:scheme http`, `:path`,
//! `:authority`), and the WebSocket then runs in the stream's DATA frames:
//! the test wraps the h2 stream pair into an `AsyncRead + AsyncWrite` and
//! runs chito's client connection over it, built from what the server
//! answered (chito's public negotiation pieces: `parse_extensions` and
//! `deflate::client_negotiate`). Everything either side writes is logged,
//! so the frames can be checked on the wire: RSV1 set on compressed
//! messages, a ping and its pong, close frames both ways, END_STREAM both
//! ways.
//!
//! Every test runs within `common::BOUND`.
#![cfg(all(feature = "deflate", feature = "http2"))]

mod common;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::routing::any;
use axum::Router;
use bytes::Bytes;
use chito::deflate::{client_negotiate, client_offer};
use chito::handshake::{format_extensions, parse_extensions, Negotiated, UpgradeForm};
use chito::{CloseCode, Config, Connection, Message, OwnedEvent, Role};
use h2::client::SendRequest;
use h2::{RecvStream, SendStream};
use http::{Method, Request, StatusCode, Version};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use common::{bounded, echo, start, Reports};

/// `/ws` echoes ([`common::echo`]). Routed with `any`: an extended
/// CONNECT is not a GET. The fallback takes the extractor too, for a plain
/// CONNECT, which has no `:path` to route by.
fn app(reports: Reports) -> Router {
    Router::new()
        .route("/ws", any(echo))
        .fallback(echo)
        .with_state(reports)
}

// ---- the HTTP/2 client ---------------------------------------------------------

/// An HTTP/2 connection to `addr` (prior knowledge, no TLS), once the
/// server has said it takes extended CONNECTs.
async fn h2_connect(addr: SocketAddr) -> SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (send_request, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    // The server's SETTINGS arrive after the handshake; RFC 8441 §3: no
    // extended CONNECT before SETTINGS_ENABLE_CONNECT_PROTOCOL = 1.
    while !send_request.is_extended_connect_protocol_enabled() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    send_request.ready().await.unwrap()
}

/// An extended CONNECT for `path` with `:protocol websocket` and the
/// given regular header fields (`:scheme`, `:path` and `:authority` come
/// from the URI).
fn extended_connect(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Request<()> {
    let mut request = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("http://{addr}{path}"))
        .extension(h2::ext::Protocol::from_static("websocket"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(()).unwrap()
}

/// Reads a response body to its end.
async fn body(mut recv: RecvStream) -> String {
    let mut body = Vec::new();
    while let Some(data) = recv.data().await {
        let data = data.unwrap();
        recv.flow_control().release_capacity(data.len()).unwrap();
        body.extend_from_slice(&data);
    }
    String::from_utf8(body).unwrap()
}

/// What crossed one WebSocket's HTTP/2 stream, as the client saw it.
#[derive(Debug, Default)]
struct Log {
    /// DATA the client sent (WebSocket frames, masked).
    written: Vec<u8>,
    /// DATA the client received (the server's frames).
    read: Vec<u8>,
    /// The client ended its side (END_STREAM sent).
    end_sent: bool,
    /// The server ended its side (END_STREAM received).
    end_received: bool,
}

/// One HTTP/2 stream as a byte stream: DATA frames in and out, END_STREAM
/// as end of file and as shutdown, with h2's flow control.
struct H2Io {
    send: SendStream<Bytes>,
    recv: RecvStream,
    /// Received DATA not read yet.
    unread: Bytes,
    log: Arc<Mutex<Log>>,
}

fn h2_error(error: h2::Error) -> io::Error {
    io::Error::other(error)
}

impl AsyncRead for H2Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.unread.is_empty() {
            match std::task::ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Read means consumed: let the server send more.
                    this.recv
                        .flow_control()
                        .release_capacity(data.len())
                        .map_err(h2_error)?;
                    this.log.lock().unwrap().read.extend_from_slice(&data);
                    this.unread = data;
                }
                Some(Err(error)) => return Poll::Ready(Err(h2_error(error))),
                None => {
                    this.log.lock().unwrap().end_received = true;
                    return Poll::Ready(Ok(()));
                }
            }
        }
        let n = this.unread.len().min(buf.remaining());
        buf.put_slice(&this.unread.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // Send only what the flow-control windows allow now.
        this.send.reserve_capacity(buf.len());
        while this.send.capacity() == 0 {
            match std::task::ready!(this.send.poll_capacity(cx)) {
                Some(Ok(_)) => {}
                Some(Err(error)) => return Poll::Ready(Err(h2_error(error))),
                None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            }
        }
        let n = this.send.capacity().min(buf.len());
        this.send
            .send_data(Bytes::copy_from_slice(&buf[..n]), false)
            .map_err(h2_error)?;
        this.log
            .lock()
            .unwrap()
            .written
            .extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // h2's connection task writes the queued frames.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut log = this.log.lock().unwrap();
        if !log.end_sent {
            this.send.send_data(Bytes::new(), true).map_err(h2_error)?;
            log.end_sent = true;
        }
        Poll::Ready(Ok(()))
    }
}

type Client = chito::tokio::WebSocket<H2Io>;

/// Opens a WebSocket on `path` over the HTTP/2 connection: an extended
/// CONNECT offering `protocols` and chito's permessage-deflate offer,
/// checked (200, the headers RFC 8441 §5 keeps, no Accept), then chito's
/// client connection over the stream, negotiated from the answer.
async fn open(
    h2: &mut SendRequest<Bytes>,
    addr: SocketAddr,
    path: &str,
    protocols: &str,
) -> (Client, http::HeaderMap, Arc<Mutex<Log>>) {
    let config = Config::default();
    let deflate = config.deflate.clone().expect("deflate is on by default");
    let offer = format_extensions(&[client_offer(&deflate)]);
    let request = extended_connect(
        addr,
        path,
        &[
            ("sec-websocket-version", "13"),
            ("sec-websocket-protocol", protocols),
            ("sec-websocket-extensions", &offer),
            ("origin", "http://example.com"),
        ],
    );
    let (response, send) = h2.send_request(request, false).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), Version::HTTP_2);
    let headers = response.headers().clone();
    // RFC 8441 §5: no key exchange; HTTP/2 has no Upgrade or Connection.
    for absent in ["sec-websocket-accept", "upgrade", "connection"] {
        assert!(headers.get(absent).is_none(), "{absent} in the answer");
    }

    // The client's side of the negotiation, from the answer's headers.
    let extensions = parse_extensions(
        headers
            .get_all("sec-websocket-extensions")
            .iter()
            .map(|value| value.as_bytes()),
    )
    .unwrap();
    let mut negotiated = Negotiated::default();
    negotiated.deflate = client_negotiate(&extensions, &deflate).unwrap();
    negotiated.protocol = headers
        .get("sec-websocket-protocol")
        .map(|value| value.to_str().unwrap().to_owned());
    if let Some(selected) = &negotiated.protocol {
        assert!(protocols.split(", ").any(|offered| offered == selected));
    }

    let log = Arc::new(Mutex::new(Log::default()));
    let io = H2Io {
        send,
        recv: response.into_body(),
        unread: Bytes::new(),
        log: log.clone(),
    };
    let config = Arc::new(config);
    let conn = Connection::with_negotiated(Role::Client, config.clone(), negotiated, &[]);
    let ws = chito::tokio::Builder::new(io).config(config).upgraded(conn);
    (ws, headers, log)
}

// ---- frames on the wire ----------------------------------------------------------

/// One WebSocket frame header as it crossed the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Frame {
    rsv1: bool,
    opcode: u8,
    masked: bool,
    len: usize,
}

/// The frame headers in `bytes` (RFC 6455 §5.2), which hold whole frames.
fn frames(mut bytes: &[u8]) -> Vec<Frame> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let (b0, b1) = (bytes[0], bytes[1]);
        let masked = b1 & 0x80 != 0;
        let (len, mut at) = match b1 & 0x7f {
            126 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            127 => {
                let len = u64::from_be_bytes(bytes[2..10].try_into().unwrap());
                (usize::try_from(len).unwrap(), 10)
            }
            len => (usize::from(len), 2),
        };
        if masked {
            at += 4;
        }
        frames.push(Frame {
            rsv1: b0 & 0x40 != 0,
            opcode: b0 & 0x0f,
            masked,
            len,
        });
        bytes = &bytes[at + len..];
    }
    frames
}

const TEXT: u8 = 1;
const BINARY: u8 = 2;
const CLOSE: u8 = 8;
const PING: u8 = 9;
const PONG: u8 = 10;

async fn expect(ws: &mut Client, expected: OwnedEvent) {
    let event = ws.recv().await.unwrap();
    assert!(event == expected, "got {event:?}");
}

/// The whole RFC 8441 path: the server's setting, an extended CONNECT
/// answered 200 with the chosen subprotocol and permessage-deflate (no
/// Accept), compressed text and binary both ways (RSV1 on every data frame,
/// fewer payload bytes than sent), a ping and its pong, a close frame each
/// way, then END_STREAM each way.
#[tokio::test]
async fn websocket_over_http2_with_deflate_ping_and_close() {
    bounded(async {
        let (reports, mut seen) = mpsc::unbounded_channel();
        let addr = start(app(reports)).await;
        let mut h2 = h2_connect(addr).await;
        let (mut ws, headers, log) = open(&mut h2, addr, "/ws?room=1", "chat, superchat").await;

        assert_eq!(headers["sec-websocket-protocol"], "chat");
        let extensions = headers["sec-websocket-extensions"].to_str().unwrap();
        assert!(extensions.starts_with("permessage-deflate"), "{extensions}");
        assert!(ws.connection().negotiated().deflate.is_some());

        let mut payload = 0;
        for i in 0..20 {
            let text = format!(
                r#"{{"seq":{i},"body":"{}"}}"#,
                "over http/2 ".repeat(20 + i)
            );
            let binary = [b"rfc8441".as_slice(), &[i as u8; 200]].concat().repeat(5);
            payload += text.len() + binary.len();
            ws.send(Message::Text(&text)).await.unwrap();
            expect(&mut ws, OwnedEvent::Text(text)).await;
            ws.send(Message::Binary(&binary)).await.unwrap();
            expect(&mut ws, OwnedEvent::Binary(binary)).await;
        }
        ws.send_ping(b"are you there").await.unwrap();
        expect(&mut ws, OwnedEvent::Pong(b"are you there".to_vec())).await;

        ws.close(CloseCode::Normal, "h2 done").await.unwrap();
        match ws.recv().await.unwrap() {
            OwnedEvent::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Normal),
            other => panic!("expected the server's close frame, got {other:?}"),
        }
        assert!(ws.recv().await.is_err(), "an event after the close");

        let log = std::mem::take(&mut *log.lock().unwrap());
        assert!(log.end_sent, "the client did not end its stream");
        assert!(log.end_received, "the server did not end its stream");
        let sent = frames(&log.written);
        let received = frames(&log.read);
        assert!(sent.iter().all(|f| f.masked), "client frames are masked");
        assert!(received.iter().all(|f| !f.masked), "server frames are not");
        for (direction, frames) in [("client→server", &sent), ("server→client", &received)] {
            let data: Vec<&Frame> = frames
                .iter()
                .filter(|f| f.opcode == TEXT || f.opcode == BINARY)
                .collect();
            assert_eq!(data.len(), 40, "{direction}: {frames:?}");
            assert!(
                data.iter().all(|f| f.rsv1),
                "{direction}: uncompressed frame"
            );
            let wire: usize = data.iter().map(|f| f.len).sum();
            assert!(
                wire * 4 < payload,
                "{direction}: {wire} payload bytes for {payload}"
            );
            assert_eq!(
                frames.last().map(|f| f.opcode),
                Some(CLOSE),
                "{direction}: {frames:?}"
            );
        }
        assert!(sent.iter().any(|f| f.opcode == PING));
        assert!(received.iter().any(|f| f.opcode == PONG));

        let report = seen.recv().await.unwrap();
        assert_eq!(report.version, Version::HTTP_2);
        assert_eq!(report.method, Method::CONNECT);
        assert_eq!(report.form, UpgradeForm::ExtendedConnect);
        assert_eq!(report.path, "/ws");
        assert_eq!(report.selected.as_deref(), Some("chat"));
        assert_eq!(report.negotiated.protocol.as_deref(), Some("chat"));
        assert!(report.negotiated.deflate.is_some());
        assert_eq!(report.close, Some((1000, "h2 done".to_owned())));
    })
    .await;
}

/// RFC 8441's point: several WebSockets on one HTTP/2 connection, their
/// messages interleaved, each stream closed on its own.
#[tokio::test]
async fn two_websockets_share_one_http2_connection() {
    bounded(async {
        let (reports, mut seen) = mpsc::unbounded_channel();
        let addr = start(app(reports)).await;
        let mut h2 = h2_connect(addr).await;
        let (mut first, _, _) = open(&mut h2, addr, "/ws", "chat").await;
        let (mut second, _, _) = open(&mut h2, addr, "/ws", "superchat").await;
        for i in 0..10 {
            let (a, b) = (format!("first {i}"), format!("second {i}"));
            first.send(Message::Text(&a)).await.unwrap();
            second.send(Message::Text(&b)).await.unwrap();
            expect(&mut second, OwnedEvent::Text(b)).await;
            expect(&mut first, OwnedEvent::Text(a)).await;
        }
        first.close(CloseCode::Normal, "first").await.unwrap();
        assert!(matches!(first.recv().await.unwrap(), OwnedEvent::Close(_)));
        // The other stream goes on.
        second.send(Message::Binary(b"still here")).await.unwrap();
        expect(&mut second, OwnedEvent::Binary(b"still here".to_vec())).await;
        second.close(CloseCode::Normal, "second").await.unwrap();
        assert!(matches!(second.recv().await.unwrap(), OwnedEvent::Close(_)));
        let mut closes = vec![
            seen.recv().await.unwrap().close.unwrap().1,
            seen.recv().await.unwrap().close.unwrap().1,
        ];
        closes.sort();
        assert_eq!(closes, ["first", "second"]);
    })
    .await;
}

/// A CONNECT without `:protocol` (a plain tunnel request, which has only
/// `:authority`) and an extended CONNECT with a wrong version are refused
/// on HTTP/2 with `400` (the latter naming version 13), and no stream is
/// handed over.
#[tokio::test]
async fn connect_without_protocol_or_with_a_wrong_version_is_400() {
    bounded(async {
        let (reports, mut seen) = mpsc::unbounded_channel();
        let addr = start(app(reports)).await;
        let mut h2 = h2_connect(addr).await;

        let tunnel = Request::builder()
            .method(Method::CONNECT)
            .uri(addr.to_string())
            .header("sec-websocket-version", "13")
            .body(())
            .unwrap();
        let (response, _send) = h2.send_request(tunnel, false).unwrap();
        let response = response.await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            body(response.into_body()).await,
            "CONNECT without :protocol"
        );

        let wrong = extended_connect(addr, "/ws", &[("sec-websocket-version", "8")]);
        let (response, _send) = h2.send_request(wrong, false).unwrap();
        let response = response.await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()["sec-websocket-version"], "13");
        assert_eq!(
            body(response.into_body()).await,
            "Sec-WebSocket-Version must be 13"
        );

        let missing = extended_connect(addr, "/ws", &[]);
        let (response, _send) = h2.send_request(missing, false).unwrap();
        let response = response.await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);

        // The connection still takes a valid one.
        let (mut ws, _, _) = open(&mut h2, addr, "/ws", "chat").await;
        ws.send(Message::Text("after the refusals")).await.unwrap();
        expect(&mut ws, OwnedEvent::Text("after the refusals".into())).await;
        ws.close(CloseCode::Normal, "").await.unwrap();
        assert!(matches!(ws.recv().await.unwrap(), OwnedEvent::Close(_)));
        // Only that one reached a socket.
        assert!(seen.recv().await.is_some());
        assert!(seen.try_recv().is_err());
    })
    .await;
}
