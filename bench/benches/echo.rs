//! WebSocket echo servers under a pipelined load, and their memory per idle
//! connection: chito's tokio adapter against tokio-tungstenite,
//! fastwebsockets and tokio-websockets, and chito behind axum (chito-axum's
//! extractor) against axum's own WebSockets, in the same run; on Linux also
//! chito's io_uring driver (`chito-uring`, `chito::uring`, with the bench's
//! default feature `uring`) and chito's core on compio's io_uring runtime
//! (`chito-compio`, #15's safe completion-runtime comparison).
//!
//! ```text
//! cargo bench -p chito-bench --bench echo               # full: 1 s warm-up + 5 s, 3 runs, median
//! cargo bench -p chito-bench --bench echo -- --quick    # smoke: 0.3 s + 0.7 s, 1 run (or ECHO_BENCH_QUICK=1)
//! ECHO_BENCH_SERVERS=chito,fastwebsockets cargo bench -p chito-bench --bench echo
//! ECHO_BENCH_SCENARIOS=100x1x20B,idle-10000 cargo bench -p chito-bench --bench echo
//! # chito, chito behind axum, axum's own WebSockets: idle memory and 16 B echo
//! ECHO_BENCH_SERVERS=chito,chito-axum,axum ECHO_BENCH_SCENARIOS=64x16x16B,idle \
//!   cargo bench -p chito-bench --bench echo
//! ECHO_BENCH_RUNS=5 cargo bench -p chito-bench --bench echo     # 5 runs (default 3; 1 with --quick)
//!
//! # Two builds of bench_server, old against new, in the same run:
//! ECHO_BENCH_EXTERNAL=chito-old=/abs/old/bench_server,chito-new=/abs/new/bench_server \
//!   ECHO_BENCH_SERVERS=chito-old,chito-new ECHO_BENCH_BASELINE=chito-old \
//!   cargo bench -p chito-bench --bench echo
//! ```
//!
//! The environment:
//! - `ECHO_BENCH_SERVERS`: the servers to measure, comma-separated, by name
//!   (the built-in `chito`, `chito-uring` and `chito-compio` (Linux),
//!   `tungstenite`,
//!   `fastwebsockets`, `tokio-websockets`, `chito-axum`, `axum`, and the
//!   names `ECHO_BENCH_EXTERNAL` gives). Default: all of them.
//! - `ECHO_BENCH_SCENARIOS`: the scenarios, by name: `64x16x16B`,
//!   `64x4x4KiB-text`, `16x2x1MiB`, `100x1x20B` (connections × messages in
//!   flight × size), `idle-10000` and `idle-19000` (`idle-1000` with
//!   `--quick`); `idle` for every idle one.
//! - `ECHO_BENCH_EXTERNAL`: extra servers as prebuilt binaries,
//!   `name=path,name=path`. Each is started as `<path> 127.0.0.1:0`, pinned
//!   like the others, and must print the port, or the address
//!   `127.0.0.1:PORT` as `examples/bench_server.rs` does, on its first stdout
//!   line, then echo until killed. Give absolute paths: cargo runs benches
//!   from `bench/`. External servers are measured in every run round with
//!   the others; they are not peers in the "chito vs best" column.
//! - `ECHO_BENCH_BASELINE`: a selected server's name; adds a row per
//!   scenario with every server's median divided by this one's (msg/s: > 1
//!   is faster; KiB/conn: > 1 is more memory).
//! - `ECHO_BENCH_RUNS`: runs per server and scenario (default 3, or 1 with
//!   `--quick`); the median is reported, every run's value is in the JSON.
//! - `ECHO_BENCH_QUICK=1`: the same as `--quick`.
//!
//! How it is set up:
//! - Every server runs alone on a tokio current-thread runtime in a child
//!   process (this binary re-executed with `CHITO_ECHO_SERVER=<name>`),
//!   pinned to CPU 0 with `taskset`. The child binds 127.0.0.1:0, prints the
//!   port and serves until killed. Each peer's server is written the way its
//!   own echo example shows; chito's is `examples/bench_server.rs`, compiled
//!   in as a module, so the example and the bench are one code path. The
//!   two axum servers are one `axum::serve` each, defaults throughout, with
//!   one route whose handler upgrades (`chito_axum::WebSocketUpgrade`, or
//!   axum's `axum::extract::ws::WebSocketUpgrade`) and echoes from a task
//!   awaiting `recv()`. `chito-compio` is `chito_compio/mod.rs`: a compio
//!   runtime (io_uring, one thread), a task per connection receiving through
//!   compio's provided-buffer pool. An external server
//!   (`ECHO_BENCH_EXTERNAL`) is its binary, run the same way.
//! - Scenario by scenario, each run is one round over every server, the
//!   order rotated each round, so every server sees the same stretch of the
//!   host's noise.
//! - The load generator is this process, pinned to CPU 1, on its own
//!   current-thread runtime. It speaks RFC 6455 itself: an HTTP/1.1 upgrade
//!   offering no extensions, masked client frames built once per scenario,
//!   a streaming parser for the server's frames, no allocation per message.
//!   Each connection keeps `depth` messages in flight: it sends `depth`,
//!   then one more for every echo that comes back. Every echo's opcode and
//!   length is checked, and the payload of every 32nd message per
//!   connection; any mismatch, close or lost connection fails the run.
//! - Throughput is the median of the runs' echoed messages per second over
//!   the measuring window. Beside it, the server's CPU time per message
//!   (user + system of all its threads, from /proc/<pid>/stat, over the same
//!   window; `perf stat -e instructions` is not supported on the VM this was
//!   written on) and its CPU use in percent: below 100% the server was not
//!   the bottleneck.
//! - The idle scenarios open the connections (200 handshakes at a time, all
//!   from this process: 19 000 sockets fit under a 20 000 descriptor
//!   limit), wait for the server to settle and report the growth of its
//!   VmRSS per connection, and the kernel's slab growth per connection: the
//!   `Slab:` line of /proc/meminfo and the caches of /proc/slabinfo that
//!   sockets and drivers use (both ends of each loopback connection; the
//!   per-cache figures need root).
//!
//! Results go to stdout as a table and to the repository's
//! `target/echo-bench.json`. The exit status is non-zero if any server
//! failed to echo correctly.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

mod common;

use common::{load_average, median};

/// chito's echo servers: the example, compiled in, so both run the same
/// code (`serve` for `chito`, `serve_uring` for `chito-uring`).
#[allow(dead_code)]
#[path = "../../examples/bench_server.rs"]
mod chito_server;

/// chito on compio's io_uring runtime: the safe completion-runtime driver.
#[cfg(target_os = "linux")]
mod chito_compio;

/// Every server compiled into the bench, in table order: chito's drivers
/// first, then the peers, then the two axum servers.
fn builtin_servers() -> Vec<&'static str> {
    let mut servers = vec!["chito"];
    #[cfg(all(feature = "uring", target_os = "linux"))]
    servers.push("chito-uring");
    #[cfg(target_os = "linux")]
    servers.push("chito-compio");
    servers.extend([
        "tungstenite",
        "fastwebsockets",
        "tokio-websockets",
        "chito-axum",
        "axum",
    ]);
    servers
}

/// chito's servers (its drivers and chito behind axum): not peers.
const CHITO_SERVERS: [&str; 4] = ["chito", "chito-uring", "chito-compio", "chito-axum"];

/// A server to measure: one compiled in, or an external binary.
struct Server {
    name: String,
    /// `None`: this bench re-executed as the built-in server `name`.
    binary: Option<PathBuf>,
}

