//! Emits to many sockets: `to`/`within`/`except`/`broadcast` as one
//! `chito::rooms` selection (docs/socketio.md §5, §6). The packet is
//! encoded once per emit, whatever the number of recipients, and delivered
//! by reference to each member's Engine.IO session (and, with a backplane,
//! to the other nodes, which evaluate the except-rooms against their own
//! members).

use std::sync::Arc;
use std::time::Instant;

use chito::rooms::{MemberId, Select};
use serde::Serialize;

use super::binary;
use super::namespace::Namespace;
use super::packet::Prefix;
use super::recovery::Selection;
use super::rooms::{namespace_key, parse_socket_id, room_key};
use super::socket::{logged_payload, payload, EmitError};

/// An emit under construction: a namespace, target rooms and sockets
/// (none: every socket of the namespace), except-rooms and sockets left
/// out.
#[derive(Clone)]
pub struct BroadcastOperator {
    namespace: Arc<Namespace>,
    /// Room keys and socket targets (`to(id)`).
    select: Select,
    /// The same by name, as the recovery log matches a session's rooms
    /// and id against it (docs/socketio.md §7); kept only with recovery on.
    logged: Option<Selection>,
}

impl std::fmt::Debug for BroadcastOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BroadcastOperator")
            .field("namespace", &self.namespace.name)
            .field("select", &self.select)
            .finish()
    }
}

impl BroadcastOperator {
    pub(crate) fn new(namespace: Arc<Namespace>) -> Self {
        let logged = namespace.recovery.as_ref().map(|_| Selection::default());
        Self {
            namespace,
            select: Select::default(),
            logged,
        }
    }

    /// Leaves out the socket `member` whose id is `id` (the emitting one).
    pub(crate) fn except_socket(mut self, member: MemberId, id: Arc<str>) -> Self {
        self.select.except_members.push(member);
        if let Some(logged) = &mut self.logged {
            logged.except_sockets.push(id);
        }
        self
    }

    /// Adds `room` to the targets (a socket in several is reached once). A
    /// socket id names that socket too, as in JS, where every socket is in
    /// a room named by its id.
    pub fn to(mut self, room: &str) -> Self {
        self.select.rooms.push(room_key(&self.namespace.name, room));
        let socket = self.socket_of_this_namespace(room);
        if let Some(member) = socket {
            self.select.members.push(member);
        }
        if let Some(logged) = &mut self.logged {
            logged.rooms.push(room.to_owned());
            if socket.is_some() {
                logged.sockets.push(Arc::from(room));
            }
        }
        self
    }

    /// Leaves out the sockets in `room` (on every node: each evaluates it
    /// against its own members), and the socket `room` names if it is an id.
    pub fn except(mut self, room: &str) -> Self {
        self.select
            .except_rooms
            .push(room_key(&self.namespace.name, room));
        let socket = parse_socket_id(room);
        if let Some(member) = socket {
            self.select.except_members.push(member);
        }
        if let Some(logged) = &mut self.logged {
            logged.except_rooms.push(room.to_owned());
            if socket.is_some() {
                logged.except_sockets.push(Arc::from(room));
            }
        }
        self
    }

    /// The member a socket id names, unless it is a socket of this node in
    /// another namespace (its id is in this namespace's "rooms" only in JS;
    /// a socket of another node cannot be checked here).
    fn socket_of_this_namespace(&self, id: &str) -> Option<MemberId> {
        let member = parse_socket_id(id)?;
        let local = member.node() == self.namespace.rooms.node();
        (!local || self.namespace.socket(id).is_some()).then_some(member)
    }

