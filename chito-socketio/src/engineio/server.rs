//! `EngineIo`: the raw Engine.IO v4 server on hyper 1 (docs/socketio.md
//! §3). Requests under the configured path (`/engine.io/`) are polling
//! requests or WebSocket upgrades; everything else answers 404.
//!
//! Each session is a sans-IO [`Session`] behind a mutex, with a version
//! counter (`tokio::sync::watch`) that every party waiting on it — a
//! parked GET, the WebSocket writer, the session's timer task — watches:
//! whoever changes the session bumps it, so no wake-up is lost.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chito::rooms::{Payload, Sink};
use chito::tokio::QueueError;
use chito::Message;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body;
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::watch;

use super::config::EngineConfig;
use super::cors::{Cors, CorsOrigin, CorsRequest};
use super::packet::{Outgoing, SharedPacket, SharedPackets};
use super::query::{parse_query, RequestError, TransportKind};
use super::session::{CloseReason, EngineEvent, SendError, Session};
use super::sid::{Sid, SidGenerator};

/// What the application does with an Engine.IO server's sessions.
pub trait EngineHandler: Send + Sync + 'static {
    /// A session opened (its open packet is on its way).
    fn on_open(&self, socket: &EngineSocket) {
        let _ = socket;
    }

    /// Something happened on a session: a message, its upgrade, its close
    /// (last, once).
    fn on_event(&self, socket: &EngineSocket, event: EngineEvent);
}

/// A request body the server reads (polling POSTs): hyper's `Incoming`,
/// axum's `Body`, any [`Body`] of [`Bytes`] chunks.
pub trait RequestBody: Send + 'static {
    /// The whole body, refused past `limit` bytes.
    #[doc(hidden)]
    fn collect_limited(self, limit: usize)
        -> impl Future<Output = Result<Bytes, BodyError>> + Send;
}

/// Why a request body was not read.
#[doc(hidden)]
#[derive(Debug)]
pub enum BodyError {
    /// It is longer than the limit.
    TooLarge,
    /// The connection failed while it was read.
    Failed,
}

impl<B> RequestBody for B
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    async fn collect_limited(self, limit: usize) -> Result<Bytes, BodyError> {
        match Limited::new(self, limit).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                Err(BodyError::TooLarge)
            }
            Err(_) => Err(BodyError::Failed),
        }
    }
}

/// An Engine.IO server's settings beyond the protocol's.
#[derive(Debug, Clone)]
pub struct EngineServerConfig {
    /// The protocol's limits and timers.
    pub engine: EngineConfig,
    /// The path requests are served under (`/engine.io/`).
    pub path: String,
    /// Answer `Access-Control-Allow-Origin: *` (the suites' `cors: {origin: "*"}`):
    /// the same as `cors: Cors::any()`, kept for configurations written
    /// before `cors`.
    pub cors_any_origin: bool,
    /// CORS for browsers calling from other origins (docs/socketio.md §10);
    /// off by default, as in the JavaScript server.
    pub cors: Cors,
    /// The most sessions open at once (0: no limit). A handshake past it is
    /// answered 503 (docs/socketio.md §9), polling and WebSocket alike: a
    /// temporary refusal the clients retry with their reconnection backoff.
    pub max_sessions: usize,
    /// Decides whether a handshake (a request without `sid`) may open a
    /// session, as the JavaScript server's `allowRequest`; a refusal is
    /// answered 403 `{"code":4,"message":"Forbidden"}`.
    pub allow_request: Option<AllowRequest>,
}

/// The hook that accepts or refuses a handshake from its request line and
/// headers (check an `Origin`, a cookie, a token in the query).
#[derive(Clone)]
pub struct AllowRequest(Arc<dyn Fn(&http::request::Parts) -> bool + Send + Sync>);

impl AllowRequest {
    /// A hook that allows the handshakes for which `allow` returns true.
    pub fn new(allow: impl Fn(&http::request::Parts) -> bool + Send + Sync + 'static) -> Self {
        AllowRequest(Arc::new(allow))
    }

    fn allows(&self, parts: &http::request::Parts) -> bool {
        (self.0)(parts)
    }
}

impl std::fmt::Debug for AllowRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AllowRequest(..)")
    }
}

