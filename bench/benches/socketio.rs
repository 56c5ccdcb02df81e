//! Socket.IO servers, same handlers, same client driver, same run:
//! chito-socketio against socketioxide (on axum) and the Node `socket.io`
//! server (docs/socketio.md §12, issue #13 "Benchmark").
//!
//! ```text
//! cargo bench -p chito-bench --bench socketio               # full: 10 000 idle clients, 5 runs, median
//! cargo bench -p chito-bench --bench socketio -- --quick    # smoke: 1 000 idle clients, 1 run (or SIO_BENCH_QUICK=1)
//! SIO_BENCH_SERVERS=chito-socketio,socketioxide cargo bench -p chito-bench --bench socketio
//! SIO_BENCH_RUNS=3 cargo bench -p chito-bench --bench socketio
//! ```
//!
//! Other knobs: `SIO_BENCH_IDLE_CLIENTS` (default 10 000, 1 000 quick),
//! `SIO_BENCH_RATE_CLIENTS` (100), `SIO_BENCH_SECONDS` (the measured window
//! of each events/s scenario: 5, or 1 quick), `SIO_BENCH_FANOUTS` (the
//! fan-outs measured per run: 20, or 5 quick), `SIO_BENCH_PAYLOAD_BYTES`
//! (the echo argument's length: 32).
//!
//! The servers (each alone in a child process pinned to CPU 0 with
//! `taskset`, printing its port on its first stdout line):
//! - `chito-socketio`: this bench re-executed (`CHITO_SIO_SERVER`), a tokio
//!   current-thread runtime, `SocketIo::builder().build()` served by
//!   `SocketIo::serve`.
//! - `socketioxide`: this bench re-executed, a tokio current-thread
//!   runtime, `SocketIo::new_layer()` on an `axum::Router` served by
//!   `axum::serve`, as its axum-echo example is set up.
//! - `node`: `node bench/node/server.js`, socket.io 4.8.x pinned by
//!   bench/node/package-lock.json (installed with `npm ci` on first use).
//!
//! Every server has the same handlers and socket.io's defaults otherwise
//! (pingInterval 25 s, pingTimeout 20 s, no compression): a socket
//! connecting to `/` joins the room `bench`; `echo` acknowledges with its
//! own arguments; `fanout` emits `tick` with its argument to the room
//! `bench`.
//!
//! The driver is this process, pinned to CPU 1, on a tokio current-thread
//! runtime: every client is a chito WebSocket client (no extension
//! offered) speaking Engine.IO v4 / Socket.IO v5 itself — `GET
//! /socket.io/?EIO=4&transport=websocket`, `0{…}` received, `40` sent,
//! `40{"sid":…}` received; every ping `2` answered with `3`. It is the same
//! code for the three servers. Per run and server (servers in a rotated
//! order each run, so the host's noise hits them alike):
//! 1. **idle memory** — a fresh server; its VmRSS once started, then
//!    after N clients have connected to `/` (200 handshakes at a time,
//!    each socket joining `bench`) and the RSS has settled (two readings
//!    1 s apart within 0.5 %, at most 15 s): (after − before) / N.
//! 2. **fan-out** — on those N connections: one client sends
//!    `42["fanout",seq]`, the server emits `42["tick",seq]` to the room of
//!    N; the time from that send to the last client's receipt, median of
//!    20 emits (3 warm-up) one at a time. Every client must get every
//!    tick exactly once, in order. Also the server's CPU time per fan-out
//!    (/proc/<pid>/stat over all the emits).
//! 3. **events/s with acks** — a fresh server, C clients (100) each
//!    emitting `42<id>["echo","<32 bytes>"]` and waiting for
//!    `43<id>["<32 bytes>"]` (checked byte for byte): non-pipelined (one
//!    in flight per client) and pipelined (64 in flight). Acks per second
//!    over the window (after a warm-up), mean, p50 and p99 of send → ack
//!    (the mean too: a server that serves some clients' bursts first has
//!    a low p50 and a long tail), the
//!    server's CPU time per event, and its instructions per event where
//!    `perf stat -e instructions` is supported (probed once).
//!
//! The driver is cross-checked with the official client:
//! `node bench/node/check-client.js PORT` (socket.io-client 4.8.x over
//! WebSocket) connects two clients to a server started by hand and checks
//! the echo ack and a fan-out the same way.
//!
//! Results go to stdout as a table (server, metric, median, runs) and to
//! the repository's `target/socketio-bench.json`. The exit status is
//! non-zero if any server failed (a missing or wrong ack or tick, a lost
//! connection).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chito::tokio::{Handle, WebSocket};
use chito::{Config, Event, Message, OwnedEvent};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

mod common;

use common::{clock_ticks_per_second, load_average, median, percentile, stat_ticks, write_results};

/// The env var that turns this binary into a server.
const SERVER_ENV: &str = "CHITO_SIO_SERVER";
/// Every server, in table order; chito first.
const SERVERS: [&str; 3] = ["chito-socketio", "socketioxide", "node"];
/// The room every socket joins on connecting.
const ROOM: &str = "bench";
/// The echo argument's characters, repeated to the payload's length (none
/// needs escaping in JSON).
const PAYLOAD_ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
/// Handshakes the driver runs at once.
const CONNECT_CONCURRENCY: usize = 200;
/// Longest wait for one client's handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for one fan-out to reach every client.
const FANOUT_TIMEOUT: Duration = Duration::from_secs(10);
/// Pipelined depth: events in flight per client.
const PIPELINE_DEPTH: usize = 64;

