//! Rooms fanout: how long one message takes to reach every member of a
//! room, and how many bytes the server allocates per emit, for
//! `chito::rooms` against the naive loop over handles, in the same run.
//!
//! ```text
//! cargo bench -p chito-bench --bench fanout                  # full: 10 000 members, 100 emits
//! cargo bench -p chito-bench --bench fanout -- --quick       # smoke: 1 000 members, 10 emits
//! FANOUT_QUICK=1 cargo bench -p chito-bench --bench fanout   # the same smoke run
//! ```
//!
//! Other knobs: `FANOUT_MEMBERS`, `FANOUT_EMITS` (also the number of
//! rounds), `FANOUT_SERVER_WORKERS` (0 = tokio current-thread runtime, the
//! default; n = multi-thread runtime with n workers, not pinned).
//!
//! How it is set up:
//! - This process is the server and the driver. It pins itself to CPU 0
//!   (`taskset -a -p`) before starting a tokio **current-thread** runtime,
//!   serves chito connections on 127.0.0.1, adds each to one [`Rooms`]
//!   registry and puts member `i` in room `all` and in room
//!   `room-{i % (N/100)}`, so there is one room of N and N/100 rooms of 100.
//!   The driver is a task on the same runtime: it emits, then waits for the
//!   clients to say that every member got the message.
//! - The clients are this binary re-executed (`CHITO_FANOUT_CLIENT=1`) as a
//!   second process pinned to CPU 1, on its own current-thread runtime:
//!   N raw TCP connections with their own HTTP upgrade (no extensions
//!   offered, so nothing is compressed) and their own frame parser. Every
//!   128-byte binary message carries its emit sequence number and how many
//!   members must receive it; the client process counts arrivals per
//!   sequence number and, when the last member has its copy, writes
//!   `done <seq> <spread µs>` to its stdout, a pipe the driver reads on the
//!   server's runtime. Latency is emit start → `done` read by the driver:
//!   it includes that one pipe hop, measured once (ping/pong over
//!   stdin/stdout, half the round trip) and printed. `spread` is first →
//!   last arrival inside the client process, without that hop.
//! - Scenarios, rooms and naive alternating emit by emit (and which of the
//!   two goes first, since the first finds the members' state cold in the
//!   cache) so that load from other jobs hits both alike:
//!   1. `1xN`: one room of N members, one emit at a time, waiting for
//!      completion each time.
//!   2. `100-member`: the N/100 rooms of 100 members, one room per emit,
//!      round-robin, one emit at a time.
//!   3. `round`: one emit to each of the N/100 rooms back to back, then
//!      wait for all of them; the latency is the whole round.
//!
//!   `rooms` is `Rooms::emit(room, Message::Binary(&payload))`; `naive` is
//!   `handle.try_send(Message::Binary(&payload))` for each member's handle
//!   (collected beforehand), so every member gets its own copy and encodes
//!   it itself.
//! - Allocations: a counting global allocator (this binary only) counts
//!   every allocation in the server process (realloc counts as one of its
//!   new size) from the emit call until the driver has read `done` — the
//!   emit, the connections' encoding and writing, and anything else the
//!   server does meanwhile (nothing else runs there). Shown per emit (per
//!   round for `round`), with the part spent inside the emit call.
//! - A few warm-up emits per scenario are not recorded. Any member that
//!   misses a message (5 s per emit), gets a wrong or duplicate one, any
//!   member the emit did not deliver to, or any lost connection fails the
//!   run (exit status 1).
//!
//! Results go to stdout as a table and to the repository's
//! `target/fanout-bench.json`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use chito::rooms::Rooms;
use chito::tokio::{Builder, Handle};
use chito::{Handler, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::net::{TcpListener, TcpStream};

use common::{clock_ticks_per_second, load_average, percentile, stat_ticks, write_results};

// ---------------------------------------------------------------------------
// Counting allocator
// ---------------------------------------------------------------------------

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static ALLOC_BYTES: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counting allocations and the bytes asked for.
struct Counting;

// SAFETY: every call is forwarded unchanged to `System`.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        ALLOC_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        ALLOC_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        ALLOC_BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Clone, Copy)]
struct AllocSnapshot {
    count: u64,
    bytes: u64,
}

fn allocs_now() -> AllocSnapshot {
    AllocSnapshot {
        count: ALLOCS.load(Ordering::Relaxed),
        bytes: ALLOC_BYTES.load(Ordering::Relaxed),
    }
}

// ---------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------

const CLIENT_ENV: &str = "CHITO_FANOUT_CLIENT";
const PAYLOAD_LEN: usize = 128;
const ROOM_SIZE: usize = 100;
/// Longest wait for one emit (or one round) to complete.
const EMIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for every connection to be set up.
const SETUP_TIMEOUT: Duration = Duration::from_secs(90);
/// Handshakes the client process runs at once.
const CONNECT_CONCURRENCY: usize = 200;

#[derive(Debug, Clone)]
struct Settings {
    quick: bool,
    members: usize,
    emits: usize,
    warmup: usize,
    /// 0: current-thread runtime.
    workers: usize,
}

impl Settings {
    fn from_env() -> Settings {
        let quick = std::env::args().any(|a| a == "--quick")
            || std::env::var("FANOUT_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let number = |name: &str, default: usize| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(default)
        };
        let members = number("FANOUT_MEMBERS", if quick { 1_000 } else { 10_000 });
        // Whole rooms of ROOM_SIZE, at least one.
        let members = (members / ROOM_SIZE).max(1) * ROOM_SIZE;
        Settings {
            quick,
            members,
            emits: number("FANOUT_EMITS", if quick { 10 } else { 100 }).max(1),
            warmup: if quick { 2 } else { 5 },
            workers: number("FANOUT_SERVER_WORKERS", 0),
        }
    }

    fn rooms(&self) -> usize {
        self.members / ROOM_SIZE
    }

    /// An upper bound on the sequence numbers the run uses.
    fn max_seq(&self) -> u64 {
        let per_variant =
            2 * (self.warmup + self.emits) + (self.warmup + self.emits) * self.rooms();
        (2 * per_variant + 16) as u64
    }

    fn runtime_name(&self) -> String {
        match self.workers {
            0 => "tokio current-thread".to_string(),
            n => format!("tokio multi-thread, {n} worker(s)"),
        }
    }
}

fn main() {
    if std::env::var_os(CLIENT_ENV).is_some() {
        client_main();
        return;
    }
    std::process::exit(match server_main() {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("fanout bench: {e}");
            2
        }
    });
}

