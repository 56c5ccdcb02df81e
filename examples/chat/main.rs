//! A browser chat with rooms:
//! `cargo run --example chat --features rooms -- 127.0.0.1:8080`, then open
//! http://127.0.0.1:8080/ in a few browser tabs.
//!
//! One listener serves both the page and the WebSocket: each connection's
//! HTTP request head is read here, then `GET /` gets the page (embedded
//! with `include_str!`) and `GET /ws` is validated and accepted with
//! chito's `UpgradeRequest` and handed to the tokio adapter. Browsers offer
//! permessage-deflate and chito accepts it by default.
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
//! - `{"type":"members","room":..,"names":[..]}`: your room's members,
//!   sent whenever they change;
//! - `{"type":"error","text":..}`: the last message was refused.
//!
//! Pass `127.0.0.1:0` to let the system choose a port; the first line
//! printed names the address in use.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chito::handshake::{Accept, Rejection, UpgradeRequest};
use chito::rooms::{MemberId, Membership, Presence, Rooms};
use chito::{CloseFrame, Config, Connection, Handler, Message, Role, Sender};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The page, compiled into the binary.
const INDEX_HTML: &str = include_str!("index.html");

/// Longest display name, in characters.
const MAX_NAME: usize = 32;
/// Longest room name, in characters.
const MAX_ROOM: usize = 32;
/// Longest chat line, in characters.
const MAX_TEXT: usize = 1000;

/// The display name of a member, kept as its metadata in the registry.
#[derive(Clone)]
struct Name(Arc<str>);

/// Everything a connection task shares with the others.
#[derive(Clone)]
struct Chat {
    rooms: Rooms,
    config: Config,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let listener = TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;
    println!("chat server listening on http://{local}/");

    let mut config = Config::default();
    // Chat lines are short: refuse anything larger than a few of them
    // before it is buffered (the connection is closed with 1009).
    config.max_frame_size = 16 << 10;
    config.max_message_size = 16 << 10;
    // Browsers answer pings on their own; this notices vanished peers.
    config.ping_interval = Some(Duration::from_secs(30));

    let chat = Chat {
        rooms: Rooms::new(),
        config,
    };
    announce_members(&chat.rooms);

    loop {
        let (stream, peer) = listener.accept().await?;
        let chat = chat.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, peer, chat).await {
                eprintln!("{peer}: {e}");
            }
        });
    }
}

/// Sends every room its new member list whenever someone joins or leaves
/// it, whatever the cause: a join, a switch of rooms, a closed tab.
///
/// The presence hook runs inside `join`/`leave` (and inside an emit that
/// finds a closed member and removes it), so it only notes the room; one
/// task builds and sends the lists, in order, so the last list a room
/// receives is never older than one before it.
fn announce_members(rooms: &Rooms) {
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
    let mut names: Vec<String> = rooms
        .members(room)
        .into_iter()
        .filter_map(|id| rooms.with_meta(id, |n: &Name| n.0.to_string()))
        .collect();
    names.sort_by_key(|n| n.to_lowercase());
    let list = json!({ "type": "members", "room": room, "names": names });
    rooms.emit(room, Message::Text(&list.to_string()));
}

/// A client that has not sent its whole request head by then is dropped.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads one HTTP request head and answers it: the page, an upgrade, or
/// an error status.
///
/// The head is parsed here rather than by chito's `ServerHandshake`, which
/// refuses anything that is not a WebSocket upgrade: this listener also
/// serves the page, so it routes first and then hands `/ws` requests to
/// `UpgradeRequest::from_parts`, the path for servers that parse HTTP
/// themselves.
async fn connection(mut stream: TcpStream, peer: SocketAddr, chat: Chat) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let read_head = async {
        loop {
            match parse_head(&head, &chat.config) {
                Ok(Some(parsed)) => return Ok(Ok(parsed)),
                Ok(None) => {}
                Err(rejection) => return Ok(Err(rejection)),
            }
            let mut chunk = [0u8; 2048];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
            }
            head.extend_from_slice(&chunk[..n]);
        }
    };
    let parsed = match tokio::time::timeout(HANDSHAKE_TIMEOUT, read_head).await {
        Ok(result) => result?,
        Err(_) => return Ok(()), // a silent client: just hang up
    };
    let (request, consumed) = match parsed {
        Ok(parsed) => parsed,
        Err(rejection) => return refuse(&mut stream, &rejection).await,
    };

    if request.method != "GET" {
        let rejection = Rejection::new(405, "only GET is served").with_header("Allow", "GET");
        return refuse(&mut stream, &rejection).await;
    }
    let path = request.target.split('?').next().unwrap_or("/");
    match path {
        "/" | "/index.html" => serve_page(&mut stream).await,
        "/ws" => {
            if !same_origin(&request) {
                let rejection = Rejection::new(403, "cross-origin WebSocket refused");
                return refuse(&mut stream, &rejection).await;
            }
            let upgrade = UpgradeRequest::from_parts(
                &request.method,
                &request.target,
                request.minor_version,
                request
                    .headers
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.as_slice())),
                &chat.config,
            );
            let accepted =
                match upgrade.and_then(|upgrade| upgrade.accept(Accept::default(), &chat.config)) {
                    Ok(accepted) => accepted,
                    Err(rejection) => return refuse(&mut stream, &rejection).await,
                };
            stream.write_all(&accepted.response()).await?;
            stream.flush().await?;
            // Bytes the browser sent right behind its request are frames.
            let leftover = &head[consumed..];
            let conn = Connection::with_negotiated(
                Role::Server,
                chat.config.clone(),
                accepted.negotiated().clone(),
                leftover,
            );
            let ws = chito::tokio::Builder::new(stream).upgraded(conn);
            let membership = chat.rooms.add(ws.handle());
            let mut member = Member {
                rooms: chat.rooms.clone(),
                id: membership.id(),
                _membership: membership,
                room: None,
                peer,
            };
            ws.serve(&mut member).await;
            // `member` (and its membership) is dropped here: the member
            // leaves its room and the others get the new list.
            Ok(())
        }
        _ => refuse(&mut stream, &Rejection::new(404, "not found")).await,
    }
}

