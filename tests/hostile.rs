//! Hostile peers, over real loopback sockets, against every server driver.
//!
//! Each attack is written once and run against a blocking server (a thread
//! per connection), a tokio server (a task per connection on a
//! two-worker runtime), both built the way the adapters' docs show, and,
//! with the `uring` feature on Linux, the io_uring server (one loop thread,
//! `chito::uring::Server`). The uring server has no hook for handshakes
//! that fail before a handler exists, so for it only the wire side of a
//! refused or timed-out handshake is checked. Every
//! test asserts what goes on the wire (the close code, or the HTTP status
//! of a refused handshake), what the server's handler saw (`on_error`,
//! `on_close`, or the error the handshake returned), that the server still
//! serves a well-behaved client afterwards, and, for the attacks that could
//! pin memory, that the process's resident memory stays bounded.
//!
//! Every socket operation has a timeout, so a regression fails a test
//! instead of hanging the suite. Tests that measure memory or descriptors
//! take a process-wide lock exclusively; every other test holds it shared,
//! so nothing else runs while they measure.
#![cfg(all(feature = "tokio", feature = "deflate"))]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{
    Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, RwLock, RwLockReadGuard,
    RwLockWriteGuard,
};
use std::thread;
use std::time::{Duration, Instant};

use chito::deflate::Deflater;
use chito::handshake::accept_key;
use chito::{
    CloseCode, CloseFrame, Config, Error, Handler, Message, OwnedEvent, ProtocolError, Sender,
    Timeout,
};

// ---- the suite's clock and lock -------------------------------------------

/// The longest any single socket operation of an attacker may block.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a test waits for the server to record an outcome.
const WAIT: Duration = Duration::from_secs(10);

static MEASURING: RwLock<()> = RwLock::new(());

/// Held by tests that do not measure the process.
fn shared_lock() -> RwLockReadGuard<'static, ()> {
    MEASURING.read().unwrap_or_else(PoisonError::into_inner)
}

/// Held by tests that measure RSS or descriptors: nothing else runs.
fn exclusive_lock() -> RwLockWriteGuard<'static, ()> {
    MEASURING.write().unwrap_or_else(PoisonError::into_inner)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

// ---- what the server saw ----------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Adapter {
    Blocking,
    Tokio,
    #[cfg(all(feature = "uring", target_os = "linux"))]
    Uring,
}

impl Adapter {
    /// Whether the server records failed handshakes
    /// ([`Outcome::Handshake`]).
    fn records_handshakes(self) -> bool {
        match self {
            Adapter::Blocking | Adapter::Tokio => true,
            #[cfg(all(feature = "uring", target_os = "linux"))]
            Adapter::Uring => false,
        }
    }
}

/// An error, reduced to what tests compare.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fault {
    Protocol(ProtocolError),
    Timeout(Timeout),
    Rejected(u16),
    Io(io::ErrorKind),
    Other(String),
}

fn fault(error: &Error) -> Fault {
    match error {
        Error::Protocol(e) => Fault::Protocol(*e),
        Error::Timeout(t) => Fault::Timeout(*t),
        Error::Rejected(r) => Fault::Rejected(r.status()),
        Error::Io(e) => Fault::Io(e.kind()),
        other => Fault::Other(other.to_string()),
    }
}

/// How one server-side connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// The opening handshake failed with this error.
    Handshake(Fault),
    /// The connection was served and ended: `on_close`'s code, and every
    /// `on_error` before it.
    Ended { code: u16, errors: Vec<Fault> },
}

fn ended(code: u16, errors: &[Fault]) -> Outcome {
    Outcome::Ended {
        code,
        errors: errors.to_vec(),
    }
}

#[derive(Default)]
struct Shared {
    outcomes: Mutex<Vec<Outcome>>,
    changed: Condvar,
    /// Accepted connections whose thread or task has not finished.
    live: AtomicUsize,
    /// The tokio handle of the latest connection served.
    handle: Mutex<Option<chito::tokio::Handle>>,
}

impl Shared {
    fn record(&self, outcome: Outcome) {
        lock(&self.outcomes).push(outcome);
        self.changed.notify_all();
    }
}

/// Counts a connection as live until its thread or task ends.
struct Live(Arc<Shared>);

impl Live {
    fn new(shared: &Arc<Shared>) -> Live {
        shared.live.fetch_add(1, Ordering::SeqCst);
        Live(shared.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _outcomes = lock(&self.0.outcomes);
        self.0.live.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_all();
    }
}

/// The server's handler: echoes, and records how the connection ended.
struct Recorder {
    shared: Arc<Shared>,
    errors: Vec<Fault>,
    /// The uring server's connections count as live while their handler
    /// exists (the other servers count their thread or task).
    _live: Option<Live>,
}

impl Recorder {
    fn new(shared: &Arc<Shared>) -> Self {
        Recorder {
            shared: shared.clone(),
            errors: Vec::new(),
            _live: None,
        }
    }
}

impl Handler for Recorder {
    fn on_message(&mut self, sender: &mut Sender<'_>, message: Message<'_>) {
        let _ = sender.send(message);
    }

    fn on_error(&mut self, error: &Error) {
        self.errors.push(fault(error));
    }

    fn on_close(&mut self, frame: &CloseFrame<'_>) {
        self.shared.record(Outcome::Ended {
            code: frame.code.as_u16(),
            errors: std::mem::take(&mut self.errors),
        });
    }
}

// ---- the servers under attack -----------------------------------------------

/// What a server under attack runs with: the protocol's limits, and the
/// adapter's own settings (set on its builder).
#[derive(Debug, Clone)]
struct ServerConfig {
    protocol: Config,
    handshake_timeout: Duration,
    /// The bound of a tokio connection's queue.
    max_queued_bytes: usize,
}

impl std::ops::Deref for ServerConfig {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.protocol
    }
}

impl std::ops::DerefMut for ServerConfig {
    fn deref_mut(&mut self) -> &mut Config {
        &mut self.protocol
    }
}

/// The base server configuration: defaults, with short timers so lingering
/// connections of one test do not outlive it by much.
fn server_config() -> ServerConfig {
    let mut protocol = Config::default();
    protocol.close_timeout = Duration::from_secs(1);
    ServerConfig {
        protocol,
        handshake_timeout: Duration::from_secs(5),
        max_queued_bytes: 4 * MIB,
    }
}