fn main() {
    if let Ok(name) = std::env::var(SERVER_ENV) {
        server_main(&name);
        return;
    }
    std::process::exit(match orchestrate() {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("socketio bench: {e}");
            2
        }
    });
}

// ---------------------------------------------------------------------------
// The servers
// ---------------------------------------------------------------------------

fn server_main(name: &str) {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{name} server: tokio runtime: {e}");
            std::process::exit(2);
        }
    };
    let result = runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        println!("{}", listener.local_addr()?.port());
        match name {
            "chito-socketio" => serve_chito(listener).await,
            "socketioxide" => serve_socketioxide(listener).await,
            other => Err(std::io::Error::other(format!("no server named {other}"))),
        }
    });
    if let Err(e) = result {
        eprintln!("{name} server: {e}");
        std::process::exit(2);
    }
}

/// chito-socketio with the bench's handlers.
async fn serve_chito(listener: TcpListener) -> std::io::Result<()> {
    use chito_socketio::socketio::{Ack, Args, Socket, SocketIo};

    let io = SocketIo::builder().build();
    let room_io = io.clone();
    io.ns("/", move |socket: Socket| {
        socket.join(ROOM);
        socket.on("echo", |_socket: Socket, args: Args, ack: Ack| {
            let _ = ack.send_args(&args);
        });
        let io = room_io.clone();
        socket.on("fanout", move |_socket: Socket, args: Args, _ack: Ack| {
            if let Ok(seq) = args.first::<u64>() {
                let _ = io.to(ROOM).emit("tick", &seq);
            }
        });
    });
    io.serve(listener).await
}

/// socketioxide on axum with the bench's handlers.
async fn serve_socketioxide(listener: TcpListener) -> std::io::Result<()> {
    use socketioxide::extract::{AckSender, Data, SocketRef};
    use socketioxide::SocketIo;

    let (layer, io) = SocketIo::new_layer();
    io.ns("/", async |socket: SocketRef| {
        socket.join(ROOM);
        // The argument is a JSON string: the cheapest extractor that takes
        // it (no generic JSON value) and acknowledges it as it came.
        socket.on("echo", async |Data::<String>(data), ack: AckSender| {
            let _ = ack.send(&data);
        });
        socket.on("fanout", async |io: SocketIo, Data::<u64>(seq)| {
            let _ = io.to(ROOM).emit("tick", &seq).await;
        });
    });
    let app = axum::Router::new().layer(layer);
    axum::serve(listener, app).await
}

/// A server child process, pinned to CPU 0; killed (and reaped) on drop.
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
}

impl ServerProcess {
    fn start(name: &str, pinned: bool) -> Result<Self, String> {
        let mut command = if pinned {
            let mut c = Command::new("taskset");
            c.args(["-c", "0"]);
            c
        } else {
            // `env` only execs its argument: the same process tree shape.
            Command::new("env")
        };
        if name == "node" {
            command.arg("node").arg("server.js").current_dir(node_dir());
        } else {
            let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
            command.arg(exe).env(SERVER_ENV, name);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command
            .spawn()
            .map_err(|e| format!("spawn {name} server: {e}"))?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{name} server: no stdout"));
        };
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        match (read, line.trim().parse::<u16>()) {
            (Ok(_), Ok(port)) => Ok(ServerProcess {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
            }),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "{name} server did not report a port (first line {:?})",
                    line.trim()
                ))
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident set, in KiB (`VmRSS` of /proc/<pid>/status).
    fn rss_kib(&self) -> Result<u64, String> {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("no VmRSS in {path}"))
    }

    /// User + system CPU time of the whole process, in clock ticks.
    fn cpu_ticks(&self) -> Option<u64> {
        stat_ticks(Path::new(&format!("/proc/{}/stat", self.pid())))
    }

    fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("server exited: {status}")),
            Err(e) => Err(format!("server wait: {e}")),
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn node_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/node"))
}

/// Node and bench/node's locked packages, installed with `npm ci` if
/// missing; the reason when they cannot be.
fn node_ready() -> Result<String, String> {
    let version = Command::new("node")
        .arg("--version")
        .output()
        .map_err(|e| format!("node: {e}"))?;
    let dir = node_dir();
    if !dir.join("node_modules/socket.io/package.json").exists() {
        println!("installing bench/node's packages (npm ci) ...");
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("npm: {e}"))?;
        if !status.success() {
            return Err(format!("npm ci in {}: {status}", dir.display()));
        }
    }
    let package = std::fs::read_to_string(dir.join("node_modules/socket.io/package.json"))
        .map_err(|e| format!("socket.io's package.json: {e}"))?;
    let socketio = package
        .lines()
        .find_map(|l| l.trim().strip_prefix("\"version\": \""))
        .and_then(|v| v.split('"').next())
        .unwrap_or("?");
    Ok(format!(
        "socket.io {socketio} on node {}",
        String::from_utf8_lossy(&version.stdout).trim()
    ))
}

