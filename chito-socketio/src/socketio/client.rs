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
use super::io::{IoInner, SocketIoConfig};
use super::namespace::ConnectError;
use super::packet::{self, Packet, PacketData, Prefix};
use super::rooms::socket_id;
use super::socket::{DisconnectReason, Socket};
use crate::engineio::{CloseReason, EngineSocket, Outgoing};

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
                closed: false,
            }),
        })
    }

    pub(crate) fn config(&self) -> &SocketIoConfig {
        &self.io.config
    }

    pub(crate) fn ack_ids(&self) -> &AckIds {
        &self.io.ack_ids
    }

    /// Closes the session after `connect_timeout` if no namespace is
    /// connected by then. Runs on the tokio runtime serving the session.
    pub(crate) fn arm_connect_timeout(self: &Arc<Self>) {
        let deadline = lock(&self.state).connect_deadline;
        let client: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep_until(deadline.into()).await;
            if let Some(client) = client.upgrade() {
                if client.connect_timed_out(Instant::now()) {
                    client.engine.close();
                }
            }
        });
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
        self.engine.close();
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
            self.send_connected(name, existing.id());
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
        // The socket is a member of the server's registry, its sink this
        // session (a reference per socket); its id is derived from the
        // member id (docs/socketio.md §5). A refusal below drops the
        // membership with the socket.
        let membership = self.io.rooms.add_sink(Arc::new(self.engine.clone()));
        // The random tail: 32 bits of the keyed generator's output.
        let tail = self.io.socket_ids.next_u64() as u32;
        let id: Arc<str> = Arc::from(socket_id(membership.id(), tail));
        let socket = Socket::new(
            id,
            membership,
            Arc::clone(&namespace),
            Arc::clone(self),
            auth,
        );
        for middleware in namespace.middlewares() {
            if let Err(refusal) = middleware(&socket) {
                self.send_connect_error(name, &refusal);
                return;
            }
        }
        {
            let mut state = lock(&self.state);
            if state.closed {
                return;
            }
            state.sockets.insert(name.to_owned(), socket.clone());
        }
        socket.mark_connected();
        namespace.insert_socket(socket.clone());
        socket.join_namespace();
        // The CONNECT answer precedes anything the handler emits (the
        // suite reads `40{"sid"}` and then `42["auth",…]`); the Engine.IO
        // WebSocket writer's pacing puts them in separate writes, as
        // engine.io does (`Session::begin_websocket_write`).
        self.send_connected(name, socket.id());
        (namespace.handler())(socket.clone());
    }

    fn send_connected(&self, namespace: &str, sid: &str) {
        let mut text = String::new();
        if packet::encode_connect(
            &mut text,
            Prefix::EngineIoMessage,
            namespace,
            Some(&Connected { sid }),
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
            state.sockets.drain().map(|(_, socket)| socket).collect()
        };
        for socket in sockets {
            socket.closed(reason);
        }
    }
}
