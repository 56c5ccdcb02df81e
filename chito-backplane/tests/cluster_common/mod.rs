//! tests/cluster.rs's harness: brokers and `chat_node` processes on
//! loopback, their HTTP endpoints, and chat clients over chito's client.
//! Every wait has a deadline; every process is killed when its owner is
//! dropped, and a failing test prints the tails of their logs.

use std::fmt;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chito::tokio::Handle;
use chito::{Message, OwnedEvent};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::common::{Nats, Redis};

/// The longest a process may take to be ready.
const START: Duration = Duration::from_secs(20);

/// Which broker, and how the nodes use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Redis,
    RedisSharded,
    Nats,
    JetStream,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Redis => "redis",
            Kind::RedisSharded => "redis-sharded",
            Kind::Nats => "nats",
            Kind::JetStream => "jetstream",
        })
    }
}

// ---- processes --------------------------------------------------------------

/// The example, built once per test binary with the profile the tests were
/// built with (cargo builds the examples of `cargo test`'s packages only
/// when asked for all targets).
pub fn chat_node_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        // target/<profile>/deps/cluster-<hash>
        let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .args([
                "build",
                "--quiet",
                "-p",
                "chito-backplane",
                "--example",
                "chat_node",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null());
        if profile_dir.ends_with("release") {
            cargo.arg("--release");
        }
        let mut child = cargo.spawn().expect("cargo");
        let deadline = Instant::now() + Duration::from_secs(900);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("building chat_node took longer than 15 minutes");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(status.success(), "building chat_node failed");
        let binary = profile_dir.join("examples").join("chat_node");
        assert!(
            binary.exists(),
            "{} missing after the build",
            binary.display()
        );
        binary
    })
}