impl Default for EngineServerConfig {
    fn default() -> Self {
        EngineServerConfig {
            engine: EngineConfig::default(),
            path: "/engine.io/".to_owned(),
            cors_any_origin: false,
            cors: Cors::default(),
            max_sessions: 0,
            allow_request: None,
        }
    }
}

/// One session's shared state.
pub(crate) struct SessionCell {
    session: Mutex<Session>,
    /// Bumped after every change of the session.
    changed: watch::Sender<u64>,
    /// The session's WebSocket once it is its transport (at once for a
    /// WebSocket-only session, at the end of an upgrade).
    websocket: OnceLock<chito::tokio::Handle>,
}

impl SessionCell {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Session> {
        // A panic while holding the lock leaves a session that is still
        // consistent enough to be closed; do not spread the poison.
        self.session
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn notify(&self) {
        self.changed
            .send_modify(|version| *version = version.wrapping_add(1));
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Makes `handle` the session's transport for what it sends.
    pub(crate) fn attach_websocket(&self, handle: &chito::tokio::Handle) {
        // Set once per session: a second WebSocket is refused before it
        // gets here.
        let _ = self.websocket.set(handle.clone());
    }

    /// engine.io's `flush` on a writable transport: if the session is on
    /// its WebSocket and no write is in flight, hands everything queued to
    /// it as one write ([`Session::begin_websocket_write`]). Called under
    /// the session's lock by whoever queued, so a write starts at once (as
    /// engine.io's `sendPacket` flushes synchronously) and two writes never
    /// overlap or reorder; the writer task completes it.
    pub(crate) fn flush_websocket(&self, session: &mut Session) {
        let Some(handle) = self.websocket.get() else {
            return;
        };
        if !session.begin_websocket_write() {
            return;
        }
        let mut full = false;
        while let Some(packet) = session.poll_transmit() {
            let pushed = match &packet {
                Outgoing::Text(text) => handle.try_send(Message::Text(text)),
                Outgoing::Binary(data) => handle.try_send(Message::Binary(data)),
                // A reference count: chito builds the frame once per wire
                // form for every session it goes to.
                Outgoing::Shared(shared) => handle.try_send_shared(shared.message()),
            };
            match pushed {
                Ok(()) => {}
                Err(QueueError::Full) => {
                    // Goes with the next write, first.
                    session.requeue_front(packet);
                    full = true;
                    break;
                }
                // The connection is closing: its reader reports the close.
                Err(_) => break,
            }
        }
        // One write in flight matters to clients only after the packet
        // sent apart (the CONNECT answer, see `Session::try_send_apart`):
        // elsewhere the write is complete once chito has the packets, whose
        // own queue (bounded like the session's) holds what the peer has
        // not read, so pipelined emits are not held back a write at a time.
        // A full chito queue keeps the write in flight: the writer waits
        // for it to drain before handing over the rest.
        if !full && !session.websocket_pause_after_write() {
            session.websocket_write_done();
        }
    }
}

/// A handle on one session, for the application: send, close.
#[derive(Clone)]
pub struct EngineSocket {
    cell: Arc<SessionCell>,
    sid: Sid,
}

impl std::fmt::Debug for EngineSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineSocket")
            .field("sid", &self.sid)
            .finish()
    }
}

impl EngineSocket {
    /// The session's id (a secret: never show it to other clients).
    pub fn sid(&self) -> Sid {
        self.sid
    }

    /// Sends a text message. False when it was not queued (the session is
    /// closed, or its queue is full: [`EngineSocket::try_send_text`] says
    /// which).
    pub fn send_text(&self, text: &str) -> bool {
        self.try_send(Outgoing::message(text)).is_ok()
    }

    /// Sends a binary message. False when it was not queued.
    pub fn send_binary(&self, data: Bytes) -> bool {
        self.try_send(Outgoing::Binary(data)).is_ok()
    }

    /// Sends a text message, saying why it was not queued: the session is
    /// closed, or its queue is past `max_queued_bytes` (then the session's
    /// `queue_overflow` policy applied).
    pub fn try_send_text(&self, text: &str) -> Result<(), SendError> {
        self.try_send(Outgoing::message(text))
    }

    /// Sends a binary message, saying why it was not queued.
    pub fn try_send_binary(&self, data: Bytes) -> Result<(), SendError> {
        self.try_send(Outgoing::Binary(data))
    }

