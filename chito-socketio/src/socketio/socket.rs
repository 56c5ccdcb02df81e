//! [`Socket`]: one client in one namespace (socket.io-protocol, "Socket";
//! docs/socketio.md §8): its event handlers, emits (with or without an
//! ack), rooms and disconnection.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use super::ack::{AckFuture, PendingAcks};
use super::args::Args;
use super::binary;
use super::broadcast::BroadcastOperator;
use super::client::Client;
use super::extract::{EventParts, Extensions};
use super::handler::{DisconnectHandler, EventHandler};
use super::io::IoInner;
use super::namespace::Namespace;
use super::packet::{self, EncodeError, Prefix};
use super::recovery::{LoggedPacket, Selection};
use super::rooms::room_key;
use crate::engineio::Outgoing;
use chito::rooms::{MemberId, Membership, Payload, Select, SharedBatch};
use chito::SharedMessage;

/// One encoded Socket.IO packet as the payload of an emit, each message
/// encoded once for every session it goes to: the text (`4` included),
/// then each attachment as a binary message (socket.io-protocol, "Packet
/// encoding"), as one batch so they arrive together.
///
/// Always a batch, even of one message: the sessions' Engine.IO form is
/// cached in the payload's slot and holds its messages, and a single
/// message's slot is inside the message itself — a cycle that would never
/// be freed. A batch's slot is the batch's, which nothing cached refers to.
pub(crate) fn payload(text: String, attachments: &[Bytes]) -> Payload {
    let text = SharedMessage::text(text);
    let mut messages = Vec::with_capacity(1 + attachments.len());
    messages.push(text);
    messages.extend(
        attachments
            .iter()
            .map(|attachment| SharedMessage::new(chito::Message::Binary(attachment))),
    );
    Payload::Batch(SharedBatch::new(messages))
}

/// The payload of a logged emit: its text with the recovery offset spliced
/// in (one copy of the text per emit, not per member).
pub(crate) fn logged_payload(packet: &LoggedPacket) -> Payload {
    payload(packet.text.to_string(), &packet.attachments)
}

/// Why a socket disconnected; [`as_str`](Self::as_str) gives the JS
/// server's strings, which applications compare against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client closed its connection (or it went away).
    TransportClose,
    /// The client broke a transport rule.
    TransportError,
    /// The client did not answer a ping in time.
    PingTimeout,
    /// The client sent a packet that does not decode.
    ParseError,
    /// The server closed the client's Engine.IO session.
    ForcedClose,
    /// The server is shutting down.
    ServerShuttingDown,
    /// The client left the namespace (a DISCONNECT packet).
    ClientNamespaceDisconnect,
    /// The server disconnected the socket ([`Socket::disconnect`]).
    ServerNamespaceDisconnect,
}

impl DisconnectReason {
    /// The JS server's name of the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TransportClose => "transport close",
            Self::TransportError => "transport error",
            Self::PingTimeout => "ping timeout",
            Self::ParseError => "parse error",
            Self::ForcedClose => "forced close",
            Self::ServerShuttingDown => "server shutting down",
            Self::ClientNamespaceDisconnect => "client namespace disconnect",
            Self::ServerNamespaceDisconnect => "server namespace disconnect",
        }
    }

    /// Whether a socket gone for this reason keeps its session for
    /// connection state recovery: socket.io's
    /// `RECOVERABLE_DISCONNECT_REASONS` (a broken or closed transport, a
    /// missed heartbeat, the server's own close or shutdown). Leaving or
    /// being removed from the namespace on purpose, and a protocol
    /// violation, are final.
    pub(crate) fn is_recoverable(self) -> bool {
        matches!(
            self,
            Self::TransportClose
                | Self::TransportError
                | Self::PingTimeout
                | Self::ForcedClose
                | Self::ServerShuttingDown
        )
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an emit was not sent.
#[derive(Debug)]
pub enum EmitError {
    /// The socket is disconnected.
    Closed,
    /// The arguments did not serialize into a packet.
    Encode(EncodeError),
    /// Too many `emit_with_ack` unanswered (`max_pending_acks`).
    TooManyAcks,
}

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("the socket is disconnected"),
            Self::Encode(e) => write!(f, "cannot encode the packet: {e}"),
            Self::TooManyAcks => f.write_str("too many acks pending"),
        }
    }
}