/// Raises the soft open-file limit to the hard one.
fn raise_nofile() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}

// ---------------------------------------------------------------------------
// The server process: chito connections in a Rooms registry, and the driver
// ---------------------------------------------------------------------------

struct Quiet;
impl Handler for Quiet {}

/// Pins this process (all its threads) to CPU 0; false if not possible.
fn pin_self_to_cpu0() -> bool {
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
    me.args(["-a", "-p", "-c", "0", &std::process::id().to_string()]);
    let mut probe = Command::new("taskset");
    probe.args(["-c", "1", "true"]);
    ok(me) && ok(probe)
}

fn server_main() -> Result<bool, String> {
    let settings = Settings::from_env();
    let nofile = raise_nofile();
    if nofile < settings.members as u64 + 64 {
        return Err(format!(
            "open-file limit {nofile} is too low for {} members",
            settings.members
        ));
    }
    // Before pinning: the CPU count seen afterwards would be 1.
    let mut environment = Environment::capture();
    let pinned = settings.workers <= 1 && pin_self_to_cpu0();
    environment.pinned = pinned;
    let runtime = match settings.workers {
        0 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
    .map_err(|e| format!("tokio runtime: {e}"))?;
    println!(
        "fanout bench ({}): {} members, {} emits per scenario (+{} warm-up), {}-byte binary messages",
        if settings.quick { "quick" } else { "full" },
        settings.members,
        settings.emits,
        settings.warmup,
        PAYLOAD_LEN
    );
    println!(
        "server: {}{}; clients: raw tokio TcpStream readers, current-thread{}",
        settings.runtime_name(),
        if pinned {
            ", pinned to CPU 0"
        } else {
            ", not pinned"
        },
        if pinned {
            ", pinned to CPU 1"
        } else {
            ", not pinned"
        },
    );
    println!(
        "machine: {} CPUs, load average {} at start; open-file limit {nofile}",
        environment.cpus, environment.load_start
    );
    if !environment.busiest.is_empty() {
        println!("busiest processes at start (%CPU, command):");
        for line in &environment.busiest {
            println!("  {line}");
        }
    }
    let outcome = runtime.block_on(run(&settings, pinned));
    // Let connection tasks end with the runtime.
    drop(runtime);
    let mut outcome = outcome?;
    outcome.environment = environment;
    outcome.environment.load_end = load_average();
    report(&settings, &outcome);
    Ok(outcome.failures.is_empty())
}

/// What the run measured.
struct Outcome {
    setup_secs: f64,
    control_hop_us: f64,
    scenarios: Vec<ScenarioResult>,
    failures: Vec<String>,
    environment: Environment,
    pinned: bool,
}

#[derive(Default)]
struct Environment {
    cpus: usize,
    load_start: String,
    load_end: String,
    busiest: Vec<String>,
    pinned: bool,
}

impl Environment {
    fn capture() -> Environment {
        let busiest = Command::new("ps")
            .args(["-eo", "pcpu,comm", "--sort=-pcpu", "--no-headers"])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .take(5)
                    .map(|l| l.trim().to_string())
                    .collect()
            })
            .unwrap_or_default();
        Environment {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            load_start: load_average(),
            load_end: String::new(),
            busiest,
            pinned: false,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Way {
    Rooms,
    Naive,
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::Rooms => "rooms",
            Way::Naive => "naive",
        }
    }
}

/// One recorded emit (or round).
#[derive(Clone, Copy, Default)]
struct Sample {
    latency_us: f64,
    emit_call_us: f64,
    spread_us: f64,
    bytes: u64,
    allocs: u64,
    call_bytes: u64,
    call_allocs: u64,
}

struct ScenarioResult {
    name: String,
    way: Way,
    /// Members reached by one sample.
    recipients: usize,
    /// Emits in one sample.
    emits_per_sample: usize,
    samples: Vec<Sample>,
    /// CPU use of the server and client processes over the scenario (rooms
    /// and naive together, as they alternate), in % of one CPU.
    cpu_percent: (f64, f64),
}