    /// Sends `packets` together, in order, with nothing between them (a
    /// Socket.IO packet and its attachments), or none of them; shared
    /// packets are queued by reference (docs/socketio.md §6).
    pub fn try_send_all(&self, packets: &[Outgoing]) -> Result<(), SendError> {
        let sent = {
            let mut session = self.cell.lock();
            let sent = session.try_send_all(packets);
            self.cell.flush_websocket(&mut session);
            sent
        };
        self.cell.notify();
        sent
    }

    /// Sends `packet` apart: last in its WebSocket write, the next write
    /// after a pause ([`Session::try_send_apart`]; Socket.IO's CONNECT
    /// answer).
    pub fn try_send_apart(&self, packet: Outgoing) -> Result<(), SendError> {
        let sent = {
            let mut session = self.cell.lock();
            let sent = session.try_send_apart(packet);
            self.cell.flush_websocket(&mut session);
            sent
        };
        self.cell.notify();
        sent
    }

    pub(crate) fn try_send(&self, packet: Outgoing) -> Result<(), SendError> {
        let sent = {
            let mut session = self.cell.lock();
            let sent = session.try_send(packet);
            self.cell.flush_websocket(&mut session);
            sent
        };
        // Wakes the GET, the writer and the timer task; a slow consumer
        // closed here is reported and forgotten by the timer task, which
        // sees it finished.
        self.cell.notify();
        sent
    }

    /// Closes the session (`forced close`).
    pub fn close(&self) {
        self.close_with(CloseReason::ForcedClose);
    }

    /// Closes the session for `reason`: Socket.IO closes with `parse
    /// error` a packet the Engine.IO layer passed but its grammar refuses,
    /// so that the WebSocket closes with 1002 as for an Engine.IO parse
    /// error (docs/socketio.md §9).
    pub(crate) fn close_with(&self, reason: CloseReason) {
        self.cell.lock().close(reason);
        self.cell.notify();
    }
}

/// A session is a room member's sink (docs/socketio.md §5, §6): an emit's
/// payload becomes its Engine.IO messages once per emit (cached with the
/// payload), queued by reference in every member's session, a batch all
/// or none; then the WebSocket write starts or the parked GET wakes.
impl Sink for EngineSocket {
    fn deliver(&self, payload: &Payload) -> Result<(), QueueError> {
        let sent = match payload {
            // Socket.IO emits are batches (`socketio::socket::payload`).
            Payload::Batch(_) => match payload.derived(SharedPackets::from_messages) {
                Some(packets) => self.try_send_all(packets.packets()),
                // Another type was cached with the payload first: built
                // for this member alone.
                None => {
                    self.try_send_all(SharedPackets::from_messages(payload.messages()).packets())
                }
            },
            // A single message's cache slot is inside the message, and
            // the cached packet would hold the message: a cycle never
            // freed. Built for this member (one reference-counted cell);
            // only emits from outside Socket.IO (a plain chito emit to a
            // room key) come as single messages.
            Payload::Single(message) => self.try_send(Outgoing::Shared(
                SharedPacket::from_message(message.clone()),
            )),
        };
        sent.map_err(|error| match error {
            SendError::Full => QueueError::Full,
            SendError::Closed => QueueError::Closed,
            SendError::ClosedSlowConsumer => QueueError::ClosedSlowConsumer,
        })
    }

    fn is_closed(&self) -> bool {
        self.cell.lock().is_closed()
    }
}

pub(crate) struct Inner {
    pub(crate) config: EngineServerConfig,
    sids: SidGenerator,
    sessions: Mutex<HashMap<Sid, Arc<SessionCell>>>,
    pub(crate) handler: Arc<dyn EngineHandler>,
    /// `Some(deadline)` once [`EngineIo::shutdown`] started: handshakes are
    /// refused, `serve` stops accepting, served connections finish by the
    /// deadline.
    shutdown: watch::Sender<Option<Instant>>,
    /// Every WebSocket connection, so the shutdown can drop those still
    /// open at its deadline.
    pub(crate) websockets: chito::tokio::Shutdown,
}

impl Inner {
    fn sessions(&self) -> MutexGuard<'_, HashMap<Sid, Arc<SessionCell>>> {
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The open session a request's `sid` names.
    pub(crate) fn find(&self, sid: &str) -> Option<(Sid, Arc<SessionCell>)> {
        let sid = Sid::parse(sid)?;
        let cell = self.sessions().get(&sid).cloned()?;
        Some((sid, cell))
    }

