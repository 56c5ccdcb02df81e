//! The browser chat of `examples/chat` (rooms, who is here, names) on
//! Socket.IO, with the official browser client:
//!
//! ```text
//! cargo run -p chito-socketio --example socketio_chat -- --listen 127.0.0.1:8080
//! ```
//!
//! then open http://127.0.0.1:8080/ in a few tabs (`?transports=polling`
//! keeps a page on long-polling). One process serves the page, the
//! client's bundle (`socket.io.min.js` from the `socket.io-client` npm
//! package) and Socket.IO under `/socket.io/`. The bundle is not in git:
//! it is read from `chito-socketio/tests/node/node_modules`, and when that
//! is missing the example runs `npm ci` there once (it needs npm).
//! `--listen 127.0.0.1:0` lets the system choose a port; the first line
//! printed names the address in use.
//!
//! The protocol, as Socket.IO events (answers are acks):
//! - `join` `{name, room}` → `{ok: {name, room}}` or `{error}`: enter a
//!   room, leaving the previous one; a new name in the same room renames;
//! - `say` `{text}` → `{ok: true}` or `{error}`: speak in your room;
//! - from the server, `message` `{room, from, text}` to the room (the
//!   speaker included) and `members` `{room, names}` to a room whenever
//!   its members change (join, switch, rename, a closed tab).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use chito_socketio::socketio::{Ack, Args, Socket, SocketIo};
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;

/// The page, compiled into the binary. Its style is the plain chat's
/// (examples/chat/index.html), put in where the page says so, so that
/// both chats look alike from one stylesheet.
const INDEX_HTML: &str = include_str!("socketio_chat/index.html");

/// The plain chat's page, for its `<style>` element.
const PLAIN_CHAT_HTML: &str = include_str!("../../examples/chat/index.html");

/// Where the page takes the plain chat's style.
const STYLE_MARKER: &str = "<!-- the plain chat's <style> -->";

/// The page as served: [`INDEX_HTML`] with the plain chat's style.
fn page() -> Bytes {
    static PAGE: OnceLock<Bytes> = OnceLock::new();
    PAGE.get_or_init(|| {
        let style = PLAIN_CHAT_HTML.find("<style>").and_then(|start| {
            let rest = PLAIN_CHAT_HTML.get(start..)?;
            let end = rest.find("</style>")? + "</style>".len();
            rest.get(..end)
        });
        Bytes::from(INDEX_HTML.replacen(STYLE_MARKER, style.unwrap_or_default(), 1))
    })
    .clone()
}

/// The page's policy: its own inline style and scripts, the bundle from
/// this origin, connections (polling requests and the WebSocket) to this
/// origin only; a chat line that slipped through as HTML could load or
/// send nothing.
const PAGE_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; \
     script-src 'self' 'unsafe-inline'; connect-src 'self'";

/// Longest display name, in characters.
const MAX_NAME: usize = 32;
/// Longest room name, in characters.
const MAX_ROOM: usize = 32;
/// Longest chat line, in characters.
const MAX_TEXT: usize = 1000;

/// Where `npm ci` puts the bundle (tests/node pins `socket.io-client`).
fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}

/// The official browser bundle, installing it first if it is missing.
fn browser_bundle() -> Result<Bytes, String> {
    let dir = node_dir();
    let bundle = dir.join("node_modules/socket.io-client/dist/socket.io.min.js");
    if !bundle.is_file() {
        eprintln!(
            "socketio_chat: the Socket.IO browser bundle is not installed; running `npm ci` in {} once",
            dir.display()
        );
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            // The same package.json pins playwright-core for the browser
            // test; it must never download a browser.
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run npm ({e}); install Node.js and npm"))?;
        if !status.success() {
            return Err(format!("npm ci in {} failed: {status}", dir.display()));
        }
    }
    std::fs::read(&bundle)
        .map(Bytes::from)
        .map_err(|e| format!("cannot read {}: {e}", bundle.display()))
}

/// Who is in which room: socket id → (name, room).
#[derive(Default)]
struct People(HashMap<String, Person>);

struct Person {
    name: String,
    room: String,
}

/// What every handler shares.
#[derive(Clone)]
struct Chat {
    io: SocketIo,
    people: Arc<Mutex<People>>,
}

impl Chat {
    fn people(&self) -> MutexGuard<'_, People> {
        // A panicking handler leaves the map consistent (one insert or
        // remove at a time); keep serving.
        self.people
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends `room` its member list. Called with the lock held, so the
    /// lists a room receives are in the order of the changes.
    fn announce(&self, people: &People, room: &str) {
        let mut names: Vec<&str> = people
            .0
            .values()
            .filter(|person| person.room == room)
            .map(|person| person.name.as_str())
            .collect();
        names.sort_by_key(|name| name.to_lowercase());
        let _ = self
            .io
            .to(room)
            .emit("members", &json!({ "room": room, "names": names }));
    }

