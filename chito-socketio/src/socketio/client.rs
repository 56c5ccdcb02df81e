//! One Engine.IO session seen from Socket.IO (socket.io's `Client`;
//! docs/socketio.md §4): the sockets it has in each namespace, binary
//! reassembly of its packets, the connect timeout, and the dispatch of
//! each packet to its namespace's socket.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

use super::ack::AckIds;
use super::args::Args;
use super::binary::{BinaryPacket, Reassembler};
use super::handler::MiddlewareVerdict;
use super::io::{IoInner, SocketIoConfig};
use super::namespace::{ConnectError, Middleware, Namespace};
use super::packet::{self, Packet, PacketData, Prefix};
use super::recovery::{self, Resumed};
use super::rooms::{parse_socket_id, socket_id};
use super::socket::{logged_payload, DisconnectReason, Socket};
use crate::engineio::{CloseReason, EngineSocket, Outgoing};
use chito::rooms::{Payload, Sink};
use chito::tokio::QueueError;

/// A client's Engine.IO session and its namespace sockets.
pub(crate) struct Client {
    engine: EngineSocket,
    io: Arc<IoInner>,
    state: Mutex<ClientState>,
}

struct ClientState {
    /// Namespace name → the socket connected there.
    sockets: HashMap<String, Socket>,
    reassembler: Reassembler,
    /// When the session is closed unless a namespace is connected then
    /// (`connectTimeout`; the JS client checks `nsps.size` at that time).
    connect_deadline: Instant,
    /// The task that enforces `connect_deadline`, aborted when the session
    /// closes: it would otherwise outlive the session by up to
    /// `connect_timeout` (thousands of half-open sessions, thousands of
    /// sleeping tasks).
    connect_timer: Option<tokio::task::AbortHandle>,
    closed: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each change under these locks is one map operation; a panic in
    // between leaves them usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The server's CONNECT answer payload.
#[derive(Serialize)]
struct Connected<'a> {
    sid: &'a str,
    /// With recovery on: the private session id the client sends back to
    /// resume (socket.io-protocol v5, CONNECT `{"sid","pid"}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<&'a str>,
}

/// A socket's member sink in the room registry: its Engine.IO session,
/// never reported closed. The socket leaves the registry itself, when
/// Socket.IO handles the close (`Socket::closed`, which first keeps its
/// rooms for recovery, docs/socketio.md §7); a registry that pruned the
/// closed session at the next emit would take the rooms before that.
struct SocketSink(EngineSocket);

impl Sink for SocketSink {
    fn deliver(&self, payload: &Payload) -> Result<(), QueueError> {
        match self.0.deliver(payload) {
            // Skipped like a full queue, not pruned: see above.
            Err(QueueError::Closed | QueueError::ClosedSlowConsumer) => Err(QueueError::Full),
            delivered => delivered,
        }
    }

    fn is_closed(&self) -> bool {
        false
    }
}

/// The CONNECT_ERROR for a namespace that does not exist (the reference
/// server's text, which the suite checks).
const INVALID_NAMESPACE: &str = "Invalid namespace";

impl Client {
    pub(crate) fn new(engine: EngineSocket, io: Arc<IoInner>, now: Instant) -> Arc<Self> {
        let connect_deadline = now + io.config.connect_timeout;
        let reassembler = Reassembler::new(io.config.binary_limits);
        Arc::new(Self {
            engine,
            io,
            state: Mutex::new(ClientState {
                sockets: HashMap::new(),
                reassembler,
                connect_deadline,
                connect_timer: None,
                closed: false,
            }),
        })
    }

    pub(crate) fn config(&self) -> &SocketIoConfig {
        &self.io.config
    }

    pub(crate) fn io(&self) -> &Arc<IoInner> {
        &self.io
    }

    pub(crate) fn ack_ids(&self) -> &AckIds {
        &self.io.ack_ids
    }

    /// Closes the session after `connect_timeout` if no namespace is
    /// connected by then. Runs on the tokio runtime serving the session.
    pub(crate) fn arm_connect_timeout(self: &Arc<Self>) {
        let deadline = lock(&self.state).connect_deadline;
        let client: Weak<Self> = Arc::downgrade(self);
        let timer = tokio::spawn(async move {
            tokio::time::sleep_until(deadline.into()).await;
            if let Some(client) = client.upgrade() {
                if client.connect_timed_out(Instant::now()) {
                    client.engine.close();
                }
            }
        });
        let mut state = lock(&self.state);
        if state.closed {
            timer.abort();
        } else {
            state.connect_timer = Some(timer.abort_handle());
        }
    }