/// A well-behaved client's configuration, every wait bounded (the
/// handshake by the adapters' default of 10 s, within `WAIT`).
fn client_config() -> Config {
    let mut config = Config::default();
    config.idle_timeout = Some(IO_TIMEOUT);
    config.close_timeout = Duration::from_secs(2);
    config
}

/// An echo server on 127.0.0.1, running until the process ends.
struct Server {
    adapter: Adapter,
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<chito::tokio::Shutdown>,
}

impl Server {
    fn start(adapter: Adapter, config: ServerConfig) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let shutdown = match adapter {
            Adapter::Blocking => {
                blocking_server(listener, config, shared.clone());
                None
            }
            Adapter::Tokio => {
                let shutdown = chito::tokio::Shutdown::new();
                tokio_server(listener, config, shared.clone(), shutdown.clone());
                Some(shutdown)
            }
            #[cfg(all(feature = "uring", target_os = "linux"))]
            Adapter::Uring => {
                let shutdown = chito::tokio::Shutdown::new();
                uring_server(listener, config, shared.clone(), &shutdown);
                Some(shutdown)
            }
        };
        Server {
            adapter,
            addr,
            shared,
            shutdown,
        }
    }

    /// Waits until `found` picks an outcome, removes it and returns it.
    fn take(&self, what: &str, found: impl Fn(&Outcome) -> bool) -> Outcome {
        self.take_within(WAIT, what, found)
    }

    /// [`Server::take`], waiting at most `wait`.
    fn take_within(&self, wait: Duration, what: &str, found: impl Fn(&Outcome) -> bool) -> Outcome {
        let deadline = Instant::now() + wait;
        let mut outcomes = lock(&self.shared.outcomes);
        loop {
            if let Some(at) = outcomes.iter().position(&found) {
                return outcomes.remove(at);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{:?} server: no outcome {what} within {wait:?}; recorded: {:?}",
                self.adapter,
                *outcomes
            );
            outcomes = self
                .shared
                .changed
                .wait_timeout(outcomes, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Asserts the server records exactly `expected` for some connection.
    fn expect(&self, expected: &Outcome) {
        self.take(&format!("{expected:?}"), |o| o == expected);
    }

    /// How many outcomes are recorded and not yet taken.
    fn outcome_count(&self) -> usize {
        lock(&self.shared.outcomes).len()
    }

    /// Waits until `n` outcomes are recorded.
    fn wait_outcomes(&self, n: usize) -> Vec<Outcome> {
        let deadline = Instant::now() + WAIT;
        let mut outcomes = lock(&self.shared.outcomes);
        while outcomes.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{:?} server: {} of {n} outcomes within {WAIT:?}",
                self.adapter,
                outcomes.len()
            );
            outcomes = self
                .shared
                .changed
                .wait_timeout(outcomes, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        std::mem::take(&mut *outcomes)
    }

    /// Asserts every connection's thread or task has finished (and, for
    /// tokio, that `Shutdown` counts no live connection).
    fn assert_idle(&self) {
        let deadline = Instant::now() + WAIT;
        let mut outcomes = lock(&self.shared.outcomes);
        while self.shared.live.load(Ordering::SeqCst) > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{:?} server: {} connection(s) still running after {WAIT:?}",
                self.adapter,
                self.shared.live.load(Ordering::SeqCst)
            );
            outcomes = self
                .shared
                .changed
                .wait_timeout(outcomes, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        drop(outcomes);
        if let Some(shutdown) = &self.shutdown {
            while shutdown.live_connections() > 0 {
                assert!(
                    Instant::now() < deadline,
                    "Shutdown still counts {} live connection(s)",
                    shutdown.live_connections()
                );
                thread::sleep(Duration::from_millis(5));
            }
        }
    }

    /// The tokio handle of the latest connection the server accepted.
    fn latest_handle(&self) -> chito::tokio::Handle {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(handle) = lock(&self.shared.handle).take() {
                return handle;
            }
            assert!(Instant::now() < deadline, "no handle");
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// A fresh, well-behaved chito client of the same adapter gets an echo
    /// and a clean close, and the server records that close.
    fn assert_serves(&self) {
        let url = format!("ws://{}/echo", self.addr);
        let text = "still serving";
        match self.adapter {
            Adapter::Blocking => {
                let (mut ws, _) = chito::blocking::connect_with(&url, client_config())
                    .expect("a well-behaved client could not connect");
                ws.send(Message::Text(text)).unwrap();
                assert_eq!(ws.recv().unwrap(), OwnedEvent::Text(text.into()));
                ws.close(CloseCode::Normal, "done").unwrap();
                loop {
                    match ws.recv() {
                        Ok(OwnedEvent::Close(_)) => break,
                        Ok(_) => {}
                        Err(e) => panic!("closing handshake failed: {e}"),
                    }
                }
            }
            _ => run_async(async move {
                let (mut ws, _) = chito::tokio::connect_with(&url, client_config())
                    .await
                    .expect("a well-behaved client could not connect");
                ws.send(Message::Text(text)).await.unwrap();
                assert_eq!(ws.recv().await.unwrap(), OwnedEvent::Text(text.into()));
                ws.close(CloseCode::Normal, "done").await.unwrap();
                loop {
                    match ws.recv().await {
                        Ok(OwnedEvent::Close(_)) => break,
                        Ok(_) => {}
                        Err(e) => panic!("closing handshake failed: {e}"),
                    }
                }
            }),
        }
        self.expect(&ended(1000, &[]));
    }

    // ---- attackers ----

    fn connect_raw(&self) -> TcpStream {
        raw_connect(self.addr)
    }

    /// An attacker that completed the handshake (offering `extra` headers).
    fn open_with(&self, extra: &str) -> (Peer, String) {
        let mut peer = Peer::new(self.connect_raw());
        peer.send(upgrade_request(self.addr, "GET", "1.1", extra).as_bytes());
        let head = peer.read_head();
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        assert!(head.contains(&accept_key(KEY.as_bytes())), "{head}");
        (peer, head)
    }

    fn open(&self) -> Peer {
        self.open_with("").0
    }

    /// Sends `request` raw and returns everything the server answered
    /// before closing.
    fn http_answer(&self, request: &[u8]) -> String {
        let mut stream = self.connect_raw();
        // The server may refuse (and close) before reading all of it.
        let _ = stream.write_all(request);
        read_until_closed(&mut stream)
    }

    /// Sends `request` raw; asserts that the answer's status line is
    /// `HTTP/1.1 {status}` (e.g. `431 Request Header Fields Too Large`) and
    /// that the server reported that refusal. Returns the whole answer.
    fn expect_refusal(&self, request: &str, status: &str) -> String {
        let answer = self.http_answer(request.as_bytes());
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{answer:?}"
        );
        let code = status
            .get(..3)
            .and_then(|c| c.parse().ok())
            .expect("status code");
        if self.adapter.records_handshakes() {
            self.expect(&Outcome::Handshake(Fault::Rejected(code)));
        }
        answer
    }
}

fn blocking_server(listener: TcpListener, config: ServerConfig, shared: Arc<Shared>) {
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let live = Live::new(&shared);
            let config = config.clone();
            let shared = shared.clone();
            thread::spawn(move || {
                let _live = live;
                match chito::blocking::Builder::tcp(stream)
                    .config(config.protocol)
                    .handshake_timeout(config.handshake_timeout)
                    .accept()
                {
                    Ok(ws) => ws.serve(&mut Recorder::new(&shared)),
                    Err(e) => shared.record(Outcome::Handshake(fault(&e))),
                }
            });
        }
    });
}

