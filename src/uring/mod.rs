//! io_uring server driver (feature `uring`, Linux ≥ 6.0): connections live
//! in a slab owned by an event loop — no task and no read buffer per
//! connection — and are driven by completions.
//!
//! One loop is one thread with one io_uring instance: a multishot accept
//! on the listener; per connection one multishot receive whose bytes come
//! from a ring of buffers the kernel picks from only when bytes arrive
//! (an idle connection holds no buffer); the output of every connection
//! served in a turn moved or copied into owned send buffers and submitted
//! together with the wait for the next completions (one `io_uring_enter`
//! per turn for all sockets); the core's deadlines in a timer heap. The same
//! [`Handler`] as `chito::tokio`'s `serve` runs on it, a [`Handle`] sends
//! from any thread (rooms included, with encode-once frames), and a
//! [`Shutdown`] ends it gracefully. [`Server::loops`] runs several loops,
//! one thread each, on `SO_REUSEPORT` listeners.
//!
//! # When to choose it over `chito::tokio`
//!
//! For servers with many mostly idle connections, or many small messages
//! per second, on Linux: its idle connection costs its slot (~0.45 KiB of
//! user space; 0.52 KiB of server RSS per connection measured at 10 000,
//! where the tokio adapter needs 1.35 KiB), and its system calls are
//! batched across sockets (pipelined 16-byte echo: 1.10× the tokio
//! adapter's messages per second). Choose the tokio adapter for messages
//! of a few KiB and more: there the loop spends more CPU per message than
//! the tokio adapter (4 KiB text echo 1.6×, 1 MiB echo 1.5×; received
//! bytes are copied from the shared buffers into the connection, a large
//! echo into an owned send buffer, docs/uring.md §11). Choose it too for
//! TLS, for handlers that await (a handler here runs on the loop's thread
//! and must not block: a slow handler stalls every connection of its loop),
//! or off Linux. The kernel keeps about 0.7 KiB more per connection for an
//! armed multishot receive than for an epoll registration (docs/uring.md
//! §5), so the whole cost of an idle connection (user space and kernel) is
//! about the same as with tokio.
//!
//! # When io_uring is unavailable
//!
//! [`Server::bind`] sets up a ring and tests a multishot receive before
//! anything else. A kernel older than 6.0, `kernel.io_uring_disabled`, or
//! a seccomp policy (Docker's default profile denies io_uring) give
//! [`BindError::Unavailable`], whose message says which and suggests the
//! tokio adapter; fall back to it:
//!
//! ```no_run
//! use chito::{Handler, Message, Sender};
//!
//! struct Echo;
//! impl Handler for Echo {
//!     fn on_message(&mut self, sender: &mut Sender<'_>, message: Message<'_>) {
//!         let _ = sender.send(message);
//!     }
//! }
//!
//! fn main() -> std::io::Result<()> {
//!     match chito::uring::Server::bind("127.0.0.1:9001") {
//!         Ok(server) => server
//!             .handshake_timeout(std::time::Duration::from_secs(10))
//!             .run(|_open| Echo),
//!         Err(chito::uring::BindError::Unavailable(why)) => {
//!             eprintln!("{why}");
//!             // … serve with chito::tokio (feature `tokio`) instead.
//!             Ok(())
//!         }
//!         Err(other) => Err(other.into()),
//!     }
//! }
//! ```
//!
//! Files: `event_loop` (the turn; `completions` what each completion
//! does), `slab` (slots and their tags), `send_buffers` (owned send
//! buffers and output queued behind a send in flight), `handshake`,
//! `timers`, `wake` (the cross-thread queue and eventfd). All of the
//! `unsafe` code is in the `chito-ring` crate; this module is safe code.

mod event_loop;
mod handshake;
mod send_buffers;
mod slab;
mod timers;
mod wake;

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use chito_ring::{Ring, RingConfig, Unavailable};

pub use crate::handle::{Handle, Overflow, QueueError};
pub use crate::shutdown::Shutdown;