// ---------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Settings {
    quick: bool,
    runs: usize,
    idle_clients: usize,
    rate_clients: usize,
    warmup: Duration,
    window: Duration,
    fanouts: usize,
    fanout_warmup: usize,
    /// The echo event's argument, a JSON string of this many bytes.
    payload: Arc<str>,
    servers: Vec<&'static str>,
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let quick = std::env::args().any(|a| a == "--quick")
            || std::env::var("SIO_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let number = |name: &str, default: usize| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(default)
        };
        let servers = match std::env::var("SIO_BENCH_SERVERS") {
            Ok(list) => {
                let mut chosen = Vec::new();
                for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    match SERVERS.iter().find(|s| **s == name) {
                        Some(s) => chosen.push(*s),
                        None => {
                            return Err(format!("unknown server {name:?} (known: {SERVERS:?})"))
                        }
                    }
                }
                chosen
            }
            Err(_) => SERVERS.to_vec(),
        };
        let seconds = number("SIO_BENCH_SECONDS", if quick { 1 } else { 5 }).max(1);
        Ok(Settings {
            quick,
            runs: number("SIO_BENCH_RUNS", if quick { 1 } else { 5 }).max(1),
            idle_clients: number("SIO_BENCH_IDLE_CLIENTS", if quick { 1_000 } else { 10_000 })
                .max(1),
            rate_clients: number("SIO_BENCH_RATE_CLIENTS", 100).max(1),
            warmup: Duration::from_millis(if quick { 300 } else { 1_000 }),
            window: Duration::from_secs(seconds as u64),
            fanouts: number("SIO_BENCH_FANOUTS", if quick { 5 } else { 20 }).max(1),
            fanout_warmup: if quick { 1 } else { 3 },
            payload: PAYLOAD_ALPHABET
                .iter()
                .cycle()
                .take(number("SIO_BENCH_PAYLOAD_BYTES", 32).max(1))
                .map(|&b| char::from(b))
                .collect::<String>()
                .into(),
            servers,
        })
    }
}

// ---------------------------------------------------------------------------
// The driver's Socket.IO client
// ---------------------------------------------------------------------------

/// Connects a client to `/`: the WebSocket upgrade to Engine.IO, its open
/// packet, the Socket.IO CONNECT and its answer.
async fn connect(addr: SocketAddr, config: &Config) -> Result<WebSocket<TcpStream>, String> {
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = chito::tokio::connect_with(&url, config.clone())
        .await
        .map_err(|e| format!("connect: {e}"))?;
    // engine.io-protocol: the server speaks first, with the open packet
    // `0{"sid":…,"upgrades":[],"pingInterval":…,…}`.
    match ws.recv().await {
        Ok(OwnedEvent::Text(open)) if open.starts_with("0{") => {}
        other => return Err(format!("expected the Engine.IO open packet, got {other:?}")),
    }
    // socket.io-protocol: CONNECT to the main namespace, no auth.
    ws.send(Message::Text("40"))
        .await
        .map_err(|e| format!("send CONNECT: {e}"))?;
    loop {
        match ws.recv().await {
            Ok(OwnedEvent::Text(text)) if text.starts_with("40{") => return Ok(ws),
            Ok(OwnedEvent::Text(text)) if text == "2" => ws
                .send(Message::Text("3"))
                .await
                .map_err(|e| format!("send pong: {e}"))?,
            other => return Err(format!("expected the CONNECT answer, got {other:?}")),
        }
    }
}

/// `config` for the driver's clients: nothing offered (no compression on
/// any server), otherwise chito's defaults.
fn client_config() -> Config {
    let mut config = Config::default();
    config.deflate = None;
    config
}

// ---------------------------------------------------------------------------
// Idle clients and fan-out
// ---------------------------------------------------------------------------

/// What the idle clients share with the driver.
struct IdleShared {
    clients: usize,
    connected: AtomicUsize,
    /// The tick being waited for, and how many clients have it.
    current: AtomicU64,
    arrived: AtomicUsize,
    last_arrival: Mutex<Option<Instant>>,
    all_arrived: Notify,
    all_connected: Notify,
    /// Set before the server is stopped: errors after it are expected.
    closing: AtomicBool,
    failures: Mutex<Vec<String>>,
    /// Client 0's sender: it triggers the fan-outs.
    trigger: Mutex<Option<Handle>>,
}

impl IdleShared {
    fn fail(&self, message: String) {
        if !self.closing.load(Ordering::SeqCst) {
            if let Ok(mut failures) = self.failures.lock() {
                failures.push(message);
            }
            // Wake the driver: it checks failures when woken.
            self.all_arrived.notify_one();
            self.all_connected.notify_one();
        }
    }

    fn failed(&self) -> Option<String> {
        self.failures.lock().ok()?.first().cloned()
    }
}

async fn idle_client(
    index: usize,
    addr: SocketAddr,
    config: Arc<Config>,
    shared: Arc<IdleShared>,
    permits: Arc<Semaphore>,
) {
    if let Err(e) = idle_client_inner(index, addr, &config, &shared, permits).await {
        shared.fail(format!("client {index}: {e}"));
    }
}

async fn idle_client_inner(
    index: usize,
    addr: SocketAddr,
    config: &Config,
    shared: &IdleShared,
    permits: Arc<Semaphore>,
) -> Result<(), String> {
    let permit = permits.acquire_owned().await.map_err(|e| e.to_string())?;
    let ws = tokio::time::timeout(CONNECT_TIMEOUT, connect(addr, config))
        .await
        .map_err(|_| "handshake timed out".to_string())??;
    drop(permit);
    let (handle, mut read) = ws.split();
    if index == 0 {
        if let Ok(mut trigger) = shared.trigger.lock() {
            *trigger = Some(handle);
        }
    } else {
        drop(handle);
    }
    if shared.connected.fetch_add(1, Ordering::SeqCst) + 1 == shared.clients {
        shared.all_connected.notify_one();
    }
    let mut last_seq = 0u64;
    loop {
        let (event, mut sender) = read.recv_event().await.map_err(|e| e.to_string())?;
        match event {
            // engine.io-protocol: a ping is answered with a pong.
            Event::Text("2") => sender
                .send(Message::Text("3"))
                .map_err(|e| format!("pong: {e}"))?,
            Event::Text(text) => {
                let seq = text
                    .strip_prefix("42[\"tick\",")
                    .and_then(|rest| rest.strip_suffix(']'))
                    .and_then(|n| n.parse::<u64>().ok())
                    .ok_or_else(|| format!("unexpected packet {text:?}"))?;
                if seq <= last_seq {
                    return Err(format!("tick {seq} after {last_seq}"));
                }
                last_seq = seq;
                let current = shared.current.load(Ordering::SeqCst);
                if seq != current {
                    return Err(format!("tick {seq} while {current} was sent"));
                }
                if shared.arrived.fetch_add(1, Ordering::SeqCst) + 1 == shared.clients {
                    if let Ok(mut last) = shared.last_arrival.lock() {
                        *last = Some(Instant::now());
                    }
                    shared.all_arrived.notify_one();
                }
            }
            Event::Ping(_) | Event::Pong(_) => {}
            Event::Binary(_) => return Err("unexpected binary message".into()),
            Event::Close(_) => return Err("the server closed the connection".into()),
        }
    }
}

