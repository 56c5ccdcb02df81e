//! The chat itself, whatever HTTP server carries it: the page, the JSON
//! protocol, rooms and presence, the connection limits and the origin
//! policy. `examples/chat` serves it with its own HTTP parsing and
//! `chito-axum/examples/axum_chat` with axum; both include this file, so
//! the two speak the same protocol to the same page (the browser test runs
//! against both).
//!
//! The protocol is JSON text messages.
//!
//! Client to server:
//! - `{"type":"join","name":"ada","room":"lobby"}`: enter a room (leaving
//!   the previous one);
//! - `{"type":"say","text":"hi"}`: speak in the current room.
//!
//! Server to client:
//! - `{"type":"joined","room":..,"name":..}`: your join took effect;
//! - `{"type":"message","room":..,"from":..,"text":..}`: someone (you
//!   included) spoke in your room;
//! - `{"type":"members","room":..,"names":[..]}`: your room's members
//!   (on every node, when the registry has a backplane), sent whenever
//!   they change;
//! - `{"type":"error","text":..}`: the last message was refused.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chito::rooms::{MemberId, Membership, Presence, Rooms};
use chito::tokio::Handle;
use chito::{CloseFrame, Config, Handler, Message, Sender};
use serde_json::{json, Value};

/// The page, compiled into the binary.
pub const INDEX_HTML: &str = include_str!("index.html");

/// The page's response headers besides its length. The policy allows the
/// page's own inline script and style and WebSockets to its own origin,
/// nothing else: a chat line that slipped through as HTML could not load
/// or send anything.
pub const PAGE_HEADERS: [(&str, &str); 4] = [
    ("Content-Type", "text/html; charset=utf-8"),
    ("Cache-Control", "no-store"),
    (
        "Content-Security-Policy",
        "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
         connect-src 'self'",
    ),
    ("X-Content-Type-Options", "nosniff"),
];

/// Longest display name, in characters.
const MAX_NAME: usize = 32;
/// Longest room name, in characters.
const MAX_ROOM: usize = 32;
/// Longest chat line, in characters.
const MAX_TEXT: usize = 1000;

/// The connections' limits and timers.
pub fn config() -> Config {
    let mut config = Config::default();
    // Chat lines are short: refuse anything larger than a few of them
    // before it is buffered (the connection is closed with 1009).
    config.max_frame_size = 16 << 10;
    config.max_message_size = 16 << 10;
    // Browsers answer pings on their own; this notices vanished peers.
    config.ping_interval = Some(Duration::from_secs(30));
    config
}

/// A page of its own, a WebSocket from anywhere else: a browser always
/// sends `Origin`, so a page on another site cannot use a visitor's
/// browser to chat here. Clients that are not browsers send none.
/// `host` is the request's `Host` (HTTP/1.1) or `:authority` (HTTP/2).
pub fn same_origin(origin: Option<&str>, host: Option<&str>) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let Some(host) = host else {
        return false;
    };
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    origin_host.eq_ignore_ascii_case(host)
}

/// Sends every room its new member list whenever someone joins or leaves
/// it, whatever the cause: a join, a switch of rooms, a closed tab, or (in
/// a cluster, `Rooms::with_backplane`) the same on another node.
///
/// The presence hook runs inside `join`/`leave` (and inside an emit that
/// finds a closed member and removes it), so it only notes the room; one
/// task builds and sends the lists, in order, so the last list a room
/// receives is never older than one before it. Each node sends the list
/// to its own members only (`emit_local`): every node sees the same
/// presence events and computes the list itself, so a list emitted to the
/// whole cluster would reach each member once per node.
pub fn announce_members(rooms: &Rooms) {
    let (changed, mut changes) = tokio::sync::mpsc::unbounded_channel::<String>();
    rooms.on_presence(move |event| {
        let room = match event {
            Presence::Joined { room, .. } | Presence::Left { room, .. } => room,
        };
        let _ = changed.send(room.to_owned());
    });
    let rooms = rooms.clone();
    tokio::spawn(async move {
        while let Some(room) = changes.recv().await {
            // Changes that came meanwhile: one list per room is enough.
            let mut pending = vec![room];
            while let Ok(room) = changes.try_recv() {
                if !pending.contains(&room) {
                    pending.push(room);
                }
            }
            for room in &pending {
                send_members(&rooms, room);
            }
        }
    });
}

