//! The browser chat of `examples/chat` as one node of a cluster: several
//! processes, each serving its own browsers, share their rooms through a
//! broker, so two tabs connected to different nodes chat in one room and
//! see each other in the member list.
//!
//! ```text
//! redis-server --port 6379 --save '' --appendonly no &
//! cargo run -p chito-backplane --example chat_node -- \
//!     --listen 127.0.0.1:8081 --backplane redis://127.0.0.1:6379 &
//! cargo run -p chito-backplane --example chat_node -- \
//!     --listen 127.0.0.1:8082 --backplane redis://127.0.0.1:6379 &
//! ```
//!
//! then open http://127.0.0.1:8081/ and http://127.0.0.1:8082/. The page,
//! the JSON protocol and presence are `examples/chat/chat.rs` (included
//! here as in `chito-axum/examples/axum_chat`); axum serves them, with
//! chito's `Rooms::with_backplane` over a `BrokerBackplane`. Besides the
//! page (`/`) and the WebSocket (`/ws`):
//!
//! * `/health`: `{"ok":true,"node":..,"broker":..,"broker_connected":..,
//!   "uptime_s":..}`; `broker` and `broker_connected` are `null` without
//!   `--backplane`. The node keeps serving its own members when the broker
//!   is away, so `ok` stays true then.
//! * `/stats`: the registry's figures (`Rooms::stats`), each room's
//!   (`Rooms::room_stats`, with the broker channel it travels on), the
//!   backplane's counters (`BrokerBackplane::stats`), connections, and
//!   messages and bytes in (counted here, from the WebSockets) and out
//!   (queued to members by the rooms: chat lines and member lists; the
//!   direct replies to one client, `joined` and `error`, are not counted).
//!
//! The inbound counts also go to the `metrics` facade (`chat_messages_in_total`,
//! `chat_bytes_in_total`, `chat_connections`), next to the backplane's
//! `chito_backplane_*`; this example installs no recorder.
//!
//! Flags (`--help` prints them): `--backplane URL` (`redis://`,
//! `redis+sharded://`, `nats://`, `nats+jetstream://`; none: a single node),
//! `--namespace`, `--unsubscribe-after-ms`, `--presence-period-ms`,
//! `--presence-expiry-periods`, `--queue-messages`, and for JetStream
//! `--durable NAME` (the node's durable consumer: give a restarted node the
//! same name and it receives what it missed), `--retention-ms`,
//! `--resume-grace-ms`. The first line printed is
//! `chat server listening on http://ADDR/`, once the broker is connected.
//! SIGINT or SIGTERM stops the node gracefully: the other nodes drop its
//! members at once instead of after the presence expiry.

#[path = "../../examples/chat/chat.rs"]
mod chat;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Extension, Json, Router};
use chat::Member;
use chito::rooms::{RoomStats, Rooms, RoomsStats};
use chito::{CloseFrame, Config, Error, Handler, Message, Sender};
use chito_axum::WebSocketUpgrade;
use chito_backplane::{BackplaneEvent, BrokerBackplane, JetStreamSettings, Settings};
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

const USAGE: &str = "\
usage: chat_node [--listen ADDR] [--backplane URL] [options]
  --listen ADDR                  where to serve (default 127.0.0.1:8080; port 0: any)
  --backplane URL                redis://, redis+sharded://, nats://, nats+jetstream://
                                 (none: a single node)
  --namespace NS                 channel/subject namespace (default chito)
  --unsubscribe-after-ms N       unsubscribe a room N ms after its last local member left
  --presence-period-ms N         publish the presence snapshot every N ms
  --presence-expiry-periods N    drop another node's members after N missed snapshots
  --queue-messages N             publishes that may wait for the broker
  --durable NAME                 JetStream: this node's durable consumer
  --retention-ms N               JetStream: how long the stream keeps messages
  --resume-grace-ms N            JetStream: how long to wait for members after a start";

/// The longest a graceful stop waits for the backplane's goodbye.
const SHUTDOWN: Duration = Duration::from_secs(10);