/// One run's idle-memory and fan-out numbers for one server.
struct IdleResult {
    kib_per_client: f64,
    connect_secs: f64,
    fanout_ms: Vec<f64>,
    server_cpu_ms_per_fanout: f64,
    driver_cpu_ms_per_fanout: f64,
}

async fn run_idle(settings: &Settings, server: &mut ServerProcess) -> Result<IdleResult, String> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss_kib()?;
    let clients = settings.idle_clients;
    let shared = Arc::new(IdleShared {
        clients,
        connected: AtomicUsize::new(0),
        current: AtomicU64::new(0),
        arrived: AtomicUsize::new(0),
        last_arrival: Mutex::new(None),
        all_arrived: Notify::new(),
        all_connected: Notify::new(),
        closing: AtomicBool::new(false),
        failures: Mutex::new(Vec::new()),
        trigger: Mutex::new(None),
    });
    let config = Arc::new(client_config());
    let permits = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let mut tasks = JoinSet::new();
    let start = Instant::now();
    for index in 0..clients {
        tasks.spawn(idle_client(
            index,
            server.addr,
            Arc::clone(&config),
            Arc::clone(&shared),
            Arc::clone(&permits),
        ));
    }
    let result = idle_measure(settings, server, &shared, before, start).await;
    // Errors from here on are the teardown's.
    shared.closing.store(true, Ordering::SeqCst);
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    result
}

async fn idle_measure(
    settings: &Settings,
    server: &mut ServerProcess,
    shared: &IdleShared,
    before: u64,
    start: Instant,
) -> Result<IdleResult, String> {
    let clients = settings.idle_clients;
    let deadline = Instant::now() + Duration::from_secs(120);
    while shared.connected.load(Ordering::SeqCst) < clients {
        if let Some(e) = shared.failed() {
            return Err(e);
        }
        server.check_alive()?;
        if Instant::now() > deadline {
            return Err(format!(
                "{} of {clients} clients connected in 120 s",
                shared.connected.load(Ordering::SeqCst)
            ));
        }
        let _ =
            tokio::time::timeout(Duration::from_millis(200), shared.all_connected.notified()).await;
    }
    let connect_secs = start.elapsed().as_secs_f64();
    // Settle: two readings a second apart within 0.5 %, at least 2 s in,
    // at most 15 s.
    let settle_start = Instant::now();
    let mut previous = server.rss_kib()?;
    let after = loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = server.rss_kib()?;
        let stable = now.abs_diff(previous) * 200 <= previous;
        if (stable && settle_start.elapsed() >= Duration::from_secs(2))
            || settle_start.elapsed() >= Duration::from_secs(15)
        {
            break now;
        }
        previous = now;
    };
    if let Some(e) = shared.failed() {
        return Err(e);
    }
    let kib_per_client = (after as f64 - before as f64) / clients as f64;

    let trigger = shared
        .trigger
        .lock()
        .map_err(|_| "trigger lock poisoned".to_string())?
        .clone()
        .ok_or("client 0 has no sender")?;
    let mut fanout_ms = Vec::with_capacity(settings.fanouts);
    let mut text = String::with_capacity(32);
    let mut server_ticks = 0u64;
    let mut driver_ticks = 0u64;
    for seq in 1..=(settings.fanout_warmup + settings.fanouts) as u64 {
        shared.arrived.store(0, Ordering::SeqCst);
        shared.current.store(seq, Ordering::SeqCst);
        if let Ok(mut last) = shared.last_arrival.lock() {
            *last = None;
        }
        text.clear();
        let _ = write!(text, "42[\"fanout\",{seq}]");
        let server_t0 = server.cpu_ticks();
        let driver_t0 = stat_ticks(Path::new("/proc/self/stat"));
        let sent = Instant::now();
        trigger
            .try_send(Message::Text(&text))
            .map_err(|e| format!("trigger: {e:?}"))?;
        let deadline = sent + FANOUT_TIMEOUT;
        let done = loop {
            if let Some(e) = shared.failed() {
                return Err(e);
            }
            if let Ok(last) = shared.last_arrival.lock() {
                if let Some(done) = *last {
                    break done;
                }
            }
            let now = Instant::now();
            if now > deadline {
                return Err(format!(
                    "fan-out {seq}: {} of {clients} clients got it in {FANOUT_TIMEOUT:?}",
                    shared.arrived.load(Ordering::SeqCst)
                ));
            }
            let _ = tokio::time::timeout(deadline - now, shared.all_arrived.notified()).await;
        };
        if seq > settings.fanout_warmup as u64 {
            fanout_ms.push(done.duration_since(sent).as_secs_f64() * 1e3);
            if let (Some(a), Some(b)) = (server_t0, server.cpu_ticks()) {
                server_ticks += b.saturating_sub(a);
            }
            if let (Some(a), Some(b)) = (driver_t0, stat_ticks(Path::new("/proc/self/stat"))) {
                driver_ticks += b.saturating_sub(a);
            }
        }
        // A pause so one fan-out's tail (the server's writes) does not
        // overlap the next one's trigger.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let per_fanout =
        |ticks: u64| ticks as f64 / clock_ticks_per_second() * 1e3 / settings.fanouts as f64;
    Ok(IdleResult {
        kib_per_client,
        connect_secs,
        fanout_ms,
        server_cpu_ms_per_fanout: per_fanout(server_ticks),
        driver_cpu_ms_per_fanout: per_fanout(driver_ticks),
    })
}