    /// Whether shutdown has started.
    pub(crate) fn shutting_down(&self) -> bool {
        self.shutdown.borrow().is_some()
    }

    /// Whether `max_sessions` sessions are open.
    pub(crate) fn at_capacity(&self) -> bool {
        let max = self.config.max_sessions;
        max != 0 && self.sessions().len() >= max
    }

    /// A new session on `transport`, registered, its timer task running;
    /// `None` when `max_sessions` are open or shutdown started (checked
    /// under the lock the session is inserted with, so concurrent
    /// handshakes cannot pass the limit together).
    pub(crate) fn open_session(
        self: &Arc<Self>,
        transport: TransportKind,
    ) -> Option<(Sid, Arc<SessionCell>)> {
        let sid = self.sids.next_sid();
        let session = Session::open(sid, transport, &self.config.engine, Instant::now());
        let (changed, _) = watch::channel(0);
        let cell = Arc::new(SessionCell {
            session: Mutex::new(session),
            changed,
            websocket: OnceLock::new(),
        });
        {
            let mut sessions = self.sessions();
            let max = self.config.max_sessions;
            if self.shutting_down() || (max != 0 && sessions.len() >= max) {
                return None;
            }
            sessions.insert(sid, Arc::clone(&cell));
        }
        tokio::spawn(run_timer(Arc::clone(self), sid, Arc::clone(&cell)));
        self.handler.on_open(&EngineSocket {
            cell: Arc::clone(&cell),
            sid,
        });
        Some((sid, cell))
    }

    /// After any change of a session: wake its waiters, hand its events
    /// to the application (outside the lock), forget it once closed.
    pub(crate) fn after_change(&self, sid: Sid, cell: &Arc<SessionCell>) {
        cell.notify();
        let (events, finished) = {
            let mut session = cell.lock();
            let events: Vec<EngineEvent> = std::iter::from_fn(|| session.poll_event()).collect();
            (events, session.is_finished())
        };
        if finished {
            // Requests naming it now get `Session ID unknown`; a parked
            // GET keeps its own reference to take its last answer.
            self.sessions().remove(&sid);
        }
        if !events.is_empty() {
            let socket = EngineSocket {
                cell: Arc::clone(cell),
                sid,
            };
            for event in events {
                self.handler.on_event(&socket, event);
            }
        }
    }
}

/// The session's timer: runs `handle_timeout` at `poll_timeout`, ends
/// when the session is finished (closed, nothing left to answer).
async fn run_timer(inner: Arc<Inner>, sid: Sid, cell: Arc<SessionCell>) {
    let mut changed = cell.subscribe();
    loop {
        let deadline = {
            let session = cell.lock();
            if session.is_finished() {
                break;
            }
            session.poll_timeout()
        };
        let due = match deadline {
            Some(deadline) => tokio::select! {
                () = tokio::time::sleep_until(deadline.into()) => true,
                result = changed.changed() => { if result.is_err() { break; } false }
            },
            None => changed.changed().await.is_err(),
        };
        if due {
            cell.lock().handle_timeout(Instant::now());
            inner.after_change(sid, &cell);
        }
    }
    inner.after_change(sid, &cell);
}

/// The raw Engine.IO server.
#[derive(Clone)]
pub struct EngineIo {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EngineIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineIo")
            .field("config", &self.inner.config)
            .finish()
    }
}

impl EngineIo {
    /// A server with `config`, handing sessions to `handler`.
    pub fn new(config: EngineServerConfig, handler: impl EngineHandler) -> EngineIo {
        EngineIo {
            inner: Arc::new(Inner {
                config,
                sids: SidGenerator::new(),
                sessions: Mutex::new(HashMap::new()),
                handler: Arc::new(handler),
                shutdown: watch::channel(None).0,
                websockets: chito::tokio::Shutdown::new(),
            }),
        }
    }

    /// How many sessions are open.
    pub fn session_count(&self) -> usize {
        self.inner.sessions().len()
    }

    /// The CORS settings in force (`cors_any_origin` is `Cors::any()`).
    fn cors(&self) -> Cors {
        let config = &self.inner.config;
        if config.cors_any_origin && config.cors.origin == CorsOrigin::Off {
            Cors::any()
        } else {
            config.cors.clone()
        }
    }

