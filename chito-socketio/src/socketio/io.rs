//! [`SocketIo`]: the Socket.IO server on [`EngineIo`] (docs/socketio.md
//! §8): namespaces, their sockets, emits from anywhere.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chito::rooms::Rooms;
use http_body_util::Full;
use hyper::{Request, Response};
use serde::Serialize;

use super::ack::AckIds;
use super::binary::BinaryLimits;
use super::broadcast::BroadcastOperator;
use super::client::Client;
use super::extract::StateMap;
use super::handler::{ConnectHandler, ConnectMiddleware, HandlerCounters, HandlerStats};
use super::namespace::{
    boxed_connect_handler, boxed_middleware, Middleware, Namespace, Namespaces,
};
use super::packet::MAIN_NAMESPACE;
use super::recovery::{Recovery, RecoveryConfig};
use super::socket::{EmitError, Socket};
use crate::engineio::server::RequestBody;
use crate::engineio::{
    EngineConfig, EngineEvent, EngineHandler, EngineIo, EngineServerConfig, EngineSocket, Sid,
    SidGenerator,
};

/// A Socket.IO server's settings (docs/socketio.md §9; defaults are the
/// JS server's unless noted).
#[derive(Debug, Clone)]
pub struct SocketIoConfig {
    /// The Engine.IO layer's (path `/socket.io/`).
    pub engine: EngineServerConfig,
    /// How long a session may stay without a connected namespace
    /// (`connectTimeout`, 45 000 ms).
    pub connect_timeout: Duration,
    /// How long `emit_with_ack` waits by default (socketioxide's 5 000 ms;
    /// JS waits forever without `.timeout`).
    pub ack_timeout: Duration,
    /// Most unanswered `emit_with_ack` per socket (ours, 1 024).
    pub max_pending_acks: usize,
    /// Most namespaces one client may connect to (ours, 32).
    pub max_namespaces_per_client: usize,
    /// Most namespaces dynamic patterns may create (ours, 1 024).
    pub max_dynamic_namespaces: usize,
    /// Bounds on incoming attachments.
    pub binary_limits: BinaryLimits,
    /// Connection state recovery (docs/socketio.md §7); `None`, the
    /// default, leaves it off, as in JS.
    pub connection_state_recovery: Option<RecoveryConfig>,
}

impl Default for SocketIoConfig {
    fn default() -> Self {
        Self {
            engine: EngineServerConfig {
                path: "/socket.io/".to_owned(),
                ..EngineServerConfig::default()
            },
            connect_timeout: Duration::from_millis(45_000),
            ack_timeout: Duration::from_millis(5_000),
            max_pending_acks: 1_024,
            max_namespaces_per_client: 32,
            max_dynamic_namespaces: 1_024,
            binary_limits: BinaryLimits::default(),
            connection_state_recovery: None,
        }
    }
}

/// What every client and socket of a server shares.
pub(crate) struct IoInner {
    pub(crate) config: SocketIoConfig,
    pub(crate) namespaces: Namespaces,
    pub(crate) ack_ids: AckIds,
    /// The random tails of socket ids (docs/socketio.md §5), from a
    /// generator of their own (a socket id is public, a session id is a
    /// secret, §2).
    pub(crate) socket_ids: SidGenerator,
    /// The values [`State<T>`](super::State) reads.
    pub(crate) state: StateMap,
    pub(crate) handler_counters: HandlerCounters,
    /// The server's room registry: every socket is a member.
    pub(crate) rooms: Rooms,
    clients: Mutex<HashMap<Sid, Arc<Client>>>,
}

impl IoInner {
    fn clients(&self) -> MutexGuard<'_, HashMap<Sid, Arc<Client>>> {
        self.clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The bridge from Engine.IO sessions to Socket.IO clients.
struct Bridge(Arc<IoInner>);

impl EngineHandler for Bridge {
    fn on_open(&self, socket: &EngineSocket) {
        let client = Client::new(socket.clone(), Arc::clone(&self.0), Instant::now());
        client.arm_connect_timeout();
        self.0.clients().insert(socket.sid(), client);
    }