fn tokio_server(
    listener: TcpListener,
    config: ServerConfig,
    shared: Arc<Shared>,
    shutdown: chito::tokio::Shutdown,
) {
    listener.set_nonblocking(true).unwrap();
    thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let live = Live::new(&shared);
                let config = config.clone();
                let shared = shared.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    let _live = live;
                    let _ = stream.set_nodelay(true);
                    let accepted = chito::tokio::Builder::new(stream)
                        .config(config.protocol)
                        .handshake_timeout(config.handshake_timeout)
                        .max_queued_bytes(config.max_queued_bytes)
                        .shutdown(&shutdown)
                        .accept()
                        .await;
                    match accepted {
                        Ok(ws) => {
                            *lock(&shared.handle) = Some(ws.handle());
                            ws.serve(&mut Recorder::new(&shared)).await;
                        }
                        Err(e) => shared.record(Outcome::Handshake(fault(&e))),
                    }
                });
            }
        });
    });
}

/// The io_uring server: one loop on its own thread, a recording handler
/// per connection (which also keeps the connection counted as live).
#[cfg(all(feature = "uring", target_os = "linux"))]
fn uring_server(
    listener: TcpListener,
    config: ServerConfig,
    shared: Arc<Shared>,
    shutdown: &chito::tokio::Shutdown,
) {
    let server = chito::uring::Server::from_listener(listener)
        .unwrap()
        .config(config.protocol.clone())
        .handshake_timeout(config.handshake_timeout)
        .max_queued_bytes(config.max_queued_bytes)
        .shutdown(shutdown);
    server
        .spawn(move |open: &mut chito::uring::Open<'_>| {
            *lock(&shared.handle) = Some(open.handle());
            let mut recorder = Recorder::new(&shared);
            recorder._live = Some(Live::new(&shared));
            recorder
        })
        .unwrap();
}

/// Runs a client future on a fresh current-thread runtime, bounded in time.
fn run_async<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            tokio::time::timeout(WAIT, future)
                .await
                .expect("client timed out")
        })
}

// ---- a raw attacker -----------------------------------------------------------

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const MASK: [u8; 4] = [0x5a, 0x17, 0xc3, 0x8e];

const FIN: u8 = 0x80;
const RSV1: u8 = 0x40;
const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

fn raw_connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// An opening handshake request; `extra` is more header lines, each ending
/// in CRLF.
fn upgrade_request(addr: SocketAddr, method: &str, version: &str, extra: &str) -> String {
    format!(
        "{method} /hostile HTTP/{version}\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\
         {extra}\r\n"
    )
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
    )
}

