//! `chito-compio`: chito's sans-IO core driven by compio's io_uring runtime,
//! the safe completion-runtime driver #15 measures the custom ring against
//! (docs/uring.md §7). It lives in the bench only: compio is never a
//! dependency of chito.
//!
//! The shape is compio's own: a task per connection on one thread. Input
//! comes from one multishot receive per connection
//! ([`AsyncReadMulti::read_multi`]) into compio's runtime-wide provided-buffer
//! pool, so a buffer is taken only when bytes arrive; each one is copied into
//! [`Connection::feed`] and goes back to the pool when it is dropped, before
//! the next is awaited. Output is copied into an owned send buffer and
//! written with one send in flight per connection (the copy-out of
//! docs/uring.md §6.4). The opening handshake is chito's sans-IO
//! [`ServerHandshake`], as `chito::tokio::Builder::accept` runs it, and the
//! handler is the benchmark's [`Echo`] through [`chito::handler::dispatch`],
//! the same event loop the tokio adapter's `serve` runs.
//!
//! What an idle connection holds: its task (the future below), its
//! `Connection` with every buffer released (`release_idle_buffers`, called
//! whenever no input is ready), and compio's armed receive. The tokio
//! adapter's per-thread buffer pool is crate-private to chito, so here a
//! connection that goes idle after each message frees and later reallocates
//! its input and output buffers (one `malloc`/`free` pair each per wait).

use std::io;
use std::mem::MaybeUninit;
use std::num::NonZeroU16;
use std::pin::{pin, Pin};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chito::connection::{CloseStep, Connection, State};
use chito::handler::{dispatch, end_with_error, Flow};
use chito::handshake::{Accept, Rejection, ServerHandshake};
use chito::{Config, Error, Handler, Role};
use compio::buf::BufResult;
use compio::io::{AsyncReadMulti, AsyncWrite, AsyncWriteExt};
use compio::net::{TcpListener, TcpStream};
use futures_util::{FutureExt, Stream, StreamExt};

use crate::chito_server::Echo;

/// Buffers in compio's provided-buffer pool, shared by every connection of
/// the runtime (compio's default is 8, which starves 100 concurrent
/// connections into one `ENOBUFS` re-arm after another). The count and size
/// are docs/uring.md §10.6's defaults for the custom ring, so both drivers
/// receive into the same pool shape.
const POOL_BUFFERS: u16 = 512;

/// Bytes per pool buffer (docs/uring.md §10.6).
const POOL_BUFFER_LEN: usize = 4096;

/// How long a client has to complete the opening handshake: chito's
/// adapters' default (`chito::tokio::Builder::handshake_timeout`).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// compio's pool allocator with each buffer written once as the pool is
/// created, so the pool is resident from the start: a fixed cost of the
/// server, as the probe's `MAP_POPULATE` pool (docs/uring.md §5). compio's
/// own allocator leaves the pages untouched until the kernel first receives
/// into them, which the idle scenario would count as growth per connection
/// (2 MiB over its first few hundred handshakes).
struct TouchedAllocator;

impl compio::driver::BufferAllocator for TouchedAllocator {
    fn allocate(len: u32) -> NonNull<MaybeUninit<u8>> {
        let buffer = vec![MaybeUninit::new(0xa5_u8); len as usize].into_boxed_slice();
        NonNull::from(Box::leak(buffer)).cast()
    }

    unsafe fn deallocate(ptr: NonNull<MaybeUninit<u8>>, len: u32) {
        let slice = std::ptr::slice_from_raw_parts_mut(ptr.as_ptr(), len as usize);
        // SAFETY: `BufferAllocator::deallocate`'s contract: `ptr` came from
        // `allocate` above with this `len`, i.e. from a leaked
        // `Box<[MaybeUninit<u8>]>` of `len` elements, and is freed once.
        drop(unsafe { Box::from_raw(slice) });
    }
}

/// The received byte stream of one connection: compio's multishot receive,
/// yielding pool buffers.
type Input<'a> = Pin<&'a mut dyn Stream<Item = io::Result<compio::driver::BufferRef>>>;