    fn on_event(&self, socket: &EngineSocket, event: EngineEvent) {
        let Some(client) = self.0.clients().get(&socket.sid()).cloned() else {
            return;
        };
        match event {
            EngineEvent::Text(text) => client.on_text(&text),
            EngineEvent::Binary(data) => client.on_binary(data),
            EngineEvent::Upgraded => {}
            EngineEvent::Closed(reason) => {
                self.0.clients().remove(&socket.sid());
                client.on_closed(reason);
            }
        }
    }
}

/// A Socket.IO v5 server. Cheap to clone.
///
/// ```no_run
/// use chito_socketio::socketio::{Ack, ConnectError, Data, DisconnectReason, Socket, SocketIo, State};
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// struct Auth { token: String }
///
/// #[derive(Clone)]
/// struct Greeting(&'static str);
///
/// # async fn run() -> std::io::Result<()> {
/// let io = SocketIo::builder().with_state(Greeting("hello")).build();
/// io.ns("/", |socket: Socket, State(greeting): State<Greeting>| {
///     let _ = socket.emit("welcome", greeting.0);
///     socket.on("ping", |ack: Ack| ack.send(&"pong"));
///     socket.on_disconnect(|socket: Socket, reason: DisconnectReason| {
///         println!("{} left: {reason}", socket.id());
///     });
/// });
/// // A connect middleware reading the CONNECT's auth; async ones work alike.
/// io.ns("/admin", |socket: Socket| { let _ = socket.emit("hi", "admin"); })
///     .with(|Data(auth): Data<Auth>| {
///         if auth.token == "secret" { Ok(()) } else { Err(ConnectError::new("not authorized")) }
///     });
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// io.serve(listener).await
/// # }
/// ```
#[derive(Clone)]
pub struct SocketIo {
    engine: EngineIo,
    inner: Arc<IoInner>,
}

impl std::fmt::Debug for SocketIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketIo")
            .field("config", &self.inner.config)
            .finish()
    }
}

impl SocketIo {
    /// A builder with the default settings.
    pub fn builder() -> SocketIoBuilder {
        SocketIoBuilder {
            config: SocketIoConfig::default(),
            state: StateMap::default(),
            rooms: None,
        }
    }

    /// A server with `config`.
    pub fn new(config: SocketIoConfig) -> Self {
        Self::with_parts(config, StateMap::default(), Rooms::new())
    }

    fn with_parts(config: SocketIoConfig, state: StateMap, rooms: Rooms) -> Self {
        let inner = Arc::new(IoInner {
            namespaces: Namespaces::new(
                config.max_dynamic_namespaces,
                config.connection_state_recovery.clone().map(Recovery::new),
                rooms.clone(),
            ),
            ack_ids: AckIds::new(),
            socket_ids: SidGenerator::new(),
            state,
            handler_counters: HandlerCounters::default(),
            rooms,
            clients: Mutex::new(HashMap::new()),
            config,
        });
        // The main namespace always exists, as in JS: a client may connect
        // to `/` before (or without) a handler for it.
        inner
            .namespaces
            .add(MAIN_NAMESPACE, boxed_connect_handler(|| {}));
        let engine = EngineIo::new(inner.config.engine.clone(), Bridge(Arc::clone(&inner)));
        Self { engine, inner }
    }

    /// Registers the namespace `name` (`/`, `/admin`); `handler` runs for
    /// each socket that connects to it, after its CONNECT has been
    /// answered. It is a function of [extractors](super::extract)
    /// ([`Socket`], [`Data<T>`](super::Data) from the CONNECT's auth,
    /// [`TryData<T>`](super::TryData), [`Extension<T>`](super::Extension),
    /// [`State<T>`](super::State)), sync or async; an extractor that
    /// refuses (auth that is not the `Data`'s `T`) refuses the connection
    /// with the CONNECT_ERROR `invalid auth payload`.
    /// Registering a name again replaces its handler.
    pub fn ns<H, M>(&self, name: &str, handler: H) -> NamespaceRef
    where
        H: ConnectHandler<M>,
        M: 'static,
    {
        NamespaceRef(
            self.inner
                .namespaces
                .add(name, boxed_connect_handler(handler)),
        )
    }