impl std::error::Error for EmitError {}

impl From<EncodeError> for EmitError {
    fn from(e: EncodeError) -> Self {
        Self::Encode(e)
    }
}

/// An event handler, its extractors included.
type BoxedEventHandler = Arc<dyn Fn(EventParts<'_>) + Send + Sync>;
type BoxedDisconnectHandler = Arc<dyn Fn(&Socket, DisconnectReason) + Send + Sync>;

/// One client connected to one namespace. Cheap to clone (a reference).
#[derive(Clone)]
pub struct Socket(Arc<SocketInner>);

struct SocketInner {
    id: Arc<str>,
    /// The socket as a member of the server's room registry (its id is
    /// derived from it, docs/socketio.md §5).
    member: MemberId,
    /// Dropped when the socket closes: it leaves every room.
    membership: Mutex<Option<Membership>>,
    namespace: Arc<Namespace>,
    client: Arc<Client>,
    auth: Box<RawValue>,
    connected: AtomicBool,
    handlers: Mutex<HashMap<String, BoxedEventHandler>>,
    disconnect_handlers: Mutex<Vec<BoxedDisconnectHandler>>,
    /// Typed values local to this process ([`Socket::extensions`]).
    extensions: Extensions,
    /// `socket.data`: the application's serializable value, as JSON
    /// ([`Socket::set_data`]); the seam for presence across nodes.
    data: Mutex<Option<Box<RawValue>>>,
    acks: Mutex<PendingAcks<oneshot::Sender<Args>>>,
    /// With recovery on: the private session id, and whether the socket
    /// resumed a session (docs/socketio.md §7).
    session: OnceLock<(Arc<str>, bool)>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking handler leaves these maps consistent; keep serving.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.0.id)
            .field("namespace", &self.0.namespace.name)
            .finish()
    }
}

impl Socket {
    pub(crate) fn new(
        id: Arc<str>,
        membership: Membership,
        namespace: Arc<Namespace>,
        client: Arc<Client>,
        auth: Box<RawValue>,
    ) -> Self {
        let max_pending = client.config().max_pending_acks;
        Self(Arc::new(SocketInner {
            id,
            member: membership.id(),
            membership: Mutex::new(Some(membership)),
            namespace,
            client,
            auth,
            connected: AtomicBool::new(false),
            handlers: Mutex::new(HashMap::new()),
            disconnect_handlers: Mutex::new(Vec::new()),
            extensions: Extensions::default(),
            data: Mutex::new(None),
            acks: Mutex::new(PendingAcks::new(max_pending)),
            session: OnceLock::new(),
        }))
    }

    /// With recovery on, before it connects: its private session id and
    /// whether it resumes one.
    pub(crate) fn set_session(&self, pid: Arc<str>, recovered: bool) {
        let _ = self.0.session.set((pid, recovered));
    }

    /// The private session id (`pid`), with recovery on.
    pub(crate) fn pid(&self) -> Option<&Arc<str>> {
        self.0.session.get().map(|(pid, _)| pid)
    }

    /// Whether this socket resumed a disconnected session (connection
    /// state recovery, docs/socketio.md §7): same id and rooms as before,
    /// and the events it missed were delivered before any emitted since.
    /// Always false with recovery off (JS `socket.recovered`).
    pub fn recovered(&self) -> bool {
        self.0
            .session
            .get()
            .is_some_and(|(_, recovered)| *recovered)
    }

    /// The socket's id (public: other clients may learn it; it is not the
    /// Engine.IO session id, which is a secret).
    pub fn id(&self) -> &str {
        &self.0.id
    }