    /// Whether, at `now`, the connect timeout has passed with no namespace
    /// connected.
    pub(crate) fn connect_timed_out(&self, now: Instant) -> bool {
        let state = lock(&self.state);
        !state.closed && state.sockets.is_empty() && now >= state.connect_deadline
    }

    /// Sends one packet and its attachments as Engine.IO messages, all
    /// together (the receiver takes the next N binary messages as the
    /// attachments, §4) or none. False when they were not queued.
    pub(crate) fn send_packets(&self, packets: &[Outgoing]) -> bool {
        self.engine.try_send_all(packets).is_ok()
    }

    /// Sends one encoded packet (its text with the Engine.IO `4`) and its
    /// attachments, together, moving the text into the session's queue.
    pub(crate) fn send_encoded(&self, text: String, attachments: Vec<Bytes>) -> bool {
        if attachments.is_empty() {
            return self.engine.try_send(Outgoing::Text(text)).is_ok();
        }
        let mut packets = Vec::with_capacity(1 + attachments.len());
        packets.push(Outgoing::Text(text));
        packets.extend(attachments.into_iter().map(Outgoing::Binary));
        self.send_packets(&packets)
    }

    /// Forgets the socket of `namespace` (it disconnected on its own).
    pub(crate) fn forget_socket(&self, namespace: &str) {
        lock(&self.state).sockets.remove(namespace);
    }

    /// A text message from the session (without the Engine.IO `4`).
    pub(crate) fn on_text(self: &Arc<Self>, text: &str) {
        let decoded = lock(&self.state).reassembler.on_text(text);
        match decoded {
            Ok(Some(packet)) => self.dispatch(packet, &[]),
            // A binary packet waits for its attachments.
            Ok(None) => {}
            Err(_) => self.parse_error(),
        }
    }

    /// A binary message from the session: the next attachment.
    pub(crate) fn on_binary(self: &Arc<Self>, data: Bytes) {
        let completed = lock(&self.state).reassembler.on_binary(data);
        match completed {
            Ok(Some(binary)) => self.dispatch_binary(&binary),
            Ok(None) => {}
            Err(_) => self.parse_error(),
        }
    }

    fn dispatch_binary(self: &Arc<Self>, binary: &BinaryPacket) {
        match binary.packet() {
            Ok(packet) => self.dispatch(packet, binary.attachments()),
            Err(_) => self.parse_error(),
        }
    }

    /// A packet that violates the protocol: every socket goes with `parse
    /// error` and the session is closed (socket.io-protocol; the suite's
    /// `4abc`, `42{}`, `42abc[…]`).
    fn parse_error(&self) {
        self.close_sockets(DisconnectReason::ParseError);
        // docs/socketio.md §9: the session closes as a parse error
        // (WebSocket close 1002), not as the server's own `forced close`.
        self.engine.close_with(CloseReason::ParseError);
    }

    fn dispatch(self: &Arc<Self>, packet: Packet<'_>, attachments: &[Bytes]) {
        let namespace = packet.namespace;
        match packet.data {
            PacketData::Connect(auth) => self.connect(namespace, auth),
            PacketData::Disconnect => {
                let socket = lock(&self.state).sockets.remove(namespace);
                // No answer: the session stays (the suite's next frame is
                // the ping).
                if let Some(socket) = socket {
                    socket.closed(DisconnectReason::ClientNamespaceDisconnect);
                }
            }
            PacketData::Event(event) => {
                // Packets for a namespace the client is not connected to
                // are dropped (docs/socketio.md §4).
                if let Some(socket) = self.socket(namespace) {
                    let args = Args::new(&event.args, attachments);
                    socket.receive_event(event.name.as_str(), args, event.ack_id);
                }
            }
            PacketData::Ack(ack) => {
                if let Some(socket) = self.socket(namespace) {
                    socket.receive_ack(ack.ack_id, Args::new(&ack.args, attachments));
                }
            }
            // Only a server sends CONNECT_ERROR.
            PacketData::ConnectError(_) => self.parse_error(),
        }
    }

    fn socket(&self, namespace: &str) -> Option<Socket> {
        lock(&self.state).sockets.get(namespace).cloned()
    }