// ---------------------------------------------------------------------------
// Events per second with acks
// ---------------------------------------------------------------------------

/// What the emitting clients share with the driver.
struct RateShared {
    acks: AtomicU64,
    recording: AtomicBool,
    stop: AtomicBool,
}

/// Emits `echo` with acks, `depth` in flight, until told to stop; returns
/// the send → ack latencies (µs) of the acks received while recording.
async fn rate_client(
    mut ws: WebSocket<TcpStream>,
    depth: usize,
    payload: Arc<str>,
    shared: Arc<RateShared>,
) -> Result<Vec<u32>, String> {
    let payload = &*payload;
    // The ack's text after `43<id>`: the event's own arguments.
    let expected = format!("[\"{payload}\"]");
    // Send times by id; ids are sequential and at most `depth` are in
    // flight, so a slot is free again by the time its id comes round
    // unless an ack went missing (checked).
    let ring = (2 * depth).next_power_of_two();
    let mut sent: Vec<(u64, Option<Instant>)> = vec![(0, None); ring];
    let mut latencies = Vec::new();
    let mut text = String::with_capacity(64);
    let mut next_id = 0u64;
    let mut in_flight = 0usize;
    let build = |text: &mut String, id: u64| {
        text.clear();
        let _ = write!(text, "42{id}[\"echo\",\"{payload}\"]");
    };
    for _ in 0..depth {
        build(&mut text, next_id);
        sent[next_id as usize % ring] = (next_id, Some(Instant::now()));
        next_id += 1;
        in_flight += 1;
        ws.send(Message::Text(&text))
            .await
            .map_err(|e| format!("send: {e}"))?;
    }
    loop {
        let (event, mut sender) = ws.recv_event().await.map_err(|e| e.to_string())?;
        let text_in = match event {
            Event::Text(t) => t,
            Event::Ping(_) | Event::Pong(_) => continue,
            other => return Err(format!("unexpected event {other:?}")),
        };
        if text_in == "2" {
            sender
                .send(Message::Text("3"))
                .map_err(|e| format!("pong: {e}"))?;
            continue;
        }
        // socket.io-protocol: ACK is `3` after Engine.IO's message `4`,
        // then the id, then the arguments.
        let body = text_in
            .strip_prefix("43")
            .ok_or_else(|| format!("unexpected packet {text_in:?}"))?;
        let digits = body.bytes().take_while(u8::is_ascii_digit).count();
        let id: u64 = body[..digits]
            .parse()
            .map_err(|_| format!("ack without an id: {text_in:?}"))?;
        if &body[digits..] != expected.as_str() {
            return Err(format!("ack {id} carries {:?}", &body[digits..]));
        }
        let slot = &mut sent[id as usize % ring];
        let at = match *slot {
            (slot_id, Some(at)) if slot_id == id => at,
            _ => return Err(format!("ack {id} for no event in flight")),
        };
        slot.1 = None;
        in_flight -= 1;
        shared.acks.fetch_add(1, Ordering::Relaxed);
        if shared.recording.load(Ordering::Relaxed) {
            latencies.push(at.elapsed().as_micros().min(u32::MAX as u128) as u32);
        }
        if shared.stop.load(Ordering::Relaxed) {
            if in_flight == 0 {
                return Ok(latencies);
            }
            continue;
        }
        let slot = &mut sent[next_id as usize % ring];
        if slot.1.is_some() {
            return Err(format!("event {} never acknowledged", slot.0));
        }
        build(&mut text, next_id);
        *slot = (next_id, Some(Instant::now()));
        next_id += 1;
        in_flight += 1;
        // Written by the next recv_event, with any other reply.
        sender
            .send(Message::Text(&text))
            .map_err(|e| format!("send: {e}"))?;
    }
}

/// One run's events/s numbers for one server at one depth.
struct RateResult {
    events_per_sec: f64,
    mean_us: f64,
    p50_us: f64,
    p99_us: f64,
    server_cpu_percent: f64,
    server_cpu_us_per_event: f64,
    driver_cpu_percent: f64,
    instructions_per_event: Option<f64>,
}