/// Reads until the server closes (end of stream or reset).
fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_reset(&e) => break,
            Err(e) => panic!(
                "server neither answered nor closed: {e}; got {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Encodes a frame: `first` is FIN | RSV | opcode, masked with `mask`.
fn encode(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(first);
    let bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(bit | n as u8),
        n @ 126..=0xFFFF => {
            out.push(bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let start = out.len() + mask.map_or(0, |k| k.len());
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
    out.extend_from_slice(payload);
    if let Some(key) = mask.filter(|k| *k != [0; 4]) {
        for (i, byte) in out[start..].iter_mut().enumerate() {
            *byte ^= key[i % 4];
        }
    }
    out
}

/// A frame as a client sends it (masked).
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    encode(first, payload, Some(MASK))
}

/// A close frame body: the code, then the reason bytes.
fn close_body(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut body = code.to_be_bytes().to_vec();
    body.extend_from_slice(reason);
    body
}

#[derive(Debug)]
struct Frame {
    fin: bool,
    opcode: u8,
    masked: bool,
    payload: Vec<u8>,
}

impl Frame {
    fn close_code(&self) -> u16 {
        match self.payload.as_slice() {
            [a, b, ..] => u16::from_be_bytes([*a, *b]),
            _ => 1005,
        }
    }
}

/// Parses one frame from the front of `buf`, if it is all there.
fn parse_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    let (&first, &second) = (buf.first()?, buf.get(1)?);
    let masked = second & 0x80 != 0;
    let (len, mut at) = match second & 0x7F {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let key: Option<[u8; 4]> = if masked {
        let key = buf.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        Some(key)
    } else {
        None
    };
    let mut payload = buf.get(at..at.checked_add(len)?)?.to_vec();
    if let Some(key) = key {
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= key[i % 4];
        }
    }
    let frame = Frame {
        fin: first & FIN != 0,
        opcode: first & 0x0F,
        masked,
        payload,
    };
    Some((frame, at + len))
}

/// A raw peer speaking bytes, with a frame reader.
struct Peer {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Peer {
    fn new(stream: TcpStream) -> Peer {
        Peer {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes everything; the server may already have failed the
    /// connection, so a write error is not the test's verdict.
    fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads an HTTP head; what follows it stays buffered.
    fn read_head(&mut self) -> String {
        loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..at + 4).collect();
                return String::from_utf8_lossy(&head).into_owned();
            }
            assert!(self.buf.len() < 64 * KIB, "endless head");
            match self.fill() {
                Ok(0) => panic!(
                    "closed during the handshake: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
                Ok(_) => {}
                Err(e) => panic!("no handshake answer: {e}"),
            }
        }
    }

    fn read_frame(&mut self) -> io::Result<Frame> {
        loop {
            if let Some((frame, used)) = parse_frame(&self.buf) {
                self.buf.drain(..used);
                return Ok(frame);
            }
            if self.fill()? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Reads until the server's close frame, then until the server ends
    /// the TCP connection; returns the close code.
    fn expect_close(&mut self) -> u16 {
        let frame = loop {
            match self.read_frame() {
                Ok(frame) if frame.opcode == CLOSE => break frame,
                Ok(_) => {}
                Err(e) => panic!("no close frame from the server: {e}"),
            }
        };
        assert!(frame.fin && !frame.masked, "{frame:?}");
        self.expect_eof();
        frame.close_code()
    }

    /// Asserts the server ends the TCP connection with nothing more sent.
    fn expect_eof(&mut self) {
        loop {
            match self.fill() {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if is_reset(&e) => break,
                Err(e) => panic!("the server did not close the connection: {e}"),
            }
        }
        assert!(
            self.buf.is_empty(),
            "bytes after the close frame: {:?}",
            self.buf
        );
    }

    /// Whether the server stays silent for `wait`.
    fn silent_for(&mut self, wait: Duration) -> bool {
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let silent = matches!(self.fill(), Err(e) if is_timeout(&e)) && self.buf.is_empty();
        self.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        silent
    }
}

// ---- memory and descriptors ---------------------------------------------------

/// The process's resident set size.
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: usize = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * KIB
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Samples the RSS every 2 ms from creation until [`RssPeak::growth`].
struct RssPeak {
    base: usize,
    stop: Arc<AtomicBool>,
    sampler: thread::JoinHandle<usize>,
}

impl RssPeak {
    fn start() -> RssPeak {
        let base = rss();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let sampler = thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(rss());
                thread::sleep(Duration::from_millis(2));
            }
            peak.max(rss())
        });
        RssPeak {
            base,
            stop,
            sampler,
        }
    }

    /// How far above the starting RSS the peak went.
    fn growth(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.sampler.join().unwrap().saturating_sub(self.base)
    }
}

// ---- the attacks, each run against both adapters ---------------------------------

/// Generates `mod name { fn blocking(); fn tokio() }` test pairs.
macro_rules! against_both_adapters {
    ($($(#[$meta:meta])* fn $name:ident($adapter:ident) $body:block)*) => {$(
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn attack($adapter: Adapter) $body

            #[test]
            fn blocking() {
                attack(Adapter::Blocking);
            }

            #[test]
            fn tokio() {
                attack(Adapter::Tokio);
            }

            #[cfg(all(feature = "uring", target_os = "linux"))]
            #[test]
            fn uring() {
                attack(Adapter::Uring);
            }
        }
    )*};
}

/// Each `(bytes, close code, error)` on a fresh connection: the server
/// answers with the close code, fails with the error, closes the TCP
/// connection, and then still serves a well-behaved client.
fn protocol_attacks(adapter: Adapter, attacks: &[(Vec<u8>, u16, ProtocolError)]) {
    let _lock = shared_lock();
    let server = Server::start(adapter, server_config());
    for (bytes, code, error) in attacks {
        let mut peer = server.open();
        peer.send(bytes);
        assert_eq!(peer.expect_close(), *code, "{error:?}");
        server.expect(&ended(*code, &[Fault::Protocol(*error)]));
    }
    server.assert_serves();
    server.assert_idle();
}

against_both_adapters! {
    /// A request head past `max_handshake_size` is refused with 431.
    fn oversized_request_head_is_431(adapter) {
        let _lock = shared_lock();
        let mut config = server_config();
        config.max_handshake_size = 4 * KIB;
        let server = Server::start(adapter, config);
        // 64 KiB of one header: the server must not read (or buffer) it all.
        let pad = format!("X-Pad: {}\r\n", "a".repeat(64 * KIB));
        server.expect_refusal(
            &upgrade_request(server.addr, "GET", "1.1", &pad),
            "431 Request Header Fields Too Large",
        );
        server.assert_serves();
        server.assert_idle();
    }

    /// More header fields than `max_handshake_headers` is a 431.
    fn too_many_headers_is_431(adapter) {
        let _lock = shared_lock();
        let mut config = server_config();
        config.max_handshake_headers = 32;
        let server = Server::start(adapter, config);
        let extra: String = (0..100).map(|i| format!("X-Header-{i}: {i}\r\n")).collect();
        server.expect_refusal(
            &upgrade_request(server.addr, "GET", "1.1", &extra),
            "431 Request Header Fields Too Large",
        );
        server.assert_serves();
        server.assert_idle();
    }

    /// Slowloris: every read brings a byte, but the whole handshake is
    /// bounded by `handshake_timeout`, after which the server hangs up.
    fn trickled_handshake_times_out(adapter) {
        let _lock = shared_lock();
        let mut config = server_config();
        config.handshake_timeout = Duration::from_secs(1);
        let server = Server::start(adapter, config);
        let request = upgrade_request(server.addr, "GET", "1.1", "");
        let mut stream = server.connect_raw();
        stream.set_read_timeout(Some(Duration::from_millis(250))).unwrap();
        let started = Instant::now();
        let mut sent = 0;
        let hung_up = loop {
            assert!(started.elapsed() < IO_TIMEOUT, "the server never hung up");
            if sent < request.len() {
                if stream.write_all(&request.as_bytes()[sent..=sent]).is_err() {
                    break started.elapsed();
                }
                sent += 1;
            }
            // One byte every 250 ms; watch for the server hanging up.
            let mut byte = [0u8; 1];
            match stream.read(&mut byte) {
                Ok(0) => break started.elapsed(),
                Ok(_) => panic!("the server answered a partial request"),
                Err(e) if is_timeout(&e) => {}
                Err(e) if is_reset(&e) => break started.elapsed(),
                Err(e) => panic!("{e}"),
            }
        };
        assert!(sent < request.len(), "the whole request went through");
        assert!(
            hung_up >= Duration::from_millis(900) && hung_up < Duration::from_secs(3),
            "hung up after {hung_up:?}"
        );
        if adapter.records_handshakes() {
            server.expect(&Outcome::Handshake(Fault::Timeout(Timeout::Handshake)));
        }
        server.assert_serves();
        server.assert_idle();
    }

    /// A POST, and a GET over HTTP/1.0, are refused with 400.
    fn non_get_or_http_1_0_is_400(adapter) {
        let _lock = shared_lock();
        let server = Server::start(adapter, server_config());
        for (method, version) in [("POST", "1.1"), ("GET", "1.0")] {
            let request = upgrade_request(server.addr, method, version, "");
            server.expect_refusal(&request, "400 Bad Request");
        }
        server.assert_serves();
        server.assert_idle();
    }

    /// Sec-WebSocket-Version 8 is a 426 naming version 13.
    fn wrong_version_is_426(adapter) {
        let _lock = shared_lock();
        let server = Server::start(adapter, server_config());
        let request = upgrade_request(server.addr, "GET", "1.1", "")
            .replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8");
        let answer = server.expect_refusal(&request, "426 Upgrade Required");
        assert!(answer.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{answer:?}");
        server.assert_serves();
        server.assert_idle();
    }

    /// A message whose fragments never end: exactly `max_message_size`
    /// is accepted, the next fragment is answered with 1009, and memory
    /// stays bounded however much the peer keeps sending.
    fn never_ending_fragmented_message_is_1009_at_the_limit(adapter) {
        let _lock = exclusive_lock();
        let mut config = server_config();
        config.max_message_size = MIB;
        config.max_frame_size = MIB;
        let server = Server::start(adapter, config);
        let mut peer = server.open();
        let piece = vec![0x42u8; 16 * KIB];
        let first = encode(BINARY, &piece, Some([0; 4]));
        let next = encode(CONTINUATION, &piece, Some([0; 4]));
        let peak = RssPeak::start();
        peer.send(&first);
        for _ in 1..MIB / piece.len() {
            peer.send(&next);
        }
        // Exactly at the limit: still open, waiting for more.
        assert!(peer.silent_for(Duration::from_millis(300)), "closed at the limit");
        // Then never stop: 32 MiB more fragments, none final.
        let mut writer = peer.stream.try_clone().unwrap();
        let flood = thread::spawn(move || {
            let mut sent = 0;
            while sent < 32 * MIB && writer.write_all(&next).is_ok() {
                sent += piece.len();
            }
            sent
        });
        assert_eq!(peer.expect_close(), 1009);
        let sent_after = flood.join().unwrap();
        let growth = peak.growth();
        eprintln!("{adapter:?}: {} KiB sent past the limit, RSS +{} KiB", sent_after / KIB, growth / KIB);
        assert!(sent_after < 32 * MIB, "the server kept reading the endless message");
        assert!(growth < 16 * MIB, "RSS grew by {} KiB", growth / KIB);
        server.expect(&ended(1009, &[Fault::Protocol(ProtocolError::MessageTooBig)]));
        drop(peer);
        server.assert_serves();
        server.assert_idle();
    }

    /// Empty fragments never grow the message, so `max_fragments` is what
    /// stops them: exactly the limit is accepted, one more is 1009.
    fn never_ending_empty_fragments_are_1009_at_the_fragment_limit(adapter) {
        let _lock = shared_lock();
        let mut config = server_config();
        config.max_fragments = 1000;
        let server = Server::start(adapter, config);
        let mut peer = server.open();
        let mut bytes = client_frame(TEXT, b"");
        for _ in 1..1000 {
            bytes.extend_from_slice(&client_frame(CONTINUATION, b""));
        }
        peer.send(&bytes);
        assert!(peer.silent_for(Duration::from_millis(300)), "closed at the limit");
        peer.send(&client_frame(CONTINUATION, b""));
        assert_eq!(peer.expect_close(), 1009);
        server.expect(&ended(1009, &[Fault::Protocol(ProtocolError::TooManyFragments)]));
        server.assert_serves();
        server.assert_idle();
    }

    /// A 64-bit length with the top bit set (2^63) is 1002.
    fn length_2_pow_63_is_1002(adapter) {
        let mut header = vec![FIN | BINARY, 0x80 | 127];
        header.extend_from_slice(&(1u64 << 63).to_be_bytes());
        header.extend_from_slice(&MASK);
        header.extend_from_slice(b"some bytes");
        protocol_attacks(adapter, &[(header, 1002, ProtocolError::LengthTopBit)]);
    }

    /// A 2^63 - 1 byte frame is refused as too big (1009) from its header
    /// alone, without allocating for the declared length.
    fn length_2_pow_63_minus_1_is_1009(adapter) {
        let mut header = vec![FIN | BINARY, 0x80 | 127];
        header.extend_from_slice(&((1u64 << 63) - 1).to_be_bytes());
        header.extend_from_slice(&MASK);
        header.extend_from_slice(b"some bytes");
        protocol_attacks(adapter, &[(header, 1009, ProtocolError::FrameTooBig)]);
    }

    /// A ping with 126 bytes of payload is 1002.
    fn ping_of_126_bytes_is_1002(adapter) {
        let ping = client_frame(FIN | PING, &[b'p'; 126]);
        protocol_attacks(adapter, &[(ping, 1002, ProtocolError::ControlFrameTooLong)]);
    }

    /// A ping without FIN is 1002.
    fn fragmented_ping_is_1002(adapter) {
        let mut ping = client_frame(PING, b"part one");
        ping.extend_from_slice(&client_frame(FIN | CONTINUATION, b"part two"));
        protocol_attacks(adapter, &[(ping, 1002, ProtocolError::FragmentedControlFrame)]);
    }

    /// Unmasked frames from a client are 1002.
    fn unmasked_client_frames_are_1002(adapter) {
        protocol_attacks(
            adapter,
            &[
                (encode(FIN | TEXT, b"hello", None), 1002, ProtocolError::UnmaskedFrame),
                (encode(FIN | PING, b"", None), 1002, ProtocolError::UnmaskedFrame),
            ],
        );
    }

    /// RSV1, RSV2 or RSV3 with no extension negotiated is 1002.
    fn rsv_bits_without_an_extension_are_1002(adapter) {
        let attacks: Vec<_> = [0x40u8, 0x20, 0x10]
            .iter()
            .map(|rsv| (client_frame(FIN | rsv | TEXT, b"hi"), 1002, ProtocolError::ReservedBits))
            .collect();
        protocol_attacks(adapter, &attacks);
    }

    /// Every reserved opcode (3-7, 0xB-0xF) is 1002.
    fn reserved_opcodes_are_1002(adapter) {
        let attacks: Vec<_> = (0x3u8..=0x7)
            .chain(0xB..=0xF)
            .map(|op| (client_frame(FIN | op, b"x"), 1002, ProtocolError::ReservedOpcode(op)))
            .collect();
        protocol_attacks(adapter, &attacks);
    }

    /// Close codes that must not be sent, and a one-byte close body, are
    /// 1002.
    fn invalid_close_codes_are_1002(adapter) {
        let mut attacks: Vec<_> = [0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2999, 5000, 65535]
            .iter()
            .map(|&code| {
                (
                    client_frame(FIN | CLOSE, &close_body(code, b"")),
                    1002,
                    ProtocolError::InvalidCloseCode(code),
                )
            })
            .collect();
        attacks.push((client_frame(FIN | CLOSE, &[0x03]), 1002, ProtocolError::InvalidClosePayload));
        protocol_attacks(adapter, &attacks);
    }

    /// Invalid UTF-8 in a text message is 1007: whole, at the end, and in
    /// the first fragment of a message that never finishes.
    fn invalid_utf8_in_text_is_1007(adapter) {
        protocol_attacks(
            adapter,
            &[
                (client_frame(FIN | TEXT, &[b'o', b'k', 0xC3, 0x28]), 1007, ProtocolError::InvalidUtf8),
                (client_frame(FIN | TEXT, &[b'o', b'k', 0xE2, 0x82]), 1007, ProtocolError::InvalidUtf8),
                (client_frame(TEXT, &[0xFF, b'a', b'b']), 1007, ProtocolError::InvalidUtf8),
            ],
        );
    }

    /// Invalid UTF-8 in a close reason is 1007.
    fn invalid_utf8_in_close_reason_is_1007(adapter) {
        let close = client_frame(FIN | CLOSE, &close_body(1000, &[b'b', 0xFF, 0xFE]));
        protocol_attacks(adapter, &[(close, 1007, ProtocolError::InvalidUtf8)]);
    }

    /// A 256 MiB decompression bomb (a few hundred KiB on the wire) is
    /// cut off at `max_message_size` with 1009; memory stays bounded.
    fn decompression_bomb_is_1009_with_bounded_memory(adapter) {
        let bomb = bomb();
        let _lock = exclusive_lock();
        let mut config = server_config();
        config.max_message_size = MIB;
        config.max_frame_size = MIB;
        let server = Server::start(adapter, config);
        let (mut peer, head) =
            server.open_with("Sec-WebSocket-Extensions: permessage-deflate\r\n");
        assert!(head.to_ascii_lowercase().contains("permessage-deflate"), "{head}");
        let peak = RssPeak::start();
        peer.send(bomb);
        assert_eq!(peer.expect_close(), 1009);
        let growth = peak.growth();
        eprintln!("{adapter:?}: bomb of {} KiB, RSS +{} KiB", bomb.len() / KIB, growth / KIB);
        assert!(growth < 16 * MIB, "RSS grew by {} KiB", growth / KIB);
        server.expect(&ended(1009, &[Fault::Protocol(ProtocolError::MessageTooBig)]));
        drop(peer);
        server.assert_serves();
        server.assert_idle();
    }

    /// 100 000 pings while never reading a pong: the server's pong backlog
    /// stays bounded (it stops reading rather than buffering), it serves
    /// others meanwhile, and it answers the close once the peer reads.
    fn ping_flood_without_reading_pongs_is_bounded(adapter) {
        const PINGS: usize = 100_000;
        let _lock = exclusive_lock();
        let mut config = server_config();
        config.max_pending_pong_bytes = 64 * KIB;
        let server = Server::start(adapter, config);
        let mut peer = server.open();
        let one = client_frame(FIN | PING, &[b'p'; 125]);
        let flood: Vec<u8> = one.iter().copied().cycle().take(one.len() * PINGS).collect();
        let peak = RssPeak::start();
        peer.stream.set_write_timeout(Some(Duration::from_millis(500))).unwrap();
        let mut sent = 0;
        while sent < flood.len() {
            match peer.stream.write(&flood[sent..]) {
                Ok(n) => sent += n,
                Err(e) if is_timeout(&e) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => panic!("{e}"),
            }
        }
        eprintln!("{adapter:?}: {} of {PINGS} pings written before the peer stalled", sent / one.len());
        // While that peer is stuck, others are served.
        server.assert_serves();
        let growth = peak.growth();
        eprintln!("{adapter:?}: ping flood, RSS +{} KiB", growth / KIB);
        // Answering every ping at once would hold 12 MiB of pongs.
        assert!(growth < 4 * MIB, "RSS grew by {} KiB", growth / KIB);
        // Now read: every pong is a real one, never more than the pings.
        let mut reader = Peer::new(peer.stream.try_clone().unwrap());
        let counter = thread::spawn(move || {
            let mut pongs = 0;
            loop {
                match reader.read_frame() {
                    Ok(f) if f.opcode == PONG => {
                        assert_eq!(f.payload, [b'p'; 125]);
                        pongs += 1;
                    }
                    Ok(f) if f.opcode == CLOSE => return (pongs, f.close_code()),
                    Ok(f) => panic!("unexpected frame {f:?}"),
                    Err(e) => panic!("after {pongs} pongs: {e}"),
                }
            }
        });
        peer.stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        peer.stream.write_all(&flood[sent..]).unwrap();
        peer.stream.write_all(&client_frame(FIN | CLOSE, &close_body(1000, b""))).unwrap();
        let (pongs, code) = counter.join().unwrap();
        eprintln!("{adapter:?}: {pongs} pongs for {PINGS} pings");
        assert_eq!(code, 1000);
        assert!(pongs > 0 && pongs <= PINGS, "{pongs} pongs");
        server.expect(&ended(1000, &[]));
        drop(peer);
        server.assert_idle();
    }

    /// A peer that sends 64 KiB messages for the server to echo but never
    /// reads: the server stops reading (the peer's writes stall) instead
    /// of buffering, memory stays bounded, others are served, a tokio
    /// `Handle` pushing to it gets `Full` with the queue at its bound, and
    /// when the peer finally vanishes the connection is freed.
    fn never_reading_peer_is_held_by_backpressure(adapter) {
        let _lock = exclusive_lock();
        let mut config = server_config();
        config.max_queued_bytes = 256 * KIB;
        config.max_message_size = MIB;
        config.max_frame_size = MIB;
        let server = Server::start(adapter, config);
        let mut peer = server.open();
        let message = client_frame(FIN | BINARY, &vec![7u8; 64 * KIB]);
        let batch: Vec<u8> = message.iter().copied().cycle().take(message.len() * 16).collect();
        let peak = RssPeak::start();
        peer.stream.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut sent = 0usize;
        let stalled = 'outer: loop {
            if sent >= 256 * MIB {
                break false;
            }
            let mut at = 0;
            while at < batch.len() {
                match peer.stream.write(&batch[at..]) {
                    Ok(n) => at += n,
                    Err(e) if is_timeout(&e) => {
                        sent += at;
                        break 'outer true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => panic!("{e}"),
                }
            }
            sent += batch.len();
        };
        eprintln!("{adapter:?}: {} KiB written before the writes stalled", sent / KIB);
        assert!(stalled, "256 MiB went in without the server pushing back");
        if adapter != Adapter::Blocking {
            let handle = server.latest_handle();
            let chunk = vec![1u8; 16 * KIB];
            let mut full = false;
            for _ in 0..10_000 {
                match handle.try_send(Message::Binary(&chunk)) {
                    Ok(()) => {}
                    Err(chito::tokio::QueueError::Full) => {
                        full = true;
                        break;
                    }
                    Err(e) => panic!("{e:?}"),
                }
            }
            let buffered = handle.buffered_amount();
            eprintln!("{adapter:?}: handle buffered {} KiB when full", buffered / KIB);
            assert!(full, "the handle's queue never filled");
            assert!(buffered <= 256 * KIB + 64 * KIB + 14, "{buffered} bytes buffered");
        }
        server.assert_serves();
        let growth = peak.growth();
        eprintln!("{adapter:?}: never-reading peer, RSS +{} KiB", growth / KIB);
        assert!(growth < 16 * MIB, "RSS grew by {} KiB", growth / KIB);
        // The peer vanishes with the echoes unread: a reset, 1006.
        drop(peer);
        match server.take("for the vanished reader", |o| matches!(o, Outcome::Ended { .. })) {
            Outcome::Ended { code, errors } => {
                assert_eq!(code, 1006, "{errors:?}");
                assert!(matches!(errors.as_slice(), [Fault::Io(_)]), "{errors:?}");
            }
            other => panic!("{other:?}"),
        }
        server.assert_idle();
    }

    /// A peer that stops reading and then goes quiet holds the server's
    /// write forever unless a timer reclaims it: with `idle_timeout` set
    /// (nothing is received), the connection must end within the idle and
    /// close timeouts.
    fn stalled_silent_peer_is_reclaimed_by_idle_timeout(adapter) {
        let _lock = shared_lock();
        let mut config = server_config();
        config.idle_timeout = Some(Duration::from_secs(1));
        config.close_timeout = Duration::from_secs(1);
        let server = Server::start(adapter, config);
        let mut peer = server.open();
        let message = client_frame(FIN | BINARY, &vec![7u8; 64 * KIB]);
        peer.stream.set_write_timeout(Some(Duration::from_millis(500))).unwrap();
        let mut stalled = false;
        for _ in 0..4096 {
            if let Err(e) = peer.stream.write_all(&message) {
                assert!(is_timeout(&e), "{e}");
                stalled = true;
                break;
            }
        }
        assert!(stalled, "the server never pushed back");
        // Now the peer sends nothing and reads nothing, but stays connected.
        let quiet = Instant::now();
        let outcome = server.take_within(
            Duration::from_secs(5),
            "for the stalled peer within idle + close timeouts",
            |o| matches!(o, Outcome::Ended { .. }),
        );
        let took = quiet.elapsed();
        eprintln!("{adapter:?}: stalled peer reclaimed after {took:?}: {outcome:?}");
        assert!(took < Duration::from_secs(4), "reclaimed only after {took:?}");
        drop(peer);
        server.assert_idle();
    }

    /// A peer that vanishes mid-header, mid-payload or mid-message: the
    /// handler sees the error and 1006, and the connection is freed.
    fn peer_vanishing_mid_frame_is_an_error_and_freed(adapter) {
        let _lock = shared_lock();
        let server = Server::start(adapter, server_config());
        let whole = client_frame(FIN | BINARY, &[9u8; 100]);
        let mut mid_message = client_frame(BINARY, &[1u8; 50]);
        mid_message.extend_from_slice(&client_frame(FIN | CONTINUATION, &[2u8; 100])[..20]);
        for half in [&whole[..1], &whole[..30], &mid_message[..]] {
            let mut peer = server.open();
            peer.send(half);
            drop(peer);
            server.expect(&ended(1006, &[Fault::Io(io::ErrorKind::UnexpectedEof)]));
            server.assert_idle();
        }
        server.assert_serves();
        server.assert_idle();
    }

    /// 1 000 connections opened and dropped in a loop (some after the
    /// handshake, some after a message, some mid-handshake, some before a
    /// byte): every one is accounted for, and descriptors and RSS return
    /// to their baseline.
    fn thousand_connections_opened_and_dropped_leak_nothing(adapter) {
        let _lock = exclusive_lock();
        let server = Server::start(adapter, server_config());
        let cycle = |i: usize| {
            let mut stream = server.connect_raw();
            let request = upgrade_request(server.addr, "GET", "1.1", "");
            match i % 4 {
                0 | 1 => {
                    let mut peer = Peer::new(stream);
                    peer.send(request.as_bytes());
                    assert!(peer.read_head().starts_with("HTTP/1.1 101 "));
                    if i % 4 == 1 {
                        peer.send(&client_frame(FIN | TEXT, b"hello"));
                        let echo = peer.read_frame().unwrap();
                        assert_eq!((echo.opcode, echo.payload.as_slice()), (TEXT, &b"hello"[..]));
                    }
                }
                2 => stream.write_all(&request.as_bytes()[..request.len() / 2]).unwrap(),
                _ => {}
            }
        };
        // Warm up the allocator, thread stacks and buffer pools.
        // Only connections past the handshake are recorded by a server
        // that does not record handshakes (half of them).
        let recorded = |n: usize| if adapter.records_handshakes() { n } else { n / 2 };
        for i in 0..200 {
            cycle(i);
        }
        server.wait_outcomes(recorded(200));
        server.assert_idle();
        thread::sleep(Duration::from_millis(100));
        let (fds_before, rss_before) = (open_fds(), rss());
        for i in 0..1000 {
            cycle(i);
        }
        let outcomes = server.wait_outcomes(recorded(1000));
        server.assert_idle();
        thread::sleep(Duration::from_millis(200));
        let (fds_after, rss_after) = (open_fds(), rss());
        eprintln!(
            "{adapter:?}: fds {fds_before} -> {fds_after}, RSS {} -> {} KiB",
            rss_before / KIB,
            rss_after / KIB
        );
        let served = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Ended { code: 1006, .. }))
            .count();
        let refused = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Handshake(Fault::Io(_))))
            .count();
        let expected_refused = if adapter.records_handshakes() { 500 } else { 0 };
        assert_eq!((served, refused), (500, expected_refused), "{outcomes:?}");
        assert!(fds_after <= fds_before + 2, "fds {fds_before} -> {fds_after}");
        assert!(
            rss_after <= rss_before + 4 * MIB,
            "RSS {} -> {} KiB",
            rss_before / KIB,
            rss_after / KIB
        );
        assert_eq!(server.outcome_count(), 0);
        server.assert_serves();
    }

    /// A server that masks its frames: the chito client fails with
    /// `MaskedFrame` and answers with close 1002.
    fn masked_server_frame_to_a_client_is_1002(adapter) {
        let _lock = shared_lock();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let evil = thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
            let mut peer = Peer::new(stream);
            let head = peer.read_head();
            let key = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.trim()
                        .eq_ignore_ascii_case("sec-websocket-key")
                        .then(|| value.trim().to_owned())
                })
                .expect("no Sec-WebSocket-Key");
            let response = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                accept_key(key.as_bytes())
            );
            peer.send(response.as_bytes());
            peer.send(&client_frame(FIN | TEXT, b"masked by a server"));
            let close = loop {
                let frame = peer.read_frame().expect("no close frame from the client");
                if frame.opcode == CLOSE {
                    break frame;
                }
            };
            assert!(close.masked, "a client's close must be masked");
            close.close_code()
        });
        let url = format!("ws://{addr}/");
        let mut config = client_config();
        config.deflate = None;
        let error = match adapter {
            Adapter::Blocking => {
                let (mut ws, _) = chito::blocking::connect_with(&url, config).unwrap();
                ws.recv().expect_err("a masked frame was accepted")
            }
            // The uring driver is a server only: its run tests the tokio
            // client again.
            _ => run_async(async move {
                let (mut ws, _) = chito::tokio::connect_with(&url, config).await.unwrap();
                ws.recv().await.expect_err("a masked frame was accepted")
            }),
        };
        assert!(
            matches!(error, Error::Protocol(ProtocolError::MaskedFrame)),
            "{error:?}"
        );
        assert_eq!(evil.join().unwrap(), 1002);
    }
}