use self::handshake::Inspect;
use self::wake::{Extras, LoopShared};
use crate::adapter::HANDSHAKE_TIMEOUT;
use crate::config::Config;
use crate::handle::QueueLimit;
use crate::handler::Handler;
use crate::handshake::{Accept, Rejection, UpgradeRequest};

/// What every loop of a server shares.
struct Settings {
    config: Arc<Config>,
    handshake_timeout: Duration,
    queue: QueueLimit,
    inspect: Option<Arc<Inspect>>,
    shutdown: Option<Shutdown>,
    ring: RingConfig,
}

/// Why [`Server::bind`] failed.
#[derive(Debug)]
pub enum BindError {
    /// The listener could not be bound (or read).
    Io(io::Error),
    /// io_uring cannot be used here; the message says why (old kernel,
    /// `kernel.io_uring_disabled`, a seccomp policy) and to use
    /// `chito::tokio` instead.
    Unavailable(io::Error),
}

impl BindError {
    fn unavailable(why: &Unavailable) -> BindError {
        BindError::Unavailable(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "{why}; use the tokio adapter instead (feature `tokio`, chito::tokio::Builder)"
            ),
        ))
    }
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindError::Io(e) => write!(f, "cannot listen: {e}"),
            BindError::Unavailable(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for BindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BindError::Io(e) | BindError::Unavailable(e) => Some(e),
        }
    }
}

impl From<BindError> for io::Error {
    fn from(error: BindError) -> io::Error {
        match error {
            BindError::Io(e) | BindError::Unavailable(e) => e,
        }
    }
}