async fn run_rate(
    settings: &Settings,
    server: &mut ServerProcess,
    depth: usize,
    perf: bool,
) -> Result<RateResult, String> {
    let config = client_config();
    let mut clients = Vec::with_capacity(settings.rate_clients);
    let permits = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let mut connecting = JoinSet::new();
    for _ in 0..settings.rate_clients {
        let config = config.clone();
        let permits = Arc::clone(&permits);
        let addr = server.addr;
        connecting.spawn(async move {
            let _permit = permits.acquire_owned().await.map_err(|e| e.to_string())?;
            tokio::time::timeout(CONNECT_TIMEOUT, connect(addr, &config))
                .await
                .map_err(|_| "handshake timed out".to_string())?
        });
    }
    while let Some(joined) = connecting.join_next().await {
        clients.push(joined.map_err(|e| e.to_string())??);
    }
    let shared = Arc::new(RateShared {
        acks: AtomicU64::new(0),
        recording: AtomicBool::new(false),
        stop: AtomicBool::new(false),
    });
    let mut tasks = JoinSet::new();
    for ws in clients {
        tasks.spawn(rate_client(
            ws,
            depth,
            Arc::clone(&settings.payload),
            Arc::clone(&shared),
        ));
    }
    tokio::time::sleep(settings.warmup).await;
    let perf_child = if perf { start_perf(server.pid()) } else { None };
    let acks0 = shared.acks.load(Ordering::Relaxed);
    let server0 = server.cpu_ticks();
    let driver0 = stat_ticks(Path::new("/proc/self/stat"));
    shared.recording.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(settings.window).await;
    let acks1 = shared.acks.load(Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    let server1 = server.cpu_ticks();
    let driver1 = stat_ticks(Path::new("/proc/self/stat"));
    shared.recording.store(false, Ordering::Relaxed);
    let instructions = perf_child.and_then(stop_perf);
    shared.stop.store(true, Ordering::Relaxed);
    let mut latencies: Vec<f64> = Vec::new();
    let drain = tokio::time::timeout(Duration::from_secs(10), async {
        let mut first_error = None;
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(l)) => latencies.extend(l.into_iter().map(f64::from)),
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    first_error.get_or_insert(e.to_string());
                }
            }
        }
        first_error
    })
    .await;
    match drain {
        Ok(None) => {}
        Ok(Some(e)) => return Err(e),
        Err(_) => return Err("clients did not get their last acks in 10 s".into()),
    }
    server.check_alive()?;
    let events = (acks1 - acks0) as f64;
    let ticks = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => b.saturating_sub(a) as f64 / clock_ticks_per_second(),
        _ => f64::NAN,
    };
    let server_cpu = ticks(server0, server1);
    Ok(RateResult {
        events_per_sec: events / elapsed,
        mean_us: latencies.iter().sum::<f64>() / latencies.len().max(1) as f64,
        p50_us: percentile(&mut latencies, 50.0),
        p99_us: percentile(&mut latencies, 99.0),
        server_cpu_percent: server_cpu / elapsed * 100.0,
        server_cpu_us_per_event: server_cpu * 1e6 / events.max(1.0),
        driver_cpu_percent: ticks(driver0, driver1) / elapsed * 100.0,
        instructions_per_event: instructions.map(|i| i as f64 / events.max(1.0)),
    })
}

// ---------------------------------------------------------------------------
// perf stat
// ---------------------------------------------------------------------------