/// Serves [`Echo`] on `listener` forever on a compio runtime on this thread.
pub fn run(listener: std::net::TcpListener) -> io::Result<()> {
    let mut proactor = compio::driver::ProactorBuilder::new();
    if let Some(buffers) = NonZeroU16::new(POOL_BUFFERS) {
        proactor.buffer_pool_size(buffers);
    }
    // The ring set up as docs/uring.md §2 sets up the custom one: one
    // submitting thread (IORING_SETUP_SINGLE_ISSUER, 6.0) and completion
    // work run only when the loop waits (IORING_SETUP_DEFER_TASKRUN, 6.1).
    proactor.single_issuer(true).defer_taskrun(true);
    proactor
        .buffer_pool_buffer_len(POOL_BUFFER_LEN)
        .buffer_pool_allocator::<TouchedAllocator>();
    let runtime = compio::runtime::RuntimeBuilder::new()
        .with_proactor(proactor)
        .build()?;
    // The pool is created on first use: create (and register) it now, before
    // the first connection.
    runtime.buffer_pool()?;
    runtime.block_on(async move {
        let listener = TcpListener::from_std(listener)?;
        // One configuration for every connection, shared as chito's
        // adapters share theirs.
        let config = Arc::new(Config::default());
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    // Dropping a compio JoinHandle cancels its task: detach.
                    compio::runtime::spawn(serve(stream, config.clone(), Echo)).detach();
                }
                // Out of file descriptors and the like: that connection is
                // lost, not the server (the policy of bench_server.rs).
                Err(_) => compio::time::sleep(Duration::from_millis(1)).await,
            }
        }
    })
}

/// One connection: the opening handshake, then `handler` until the
/// connection ends, then the end of the transport.
async fn serve<H: Handler>(stream: TcpStream, config: Arc<Config>, mut handler: H) {
    let mut reader = &stream;
    let mut writer = &stream;
    // len 0: each receive fills up to a whole pool buffer
    // (`AsyncReadMulti::read_multi`).
    let input = reader.read_multi(0);
    let mut input: Input<'_> = pin!(input);
    // Boxed: the handshake's state is large and short-lived, and the task
    // future would otherwise reserve room for it for the connection's life.
    let handshake = Box::pin(handshake(input.as_mut(), &mut writer, config)).await;
    let Some(mut conn) = handshake else {
        return;
    };
    // The owned send buffer: kept while messages flow, freed when idle.
    let mut out = Vec::new();
    handler.on_open(&mut conn.sender());
    loop {
        let flow = dispatch(&mut conn, &mut handler);
        // Boxed, as every future that is not the idle wait: compio's send
        // future is large, and the task would otherwise reserve room for
        // it for the connection's whole life (2 064 B unboxed).
        let written = if conn.pending_output().is_empty() {
            Ok(())
        } else {
            Box::pin(write_output(&mut writer, &mut conn, &mut out)).await
        };
        if let Err(e) = written {
            end_with_error(&mut handler, &Error::Io(e));
            break;
        }
        if flow == Flow::Ended {
            break;
        }
        // Input already received is taken at once; otherwise the connection
        // is idle until the next receive: it holds no buffer meanwhile.
        let next = match input.next().now_or_never() {
            Some(next) => Wake::Input(next),
            None => {
                conn.release_idle_buffers();
                out = Vec::new();
                wait(input.as_mut(), &mut conn).await
            }
        };
        match next {
            Wake::Input(Some(Ok(received))) => conn.feed(&received),
            // ENOBUFS: the pool was empty when bytes arrived and the
            // multishot receive ended (io_uring_prep_recv_multishot(3));
            // compio reports it as ResourceBusy and re-arms on the next poll.
            Wake::Input(Some(Err(e))) if e.kind() == io::ErrorKind::ResourceBusy => {}
            Wake::Input(Some(Err(e))) => {
                end_with_error(&mut handler, &Error::Io(e));
                break;
            }
            Wake::Input(None) => conn.handle_eof(),
            Wake::Timer => conn.handle_timeout(Instant::now()),
        }
    }
    Box::pin(finish(input, &mut writer, &mut conn, &mut out)).await;
}

/// What ended a wait.
enum Wake {
    /// A receive: bytes, an error, or `None` at end of stream.
    Input(Option<io::Result<compio::driver::BufferRef>>),
    /// The core's deadline (`Connection::poll_timeout`) passed.
    Timer,
}

/// Waits for the next receive, at most until the core's next deadline
/// (keepalive, idle and close timers).
async fn wait(mut input: Input<'_>, conn: &mut Connection) -> Wake {
    let now = Instant::now();
    match conn.poll_timeout(now) {
        None => Wake::Input(input.next().await),
        Some(deadline) => {
            let left = deadline.saturating_duration_since(now);
            // `next` is cancel-safe: the receive stays armed in the stream.
            // Boxed: only connections with a timer running pay for it.
            match Box::pin(compio::time::timeout(left, input.next())).await {
                Ok(next) => Wake::Input(next),
                Err(_) => Wake::Timer,
            }
        }
    }
}