    /// A CONNECT: find the namespace, run its middlewares, answer
    /// `40<nsp>,{"sid":…}` and run its connect handler, or answer
    /// CONNECT_ERROR.
    fn connect(self: &Arc<Self>, name: &str, auth: Option<&RawValue>) {
        let (already, count) = {
            let state = lock(&self.state);
            (state.sockets.get(name).cloned(), state.sockets.len())
        };
        if let Some(existing) = already {
            // A second CONNECT for a connected namespace: answered with
            // the same sid (docs/socketio.md §13.3 leaves the JS behaviour
            // to be pinned by the client tests).
            self.send_connected(name, &existing);
            return;
        }
        if count >= self.io.config.max_namespaces_per_client {
            self.send_connect_error(name, &ConnectError::new("Too many namespaces"));
            return;
        }
        let Some(namespace) = self.io.namespaces.resolve(name) else {
            self.send_connect_error(name, &ConnectError::new(INVALID_NAMESPACE));
            return;
        };
        let auth = match auth {
            Some(auth) => auth.to_owned(),
            // JS `handshake.auth` is `{}` when the client sent nothing.
            None => RawValue::from_string("{}".to_owned()).unwrap_or_default(),
        };
        let (auth, resumed) = resume(&namespace, auth);
        // The socket is a member of the server's registry, its sink this
        // session (a reference per socket); its id is derived from the
        // member id (docs/socketio.md §5). A resumed session takes its old
        // member id back (so its id, and `to(id)` from elsewhere, stay);
        // if it cannot, the socket is a fresh one. A refusal below drops
        // the membership with the socket.
        let sink = Arc::new(SocketSink(self.engine.clone()));
        let restored = resumed.and_then(|resumed| {
            let member = parse_socket_id(&resumed.sid)?;
            let membership = self.io.rooms.add_sink_as(member, sink.clone()).ok()?;
            Some((resumed, membership))
        });
        let (resumed, membership, id) = match restored {
            Some((resumed, membership)) => {
                let id = Arc::clone(&resumed.sid);
                (Some(resumed), membership, id)
            }
            None => {
                let membership = self.io.rooms.add_sink(sink);
                // The random tail: 32 bits of the keyed generator's output.
                let tail = self.io.socket_ids.next_u64() as u32;
                let id: Arc<str> = Arc::from(socket_id(membership.id(), tail));
                (None, membership, id)
            }
        };
        let socket = Socket::new(
            id,
            membership,
            Arc::clone(&namespace),
            Arc::clone(self),
            auth,
        );
        if let Some(recovery) = &namespace.recovery {
            match &resumed {
                Some(resumed) => socket.set_session(Arc::clone(&resumed.pid), true),
                None => socket.set_session(recovery.shared().next_pid(), false),
            }
        }
        let skip_middlewares = resumed.is_some()
            && namespace
                .recovery
                .as_ref()
                .is_some_and(|recovery| recovery.shared().config().skip_middlewares);
        let middlewares = if skip_middlewares {
            Vec::new()
        } else {
            namespace.middlewares()
        };
        self.run_middlewares(namespace, socket, resumed, middlewares, 0);
    }

    /// Runs the middlewares from `next` on, in order; the first refusal
    /// answers CONNECT_ERROR. An async one is awaited on a task of its own
    /// before the rest run (packets for the namespace meanwhile are
    /// dropped: the socket is not connected yet, and the clients buffer
    /// their emits until `connect`).
    fn run_middlewares(
        self: &Arc<Self>,
        namespace: Arc<Namespace>,
        socket: Socket,
        resumed: Option<Resumed>,
        middlewares: Vec<Middleware>,
        next: usize,
    ) {
        for (index, middleware) in middlewares.iter().enumerate().skip(next) {
            match middleware(&socket) {
                MiddlewareVerdict::Ready(Ok(())) => {}
                MiddlewareVerdict::Ready(Err(refusal)) => {
                    self.send_connect_error(&namespace.name, &refusal);
                    return;
                }
                MiddlewareVerdict::Pending(verdict) => {
                    let client = Arc::clone(self);
                    tokio::spawn(async move {
                        match verdict.await {
                            Ok(()) => client.run_middlewares(
                                namespace,
                                socket,
                                resumed,
                                middlewares,
                                index + 1,
                            ),
                            Err(refusal) => client.send_connect_error(&namespace.name, &refusal),
                        }
                    });
                    return;
                }
            }
        }
        self.finish_connect(&namespace, socket, resumed.as_ref());
    }

