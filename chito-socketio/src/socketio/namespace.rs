//! Namespaces (socket.io-protocol, "Namespace"; docs/socketio.md §4):
//! static ones registered by name, dynamic ones created on a client's
//! CONNECT when a matcher accepts the name; each with its connect
//! handler, its connect middlewares (which may refuse with CONNECT_ERROR)
//! and the sockets and rooms living in it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use serde::Serialize;
use serde_json::value::RawValue;

use chito::rooms::Rooms;

use super::extract::Rejection;
use super::handler::{ConnectHandler, ConnectMiddleware, MiddlewareVerdict};
use super::recovery::{NamespaceRecovery, Recovery};
use super::socket::Socket;

/// What runs when a socket connects to a namespace: its extractors (a
/// refusal is answered with a CONNECT_ERROR), then `connect()` (the
/// CONNECT answered; false if the session closed meanwhile), then the
/// handler.
pub(crate) type BoxedConnectHandler =
    Arc<dyn Fn(&Socket, &mut dyn FnMut() -> bool) -> Result<(), Rejection> + Send + Sync>;

/// A connect middleware: runs before the socket is connected; an `Err`
/// refuses the connection with a CONNECT_ERROR.
pub(crate) type Middleware = Arc<dyn Fn(&Socket) -> MiddlewareVerdict + Send + Sync>;

/// Boxes a connect handler.
pub(crate) fn boxed_connect_handler<H, M>(handler: H) -> BoxedConnectHandler
where
    H: ConnectHandler<M>,
    M: 'static,
{
    Arc::new(move |socket: &Socket, connect: &mut dyn FnMut() -> bool| {
        handler.call(socket, connect)
    })
}

/// Boxes a connect middleware.
pub(crate) fn boxed_middleware<H, M>(middleware: H) -> Middleware
where
    H: ConnectMiddleware<M>,
    M: 'static,
{
    Arc::new(move |socket: &Socket| middleware.call(socket))
}

/// Why a connect middleware refused a socket: sent to the client as the
/// CONNECT_ERROR payload `{"message":…[,"data":…]}` (socket.io-protocol,
/// "Connection to a namespace"), which the JS client turns into a
/// `connect_error` whose `message` and `data` are these.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectError {
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Box<RawValue>>,
}

