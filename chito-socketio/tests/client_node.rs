//! The official Socket.IO client (`socket.io-client` 4.8, pinned in
//! tests/node/package-lock.json) in Node against servers started here on
//! 127.0.0.1:0 (docs/socketio.md §11, "Official clients"). Each test
//! builds a server with the handlers its scenario needs, runs one script of
//! tests/node/scenarios with `CHITO_URL` pointing at it, bounded in time,
//! and asserts the script's exit code and output, and what the server saw.
//!
//! `npm ci` runs in tests/node when its node_modules is missing (bounded
//! in time); without `node` or `npm` the tests fail saying so (CI has
//! both: these are not skipped).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chito_socketio::socketio::{
    Ack, AckError, Args, Binary, ConnectError, DisconnectReason, Socket, SocketIo,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The longest one scenario script may run (each also has its own watchdog).
const SCRIPT_LIMIT: Duration = Duration::from_secs(60);
/// The longest `npm ci` may take.
const NPM_LIMIT: Duration = Duration::from_secs(300);

fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}

/// Installs tests/node's packages once per test binary, if missing.
fn ensure_node_modules() {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = INSTALLED.get_or_init(|| {
        let dir = node_dir();
        if dir
            .join("node_modules/socket.io-client/package.json")
            .is_file()
        {
            return Ok(());
        }
        eprintln!("client_node: running npm ci in {}", dir.display());
        let mut child = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            // playwright-core (for the browser test) never downloads a browser.
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run npm ({e}): Node.js and npm are required"))?;
        let started = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => return Err(format!("npm ci failed: {status}")),
                Ok(None) if started.elapsed() > NPM_LIMIT => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("npm ci took longer than {NPM_LIMIT:?}"));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => return Err(format!("waiting for npm ci: {e}")),
            }
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Serves `io` on a fresh 127.0.0.1 port: its URL and the serving task.
async fn serve(io: &SocketIo) -> (String, JoinHandle<std::io::Result<()>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("local addr"));
    (url, tokio::spawn(io.clone().serve(listener)))
}