    /// The selection this emit delivers to: every socket of the namespace
    /// when no room or socket is targeted.
    fn selection(&self) -> std::borrow::Cow<'_, Select> {
        if self.select.rooms.is_empty() && self.select.members.is_empty() {
            let mut select = self.select.clone();
            select.rooms.push(namespace_key(&self.namespace.name));
            std::borrow::Cow::Owned(select)
        } else {
            std::borrow::Cow::Borrowed(&self.select)
        }
    }

    /// Sends `event` with one argument to every selected socket.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), EmitError> {
        self.emit_args(event, &(data,))
    }

    /// Sends `event` with `args` (one per element) to every selected
    /// socket. Sockets whose session has closed meanwhile, or whose queue
    /// is full, are skipped.
    pub fn emit_args<A: Serialize + ?Sized>(&self, event: &str, args: &A) -> Result<(), EmitError> {
        // Encoded once: every recipient's session queues the same shared
        // messages by reference (docs/socketio.md §6).
        let mut text = String::new();
        let attachments = binary::encode_event(
            &mut text,
            Prefix::EngineIoMessage,
            &self.namespace.name,
            event,
            args,
            None,
        )?;
        let rooms = &self.namespace.rooms;
        // With recovery on, the emit is logged once with its offset
        // spliced in (docs/socketio.md §7), and that packet is sent.
        if let (Some(recovery), Some(logged)) = (&self.namespace.recovery, &self.logged) {
            recovery.log_and_send(
                text,
                attachments,
                logged.clone(),
                Instant::now(),
                |packet| rooms.emit_select(&self.selection(), logged_payload(packet)),
            );
            return Ok(());
        }
        rooms.emit_select(&self.selection(), payload(text, &attachments));
        Ok(())
    }

    /// The ids of the selected sockets of this node.
    pub fn socket_ids(&self) -> Vec<String> {
        let select = self.selection();
        let rooms = &self.namespace.rooms;
        self.namespace
            .sockets()
            .into_iter()
            .filter(|socket| {
                let member = socket.member();
                let rooms_of = rooms.rooms_of(member);
                select.selects(member, |room| rooms_of.iter().any(|key| **key == *room))
            })
            .map(|socket| socket.id().to_owned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;

    use crate::engineio::{EngineIo, EngineSocket, Outgoing, TransportKind};
    use crate::socketio::{Binary, Socket, SocketIo};

    /// The Socket.IO text packets queued for a WebSocket session now.
    fn received(engine: &EngineIo, session: &EngineSocket) -> Vec<String> {
        let (_, packets) = engine.test_take(session);
        packets
            .iter()
            .filter_map(|packet| match packet {
                Outgoing::Shared(shared) => match shared.message().message() {
                    chito::Message::Text(text) => Some(text.to_owned()),
                    chito::Message::Binary(_) => None,
                },
                Outgoing::Text(text) => Some(text.clone()),
                Outgoing::Binary(_) => None,
            })
            .collect()
    }

    /// A WebSocket session connected to `namespace`, and its socket.
    fn connect(
        io: &SocketIo,
        namespace: &str,
        sockets: &Mutex<Vec<Socket>>,
    ) -> (EngineSocket, Socket) {
        let engine = io.engine();
        let session = engine
            .test_open(TransportKind::WebSocket)
            .expect("no session limit");
        let connect = if namespace == "/" {
            "40".to_owned()
        } else {
            format!("40{namespace},")
        };
        engine.test_receive(&session, &connect);
        let answers = received(engine, &session);
        assert!(answers.iter().any(|packet| packet.starts_with("40")));
        let socket = sockets.lock().unwrap().pop().expect("connected");
        (session, socket)
    }

    /// docs/socketio.md §5: join/leave/rooms and every kind of emit are
    /// selections of the server's chito::rooms registry, keyed per
    /// namespace.
    #[tokio::test]
    async fn rooms_and_emits_select_as_socket_io_does() {
        let io = SocketIo::builder().build();
        let sockets = Arc::new(Mutex::new(Vec::new()));
        for namespace in ["/", "/other"] {
            let sockets = Arc::clone(&sockets);
            io.ns(namespace, move |socket: Socket| {
                sockets.lock().unwrap().push(socket)
            });
        }
        let engine = io.engine();
        let (sa, a) = connect(&io, "/", &sockets);
        let (sb, b) = connect(&io, "/", &sockets);
        let (sc, c) = connect(&io, "/", &sockets);
        let (sd, d) = connect(&io, "/", &sockets);
        let (se, e) = connect(&io, "/other", &sockets);
        a.join("red");
        b.join("red");
        b.join("blue");
        c.join("blue");
        // The same room name in another namespace is another room.
        e.join("red");
        assert_eq!(a.rooms(), vec!["red".to_owned()]);
        let b_rooms: BTreeSet<String> = b.rooms().into_iter().collect();
        assert_eq!(
            b_rooms,
            BTreeSet::from(["blue".to_owned(), "red".to_owned()])
        );
        assert!(d.rooms().is_empty(), "the namespace room is not listed");

        let sessions = [&sa, &sb, &sc, &sd, &se];
        let got = |emit: &dyn Fn(), expected: [bool; 5], label: &str| {
            emit();
            for (index, session) in sessions.iter().enumerate() {
                let packets = received(engine, session);
                assert_eq!(
                    !packets.is_empty(),
                    expected[index],
                    "{label}: session {index} got {packets:?}"
                );
            }
        };
        got(
            &|| io.to("red").emit("m", &1).unwrap(),
            [true, true, false, false, false],
            "to(red)",
        );
        got(
            &|| io.to("red").except("blue").emit("m", &1).unwrap(),
            [true, false, false, false, false],
            "to(red).except(blue)",
        );
        got(
            &|| a.to("red").emit("m", &1).unwrap(),
            [false, true, false, false, false],
            "socket.to(red)",
        );
        got(
            &|| a.within("red").emit("m", &1).unwrap(),
            [true, true, false, false, false],
            "within(red)",
        );
        got(
            &|| a.broadcast().emit("m", &1).unwrap(),
            [false, true, true, true, false],
            "broadcast()",
        );
        got(
            &|| a.except("blue").emit("m", &1).unwrap(),
            [false, false, false, true, false],
            "socket.except(blue)",
        );
        got(
            &|| io.emit("m", &1).unwrap(),
            [true, true, true, true, false],
            "io.emit",
        );
        got(
            &|| io.to(c.id()).emit("m", &1).unwrap(),
            [false, false, true, false, false],
            "to(socket id)",
        );
        // A socket of another namespace is no target of this one.
        got(
            &|| io.to(e.id()).emit("m", &1).unwrap(),
            [false, false, false, false, false],
            "to(id of /other)",
        );
        got(
            &|| io.of("/other").unwrap().to("red").emit("m", &1).unwrap(),
            [false, false, false, false, true],
            "of(/other).to(red)",
        );
        got(
            &|| d.emit("m", &1).unwrap(),
            [false, false, false, true, false],
            "socket.emit",
        );
        let blue: BTreeSet<String> = io.to("blue").socket_ids().into_iter().collect();
        assert_eq!(blue, BTreeSet::from([b.id().to_owned(), c.id().to_owned()]));

        a.leave("red");
        got(
            &|| io.to("red").emit("m", &1).unwrap(),
            [false, true, false, false, false],
            "after leave",
        );
        // A disconnected socket leaves every room.
        b.disconnect();
        let _ = received(engine, &sb);
        got(
            &|| io.to("blue").emit("m", &1).unwrap(),
            [false, false, true, false, false],
            "after disconnect",
        );
        assert!(b.emit("m", &1).is_err());
    }

    /// docs/socketio.md §6: one room emit to 1 000 members, half on
    /// polling and half on WebSocket, is serialized once: every WebSocket
    /// session queues the very same shared packets, every polling body
    /// carries the same bytes, and the attachment's base64 is built once.
    #[tokio::test]
    async fn a_room_emit_is_encoded_once_for_every_member_and_transport() {
        let io = SocketIo::builder().build();
        io.ns("/", |socket: Socket| socket.join("room"));
        let engine = io.engine();
        let members: Vec<(TransportKind, EngineSocket)> = (0..1_000)
            .map(|index| {
                let transport = if index % 2 == 0 {
                    TransportKind::Polling
                } else {
                    TransportKind::WebSocket
                };
                let socket = engine.test_open(transport).expect("no session limit");
                engine.test_receive(&socket, "40");
                // The open packet and the CONNECT answer, out of the way.
                let (body, packets) = engine.test_take(&socket);
                assert!(body.is_some() || packets.len() == 2);
                (transport, socket)
            })
            .collect();
        // Not a member: must get nothing.
        let outsider = engine.test_open(TransportKind::WebSocket).expect("opens");
        let _ = engine.test_take(&outsider);

        io.to("room")
            .emit_args("chat", &("hi", Binary(Bytes::from_static(&[1, 2, 3]))))
            .expect("encodes");

        let expected_text = r#"451-["chat","hi",{"_placeholder":true,"num":0}]"#;
        let expected_body = format!("{expected_text}\x1ebAQID");
        let mut first_ws: Option<Vec<Outgoing>> = None;
        let mut base64_builds = Vec::new();
        for (transport, socket) in &members {
            let (body, packets) = engine.test_take(socket);
            match transport {
                TransportKind::Polling => {
                    assert_eq!(body.as_deref(), Some(expected_body.as_bytes()));
                }
                TransportKind::WebSocket => {
                    assert_eq!(packets.len(), 2, "the text and its attachment");
                    let Outgoing::Shared(text) = &packets[0] else {
                        panic!("not shared: {:?}", packets[0]);
                    };
                    assert_eq!(
                        text.message().message(),
                        chito::Message::Text(expected_text)
                    );
                    let Outgoing::Shared(attachment) = &packets[1] else {
                        panic!("not shared: {:?}", packets[1]);
                    };
                    assert_eq!(
                        attachment.message().message(),
                        chito::Message::Binary(&[1, 2, 3])
                    );
                    base64_builds.push(attachment.clone());
                    match &first_ws {
                        // Same encoding: `Outgoing`'s equality of shared
                        // packets is identity.
                        Some(first) => assert_eq!(first, &packets),
                        None => first_ws = Some(packets),
                    }
                }
            }
        }
        assert!(first_ws.is_some());
        // 500 polling bodies, one base64 form.
        assert!(base64_builds
            .iter()
            .all(|attachment| attachment.polling_builds() == 1));
        let (body, packets) = engine.test_take(&outsider);
        assert!(body.is_none() && packets.is_empty());
    }
}
