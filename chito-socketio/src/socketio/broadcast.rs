//! Emits to many sockets of a namespace: `to`/`within`/`except`
//! (docs/socketio.md §6). The packet is encoded once per emit, whatever
//! the number of recipients.

use std::collections::HashSet;
use std::sync::Arc;

use serde::Serialize;

use super::binary;
use super::namespace::Namespace;
use super::packet::Prefix;
use super::socket::{shared_packets, EmitError};

/// An emit under construction: a namespace, target rooms (none: every
/// socket of the namespace), except-rooms and possibly the emitting socket
/// left out.
#[derive(Clone)]
pub struct BroadcastOperator {
    namespace: Arc<Namespace>,
    rooms: Vec<String>,
    except: Vec<String>,
    except_socket: Option<Arc<str>>,
}

impl std::fmt::Debug for BroadcastOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BroadcastOperator")
            .field("namespace", &self.namespace.name)
            .field("rooms", &self.rooms)
            .field("except", &self.except)
            .finish()
    }
}

impl BroadcastOperator {
    pub(crate) fn new(namespace: Arc<Namespace>) -> Self {
        Self {
            namespace,
            rooms: Vec::new(),
            except: Vec::new(),
            except_socket: None,
        }
    }

    pub(crate) fn except_socket(mut self, id: Arc<str>) -> Self {
        self.except_socket = Some(id);
        self
    }

    /// Adds `room` to the targets (a socket in several is reached once).
    pub fn to(mut self, room: &str) -> Self {
        self.rooms.push(room.to_owned());
        self
    }

    /// Leaves out the sockets in `room`.
    pub fn except(mut self, room: &str) -> Self {
        self.except.push(room.to_owned());
        self
    }

    /// Sends `event` with one argument to every selected socket.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), EmitError> {
        self.emit_args(event, &(data,))
    }

    /// Sends `event` with `args` (one per element) to every selected
    /// socket. Sockets whose session has closed meanwhile are skipped.
    pub fn emit_args<A: Serialize + ?Sized>(&self, event: &str, args: &A) -> Result<(), EmitError> {
        // Encoded once: every recipient's session queues the same shared
        // packets by reference (docs/socketio.md §6).
        let mut text = String::new();
        let attachments = binary::encode_event(
            &mut text,
            Prefix::EngineIoMessage,
            &self.namespace.name,
            event,
            args,
            None,
        )?;
        let packets = shared_packets(text, &attachments);
        for id in self.selected() {
            if let Some(socket) = self.namespace.socket(&id) {
                // One recipient gone is not the emit's failure.
                let _ = socket.send_packets(&packets);
            }
        }
        Ok(())
    }

    /// The ids of the selected sockets.
    pub fn socket_ids(&self) -> Vec<String> {
        self.selected().iter().map(|id| id.to_string()).collect()
    }

    fn selected(&self) -> HashSet<Arc<str>> {
        let mut selected = if self.rooms.is_empty() {
            let excluded = self.namespace.rooms().members_of_any(&self.except);
            self.namespace
                .sockets()
                .into_iter()
                .map(|socket| socket.id_arc())
                .filter(|id| !excluded.contains(id))
                .collect()
        } else {
            self.namespace.rooms().select(&self.rooms, &self.except)
        };
        if let Some(id) = &self.except_socket {
            selected.remove(id);
        }
        selected
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::engineio::{EngineSocket, Outgoing, TransportKind};
    use crate::socketio::{Binary, SocketIo};

    /// docs/socketio.md §6: one room emit to 1 000 members, half on
    /// polling and half on WebSocket, is serialized once: every WebSocket
    /// session queues the very same shared packets, every polling body
    /// carries the same bytes, and the attachment's base64 is built once.
    #[tokio::test]
    async fn a_room_emit_is_encoded_once_for_every_member_and_transport() {
        let io = SocketIo::builder().build();
        io.ns("/", |socket| socket.join("room"));
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