    /// The middlewares accepted the socket: the connect handler's
    /// extractors run (a refusal answers CONNECT_ERROR), then the socket
    /// is connected and the CONNECT answered, then the handler runs.
    fn finish_connect(
        &self,
        namespace: &Arc<Namespace>,
        socket: Socket,
        resumed: Option<&Resumed>,
    ) {
        let name: &str = &namespace.name;
        let mut connected = false;
        let mut connect = || {
            let existing = {
                let mut state = lock(&self.state);
                if state.closed {
                    return false;
                }
                match state.sockets.get(name) {
                    Some(existing) => Some(existing.clone()),
                    None => {
                        state.sockets.insert(name.to_owned(), socket.clone());
                        // The first namespace connected: the timeout is
                        // over for good (socket.io's Client clears it in
                        // `doConnect`), and its task goes now.
                        if let Some(timer) = state.connect_timer.take() {
                            timer.abort();
                        }
                        None
                    }
                }
            };
            if let Some(existing) = existing {
                // A second CONNECT whose async middlewares finished after
                // the first's: answered as `connect` answers one that
                // arrives later, with the connected socket's id.
                self.send_connected(name, &existing);
                return false;
            }
            socket.mark_connected();
            match (resumed, &namespace.recovery) {
                (Some(resumed), Some(recovery)) => {
                    // No logged emit of the namespace runs meanwhile: each
                    // is either among the missed packets (logged before)
                    // or delivered live after them (the socket is in its
                    // rooms by then), never both (docs/socketio.md §7).
                    let _ordered = recovery.ordered();
                    namespace.insert_socket(socket.clone());
                    socket.join_namespace();
                    for room in &resumed.rooms {
                        socket.join(room);
                    }
                    self.send_connected(name, &socket);
                    let missed = recovery.missed(&resumed.sid, &resumed.rooms, resumed.after);
                    for packet in &missed.packets {
                        if socket.deliver(logged_payload(packet)).is_err() {
                            break;
                        }
                    }
                }
                _ => {
                    namespace.insert_socket(socket.clone());
                    socket.join_namespace();
                    // The CONNECT answer precedes anything the handler
                    // emits (the suite reads `40{"sid"}` and then
                    // `42["auth",…]`); the Engine.IO WebSocket writer
                    // sends it apart (`EngineSocket::try_send_apart`).
                    self.send_connected(name, &socket);
                }
            }
            connected = true;
            true
        };
        let handled = (namespace.handler())(&socket, &mut connect);
        if let Err(refusal) = handled {
            self.io.handler_counters.refused_connect();
            self.send_connect_error(name, &refusal.connect_error());
        }
    }

    fn send_connected(&self, namespace: &str, socket: &Socket) {
        let mut text = String::new();
        let connected = Connected {
            sid: socket.id(),
            pid: socket.pid().map(|pid| &**pid),
        };
        if packet::encode_connect(
            &mut text,
            Prefix::EngineIoMessage,
            namespace,
            Some(&connected),
        )
        .is_ok()
        {
            // Apart from what the connect handler emits next (clients add
            // their listeners on this answer; `EngineSocket::try_send_apart`).
            let _ = self.engine.try_send_apart(Outgoing::Text(text));
        }
    }

    fn send_connect_error(&self, namespace: &str, error: &ConnectError) {
        let mut text = String::new();
        // A namespace name that cannot be written back (one with a `,`
        // cannot be, as it ended at the comma) gets no answer.
        if packet::encode_connect_error(&mut text, Prefix::EngineIoMessage, namespace, error)
            .is_ok()
        {
            self.send_packets(&[Outgoing::Text(text)]);
        }
    }

    /// The session closed: every socket goes with the session's reason.
    pub(crate) fn on_closed(&self, reason: CloseReason) {
        self.close_sockets(match reason {
            CloseReason::TransportClose => DisconnectReason::TransportClose,
            CloseReason::TransportError => DisconnectReason::TransportError,
            CloseReason::PingTimeout => DisconnectReason::PingTimeout,
            CloseReason::ParseError => DisconnectReason::ParseError,
            CloseReason::ForcedClose => DisconnectReason::ForcedClose,
            CloseReason::ServerShutdown => DisconnectReason::ServerShuttingDown,
        });
    }

    fn close_sockets(&self, reason: DisconnectReason) {
        let sockets: Vec<Socket> = {
            let mut state = lock(&self.state);
            state.closed = true;
            if let Some(timer) = state.connect_timer.take() {
                timer.abort();
            }
            state.sockets.drain().map(|(_, socket)| socket).collect()
        };
        for socket in sockets {
            socket.closed(reason);
        }
    }
}

/// With recovery on: the auth without the client's `pid` and `offset`,
/// and the session they resume, if it is still kept and the offset still
/// logged (socket.io's `Namespace._createSocket`); any other case is a
/// fresh socket.
fn resume(namespace: &Namespace, auth: Box<RawValue>) -> (Box<RawValue>, Option<Resumed>) {
    let Some(recovery) = &namespace.recovery else {
        return (auth, None);
    };
    let (auth, credentials) = recovery::split_auth(auth);
    let resumed = credentials.and_then(|credentials| {
        recovery.take_session(&credentials.pid, &credentials.offset, Instant::now())
    });
    (auth, resumed)
}