    pub(crate) fn id_arc(&self) -> Arc<str> {
        Arc::clone(&self.0.id)
    }

    /// The socket's member id in the server's room registry.
    pub(crate) fn member(&self) -> MemberId {
        self.0.member
    }

    /// The namespace's name (`/`, `/custom`).
    pub fn ns(&self) -> &str {
        &self.0.namespace.name
    }

    /// The CONNECT packet's payload (`handshake.auth` in JS): the client's
    /// JSON as received, `{}` when it sent none.
    pub fn auth(&self) -> &RawValue {
        &self.0.auth
    }

    /// Whether the socket is connected.
    pub fn connected(&self) -> bool {
        self.0.connected.load(Ordering::Acquire)
    }

    pub(crate) fn mark_connected(&self) {
        self.0.connected.store(true, Ordering::Release);
    }

    /// The server this socket belongs to.
    pub(crate) fn io(&self) -> &Arc<IoInner> {
        self.0.client.io()
    }

    /// Handles the event `event` with `handler`, a function of
    /// [extractors](super::extract) in any order ([`Socket`],
    /// [`Data<T>`](super::Data), [`TryData<T>`](super::TryData), [`Args`],
    /// [`Bin`](super::Bin), [`Ack`], [`Event`](super::Event),
    /// [`Extension<T>`](super::Extension), [`State<T>`](super::State)).
    ///
    /// A sync handler runs on the task that received the packet, so it
    /// should not block; an async one (returning a future) is spawned. An
    /// extractor that refuses (a payload that is not the `Data`'s `T`)
    /// drops the event, counted in [`HandlerStats`](super::HandlerStats).
    /// A second handler for the same event replaces the first.
    ///
    /// ```no_run
    /// use chito_socketio::socketio::{Ack, Args, Data, Socket, SocketIo};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Deserialize, Serialize)]
    /// struct ChatMsg { room: String, text: String }
    ///
    /// let io = SocketIo::builder().build();
    /// io.ns("/", |socket: Socket| {
    ///     // Sync: runs inline.
    ///     socket.on("join", |socket: Socket, Data(room): Data<String>| {
    ///         socket.join(&room);
    ///     });
    ///     // Async: spawned; `?` counts a failure.
    ///     socket.on("chat", |socket: Socket, Data(msg): Data<ChatMsg>, ack: Ack| async move {
    ///         socket.within(&msg.room).emit("chat", &msg)?;
    ///         ack.send(&"ok")
    ///     });
    ///     // The raw arguments, attachments included, echoed as received.
    ///     socket.on("echo", |socket: Socket, args: Args| {
    ///         let _ = socket.emit_args("echo", &args);
    ///     });
    /// });
    /// ```
    pub fn on<H, M>(&self, event: impl Into<String>, handler: H)
    where
        H: EventHandler<M>,
        M: 'static,
    {
        let handler: BoxedEventHandler = Arc::new(move |parts| handler.call(parts));
        lock(&self.0.handlers).insert(event.into(), handler);
    }

    /// Runs `handler` once when the socket disconnects: a function of
    /// [`Socket`], [`DisconnectReason`], [`Extension<T>`](super::Extension)
    /// and [`State<T>`](super::State), sync or async.
    pub fn on_disconnect<H, M>(&self, handler: H)
    where
        H: DisconnectHandler<M>,
        M: 'static,
    {
        let handler: BoxedDisconnectHandler =
            Arc::new(move |socket: &Socket, reason| handler.call(socket, reason));
        lock(&self.0.disconnect_handlers).push(handler);
    }

    /// Typed values attached to this socket, local to this process (a
    /// user record a middleware found): read in handlers with
    /// [`Extension<T>`](super::Extension).
    pub fn extensions(&self) -> &Extensions {
        &self.0.extensions
    }