    /// Answers one HTTP request (serve it with hyper's `with_upgrades`;
    /// under axum the upgrade is in the request's extensions alike).
    pub async fn handle<B: RequestBody>(
        &self,
        request: Request<B>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let cors_request = CorsRequest::from_headers(request.headers());
        let preflight = request.method() == Method::OPTIONS;
        let mut response = self.route(request).await;
        let cors = self.cors();
        if preflight && response.status() == StatusCode::NO_CONTENT {
            cors.apply_preflight(&cors_request, response.headers_mut());
        } else {
            cors.apply(&cors_request, response.headers_mut());
        }
        Ok(response)
    }

    async fn route<B: RequestBody>(&self, request: Request<B>) -> Response<Full<Bytes>> {
        let path = request.uri().path();
        let base = self.inner.config.path.trim_end_matches('/');
        if path != self.inner.config.path && path != base {
            return plain(
                StatusCode::NOT_FOUND,
                "text/plain",
                Bytes::from_static(b"Not Found"),
            );
        }
        if request.method() == Method::OPTIONS {
            // CORS preflight (docs/socketio.md §10): `handle` adds the
            // headers the CORS settings allow.
            return plain(StatusCode::NO_CONTENT, "text/plain", Bytes::new());
        }
        let query = request.uri().query().map(str::to_owned);
        let parsed = match parse_query(query.as_deref()) {
            Ok(parsed) => parsed,
            Err(error) => return error_response(error),
        };
        let sid = parsed.sid.map(str::to_owned);
        let request = if sid.is_none() {
            match self.admit_handshake(request) {
                Ok(request) => request,
                Err(refusal) => return refusal,
            }
        } else {
            request
        };
        match parsed.transport {
            TransportKind::Polling => super::polling::handle(&self.inner, request, sid).await,
            TransportKind::WebSocket => super::websocket::handle(&self.inner, request, sid),
        }
    }

    /// The checks a handshake passes before a session is opened for it,
    /// in the reference server's order (its `verify` runs `allowRequest`
    /// last): not shutting down (503), the `allow_request` hook (403,
    /// code 4), `max_sessions` (503).
    #[allow(clippy::result_large_err)]
    fn admit_handshake<B>(&self, request: Request<B>) -> Result<Request<B>, Response<Full<Bytes>>> {
        if self.inner.shutting_down() {
            return Err(unavailable("server shutting down"));
        }
        let request = match &self.inner.config.allow_request {
            Some(hook) => {
                let (parts, body) = request.into_parts();
                if !hook.allows(&parts) {
                    return Err(error_response(RequestError::Forbidden));
                }
                Request::from_parts(parts, body)
            }
            None => request,
        };
        // Checked again when the session is inserted (`open_session`):
        // this early answer spares a WebSocket its 101.
        if self.inner.at_capacity() {
            return Err(unavailable("too many sessions"));
        }
        Ok(request)
    }