impl Server {
    /// A built-in peer (not chito, with or without axum, not an external
    /// binary): the servers "chito vs best" compares with.
    fn is_peer(&self) -> bool {
        self.binary.is_none() && !CHITO_SERVERS.contains(&self.name.as_str())
    }
}

/// The env var that turns this binary into a server.
const SERVER_ENV: &str = "CHITO_ECHO_SERVER";

fn main() {
    if let Ok(name) = std::env::var(SERVER_ENV) {
        server_main(&name);
        return;
    }
    std::process::exit(match orchestrate() {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("echo bench: {e}");
            2
        }
    });
}

/// Raises the soft open-file limit to the hard one (idle scenario).
fn raise_nofile() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
}

// ---------------------------------------------------------------------------
// Servers (child processes)
// ---------------------------------------------------------------------------

fn server_main(name: &str) {
    raise_nofile();
    // The drivers that are not tokio run on their own runtimes.
    #[cfg(target_os = "linux")]
    if name == "chito-compio" {
        let listener = bind_and_report();
        if let Err(e) = chito_compio::run(listener) {
            panic!("chito-compio: {e}");
        }
        return;
    }
    #[cfg(all(feature = "uring", target_os = "linux"))]
    if name == "chito-uring" {
        if let Err(e) = chito_server::serve_uring(bind_and_report()) {
            panic!("chito-uring: {e}");
        }
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let addr = std::env::var("CHITO_ECHO_ADDR").unwrap_or_else(|_| "127.0.0.1:0".into());
        let listener = TcpListener::bind(&addr).await.expect("bind");
        let port = listener.local_addr().expect("local_addr").port();
        {
            use std::io::Write;
            let mut out = io::stdout().lock();
            let _ = writeln!(out, "{port}");
            let _ = out.flush();
        }
        match name {
            "chito" => chito_server::serve(listener).await,
            "tungstenite" => accept_loop(listener, serve_tungstenite).await,
            "fastwebsockets" => accept_loop(listener, serve_fastwebsockets).await,
            "tokio-websockets" => accept_loop(listener, serve_tokio_websockets).await,
            "chito-axum" => serve_chito_axum(listener).await,
            "axum" => serve_axum(listener).await,
            other => panic!("unknown server {other:?}"),
        }
    });
}

/// Binds the server's address (`CHITO_ECHO_ADDR`, else 127.0.0.1:0) with
/// std and prints the port, as the tokio servers do.
#[cfg(target_os = "linux")]
fn bind_and_report() -> std::net::TcpListener {
    use std::io::Write;
    let addr = std::env::var("CHITO_ECHO_ADDR").unwrap_or_else(|_| "127.0.0.1:0".into());
    let listener = std::net::TcpListener::bind(&addr).expect("bind");
    let port = listener.local_addr().expect("local_addr").port();
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{port}");
    let _ = out.flush();
    listener
}

/// The peers' accept loop: one task per connection, and an accept error
/// (out of file descriptors) costs that connection only — the same policy
/// as `examples/bench_server.rs`.
async fn accept_loop(listener: TcpListener, per_connection: fn(TcpStream)) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => per_connection(stream),
            Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

/// tokio-tungstenite, as its `echo-server` example: accept, split, forward
/// the read half into the write half (which batches writes until the read
/// side has nothing ready).
fn serve_tungstenite(stream: TcpStream) {
    use futures_util::StreamExt;
    tokio::spawn(async move {
        if let Ok(ws) = tokio_tungstenite::accept_async(stream).await {
            let (write, read) = ws.split();
            let _ = read.forward(write).await;
        }
    });
}

/// fastwebsockets, as its `echo_server` example: hyper's HTTP/1.1 server
/// with upgrades, `upgrade::upgrade`, a `FragmentCollector` echoing text
/// and binary frames (auto-pong and auto-close at their defaults), the
/// WebSocket task spawned unconstrained as that example does.
fn serve_fastwebsockets(stream: TcpStream) {
    use fastwebsockets::{upgrade, FragmentCollector, OpCode, WebSocketError};
    use http_body_util::Empty;
    use hyper::body::{Bytes, Incoming};
    use hyper::{Request, Response};

    async fn echo(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
        let mut ws = FragmentCollector::new(fut.await?);
        loop {
            let frame = ws.read_frame().await?;
            match frame.opcode {
                OpCode::Close => break,
                OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
                _ => {}
            }
        }
        Ok(())
    }

    async fn upgrade_request(
        mut request: Request<Incoming>,
    ) -> Result<Response<Empty<Bytes>>, WebSocketError> {
        let (response, fut) = upgrade::upgrade(&mut request)?;
        tokio::spawn(tokio::task::unconstrained(async move {
            let _ = echo(fut).await;
        }));
        Ok(response)
    }

    tokio::spawn(async move {
        let io = hyper_util::rt::TokioIo::new(stream);
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, hyper::service::service_fn(upgrade_request))
            .with_upgrades()
            .await;
    });
}

/// tokio-websockets, as its `echo_server` example: `ServerBuilder` with
/// that example's config, echo every text or binary message, the task
/// spawned unconstrained as that example does.
fn serve_tokio_websockets(stream: TcpStream) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_websockets::{Config, Limits, ServerBuilder};
    tokio::spawn(tokio::task::unconstrained(async move {
        let accepted = ServerBuilder::new()
            .config(Config::default().frame_size(usize::MAX))
            .limits(Limits::unlimited())
            .accept(stream)
            .await;
        let Ok((_request, mut ws)) = accepted else {
            return;
        };
        while let Some(Ok(message)) = ws.next().await {
            if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
                break;
            }
        }
    }));
}

/// chito behind axum, as chito-axum's documentation shows: `axum::serve`
/// with its defaults, a `Router` whose route extracts
/// `chito_axum::WebSocketUpgrade` (default settings) and answers with
/// `on_upgrade`, the socket's task echoing every text or binary message
/// `recv()` returns.
async fn serve_chito_axum(listener: TcpListener) {
    use axum::{response::Response, routing::get, Router};
    use chito_axum::{Message, OwnedEvent, WebSocket, WebSocketUpgrade};

    async fn upgrade(ws: WebSocketUpgrade) -> Response {
        ws.on_upgrade(echo)
    }

    async fn echo(mut socket: WebSocket) {
        while let Ok(event) = socket.recv().await {
            let sent = match &event {
                OwnedEvent::Text(text) => socket.send(Message::Text(text)).await,
                OwnedEvent::Binary(bytes) => socket.send(Message::Binary(bytes)).await,
                // Pings are answered and closes completed by chito itself.
                _ => Ok(()),
            };
            if sent.is_err() {
                return;
            }
        }
    }

    let _ = axum::serve(listener, Router::new().route("/", get(upgrade))).await;
}

/// axum's own WebSockets (`axum::extract::ws`, tokio-tungstenite inside), as
/// the documentation of `axum::extract::ws` shows: `axum::serve` with its
/// defaults, the extractor with its default settings, `on_upgrade`, the
/// socket's task echoing what `recv()` returns — text and binary messages
/// only, as every server here (tungstenite answers pings itself).
async fn serve_axum(listener: TcpListener) {
    use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
    use axum::{response::Response, routing::get, Router};

    async fn upgrade(ws: WebSocketUpgrade) -> Response {
        ws.on_upgrade(echo)
    }

    async fn echo(mut socket: WebSocket) {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Text(_) | Message::Binary(_))
                && socket.send(message).await.is_err()
            {
                return;
            }
        }
    }

    let _ = axum::serve(listener, Router::new().route("/", get(upgrade))).await;
}