    /// Sets `socket.data`: a serializable value describing the socket,
    /// kept as JSON (what other nodes will see of it).
    pub fn set_data<T: Serialize + ?Sized>(&self, data: &T) -> Result<(), serde_json::Error> {
        let raw = serde_json::value::to_raw_value(data)?;
        *lock(&self.0.data) = Some(raw);
        Ok(())
    }

    /// `socket.data` as a `T`: `Ok(None)` when none was set.
    pub fn data<T: DeserializeOwned>(&self) -> Result<Option<T>, serde_json::Error> {
        match lock(&self.0.data).as_deref() {
            Some(raw) => serde_json::from_str(raw.get()).map(Some),
            None => Ok(None),
        }
    }

    /// `socket.data` as its JSON text.
    pub fn data_json(&self) -> Option<Box<RawValue>> {
        lock(&self.0.data).clone()
    }

    /// Sends `event` with one argument, `data`.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), EmitError> {
        self.emit_args(event, &(data,))
    }

    /// Sends `event` with `args` as its arguments: a tuple, slice or `Vec`
    /// gives one argument per element, `&()` none, and received [`Args`]
    /// go on as they came (attachments included).
    pub fn emit_args<A: Serialize + ?Sized>(&self, event: &str, args: &A) -> Result<(), EmitError> {
        self.send_event(event, args, None)
    }

    /// Sends `event` with one argument and waits for the client's ack, for
    /// at most the server's `ack_timeout`.
    pub fn emit_with_ack<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> Result<AckFuture, EmitError> {
        let timeout = self.0.client.config().ack_timeout;
        self.emit_with_ack_timeout(event, &(data,), timeout)
    }

    /// Sends `event` with `args` (as [`emit_args`](Self::emit_args)) and
    /// waits for the client's ack for at most `timeout`.
    pub fn emit_with_ack_timeout<A: Serialize + ?Sized>(
        &self,
        event: &str,
        args: &A,
        timeout: Duration,
    ) -> Result<AckFuture, EmitError> {
        if !self.connected() {
            return Err(EmitError::Closed);
        }
        let id = self.0.client.ack_ids().next_id();
        let now = Instant::now();
        let deadline = now + timeout;
        let (sender, receiver) = oneshot::channel();
        lock(&self.0.acks)
            .insert(id, deadline, sender, now)
            .map_err(|_| EmitError::TooManyAcks)?;
        if let Err(e) = self.send_event(event, args, Some(id)) {
            lock(&self.0.acks).remove(id);
            return Err(e);
        }
        Ok(AckFuture::new(receiver, deadline))
    }

    fn send_event<A: Serialize + ?Sized>(
        &self,
        event: &str,
        args: &A,
        ack_id: Option<u64>,
    ) -> Result<(), EmitError> {
        if !self.connected() {
            return Err(EmitError::Closed);
        }
        let mut text = String::new();
        let attachments = binary::encode_event(
            &mut text,
            Prefix::EngineIoMessage,
            self.ns(),
            event,
            args,
            ack_id,
        )?;
        // socket.io: with recovery on, an event without ack to one socket
        // is logged as an emit to that socket alone.
        if let (Some(recovery), None) = (&self.0.namespace.recovery, ack_id) {
            let selection = Selection::socket(self.id_arc());
            return recovery.log_and_send(text, attachments, selection, Instant::now(), |packet| {
                self.deliver(logged_payload(packet))
            });
        }
        self.send_direct(text, attachments)
    }

    /// Sends one encoded packet straight to this socket's session: an emit
    /// to one socket (or an ack) selects nothing, so it skips the room
    /// registry and its shared payload (a text, a batch and their cache per
    /// event; the session queue they reach is the same, in call order).
    pub(crate) fn send_direct(
        &self,
        text: String,
        attachments: Vec<Bytes>,
    ) -> Result<(), EmitError> {
        if self.0.client.send_encoded(text, attachments) {
            Ok(())
        } else {
            Err(EmitError::Closed)
        }
    }

    /// Sends one encoded packet to this socket through the room registry,
    /// as a one-member selection: the same path as a room emit
    /// (docs/socketio.md §6).
    pub(crate) fn deliver(&self, payload: Payload) -> Result<(), EmitError> {
        let select = Select {
            members: vec![self.0.member],
            ..Select::default()
        };
        let report = self.0.namespace.rooms.emit_select(&select, payload);
        if report.delivered > 0 {
            Ok(())
        } else {
            Err(EmitError::Closed)
        }
    }

    /// Sends packets straight to the socket's session (the DISCONNECT),
    /// all together or none.
    fn send_packets(&self, packets: &[Outgoing]) -> Result<(), EmitError> {
        if self.0.client.send_packets(packets) {
            Ok(())
        } else {
            Err(EmitError::Closed)
        }
    }

    /// Puts the socket in its namespace's room (every socket of the
    /// namespace is: `io.of(nsp).emit` and `broadcast()` target it).
    pub(crate) fn join_namespace(&self) {
        self.0.namespace.rooms.join(
            self.0.member,
            &super::rooms::namespace_key(&self.0.namespace.name),
        );
    }

    /// The client's answer to one of our `emit_with_ack`.
    pub(crate) fn receive_ack(&self, id: u64, args: Args) {
        let waiter = lock(&self.0.acks).take(id, Instant::now());
        // No waiter: unknown id or answered after the timeout; dropped, not
        // an error (docs/socketio.md §4). A waiter that gave up: ignored.
        if let Some(waiter) = waiter {
            let _ = waiter.send(args);
        }
    }

    /// Runs the handler of a received event.
    pub(crate) fn receive_event(&self, name: &str, args: Args, ack_id: Option<u64>) {
        let handler = lock(&self.0.handlers).get(name).cloned();
        // An event without a handler is dropped, as in JS.
        if let Some(handler) = handler {
            handler(EventParts::new(self, name, args, ack_id));
        }
    }

    /// Adds the socket to `room` of its namespace.
    pub fn join(&self, room: &str) {
        let key = room_key(self.ns(), room);
        self.0.namespace.rooms.join(self.0.member, &key);
    }

    /// Removes the socket from `room`.
    pub fn leave(&self, room: &str) {
        let key = room_key(self.ns(), room);
        self.0.namespace.rooms.leave(self.0.member, &key);
    }

    /// The rooms the socket is in.
    pub fn rooms(&self) -> Vec<String> {
        let namespace = self.ns();
        self.0
            .namespace
            .rooms
            .rooms_of(self.0.member)
            .iter()
            .filter_map(|key| super::rooms::room_of_key(namespace, key))
            .map(str::to_owned)
            .collect()
    }

    /// An emit to the sockets in `room`, except this one (JS
    /// `socket.to(room)`).
    pub fn to(&self, room: &str) -> BroadcastOperator {
        BroadcastOperator::new(Arc::clone(&self.0.namespace))
            .except_socket(self.0.member, self.id_arc())
            .to(room)
    }

    /// An emit to the sockets in `room`, this one included (JS
    /// `io.in(room)` from a socket).
    pub fn within(&self, room: &str) -> BroadcastOperator {
        BroadcastOperator::new(Arc::clone(&self.0.namespace)).to(room)
    }

    /// An emit to every socket of the namespace but this one, except those
    /// in `room` (JS `socket.except(room)`).
    pub fn except(&self, room: &str) -> BroadcastOperator {
        BroadcastOperator::new(Arc::clone(&self.0.namespace))
            .except_socket(self.0.member, self.id_arc())
            .except(room)
    }

    /// An emit to every socket of the namespace but this one (JS
    /// `socket.broadcast`).
    pub fn broadcast(&self) -> BroadcastOperator {
        BroadcastOperator::new(Arc::clone(&self.0.namespace))
            .except_socket(self.0.member, self.id_arc())
    }

    /// Disconnects the socket from its namespace: the client gets a
    /// DISCONNECT (`server namespace disconnect`); its Engine.IO session
    /// stays for its other namespaces.
    pub fn disconnect(&self) {
        if !self.connected() {
            return;
        }
        let mut text = String::new();
        if packet::encode_disconnect(&mut text, Prefix::EngineIoMessage, self.ns()).is_ok() {
            let _ = self.send_packets(&[Outgoing::Text(text)]);
        }
        self.0.client.forget_socket(self.ns());
        self.closed(DisconnectReason::ServerNamespaceDisconnect);
    }

    /// The socket is gone: leave the namespace and its rooms, fail the
    /// pending acks, run the disconnect handlers once. Handlers are dropped
    /// afterwards, which also breaks the cycles of handlers holding clones
    /// of their socket.
    pub(crate) fn closed(&self, reason: DisconnectReason) {
        if !self.0.connected.swap(false, Ordering::AcqRel) {
            return;
        }
        // socket.io: a transport-level loss keeps the session (id, rooms)
        // for a recovering CONNECT; leaving on purpose is final.
        if let (Some(recovery), Some(pid)) = (&self.0.namespace.recovery, self.pid()) {
            if reason.is_recoverable() {
                let rooms = self.rooms();
                recovery.persist(Arc::clone(pid), self.id_arc(), rooms, Instant::now());
            }
        }
        self.0.namespace.remove_socket(&self.0.id);
        // Leaves every room (the membership's drop).
        drop(lock(&self.0.membership).take());
        // Dropping the senders tells the waiting AckFutures.
        drop(lock(&self.0.acks).drain());
        let handlers = std::mem::take(&mut *lock(&self.0.disconnect_handlers));
        for handler in handlers {
            handler(self, reason);
        }
        lock(&self.0.handlers).clear();
        // Values that hold clones of their socket would keep it alive.
        self.0.extensions.clear();
    }
}