fn send_members(rooms: &Rooms, room: &str) {
    if rooms.local_count(room) == 0 {
        // A remote member's change in a room nobody here is in.
        return;
    }
    // Names are presence data, which other nodes see too; `members`
    // lists the remote members as their nodes' presence last said.
    let mut names: Vec<String> = rooms
        .members(room)
        .into_iter()
        .filter_map(|id| rooms.presence_data(id).map(|name| name.to_string()))
        .collect();
    names.sort_by_key(|n| n.to_lowercase());
    let list = json!({ "type": "members", "room": room, "names": names });
    rooms.emit_local(room, Message::Text(&list.to_string()));
}

/// One chat connection: the `Handler` its socket is served with.
pub struct Member {
    rooms: Rooms,
    id: MemberId,
    /// Registered for as long as the connection is served; dropping the
    /// member leaves its room, and the others get the new list.
    _membership: Membership,
    /// The room this member is in, if any.
    room: Option<Arc<str>>,
    peer: SocketAddr,
}

impl Member {
    /// Registers the connection behind `handle` (in no room yet).
    pub fn new(rooms: &Rooms, handle: Handle, peer: SocketAddr) -> Member {
        let membership = rooms.add(handle);
        Member {
            rooms: rooms.clone(),
            id: membership.id(),
            _membership: membership,
            room: None,
            peer,
        }
    }

    fn handle(&mut self, text: &str) -> Result<Option<Value>, String> {
        let value: Value = serde_json::from_str(text).map_err(|_| "not valid JSON".to_string())?;
        let field = |key: &str| value.get(key).and_then(Value::as_str);
        match field("type") {
            Some("join") => {
                let name = checked("name", field("name"), MAX_NAME)?;
                let room = checked("room", field("room"), MAX_ROOM)?;
                self.join(name, room);
                Ok(Some(
                    json!({ "type": "joined", "room": room, "name": name }),
                ))
            }
            Some("say") => {
                let Some(room) = self.room.clone() else {
                    return Err("join a room first".into());
                };
                let text = field("text").ok_or("\"text\" must be a string")?;
                if text.trim().is_empty() {
                    return Err("empty message".into());
                }
                if text.chars().count() > MAX_TEXT {
                    return Err(format!("message longer than {MAX_TEXT} characters"));
                }
                let from = self
                    .rooms
                    .presence_data(self.id)
                    .unwrap_or_else(|| Arc::from("?"));
                let line =
                    json!({ "type": "message", "room": &*room, "from": &*from, "text": text });
                self.rooms.emit(&room, Message::Text(&line.to_string()));
                Ok(None)
            }
            Some(other) => Err(format!("unknown message type {other:?}")),
            None => Err("\"type\" must be a string".into()),
        }
    }

    fn join(&mut self, name: &str, room: &str) {
        // The name first: the member list sent on joining shows it, and
        // the join other nodes hear of carries it.
        self.rooms.set_presence_data(self.id, name);
        if let Some(previous) = self.room.take() {
            self.rooms.leave(self.id, &previous);
        }
        if !self.rooms.join(self.id, room) {
            // Already there (a rename): the others still need the new name.
            self.rooms.leave(self.id, room);
            self.rooms.join(self.id, room);
        }
        self.room = Some(Arc::from(room));
    }
}

/// A trimmed, non-empty string of at most `max` characters without
/// control characters.
fn checked<'a>(what: &str, value: Option<&'a str>, max: usize) -> Result<&'a str, String> {
    let value = value
        .ok_or_else(|| format!("\"{what}\" must be a string"))?
        .trim();
    if value.is_empty() {
        return Err(format!("empty {what}"));
    }
    if value.chars().count() > max {
        return Err(format!("{what} longer than {max} characters"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{what} contains control characters"));
    }
    Ok(value)
}

impl Handler for Member {
    fn on_message(&mut self, sender: &mut Sender<'_>, message: Message<'_>) {
        let reply = match message {
            Message::Text(text) => self.handle(text),
            Message::Binary(_) => Err("binary messages are not part of this chat".into()),
        };
        let reply = match reply {
            Ok(Some(reply)) => reply,
            Ok(None) => return,
            Err(text) => json!({ "type": "error", "text": text }),
        };
        let _ = sender.send(Message::Text(&reply.to_string()));
    }

    fn on_close(&mut self, frame: &CloseFrame<'_>) {
        if frame.code.as_u16() != 1000 && frame.code.as_u16() != 1001 {
            eprintln!("{}: closed with {}", self.peer, frame.code.as_u16());
        }
    }
}