    /// Serves HTTP/1.1 on `listener` until [`EngineIo::shutdown`]
    /// starts (an accept error never ends it: a failed connection is
    /// skipped, a lack of descriptors waits 100 ms); then stops accepting
    /// and returns `Ok(())`, while the connections it served finish their requests
    /// (hyper's graceful shutdown) within the shutdown's deadline.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        let mut shutdown = self.inner.shutdown.subscribe();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = shutdown.wait_for(Option::is_some) => return Ok(()),
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                // One connection that failed before we took it: the next.
                Err(e) if accept_error_is_per_connection(&e) => continue,
                // Out of file descriptors (EMFILE/ENFILE) or memory: the
                // listener stays, sessions that end free what it needs;
                // retrying at once would spin on the same error.
                Err(_) => {
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            };
            let server = self.clone();
            let mut shutdown = self.inner.shutdown.subscribe();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let server = server.clone();
                    async move { server.handle(request).await }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .with_upgrades();
                tokio::pin!(connection);
                // Errors of one connection (a client gone mid-request)
                // concern that connection only.
                let deadline = tokio::select! {
                    _ = connection.as_mut() => return,
                    deadline = shutdown.wait_for(Option::is_some) => match deadline {
                        Ok(deadline) => *deadline,
                        Err(_) => None,
                    },
                };
                // Shutting down: the request in progress is answered (a
                // parked GET gets the `1` of its session's close), then
                // the connection closes instead of waiting for the next.
                connection.as_mut().graceful_shutdown();
                let deadline = deadline.unwrap_or_else(Instant::now);
                let _ = tokio::time::timeout_at(deadline.into(), connection).await;
            });
        }
    }

    /// Shuts the server down gracefully, within `grace`: new handshakes
    /// are refused (503) and `serve` stops accepting; every session is
    /// closed (`server shutting down`): a parked polling GET is answered
    /// with the close packet `1`, a WebSocket gets what was queued for it
    /// and then close 1001 (going away, RFC 6455 §7.4.1; docs/socketio.md
    /// §9). WebSockets whose closing handshake has not ended by the
    /// deadline are dropped. Returns how many had to be dropped.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        let deadline = Instant::now() + grace;
        self.inner.shutdown.send_replace(Some(deadline));
        let sessions: Vec<(Sid, Arc<SessionCell>)> = self
            .inner
            .sessions()
            .iter()
            .map(|(sid, cell)| (*sid, Arc::clone(cell)))
            .collect();
        for (sid, cell) in sessions {
            cell.lock().close(CloseReason::ServerShutdown);
            self.inner.after_change(sid, &cell);
        }
        // The writers send what is queued, then the close: give them the
        // grace before chito's shutdown sends its own 1001 and drops the
        // rest (it would cut the queued messages short).
        let websockets = &self.inner.websockets;
        while websockets.live_connections() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let dropped = websockets.shutdown(Duration::ZERO).await;
        // Sessions still answering a GET racing a close (the 1 s grace of
        // `Session::is_finished`) are forgotten now.
        self.inner.sessions().clear();
        dropped
    }
}

/// Sessions without HTTP, for the crate's tests: opened, fed and read
/// through the same calls the transports make.
#[cfg(test)]
impl EngineIo {
    /// Opens a session on `transport` (no WebSocket is attached: what it
    /// sends stays queued for [`EngineIo::test_take`]).
    pub(crate) fn test_open(&self, transport: TransportKind) -> Option<EngineSocket> {
        let (sid, cell) = self.inner.open_session(transport)?;
        Some(EngineSocket { cell, sid })
    }

    /// `text` arrives from the client of `socket`'s session.
    pub(crate) fn test_receive(&self, socket: &EngineSocket, text: &str) {
        socket.cell.lock().recv_text(text, Instant::now());
        self.inner.after_change(socket.sid, &socket.cell);
    }

    /// What the session's client would get now: a polling GET's body, or
    /// the packets queued for the WebSocket.
    pub(crate) fn test_take(&self, socket: &EngineSocket) -> (Option<Bytes>, Vec<Outgoing>) {
        let mut session = socket.cell.lock();
        let body = match session.get_arrived(Instant::now()) {
            super::session::GetAction::Respond(body) => Some(body),
            _ => {
                session.get_abandoned();
                None
            }
        };
        let packets = std::iter::from_fn(|| session.poll_transmit()).collect();
        (body, packets)
    }
}

/// 503 for a handshake the server cannot take now (docs/socketio.md §9):
/// the clients retry with their reconnection backoff.
fn unavailable(reason: &'static str) -> Response<Full<Bytes>> {
    let mut response = plain(
        StatusCode::SERVICE_UNAVAILABLE,
        "text/plain",
        Bytes::from_static(reason.as_bytes()),
    );
    response.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from_static("1"),
    );
    response
}

/// A response with `status`, `content_type` and `body`.
pub(crate) fn plain(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

/// The reference server's JSON error answer.
pub(crate) fn error_response(error: RequestError) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_REQUEST);
    plain(status, "application/json", Bytes::from(error.json_body()))
}

/// How long `serve` waits after an accept error that is not one
/// connection's own (e.g. EMFILE) before accepting again.
const ACCEPT_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// Whether an accept error concerns only the connection being accepted
/// (the peer reset or aborted it before we took it).
fn accept_error_is_per_connection(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use std::io::{Error, ErrorKind};

    use super::accept_error_is_per_connection;

    #[test]
    fn only_a_connections_own_accept_errors_are_skipped_at_once() {
        assert!(accept_error_is_per_connection(&Error::from(
            ErrorKind::ConnectionAborted
        )));
        // EMFILE: the listener waits before accepting again.
        assert!(!accept_error_is_per_connection(&Error::from_raw_os_error(
            24
        )));
    }
}
