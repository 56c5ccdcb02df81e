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
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::watch;

use super::config::EngineConfig;
use super::packet::Outgoing;
use super::query::{parse_query, RequestError, TransportKind};
use super::session::{CloseReason, EngineEvent, Session};
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

/// An Engine.IO server's settings beyond the protocol's.
#[derive(Debug, Clone)]
pub struct EngineServerConfig {
    /// The protocol's limits and timers.
    pub engine: EngineConfig,
    /// The path requests are served under (`/engine.io/`).
    pub path: String,
    /// Answer `Access-Control-Allow-Origin: *` (the suites' `cors: {origin: "*"}`).
    pub cors_any_origin: bool,
}

impl Default for EngineServerConfig {
    fn default() -> Self {
        EngineServerConfig {
            engine: EngineConfig::default(),
            path: "/engine.io/".to_owned(),
            cors_any_origin: false,
        }
    }
}

/// One session's shared state.
pub(crate) struct SessionCell {
    session: Mutex<Session>,
    /// Bumped after every change of the session.
    changed: watch::Sender<u64>,
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

    /// Sends a text message. False when the session is closed.
    pub fn send_text(&self, text: &str) -> bool {
        self.send(Outgoing::message(text))
    }

    /// Sends a binary message. False when the session is closed.
    pub fn send_binary(&self, data: Bytes) -> bool {
        self.send(Outgoing::Binary(data))
    }

    fn send(&self, packet: Outgoing) -> bool {
        let sent = self.cell.lock().send(packet);
        self.cell.notify();
        sent
    }

    /// Closes the session (`forced close`).
    pub fn close(&self) {
        self.cell.lock().close(CloseReason::ForcedClose);
        self.cell.notify();
    }
}

pub(crate) struct Inner {
    pub(crate) config: EngineServerConfig,
    sids: SidGenerator,
    sessions: Mutex<HashMap<Sid, Arc<SessionCell>>>,
    pub(crate) handler: Arc<dyn EngineHandler>,
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

    /// A new session on `transport`, registered, its timer task running.
    pub(crate) fn open_session(
        self: &Arc<Self>,
        transport: TransportKind,
    ) -> (Sid, Arc<SessionCell>) {
        let sid = self.sids.next_sid();
        let session = Session::open(sid, transport, &self.config.engine, Instant::now());
        let (changed, _) = watch::channel(0);
        let cell = Arc::new(SessionCell {
            session: Mutex::new(session),
            changed,
        });
        self.sessions().insert(sid, Arc::clone(&cell));
        tokio::spawn(run_timer(Arc::clone(self), sid, Arc::clone(&cell)));
        self.handler.on_open(&EngineSocket {
            cell: Arc::clone(&cell),
            sid,
        });
        (sid, cell)
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
            }),
        }
    }

    /// How many sessions are open.
    pub fn session_count(&self) -> usize {
        self.inner.sessions().len()
    }

    /// Answers one HTTP request (serve it with hyper's `with_upgrades`).
    pub async fn handle(
        &self,
        request: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let mut response = self.route(request).await;
        if self.inner.config.cors_any_origin {
            response.headers_mut().insert(
                hyper::header::ACCESS_CONTROL_ALLOW_ORIGIN,
                hyper::header::HeaderValue::from_static("*"),
            );
        }
        Ok(response)
    }

    async fn route(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
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
            // CORS preflight (docs/socketio.md §10).
            let mut response = plain(StatusCode::NO_CONTENT, "text/plain", Bytes::new());
            response.headers_mut().insert(
                hyper::header::ACCESS_CONTROL_ALLOW_METHODS,
                hyper::header::HeaderValue::from_static("GET,POST"),
            );
            return response;
        }
        let query = request.uri().query().map(str::to_owned);
        let parsed = match parse_query(query.as_deref()) {
            Ok(parsed) => parsed,
            Err(error) => return error_response(error),
        };
        let sid = parsed.sid.map(str::to_owned);
        match parsed.transport {
            TransportKind::Polling => super::polling::handle(&self.inner, request, sid).await,
            TransportKind::WebSocket => super::websocket::handle(&self.inner, request, sid),
        }
    }

    /// Serves HTTP/1.1 on `listener` until it fails.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        loop {
            let (stream, _) = listener.accept().await?;
            let server = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let server = server.clone();
                    async move { server.handle(request).await }
                });
                // Errors of one connection (a client gone mid-request)
                // concern that connection only.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    }
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