/// A server child process; killed (and reaped) on drop.
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
}

impl ServerProcess {
    fn start(server: &Server, pinned: bool) -> Result<Self, String> {
        let name = &server.name;
        let exe = match &server.binary {
            Some(binary) => binary.clone(),
            None => std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?,
        };
        let mut command = if pinned {
            let mut c = Command::new("taskset");
            c.args(["-c", "0"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        if server.binary.is_some() {
            command.arg("127.0.0.1:0");
        } else {
            command.env(SERVER_ENV, name);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command
            .spawn()
            .map_err(|e| format!("spawn {name} server: {e}"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        // The built-in child prints its port; examples/bench_server.rs its
        // address.
        let line = line.trim();
        let addr = line
            .parse::<u16>()
            .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
            .or_else(|_| line.parse::<SocketAddr>());
        match (read, addr) {
            (Ok(_), Ok(addr)) => Ok(ServerProcess { child, addr }),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "{name} server did not report a port or address (first line {line:?})"
                ))
            }
        }
    }

    /// The server's resident set, in KiB (`VmRSS` of /proc/<pid>/status).
    fn rss_kib(&self) -> Result<u64, String> {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("no VmRSS in {path}"))
    }

    /// The server's CPU time so far (user + system, every thread), in clock
    /// ticks. The child is the server itself: `taskset` execs it.
    fn cpu_ticks(&self) -> Option<u64> {
        common::stat_ticks(std::path::Path::new(&format!(
            "/proc/{}/stat",
            self.child.id()
        )))
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

// ---------------------------------------------------------------------------
// Scenarios and settings
// ---------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Kind {
    /// Pipelined echo: `conns` connections, `depth` messages in flight each.
    Echo {
        conns: usize,
        depth: usize,
        size: usize,
        text: bool,
    },
    /// Idle connections: server memory per connection.
    Idle { conns: usize },
}

struct Scenario {
    name: String,
    kind: Kind,
}

struct Settings {
    quick: bool,
    /// Connections of each idle scenario (fewer in quick mode).
    idle_conns: Vec<usize>,
    warmup: Duration,
    measure: Duration,
    runs: usize,
    idle_settle: Duration,
    /// Servers on CPU 0 and the load generator on CPU 1 (see `pin_self`).
    pinned: bool,
}

fn scenarios(idle_conns: &[usize]) -> Vec<Scenario> {
    let echo = |name: &str, conns, depth, size, text| Scenario {
        name: name.to_string(),
        kind: Kind::Echo {
            conns,
            depth,
            size,
            text,
        },
    };
    vec![
        echo("64x16x16B", 64, 16, 16, false),
        echo("64x4x4KiB-text", 64, 4, 4096, true),
        echo("16x2x1MiB", 16, 2, 1 << 20, false),
        // The uWebSockets load_test shape (100 connections, one 20 B
        // message in flight each), which its published charts use.
        echo("100x1x20B", 100, 1, 20, false),
    ]
    .into_iter()
    .chain(idle_conns.iter().map(|&conns| Scenario {
        name: format!("idle-{conns}"),
        kind: Kind::Idle { conns },
    }))
    .collect()
}

// ---------------------------------------------------------------------------
// The load generator's wire protocol
// ---------------------------------------------------------------------------

/// What one scenario sends and expects back.
struct Plan {
    /// `depth + 1` copies of the masked client frame, back to back, so any
    /// run of up to `depth` frames starting inside the first copy is one
    /// contiguous slice.
    frames: Vec<u8>,
    frame_len: usize,
    /// The unmasked payload every echo must carry.
    payload: Vec<u8>,
    opcode: u8,
    depth: usize,
}

/// The masking key of every client frame (RFC 6455 §5.3 wants it
/// unpredictable for browsers' sake; a load generator may reuse one).
const MASK: [u8; 4] = [0x5a, 0xc3, 0x17, 0x9e];

/// One payload in how many per connection has its content compared.
const CHECK_EVERY: u64 = 32;

impl Plan {
    fn new(size: usize, text: bool, depth: usize) -> Plan {
        let payload: Vec<u8> = if text {
            (0..size).map(|i| b'a' + (i % 26) as u8).collect()
        } else {
            (0..size).map(|i| (i.wrapping_mul(131) + 7) as u8).collect()
        };
        let opcode = if text { 0x1 } else { 0x2 };
        let frame = client_frame(opcode, &payload);
        let frame_len = frame.len();
        let frames = frame.repeat(depth + 1);
        Plan {
            frames,
            frame_len,
            payload,
            opcode,
            depth,
        }
    }
}

/// A final, masked client frame (RFC 6455 §5.2).
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 14);
    frame.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= 0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&MASK);
    frame.extend(payload.iter().zip(MASK.iter().cycle()).map(|(b, m)| b ^ m));
    frame
}

/// A streaming parser for the server's frames: payload bytes are checked
/// as they pass and never buffered, so a 1 MiB echo needs no 1 MiB buffer.
#[derive(Default)]
struct Parser {
    /// Payload bytes left in the current frame.
    remaining: u64,
    /// The current frame is a control frame (skipped).
    control: bool,
    /// The current data frame has FIN.
    fin: bool,
    /// A data message has started and not ended.
    in_message: bool,
    /// Payload bytes of the current message so far.
    offset: usize,
    /// Compare the current message's content.
    check: bool,
    /// Messages completed.
    messages: u64,
}

impl Parser {
    /// Parses what it can of `data`; returns the bytes consumed (the rest is
    /// a partial header) and the messages completed.
    fn feed(&mut self, plan: &Plan, data: &[u8]) -> Result<(usize, u64), String> {
        let mut pos = 0;
        let mut done = 0;
        loop {
            if self.remaining > 0 {
                let available = data.len() - pos;
                if available == 0 {
                    break;
                }
                let take = available.min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                if !self.control {
                    if self.check
                        && data[pos..pos + take] != plan.payload[self.offset..self.offset + take]
                    {
                        return Err(format!(
                            "echoed payload differs from the sent one (message {})",
                            self.messages
                        ));
                    }
                    self.offset += take;
                }
                pos += take;
                self.remaining -= take as u64;
                if self.remaining == 0 && self.end_frame(plan)? {
                    done += 1;
                }
                continue;
            }
            let head = &data[pos..];
            if head.len() < 2 {
                break;
            }
            let (b0, b1) = (head[0], head[1]);
            if b0 & 0x70 != 0 {
                return Err(format!("RSV bits set in a server frame ({b0:#04x})"));
            }
            if b1 & 0x80 != 0 {
                return Err("masked server frame".into());
            }
            let (len, header_len) = match b1 & 0x7f {
                126 if head.len() >= 4 => (u64::from(u16::from_be_bytes([head[2], head[3]])), 4),
                127 if head.len() >= 10 => {
                    let bytes: [u8; 8] = head[2..10].try_into().expect("8 bytes");
                    (u64::from_be_bytes(bytes), 10)
                }
                126 | 127 => break,
                n => (u64::from(n), 2),
            };
            pos += header_len;
            let fin = b0 & 0x80 != 0;
            self.control = false;
            match b0 & 0x0f {
                0x0 if self.in_message => {}
                0x0 => return Err("continuation frame outside a message".into()),
                op @ (0x1 | 0x2) => {
                    if self.in_message {
                        return Err("new message inside a fragmented one".into());
                    }
                    if op != plan.opcode {
                        return Err(format!("echo has opcode {op}, sent {}", plan.opcode));
                    }
                    self.in_message = true;
                    self.offset = 0;
                    self.check = self.messages.is_multiple_of(CHECK_EVERY);
                }
                0x8 => return Err("server sent a close frame".into()),
                0x9 | 0xa if fin && len <= 125 => self.control = true,
                op => return Err(format!("bad server frame (opcode {op:#x}, fin {fin})")),
            }
            if !self.control && self.offset as u64 + len > plan.payload.len() as u64 {
                return Err(format!(
                    "echo longer than the {} bytes sent",
                    plan.payload.len()
                ));
            }
            self.fin = fin;
            self.remaining = len;
            if len == 0 && self.end_frame(plan)? {
                done += 1;
            }
        }
        Ok((pos, done))
    }