/// A permessage-deflate message of 256 MiB of zeros, as one masked frame
/// with RSV1 (built once, shared by both adapters' tests).
///
/// Compressing 256 MiB takes a minute in a debug build, so one MiB is
/// compressed and the result repeated: each piece comes from a fresh
/// compressor (no context takeover) and ends byte-aligned after a sync
/// flush, so the pieces, each completed with the `00 00 ff ff` the sender
/// strips (RFC 7692 §7.2.1), concatenate into one valid deflate stream.
fn bomb() -> &'static [u8] {
    static BOMB: OnceLock<Vec<u8>> = OnceLock::new();
    BOMB.get_or_init(|| {
        const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
        let mut piece = Vec::new();
        Deflater::new(15, true, 9)
            .unwrap()
            .compress(&vec![0u8; MIB], true, &mut piece)
            .unwrap();
        let mut compressed = Vec::new();
        for _ in 0..255 {
            compressed.extend_from_slice(&piece);
            compressed.extend_from_slice(&TAIL);
        }
        compressed.extend_from_slice(&piece);
        // The technique holds: two pieces inflate to exactly 2 MiB.
        let mut two = [&piece[..], &TAIL, &piece, &TAIL].concat();
        two.truncate(two.len() - TAIL.len());
        assert_eq!(inflated_len(&two), 2 * MIB);
        assert!(compressed.len() < 512 * KIB, "{}", compressed.len());
        client_frame(FIN | RSV1 | BINARY, &compressed)
    })
}

/// How many bytes a permessage-deflate payload inflates to (flate2, raw
/// deflate, with the stripped tail appended back).
fn inflated_len(payload: &[u8]) -> usize {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
    let mut inflate = flate2::Decompress::new(false);
    let mut out = vec![0u8; 4 * MIB];
    let mut total = 0;
    loop {
        let (read, wrote) = (inflate.total_in(), inflate.total_out());
        inflate
            .decompress(
                &input[read as usize..],
                &mut out,
                flate2::FlushDecompress::Sync,
            )
            .unwrap();
        let produced = (inflate.total_out() - wrote) as usize;
        total += produced;
        if produced == 0 && inflate.total_in() == read {
            return total;
        }
    }
}