    /// Registers dynamic namespaces: a CONNECT to a name no static
    /// namespace has, which `matcher` accepts, creates that namespace with
    /// `handler` (as [`ns`](Self::ns)'s; JS `io.of(regex)`).
    pub fn dyn_ns<F, H, M>(&self, matcher: F, handler: H) -> DynNamespaceRef
    where
        F: Fn(&str) -> bool + Send + Sync + 'static,
        H: ConnectHandler<M>,
        M: 'static,
    {
        DynNamespaceRef(
            self.inner
                .namespaces
                .add_dynamic(Arc::new(matcher), boxed_connect_handler(handler)),
        )
    }

    /// What handlers did not do (events refused by their extractors,
    /// handlers that failed), since the server started.
    pub fn handler_stats(&self) -> HandlerStats {
        self.inner.handler_counters.snapshot()
    }

    /// The namespace `name`, if it exists.
    pub fn of(&self, name: &str) -> Option<NamespaceRef> {
        self.inner.namespaces.get(name).map(NamespaceRef)
    }

    fn main(&self) -> BroadcastOperator {
        let namespace = match self.inner.namespaces.get(MAIN_NAMESPACE) {
            Some(namespace) => namespace,
            // Registered in `new`; re-registered only if something removed it.
            None => self
                .inner
                .namespaces
                .add(MAIN_NAMESPACE, boxed_connect_handler(|| {})),
        };
        BroadcastOperator::new(namespace)
    }

    /// An emit to the sockets of `/` in `room`.
    pub fn to(&self, room: &str) -> BroadcastOperator {
        self.main().to(room)
    }

    /// An emit to the sockets of `/` not in `room`.
    pub fn except(&self, room: &str) -> BroadcastOperator {
        self.main().except(room)
    }

    /// Sends `event` with one argument to every socket of `/`.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), EmitError> {
        self.main().emit(event, data)
    }

    /// The Engine.IO layer under this server.
    pub fn engine(&self) -> &EngineIo {
        &self.engine
    }

    /// Answers one HTTP request (serve it with hyper's `with_upgrades`).
    pub async fn handle<B: RequestBody>(
        &self,
        request: Request<B>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        self.engine.handle(request).await
    }

    /// This server as a tower [`Service`](tower_service::Service), for
    /// hyper 1 and axum (`route_service("/socket.io/", io.service())`).
    pub fn service(&self) -> crate::service::SocketIoService {
        crate::service::SocketIoService::new(self.engine.clone())
    }

    /// Serves HTTP/1.1 on `listener` until it fails.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        self.engine.clone().serve(listener).await
    }
}

/// Builds a [`SocketIo`].
#[derive(Debug, Clone)]
pub struct SocketIoBuilder {
    config: SocketIoConfig,
    state: StateMap,
    rooms: Option<Rooms>,
}