    /// The current frame ended; true if it completed a message.
    fn end_frame(&mut self, plan: &Plan) -> Result<bool, String> {
        if self.control {
            self.control = false;
            return Ok(false);
        }
        if !self.fin {
            return Ok(false);
        }
        if self.offset != plan.payload.len() {
            return Err(format!(
                "echo has {} bytes, sent {}",
                self.offset,
                plan.payload.len()
            ));
        }
        self.in_message = false;
        self.messages += 1;
        Ok(true)
    }
}

/// SHA-1 based Sec-WebSocket-Accept for `key` (RFC 6455 §4.2.2).
fn accept_key(key: &str) -> String {
    use base64::Engine;
    let mut sha1 = sha1_smol::Sha1::new();
    sha1.update(key.as_bytes());
    sha1.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha1.digest().bytes())
}

/// Connects and runs the opening handshake, offering no extension. Returns
/// the stream and any bytes that followed the 101 response.
async fn connect(addr: SocketAddr, index: usize) -> Result<(TcpStream, Vec<u8>), String> {
    use base64::Engine;
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("nodelay: {e}"))?;
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&(index as u64).to_le_bytes());
    nonce[8..].copy_from_slice(
        &0x0123_4567_89ab_cdef_u64
            .wrapping_mul(index as u64 + 1)
            .to_le_bytes(),
    );
    let key = base64::engine::general_purpose::STANDARD.encode(nonce);
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("handshake write: {e}"))?;
    let mut buf = Vec::with_capacity(1024);
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 16 * 1024 {
            return Err("handshake response too long".into());
        }
        let n = stream
            .read_buf(&mut buf)
            .await
            .map_err(|e| format!("handshake read: {e}"))?;
        if n == 0 {
            return Err("connection closed during the handshake".into());
        }
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| "non-UTF-8 response head")?;
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    if !status.starts_with("HTTP/1.1 101") {
        return Err(format!("handshake refused: {status:?}"));
    }
    let mut accepted = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("sec-websocket-accept") {
            if value != accept_key(&key) {
                return Err(format!("wrong Sec-WebSocket-Accept {value:?}"));
            }
            accepted = true;
        } else if name.eq_ignore_ascii_case("sec-websocket-extensions") && !value.is_empty() {
            return Err(format!("server chose an extension not offered: {value:?}"));
        }
    }
    if !accepted {
        return Err("no Sec-WebSocket-Accept in the response".into());
    }
    Ok((stream, buf[end..].to_vec()))
}

/// Opens `count` connections, `batch` handshakes at a time.
async fn connect_many(
    addr: SocketAddr,
    count: usize,
    batch: usize,
) -> Result<Vec<(TcpStream, Vec<u8>)>, String> {
    let mut streams = Vec::with_capacity(count);
    let mut start = 0;
    while start < count {
        let end = (start + batch).min(count);
        let mut set = JoinSet::new();
        for index in start..end {
            set.spawn(async move {
                let connecting =
                    tokio::time::timeout(Duration::from_secs(10), connect(addr, index));
                (index, connecting.await)
            });
        }
        let mut opened = Vec::with_capacity(end - start);
        while let Some(joined) = set.join_next().await {
            let (index, result) = joined.map_err(|e| format!("connect task: {e}"))?;
            let result = result.map_err(|_| format!("connection {index}: handshake timed out"))?;
            opened.push((
                index,
                result.map_err(|e| format!("connection {index}: {e}"))?,
            ));
        }
        opened.sort_by_key(|(index, _)| *index);
        streams.extend(opened.into_iter().map(|(_, s)| s));
        start = end;
    }
    Ok(streams)
}