/// A WebSocket server on io_uring: configure it, then [`Server::run`] (or
/// [`Server::spawn`]) it with a factory that makes each connection's
/// [`Handler`].
pub struct Server {
    listener: TcpListener,
    /// The listener was bound here with `SO_REUSEPORT`: more loops bind
    /// their own.
    reuse_port: bool,
    local_addr: SocketAddr,
    config: Arc<Config>,
    handshake_timeout: Duration,
    queue: QueueLimit,
    inspect: Option<Arc<Inspect>>,
    shutdown: Option<Shutdown>,
    loops: usize,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("loops", &self.loops)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds a listener (with `SO_REUSEPORT`, so that [`Server::loops`]
    /// can add listeners on the same port) and checks that io_uring works.
    ///
    /// # Errors
    /// [`BindError::Io`] for the listener, [`BindError::Unavailable`] when
    /// io_uring is refused.
    pub fn bind(addr: impl ToSocketAddrs) -> Result<Server, BindError> {
        let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to bind");
        for addr in addr.to_socket_addrs().map_err(BindError::Io)? {
            match chito_ring::reuse_port_listener(addr) {
                Ok(listener) => return Server::checked(listener, true, probe),
                Err(e) => last = e,
            }
        }
        Err(BindError::Io(last))
    }

    /// Serves on a listener bound elsewhere; more loops share it.
    ///
    /// # Errors
    /// As [`Server::bind`].
    pub fn from_listener(listener: TcpListener) -> Result<Server, BindError> {
        Server::checked(listener, false, probe)
    }

    /// A server on `listener` once `check` says io_uring works.
    fn checked(
        listener: TcpListener,
        reuse_port: bool,
        check: impl FnOnce() -> Result<(), Unavailable>,
    ) -> Result<Server, BindError> {
        let local_addr = listener.local_addr().map_err(BindError::Io)?;
        check().map_err(|why| BindError::unavailable(&why))?;
        Ok(Server {
            listener,
            reuse_port,
            local_addr,
            config: Config::shared_default(),
            handshake_timeout: HANDSHAKE_TIMEOUT,
            queue: QueueLimit::default(),
            inspect: None,
            shutdown: None,
            loops: 1,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Sets the protocol's limits and timers. Pass an `Arc<Config>` to
    /// share one copy.
    pub fn config(mut self, config: impl Into<Arc<Config>>) -> Self {
        self.config = config.into();
        self
    }

    /// Drops a connection whose opening handshake takes longer (a
    /// slowloris defence). Default: 10 s.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The most bytes a connection's [`Handle`]s may have queued plus
    /// encoded bytes not yet sent; past it the [`Overflow`] policy
    /// applies. Default: 4 MiB.
    pub fn max_queued_bytes(mut self, bytes: usize) -> Self {
        self.queue.max_bytes = bytes;
        self
    }

    /// What a full queue does with one more message. Default:
    /// [`Overflow::Reject`].
    pub fn queue_overflow(mut self, overflow: Overflow) -> Self {
        self.queue.overflow = overflow;
        self
    }

    /// Ends the server with `shutdown`: new handshakes get 503, open
    /// connections close 1001, stragglers are dropped at its deadline, and
    /// [`Server::run`] returns once every connection is gone.
    pub fn shutdown(mut self, shutdown: &Shutdown) -> Self {
        self.shutdown = Some(shutdown.clone());
        self
    }

    /// Inspects each upgrade request (path, origin, cookies) and accepts
    /// it — choosing a subprotocol or headers — or refuses it with an HTTP
    /// status, which the client receives before the socket closes.
    pub fn accept_with<F>(mut self, inspect: F) -> Self
    where
        F: Fn(&UpgradeRequest) -> Result<Accept, Rejection> + Send + Sync + 'static,
    {
        self.inspect = Some(Arc::new(inspect));
        self
    }

    /// Runs `n` loops (at least 1), one thread each. With [`Server::bind`]
    /// each has its own `SO_REUSEPORT` listener and the kernel spreads
    /// connections among them; with [`Server::from_listener`] they share
    /// the listener.
    pub fn loops(mut self, n: usize) -> Self {
        self.loops = n.max(1);
        self
    }

    /// Runs the loops, the first on this thread, until the shutdown given
    /// to [`Server::shutdown`] completes (forever without one).
    /// `new_handler` makes the [`Handler`] of each connection once its
    /// handshake is accepted; each loop has its own clone.
    ///
    /// # Errors
    /// A loop's ring could not be set up, or failed.
    pub fn run<F, H>(self, new_handler: F) -> io::Result<()>
    where
        F: FnMut(&mut Open<'_>) -> H + Clone + Send + 'static,
        H: Handler + 'static,
    {
        let (mut listeners, settings) = self.prepare()?;
        let first = listeners.remove(0);
        let others = spawn_loops(listeners, &settings, &new_handler)?;
        let result = event_loop::run(first, settings, new_handler);
        join_all(others).and(result)
    }

    /// Runs the loops on their own threads; the [`ServerHandle`] waits for
    /// them.
    ///
    /// # Errors
    /// A listener or a thread could not be made.
    pub fn spawn<F, H>(self, new_handler: F) -> io::Result<ServerHandle>
    where
        F: FnMut(&mut Open<'_>) -> H + Clone + Send + 'static,
        H: Handler + 'static,
    {
        let local_addr = self.local_addr;
        let (listeners, settings) = self.prepare()?;
        let threads = spawn_loops(listeners, &settings, &new_handler)?;
        Ok(ServerHandle {
            local_addr,
            threads,
        })
    }

    /// One listener per loop, and the settings they share.
    fn prepare(self) -> io::Result<(Vec<TcpListener>, Arc<Settings>)> {
        let mut listeners = Vec::with_capacity(self.loops);
        for _ in 1..self.loops {
            listeners.push(if self.reuse_port {
                chito_ring::reuse_port_listener(self.local_addr)?
            } else {
                self.listener.try_clone()?
            });
        }
        listeners.insert(0, self.listener);
        let settings = Arc::new(Settings {
            config: self.config,
            handshake_timeout: self.handshake_timeout,
            queue: self.queue,
            inspect: self.inspect,
            shutdown: self.shutdown,
            ring: RingConfig::default(),
        });
        Ok((listeners, settings))
    }
}

/// The start-up check: a ring set up, its buffers registered, a multishot
/// receive tested (then dropped: each loop makes its own on its thread).
///
/// On a thread of its own: tearing a ring down can leave task work for
/// the thread that submitted to it, which interrupts that thread's next
/// blocking call (`EINTR` where a socket timeout is set, signal(7)) — the
/// caller's thread must not inherit that.
fn probe() -> Result<(), Unavailable> {
    let tested = std::thread::Builder::new()
        .name("chito-uring-probe".into())
        .spawn(|| {
            Ring::new(&RingConfig {
                buffers: 8,
                ..RingConfig::default()
            })
            .map(drop)
        });
    match tested.map(JoinHandle::join) {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(Unavailable::new(
            chito_ring::Stage::SelfTest,
            io::Error::other("the self-test panicked"),
        )),
        Err(e) => Err(Unavailable::new(chito_ring::Stage::SelfTest, e)),
    }
}

fn spawn_loops<F, H>(
    listeners: Vec<TcpListener>,
    settings: &Arc<Settings>,
    new_handler: &F,
) -> io::Result<Vec<JoinHandle<io::Result<()>>>>
where
    F: FnMut(&mut Open<'_>) -> H + Clone + Send + 'static,
    H: Handler + 'static,
{
    listeners
        .into_iter()
        .map(|listener| {
            let settings = settings.clone();
            let new_handler = new_handler.clone();
            std::thread::Builder::new()
                .name("chito-uring".into())
                .spawn(move || event_loop::run(listener, settings, new_handler))
        })
        .collect()
}

fn join_all(threads: Vec<JoinHandle<io::Result<()>>>) -> io::Result<()> {
    let mut result = Ok(());
    for thread in threads {
        let ended = thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("a uring loop panicked")));
        if result.is_ok() {
            result = ended;
        }
    }
    result
}

/// The loops of a [`Server::spawn`]ed server.
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    threads: Vec<JoinHandle<io::Result<()>>>,
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits until every loop has ended (after its shutdown).
    ///
    /// # Errors
    /// The first loop's error.
    pub fn join(self) -> io::Result<()> {
        join_all(self.threads)
    }
}

/// A connection whose handshake was just accepted, handed to the handler
/// factory.
pub struct Open<'a> {
    request: &'a UpgradeRequest,
    stream: &'a TcpStream,
    extras: &'a mut Option<Box<Extras>>,
    shared: &'a Arc<LoopShared>,
    tag: u64,
    queue: QueueLimit,
}

impl fmt::Debug for Open<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Open")
            .field("path", &self.request.path())
            .finish_non_exhaustive()
    }
}

impl Open<'_> {
    /// The request's path (without the query).
    pub fn path(&self) -> &str {
        self.request.path()
    }

