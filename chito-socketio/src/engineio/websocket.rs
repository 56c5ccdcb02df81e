//! The WebSocket transport on chito (docs/socketio.md §3): the query is
//! checked first (a bad one is an HTTP 400 with the JSON error, never a
//! 101), then chito validates the handshake, and the upgraded stream runs
//! on chito's tokio driver. One Engine.IO packet per WebSocket message.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use chito::handshake::{Accept, UpgradeRequest};
use chito::{CloseCode, Config, Connection, Message, OwnedEvent, Role};
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::packet::Outgoing;
use super::query::{RequestError, TransportKind};
use super::server::{error_response, plain, Inner, SessionCell};
use super::session::CloseReason;
use super::sid::Sid;
use super::upgrade::{ProbeStatus, UpgradeRefusal};

/// What the upgraded WebSocket is for.
enum Role2 {
    /// A new WebSocket-only session.
    Open,
    /// An upgrade of a polling session.
    Probe(Sid, Arc<SessionCell>),
    /// A WebSocket for a session that has one already: accepted, then
    /// closed at once (the suites check the first keeps working).
    Refused,
}

/// chito's settings for Engine.IO WebSockets: chito's own keepalive off
/// (Engine.IO's heartbeat is the one the clients check, §2), messages
/// bounded by `maxPayload` (a bigger one closes with 1009, as `ws` does).
fn websocket_config(inner: &Inner) -> Config {
    let mut config = Config::default();
    config.ping_interval = None;
    config.idle_timeout = None;
    config.max_message_size = inner.config.engine.max_payload;
    config
}