/// Reads the upgrade request, answers it, and returns the open connection;
/// `None` if the client went away, timed out or was refused (and told why).
async fn handshake(
    mut input: Input<'_>,
    writer: &mut &TcpStream,
    config: Arc<Config>,
) -> Option<Connection> {
    let mut handshake = ServerHandshake::new(&config);
    let read = async {
        loop {
            match input.next().await {
                Some(Ok(received)) => match handshake.feed(&received) {
                    Ok(Some(request)) => return Ok(request),
                    Ok(None) => {}
                    Err(rejection) => return Err(Some(rejection)),
                },
                Some(Err(e)) if e.kind() == io::ErrorKind::ResourceBusy => {}
                Some(Err(_)) | None => return Err(None),
            }
        }
    };
    let request = match compio::time::timeout(HANDSHAKE_TIMEOUT, read).await {
        Ok(Ok(request)) => request,
        Ok(Err(Some(rejection))) => {
            refuse(writer, rejection).await;
            return None;
        }
        Ok(Err(None)) | Err(_) => return None,
    };
    let accepted = match request.accept(Accept::default(), &config) {
        Ok(accepted) => accepted,
        Err(rejection) => {
            refuse(writer, rejection).await;
            return None;
        }
    };
    let BufResult(written, _) = writer.write_all(accepted.response()).await;
    written.ok()?;
    let negotiated = accepted.negotiated().clone();
    Some(Connection::with_negotiated(
        Role::Server,
        config,
        negotiated,
        accepted.leftover(),
    ))
}

/// Answers a refused upgrade with its HTTP status and ends the stream.
async fn refuse(writer: &mut &TcpStream, rejection: Rejection) {
    let _ = writer.write_all(rejection.to_response()).await;
    let _ = writer.shutdown().await;
}

/// Writes all pending output: each piece copied into the owned `out` buffer
/// and sent, one send in flight.
async fn write_output(
    writer: &mut &TcpStream,
    conn: &mut Connection,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    loop {
        let pending = conn.pending_output();
        if pending.is_empty() {
            return Ok(());
        }
        let mut buf = std::mem::take(out);
        buf.clear();
        buf.extend_from_slice(pending);
        let n = buf.len();
        let BufResult(written, buf) = writer.write_all(buf).await;
        *out = buf;
        written?;
        conn.consume_output(n);
    }
}

/// Ends the transport without losing the last frame (RFC 6455 §7.1.1), step
/// by step as the core says (`Connection::close_step`), each step bounded by
/// the core's deadline.
async fn finish(
    mut input: Input<'_>,
    writer: &mut &TcpStream,
    conn: &mut Connection,
    out: &mut Vec<u8>,
) {
    if conn.state() != State::Closed {
        // The transport failed while the connection was open: nothing more
        // is worth sending or waiting for.
        conn.abort();
    }
    loop {
        let step = match conn.close_step() {
            None | Some(CloseStep::Release) => return,
            Some(step) => step,
        };
        let now = Instant::now();
        let left = conn
            .poll_timeout(now)
            .map_or(conn.config().close_timeout, |deadline| {
                deadline.saturating_duration_since(now)
            });
        let done = match step {
            CloseStep::Flush => compio::time::timeout(left, write_output(writer, conn, out))
                .await
                .map(|written| written.is_ok()),
            CloseStep::ShutdownWrite => {
                // Failures do not matter here (`CloseStep::ShutdownWrite`).
                let _ = compio::time::timeout(left, writer.shutdown()).await;
                Ok(true)
            }
            CloseStep::Drain => match compio::time::timeout(left, input.next()).await {
                Ok(Some(Ok(received))) => {
                    conn.feed(&received);
                    Ok(true)
                }
                Ok(Some(Err(e))) if e.kind() == io::ErrorKind::ResourceBusy => Ok(true),
                Ok(Some(Err(_))) => Ok(false),
                Ok(None) => {
                    conn.handle_eof();
                    Ok(true)
                }
                Err(elapsed) => Err(elapsed),
            },
            CloseStep::Release => return,
        };
        match done {
            Ok(true) => {}
            Ok(false) => conn.abort(),
            Err(_) => conn.handle_timeout(Instant::now()),
        }
    }
}