    /// The upgrade request: headers, query, offered protocols.
    pub fn request(&self) -> &UpgradeRequest {
        self.request
    }

    /// The peer's address.
    ///
    /// # Errors
    /// `getpeername(2)`'s (the peer may be gone already).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr()
    }

    /// A sender usable from any thread (for rooms, say). The connection's
    /// queue is made on the first call: connections that never ask for one
    /// carry none.
    pub fn handle(&mut self) -> Handle {
        event_loop::handle_for(self.extras, self.shared, self.tag, self.queue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chito_ring::Stage;

    #[test]
    fn a_refused_io_uring_is_unavailable_and_says_why_and_what_to_use() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        // What io_uring_setup(2) returns under kernel.io_uring_disabled=2
        // or Docker's seccomp profile: EPERM.
        let refused = Server::checked(listener, false, || {
            Err(Unavailable::new(
                Stage::Setup,
                io::Error::from_raw_os_error(1),
            ))
        });
        let Err(BindError::Unavailable(why)) = refused else {
            panic!("expected Unavailable, got {refused:?}");
        };
        let text = why.to_string();
        assert!(text.contains("io_uring_disabled"), "{text}");
        assert!(text.contains("chito::tokio"), "{text}");
        assert_eq!(why.kind(), io::ErrorKind::Unsupported);
    }

    #[test]
    fn a_working_io_uring_binds() {
        let server = Server::bind("127.0.0.1:0").unwrap();
        assert_ne!(server.local_addr().port(), 0);
    }

    #[test]
    fn tags_keep_index_and_generation_apart() {
        let tag = slab::tag(7, 0x7f_ffff);
        assert_eq!(slab::untag(tag), (7, 0x7f_ffff));
        assert!(tag < chito_ring::MAX_TAG - 1, "below the loop's own tags");
    }
}