/// An HTTP request head, owned: what `UpgradeRequest::from_parts` takes.
struct Head {
    method: String,
    target: String,
    minor_version: u8,
    headers: Vec<(String, Vec<u8>)>,
}

impl Head {
    /// The first header called `name`, as text without surrounding
    /// whitespace.
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
            .map(|value| value.trim_matches([' ', '\t']))
    }
}

/// Parses the request head at the start of `buf` under the config's
/// handshake limits: `Ok(None)` to read more, or the head and its length,
/// or the refusal chito would send (431 too large, 400 malformed).
fn parse_head(buf: &[u8], config: &Config) -> Result<Option<(Head, usize)>, Rejection> {
    let mut slots = vec![httparse::EMPTY_HEADER; config.max_handshake_headers];
    let mut request = httparse::Request::new(&mut slots);
    let window = &buf[..buf.len().min(config.max_handshake_size)];
    match request.parse(window) {
        Ok(httparse::Status::Complete(consumed)) => Ok(Some((
            Head {
                method: request.method.unwrap_or_default().to_owned(),
                target: request.path.unwrap_or_default().to_owned(),
                minor_version: request.version.unwrap_or_default(),
                headers: request
                    .headers
                    .iter()
                    .map(|h| (h.name.to_owned(), h.value.to_vec()))
                    .collect(),
            },
            consumed,
        ))),
        Ok(httparse::Status::Partial) if buf.len() > config.max_handshake_size => {
            Err(Rejection::new(431, "request head too large"))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(Rejection::new(431, "too many header fields")),
        Err(e) => Err(Rejection::new(400, format!("malformed HTTP request: {e}"))),
    }
}

/// A page of its own, a WebSocket from anywhere else: a browser always
/// sends `Origin`, so a page on another site cannot use a visitor's
/// browser to chat here. Clients that are not browsers send none.
fn same_origin(request: &Head) -> bool {
    let Some(origin) = request.header("Origin") else {
        return true;
    };
    let Some(host) = request.header("Host") else {
        return false;
    };
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    origin_host.eq_ignore_ascii_case(host)
}

async fn serve_page(stream: &mut TcpStream) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\n\
         Content-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\n\
         Cache-Control: no-store\r\n\
         Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; \
         script-src 'unsafe-inline'; connect-src 'self'\r\n\
         X-Content-Type-Options: nosniff\r\n\
         Connection: close\r\n\r\n",
        INDEX_HTML.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(INDEX_HTML.as_bytes()).await?;
    stream.shutdown().await
}

async fn refuse(stream: &mut TcpStream, rejection: &Rejection) -> std::io::Result<()> {
    stream.write_all(&rejection.to_response()).await?;
    stream.shutdown().await
}

/// One chat connection.
struct Member {
    rooms: Rooms,
    id: MemberId,
    /// Registered for as long as the connection is served.
    _membership: Membership,
    /// The room this member is in, if any.
    room: Option<Arc<str>>,
    peer: SocketAddr,
}

impl Member {
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
                    .with_meta(self.id, |n: &Name| n.0.clone())
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
        // The name first: the member list sent on joining shows it.
        self.rooms.set_meta(self.id, Name(Arc::from(name)));
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