/// A scenario's `node` process, with `CHITO_URL` and `env` set.
fn node(script: &str, url: &str, env: &[(&str, &str)]) -> tokio::process::Command {
    ensure_node_modules();
    let dir = node_dir();
    let mut command = tokio::process::Command::new("node");
    command
        .arg(dir.join("scenarios").join(script))
        .current_dir(&dir)
        .env("CHITO_URL", url)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs `script` to its end (at most [`SCRIPT_LIMIT`]) and asserts it
/// exited 0 having printed `scenario <name>: done`; returns its output.
async fn run_scenario(script: &str, name: &str, url: &str, env: &[(&str, &str)]) -> String {
    let started = Instant::now();
    let child = node(script, url, env)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node ({e}): Node.js is required"));
    let output = tokio::time::timeout(SCRIPT_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{script} ran longer than {SCRIPT_LIMIT:?}"))
        .expect("node output");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!(
        "{script} ({name}) in {:?}:\n{stdout}{stderr}",
        started.elapsed()
    );
    assert!(
        output.status.success(),
        "{script} ({name}) failed with {}:\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains(&format!("scenario {name}: done")),
        "{script} ({name}) did not finish:\n{stdout}"
    );
    stdout
}

/// Echoes `echo`'s arguments as its ack, greets with the socket id, and
/// answers `push-me` with an emit.
fn echo_server() -> SocketIo {
    let io = SocketIo::builder().build();
    io.ns("/", |socket: Socket| {
        let _ = socket.emit("hello", &json!({ "id": socket.id() }));
        socket.on("echo", |_: Socket, args: Args, ack: Ack| {
            let _ = ack.send_args(&args);
        });
        socket.on("push-me", |socket: Socket, args: Args, _: Ack| {
            let _ = socket.emit_args("pushed", &args);
        });
    });
    io
}

async fn transports(mode: &str) {
    let io = echo_server();
    let (url, _server) = serve(&io).await;
    run_scenario(
        "transports.mjs",
        &format!("transports-{mode}"),
        &url,
        &[("CHITO_TRANSPORTS", mode)],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_only() {
    transports("websocket").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_then_upgrade() {
    transports("default").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_only() {
    transports("polling").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_both_ways() {
    let (outcomes, mut seen) = mpsc::unbounded_channel::<Result<Value, AckError>>();
    let io = SocketIo::builder().build();
    io.ns("/", move |socket: Socket| {
        socket.on("sum", |_: Socket, args: Args, ack: Ack| {
            let answer = args.all::<(i64, i64)>().map(|(a, b)| a + b);
            let _ = ack.send(&answer.ok());
        });
        socket.on("many", |_: Socket, _: Args, ack: Ack| {
            let _ = ack.send_args(&(1, "two", json!({ "three": [3] }), ()));
        });
        // Never answered: the client's own timeout must fire.
        socket.on("no-answer", |_: Socket, _: Args, _: Ack| {});
        let asked = outcomes.clone();
        socket.on("ask-me", move |socket: Socket, _: Args, _: Ack| {
            let outcomes = asked.clone();
            let Ok(answer) = socket.emit_with_ack("question", &json!({ "q": "color?" })) else {
                return;
            };
            tokio::spawn(async move {
                let first = answer.await.map(|args| args.first::<Value>().ok());
                if let Ok(Some(first)) = &first {
                    let _ = socket.emit("answer", first);
                }
                let _ = outcomes.send(first.map(|v| v.unwrap_or(Value::Null)));
            });
        });
        let ignored = outcomes.clone();
        socket.on("ask-me-ignored", move |socket: Socket, _: Args, _: Ack| {
            let outcomes = ignored.clone();
            let Ok(answer) =
                socket.emit_with_ack_timeout("question-ignored", &(1,), Duration::from_millis(300))
            else {
                return;
            };
            tokio::spawn(async move {
                let answer = answer.await;
                let word = match &answer {
                    Ok(_) => "answered",
                    Err(AckError::Timeout) => "timeout",
                    Err(AckError::Disconnected) => "disconnected",
                };
                let _ = socket.emit("ask-outcome", word);
                let _ = outcomes.send(answer.map(|_| Value::Null));
            });
        });
    });
    let (url, _server) = serve(&io).await;
    run_scenario("acks.mjs", "acks", &url, &[]).await;
    assert_eq!(
        seen.try_recv().ok(),
        Some(Ok(json!({ "color": "blue", "q": { "q": "color?" } }))),
        "the server's emit_with_ack answer"
    );
    assert_eq!(seen.try_recv().ok(), Some(Err(AckError::Timeout)));
}

/// What the client uploads (Buffers and ArrayBuffers become [`Binary`]).
#[derive(Deserialize)]
struct Upload {
    name: String,
    file: Binary,
    nested: Nested,
}

#[derive(Deserialize)]
struct Nested {
    parts: Vec<Binary>,
    meta: Meta,
}

#[derive(Deserialize)]
struct Meta {
    tags: Vec<String>,
    size: usize,
}

#[derive(Serialize)]
struct Download {
    label: &'static str,
    first: Binary,
    inner: Inner,
}

#[derive(Serialize)]
struct Inner {
    list: Vec<Binary>,
}

/// The checksum binary.mjs computes the same way.
fn checksum(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(7u64, |acc, &b| (acc * 31 + u64::from(b)) % 1_000_000_007)
}

/// binary.mjs's `bytes(n, seed)`.
fn pattern(n: usize, seed: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 31 + seed) & 0xff) as u8).collect()
}

fn binary_server(uploads: mpsc::UnboundedSender<usize>) -> SocketIo {
    let io = SocketIo::builder().build();
    io.ns("/", move |socket: Socket| {
        let uploads = uploads.clone();
        socket.on("upload", move |_: Socket, args: Args, ack: Ack| {
            let Ok(upload) = args.first::<Upload>() else {
                let _ = ack.send(&"not an upload");
                return;
            };
            let mut blobs = vec![&upload.file];
            blobs.extend(&upload.nested.parts);
            let _ = uploads.send(upload.file.0.len());
            let _ = ack.send(&json!({
                "name": upload.name,
                "sizes": blobs.iter().map(|b| b.0.len()).collect::<Vec<_>>(),
                "sums": blobs.iter().map(|b| checksum(&b.0)).collect::<Vec<_>>(),
                "tags": upload.nested.meta.tags,
                "declared": upload.nested.meta.size,
            }));
        });
        socket.on("give", |socket: Socket, args: Args, _: Ack| {
            let n = args.first::<usize>().unwrap_or(0).min(1 << 20);
            let download = Download {
                label: "three blobs",
                first: Binary::from(pattern(n, 9)),
                inner: Inner {
                    list: vec![Binary::from(vec![1, 2, 3]), Binary::from(Vec::new())],
                },
            };
            let _ = socket.emit_args("download", &(download, "second argument"));
        });
        socket.on("reverse", |_: Socket, args: Args, ack: Ack| {
            let Ok(data) = args.first::<Binary>() else {
                return;
            };
            let mut reversed = data.0.to_vec();
            reversed.reverse();
            let _ = ack.send_args(&(Binary::from(reversed), data.0.len()));
        });
        socket.on("echo", |socket: Socket, args: Args, _: Ack| {
            let _ = socket.emit_args("echo", &args);
        });
    });
    io
}

async fn binary(transport: &str) {
    let (uploads, mut seen) = mpsc::unbounded_channel();
    let io = binary_server(uploads);
    let (url, _server) = serve(&io).await;
    run_scenario(
        "binary.mjs",
        &format!("binary-{transport}"),
        &url,
        &[("CHITO_TRANSPORTS", transport)],
    )
    .await;
    assert_eq!(seen.try_recv().ok(), Some(70_000), "the upload's file size");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_both_ways_websocket() {
    binary("websocket").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_both_ways_polling() {
    binary("polling").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_auth_and_middleware() {
    let (refusals, mut seen) = mpsc::unbounded_channel::<String>();
    let io = SocketIo::builder().build();
    let where_am_i = |socket: &Socket| {
        socket.on("where", |socket: Socket, _: Args, ack: Ack| {
            let _ = ack.send(&socket.ns());
        });
    };
    io.ns("/", move |socket: Socket| where_am_i(&socket));
    io.ns("/admin", move |socket: Socket| {
        let auth: Value = serde_json::from_str(socket.auth().get()).unwrap_or(Value::Null);
        let _ = socket.emit("welcome", &json!({ "ns": socket.ns(), "auth": auth }));
        where_am_i(&socket);
    })
    .with(move |socket: &Socket| {
        #[derive(Deserialize)]
        struct Auth {
            token: Option<String>,
        }
        let token = serde_json::from_str::<Auth>(socket.auth().get())
            .ok()
            .and_then(|auth| auth.token);
        if token.as_deref() == Some("secret") {
            Ok(())
        } else {
            let _ = refusals.send(socket.auth().get().to_owned());
            Err(ConnectError::new("not authorized")
                .with_data(&json!({ "code": 4401, "hint": "token" })))
        }
    });
    io.dyn_ns(
        |name| {
            name.strip_prefix("/tenant-")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        },
        move |socket: Socket| {
            let _ = socket.emit("tenant", socket.ns());
            where_am_i(&socket);
        },
    );
    let (url, _server) = serve(&io).await;
    run_scenario("namespaces.mjs", "namespaces", &url, &[]).await;
    // The middleware saw both refused CONNECTs' payloads (none: `{}`).
    let mut refused = Vec::new();
    while let Ok(auth) = seen.try_recv() {
        refused.push(serde_json::from_str::<Value>(&auth).unwrap_or(Value::Null));
    }
    assert_eq!(refused, [json!({ "token": "guess" }), json!({})]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_to_within_except_broadcast() {
    let io = SocketIo::builder().build();
    let io_in_handlers = io.clone();
    io.ns("/", move |socket: Socket| {
        let io = io_in_handlers.clone();
        socket.on("join", |socket: Socket, args: Args, ack: Ack| {
            if let Ok(room) = args.first::<String>() {
                socket.join(&room);
            }
            let mut rooms = socket.rooms();
            rooms.sort();
            let _ = ack.send(&rooms);
        });
        socket.on("leave", |socket: Socket, args: Args, ack: Ack| {
            if let Ok(room) = args.first::<String>() {
                socket.leave(&room);
            }
            let mut rooms = socket.rooms();
            rooms.sort();
            let _ = ack.send(&rooms);
        });
        socket.on("to", |socket: Socket, args: Args, _: Ack| {
            if let Ok((room, text)) = args.all::<(String, String)>() {
                let _ = socket.to(&room).emit("said", &text);
            }
        });
        socket.on("within", |socket: Socket, args: Args, _: Ack| {
            if let Ok((room, text)) = args.all::<(String, String)>() {
                let _ = socket.within(&room).emit("said", &text);
            }
        });
        socket.on("except", |socket: Socket, args: Args, _: Ack| {
            if let Ok((room, text)) = args.all::<(String, String)>() {
                let _ = socket.except(&room).emit("said", &text);
            }
        });
        socket.on("broadcast", |socket: Socket, args: Args, _: Ack| {
            if let Ok(text) = args.first::<String>() {
                let _ = socket.broadcast().emit("said", &text);
            }
        });
        let io_to = io.clone();
        socket.on("io-to", move |_: Socket, args: Args, _: Ack| {
            if let Ok((room, text)) = args.all::<(String, String)>() {
                let _ = io_to.to(&room).emit("said", &text);
            }
        });
        let io_to = io.clone();
        socket.on("io-to-except", move |_: Socket, args: Args, _: Ack| {
            if let Ok((room, except, text)) = args.all::<(String, String, String)>() {
                let _ = io_to.to(&room).except(&except).emit("said", &text);
            }
        });
    });
    let (url, _server) = serve(&io).await;
    run_scenario("rooms.mjs", "rooms", &url, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restarted_under_a_connected_client() {
    fn generation(generation: u32) -> SocketIo {
        let io = SocketIo::builder().build();
        io.ns("/", move |socket: Socket| {
            socket.on("generation", move |_: Socket, _: Args, ack: Ack| {
                let _ = ack.send(&generation);
            });
        });
        io
    }
    let first = generation(1);
    let (url, serving) = serve(&first).await;
    let addr = url.trim_start_matches("http://").to_owned();
    let started = Instant::now();
    let mut child = node("restart.mjs", &url, &[])
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node ({e}): Node.js is required"));
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut output = String::new();
    // Until the script says it is connected to the first server.
    let ready = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            output.push_str(&line);
            output.push('\n');
            if line == "connected 1" {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ready, Ok(true), "restart.mjs never connected:\n{output}");

    // The first server goes away: sessions closed, the listener dropped.
    first.engine().shutdown(Duration::from_millis(500)).await;
    let stopped = tokio::time::timeout(Duration::from_secs(5), serving).await;
    assert!(
        matches!(stopped, Ok(Ok(Ok(())))),
        "serve did not end: {stopped:?}"
    );
    drop(first);
    // The client retries meanwhile (every 100-500 ms); a moment without a
    // server is part of the scenario.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = generation(2);
    let listener = TcpListener::bind(&addr)
        .await
        .unwrap_or_else(|e| panic!("cannot bind {addr} again: {e}"));
    let _serving = tokio::spawn(second.clone().serve(listener));

    let rest = tokio::time::timeout(SCRIPT_LIMIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            output.push_str(&line);
            output.push('\n');
        }
        child.wait().await
    })
    .await;
    println!("restart.mjs in {:?}:\n{output}", started.elapsed());
    let status = rest
        .unwrap_or_else(|_| panic!("restart.mjs ran longer than {SCRIPT_LIMIT:?}:\n{output}"))
        .expect("node status");
    assert!(status.success(), "restart.mjs failed ({status}):\n{output}");
    assert!(output.contains("scenario restart: done"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permessage_deflate_when_offered() {
    let io = echo_server();
    let (url, _server) = serve(&io).await;
    let output = run_scenario("deflate.mjs", "deflate", &url, &[]).await;
    assert!(output.contains("600 000 characters"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_reasons() {
    let (reasons, mut seen) = mpsc::unbounded_channel::<DisconnectReason>();
    let io = SocketIo::builder().build();
    io.ns("/", move |socket: Socket| {
        let reasons = reasons.clone();
        // The script's connections come one after the other, so the
        // reasons arrive in its order.
        socket.on_disconnect(move |_: Socket, reason| {
            let _ = reasons.send(reason);
        });
        socket.on("kick-me", |socket: Socket, _: Args, _: Ack| {
            socket.disconnect()
        });
    });
    let (url, _server) = serve(&io).await;
    run_scenario("disconnect.mjs", "disconnect", &url, &[]).await;
    let mut got = Vec::new();
    while let Ok(reason) = seen.try_recv() {
        got.push(reason);
    }
    assert_eq!(
        got,
        [
            DisconnectReason::ClientNamespaceDisconnect,
            DisconnectReason::ServerNamespaceDisconnect,
            DisconnectReason::TransportClose,
        ]
    );
}

/// Connection state recovery with the official client
/// (tests/node/scenarios/recovery.mjs): events emitted to the socket's
/// room while its connection is cut arrive once after the automatic
/// reconnect, `socket.recovered` is true, id and rooms kept; past the
/// window a new socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_state_recovery() {
    use chito_socketio::socketio::RecoveryConfig;
    let window = Duration::from_millis(2_000);
    let (connects, mut seen) = mpsc::unbounded_channel::<bool>();
    // Whether the socket was away when the missed ticks were emitted.
    let (away, mut was_away) = mpsc::unbounded_channel::<bool>();
    let io = SocketIo::builder()
        .connection_state_recovery(RecoveryConfig {
            max_disconnection_duration: window,
            ..RecoveryConfig::default()
        })
        .build();
    io.ns("/", move |socket: Socket| {
        let _ = connects.send(socket.recovered());
        let away = away.clone();
        socket.on("join", |socket: Socket, args: Args, ack: Ack| {
            if let Ok(room) = args.first::<String>() {
                socket.join(&room);
            }
            let mut rooms = socket.rooms();
            rooms.sort();
            let _ = ack.send(&rooms);
        });
        socket.on("tick", |socket: Socket, args: Args, ack: Ack| {
            if let Ok((from, to)) = args.all::<(u32, u32)>() {
                for k in from..=to.min(from.saturating_add(100)) {
                    let _ = socket.within("r").emit("tick", &k);
                }
            }
            let _ = ack.send_args(&());
        });
        socket.on(
            "missed-while-away",
            move |socket: Socket, args: Args, ack: Ack| {
                let away = away.clone();
                let Ok((from, to, delay)) = args.all::<(u32, u32, u64)>() else {
                    return;
                };
                let _ = ack.send_args(&());
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(delay.min(5_000))).await;
                    let _ = away.send(!socket.connected());
                    for k in from..=to.min(from.saturating_add(100)) {
                        let _ = socket.within("r").emit("tick", &k);
                    }
                });
            },
        );
    });
    let (url, _server) = serve(&io).await;
    let window_ms = window.as_millis().to_string();
    run_scenario(
        "recovery.mjs",
        "recovery",
        &url,
        &[("CHITO_RECOVERY_WINDOW_MS", &window_ms)],
    )
    .await;
    let mut recovered = Vec::new();
    while let Ok(flag) = seen.try_recv() {
        recovered.push(flag);
    }
    // First connect, the recovered one, the one past the window.
    assert_eq!(recovered, [false, true, false]);
    assert_eq!(
        was_away.try_recv().ok(),
        Some(true),
        "the ticks were emitted live"
    );
}