/// Keeps `plan.depth` messages in flight on one connection until aborted,
/// adding every completed echo to `echoed`.
async fn pipeline(
    stream: TcpStream,
    leftover: Vec<u8>,
    plan: Arc<Plan>,
    echoed: Arc<AtomicU64>,
) -> Result<(), String> {
    let buf_len = if plan.frame_len > 16 * 1024 {
        256 * 1024
    } else {
        64 * 1024
    };
    let mut buf = vec![0u8; buf_len.max(leftover.len())];
    buf[..leftover.len()].copy_from_slice(&leftover);
    let mut filled = leftover.len();
    let mut parser = Parser::default();
    // Bytes queued to send, and where the next one sits within a frame.
    let mut to_write = plan.depth * plan.frame_len;
    let mut write_at = 0;
    loop {
        if filled > 0 {
            let (used, done) = parser.feed(&plan, &buf[..filled])?;
            buf.copy_within(used..filled, 0);
            filled -= used;
            if done > 0 {
                echoed.fetch_add(done, Ordering::Relaxed);
                to_write += done as usize * plan.frame_len;
            }
        }
        while to_write > 0 {
            match stream.try_write(&plan.frames[write_at..write_at + to_write]) {
                Ok(n) => {
                    to_write -= n;
                    write_at = (write_at + n) % plan.frame_len;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(format!("write: {e}")),
            }
        }
        let interest = if to_write > 0 {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let ready = stream
            .ready(interest)
            .await
            .map_err(|e| format!("poll: {e}"))?;
        if ready.is_readable() {
            match stream.try_read(&mut buf[filled..]) {
                Ok(0) => return Err("server closed the connection".into()),
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }
}

/// One run's result: the headline value (msg/s or KiB/conn) and the other
/// figures measured beside it, by name.
struct Measured {
    value: f64,
    figures: Vec<(String, f64)>,
}

/// One pipelined run against a server: echoed messages per second, and the
/// server's CPU time per message over the same window (user + system, all
/// threads, from /proc/<pid>/stat; `perf stat -e instructions` reports
/// `<not supported>` on this VM, so instructions per message are not
/// available).
async fn run_echo(
    server: &ServerProcess,
    conns: usize,
    plan: Arc<Plan>,
    settings: &Settings,
) -> Result<Measured, String> {
    let streams = connect_many(server.addr, conns, 200).await?;
    let echoed = Arc::new(AtomicU64::new(0));
    let failure: Arc<Mutex<Option<String>>> = Arc::default();
    let mut tasks = JoinSet::new();
    for (index, (stream, leftover)) in streams.into_iter().enumerate() {
        let (plan, echoed, failure) = (plan.clone(), echoed.clone(), failure.clone());
        tasks.spawn(async move {
            if let Err(e) = pipeline(stream, leftover, plan, echoed).await {
                failure
                    .lock()
                    .expect("failure lock")
                    .get_or_insert(format!("connection {index}: {e}"));
            }
        });
    }
    tokio::time::sleep(settings.warmup).await;
    let ticks0 = server.cpu_ticks();
    let (count0, t0) = (echoed.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(settings.measure).await;
    let (count1, t1) = (echoed.load(Ordering::Relaxed), Instant::now());
    let ticks1 = server.cpu_ticks();
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    if let Some(e) = failure.lock().expect("failure lock").take() {
        return Err(e);
    }
    if count1 == count0 {
        return Err("no message echoed during the measurement".into());
    }
    let messages = (count1 - count0) as f64;
    let seconds = (t1 - t0).as_secs_f64();
    let mut figures = Vec::new();
    if let (Some(ticks0), Some(ticks1)) = (ticks0, ticks1) {
        let cpu = ticks1.saturating_sub(ticks0) as f64 / common::clock_ticks_per_second();
        figures.push(("cpu_us_per_msg".to_string(), cpu * 1e6 / messages));
        figures.push(("cpu_percent".to_string(), cpu * 100.0 / seconds));
    }
    Ok(Measured {
        value: messages / seconds,
        figures,
    })
}

/// One idle run: server KiB of RSS per connection, and the kernel's slab
/// memory per connection: the `Slab:` line of /proc/meminfo and the caches
/// of /proc/slabinfo that sockets and their drivers use (see [`Slab`]).
async fn run_idle(
    server: &mut ServerProcess,
    conns: usize,
    settings: &Settings,
) -> Result<Measured, String> {
    tokio::time::sleep(Duration::from_millis(200)).await;
    settle_sockets().await;
    let before = server.rss_kib()?;
    let slab_before = Slab::read();
    let mut streams = connect_many(server.addr, conns, 200).await?;
    tokio::time::sleep(settings.idle_settle).await;
    server.check_alive()?;
    let after = server.rss_kib()?;
    let slab_after = Slab::read();
    // Every connection must still be open, and a few must still echo.
    let mut scratch = [0u8; 256];
    for (index, (stream, _)) in streams.iter().enumerate() {
        if let Ok(0) = stream.try_read(&mut scratch) {
            return Err(format!("server closed idle connection {index}"));
        }
    }
    let plan = Plan::new(16, false, 1);
    let last = streams.len() - 1;
    for index in [0, last / 2, last] {
        let (stream, _) = &mut streams[index];
        let echoed = tokio::time::timeout(Duration::from_secs(5), echo_once(stream, &plan)).await;
        echoed
            .map_err(|_| format!("idle connection {index}: no echo"))?
            .map_err(|e| format!("idle connection {index}: {e}"))?;
    }
    drop(streams);
    let figures = match (slab_before, slab_after) {
        (Some(before), Some(after)) => before.per_connection(&after, conns),
        _ => Vec::new(),
    };
    Ok(Measured {
        value: (after as f64 - before as f64) / conns as f64,
        figures,
    })
}

/// Waits (at most 30 s) until the host's count of allocated TCP sockets
/// (/proc/net/sockstat) has stopped falling for a second: the previous
/// run's thousands of sockets are freed some time after their processes
/// close them, and freed during a measurement they would hide this run's
/// slab growth.
async fn settle_sockets() {
    fn allocated() -> Option<i64> {
        let sockstat = std::fs::read_to_string("/proc/net/sockstat").ok()?;
        let tcp = sockstat.lines().find_map(|l| l.strip_prefix("TCP:"))?;
        let mut fields = tcp.split_whitespace();
        while let Some(field) = fields.next() {
            if field == "alloc" {
                return fields.next()?.parse().ok();
            }
        }
        None
    }
    let give_up = Instant::now() + Duration::from_secs(30);
    let Some(mut low) = allocated() else {
        return;
    };
    let mut since = Instant::now();
    while Instant::now() < give_up && since.elapsed() < Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Some(now) = allocated() else {
            return;
        };
        // Falling by more than a handful: sockets are still being freed.
        if now < low - 16 {
            since = Instant::now();
        }
        low = low.min(now);
    }
}

/// The kernel's slab memory at one moment: the `Slab:` line of /proc/meminfo
/// and each cache's active objects × object size from /proc/slabinfo
/// (readable by root only; without it only the `Slab:` line is reported).
///
/// Both ends of every loopback connection live on this host, so the socket
/// caches (`TCP`, `sock_inode_cache`, `filp`, `dentry`) count two sockets
/// per connection, the same for every server; `io_kiocb` and the `kmalloc`
/// caches hold what a driver arms per connection (docs/uring.md §5: an
/// armed multishot receive costs an `io_kiocb` and two kmalloc objects,
/// epoll one `eventpoll_epi`). The `Slab:` line counts every process on the
/// host, hence the per-cache figures.
struct Slab {
    total_kib: u64,
    caches: BTreeMap<String, u64>,
}

/// The caches reported by name, besides the `kmalloc` ones.
const SLAB_CACHES: [&str; 6] = [
    "TCP",
    "sock_inode_cache",
    "filp",
    "dentry",
    "io_kiocb",
    "eventpoll_epi",
];

/// A `kmalloc` size's growth is printed from this many bytes per connection.
const KMALLOC_PRINTED: f64 = 16.0;

/// The `kmalloc` size classes reported one by one.
const KMALLOC_SIZES: [&str; 13] = [
    "8", "16", "32", "64", "96", "128", "192", "256", "512", "1k", "2k", "4k", "8k",
];

impl Slab {
    fn read() -> Option<Slab> {
        let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
        let total_kib = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("Slab:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
        let mut caches = BTreeMap::new();
        if let Ok(slabinfo) = std::fs::read_to_string("/proc/slabinfo") {
            // slabinfo(5): name, active_objs, num_objs, objsize, ...
            for line in slabinfo.lines().skip(2) {
                let mut fields = line.split_whitespace();
                let (Some(name), Some(active), Some(_), Some(size)) =
                    (fields.next(), fields.next(), fields.next(), fields.next())
                else {
                    continue;
                };
                if let (Ok(active), Ok(size)) = (active.parse::<u64>(), size.parse::<u64>()) {
                    caches.insert(name.to_string(), active * size);
                }
            }
        }
        Some(Slab { total_kib, caches })
    }

    /// Growth from `self` to `after`, in bytes per connection: `slab_total`
    /// (the `Slab:` line), the named caches, all `kmalloc` caches together,
    /// and each `kmalloc` size (its plain, `-cg` and `-rcl` caches summed).
    fn per_connection(&self, after: &Slab, conns: usize) -> Vec<(String, f64)> {
        let n = conns as f64;
        let delta = |name: &str| {
            after.caches.get(name).copied().unwrap_or(0) as f64
                - self.caches.get(name).copied().unwrap_or(0) as f64
        };
        let mut figures = vec![(
            "slab_total_B".to_string(),
            (after.total_kib as f64 - self.total_kib as f64) * 1024.0 / n,
        )];
        if after.caches.is_empty() {
            return figures;
        }
        for name in SLAB_CACHES {
            figures.push((format!("slab_{name}_B"), delta(name) / n));
        }
        let kmalloc: Vec<&String> = after
            .caches
            .keys()
            .filter(|name| name.starts_with("kmalloc-"))
            .collect();
        let sum: f64 = kmalloc.iter().map(|name| delta(name)).sum();
        figures.push(("slab_kmalloc_all_B".to_string(), sum / n));
        for size in KMALLOC_SIZES {
            let per: f64 = kmalloc
                .iter()
                .filter(|name| {
                    let class = name.rsplit('-').next();
                    class == Some(size)
                })
                .map(|name| delta(name))
                .sum::<f64>()
                / n;
            figures.push((format!("slab_kmalloc-{size}_B"), per));
        }
        figures
    }
}

/// Sends one message and waits for its echo.
async fn echo_once(stream: &mut TcpStream, plan: &Plan) -> Result<(), String> {
    stream
        .write_all(&plan.frames[..plan.frame_len])
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut parser = Parser {
        check: true,
        ..Parser::default()
    };
    let mut buf = Vec::with_capacity(1024);
    loop {
        if stream
            .read_buf(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?
            == 0
        {
            return Err("server closed the connection".into());
        }
        let (used, done) = parser.feed(plan, &buf)?;
        if done > 0 {
            return Ok(());
        }
        buf.drain(..used);
    }
}

// ---------------------------------------------------------------------------
// Orchestration and report
// ---------------------------------------------------------------------------

/// Pins this process (all threads) to CPU 1 with taskset; false if that is
/// not possible.
fn pin_self() -> bool {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        return false;
    }
    let pinned = Command::new("taskset")
        .args(["-a", "-p", "-c", "1", &std::process::id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let server_pin = Command::new("taskset")
        .args(["-c", "0", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    matches!(pinned, Ok(s) if s.success()) && matches!(server_pin, Ok(s) if s.success())
}

/// Versions of the peers, read from the workspace's lock file this bench was
/// built with.
fn peer_versions() -> BTreeMap<&'static str, String> {
    let lock = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock"));
    let mut versions = BTreeMap::new();
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        for krate in [
            "tokio",
            "axum",
            "tokio-tungstenite",
            "fastwebsockets",
            "tokio-websockets",
            "hyper",
        ] {
            if line == format!("name = \"{krate}\"") {
                if let Some(v) = lines.next().and_then(|l| l.strip_prefix("version = ")) {
                    versions.insert(krate, v.trim_matches('"').to_string());
                }
            }
        }
    }
    versions
}

/// The results of one scenario: per server (in the order of the server
/// list), every run's value (None if that server failed).
struct Outcome {
    scenario: String,
    idle: bool,
    size: usize,
    runs: Vec<Option<Vec<f64>>>,
    /// Per server, the other figures of each run by name (CPU time per
    /// message, slab memory per connection).
    figures: Vec<BTreeMap<String, Vec<f64>>>,
}

impl Outcome {
    fn median(&self, server: usize) -> Option<f64> {
        self.runs
            .get(server)?
            .as_ref()
            .filter(|v| !v.is_empty())
            .map(|v| median(v))
    }

    /// chito (the tokio adapter) against the best built-in peer.
    fn ratio(&self, servers: &[Server]) -> Option<f64> {
        self.vs_best_peer(servers, servers.iter().position(|s| s.name == "chito")?)
    }

    /// `server` against the best built-in peer, oriented so that > 1 means
    /// `server` is better: server / best peer for throughput, best peer /
    /// server for memory.
    fn vs_best_peer(&self, servers: &[Server], server: usize) -> Option<f64> {
        let value = self.median(server)?;
        let peers = (0..servers.len())
            .filter(|&i| servers[i].is_peer())
            .filter_map(|i| self.median(i));
        if self.idle {
            let best = peers.fold(f64::INFINITY, f64::min);
            (best.is_finite() && value > 0.0).then(|| best / value)
        } else {
            let best = peers.fold(0.0, f64::max);
            (best > 0.0).then(|| value / best)
        }
    }

    /// `server`'s median divided by the baseline's, in the unit's own
    /// direction (msg/s: > 1 is faster; KiB/conn: > 1 is more memory).
    fn vs_baseline(&self, server: usize, baseline: usize) -> Option<f64> {
        let base = self.median(baseline)?;
        let value = self.median(server)?;
        (base != 0.0).then(|| value / base)
    }
}

/// `ECHO_BENCH_EXTERNAL`: `name=path,name=path`.
fn parse_external() -> Result<Vec<Server>, String> {
    let Ok(list) = std::env::var("ECHO_BENCH_EXTERNAL") else {
        return Ok(Vec::new());
    };
    let mut external: Vec<Server> = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, path) = entry
            .split_once('=')
            .map(|(n, p)| (n.trim(), p.trim()))
            .filter(|(n, p)| !n.is_empty() && !p.is_empty())
            .ok_or_else(|| format!("ECHO_BENCH_EXTERNAL: {entry:?} is not name=path"))?;
        if builtin_servers().contains(&name)
            || CHITO_SERVERS.contains(&name)
            || name == "tokio-tungstenite"
        {
            return Err(format!(
                "ECHO_BENCH_EXTERNAL: {name:?} is a built-in server's name"
            ));
        }
        if external.iter().any(|s| s.name == name) {
            return Err(format!("ECHO_BENCH_EXTERNAL: {name:?} given twice"));
        }
        let path = PathBuf::from(path);
        if !path.is_file() {
            return Err(format!(
                "ECHO_BENCH_EXTERNAL: {name}: no file {} (relative paths are taken from {}; \
                 give an absolute one)",
                path.display(),
                std::env::current_dir().map_or("?".into(), |d| d.display().to_string())
            ));
        }
        external.push(Server {
            name: name.to_string(),
            binary: Some(path),
        });
    }
    Ok(external)
}

/// The servers to measure, in table order: the built-in ones, then the
/// external ones as `ECHO_BENCH_EXTERNAL` lists them; all of them unless
/// `ECHO_BENCH_SERVERS` chooses.
fn parse_servers() -> Result<Vec<Server>, String> {
    let builtin = builtin_servers().into_iter().map(|name| Server {
        name: (*name).to_string(),
        binary: None,
    });
    let mut all: Vec<Server> = builtin.chain(parse_external()?).collect();
    let Ok(list) = std::env::var("ECHO_BENCH_SERVERS") else {
        return Ok(all);
    };
    let mut wanted = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let name = if name == "tokio-tungstenite" {
            "tungstenite"
        } else {
            name
        };
        if !all.iter().any(|s| s.name == name) {
            let known: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
            return Err(format!(
                "unknown server {name:?} (known: {})",
                known.join(", ")
            ));
        }
        wanted.push(name.to_string());
    }
    all.retain(|s| wanted.contains(&s.name));
    Ok(all)
}

/// `ECHO_BENCH_BASELINE`: the index of that server, if set.
fn parse_baseline(servers: &[Server]) -> Result<Option<usize>, String> {
    let Ok(name) = std::env::var("ECHO_BENCH_BASELINE") else {
        return Ok(None);
    };
    let name = name.trim();
    if name.is_empty() {
        return Ok(None);
    }
    servers
        .iter()
        .position(|s| s.name == name)
        .map(Some)
        .ok_or_else(|| format!("ECHO_BENCH_BASELINE: {name:?} is not among the servers measured"))
}

fn orchestrate() -> Result<bool, String> {
    raise_nofile();
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var("ECHO_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let mut settings = if quick {
        Settings {
            quick,
            warmup: Duration::from_millis(300),
            measure: Duration::from_millis(700),
            runs: 1,
            idle_settle: Duration::from_millis(500),
            idle_conns: vec![1_000],
            pinned: false,
        }
    } else {
        Settings {
            quick,
            warmup: Duration::from_secs(1),
            measure: Duration::from_secs(5),
            runs: 3,
            idle_settle: Duration::from_secs(2),
            // #15: per connection at 10 000, and at 19 000 to show it does
            // not grow. 19 000 client sockets fit this process's 20 000
            // descriptors, and the server's 19 000 fit its own.
            idle_conns: vec![10_000, 19_000],
            pinned: false,
        }
    };
    if let Ok(runs) = std::env::var("ECHO_BENCH_RUNS") {
        settings.runs = runs
            .trim()
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("ECHO_BENCH_RUNS: {runs:?} is not a positive number"))?;
    }
    let servers = parse_servers()?;
    if servers.is_empty() {
        return Err("no server selected".into());
    }
    let baseline = parse_baseline(&servers)?;
    let mut selected = scenarios(&settings.idle_conns);
    if let Ok(list) = std::env::var("ECHO_BENCH_SCENARIOS") {
        let wanted: Vec<&str> = list.split(',').map(str::trim).collect();
        selected.retain(|s| {
            wanted.contains(&s.name.as_str())
                || (s.name.starts_with("idle") && wanted.contains(&"idle"))
        });
    }
    settings.pinned = pin_self();
    let versions = peer_versions();
    let load_start = load_average();
    println!(
        "echo bench ({} mode: {:?} warm-up + {:?} measured, {} run(s) per server, median; \
         idle scenarios: {:?} connections, {:?} settle)",
        if quick { "quick" } else { "full" },
        settings.warmup,
        settings.measure,
        settings.runs,
        settings.idle_conns,
        settings.idle_settle
    );
    if settings.pinned {
        println!("servers pinned to CPU 0, load generator to CPU 1");
    } else {
        println!(
            "NOT PINNED: taskset or a second CPU is missing; servers and load generator share CPUs"
        );
    }
    let versions_line: Vec<String> = versions.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("versions: {}", versions_line.join(", "));
    for server in &servers {
        if let Some(binary) = &server.binary {
            println!("external: {} = {}", server.name, binary.display());
        }
    }
    println!("load average at start: {load_start}");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let mut outcomes = Vec::new();
    let mut failures = Vec::new();
    for scenario in &selected {
        let (idle, size, plan) = match scenario.kind {
            Kind::Echo {
                depth, size, text, ..
            } => (false, size, Some(Arc::new(Plan::new(size, text, depth)))),
            Kind::Idle { .. } => (true, 0, None),
        };
        let mut outcome = Outcome {
            scenario: scenario.name.clone(),
            idle,
            size,
            runs: vec![Some(Vec::new()); servers.len()],
            figures: vec![BTreeMap::new(); servers.len()],
        };
        for run in 0..settings.runs {
            // Rotate the order each run so no server always goes first.
            for k in 0..servers.len() {
                let index = (k + run) % servers.len();
                let server_name = &servers[index].name;
                if outcome.runs[index].is_none() {
                    continue;
                }
                let result = (|| -> Result<Measured, String> {
                    let mut server = ServerProcess::start(&servers[index], settings.pinned)?;
                    let measured = runtime.block_on(async {
                        match scenario.kind {
                            Kind::Echo { conns, .. } => {
                                let plan = plan.clone().expect("echo plan");
                                run_echo(&server, conns, plan, &settings).await
                            }
                            Kind::Idle { conns } => run_idle(&mut server, conns, &settings).await,
                        }
                    })?;
                    server.check_alive()?;
                    Ok(measured)
                })();
                match result {
                    Ok(measured) => {
                        let value = measured.value;
                        let figures: Vec<String> = measured
                            .figures
                            .iter()
                            .take(3)
                            .map(|(name, v)| format!("{name} {v:.2}"))
                            .collect();
                        eprintln!(
                            "  {:<15} {:<17} run {}: {} ({})",
                            scenario.name,
                            server_name,
                            run + 1,
                            if idle {
                                format!("{value:.2} KiB/conn")
                            } else {
                                format!("{value:.0} msg/s")
                            },
                            figures.join(", ")
                        );
                        if let Some(values) = &mut outcome.runs[index] {
                            values.push(value);
                        }
                        for (name, v) in measured.figures {
                            outcome.figures[index].entry(name).or_default().push(v);
                        }
                    }
                    Err(e) => {
                        eprintln!("  {} {server_name} FAILED: {e}", scenario.name);
                        failures.push(format!("{} / {server_name}: {e}", scenario.name));
                        outcome.runs[index] = None;
                    }
                }
            }
        }
        outcomes.push(outcome);
    }
    let load_end = load_average();

    println!();
    print_table(&servers, &outcomes, baseline);
    println!("load average at end: {load_end}");

    let json = to_json(
        &settings,
        &versions,
        &servers,
        baseline,
        &outcomes,
        &failures,
        [&load_start, &load_end],
    );
    common::write_results("echo-bench.json", &json);
    if !failures.is_empty() {
        eprintln!("\nFAILED:");
        for f in &failures {
            eprintln!("  {f}");
        }
        return Ok(false);
    }
    Ok(true)
}

fn human(rate: f64) -> String {
    if rate >= 1e6 {
        format!("{:.3}M", rate / 1e6)
    } else if rate >= 1e3 {
        format!("{:.1}k", rate / 1e3)
    } else {
        format!("{rate:.0}")
    }
}

fn print_table(servers: &[Server], outcomes: &[Outcome], baseline: Option<usize>) {
    // A column is as wide as its server's name, and at least 16.
    let widths: Vec<usize> = servers.iter().map(|s| s.name.len().max(16)).collect();
    let row = |label: &str, cells: &mut dyn Iterator<Item = String>| {
        let mut line = format!("{label:<22}");
        for (cell, width) in cells.zip(&widths) {
            let _ = write!(line, " {cell:>width$}");
        }
        line
    };
    let mut header = row("scenario", &mut servers.iter().map(|s| s.name.clone()));
    let _ = write!(header, " {:>16}", "chito vs best");
    println!("{header}");
    for o in outcomes {
        let unit = if o.idle { " (KiB/conn)" } else { " (msg/s)" };
        let mut line = row(
            &format!("{}{unit}", o.scenario),
            &mut (0..servers.len()).map(|i| match o.median(i) {
                Some(v) if o.idle => format!("{v:.2}"),
                Some(v) => human(v),
                None => "FAILED".into(),
            }),
        );
        let ratio = o.ratio(servers).map_or("-".into(), |r| format!("{r:.2}"));
        let _ = write!(line, " {ratio:>16}");
        println!("{line}");
        if !o.idle && o.size >= 1 << 20 {
            let gib = |i| {
                o.median(i).map_or("-".into(), |v| {
                    format!("{:.2}", v * o.size as f64 / (1u64 << 30) as f64)
                })
            };
            println!("{}", row("  (GiB/s)", &mut (0..servers.len()).map(gib)));
        }
        if servers.iter().filter(|s| is_chito_driver(s)).count() > 1 {
            // Each of chito's drivers against the best peer, as the last
            // column does for the tokio adapter.
            let cells = &mut (0..servers.len()).map(|i| {
                is_chito_driver(&servers[i])
                    .then(|| o.vs_best_peer(servers, i))
                    .flatten()
                    .map_or("-".into(), |r| format!("{r:.2}"))
            });
            println!("{}", row("  vs best peer", cells));
        }
        if let Some(base) = baseline {
            let label = format!("  vs {}", servers[base].name);
            let cells = &mut (0..servers.len()).map(|i| {
                o.vs_baseline(i, base)
                    .map_or("-".into(), |r| format!("{r:.3}"))
            });
            println!("{}", row(&label, cells));
        }
    }
    println!(
        "chito vs best: chito / best built-in peer for msg/s, best peer / chito for KiB/conn; \
         > 1 means chito is better in both (\"vs best peer\": the same for each of chito's \
         drivers)"
    );
    print_figures(servers, outcomes);
    if let Some(base) = baseline {
        println!(
            "vs {0}: median / {0}'s median (msg/s: > 1 is faster; KiB/conn: > 1 is more memory)",
            servers[base].name
        );
    }
}

/// One of chito's own servers without axum: a driver of chito's core.
fn is_chito_driver(server: &Server) -> bool {
    server.binary.is_none()
        && ["chito", "chito-uring", "chito-compio"].contains(&server.name.as_str())
}

/// The other figures, median over the runs, one line per scenario and
/// server: the server's CPU time per message (echo), the kernel's slab
/// growth per connection (idle).
fn print_figures(servers: &[Server], outcomes: &[Outcome]) {
    let mut header = false;
    for o in outcomes {
        for (i, server) in servers.iter().enumerate() {
            let Some(figures) = o.figures.get(i).filter(|f| !f.is_empty()) else {
                continue;
            };
            if !header {
                println!();
                println!(
                    "other figures (median of the runs): cpu_us_per_msg and cpu_percent are the \
                     server's user + system CPU time (/proc/<pid>/stat) over the measured window; \
                     slab_*_B are kernel slab bytes per idle connection (both loopback ends)"
                );
                header = true;
            }
            // Each kmalloc size is in the JSON; printed only if it moved.
            let cells: Vec<String> = figures
                .iter()
                .map(|(name, values)| (name, median(values)))
                .filter(|(name, m)| {
                    !name.starts_with("slab_kmalloc-") || m.abs() >= KMALLOC_PRINTED
                })
                .map(|(name, m)| format!("{name} {m:.2}"))
                .collect();
            println!(
                "  {:<15} {:<17} {}",
                o.scenario,
                server.name,
                cells.join(", ")
            );
        }
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.4}")
    } else {
        "null".into()
    }
}

fn to_json(
    settings: &Settings,
    versions: &BTreeMap<&str, String>,
    servers: &[Server],
    baseline: Option<usize>,
    outcomes: &[Outcome],
    failures: &[String],
    load: [&str; 2],
) -> String {
    let mut j = String::from("{\n");
    let _ = writeln!(
        j,
        "  \"mode\": {},",
        json_str(if settings.quick { "quick" } else { "full" })
    );
    let _ = writeln!(
        j,
        "  \"warmup_s\": {},",
        json_num(settings.warmup.as_secs_f64())
    );
    let _ = writeln!(
        j,
        "  \"measure_s\": {},",
        json_num(settings.measure.as_secs_f64())
    );
    let _ = writeln!(j, "  \"runs\": {},", settings.runs);
    let idle_conns: Vec<String> = settings.idle_conns.iter().map(usize::to_string).collect();
    let _ = writeln!(j, "  \"idle_connections\": [{}],", idle_conns.join(", "));
    let _ = writeln!(j, "  \"pinned\": {},", settings.pinned);
    let _ = writeln!(
        j,
        "  \"load_average\": {{\"start\": {}, \"end\": {}}},",
        json_str(load[0]),
        json_str(load[1])
    );
    let versions: Vec<String> = versions
        .iter()
        .map(|(k, v)| format!("{}: {}", json_str(k), json_str(v)))
        .collect();
    let _ = writeln!(j, "  \"versions\": {{{}}},", versions.join(", "));
    let names: Vec<String> = servers.iter().map(|s| json_str(&s.name)).collect();
    let _ = writeln!(j, "  \"servers\": [{}],", names.join(", "));
    let external: Vec<String> = servers
        .iter()
        .filter_map(|s| {
            let binary = s.binary.as_ref()?.display().to_string();
            Some(format!("{}: {}", json_str(&s.name), json_str(&binary)))
        })
        .collect();
    let _ = writeln!(j, "  \"external\": {{{}}},", external.join(", "));
    let _ = writeln!(
        j,
        "  \"baseline\": {},",
        baseline.map_or("null".into(), |b| json_str(&servers[b].name))
    );
    j.push_str("  \"scenarios\": [\n");
    for (i, o) in outcomes.iter().enumerate() {
        j.push_str("    {");
        let _ = write!(j, "\"name\": {}, ", json_str(&o.scenario));
        let _ = write!(
            j,
            "\"unit\": {}, ",
            json_str(if o.idle { "KiB/conn" } else { "msg/s" })
        );
        let mut medians = Vec::new();
        let mut runs = Vec::new();
        let mut gib = Vec::new();
        let mut vs_baseline = Vec::new();
        for (i, server) in servers.iter().enumerate() {
            let s = &server.name;
            let m = o.median(i).map_or("null".into(), json_num);
            medians.push(format!("{}: {m}", json_str(s)));
            let r = match o.runs.get(i) {
                Some(Some(v)) => format!(
                    "[{}]",
                    v.iter()
                        .map(|x| json_num(*x))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                _ => "null".into(),
            };
            runs.push(format!("{}: {r}", json_str(s)));
            if !o.idle && o.size >= 1 << 20 {
                let g = o.median(i).map_or("null".into(), |v| {
                    json_num(v * o.size as f64 / (1u64 << 30) as f64)
                });
                gib.push(format!("{}: {g}", json_str(s)));
            }
            if let Some(base) = baseline {
                let r = o.vs_baseline(i, base).map_or("null".into(), json_num);
                vs_baseline.push(format!("{}: {r}", json_str(s)));
            }
        }
        let _ = write!(j, "\"median\": {{{}}}, ", medians.join(", "));
        let figures: Vec<String> = servers
            .iter()
            .zip(&o.figures)
            .map(|(server, figures)| {
                let each: Vec<String> = figures
                    .iter()
                    .map(|(name, values)| {
                        let runs: Vec<String> = values.iter().map(|v| json_num(*v)).collect();
                        format!(
                            "{}: {{\"median\": {}, \"runs\": [{}]}}",
                            json_str(name),
                            json_num(median(values)),
                            runs.join(", ")
                        )
                    })
                    .collect();
                format!("{}: {{{}}}", json_str(&server.name), each.join(", "))
            })
            .collect();
        let _ = write!(j, "\"figures\": {{{}}}, ", figures.join(", "));
        let _ = write!(j, "\"runs\": {{{}}}, ", runs.join(", "));
        if !gib.is_empty() {
            let _ = write!(j, "\"gib_per_s\": {{{}}}, ", gib.join(", "));
        }
        if baseline.is_some() {
            let _ = write!(j, "\"vs_baseline\": {{{}}}, ", vs_baseline.join(", "));
        }
        let ratio_name = if o.idle {
            "best_peer_over_chito"
        } else {
            "chito_over_best_peer"
        };
        let ratio = o.ratio(servers).map_or("null".into(), json_num);
        let _ = write!(j, "{}: {ratio}, ", json_str(ratio_name));
        let drivers: Vec<String> = (0..servers.len())
            .filter(|&i| is_chito_driver(&servers[i]))
            .map(|i| {
                let r = o.vs_best_peer(servers, i).map_or("null".into(), json_num);
                format!("{}: {r}", json_str(&servers[i].name))
            })
            .collect();
        let _ = write!(j, "\"vs_best_peer\": {{{}}}", drivers.join(", "));
        j.push('}');
        if i + 1 < outcomes.len() {
            j.push(',');
        }
        j.push('\n');
    }
    j.push_str("  ],\n");
    let failures: Vec<String> = failures.iter().map(|f| json_str(f)).collect();
    let _ = writeln!(j, "  \"failures\": [{}]", failures.join(", "));
    j.push_str("}\n");
    j
}