/// A child process whose output goes to a log file; killed when dropped.
pub struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &str, program: &Path, args: &[String], log: PathBuf) -> Proc {
        let out = File::create(&log).unwrap();
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Proc {
            name: name.to_owned(),
            child: Some(child),
            log,
        }
    }

    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits (at most 10 s, then SIGKILL).
    pub async fn terminate(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(child.try_wait(), Ok(None)) {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.wait();
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn print_tail(&self) {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        eprintln!("--- {} ({})", self.name, self.log.display());
        for line in &lines[lines.len().saturating_sub(30)..] {
            eprintln!("{line}");
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until `check` is true, polling; panics with `what` at `timeout`.
async fn poll<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(()) => return,
            Err(last) => last,
        };
        if Instant::now() > deadline {
            panic!("{what}: not within {timeout:?} (last: {last})");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// GET over HTTP/1.0 (no chunked body to undo), the body as JSON.
pub async fn get_json(addr: SocketAddr, path: &str) -> Result<Value, String> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .map_err(|_| format!("GET {path}: no answer within 5 s"))?
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET {path}: no HTTP head in {text:?}"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!("GET {path}: {}", head.lines().next().unwrap_or("")));
    }
    serde_json::from_str(body).map_err(|e| format!("GET {path}: {e} in {body:?}"))
}

// ---- brokers ----------------------------------------------------------------

/// The broker process (tests/common's, shared with this crate's other
/// tests).
enum Server {
    Redis(Redis),
    Nats(Nats),
}

/// A broker on a free loopback port, without persistence.
pub struct Broker {
    pub kind: Kind,
    server: Server,
}

impl Broker {
    async fn start(kind: Kind) -> Broker {
        // The helpers wait for the port with short blocking sleeps (and
        // may install the server first).
        let server = tokio::task::block_in_place(|| match kind {
            Kind::Redis | Kind::RedisSharded => Server::Redis(Redis::start()),
            Kind::Nats | Kind::JetStream => Server::Nats(Nats::start()),
        });
        Broker { kind, server }
    }

    /// The `--backplane` URL for the nodes.
    pub fn url(&self) -> String {
        match (&self.server, self.kind) {
            (Server::Redis(redis), Kind::RedisSharded) => redis.sharded_url(),
            (Server::Redis(redis), _) => redis.url(),
            (Server::Nats(nats), Kind::JetStream) => nats.jetstream_url(),
            (Server::Nats(nats), _) => nats.url(),
        }
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        tokio::task::block_in_place(|| match &mut self.server {
            Server::Redis(redis) => redis.kill(),
            Server::Nats(nats) => nats.kill(),
        });
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        tokio::task::block_in_place(|| match &mut self.server {
            Server::Redis(redis) => redis.restart(),
            Server::Nats(nats) => nats.restart(),
        });
    }

    /// The subjects of NATS's subscriptions, one entry per subscription.
    fn nats_subscriptions(nats: &Nats) -> Vec<String> {
        let body = tokio::task::block_in_place(|| nats.monitor("/subsz?subs=1&limit=100000"));
        let subsz: Value = serde_json::from_str(&body).unwrap();
        subsz["subscriptions_list"]
            .as_array()
            .map(|subs| {
                subs.iter()
                    .filter_map(|s| s["subject"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many connections are subscribed to `channel` (Redis: `PUBSUB
    /// NUMSUB`/`SHARDNUMSUB`; NATS: the subscriptions on that subject in
    /// `/subsz`).
    pub async fn subscribers(&self, channel: &str) -> usize {
        match &self.server {
            Server::Redis(redis) => {
                let command = if self.kind == Kind::RedisSharded {
                    "SHARDNUMSUB"
                } else {
                    "NUMSUB"
                };
                // [channel, count]
                let reply = redis.query(&["PUBSUB", command, channel]).await;
                reply[1].parse().unwrap()
            }
            Server::Nats(nats) => Broker::nats_subscriptions(nats)
                .iter()
                .filter(|s| *s == channel)
                .count(),
        }
    }

    /// Waits until `channel` has `count` subscribers.
    pub async fn await_subscribers(&self, channel: &str, count: usize, timeout: Duration) {
        poll(
            &format!("{count} subscribers to {channel}"),
            timeout,
            || async move {
                let now = self.subscribers(channel).await;
                if now == count {
                    Ok(())
                } else {
                    Err(format!("{now}"))
                }
            },
        )
        .await;
    }

    /// The channels/subjects someone is subscribed to (Redis `PUBSUB
    /// CHANNELS`/`SHARDCHANNELS`, NATS `/subsz`).
    pub async fn channels(&self) -> Vec<String> {
        match &self.server {
            Server::Redis(redis) if self.kind == Kind::RedisSharded => {
                redis.shard_channels("*").await
            }
            Server::Redis(redis) => redis.channels("*").await,
            Server::Nats(nats) => Broker::nats_subscriptions(nats),
        }
    }
}

// ---- nodes ------------------------------------------------------------------

/// One chat_node process.
pub struct Node {
    pub name: String,
    pub addr: SocketAddr,
    args: Vec<String>,
    dir: PathBuf,
    starts: usize,
    proc: Proc,
}

impl Node {
    async fn start(dir: &Path, name: &str, args: Vec<String>, starts: usize) -> Node {
        let log = dir.join(format!("{name}-{starts}.log"));
        let mut proc = Proc::spawn(name, chat_node_binary(), &args, log);
        let deadline = Instant::now() + START;
        let addr = loop {
            let text = proc.log_text();
            let found = text.lines().find_map(|line| {
                line.strip_prefix("chat server listening on http://")?
                    .strip_suffix('/')?
                    .parse::<SocketAddr>()
                    .ok()
            });
            if let Some(addr) = found {
                break addr;
            }
            if !proc.running() || Instant::now() > deadline {
                proc.print_tail();
                panic!("node {name} did not start");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Node {
            name: name.to_owned(),
            addr,
            args,
            dir: dir.to_owned(),
            starts,
            proc,
        }
    }

    pub async fn stats(&self) -> Value {
        get_json(self.addr, "/stats").await.unwrap()
    }

    /// The broker channel of `room`, from the node's `/stats` (the room
    /// must have a member there).
    pub async fn room_channel(&self, room: &str) -> String {
        let stats = self.stats().await;
        stats["rooms"][room]["channel"]
            .as_str()
            .unwrap_or_else(|| panic!("no channel for {room} in {stats}"))
            .to_owned()
    }

    /// Waits until the node counts `count` members in `room`, everywhere.
    pub async fn await_count(&self, room: &str, count: u64, timeout: Duration) {
        let pointer = format!("/rooms/{room}/count");
        self.await_json("/stats", &pointer, json!(count), timeout)
            .await;
    }

    /// Waits until `/health` says `key` is `value`.
    pub async fn await_health(&self, key: &str, value: bool, timeout: Duration) {
        self.await_json("/health", &format!("/{key}"), json!(value), timeout)
            .await;
    }

    /// Waits until the JSON at `path` has `want` at `pointer`.
    async fn await_json(&self, path: &str, pointer: &str, want: Value, timeout: Duration) {
        let what = format!("{}'s {path} {pointer} = {want}", self.name);
        let want = &want;
        poll(&what, timeout, || async move {
            let now = get_json(self.addr, path).await?;
            match now.pointer(pointer) {
                Some(value) if value == want => Ok(()),
                value => Err(format!("{value:?}")),
            }
        })
        .await;
    }

    /// `kill -9`: no goodbye.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// SIGTERM: a graceful stop, with the goodbye to the other nodes.
    pub async fn terminate(&mut self) {
        self.proc.terminate().await;
    }
}

/// A broker and its nodes, for one test.
pub struct Cluster {
    pub broker: Broker,
    pub nodes: Vec<Node>,
    dir: PathBuf,
    flags: Vec<String>,
    done: bool,
}

impl Cluster {
    /// A broker of `kind` and `nodes` nodes named a, b, c… with `flags`
    /// besides `--listen` and `--backplane`. Logs in
    /// `target/cluster/<test>/`.
    pub async fn start(test: &str, kind: Kind, nodes: usize, flags: &[&str]) -> Cluster {
        let binary = chat_node_binary();
        let dir = binary.parent().unwrap().join("../../cluster").join(test);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let broker = Broker::start(kind).await;
        let mut cluster = Cluster {
            broker,
            nodes: Vec::new(),
            dir,
            flags: flags.iter().map(|f| f.to_string()).collect(),
            done: false,
        };
        for i in 0..nodes {
            let name = ((b'a' + i as u8) as char).to_string();
            cluster.add_node(&name, &[]).await;
        }
        cluster
    }

    /// One more node, with `extra` flags besides the cluster's.
    pub async fn add_node(&mut self, name: &str, extra: &[String]) {
        let mut args = vec![
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--backplane".to_owned(),
            self.broker.url(),
        ];
        args.extend(self.flags.iter().cloned());
        args.extend(extra.iter().cloned());
        let node = Node::start(&self.dir, name, args, 1).await;
        self.nodes.push(node);
    }

    /// Kills node `i` (if alive) and starts it again with the same flags
    /// (on another port).
    pub async fn restart_node(&mut self, i: usize) {
        let old = &mut self.nodes[i];
        old.kill();
        let node = Node::start(&old.dir, &old.name, old.args.clone(), old.starts + 1).await;
        self.nodes[i] = node;
    }

    /// The test passed: keep the logs quiet.
    pub fn finish(mut self) {
        self.done = true;
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.done || std::thread::panicking() {
            for node in &self.nodes {
                node.proc.print_tail();
            }
        }
    }
}

// ---- clients ----------------------------------------------------------------

/// What a chat client has received.
#[derive(Debug, Default)]
pub struct Seen {
    /// Chat lines, (from, text), in arrival order.
    pub lines: Vec<(String, String)>,
    /// The last member list.
    pub members: Vec<String>,
    /// `joined` replies.
    pub joined: usize,
    /// `error` replies.
    pub errors: Vec<String>,
}

impl Seen {
    fn take(&mut self, value: Value) {
        let text = |key: &str| value[key].as_str().unwrap_or_default().to_owned();
        match value["type"].as_str() {
            Some("message") => self.lines.push((text("from"), text("text"))),
            Some("members") => {
                self.members = value["names"]
                    .as_array()
                    .map(|names| {
                        names
                            .iter()
                            .filter_map(|n| n.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
            }
            Some("joined") => self.joined += 1,
            Some("error") => self.errors.push(text("text")),
            _ => panic!("unexpected message {value}"),
        }
    }

    /// How many times `from` said `text`.
    pub fn count(&self, from: &str, text: &str) -> usize {
        self.lines
            .iter()
            .filter(|(f, t)| f == from && t == text)
            .count()
    }

    /// The numbers of `from`'s lines "`from` N", in arrival order.
    pub fn numbered(&self, from: &str) -> Vec<usize> {
        let prefix = format!("{from} ");
        self.lines
            .iter()
            .filter(|(f, _)| f == from)
            .filter_map(|(_, t)| t.strip_prefix(&prefix)?.parse().ok())
            .collect()
    }
}

/// A chat client on one node: a task reads the WebSocket and passes each
/// message on, parsed.
pub struct Client {
    pub name: String,
    handle: Handle,
    incoming: mpsc::UnboundedReceiver<Value>,
    reader: JoinHandle<()>,
    pub seen: Seen,
}

impl Client {
    /// Connects to `node` and joins `room` as `name`.
    pub async fn join(node: &Node, name: &str, room: &str) -> Client {
        let url = format!("ws://{}/ws", node.addr);
        let (ws, _) = tokio::time::timeout(START, chito::tokio::connect(&url))
            .await
            .unwrap_or_else(|_| panic!("{name}: no WebSocket to {url}"))
            .unwrap_or_else(|e| panic!("{name}: {url}: {e}"));
        let (handle, mut read) = ws.split();
        let (tx, incoming) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            while let Ok(event) = read.recv().await {
                match event {
                    OwnedEvent::Text(text) => {
                        let value = serde_json::from_str(&text).expect("JSON from the chat");
                        if tx.send(value).is_err() {
                            break;
                        }
                    }
                    OwnedEvent::Close(_) => break,
                    _ => {}
                }
            }
        });
        let mut client = Client {
            name: name.to_owned(),
            handle,
            incoming,
            reader,
            seen: Seen::default(),
        };
        client.send_join(name, room).await;
        client
    }

    /// Joins `room` (leaving the current one) and waits for the reply.
    pub async fn send_join(&mut self, name: &str, room: &str) {
        let before = self.seen.joined;
        self.send(json!({ "type": "join", "name": name, "room": room }))
            .await;
        self.until("joined", START, |seen| seen.joined > before)
            .await;
    }

    async fn send(&self, value: Value) {
        self.handle
            .send(Message::Text(&value.to_string()))
            .await
            .unwrap_or_else(|e| panic!("{}: send: {e:?}", self.name));
    }

    /// Says `text` in the current room.
    pub async fn say(&self, text: &str) {
        self.send(json!({ "type": "say", "text": text })).await;
    }

    /// The sending half, for another task.
    pub fn sender(&self) -> Handle {
        self.handle.clone()
    }

    /// Takes in what has arrived, without waiting.
    pub async fn pump(&mut self) {
        while let Ok(value) = self.incoming.try_recv() {
            self.seen.take(value);
        }
    }

    /// Takes in messages until `done` holds; panics after `timeout` or if
    /// the connection ends first.
    pub async fn until(&mut self, what: &str, timeout: Duration, done: impl Fn(&Seen) -> bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.pump().await;
            if done(&self.seen) {
                return;
            }
            match tokio::time::timeout_at(deadline, self.incoming.recv()).await {
                Ok(Some(value)) => self.seen.take(value),
                Ok(None) => panic!("{}: connection ended while waiting for {what}", self.name),
                Err(_) => panic!(
                    "{}: no {what} within {timeout:?}; members {:?}, last lines {:?}, errors {:?}",
                    self.name,
                    self.seen.members,
                    &self.seen.lines[self.seen.lines.len().saturating_sub(5)..],
                    self.seen.errors
                ),
            }
        }
    }

    /// Waits until every client's member list is `names` (in any order).
    pub async fn converge(clients: &mut [Client], names: &[&str]) {
        let mut want: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        want.sort();
        for client in clients {
            client
                .until(
                    &format!("member list {want:?}"),
                    Duration::from_secs(15),
                    |seen| {
                        let mut have = seen.members.clone();
                        have.sort();
                        have == want
                    },
                )
                .await;
        }
    }

    /// `clients[speaker]` says numbered warm-up lines until every client
    /// has heard one: subscriptions are in place across the nodes.
    pub async fn warm_up(clients: &mut [Client], speaker: usize) {
        let from = clients[speaker].name.clone();
        let heard = |seen: &Seen| {
            seen.lines
                .iter()
                .any(|(f, t)| *f == from && t.starts_with("warm-up"))
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        for n in 0.. {
            clients[speaker].say(&format!("warm-up {n}")).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut all = true;
            for client in clients.iter_mut() {
                client.pump().await;
                all &= heard(&client.seen);
            }
            if all {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "warm-up lines from {from} did not reach everyone within 15 s"
            );
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // Ends the connection: the reading half drives it.
        self.reader.abort();
    }
}
