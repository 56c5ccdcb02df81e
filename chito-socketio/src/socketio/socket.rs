//! [`Socket`]: one client in one namespace (socket.io-protocol, "Socket";
//! docs/socketio.md §8): its event handlers, emits (with or without an
//! ack), rooms and disconnection.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use super::ack::{AckFuture, PendingAcks};
use super::args::Args;
use super::binary;
use super::broadcast::BroadcastOperator;
use super::client::Client;
use super::namespace::Namespace;
use super::packet::{self, EncodeError, Prefix};
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

/// An event handler: the socket, the event's arguments, the ack to answer.
pub(crate) type EventHandler = Arc<dyn Fn(Socket, Args, Ack) + Send + Sync>;
type DisconnectHandler = Arc<dyn Fn(Socket, DisconnectReason) + Send + Sync>;

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
    handlers: Mutex<HashMap<String, EventHandler>>,
    disconnect_handlers: Mutex<Vec<DisconnectHandler>>,
    acks: Mutex<PendingAcks<oneshot::Sender<Args>>>,
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
            acks: Mutex::new(PendingAcks::new(max_pending)),
        }))
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

    /// Handles the event `event`: `handler(socket, args, ack)` runs on the
    /// task that received the packet, so it should not block; spawn a task
    /// for slow work. A second handler for the same event replaces the first.
    pub fn on<F>(&self, event: impl Into<String>, handler: F)
    where
        F: Fn(Socket, Args, Ack) + Send + Sync + 'static,
    {
        lock(&self.0.handlers).insert(event.into(), Arc::new(handler));
    }

    /// Runs `handler` once when the socket disconnects, with the reason.
    pub fn on_disconnect<F>(&self, handler: F)
    where
        F: Fn(Socket, DisconnectReason) + Send + Sync + 'static,
    {
        lock(&self.0.disconnect_handlers).push(Arc::new(handler));
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
        self.deliver(payload(text, &attachments))
    }

    /// Sends one encoded packet to this socket through the room registry,
    /// as a one-member selection: the same path as a room emit
    /// (docs/socketio.md §6).
    fn deliver(&self, payload: Payload) -> Result<(), EmitError> {
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
        let ack = Ack {
            socket: self.clone(),
            id: ack_id,
        };
        // An event without a handler is dropped, as in JS.
        if let Some(handler) = handler {
            handler(self.clone(), args, ack);
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
            .except_member(self.0.member)
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
            .except_member(self.0.member)
            .except(room)
    }

    /// An emit to every socket of the namespace but this one (JS
    /// `socket.broadcast`).
    pub fn broadcast(&self) -> BroadcastOperator {
        BroadcastOperator::new(Arc::clone(&self.0.namespace)).except_member(self.0.member)
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
        self.0.namespace.remove_socket(&self.0.id);
        // Leaves every room (the membership's drop).
        drop(lock(&self.0.membership).take());
        // Dropping the senders tells the waiting AckFutures.
        drop(lock(&self.0.acks).drain());
        let handlers = std::mem::take(&mut *lock(&self.0.disconnect_handlers));
        for handler in handlers {
            handler(self.clone(), reason);
        }
        lock(&self.0.handlers).clear();
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
    /// Whether the client waits for an answer.
    pub fn is_requested(&self) -> bool {
        self.id.is_some()
    }

    /// Answers with `args` as the ack's arguments: a tuple, slice or `Vec`
    /// gives one per element, `&()` none, received [`Args`] go back as
    /// they came. Without a requested ack this does nothing.
    pub fn send<A: Serialize + ?Sized>(self, args: &A) -> Result<(), EmitError> {
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
        self.socket.deliver(payload(text, &attachments))
    }
}