impl ConnectError {
    /// A refusal with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            data: None,
        }
    }

    /// Adds `data` (the JS client's `err.data`). A value that does not
    /// serialize is left out.
    pub fn with_data<T: Serialize + ?Sized>(mut self, data: &T) -> Self {
        self.data = serde_json::value::to_raw_value(data).ok();
        self
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConnectError {}

/// One namespace: its handler, middlewares, sockets and rooms.
pub(crate) struct Namespace {
    pub(crate) name: Arc<str>,
    handler: RwLock<BoxedConnectHandler>,
    /// Shared with the dynamic namespace that created this one, so a
    /// middleware added to the pattern applies to every child.
    middlewares: Arc<Mutex<Vec<Middleware>>>,
    sockets: Mutex<HashMap<Arc<str>, Socket>>,
    /// The server's room registry (docs/socketio.md §5): this namespace's
    /// rooms are its keys `<nsp>\u{1f}<room>` and `<nsp>`.
    pub(crate) rooms: Rooms,
    /// Its event log and disconnected sessions, with recovery on.
    pub(crate) recovery: Option<NamespaceRecovery>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A handler that panicked left the maps consistent (each change is
    // one insert or remove); keep serving.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Namespace {
    fn new(
        name: &str,
        handler: BoxedConnectHandler,
        middlewares: Arc<Mutex<Vec<Middleware>>>,
        recovery: Option<&Arc<Recovery>>,
        rooms: Rooms,
    ) -> Self {
        Self {
            recovery: recovery.map(|shared| NamespaceRecovery::new(Arc::clone(shared))),
            name: Arc::from(name),
            handler: RwLock::new(handler),
            middlewares,
            sockets: Mutex::new(HashMap::new()),
            rooms,
        }
    }

    pub(crate) fn handler(&self) -> BoxedConnectHandler {
        Arc::clone(
            &self
                .handler
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    fn set_handler(&self, handler: BoxedConnectHandler) {
        *self
            .handler
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = handler;
    }

    pub(crate) fn middlewares(&self) -> Vec<Middleware> {
        lock(&self.middlewares).clone()
    }

    pub(crate) fn add_middleware(&self, middleware: Middleware) {
        lock(&self.middlewares).push(middleware);
    }

    pub(crate) fn insert_socket(&self, socket: Socket) {
        lock(&self.sockets).insert(socket.id_arc(), socket);
    }

    pub(crate) fn remove_socket(&self, id: &str) {
        lock(&self.sockets).remove(id);
    }

    pub(crate) fn socket(&self, id: &str) -> Option<Socket> {
        lock(&self.sockets).get(id).cloned()
    }

    pub(crate) fn sockets(&self) -> Vec<Socket> {
        lock(&self.sockets).values().cloned().collect()
    }
}

/// A pattern of dynamic namespaces (the JS server's `io.of(regex)`).
struct DynamicNamespace {
    matcher: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    handler: BoxedConnectHandler,
    middlewares: Arc<Mutex<Vec<Middleware>>>,
}

/// Every namespace of a server.
pub(crate) struct Namespaces {
    by_name: RwLock<HashMap<String, Arc<Namespace>>>,
    dynamic: RwLock<Vec<Arc<DynamicNamespace>>>,
    dynamic_created: Mutex<usize>,
    max_dynamic: usize,
    recovery: Option<Arc<Recovery>>,
    /// The server's room registry, shared by every namespace.
    rooms: Rooms,
}

/// The longest namespace name accepted (docs/socketio.md §4).
const MAX_NAME_BYTES: usize = 256;

impl Namespaces {
    pub(crate) fn new(max_dynamic: usize, recovery: Option<Arc<Recovery>>, rooms: Rooms) -> Self {
        Self {
            recovery,
            by_name: RwLock::new(HashMap::new()),
            dynamic: RwLock::new(Vec::new()),
            dynamic_created: Mutex::new(0),
            max_dynamic,
            rooms,
        }
    }

    /// Registers `name` with `handler`, or gives an existing one the new
    /// handler (its middlewares and sockets stay).
    pub(crate) fn add(&self, name: &str, handler: BoxedConnectHandler) -> Arc<Namespace> {
        let mut by_name = self
            .by_name
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(existing) = by_name.get(name) {
            existing.set_handler(handler);
            return Arc::clone(existing);
        }
        let namespace = Arc::new(Namespace::new(
            name,
            handler,
            Arc::new(Mutex::new(Vec::new())),
            self.recovery.as_ref(),
            self.rooms.clone(),
        ));
        by_name.insert(name.to_owned(), Arc::clone(&namespace));
        namespace
    }

    /// Registers a dynamic pattern; returns its middleware list.
    pub(crate) fn add_dynamic(
        &self,
        matcher: Arc<dyn Fn(&str) -> bool + Send + Sync>,
        handler: BoxedConnectHandler,
    ) -> Arc<Mutex<Vec<Middleware>>> {
        let middlewares = Arc::new(Mutex::new(Vec::new()));
        self.dynamic
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(Arc::new(DynamicNamespace {
                matcher,
                handler,
                middlewares: Arc::clone(&middlewares),
            }));
        middlewares
    }

    /// The namespace `name`, if registered.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<Namespace>> {
        self.by_name
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(name)
            .cloned()
    }

    /// The namespace a client's CONNECT names: a registered one, or a new
    /// child of the first dynamic pattern accepting the name. `None`:
    /// `Invalid namespace` (unknown, malformed, or past
    /// `max_dynamic_namespaces`).
    pub(crate) fn resolve(&self, name: &str) -> Option<Arc<Namespace>> {
        if let Some(found) = self.get(name) {
            return Some(found);
        }
        // A name too long or with control characters is refused before any
        // matcher sees it (docs/socketio.md §4); room keys rely on it.
        if name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) {
            return None;
        }
        let pattern = self
            .dynamic
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .find(|pattern| (pattern.matcher)(name))
            .cloned()?;
        let mut by_name = self
            .by_name
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Another client may have created it meanwhile.
        if let Some(found) = by_name.get(name) {
            return Some(Arc::clone(found));
        }
        let mut created = lock(&self.dynamic_created);
        if *created >= self.max_dynamic {
            return None;
        }
        *created += 1;
        let namespace = Arc::new(Namespace::new(
            name,
            Arc::clone(&pattern.handler),
            Arc::clone(&pattern.middlewares),
            self.recovery.as_ref(),
            self.rooms.clone(),
        ));
        by_name.insert(name.to_owned(), Arc::clone(&namespace));
        Some(namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop() -> BoxedConnectHandler {
        boxed_connect_handler(|| {})
    }

    #[test]
    fn static_names_resolve_and_unknown_ones_do_not() {
        let namespaces = Namespaces::new(4, None, Rooms::new());
        namespaces.add("/custom", noop());
        assert!(namespaces.resolve("/custom").is_some());
        assert!(namespaces.resolve("/random").is_none());
    }

    #[test]
    fn dynamic_names_are_created_once_and_bounded() {
        let namespaces = Namespaces::new(2, None, Rooms::new());
        namespaces.add_dynamic(Arc::new(|name: &str| name.starts_with("/team-")), noop());
        let a = namespaces.resolve("/team-a").expect("matches");
        let again = namespaces.resolve("/team-a").expect("exists");
        assert!(Arc::ptr_eq(&a, &again));
        assert!(namespaces.resolve("/team-b").is_some());
        assert!(namespaces.resolve("/team-c").is_none(), "past the bound");
        assert!(namespaces.resolve("/other").is_none());
    }

    #[test]
    fn malformed_names_never_reach_a_matcher() {
        let namespaces = Namespaces::new(8, None, Rooms::new());
        namespaces.add_dynamic(Arc::new(|_: &str| true), noop());
        assert!(namespaces.resolve("/a\u{1f}b").is_none());
        assert!(namespaces
            .resolve(&format!("/{}", "x".repeat(300)))
            .is_none());
        assert!(namespaces.resolve("/ok").is_some());
    }

    #[test]
    fn connect_error_payload_is_the_reference_shape() {
        let plain = serde_json::to_string(&ConnectError::new("nope")).unwrap();
        assert_eq!(plain, r#"{"message":"nope"}"#);
        let with_data =
            serde_json::to_string(&ConnectError::new("nope").with_data(&[1, 2])).unwrap();
        assert_eq!(with_data, r#"{"message":"nope","data":[1,2]}"#);
    }
}