/// The command line.
struct Args {
    listen: String,
    backplane: Option<String>,
    settings: Settings,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut listen = "127.0.0.1:8080".to_owned();
    let mut backplane = None;
    let mut settings = Settings::default();
    let mut jetstream = JetStreamSettings::default();
    let mut jetstream_set = false;
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let millis = || {
            value
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| format!("{flag}: {value:?} is not a number of milliseconds"))
        };
        let number = || {
            value
                .parse::<u32>()
                .map_err(|_| format!("{flag}: {value:?} is not a number"))
        };
        match flag.as_str() {
            "--listen" => listen = value.clone(),
            "--backplane" => backplane = Some(value.clone()),
            "--namespace" => settings.namespace = value.clone(),
            "--unsubscribe-after-ms" => settings.unsubscribe_debounce = millis()?,
            "--presence-period-ms" => settings.presence_period = millis()?,
            "--presence-expiry-periods" => settings.presence_expiry_periods = number()?,
            "--queue-messages" => settings.queue_messages = number()? as usize,
            "--durable" => {
                jetstream.durable_name = value.clone();
                jetstream_set = true;
            }
            "--retention-ms" => {
                jetstream.max_age = millis()?;
                jetstream.duplicate_window = jetstream.max_age;
                jetstream_set = true;
            }
            "--resume-grace-ms" => {
                jetstream.resume_grace = millis()?;
                jetstream_set = true;
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if jetstream_set {
        if !backplane
            .as_deref()
            .is_some_and(|url| url.starts_with("nats+jetstream://"))
        {
            return Err("--durable, --retention-ms and --resume-grace-ms need \
                        --backplane nats+jetstream://…"
                .into());
        }
        settings.jetstream = Some(jetstream);
    }
    Ok(Args {
        listen,
        backplane,
        settings,
    })
}

/// What the node counts itself (the registry and the backplane count the
/// rest).
#[derive(Default)]
struct Traffic {
    connections_open: AtomicU64,
    connections_total: AtomicU64,
    messages_in: AtomicU64,
    bytes_in: AtomicU64,
}

impl Traffic {
    fn connection(&self, open: bool) {
        if open {
            self.connections_open.fetch_add(1, Ordering::Relaxed);
            self.connections_total.fetch_add(1, Ordering::Relaxed);
            metrics::gauge!("chat_connections").increment(1.0);
        } else {
            self.connections_open.fetch_sub(1, Ordering::Relaxed);
            metrics::gauge!("chat_connections").decrement(1.0);
        }
    }

    fn message_in(&self, bytes: usize) {
        self.messages_in.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
        metrics::counter!("chat_messages_in_total").increment(1);
        metrics::counter!("chat_bytes_in_total").increment(bytes as u64);
    }
}

/// What every request handler shares.
#[derive(Clone)]
struct Node {
    rooms: Rooms,
    backplane: Option<Arc<BrokerBackplane>>,
    /// The backplane URL's scheme (never its credentials).
    broker: Option<String>,
    config: Arc<Config>,
    traffic: Arc<Traffic>,
    started: Instant,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(problem) => {
            if problem.is_empty() {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            eprintln!("chat_node: {problem}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            eprintln!("chat_node: {problem}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;

    let (rooms, backplane) = match &args.backplane {
        Some(url) => {
            let backplane = BrokerBackplane::connect(url, args.settings)
                .await
                .map_err(|e| format!("backplane: {e}"))?;
            log_events(&backplane);
            (Rooms::with_backplane(backplane.clone()), Some(backplane))
        }
        None => (Rooms::new(), None),
    };
    let node = Node {
        rooms,
        backplane,
        broker: args
            .backplane
            .as_deref()
            .map(|url| url.split("://").next().unwrap_or_default().to_owned()),
        config: Arc::new(chat::config()),
        traffic: Arc::default(),
        started: Instant::now(),
    };
    chat::announce_members(&node.rooms);
    println!("chat server listening on http://{local}/");
    println!(
        "node {} (backplane: {})",
        node.rooms.node(),
        node.broker.as_deref().unwrap_or("none")
    );

    let backplane = node.backplane.clone();
    let app = Router::new()
        .route("/", get(page))
        .route("/index.html", get(page))
        .route("/health", get(health))
        .route("/stats", get(stats))
        // `any`, not `get`: a WebSocket over HTTP/2 (RFC 8441) is a CONNECT.
        .route("/ws", any(socket))
        .layer(Extension(Arc::clone(&node.config)))
        .with_state(node);
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    let served = axum::serve(listener, service)
        .with_graceful_shutdown(stop_signal())
        .await;
    if let Some(backplane) = backplane {
        // The goodbye: the other nodes drop this node's members now. Bounded:
        // with the broker away there is no one to say it to.
        if tokio::time::timeout(SHUTDOWN, backplane.shutdown())
            .await
            .is_err()
        {
            eprintln!("chat_node: backplane shutdown took longer than {SHUTDOWN:?}");
        }
    }
    eprintln!("chat_node: stopped");
    served.map_err(|e| e.to_string())
}

/// SIGINT, or SIGTERM on Unix.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Writes the backplane's connection events to the log.
fn log_events(backplane: &BrokerBackplane) {
    let mut events = backplane.events();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(BackplaneEvent::Connected) => eprintln!("backplane: connected"),
                Ok(BackplaneEvent::Disconnected { reason }) => {
                    eprintln!("backplane: disconnected ({reason}); local delivery goes on")
                }
                Ok(BackplaneEvent::Lagged { dropped }) => {
                    eprintln!("backplane: lagged, {dropped} publishes dropped")
                }
                Ok(other) => eprintln!("backplane: {other:?}"),
                Err(RecvError::Lagged(missed)) => {
                    eprintln!("backplane: {missed} events not logged (log too slow)")
                }
                Err(RecvError::Closed) => break,
            }
        }
    });
}