impl SocketIoBuilder {
    /// The path served (`/socket.io/`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.config.engine.path = path.into();
        self
    }

    /// `pingInterval` (25 000 ms).
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.config.engine.engine.ping_interval = interval;
        self
    }

    /// `pingTimeout` (20 000 ms).
    pub fn ping_timeout(mut self, timeout: Duration) -> Self {
        self.config.engine.engine.ping_timeout = timeout;
        self
    }

    /// `maxPayload` (JS `maxHttpBufferSize`, 1 000 000 bytes); also bounds
    /// the attachments of one packet at `max_attachments × max_payload`.
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.config.engine.engine.max_payload = bytes;
        // Each attachment is one message, bounded by `max_payload`.
        self.config.binary_limits.max_attachment_bytes = self
            .config
            .binary_limits
            .max_attachments
            .saturating_mul(bytes);
        self
    }

    /// `connectTimeout` (45 000 ms).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// The default `emit_with_ack` timeout (5 000 ms).
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.config.ack_timeout = timeout;
        self
    }

    /// Answers `Access-Control-Allow-Origin: *` (JS `cors: {origin: "*"}`).
    pub fn cors_any_origin(mut self) -> Self {
        self.config.engine.cors_any_origin = true;
        self
    }

    /// Turns connection state recovery on (JS `connectionStateRecovery`;
    /// off by default): a client that lost its connection and comes back
    /// within `max_disconnection_duration` gets its socket id, rooms and
    /// the events it missed (docs/socketio.md §7).
    pub fn connection_state_recovery(mut self, recovery: RecoveryConfig) -> Self {
        self.config.connection_state_recovery = Some(recovery);
        self
    }

    /// The Engine.IO protocol settings all at once.
    pub fn engine_config(mut self, engine: EngineConfig) -> Self {
        self.config.engine.engine = engine;
        self
    }

    /// Every setting all at once.
    pub fn config(mut self, config: SocketIoConfig) -> Self {
        self.config = config;
        self
    }

    /// Gives handlers `value` through the [`State<T>`](super::State)
    /// extractor (one value per type; a second replaces the first).
    pub fn with_state<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.state.insert(value);
        self
    }

    /// The room registry the server's sockets join (docs/socketio.md §5):
    /// pass one made with `Rooms::with_backplane` to reach sockets of other
    /// nodes. Default: a registry of its own, this process only.
    pub fn rooms(mut self, rooms: Rooms) -> Self {
        self.rooms = Some(rooms);
        self
    }

    /// The server.
    pub fn build(self) -> SocketIo {
        SocketIo::with_parts(self.config, self.state, self.rooms.unwrap_or_default())
    }
}

/// A registered namespace: add middlewares, emit to its sockets.
#[derive(Clone)]
pub struct NamespaceRef(Arc<Namespace>);

impl std::fmt::Debug for NamespaceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("NamespaceRef").field(&self.0.name).finish()
    }
}

impl NamespaceRef {
    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Adds a connect middleware: it runs, in order of addition, before
    /// the socket is connected; an `Err` refuses it with a CONNECT_ERROR
    /// `{"message":…[,"data":…]}`. A middleware is a function of
    /// [extractors](super::extract) (as the connect handler's) returning
    /// `Result<(), ConnectError>`, or a future of one (awaited before the
    /// next middleware runs), or `Fn(&Socket) -> Result<(), ConnectError>`.
    pub fn with<H, M>(self, middleware: H) -> Self
    where
        H: ConnectMiddleware<M>,
        M: 'static,
    {
        self.0.add_middleware(boxed_middleware(middleware));
        self
    }

    /// An emit to the namespace's sockets in `room`.
    pub fn to(&self, room: &str) -> BroadcastOperator {
        BroadcastOperator::new(Arc::clone(&self.0)).to(room)
    }

    /// An emit to the namespace's sockets not in `room`.
    pub fn except(&self, room: &str) -> BroadcastOperator {
        BroadcastOperator::new(Arc::clone(&self.0)).except(room)
    }

    /// Sends `event` with one argument to every socket of the namespace.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), EmitError> {
        BroadcastOperator::new(Arc::clone(&self.0)).emit(event, data)
    }

    /// The sockets connected now.
    pub fn sockets(&self) -> Vec<Socket> {
        self.0.sockets()
    }
}

/// A dynamic namespace pattern: add middlewares shared by every namespace
/// it creates.
#[derive(Clone)]
pub struct DynNamespaceRef(Arc<Mutex<Vec<Middleware>>>);

impl std::fmt::Debug for DynNamespaceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynNamespaceRef").finish_non_exhaustive()
    }
}

impl DynNamespaceRef {
    /// Adds a connect middleware (as [`NamespaceRef::with`]'s) to every
    /// namespace of the pattern.
    pub fn with<H, M>(self, middleware: H) -> Self
    where
        H: ConnectMiddleware<M>,
        M: 'static,
    {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(boxed_middleware(middleware));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_payload_also_bounds_a_packets_attachments() {
        let builder = SocketIo::builder().max_payload(1_000);
        assert_eq!(builder.config.engine.engine.max_payload, 1_000);
        let limits = builder.config.binary_limits;
        assert_eq!(limits.max_attachment_bytes, limits.max_attachments * 1_000);
    }
}