/// The registry, the members' handles and the client process.
struct Driver {
    rooms: Rooms,
    room_names: Vec<String>,
    all_handles: Vec<Handle>,
    room_handles: Vec<Vec<Handle>>,
    control: Control,
    child_stdin: Option<ChildStdin>,
    next_seq: u64,
    max_seq: u64,
    /// Done seen, per sequence number of the outstanding batch.
    seen: Vec<bool>,
}

/// Which members one emit goes to.
#[derive(Clone, Copy)]
enum Target {
    All,
    Room(usize),
}

async fn run(settings: &Settings, pinned: bool) -> Result<Outcome, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("{e}"))?;
    let rooms = Rooms::new();
    let room_names: Vec<String> = (0..settings.rooms())
        .map(|r| format!("room-{r:03}"))
        .collect();
    tokio::spawn(accept_loop(
        listener,
        rooms.clone(),
        Arc::new(room_names.clone()),
    ));

    let setup_start = Instant::now();
    let mut client = ClientProcess::start(settings, addr, pinned)?;
    let stdout = client.child.stdout.take().ok_or("client stdout")?;
    let receiver = pipe::Receiver::from_owned_fd(OwnedFd::from(stdout))
        .map_err(|e| format!("control pipe: {e}"))?;
    let mut control = Control::new(receiver);
    match tokio::time::timeout(SETUP_TIMEOUT, control.next()).await {
        Ok(Ok(Ctl::Ready)) => {}
        Ok(Ok(Ctl::Fail(why))) => return Err(format!("client: {why}")),
        Ok(Ok(other)) => return Err(format!("client said {other:?} before ready")),
        Ok(Err(e)) => return Err(format!("control pipe: {e}")),
        Err(_) => return Err("connection setup timed out".into()),
    }
    // The client has every handshake answered; wait for the server tasks
    // to have joined their rooms.
    let joined_by = Instant::now() + Duration::from_secs(10);
    while rooms.count("all") < settings.members {
        if Instant::now() > joined_by {
            return Err(format!(
                "only {} of {} members joined",
                rooms.count("all"),
                settings.members
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let setup_secs = setup_start.elapsed().as_secs_f64();
    println!(
        "{} connections set up and joined in {setup_secs:.1} s",
        settings.members
    );

    let handles_of = |room: &str| -> Vec<Handle> {
        rooms
            .members(room)
            .into_iter()
            .filter_map(|id| rooms.handle(id))
            .collect()
    };
    let all_handles = handles_of("all");
    let room_handles: Vec<Vec<Handle>> = room_names.iter().map(|r| handles_of(r)).collect();
    if all_handles.len() != settings.members || room_handles.iter().any(|h| h.len() != ROOM_SIZE) {
        return Err("room membership is not what was set up".into());
    }

    let mut driver = Driver {
        rooms,
        room_names,
        all_handles,
        room_handles,
        control,
        child_stdin: client.child.stdin.take(),
        next_seq: 1,
        max_seq: settings.max_seq(),
        seen: Vec::with_capacity(settings.rooms() + 1),
    };
    let control_hop_us = driver.control_hop().await?;
    println!(
        "control pipe hop (half a ping/pong round trip, median of 50): {control_hop_us:.1} µs"
    );

    let mut failures = Vec::new();
    let mut scenarios = Vec::new();
    let n = settings.members;
    let all = [Target::All];
    let plans: [(String, usize, usize); 3] = [
        (format!("1x{n}"), n, 1),
        (format!("{ROOM_SIZE}-member"), ROOM_SIZE, 1),
        (
            format!("round {}x{ROOM_SIZE}", settings.rooms()),
            n,
            settings.rooms(),
        ),
    ];
    let every_room: Vec<Target> = (0..settings.rooms()).map(Target::Room).collect();
    for (index, (name, recipients, emits_per_sample)) in plans.iter().enumerate() {
        let mut results = [Way::Rooms, Way::Naive].map(|way| ScenarioResult {
            name: name.clone(),
            way,
            recipients: *recipients,
            emits_per_sample: *emits_per_sample,
            samples: Vec::with_capacity(settings.emits),
            cpu_percent: (f64::NAN, f64::NAN),
        });
        let total = settings.warmup + settings.emits;
        let cpu_start = (
            cpu_ticks(None),
            cpu_ticks(Some(client.child.id())),
            Instant::now(),
        );
        let mut failed = false;
        for i in 0..total {
            let single;
            let targets: &[Target] = match index {
                0 => &all,
                1 => {
                    single = [Target::Room(i % settings.rooms())];
                    &single
                }
                _ => &every_room,
            };
            // Alternate which goes first: the first emit to a room finds
            // its connections' state cold in the cache, the second warm.
            let order: [usize; 2] = if i % 2 == 0 { [0, 1] } else { [1, 0] };
            for k in order {
                let result = &mut results[k];
                match driver.measure(result.way, targets, *recipients).await {
                    Ok(sample) => {
                        if i >= settings.warmup {
                            result.samples.push(sample);
                        }
                    }
                    Err(e) => {
                        failures.push(format!("{} {}: {e}", result.way.name(), result.name));
                        failed = true;
                        break;
                    }
                }
            }
            if failed {
                break;
            }
        }
        let wall = cpu_start.2.elapsed().as_secs_f64();
        let percent = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => (b - a) as f64 / clock_ticks_per_second() / wall * 100.0,
            _ => f64::NAN,
        };
        let cpu = (
            percent(cpu_start.0, cpu_ticks(None)),
            percent(cpu_start.1, cpu_ticks(Some(client.child.id()))),
        );
        for result in results.iter_mut() {
            result.cpu_percent = cpu;
        }
        scenarios.extend(results);
        if failed {
            break;
        }
    }

    // Closing the client's stdin ends it.
    drop(driver.child_stdin.take());
    client.finish();
    Ok(Outcome {
        setup_secs,
        control_hop_us,
        scenarios,
        failures,
        environment: Environment::default(),
        pinned,
    })
}

/// User plus system CPU time of a process (this one for `None`), in clock
/// ticks, from /proc.
fn cpu_ticks(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    stat_ticks(std::path::Path::new(&path))
}

async fn accept_loop(listener: TcpListener, rooms: Rooms, room_names: Arc<Vec<String>>) {
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
        let room = room_names[index % room_names.len()].clone();
        index += 1;
        let rooms = rooms.clone();
        tokio::spawn(async move {
            let Ok(ws) = Builder::new(stream).accept().await else {
                return;
            };
            let membership = rooms.add(ws.handle());
            rooms.join(membership.id(), "all");
            rooms.join(membership.id(), &room);
            ws.serve(&mut Quiet).await;
            drop(membership);
        });
    }
}

impl Driver {
    /// Half the median round trip of a ping over the client's stdin and
    /// its pong over its stdout.
    async fn control_hop(&mut self) -> Result<f64, String> {
        let mut rtts = Vec::with_capacity(50);
        for _ in 0..50 {
            let stdin = self.child_stdin.as_mut().ok_or("client stdin")?;
            let start = Instant::now();
            stdin
                .write_all(b"ping\n")
                .and_then(|()| stdin.flush())
                .map_err(|e| format!("client stdin: {e}"))?;
            match tokio::time::timeout(EMIT_TIMEOUT, self.control.next()).await {
                Ok(Ok(Ctl::Pong)) => rtts.push(start.elapsed().as_secs_f64() * 1e6),
                Ok(Ok(other)) => return Err(format!("expected pong, got {other:?}")),
                Ok(Err(e)) => return Err(format!("control pipe: {e}")),
                Err(_) => return Err("no pong".into()),
            }
        }
        Ok(percentile(&mut rtts, 50.0) / 2.0)
    }

    /// Emits to every target, back to back, and waits until each message
    /// has reached all its members.
    async fn measure(
        &mut self,
        way: Way,
        targets: &[Target],
        recipients: usize,
    ) -> Result<Sample, String> {
        let first = self.next_seq;
        let count = targets.len() as u64;
        if first + count > self.max_seq {
            return Err("sequence numbers exhausted".into());
        }
        self.next_seq += count;
        self.seen.clear();
        self.seen.resize(targets.len(), false);
        let mut payload = [0u8; PAYLOAD_LEN];
        for (i, byte) in payload.iter_mut().enumerate().skip(13) {
            *byte = i as u8;
        }
        payload[12] = way as u8;

        let before = allocs_now();
        let start = Instant::now();
        for (i, target) in targets.iter().enumerate() {
            let seq = first + i as u64;
            let members = match target {
                Target::All => self.all_handles.len(),
                Target::Room(_) => ROOM_SIZE,
            };
            payload[..8].copy_from_slice(&seq.to_le_bytes());
            payload[8..12].copy_from_slice(&(members as u32).to_le_bytes());
            let delivered = match way {
                Way::Rooms => {
                    let room = match target {
                        Target::All => "all",
                        Target::Room(r) => self.room_names[*r].as_str(),
                    };
                    let report = self.rooms.emit(room, Message::Binary(&payload));
                    if !report.full.is_empty() || !report.closed.is_empty() {
                        return Err(format!(
                            "emit {seq}: {} full, {} closed",
                            report.full.len(),
                            report.closed.len()
                        ));
                    }
                    report.delivered
                }
                Way::Naive => {
                    let handles = match target {
                        Target::All => &self.all_handles,
                        Target::Room(r) => &self.room_handles[*r],
                    };
                    let mut delivered = 0;
                    for handle in handles {
                        match handle.try_send(Message::Binary(&payload)) {
                            Ok(()) => delivered += 1,
                            Err(e) => return Err(format!("emit {seq}: try_send: {e}")),
                        }
                    }
                    delivered
                }
            };
            if delivered != members {
                return Err(format!("emit {seq}: delivered to {delivered} of {members}"));
            }
        }
        let emit_call = start.elapsed();
        let after_call = allocs_now();

        let deadline = tokio::time::Instant::now() + EMIT_TIMEOUT;
        let mut outstanding = targets.len();
        let mut spread_us = 0f64;
        while outstanding > 0 {
            match tokio::time::timeout_at(deadline, self.control.next()).await {
                Ok(Ok(Ctl::Done { seq, spread })) => {
                    let slot = seq
                        .checked_sub(first)
                        .and_then(|i| self.seen.get_mut(i as usize))
                        .filter(|seen| !**seen)
                        .ok_or_else(|| format!("unexpected done {seq}"))?;
                    *slot = true;
                    outstanding -= 1;
                    spread_us = spread_us.max(spread as f64);
                }
                Ok(Ok(Ctl::Fail(why))) => return Err(format!("client: {why}")),
                Ok(Ok(other)) => return Err(format!("client said {other:?}")),
                Ok(Err(e)) => return Err(format!("control pipe: {e}")),
                Err(_) => {
                    return Err(format!(
                        "{outstanding} of {} emits (seq {first}..) not received by all {recipients} members within {EMIT_TIMEOUT:?}",
                        targets.len()
                    ))
                }
            }
        }
        let latency = start.elapsed();
        let after = allocs_now();
        Ok(Sample {
            latency_us: latency.as_secs_f64() * 1e6,
            emit_call_us: emit_call.as_secs_f64() * 1e6,
            spread_us,
            bytes: after.bytes - before.bytes,
            allocs: after.count - before.count,
            call_bytes: after_call.bytes - before.bytes,
            call_allocs: after_call.count - before.count,
        })
    }
}

/// What the client process says on its stdout.
#[derive(Debug)]
enum Ctl {
    Ready,
    Pong,
    Done { seq: u64, spread: u64 },
    Fail(String),
}

/// Reads the client's lines from a pipe into a fixed buffer: nothing is
/// allocated per line.
struct Control {
    rx: pipe::Receiver,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Control {
    fn new(rx: pipe::Receiver) -> Control {
        Control {
            rx,
            buf: vec![0; 64 * 1024].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    async fn next(&mut self) -> io::Result<Ctl> {
        loop {
            if let Some(nl) = self.buf[self.start..self.end]
                .iter()
                .position(|&b| b == b'\n')
            {
                let line = &self.buf[self.start..self.start + nl];
                self.start += nl + 1;
                return Ok(parse_control(line));
            }
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.buf.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "control line too long",
                ));
            }
            let n = self.rx.read(&mut self.buf[self.end..]).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.end += n;
        }
    }
}

fn parse_control(line: &[u8]) -> Ctl {
    let text = std::str::from_utf8(line).unwrap_or("");
    let mut words = text.split(' ');
    match words.next() {
        Some("ready") => Ctl::Ready,
        Some("pong") => Ctl::Pong,
        Some("done") => {
            let seq = words.next().and_then(|w| w.parse().ok());
            let spread = words.next().and_then(|w| w.parse().ok());
            match (seq, spread) {
                (Some(seq), Some(spread)) => Ctl::Done { seq, spread },
                _ => Ctl::Fail(format!("bad control line {text:?}")),
            }
        }
        Some("fail") => Ctl::Fail(text.get(5..).unwrap_or("").to_string()),
        _ => Ctl::Fail(format!("bad control line {text:?}")),
    }
}

/// The client child process; killed (and reaped) if still running on drop.
struct ClientProcess {
    child: Child,
}

impl ClientProcess {
    fn start(settings: &Settings, addr: SocketAddr, pinned: bool) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut command = if pinned {
            let mut c = Command::new("taskset");
            c.args(["-c", "1"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        command
            .env(CLIENT_ENV, "1")
            .env("FANOUT_ADDR", addr.to_string())
            .env("FANOUT_MEMBERS", settings.members.to_string())
            .env("FANOUT_MAX_SEQ", settings.max_seq().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let child = command
            .spawn()
            .map_err(|e| format!("spawn client process: {e}"))?;
        Ok(ClientProcess { child })
    }

    /// Waits up to 5 s for the client to exit, then kills it.
    fn finish(&mut self) {
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ClientProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// The client process: raw WebSocket readers
// ---------------------------------------------------------------------------

struct ClientShared {
    members: usize,
    connected: AtomicUsize,
    /// Arrivals per sequence number.
    arrivals: Box<[AtomicU32]>,
    /// First arrival per sequence number, ns since `epoch` plus one.
    first: Box<[AtomicU64]>,
    epoch: Instant,
    failed: AtomicBool,
}

impl ClientShared {
    fn say(&self, line: &str) {
        let mut out = io::stdout().lock();
        let _ = out.write_all(line.as_bytes());
        let _ = out.flush();
    }

    fn fail(&self, why: String) {
        if !self.failed.swap(true, Ordering::SeqCst) {
            self.say(&format!("fail {}\n", why.replace('\n', " ")));
        }
    }

    /// Counts one member's copy of `seq`; says `done` at the last one.
    fn arrived(&self, seq: u64, expected: u32) -> Result<(), String> {
        let index = usize::try_from(seq).unwrap_or(usize::MAX);
        let (Some(count), Some(first)) = (self.arrivals.get(index), self.first.get(index)) else {
            return Err(format!("sequence number {seq} out of range"));
        };
        let now = self.epoch.elapsed().as_nanos() as u64 + 1;
        let _ = first.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        let got = count.fetch_add(1, Ordering::Relaxed) + 1;
        if got == expected {
            let spread = (now - first.load(Ordering::Relaxed)) / 1000;
            self.say(&format!("done {seq} {spread}\n"));
        } else if got > expected {
            return Err(format!(
                "message {seq} arrived {got} times for {expected} members"
            ));
        }
        Ok(())
    }
}

fn client_main() {
    raise_nofile();
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    let addr: SocketAddr = match env("FANOUT_ADDR").parse() {
        Ok(addr) => addr,
        Err(_) => {
            println!("fail no FANOUT_ADDR");
            return;
        }
    };
    let members: usize = env("FANOUT_MEMBERS").parse().unwrap_or(0);
    let max_seq: usize = env("FANOUT_MAX_SEQ").parse().unwrap_or(0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let shared = Arc::new(ClientShared {
        members,
        connected: AtomicUsize::new(0),
        arrivals: (0..=max_seq).map(|_| AtomicU32::new(0)).collect(),
        first: (0..=max_seq).map(|_| AtomicU64::new(0)).collect(),
        epoch: Instant::now(),
        failed: AtomicBool::new(false),
    });
    runtime.block_on(async move {
        let permits = Arc::new(tokio::sync::Semaphore::new(CONNECT_CONCURRENCY));
        for index in 0..members {
            let shared = shared.clone();
            let permits = permits.clone();
            tokio::spawn(async move {
                if let Err(e) = client_connection(index, addr, &shared, permits).await {
                    shared.fail(format!("connection {index}: {e}"));
                }
            });
        }
        // The server's commands on stdin: ping; end of input ends us.
        let stdin = io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .and_then(pipe::Receiver::from_owned_fd);
        let Ok(mut stdin) = stdin else {
            shared.fail("stdin is not a pipe".into());
            return;
        };
        let mut buf = [0u8; 256];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    for _ in buf[..n].iter().filter(|&&b| b == b'\n') {
                        shared.say("pong\n");
                    }
                }
            }
        }
    });
    // Skip tearing down 10 000 tasks: the kernel closes the sockets.
    std::process::exit(0);
}

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

async fn client_connection(
    index: usize,
    addr: SocketAddr,
    shared: &ClientShared,
    permits: Arc<tokio::sync::Semaphore>,
) -> Result<(), String> {
    let permit = permits.acquire_owned().await.map_err(|e| e.to_string())?;
    let (mut stream, mut buf, mut end) = handshake(index, addr).await?;
    drop(permit);
    if shared.connected.fetch_add(1, Ordering::SeqCst) + 1 == shared.members {
        shared.say("ready\n");
    }
    let mut last_seq = 0u64;
    loop {
        let mut pos = 0;
        while let Some(frame) = parse_frame(&buf[pos..end])? {
            let body = &buf[pos + frame.header..pos + frame.header + frame.len];
            match frame.opcode {
                0x2 if frame.fin => {
                    if body.len() != PAYLOAD_LEN {
                        return Err(format!("message of {} bytes", body.len()));
                    }
                    let seq = u64::from_le_bytes(body[..8].try_into().unwrap_or_default());
                    let expected = u32::from_le_bytes(body[8..12].try_into().unwrap_or_default());
                    let intact = body.iter().enumerate().skip(13).all(|(i, &b)| b == i as u8);
                    if !intact {
                        return Err(format!("message {seq}: payload corrupted"));
                    }
                    if seq <= last_seq {
                        return Err(format!("message {seq} after {last_seq}"));
                    }
                    last_seq = seq;
                    shared.arrived(seq, expected)?;
                }
                0x9 => {
                    // Ping: answer with a masked pong (zero mask key).
                    let body = body.to_vec();
                    let mut pong = vec![0x8A, 0x80 | body.len() as u8, 0, 0, 0, 0];
                    pong.extend_from_slice(&body);
                    stream.write_all(&pong).await.map_err(|e| e.to_string())?;
                }
                0xA => {}
                0x8 => return Err("server closed the connection".into()),
                op => {
                    return Err(format!(
                        "unexpected frame: opcode {op:#x}, fin {}",
                        frame.fin
                    ))
                }
            }
            pos += frame.header + frame.len;
        }
        buf.copy_within(pos..end, 0);
        end -= pos;
        if end == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match stream.read(&mut buf[end..]).await {
            Ok(0) => return Err("server ended the connection".into()),
            Ok(n) => end += n,
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Connects and upgrades, offering no extension. Returns the stream and a
/// buffer holding whatever came after the response head.
async fn handshake(index: usize, addr: SocketAddr) -> Result<(TcpStream, Vec<u8>, usize), String> {
    use base64::Engine as _;
    let mut tries = 0;
    let mut stream = loop {
        match TcpStream::connect(addr).await {
            Ok(stream) => break stream,
            Err(e) if tries < 20 => {
                tries += 1;
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(format!("connect: {e}")),
        }
    };
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut nonce = [0u8; 16];
    let mut x = (index as u64 ^ 0x9E37_79B9_7F4A_7C15).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    for chunk in nonce.chunks_mut(8) {
        x ^= x >> 31;
        x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64.encode(nonce);
    let expected_accept = b64.encode(
        sha1_smol::Sha1::from(format!("{key}{GUID}"))
            .digest()
            .bytes(),
    );
    let request = format!(
        "GET /fanout HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send upgrade: {e}"))?;
    let mut buf = vec![0u8; 1024];
    let mut end = 0;
    let head_len = loop {
        if let Some(i) = buf[..end].windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if end == buf.len() {
            return Err("response head too long".into());
        }
        let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf[end..]))
            .await
            .map_err(|_| "no upgrade response in 30 s".to_string())?
            .map_err(|e| format!("read upgrade response: {e}"))?;
        if n == 0 {
            return Err("connection closed during the handshake".into());
        }
        end += n;
    };
    let head = String::from_utf8_lossy(&buf[..head_len]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 101") {
        return Err(format!(
            "upgrade refused: {}",
            head.lines().next().unwrap_or("")
        ));
    }
    let accept_ok = head.lines().any(|l| {
        l.strip_prefix("sec-websocket-accept:")
            .is_some_and(|v| v.trim() == expected_accept.to_ascii_lowercase())
    });
    if !accept_ok {
        return Err("wrong or missing Sec-WebSocket-Accept".into());
    }
    if head.contains("sec-websocket-extensions") {
        return Err("the server negotiated an extension nobody offered".into());
    }
    buf.copy_within(head_len..end, 0);
    Ok((stream, buf, end - head_len))
}

struct FrameHead {
    fin: bool,
    opcode: u8,
    header: usize,
    len: usize,
}

/// A complete unmasked server frame at the start of `data`, if there is one.
fn parse_frame(data: &[u8]) -> Result<Option<FrameHead>, String> {
    let [b0, b1, ..] = *data else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err("reserved bits set (compression was not negotiated)".into());
    }
    if b1 & 0x80 != 0 {
        return Err("masked server frame".into());
    }
    let (header, len) = match b1 & 0x7F {
        126 => match data.get(2..4) {
            Some(b) => (4, usize::from(u16::from_be_bytes([b[0], b[1]]))),
            None => return Ok(None),
        },
        127 => match data.get(2..10) {
            Some(b) => {
                let len = u64::from_be_bytes(b.try_into().unwrap_or_default());
                (10, usize::try_from(len).map_err(|_| "frame too long")?)
            }
            None => return Ok(None),
        },
        len => (2, usize::from(len)),
    };
    if len > 1 << 20 {
        return Err(format!("frame of {len} bytes"));
    }
    if data.len() < header + len {
        return Ok(None);
    }
    Ok(Some(FrameHead {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0F,
        header,
        len,
    }))
}

// ---------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------

struct Summary {
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    emit_call_p50_us: f64,
    spread_p50_ms: f64,
    bytes_per_sample: f64,
    allocs_per_sample: f64,
    call_bytes_per_sample: f64,
    call_allocs_per_sample: f64,
}

fn summarize(samples: &[Sample]) -> Summary {
    let pick = |f: fn(&Sample) -> f64| samples.iter().map(f).collect::<Vec<f64>>();
    let mut latency = pick(|s| s.latency_us);
    let mut call = pick(|s| s.emit_call_us);
    let mut spread = pick(|s| s.spread_us);
    let n = samples.len().max(1) as f64;
    let mean = |f: fn(&Sample) -> u64| samples.iter().map(f).sum::<u64>() as f64 / n;
    Summary {
        p50_ms: percentile(&mut latency, 50.0) / 1e3,
        p99_ms: percentile(&mut latency, 99.0) / 1e3,
        max_ms: percentile(&mut latency, 100.0) / 1e3,
        emit_call_p50_us: percentile(&mut call, 50.0),
        spread_p50_ms: percentile(&mut spread, 50.0) / 1e3,
        bytes_per_sample: mean(|s| s.bytes),
        allocs_per_sample: mean(|s| s.allocs),
        call_bytes_per_sample: mean(|s| s.call_bytes),
        call_allocs_per_sample: mean(|s| s.call_allocs),
    }
}

fn report(settings: &Settings, outcome: &Outcome) {
    println!();
    println!(
        "{:<20} {:>5} {:>8} {:>8} {:>8} {:>10} {:>9} {:>12} {:>10} {:>11} {:>10}",
        "scenario",
        "n",
        "p50 ms",
        "p99 ms",
        "max ms",
        "call µs",
        "spread ms",
        "bytes/emit",
        "allocs/emit",
        "B/member",
        "call B"
    );
    let mut json = String::new();
    let _ = write!(
        json,
        "{{\n  \"bench\": \"fanout\",\n  \"mode\": \"{}\",\n  \"members\": {},\n  \"emits\": {},\n  \"warmup\": {},\n  \"payload_bytes\": {PAYLOAD_LEN},\n  \"server_runtime\": \"{}\",\n  \"pinned\": {},\n  \"cpus\": {},\n  \"load_average_start\": \"{}\",\n  \"load_average_end\": \"{}\",\n  \"busiest_processes_at_start\": [{}],\n  \"setup_seconds\": {:.2},\n  \"control_hop_us\": {:.1},\n  \"scenarios\": [",
        if settings.quick { "quick" } else { "full" },
        settings.members,
        settings.emits,
        settings.warmup,
        settings.runtime_name(),
        outcome.pinned && outcome.environment.pinned,
        outcome.environment.cpus,
        outcome.environment.load_start,
        outcome.environment.load_end,
        outcome
            .environment
            .busiest
            .iter()
            .map(|l| format!("\"{}\"", l.replace('"', "'")))
            .collect::<Vec<_>>()
            .join(", "),
        outcome.setup_secs,
        outcome.control_hop_us,
    );
    let mut first = true;
    let mut rooms_summary: Option<Summary> = None;
    for result in &outcome.scenarios {
        let s = summarize(&result.samples);
        let per_emit = |v: f64| v / result.emits_per_sample as f64;
        println!(
            "{:<20} {:>5} {:>8.3} {:>8.3} {:>8.3} {:>10.0} {:>9.3} {:>12.0} {:>10.1} {:>11.1} {:>10.0}",
            format!("{} {}", result.way.name(), result.name),
            result.samples.len(),
            s.p50_ms,
            s.p99_ms,
            s.max_ms,
            s.emit_call_p50_us,
            s.spread_p50_ms,
            per_emit(s.bytes_per_sample),
            per_emit(s.allocs_per_sample),
            s.bytes_per_sample / result.recipients as f64,
            per_emit(s.call_bytes_per_sample),
        );
        let _ = write!(
            json,
            "{}\n    {{\"scenario\": \"{}\", \"way\": \"{}\", \"recipients_per_sample\": {}, \"emits_per_sample\": {}, \"samples\": {}, \"latency_p50_ms\": {:.4}, \"latency_p99_ms\": {:.4}, \"latency_max_ms\": {:.4}, \"emit_call_p50_us\": {:.1}, \"client_spread_p50_ms\": {:.4}, \"alloc_bytes_per_emit\": {:.1}, \"allocs_per_emit\": {:.2}, \"alloc_bytes_per_member\": {:.2}, \"emit_call_alloc_bytes_per_emit\": {:.1}, \"emit_call_allocs_per_emit\": {:.2}, \"server_cpu_percent\": {:.0}, \"client_cpu_percent\": {:.0}}}",
            if first { "" } else { "," },
            result.name,
            result.way.name(),
            result.recipients,
            result.emits_per_sample,
            result.samples.len(),
            s.p50_ms,
            s.p99_ms,
            s.max_ms,
            s.emit_call_p50_us,
            s.spread_p50_ms,
            per_emit(s.bytes_per_sample),
            per_emit(s.allocs_per_sample),
            s.bytes_per_sample / result.recipients as f64,
            per_emit(s.call_bytes_per_sample),
            per_emit(s.call_allocs_per_sample),
            result.cpu_percent.0,
            result.cpu_percent.1,
        );
        first = false;
        match result.way {
            Way::Rooms => rooms_summary = Some(s),
            Way::Naive => {
                if let Some(r) = rooms_summary.take() {
                    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::INFINITY };
                    println!(
                        "{:<20} {:>5} {:>7.2}x {:>7.2}x {:>8} {:>9.2}x {:>9} {:>11.2}x {:>9.2}x",
                        "  naive/rooms",
                        "",
                        ratio(s.p50_ms, r.p50_ms),
                        ratio(s.p99_ms, r.p99_ms),
                        "",
                        ratio(s.emit_call_p50_us, r.emit_call_p50_us),
                        "",
                        ratio(s.bytes_per_sample, r.bytes_per_sample),
                        ratio(s.allocs_per_sample, r.allocs_per_sample),
                    );
                    println!(
                        "{:<20} server process {:.0}%, client process {:.0}% of one CPU over the scenario",
                        "  CPU used",
                        result.cpu_percent.0,
                        result.cpu_percent.1
                    );
                    let _ = write!(
                        json,
                        ",\n    {{\"scenario\": \"{}\", \"way\": \"naive/rooms\", \"latency_p50_ratio\": {:.3}, \"latency_p99_ratio\": {:.3}, \"emit_call_p50_ratio\": {:.3}, \"alloc_bytes_ratio\": {:.3}, \"allocs_ratio\": {:.3}}}",
                        result.name,
                        ratio(s.p50_ms, r.p50_ms),
                        ratio(s.p99_ms, r.p99_ms),
                        ratio(s.emit_call_p50_us, r.emit_call_p50_us),
                        ratio(s.bytes_per_sample, r.bytes_per_sample),
                        ratio(s.allocs_per_sample, r.allocs_per_sample),
                    );
                }
            }
        }
    }
    let _ = write!(
        json,
        "\n  ],\n  \"failures\": [{}]\n}}\n",
        outcome
            .failures
            .iter()
            .map(|f| format!("\"{}\"", f.replace('"', "'")))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!();
    println!(
        "latency: emit start -> the driver reads the client process's \"done\" (all members have the message); includes one control-pipe hop (~{:.0} µs).",
        outcome.control_hop_us
    );
    println!("call µs: time inside the emit call (rooms.emit, or the try_send loop); spread: first -> last member arrival, measured in the client process.");
    println!("bytes/allocs per emit: every allocation in the server process from the emit call to \"done\"; B/member = bytes per recipient per sample; call B = bytes allocated inside the emit call.");
    println!(
        "round: one emit to each of the {} rooms back to back, latency = the whole round; its bytes/allocs are per emit (per room).",
        settings.rooms()
    );
    println!(
        "load average: {} at start, {} at end ({} CPUs; other jobs may share the machine).",
        outcome.environment.load_start, outcome.environment.load_end, outcome.environment.cpus
    );
    write_results("fanout-bench.json", &json);
    if !outcome.failures.is_empty() {
        eprintln!("\nFAILED:");
        for f in &outcome.failures {
            eprintln!("  {f}");
        }
    }
}