async fn page() -> Response {
    (chat::PAGE_HEADERS, chat::INDEX_HTML).into_response()
}

async fn health(State(node): State<Node>) -> Json<Value> {
    Json(json!({
        "ok": true,
        "node": node.rooms.node().to_string(),
        "broker": node.broker,
        "broker_connected": node.backplane.as_ref().map(|b| b.is_connected()),
        "uptime_s": node.started.elapsed().as_secs_f64(),
    }))
}

async fn stats(State(node): State<Node>) -> Json<Value> {
    let rooms = &node.rooms;
    let totals = rooms.stats();
    let mut per_room = serde_json::Map::new();
    for name in rooms.room_names() {
        let Some(room) = rooms.room_stats(&name) else {
            continue; // emptied meanwhile
        };
        let mut value = room_json(&room, rooms.count(&name));
        if let (Some(backplane), Some(fields)) = (&node.backplane, value.as_object_mut()) {
            fields.insert("channel".into(), backplane.room_channel(&name).into());
        }
        per_room.insert(name, value);
    }
    let traffic = &node.traffic;
    let backplane = node.backplane.as_ref().map(|b| {
        // The backplane writes its own JSON; it always parses.
        serde_json::from_str::<Value>(&b.stats().to_json()).unwrap_or(Value::Null)
    });
    Json(json!({
        "node": rooms.node().to_string(),
        "uptime_s": node.started.elapsed().as_secs_f64(),
        "connections": {
            "open": traffic.connections_open.load(Ordering::Relaxed),
            "total": traffic.connections_total.load(Ordering::Relaxed),
        },
        "messages_in": traffic.messages_in.load(Ordering::Relaxed),
        "bytes_in": traffic.bytes_in.load(Ordering::Relaxed),
        "messages_out": totals.deliveries,
        "bytes_out": totals.bytes_out,
        "rooms_total": rooms_json(&totals),
        "rooms": per_room,
        "backplane": backplane,
    }))
}

fn rooms_json(s: &RoomsStats) -> Value {
    json!({
        "members": s.members,
        "rooms": s.rooms,
        "remote_nodes": s.remote_nodes,
        "remote_members": s.remote_members,
        "emits": s.emits,
        "deliveries": s.deliveries,
        "bytes_out": s.bytes_out,
        "full": s.full,
        "closed": s.closed,
        "published": s.published,
        "publish_failed": s.publish_failed,
        "remote_received": s.remote_received,
        "remote_dropped": s.remote_dropped,
    })
}

fn room_json(s: &RoomStats, count: usize) -> Value {
    json!({
        "count": count,
        "local_members": s.local_members,
        "remote_members": s.remote_members,
        "emits": s.emits,
        "deliveries": s.deliveries,
        "bytes_out": s.bytes_out,
        "full": s.full,
    })
}

async fn socket(
    ws: WebSocketUpgrade,
    State(node): State<Node>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
) -> Response {
    let request = ws.request();
    let host = request
        .header_str("Host")
        .or_else(|| uri.authority().map(|authority| authority.as_str()));
    if !chat::same_origin(request.header_str("Origin"), host) {
        return (StatusCode::FORBIDDEN, "cross-origin WebSocket refused").into_response();
    }
    ws.config(Arc::clone(&node.config))
        .on_upgrade(move |socket| async move {
            node.traffic.connection(true);
            let mut member = Counted {
                member: Member::new(&node.rooms, socket.handle(), peer),
                traffic: Arc::clone(&node.traffic),
            };
            socket.serve(&mut member).await;
            node.traffic.connection(false);
        })
}

/// The chat's handler, counting what arrives.
struct Counted {
    member: Member,
    traffic: Arc<Traffic>,
}

impl Handler for Counted {
    fn on_open(&mut self, sender: &mut Sender<'_>) {
        self.member.on_open(sender);
    }

    fn on_message(&mut self, sender: &mut Sender<'_>, message: Message<'_>) {
        self.traffic.message_in(message.as_bytes().len());
        self.member.on_message(sender, message);
    }

    fn on_ping(&mut self, sender: &mut Sender<'_>, payload: &[u8]) {
        self.member.on_ping(sender, payload);
    }

    fn on_pong(&mut self, sender: &mut Sender<'_>, payload: &[u8]) {
        self.member.on_pong(sender, payload);
    }

    fn on_close(&mut self, frame: &CloseFrame<'_>) {
        self.member.on_close(frame);
    }

    fn on_error(&mut self, error: &Error) {
        self.member.on_error(error);
    }
}