pub(crate) fn handle<B>(
    inner: &Arc<Inner>,
    mut request: Request<B>,
    sid: Option<String>,
) -> Response<Full<Bytes>> {
    let role = match sid {
        None => Role2::Open,
        Some(sid) => match inner.find(&sid) {
            None => return error_response(RequestError::UnknownSid),
            Some((sid, cell)) => {
                let begun = cell.lock().begin_upgrade(Instant::now());
                match begun {
                    Ok(()) => Role2::Probe(sid, cell),
                    Err(UpgradeRefusal::SessionClosed) => {
                        return error_response(RequestError::UnknownSid)
                    }
                    Err(UpgradeRefusal::NotAllowed) => {
                        return error_response(RequestError::BadRequest)
                    }
                    Err(UpgradeRefusal::AlreadyUpgraded) => Role2::Refused,
                }
            }
        },
    };
    let config = websocket_config(inner);
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", |target| target.as_str())
        .to_owned();
    let minor = u8::from(request.version() != hyper::Version::HTTP_10);
    let accepted = UpgradeRequest::from_parts(
        request.method().as_str(),
        &target,
        minor,
        request
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes())),
        &config,
    )
    .and_then(|ws_request| ws_request.accept(Accept::default(), &config));
    let accepted = match accepted {
        Ok(accepted) => accepted,
        Err(rejection) => {
            if let Role2::Probe(sid, cell) = &role {
                cell.lock().probe_closed();
                inner.after_change(*sid, cell);
            }
            let status =
                StatusCode::from_u16(rejection.status()).unwrap_or(StatusCode::BAD_REQUEST);
            return plain(
                status,
                "text/plain",
                Bytes::from(rejection.reason().to_owned()),
            );
        }
    };
    let upgrade = hyper::upgrade::on(&mut request);
    let negotiated = accepted.negotiated().clone();
    let inner = Arc::clone(inner);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else {
            if let Role2::Probe(sid, cell) = &role {
                cell.lock().probe_closed();
                inner.after_change(*sid, cell);
            }
            return;
        };
        let conn = Connection::with_negotiated(Role::Server, config, negotiated, &[]);
        // chito's queue holds one write at most, drawn from the session's
        // queue, whose bound is the one that applies (`queue_overflow`);
        // twice that bound leaves room for chito's per-message overhead
        // (a write that still does not fit goes on in the next one).
        let ws = chito::tokio::Builder::new(TokioIo::new(upgraded))
            .max_queued_bytes(inner.config.engine.max_queued_bytes.saturating_mul(2))
            .shutdown(&inner.websockets)
            .upgraded(conn);
        match role {
            Role2::Open => match inner.open_session(TransportKind::WebSocket) {
                Some((sid, cell)) => run(inner, sid, cell, ws, false).await,
                None => {
                    // `max_sessions` reached (or shutdown began) between
                    // the check and the 101: 1013 "try again later"
                    // (RFC 6455 §7.4.1 registry), 1001 when going away.
                    let code = if inner.shutting_down() {
                        CloseCode::GoingAway
                    } else {
                        CloseCode::TryAgainLater
                    };
                    let mut ws = ws;
                    let _ = ws.close(code, "").await;
                    while ws.recv().await.is_ok() {}
                }
            },
            Role2::Probe(sid, cell) => run(inner, sid, cell, ws, true).await,
            Role2::Refused => {
                let mut ws = ws;
                let _ = ws.close(CloseCode::Normal, "").await;
                // Drain until the closing handshake ends.
                while ws.recv().await.is_ok() {}
            }
        }
    });
    let mut response = plain(StatusCode::SWITCHING_PROTOCOLS, "text/plain", Bytes::new());
    response.headers_mut().remove(hyper::header::CONTENT_TYPE);
    for (name, value) in accepted.headers() {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            hyper::header::HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

/// Drives one WebSocket of a session: this task reads; a writer task
/// moves the session's packets into chito's send queue.
async fn run<S>(
    inner: Arc<Inner>,
    sid: Sid,
    cell: Arc<SessionCell>,
    mut ws: chito::tokio::WebSocket<S>,
    probing: bool,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let handle = ws.handle();
    let probe_answers = ws.handle();
    let writer = tokio::spawn(write_loop(Arc::clone(&cell), handle, probing));
    let mut main = !probing;
    loop {
        let event = ws.recv().await;
        if !main && cell.lock().probe_status() == ProbeStatus::Completed {
            main = true;
        }
        let mut session = cell.lock();
        match event {
            Ok(OwnedEvent::Text(text)) if main => session.recv_text(&text, Instant::now()),
            Ok(OwnedEvent::Text(text)) => {
                session.recv_probe_text(&text, Instant::now());
                // `3probe` goes out from this task, now, as engine.io
                // answers a probe as it reads it: ahead of the `5` that may
                // follow in the same read, so before a polling request can
                // see the upgrade done (the suite's "ignores HTTP requests
                // with same sid after upgrade" takes the next WebSocket
                // message after such a request, and it must not be
                // `3probe`). The writer task would send it a turn later.
                while let Some(packet) = session.poll_probe_transmit() {
                    let _ = match &packet {
                        Outgoing::Text(text) => probe_answers.try_send(Message::Text(text)),
                        Outgoing::Binary(data) => probe_answers.try_send(Message::Binary(data)),
                        Outgoing::Shared(shared) => probe_answers.try_send_shared(shared.message()),
                    };
                }
            }
            Ok(OwnedEvent::Binary(data)) if main => session.recv_binary(Bytes::from(data)),
            Ok(OwnedEvent::Binary(_)) => session.recv_probe_binary(),
            Ok(OwnedEvent::Ping(_) | OwnedEvent::Pong(_)) => {}
            Ok(OwnedEvent::Close(_)) | Err(_) => {
                if main {
                    session.close(CloseReason::TransportClose);
                } else {
                    session.probe_closed();
                }
                drop(session);
                inner.after_change(sid, &cell);
                break;
            }
        }
        drop(session);
        inner.after_change(sid, &cell);
    }
    // The writer ends once it sees the session closed or the probe failed;
    // if it is stuck behind a full queue, the connection is gone anyway.
    writer.abort();
}

/// Completes the session's WebSocket writes and starts the next
/// ([`SessionCell::flush_websocket`]: engine.io's pacing, one write in
/// flight), sends the probe's `3probe`, and closes the WebSocket when the
/// session closes (1000, or 1002 for a parse error: §9) or the probe fails
/// (1000).
async fn write_loop(cell: Arc<SessionCell>, handle: chito::tokio::Handle, mut probing: bool) {
    let mut changed = cell.subscribe();
    if !probing {
        cell.attach_websocket(&handle);
    }
    // When the write just completed may be followed (the pause after a
    // packet sent apart).
    let mut spaced_until: Option<Instant> = None;
    loop {
        if handle.is_closed() {
            // The connection is closing or gone: nothing more can be
            // written; the reading task reports the session's close.
            return;
        }
        if probing {
            let mut session = cell.lock();
            while let Some(packet) = session.poll_probe_transmit() {
                let _ = match &packet {
                    Outgoing::Text(text) => handle.try_send(Message::Text(text)),
                    Outgoing::Binary(data) => handle.try_send(Message::Binary(data)),
                    Outgoing::Shared(shared) => handle.try_send_shared(shared.message()),
                };
            }
            match session.probe_status() {
                ProbeStatus::Completed => {
                    probing = false;
                    drop(session);
                    cell.attach_websocket(&handle);
                }
                ProbeStatus::Probing => {}
                ProbeStatus::Idle | ProbeStatus::Failed => {
                    drop(session);
                    let _ = handle.close(CloseCode::Normal, "");
                    return;
                }
            }
        }
        let mut writing = false;
        if !probing {
            let (rest, close, slow_consumer) = {
                let mut session = cell.lock();
                if session.websocket_writing() && handle.buffered_amount() == 0 {
                    let now = Instant::now();
                    let pause = session.websocket_pause_after_write();
                    let until = *spaced_until.get_or_insert_with(|| {
                        if pause {
                            now + APART_PAUSE
                        } else {
                            now
                        }
                    });
                    if now >= until {
                        session.websocket_write_done();
                        spaced_until = None;
                    }
                }
                let close = session.close_reason();
                let mut rest = Vec::new();
                if close.is_some() {
                    // Closing: what is left goes now, before the close.
                    while let Some(packet) = session.poll_transmit() {
                        rest.push(packet);
                    }
                } else {
                    cell.flush_websocket(&mut session);
                    writing = session.websocket_writing();
                }
                (rest, close, session.closed_as_slow_consumer())
            };
            if let Some(reason) = close {
                for packet in rest {
                    let sent = match &packet {
                        Outgoing::Text(text) => handle.send(Message::Text(text)).await,
                        Outgoing::Binary(data) => handle.send(Message::Binary(data)).await,
                        Outgoing::Shared(shared) => handle.try_send_shared(shared.message()),
                    };
                    if sent.is_err() {
                        return;
                    }
                }
                // docs/socketio.md §9: 1002 for a parse error, 1001 when the
                // server goes away, 1008 for a slow consumer (as chito's own
                // overflow close), 1000 for every other Engine.IO close.
                let code = match reason {
                    CloseReason::ParseError => CloseCode::ProtocolError,
                    CloseReason::ServerShutdown => CloseCode::GoingAway,
                    _ if slow_consumer => CloseCode::PolicyViolation,
                    _ => CloseCode::Normal,
                };
                let _ = handle.close(code, "");
                return;
            }
        }
        if writing {
            tokio::select! {
                () = written(&handle, spaced_until) => {}
                result = changed.changed() => if result.is_err() { return; },
            }
        } else if changed.changed().await.is_err() {
            return;
        }
    }
}

/// The pause after a write that ends with a packet sent apart
/// (`Session::try_send_apart`: the CONNECT answer). engine.io's pacing
/// (one write in flight) puts the CONNECT answer and the connect handler's
/// first emit in separate writes, but a client busy elsewhere — a loaded
/// machine — still reads both at once if the second arrives before it has
/// read the first, and `ws` 8.5 (the protocol suite's client) then emits
/// both before its listener for the second is added. The pause gives it
/// time to read; other writes are paced by completion alone, so
/// throughput is unaffected.
const APART_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

/// Resolves once chito has written everything handed to `handle` (or the
/// connection closed), or, with `spaced_until`, once that instant passed. chito's handle tells senders when room is freed,
/// not when the queue is empty, so this looks again after letting the
/// connection's task run — it takes and writes the queue in one poll, so
/// one or two turns usually suffice — and then every millisecond (a peer
/// reading slowly: the session's queue fills meanwhile and its bound
/// applies).
async fn written(handle: &chito::tokio::Handle, spaced_until: Option<Instant>) {
    if let Some(until) = spaced_until {
        // Written already; only the spacing is left.
        tokio::time::sleep_until(until.into()).await;
        return;
    }
    let done = || handle.buffered_amount() == 0 || handle.is_closed();
    for _ in 0..4 {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
    while !done() {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}
