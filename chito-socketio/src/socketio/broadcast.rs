//! Emits to many sockets of a namespace: `to`/`within`/`except`
//! (docs/socketio.md §6). The packet is encoded once per emit, whatever
//! the number of recipients.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::binary;
use super::namespace::Namespace;
use super::packet::Prefix;
use super::recovery::Selection;
use super::socket::EmitError;

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
        let mut text = String::new();
        let attachments = binary::encode_event(
            &mut text,
            Prefix::Bare,
            &self.namespace.name,
            event,
            args,
            None,
        )?;
        // With recovery on, the emit is logged once with its offset
        // spliced in (docs/socketio.md §7), and that packet is sent.
        if let Some(recovery) = &self.namespace.recovery {
            let packet = recovery.log(text, attachments, self.selection(), Instant::now());
            for id in self.selected() {
                if let Some(socket) = self.namespace.socket(&id) {
                    let _ = socket.send_logged(&packet);
                }
            }
            return Ok(());
        }
        for id in self.selected() {
            if let Some(socket) = self.namespace.socket(&id) {
                // One recipient gone is not the emit's failure.
                let _ = socket.send_raw(&text, &attachments);
            }
        }
        Ok(())
    }

    /// Whom the emit is for, as the recovery log keeps it.
    fn selection(&self) -> Selection {
        Selection {
            rooms: self.rooms.clone(),
            sockets: Vec::new(),
            except_rooms: self.except.clone(),
            except_sockets: self.except_socket.iter().cloned().collect(),
        }
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