/// The answer to a client's event: sends an ACK once, if the client asked
/// for one (its EVENT carried an id). Dropping it unanswered sends
/// nothing, as in JS.
#[derive(Debug)]
pub struct Ack {
    socket: Socket,
    id: Option<u64>,
}

impl Ack {
    pub(crate) fn new(socket: Socket, id: Option<u64>) -> Self {
        Self { socket, id }
    }

    /// Whether the client waits for an answer.
    pub fn is_requested(&self) -> bool {
        self.id.is_some()
    }

    /// Answers with one argument, `data` (the JS callback's `cb(data)`),
    /// as [`Socket::emit`] sends one. Without a requested ack this does
    /// nothing.
    pub fn send<T: Serialize + ?Sized>(self, data: &T) -> Result<(), EmitError> {
        self.send_args(&(data,))
    }

    /// Answers with `args` as the ack's arguments, as
    /// [`Socket::emit_args`] sends them: a tuple, slice or `Vec` gives one
    /// per element, `&()` none, received [`Args`] go back as they came.
    /// Without a requested ack this does nothing.
    pub fn send_args<A: Serialize + ?Sized>(self, args: &A) -> Result<(), EmitError> {
        let Some(id) = self.id else {
            return Ok(());
        };
        let mut text = String::new();
        let attachments = binary::encode_ack(
            &mut text,
            Prefix::EngineIoMessage,
            self.socket.ns(),
            id,
            args,
        )?;
        self.socket.send_direct(text, attachments)
    }
}

#[cfg(test)]
mod tests {
    use super::DisconnectReason::{self, *};

    #[test]
    fn only_transport_level_reasons_are_recoverable() {
        let all = [
            TransportClose,
            TransportError,
            PingTimeout,
            ParseError,
            ForcedClose,
            ServerShuttingDown,
            ClientNamespaceDisconnect,
            ServerNamespaceDisconnect,
        ];
        let recoverable: Vec<DisconnectReason> = all
            .into_iter()
            .filter(|reason| reason.is_recoverable())
            .collect();
        assert_eq!(
            recoverable,
            [
                TransportClose,
                TransportError,
                PingTimeout,
                ForcedClose,
                ServerShuttingDown
            ]
        );
    }
}