    fn join(&self, socket: &Socket, name: &str, room: &str) {
        let mut people = self.people();
        let previous = people.0.insert(
            socket.id().to_owned(),
            Person {
                name: name.to_owned(),
                room: room.to_owned(),
            },
        );
        if let Some(previous) = previous.filter(|previous| previous.room != room) {
            socket.leave(&previous.room);
            self.announce(&people, &previous.room);
        }
        socket.join(room);
        self.announce(&people, room);
    }

    fn say(&self, socket: &Socket, text: &str) -> Result<(), String> {
        let people = self.people();
        let person = people
            .0
            .get(socket.id())
            .ok_or_else(|| "join a room first".to_owned())?;
        let line = json!({ "room": person.room, "from": person.name, "text": text });
        socket
            .within(&person.room)
            .emit("message", &line)
            .map_err(|e| e.to_string())
    }

    fn left(&self, socket: &Socket) {
        let mut people = self.people();
        if let Some(person) = people.0.remove(socket.id()) {
            self.announce(&people, &person.room);
        }
    }
}

#[derive(Deserialize)]
struct Join {
    name: String,
    room: String,
}

#[derive(Deserialize)]
struct Say {
    text: String,
}

/// A trimmed, non-empty string of at most `max` characters without
/// control characters.
fn checked<'a>(what: &str, value: &'a str, max: usize) -> Result<&'a str, String> {
    let value = value.trim();
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

/// Answers an ack with `{ok: …}` or `{error: text}`.
fn answer(ack: Ack, result: Result<serde_json::Value, String>) {
    let body = match result {
        Ok(ok) => json!({ "ok": ok }),
        Err(error) => json!({ "error": error }),
    };
    let _ = ack.send(&body);
}

fn on_connect(chat: Chat, socket: Socket) {
    let joining = chat.clone();
    socket.on("join", move |socket: Socket, args: Args, ack: Ack| {
        let result = args
            .first::<Join>()
            .map_err(|_| "join needs {name, room} strings".to_owned())
            .and_then(|join| {
                let name = checked("name", &join.name, MAX_NAME)?;
                let room = checked("room", &join.room, MAX_ROOM)?;
                joining.join(&socket, name, room);
                Ok(json!({ "name": name, "room": room }))
            });
        answer(ack, result);
    });
    let saying = chat.clone();
    socket.on("say", move |socket: Socket, args: Args, ack: Ack| {
        let result = args
            .first::<Say>()
            .map_err(|_| "say needs {text} as a string".to_owned())
            .and_then(|say| {
                if say.text.trim().is_empty() {
                    return Err("empty message".to_owned());
                }
                if say.text.chars().count() > MAX_TEXT {
                    return Err(format!("message longer than {MAX_TEXT} characters"));
                }
                saying.say(&socket, &say.text)?;
                Ok(json!(true))
            });
        answer(ack, result);
    });
    socket.on_disconnect(move |socket: Socket| chat.left(&socket));
}

/// Routes one request: Socket.IO under `/socket.io/`, else the page or
/// the bundle.
async fn route(
    io: SocketIo,
    bundle: Bytes,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path().starts_with("/socket.io/") {
        return io.handle(request).await;
    }
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/" | "/index.html") => (StatusCode::OK, "text/html; charset=utf-8", page()),
        (&Method::GET, "/socket.io.min.js") => {
            (StatusCode::OK, "text/javascript; charset=utf-8", bundle)
        }
        (&Method::GET, _) => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"not found\n"),
        ),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"only GET is served here\n"),
        ),
    };
    let response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::CONTENT_SECURITY_POLICY, PAGE_POLICY)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .body(Full::new(body));
    // Every header above is a valid static value: building cannot fail.
    Ok(response.unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
}

fn listen_address() -> Result<SocketAddr, String> {
    let mut args = std::env::args().skip(1);
    let mut listen = "127.0.0.1:8080".to_owned();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().ok_or("--listen needs an address")?,
            "-h" | "--help" => {
                println!("usage: socketio_chat [--listen 127.0.0.1:8080]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    listen
        .parse()
        .map_err(|e| format!("--listen {listen:?}: {e}"))
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("socketio_chat: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let addr = listen_address()?;
    let bundle = browser_bundle()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "chat server listening on http://{}/",
        listener.local_addr()?
    );

    let io = SocketIo::builder().build();
    let chat = Chat {
        io: io.clone(),
        people: Arc::default(),
    };
    io.ns("/", move |socket: Socket| on_connect(chat.clone(), socket));

    loop {
        let (stream, peer) = listener.accept().await?;
        let io = io.clone();
        let bundle = bundle.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                route(io.clone(), bundle.clone(), request)
            });
            let served = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                // The WebSocket transport takes the connection over.
                .with_upgrades()
                .await;
            if let Err(e) = served {
                eprintln!("{peer}: {e}");
            }
        });
    }
}