/// Whether `perf stat -e instructions` counts here (not in many VMs); the
/// reason when not.
fn perf_probe() -> Result<(), String> {
    let output = Command::new("perf")
        .args(["stat", "-x", ",", "-e", "instructions", "true"])
        .output()
        .map_err(|e| format!("perf: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let counted = stderr
        .lines()
        .filter(|l| l.contains("instructions"))
        .any(|l| {
            l.split(',')
                .next()
                .is_some_and(|v| v.parse::<u64>().is_ok())
        });
    if output.status.success() && counted {
        Ok(())
    } else {
        Err(format!(
            "perf stat -e instructions: {}",
            stderr
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no count")
                .trim()
        ))
    }
}

fn start_perf(pid: u32) -> Option<Child> {
    Command::new("perf")
        .args([
            "stat",
            "-x",
            ",",
            "-e",
            "instructions",
            "-p",
            &pid.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .ok()
}

/// Stops `perf stat` (SIGINT makes it print its counts) and reads the
/// instructions it counted.
fn stop_perf(child: Child) -> Option<u64> {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let output = child.wait_with_output().ok()?;
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| l.contains("instructions"))
        .find_map(|l| l.split(',').next()?.parse().ok())
}

// ---------------------------------------------------------------------------
// Orchestration
// ---------------------------------------------------------------------------

/// Pins this process (all threads) to CPU 1 with taskset, and checks that
/// CPU 0 can take the servers; false if either is not possible.
fn pin_self() -> bool {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        return false;
    }
    let ok = |mut c: Command| {
        c.stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let mut me = Command::new("taskset");
    me.args(["-a", "-p", "-c", "1", &std::process::id().to_string()]);
    let mut probe = Command::new("taskset");
    probe.args(["-c", "0", "true"]);
    ok(me) && ok(probe)
}

/// Every measurement of one server, one value per run.
#[derive(Default)]
struct Series {
    values: BTreeMap<&'static str, Vec<f64>>,
}

impl Series {
    fn push(&mut self, metric: &'static str, value: f64) {
        self.values.entry(metric).or_default().push(value);
    }
}

/// The table's metrics, in order: name, unit shown, whether higher is
/// better (for the comparison).
const METRICS: [(&str, &str, bool); 16] = [
    ("idle_kib_per_client", "KiB/client idle", false),
    ("connect_seconds", "s to connect all", false),
    ("fanout_ms", "fan-out ms", false),
    ("fanout_server_cpu_ms", "fan-out server CPU ms", false),
    ("rate1_events_per_sec", "events/s 1 in flight", true),
    ("rate1_mean_us", "  mean µs", false),
    ("rate1_p50_us", "  p50 µs", false),
    ("rate1_p99_us", "  p99 µs", false),
    (
        "rate1_server_cpu_us_per_event",
        "  server CPU µs/event",
        false,
    ),
    (
        "rate1_instructions_per_event",
        "  instructions/event",
        false,
    ),
    ("rate64_events_per_sec", "events/s 64 in flight", true),
    ("rate64_mean_us", "  mean µs", false),
    ("rate64_p50_us", "  p50 µs", false),
    ("rate64_p99_us", "  p99 µs", false),
    (
        "rate64_server_cpu_us_per_event",
        "  server CPU µs/event",
        false,
    ),
    (
        "rate64_instructions_per_event",
        "  instructions/event",
        false,
    ),
];

fn orchestrate() -> Result<bool, String> {
    let settings = Settings::from_env()?;
    let nofile = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    if nofile < settings.idle_clients as u64 + 64 {
        return Err(format!(
            "open-file limit {nofile} is too low for {} clients",
            settings.idle_clients
        ));
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pinned = pin_self();
    let perf = perf_probe();
    let mut servers = settings.servers.clone();
    let mut versions = BTreeMap::new();
    versions.insert("chito-socketio", "this workspace".to_string());
    versions.insert("socketioxide", crate_version("socketioxide"));
    if servers.contains(&"node") {
        match node_ready() {
            Ok(v) => {
                versions.insert("node", v);
            }
            Err(e) => {
                println!("node server skipped: {e}");
                servers.retain(|s| *s != "node");
            }
        }
    }
    let load_start = load_average();
    println!(
        "socketio bench ({}): {} idle clients, {} emitting clients ({}-byte echo argument), {:?} + {:?} windows, {} fan-outs (+{} warm-up), {} run(s)",
        if settings.quick { "quick" } else { "full" },
        settings.idle_clients,
        settings.rate_clients,
        settings.payload.len(),
        settings.warmup,
        settings.window,
        settings.fanouts,
        settings.fanout_warmup,
        settings.runs
    );
    for server in &servers {
        println!(
            "  {server}: {}",
            versions.get(server).map_or("?", |v| v.as_str())
        );
    }
    println!(
        "servers: one process each, tokio current-thread (Node: its event loop){}; driver: chito tokio client, current-thread{}",
        if pinned { ", pinned to CPU 0" } else { ", NOT PINNED" },
        if pinned { ", pinned to CPU 1" } else { ", NOT PINNED" },
    );
    println!(
        "machine: {cpus} CPUs, load average {load_start} at start; open-file limit {nofile}; instructions: {}",
        match &perf {
            Ok(()) => "perf stat".to_string(),
            Err(e) => format!("unsupported ({e})"),
        }
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let mut series: BTreeMap<&'static str, Series> = BTreeMap::new();
    let mut failures: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    for run in 0..settings.runs {
        let mut order = servers.clone();
        if !order.is_empty() {
            let shift = run % order.len();
            order.rotate_left(shift);
        }
        for &name in &order {
            if failures.iter().any(|f| f.starts_with(name)) {
                continue;
            }
            let result = runtime.block_on(measure(&settings, name, pinned, perf.is_ok()));
            match result {
                Ok((values, note)) => {
                    println!("run {} {name}: {note}", run + 1);
                    notes.push(format!("run {} {name}: {note}", run + 1));
                    let s = series.entry(name).or_default();
                    for (metric, value) in values {
                        s.push(metric, value);
                    }
                }
                Err(e) => {
                    println!("run {} {name}: FAILED: {e}", run + 1);
                    failures.push(format!("{name}: run {}: {e}", run + 1));
                }
            }
        }
    }
    drop(runtime);
    let load_end = load_average();
    print_table(&servers, &series);
    println!();
    println!("idle: (VmRSS after N clients settled - before) / N. fan-out: client 0 sends 42[\"fanout\",seq] -> the last of N clients has 42[\"tick\",seq] (median of the emits; the driver's reading of N messages on one core is inside it).");
    println!("events/s: acks per second over the window; mean/p50/p99: send -> ack per event; server CPU from /proc/<pid>/stat (10 ms ticks).");
    println!(
        "load average: {load_start} at start, {load_end} at end ({cpus} CPUs; other jobs share this machine, so absolute numbers move; the servers alternate run by run)."
    );
    let json = to_json(
        &settings,
        &servers,
        &versions,
        &series,
        &failures,
        &notes,
        pinned,
        &load_start,
        &load_end,
    );
    write_results("socketio-bench.json", &json);
    if !failures.is_empty() {
        eprintln!("\nFAILED:");
        for f in &failures {
            eprintln!("  {f}");
        }
    }
    Ok(failures.is_empty())
}

/// One run of one server: idle memory and fan-out on one server process,
/// then both events/s scenarios on a fresh one.
async fn measure(
    settings: &Settings,
    name: &str,
    pinned: bool,
    perf: bool,
) -> Result<(Vec<(&'static str, f64)>, String), String> {
    let mut values = Vec::new();
    let mut server = ServerProcess::start(name, pinned)?;
    let idle = run_idle(settings, &mut server).await?;
    drop(server);
    let mut fanout = idle.fanout_ms.clone();
    let fanout_median = median(&fanout);
    let fanout_max = percentile(&mut fanout, 100.0);
    values.push(("idle_kib_per_client", idle.kib_per_client));
    values.push(("connect_seconds", idle.connect_secs));
    values.push(("fanout_ms", fanout_median));
    values.push(("fanout_server_cpu_ms", idle.server_cpu_ms_per_fanout));

    let mut server = ServerProcess::start(name, pinned)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let one = run_rate(settings, &mut server, 1, perf).await?;
    let many = run_rate(settings, &mut server, PIPELINE_DEPTH, perf).await?;
    drop(server);
    for (prefix, r) in [("rate1", &one), ("rate64", &many)] {
        let key = |metric: &str| -> &'static str {
            METRICS
                .iter()
                .map(|m| m.0)
                .find(|m| m.strip_prefix(prefix).and_then(|r| r.strip_prefix('_')) == Some(metric))
                .unwrap_or("unknown")
        };
        values.push((key("events_per_sec"), r.events_per_sec));
        values.push((key("mean_us"), r.mean_us));
        values.push((key("p50_us"), r.p50_us));
        values.push((key("p99_us"), r.p99_us));
        values.push((key("server_cpu_us_per_event"), r.server_cpu_us_per_event));
        if let Some(i) = r.instructions_per_event {
            values.push((key("instructions_per_event"), i));
        }
    }
    let note = format!(
        "{:.2} KiB/client, connect {:.1} s, fan-out {:.2} ms (max {:.2}; server CPU {:.1} ms, driver CPU {:.1} ms per fan-out); 1 in flight {:.0}/s (server {:.0}%, driver {:.0}% CPU); 64 in flight {:.0}/s (server {:.0}%, driver {:.0}% CPU)",
        idle.kib_per_client,
        idle.connect_secs,
        fanout_median,
        fanout_max,
        idle.server_cpu_ms_per_fanout,
        idle.driver_cpu_ms_per_fanout,
        one.events_per_sec,
        one.server_cpu_percent,
        one.driver_cpu_percent,
        many.events_per_sec,
        many.server_cpu_percent,
        many.driver_cpu_percent,
    );
    Ok((values, note))
}

/// A crate's version in the workspace's lock file this bench was built with.
fn crate_version(name: &str) -> String {
    let lock = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock"));
    let needle = format!("name = \"{name}\"\nversion = \"");
    lock.find(&needle)
        .and_then(|i| lock[i + needle.len()..].split('"').next())
        .map_or_else(|| "?".to_string(), |v| format!("{name} {v}"))
}

fn format_value(metric: &str, v: f64) -> String {
    if v.is_nan() {
        "-".to_string()
    } else if metric.contains("events_per_sec") || metric.contains("instructions") || v >= 1000.0 {
        format!("{v:.0}")
    } else if v >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn print_table(servers: &[&'static str], series: &BTreeMap<&'static str, Series>) {
    println!();
    println!("{:<16} {:<24} {:>12}  runs", "server", "metric", "median");
    for (metric, label, higher_better) in METRICS {
        let mut medians: Vec<(&str, f64)> = Vec::new();
        for &server in servers {
            let Some(values) = series.get(server).and_then(|s| s.values.get(metric)) else {
                continue;
            };
            let m = median(values);
            medians.push((server, m));
            println!(
                "{:<16} {:<24} {:>12}  [{}]",
                server,
                label,
                format_value(metric, m),
                values
                    .iter()
                    .map(|v| format_value(metric, *v))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let chito = medians
            .iter()
            .find(|(s, _)| *s == "chito-socketio")
            .map(|m| m.1);
        let best_peer = medians
            .iter()
            .filter(|(s, v)| *s != "chito-socketio" && !v.is_nan())
            .map(|m| m.1)
            .reduce(|a, b| if (a > b) == higher_better { a } else { b });
        if let (Some(c), Some(p)) = (chito, best_peer) {
            if c > 0.0 && p > 0.0 {
                // > 1: chito is better by that factor.
                let factor = if higher_better { c / p } else { p / c };
                println!("{:<16} {:<24} {:>11.2}x", "  chito vs best", "", factor);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn to_json(
    settings: &Settings,
    servers: &[&'static str],
    versions: &BTreeMap<&'static str, String>,
    series: &BTreeMap<&'static str, Series>,
    failures: &[String],
    notes: &[String],
    pinned: bool,
    load_start: &str,
    load_end: &str,
) -> String {
    let s = |v: &str| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""));
    let n = |v: f64| {
        if v.is_finite() {
            format!("{v:.4}")
        } else {
            "null".into()
        }
    };
    let mut json = String::new();
    let _ = write!(
        json,
        "{{\n  \"bench\": \"socketio\",\n  \"mode\": \"{}\",\n  \"runs\": {},\n  \"idle_clients\": {},\n  \"rate_clients\": {},\n  \"pipeline_depth\": {PIPELINE_DEPTH},\n  \"payload_bytes\": {},\n  \"window_seconds\": {},\n  \"fanouts\": {},\n  \"pinned\": {pinned},\n  \"load_average_start\": {},\n  \"load_average_end\": {},\n  \"servers\": {{",
        if settings.quick { "quick" } else { "full" },
        settings.runs,
        settings.idle_clients,
        settings.rate_clients,
        settings.payload.len(),
        settings.window.as_secs_f64(),
        settings.fanouts,
        s(load_start),
        s(load_end),
    );
    for (i, server) in servers.iter().enumerate() {
        let _ = write!(
            json,
            "{}\n    {}: {{\"version\": {}",
            if i == 0 { "" } else { "," },
            s(server),
            s(versions.get(server).map_or("?", |v| v.as_str()))
        );
        if let Some(series) = series.get(server) {
            for (metric, values) in &series.values {
                let _ = write!(
                    json,
                    ", {}: {{\"median\": {}, \"runs\": [{}]}}",
                    s(metric),
                    n(median(values)),
                    values.iter().map(|v| n(*v)).collect::<Vec<_>>().join(", ")
                );
            }
        }
        json.push('}');
    }
    let list = |items: &[String]| {
        items
            .iter()
            .map(|f| s(f))
            .collect::<Vec<_>>()
            .join(",\n    ")
    };
    let _ = write!(
        json,
        "\n  }},\n  \"notes\": [\n    {}\n  ],\n  \"failures\": [{}]\n}}\n",
        list(notes),
        list(failures)
    );
    json
}
