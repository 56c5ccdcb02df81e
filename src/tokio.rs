//! Tokio adapter: runs a [`Connection`] over any
//! `AsyncRead + AsyncWrite + Unpin` (a `TcpStream`, a TLS stream, hyper's
//! upgraded connection).
//!
//! Like [`crate::blocking`], this file only moves bytes and runs timers;
//! the protocol lives in the core. One task owns the socket and drives the
//! connection — either [`WebSocket::serve`] with a [`Handler`], or a loop
//! around [`WebSocket::recv`]. Any number of other tasks send through a
//! cloneable [`Handle`] into a queue bounded in bytes; the owning task
//! wakes, encodes what is queued and writes everything pending in one
//! `write`.
//!
//! Memory: while a connection waits for input with nothing half-received
//! it holds no read or write buffer. It reads through a per-thread scratch
//! buffer and borrows its own buffers from a per-thread pool while
//! messages flow, so steady traffic does not allocate per message and idle
//! connections cost only their fixed state.
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
//! # async fn run() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
//! loop {
//!     let (stream, _) = listener.accept().await?;
//!     ::tokio::spawn(async move {
//!         if let Ok(ws) = chito::tokio::Builder::new(stream).accept().await {
//!             ws.serve(&mut Echo).await;
//!         }
//!     });
//! }
//! # }
//! ```

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use ::tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use ::tokio::net::TcpStream;
use ::tokio::sync::Notify;
use ::tokio::time::Sleep;

use crate::close::CloseCode;
use crate::config::{Config, Overflow};
use crate::connection::{Connection, Event, Message, OwnedEvent, Role, Sender};
use crate::error::{Error, Timeout, UsageError};
use crate::handler::{dispatch, end_with_error, Flow, Handler};
use crate::handshake::{
    Accept, ClientHandshake, ClientRequest, Rejection, RequestError, ServerHandshake,
    UpgradeRequest, UpgradeResponse, WsUrl,
};

// ---- per-thread scratch buffer and buffer pool ---------------------------

/// Reads of idle connections land here first, so waiting costs no buffer.
const SCRATCH_SIZE: usize = 64 * 1024;
/// Buffers larger than this are freed rather than pooled.
const POOL_MAX_BUFFER: usize = 16 << 20;
/// Bytes each per-thread pool keeps at most (large messages reuse their
/// big buffers instead of regrowing them; idle memory stays bounded).
const POOL_MAX_BYTES: usize = 32 << 20;
/// Buffers kept per pool per thread.
const POOL_MAX_COUNT: usize = 512;
/// Handle messages are encoded into the connection only while less than
/// this much output waits, so the queue, not the output buffer, absorbs
/// bursts and backpressure stays visible to senders.
const OUTPUT_HIGH_WATER: usize = 256 * 1024;

/// A per-thread free list of buffers.
#[derive(Default)]
struct Pool {
    buffers: Vec<Vec<u8>>,
    bytes: usize,
}

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Input buffers keep their initialised length, so reuse never zero-fills.
    static INPUT_POOL: RefCell<Pool> = RefCell::new(Pool::default());
    static OUTPUT_POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

fn pool_take(input: bool) -> Option<Vec<u8>> {
    let take = |pool: &RefCell<Pool>| {
        let mut pool = pool.borrow_mut();
        let buf = pool.buffers.pop()?;
        pool.bytes -= buf.capacity();
        Some(buf)
    };
    if input {
        INPUT_POOL.with(take)
    } else {
        OUTPUT_POOL.with(take)
    }
}

/// Keeps a buffer for reuse. The connection hands back input buffers
/// filled to capacity (initialised) and other buffers empty.
fn pool_give(buf: Vec<u8>) {
    let capacity = buf.capacity();
    if capacity == 0 || capacity > POOL_MAX_BUFFER {
        return;
    }
    let input = !buf.is_empty() && buf.len() == capacity;
    let give = |pool: &RefCell<Pool>| {
        let mut pool = pool.borrow_mut();
        if pool.buffers.len() < POOL_MAX_COUNT && pool.bytes + capacity <= POOL_MAX_BYTES {
            pool.bytes += capacity;
            pool.buffers.push(buf);
        }
    };
    if input {
        INPUT_POOL.with(give);
    } else {
        OUTPUT_POOL.with(give);
    }
}

/// Gives an input and an output buffer from the pools to a connection that
/// has none.
fn provide_buffers(conn: &mut Connection) {
    let (input, output) = conn.has_buffers();
    if !input {
        if let Some(buf) = pool_take(true) {
            if let Some(back) = conn.provide_input_buffer(buf) {
                pool_give(back);
            }
        }
    }
    if !output {
        if let Some(buf) = pool_take(false) {
            if let Some(back) = conn.provide_output_buffer(buf) {
                pool_give(back);
            }
        }
    }
}

/// Reads once from `stream` into `conn`. A connection with a frame half
/// received reads straight into its own buffer; an idle one reads into the
/// per-thread scratch buffer and, when the read would block, gives its
/// buffers back to the pool.
fn poll_read_into<S: AsyncRead + Unpin>(
    stream: &mut S,
    conn: &mut Connection,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if conn.input_pending() {
        provide_buffers(conn);
        let mut buf = ReadBuf::new(conn.read_buf());
        return match Pin::new(stream).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len();
                conn.commit_read(n);
                Poll::Ready(Ok(n))
            }
            other => other.map(|r| r.map(|()| 0)),
        };
    }
    let polled = SCRATCH.with(|cell| {
        let mut scratch = cell.borrow_mut();
        if scratch.len() < SCRATCH_SIZE {
            scratch.resize(SCRATCH_SIZE, 0);
        }
        let mut buf = ReadBuf::new(&mut scratch[..]);
        match Pin::new(stream).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => {
                let filled = buf.filled();
                if !filled.is_empty() {
                    provide_buffers(conn);
                    conn.feed(filled);
                }
                Poll::Ready(Ok(filled.len()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    });
    if polled.is_pending() {
        conn.recycle_idle_buffers(&mut pool_give);
    }
    polled
}

/// Writes everything the connection has pending.
fn poll_write_output<S: AsyncWrite + Unpin>(
    stream: &mut S,
    conn: &mut Connection,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    while !conn.pending_output().is_empty() {
        // Header and payload of a message sent from the input buffer are
        // separate pieces: one vectored write takes them all.
        let mut slices = [io::IoSlice::new(&[]); 3];
        let n = conn.pending_output_vectored(&mut slices);
        let written = if n > 1 && stream.is_write_vectored() {
            Pin::new(&mut *stream).poll_write_vectored(cx, &slices[..n])
        } else {
            Pin::new(&mut *stream).poll_write(cx, conn.pending_output())
        };
        match written {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) => conn.consume_output(n),
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
    }
    Pin::new(stream).poll_flush(cx)
}

// ---- the outbound queue shared with handles ------------------------------

/// What other tasks queue for a connection.
#[derive(Debug)]
enum Outgoing {
    Text(String),
    Binary(Vec<u8>),
    Shared(SharedMessage),
    Ping(Vec<u8>),
    Close(CloseCode, String),
}

impl From<Message<'_>> for Outgoing {
    /// Copies the message for the queue; text stays `String`, so it is not
    /// validated again when sent.
    fn from(message: Message<'_>) -> Self {
        match message {
            Message::Text(text) => Outgoing::Text(text.to_owned()),
            Message::Binary(data) => Outgoing::Binary(data.to_vec()),
        }
    }
}

impl Outgoing {
    fn cost(&self) -> usize {
        match self {
            Outgoing::Text(text) => text.len() + 14,
            Outgoing::Binary(data) | Outgoing::Ping(data) => data.len() + 14,
            Outgoing::Shared(shared) => shared.len() + 14,
            Outgoing::Close(_, reason) => reason.len() + 8,
        }
    }
}

/// One message for many connections, encoded at most once per wire form.
///
/// The payload is stored once. A server connection sends the frame built
/// for its negotiation, cached here on first use: the plain frame, or —
/// when it compresses without context takeover — the frame compressed once
/// for its window size. Only connections whose own compression keeps
/// context (or clients, which mask every frame) encode the message
/// themselves, from the shared payload. Cloning is a reference count.
#[derive(Debug, Clone)]
pub struct SharedMessage {
    inner: Arc<SharedInner>,
}

#[derive(Debug)]
struct SharedInner {
    payload: SharedPayload,
    plain: OnceLock<Box<[u8]>>,
    /// Frames compressed without context, by window bits 9..=15; `None`
    /// if compression failed (the plain frame is used then).
    #[cfg(feature = "deflate")]
    compressed: [OnceLock<Option<Box<[u8]>>>; 7],
    encodings: std::sync::atomic::AtomicUsize,
}

#[derive(Debug)]
enum SharedPayload {
    Text(Box<str>),
    Binary(Box<[u8]>),
}

impl SharedMessage {
    /// Copies `message` once into a shareable message.
    pub fn new(message: Message<'_>) -> Self {
        match message {
            Message::Text(text) => SharedMessage::from_payload(SharedPayload::Text(text.into())),
            Message::Binary(data) => {
                SharedMessage::from_payload(SharedPayload::Binary(data.into()))
            }
        }
    }

    /// A shareable text message, taking the string without copying it.
    pub fn text(text: String) -> Self {
        SharedMessage::from_payload(SharedPayload::Text(text.into_boxed_str()))
    }

    /// A shareable binary message, taking the bytes without copying them.
    pub fn binary(data: Vec<u8>) -> Self {
        SharedMessage::from_payload(SharedPayload::Binary(data.into_boxed_slice()))
    }

    fn from_payload(payload: SharedPayload) -> Self {
        SharedMessage {
            inner: Arc::new(SharedInner {
                payload,
                plain: OnceLock::new(),
                #[cfg(feature = "deflate")]
                compressed: Default::default(),
                encodings: std::sync::atomic::AtomicUsize::new(0),
            }),
        }
    }

    /// The message.
    pub fn message(&self) -> Message<'_> {
        match &self.inner.payload {
            SharedPayload::Text(text) => Message::Text(text),
            SharedPayload::Binary(data) => Message::Binary(data),
        }
    }

    /// The payload bytes.
    pub fn payload(&self) -> &[u8] {
        match &self.inner.payload {
            SharedPayload::Text(text) => text.as_bytes(),
            SharedPayload::Binary(data) => data,
        }
    }

    /// The payload length in bytes.
    pub fn len(&self) -> usize {
        self.payload().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many frames were encoded from this message so far (each wire
    /// form once, however many connections it went to).
    pub fn encodings(&self) -> usize {
        self.inner.encodings.load(Ordering::Relaxed)
    }

    fn opcode(&self) -> crate::frame::OpCode {
        match self.inner.payload {
            SharedPayload::Text(_) => crate::frame::OpCode::Text,
            SharedPayload::Binary(_) => crate::frame::OpCode::Binary,
        }
    }

    /// The unmasked, uncompressed server frame.
    fn plain_frame(&self) -> &[u8] {
        self.inner.plain.get_or_init(|| {
            self.inner.encodings.fetch_add(1, Ordering::Relaxed);
            encode_server_frame(self.opcode(), false, self.payload())
        })
    }

    /// The server frame compressed without context with `bits` of window.
    #[cfg(feature = "deflate")]
    fn compressed_frame(&self, bits: u8, level: u32) -> Option<&[u8]> {
        let slot = self.inner.compressed.get(usize::from(
            bits.saturating_sub(crate::deflate::MIN_WINDOW_BITS),
        ))?;
        slot.get_or_init(|| {
            self.inner.encodings.fetch_add(1, Ordering::Relaxed);
            let mut deflater = crate::deflate::Deflater::new(bits, true, level).ok()?;
            let mut body = Vec::with_capacity(self.len() / 2 + 16);
            deflater.compress(self.payload(), true, &mut body).ok()?;
            Some(encode_server_frame(self.opcode(), true, &body))
        })
        .as_deref()
    }
}

/// A complete unmasked frame with FIN set.
fn encode_server_frame(opcode: crate::frame::OpCode, rsv1: bool, payload: &[u8]) -> Box<[u8]> {
    let mut header = crate::frame::FrameHeader::new(opcode, payload.len() as u64);
    header.rsv1 = rsv1;
    let mut head = [0u8; crate::frame::MAX_HEADER_LEN];
    let head_len = header.encode(&mut head);
    let mut frame = Vec::with_capacity(head_len + payload.len());
    frame.extend_from_slice(head.get(..head_len).unwrap_or_default());
    frame.extend_from_slice(payload);
    frame.into_boxed_slice()
}

/// Queues `shared` on `conn` in the wire form its negotiation allows.
fn send_shared(conn: &mut Connection, shared: &SharedMessage) -> Result<(), UsageError> {
    if conn.role() == Role::Client {
        // A client masks every frame with a fresh key: nothing to share.
        return conn.send(shared.message());
    }
    #[cfg(feature = "deflate")]
    if let Some(params) = conn.negotiated().deflate {
        let (threshold, level) = conn
            .config()
            .deflate
            .as_ref()
            .map_or((0, 1), |d| (d.threshold, d.effective_level()));
        if shared.len() >= threshold {
            if !params.server_no_context_takeover {
                // Our compressor keeps context: a frame compressed elsewhere
                // would desynchronise the peer's window. Compress here.
                return conn.send(shared.message());
            }
            if let Some(frame) = shared.compressed_frame(params.server_max_window_bits, level) {
                return conn.send_encoded_frame(frame);
            }
        }
    }
    conn.send_encoded_frame(shared.plain_frame())
}

#[derive(Debug, Default)]
struct OutboxState {
    queue: VecDeque<Outgoing>,
    /// Bytes queued plus bytes encoded but not yet written.
    buffered: usize,
    /// Wakes the task that owns the socket.
    driver: Option<Waker>,
    /// No more messages are accepted.
    closed: bool,
    /// The connection must end now (shutdown deadline passed).
    aborted: bool,
}

#[derive(Debug)]
struct Outbox {
    state: Mutex<OutboxState>,
    /// Wakes senders waiting for queue space.
    space: Notify,
    max_buffered: usize,
    overflow: Overflow,
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, OutboxState> {
        // A panic while holding this lock cannot leave the state
        // inconsistent (every update is a single assignment or push).
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn wake_driver(state: &mut OutboxState) {
        if let Some(waker) = state.driver.take() {
            waker.wake();
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.space.notify_waiters();
    }
}

/// Why a [`Handle`] could not queue a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The queue holds [`Config::max_queued_bytes`] already
    /// ([`Overflow::Reject`]); nothing was queued.
    Full,
    /// The queue was full and the connection is being closed as a slow
    /// consumer ([`Overflow::Close`]).
    ClosedSlowConsumer,
    /// The connection is closing or closed.
    Closed,
    /// A ping over 125 bytes or a close reason over 123 bytes.
    TooLong,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SendError::Full => "outbound queue full",
            SendError::ClosedSlowConsumer => "outbound queue full: closing the slow consumer",
            SendError::Closed => "connection closed",
            SendError::TooLong => "control payload too long",
        })
    }
}

impl std::error::Error for SendError {}

/// A cheap, cloneable sender for one connection, usable from any task.
///
/// Messages are copied into the connection's queue, which is bounded by
/// [`Config::max_queued_bytes`] (queued plus encoded-but-unwritten bytes).
/// When it is full, [`Handle::try_send`] applies [`Config::queue_overflow`]
/// and [`Handle::send`] waits for room. The task driving the connection
/// encodes and writes queued messages in order.
#[derive(Debug, Clone)]
pub struct Handle {
    outbox: Arc<Outbox>,
}

impl Handle {
    /// Queues a message without waiting.
    ///
    /// # Errors
    /// [`SendError::Full`] or [`SendError::ClosedSlowConsumer`] when the
    /// queue is full (per [`Config::queue_overflow`]); [`SendError::Closed`].
    pub fn try_send(&self, message: Message<'_>) -> Result<(), SendError> {
        self.push(Outgoing::from(message))
    }

    /// Queues a message, waiting while the queue is full.
    ///
    /// # Errors
    /// [`SendError::Closed`] if the connection ends first.
    pub async fn send(&self, message: Message<'_>) -> Result<(), SendError> {
        let mut item = Outgoing::from(message);
        loop {
            let notified = self.outbox.space.notified();
            ::tokio::pin!(notified);
            notified.as_mut().enable();
            match self.push_or_return(item) {
                Ok(()) => return Ok(()),
                Err((SendError::Full, back)) => item = back,
                Err((error, _)) => return Err(error),
            }
            notified.await;
        }
    }

    /// Queues a [`SharedMessage`] without waiting: a reference count, no
    /// copy; the frame is encoded at most once per wire form across all
    /// the connections it is sent to.
    ///
    /// # Errors
    /// As [`Handle::try_send`].
    pub fn try_send_shared(&self, message: &SharedMessage) -> Result<(), SendError> {
        self.push(Outgoing::Shared(message.clone()))
    }

    /// Queues a ping.
    ///
    /// # Errors
    /// As [`Handle::try_send`], and [`SendError::TooLong`] over 125 bytes.
    pub fn ping(&self, payload: &[u8]) -> Result<(), SendError> {
        if payload.len() > crate::frame::MAX_CONTROL_PAYLOAD {
            return Err(SendError::TooLong);
        }
        self.push(Outgoing::Ping(payload.to_vec()))
    }

    /// Asks the connection to start the closing handshake. Messages queued
    /// before it are sent first; nothing can be queued after it.
    ///
    /// # Errors
    /// [`SendError::Closed`] if already closing; [`SendError::TooLong`].
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        if reason.len() > crate::close::MAX_CLOSE_REASON {
            return Err(SendError::TooLong);
        }
        let mut state = self.outbox.lock();
        if state.closed {
            return Err(SendError::Closed);
        }
        state
            .queue
            .push_back(Outgoing::Close(code, reason.to_owned()));
        state.closed = true;
        Outbox::wake_driver(&mut state);
        Ok(())
    }

    /// Bytes queued or encoded but not yet written to the transport.
    pub fn buffered_amount(&self) -> usize {
        self.outbox.lock().buffered
    }

    /// True once the connection no longer accepts messages.
    pub fn is_closed(&self) -> bool {
        self.outbox.lock().closed
    }

    /// Whether two handles reach the same connection.
    pub fn same_connection(&self, other: &Handle) -> bool {
        Arc::ptr_eq(&self.outbox, &other.outbox)
    }

    fn push(&self, item: Outgoing) -> Result<(), SendError> {
        self.push_or_return(item).map_err(|(error, _)| error)
    }

    fn push_or_return(&self, item: Outgoing) -> Result<(), (SendError, Outgoing)> {
        let mut state = self.outbox.lock();
        if state.closed {
            return Err((SendError::Closed, item));
        }
        let cost = item.cost();
        if state.buffered + cost > self.outbox.max_buffered && state.buffered > 0 {
            return match self.outbox.overflow {
                Overflow::Reject => Err((SendError::Full, item)),
                Overflow::Close(code) => {
                    state.queue.clear();
                    state
                        .queue
                        .push_back(Outgoing::Close(code, "slow consumer".to_owned()));
                    state.closed = true;
                    Outbox::wake_driver(&mut state);
                    drop(state);
                    self.outbox.space.notify_waiters();
                    Err((SendError::ClosedSlowConsumer, item))
                }
            };
        }
        state.buffered += cost;
        state.queue.push_back(item);
        Outbox::wake_driver(&mut state);
        Ok(())
    }
}

// ---- graceful shutdown ---------------------------------------------------

/// Stops a server gracefully: new handshakes are refused (503), every live
/// connection is sent close 1001, and whatever has not finished by the
/// deadline is dropped.
///
/// Give it to each [`Builder`] with [`Builder::shutdown`], stop your accept
/// loop when [`Shutdown::triggered`] resolves, and call
/// [`Shutdown::shutdown`].
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    inner: Arc<ShutdownInner>,
}

#[derive(Debug, Default)]
struct ShutdownInner {
    triggered: AtomicBool,
    started: Notify,
    next_id: AtomicU64,
    live: Mutex<HashMap<u64, Handle>>,
    all_gone: Notify,
}

/// Keeps a connection counted as live until dropped.
#[derive(Debug)]
struct Registration {
    inner: Arc<ShutdownInner>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut live = self.inner.live.lock().unwrap_or_else(|p| p.into_inner());
        live.remove(&self.id);
        if live.is_empty() {
            self.inner.all_gone.notify_waiters();
        }
    }
}

impl Shutdown {
    /// A shutdown coordinator with no connections.
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// Whether [`Shutdown::shutdown`] has been called.
    pub fn is_triggered(&self) -> bool {
        self.inner.triggered.load(Ordering::Acquire)
    }

    /// Resolves once shutdown starts: select on it in the accept loop.
    pub async fn triggered(&self) {
        let notified = self.inner.started.notified();
        ::tokio::pin!(notified);
        notified.as_mut().enable();
        if self.is_triggered() {
            return;
        }
        notified.await;
    }

    /// Connections currently open.
    pub fn live_connections(&self) -> usize {
        self.inner
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Starts shutdown: refuses new handshakes, sends close 1001 ("going
    /// away") to every live connection, waits up to `grace` for them to
    /// finish, then makes the rest end at once. Returns how many had to be
    /// dropped.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.inner.triggered.store(true, Ordering::Release);
        self.inner.started.notify_waiters();
        let handles: Vec<Handle> = self.lock_live().values().cloned().collect();
        for handle in &handles {
            let _ = handle.close(CloseCode::GoingAway, "server shutting down");
        }
        let deadline = ::tokio::time::Instant::now() + grace;
        loop {
            let gone = self.inner.all_gone.notified();
            ::tokio::pin!(gone);
            gone.as_mut().enable();
            if self.lock_live().is_empty() {
                return 0;
            }
            if ::tokio::time::timeout_at(deadline, gone).await.is_err() {
                break;
            }
        }
        let rest: Vec<Handle> = self.lock_live().values().cloned().collect();
        for handle in &rest {
            let mut state = handle.outbox.lock();
            state.aborted = true;
            state.closed = true;
            Outbox::wake_driver(&mut state);
        }
        rest.len()
    }

    fn lock_live(&self) -> MutexGuard<'_, HashMap<u64, Handle>> {
        self.inner.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn register(&self, handle: Handle) -> Registration {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock_live().insert(id, handle);
        Registration {
            inner: self.inner.clone(),
            id,
        }
    }
}

// ---- handshake -------------------------------------------------------------

/// Opening handshake over an async stream, for either role.
#[derive(Debug)]
pub struct Builder<S> {
    stream: S,
    config: Arc<Config>,
    shutdown: Option<Shutdown>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Builder<S> {
    /// A builder with the default [`Config`].
    pub fn new(stream: S) -> Self {
        Builder {
            stream,
            config: Config::shared_default(),
            shutdown: None,
        }
    }

    /// Sets the limits and timers. Pass an `Arc<Config>` to share one
    /// copy among many connections.
    pub fn config(mut self, config: impl Into<Arc<Config>>) -> Self {
        self.config = config.into();
        self
    }

    /// Counts the connection in `shutdown`, which then refuses it (503) if
    /// shutdown has started and can close it later.
    pub fn shutdown(mut self, shutdown: &Shutdown) -> Self {
        self.shutdown = Some(shutdown.clone());
        self
    }

    /// Server side: accepts any valid upgrade without a subprotocol.
    ///
    /// # Errors
    /// [`Error::Rejected`] (the HTTP refusal was sent), [`Error::Timeout`]
    /// after [`Config::handshake_timeout`], [`Error::Io`].
    pub async fn accept(self) -> Result<WebSocket<S>, Error> {
        self.accept_with(|_| Ok(Accept::default())).await
    }

    /// Server side with a hook that inspects the request (path, origin,
    /// cookies, authorization) and chooses a subprotocol and extra headers,
    /// or refuses with an HTTP status.
    ///
    /// # Errors
    /// As [`Builder::accept`].
    pub async fn accept_with<F>(self, inspect: F) -> Result<WebSocket<S>, Error>
    where
        F: FnOnce(&UpgradeRequest) -> Result<Accept, Rejection>,
    {
        // Boxed: the handshake's state is large and short-lived; it must not
        // size every connection's task for its whole life.
        Box::pin(self.accept_inner(inspect)).await
    }

    async fn accept_inner<F>(mut self, inspect: F) -> Result<WebSocket<S>, Error>
    where
        F: FnOnce(&UpgradeRequest) -> Result<Accept, Rejection>,
    {
        let timeout = self.config.handshake_timeout;
        let mut handshake = ServerHandshake::new(&self.config);
        let mut chunk = Vec::new();
        let fed = ::tokio::time::timeout(timeout, async {
            loop {
                if read_more(&mut self.stream, &mut chunk).await? == 0 {
                    return Err(eof_during_handshake());
                }
                match handshake.feed(&chunk) {
                    Ok(Some(request)) => return Ok(Ok(request)),
                    Ok(None) => {}
                    Err(rejection) => return Ok(Err(rejection)),
                }
            }
        })
        .await
        .map_err(|_| Error::Timeout(Timeout::Handshake))??;
        let request = match fed {
            Ok(request) => request,
            Err(rejection) => return Err(self.refuse(rejection).await),
        };
        if self.shutdown.as_ref().is_some_and(Shutdown::is_triggered) {
            return Err(self
                .refuse(Rejection::new(503, "server shutting down"))
                .await);
        }
        let outcome = inspect(&request).and_then(|accept| request.accept(accept, &self.config));
        let accepted = match outcome {
            Ok(accepted) => accepted,
            Err(rejection) => return Err(self.refuse(rejection).await),
        };
        self.stream.write_all(&accepted.response()).await?;
        self.stream.flush().await?;
        let conn = Connection::with_negotiated(
            Role::Server,
            self.config,
            accepted.negotiated().clone(),
            accepted.leftover(),
        );
        let mut ws = WebSocket::from_parts(self.stream, conn);
        if let Some(shutdown) = &self.shutdown {
            ws.registration = Some(shutdown.register(ws.handle()));
        }
        Ok(ws)
    }

    /// Client side: sends the request and verifies the response.
    ///
    /// # Errors
    /// [`Error::Request`] if `request` is invalid (nothing was sent),
    /// [`Error::Handshake`], [`Error::Timeout`], [`Error::Io`].
    pub async fn connect(
        self,
        request: &ClientRequest,
    ) -> Result<(WebSocket<S>, UpgradeResponse), Error> {
        Box::pin(self.connect_inner(request)).await
    }

    async fn connect_inner(
        mut self,
        request: &ClientRequest,
    ) -> Result<(WebSocket<S>, UpgradeResponse), Error> {
        let (mut handshake, bytes) = ClientHandshake::new(request, &self.config)?;
        let timeout = self.config.handshake_timeout;
        let mut chunk = Vec::new();
        let connected = ::tokio::time::timeout(timeout, async {
            self.stream.write_all(&bytes).await?;
            self.stream.flush().await?;
            loop {
                if read_more(&mut self.stream, &mut chunk).await? == 0 {
                    return Err(eof_during_handshake());
                }
                if let Some(connected) = handshake.feed(&chunk)? {
                    return Ok::<_, Error>(connected);
                }
            }
        })
        .await
        .map_err(|_| Error::Timeout(Timeout::Handshake))??;
        let conn = Connection::with_negotiated(
            Role::Client,
            self.config,
            connected.negotiated().clone(),
            connected.leftover(),
        );
        Ok((
            WebSocket::from_parts(self.stream, conn),
            connected.into_response(),
        ))
    }

    async fn refuse(&mut self, rejection: Rejection) -> Error {
        let _ = self.stream.write_all(&rejection.to_response()).await;
        let _ = self.stream.shutdown().await;
        Error::Rejected(rejection)
    }
}

/// Reads the next piece of an HTTP head into `chunk`, replacing what it
/// held (a heap buffer, not an array: an array would be part of every
/// connection's task).
async fn read_more<S: AsyncRead + Unpin>(
    stream: &mut S,
    chunk: &mut Vec<u8>,
) -> Result<usize, Error> {
    chunk.clear();
    chunk.reserve(1024);
    Ok(stream.read_buf(chunk).await?)
}

fn eof_during_handshake() -> Error {
    Error::Io(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "connection closed during the opening handshake",
    ))
}

/// Connects to a `ws://` URL over TCP and performs the client handshake.
///
/// # Errors
/// [`Error::Request`] for a bad URL or a `wss://` URL (open a TLS stream
/// and use [`Builder::connect`]), [`Error::Handshake`] for a refused
/// handshake; [`Error::Io`].
pub async fn connect(url: &str) -> Result<(WebSocket<TcpStream>, UpgradeResponse), Error> {
    connect_with(url, Config::default()).await
}

/// [`connect`] with a [`Config`].
///
/// # Errors
/// As [`connect`].
pub async fn connect_with(
    url: &str,
    config: Config,
) -> Result<(WebSocket<TcpStream>, UpgradeResponse), Error> {
    let url = WsUrl::parse(url).map_err(RequestError::InvalidUrl)?;
    if url.secure {
        return Err(Error::Request(RequestError::TlsRequired));
    }
    let stream = TcpStream::connect(url.socket_addr_string()).await?;
    stream.set_nodelay(true)?;
    Builder::new(stream)
        .config(config)
        .connect(&ClientRequest::from_url(&url))
        .await
}

// ---- the open connection -------------------------------------------------

/// What woke the driving task.
enum Wake {
    Read(io::Result<usize>),
    Written,
    WriteFailed(io::Error),
    Queued,
    Timer,
    Aborted,
}

/// Whether [`WebSocket::drive`] also reads and takes queued messages.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Drive {
    /// Write, read, take the queue, run timers.
    Serve,
    /// Write and run timers only.
    Flush,
}

/// An open WebSocket over an async stream.
#[derive(Debug)]
pub struct WebSocket<S> {
    stream: S,
    /// Boxed so the value moved into `serve` (and any copy the caller's
    /// future keeps) is a few words, not the whole protocol state.
    conn: Box<Connection>,
    /// Created by the first [`WebSocket::handle`]: a connection nobody
    /// else sends to carries no queue.
    outbox: OnceLock<Arc<Outbox>>,
    /// Allocated the first time a timer is needed, then reset in place.
    timer: Option<Pin<Box<Sleep>>>,
    registration: Option<Registration>,
    transport_done: bool,
}

impl<S> Drop for WebSocket<S> {
    fn drop(&mut self) {
        if let Some(outbox) = self.outbox.get() {
            outbox.close();
        }
        self.conn.recycle_idle_buffers(&mut pool_give);
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Wraps a stream whose handshake was done elsewhere (hyper's upgraded
    /// connection, say), with the connection built for it
    /// ([`Connection::with_negotiated`]).
    pub fn from_parts(stream: S, mut conn: Connection) -> Self {
        // Every write below is vectored, and output is written before more
        // input is read: a large echo can go out from the input buffer.
        conn.enable_output_from_input(crate::connection::OUTPUT_FROM_INPUT_MIN);
        WebSocket {
            stream,
            conn: Box::new(conn),
            outbox: OnceLock::new(),
            timer: None,
            registration: None,
            transport_done: false,
        }
    }

    /// A cloneable sender other tasks can use while this task drives the
    /// connection.
    pub fn handle(&self) -> Handle {
        let outbox = self.outbox.get_or_init(|| {
            Arc::new(Outbox {
                state: Mutex::new(OutboxState::default()),
                space: Notify::new(),
                max_buffered: self.conn.config().max_queued_bytes,
                overflow: self.conn.config().queue_overflow,
            })
        });
        Handle {
            outbox: outbox.clone(),
        }
    }

    /// Splits into a reading half, which drives the connection (reads,
    /// timers, and writing what the writing half queues), and a writing
    /// half usable from any task. Keep a task calling [`ReadHalf::recv`].
    pub fn split(self) -> (ReadHalf<S>, WriteHalf) {
        let handle = self.handle();
        (ReadHalf { ws: self }, WriteHalf { handle })
    }

    /// The sans-IO connection.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// Waits for the next event and returns it owned.
    ///
    /// # Errors
    /// [`Error::Protocol`] (the close frame was sent), [`Error::Timeout`],
    /// [`Error::Io`], [`UsageError::Closed`] after the connection ended.
    pub async fn recv(&mut self) -> Result<OwnedEvent, Error> {
        let (event, _) = self.recv_event().await?;
        Ok(event.into_owned())
    }

    /// Waits for the next event and returns it borrowed, with a [`Sender`]
    /// for replies (written by the next `recv`, `send` or `flush`).
    ///
    /// # Errors
    /// As [`WebSocket::recv`].
    pub async fn recv_event(&mut self) -> Result<(Event<'_>, Sender<'_>), Error> {
        loop {
            match self.conn.prepare_event() {
                Ok(true) => break,
                Ok(false) => {}
                Err(error) => {
                    self.finish_transport().await;
                    return Err(error);
                }
            }
            if self.conn.is_closed() {
                self.finish_transport().await;
                return Err(Error::Usage(UsageError::Closed));
            }
            self.drain_queue();
            self.drive(Drive::Serve).await?;
        }
        if self.conn.is_closed() {
            self.finish_transport().await;
        }
        provide_buffers(&mut self.conn);
        match self.conn.next_event()? {
            Some(pair) => Ok(pair),
            None => Err(Error::Usage(UsageError::Closed)),
        }
    }

    /// Sends a message and writes it out.
    ///
    /// # Errors
    /// [`Error::Usage`] after close, [`Error::Io`].
    pub async fn send(&mut self, message: Message<'_>) -> Result<(), Error> {
        provide_buffers(&mut self.conn);
        self.conn.send(message)?;
        self.flush().await
    }

    /// Sends a text message.
    ///
    /// # Errors
    /// As [`WebSocket::send`].
    pub async fn send_text(&mut self, text: &str) -> Result<(), Error> {
        self.send(Message::Text(text)).await
    }

    /// Sends a binary message.
    ///
    /// # Errors
    /// As [`WebSocket::send`].
    pub async fn send_binary(&mut self, data: &[u8]) -> Result<(), Error> {
        self.send(Message::Binary(data)).await
    }

    /// Sends a ping.
    ///
    /// # Errors
    /// As [`WebSocket::send`], and over 125 bytes.
    pub async fn send_ping(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.conn.send_ping(payload)?;
        self.flush().await
    }

    /// Starts the closing handshake; keep calling [`WebSocket::recv`] until
    /// it returns the peer's close.
    ///
    /// # Errors
    /// As [`WebSocket::send`].
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.conn.close(code, reason)?;
        if let Some(outbox) = self.outbox.get() {
            outbox.close();
        }
        self.flush().await
    }

    /// Writes everything pending.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub async fn flush(&mut self) -> Result<(), Error> {
        while !self.conn.pending_output().is_empty() {
            self.drive(Drive::Flush).await?;
            if self.conn.is_closed() && !self.conn.should_linger() {
                // A timer expired while the peer was not reading: report it.
                self.conn.prepare_event()?;
                return Err(Error::Usage(UsageError::Closed));
            }
        }
        self.account_written();
        Ok(())
    }

    /// Runs `handler` until the connection ends: [`Handler::on_open`], a
    /// callback per event, [`Handler::on_close`] exactly once. Replies and
    /// [`Handle`] messages are written together, one `write` per round.
    // Not an `async fn`: its parameters would be stored twice in the
    // future (once as arguments, once as locals), and this future is the
    // bulk of every idle connection's task. The async block below uses the
    // captured `self` in place.
    #[allow(clippy::manual_async_fn)]
    pub fn serve<'h, H: Handler + ?Sized>(
        mut self,
        handler: &'h mut H,
    ) -> impl Future<Output = ()> + 'h
    where
        S: 'h,
    {
        async move {
            provide_buffers(&mut self.conn);
            handler.on_open(&mut self.conn.sender());
            loop {
                let flow = dispatch(&mut self.conn, handler);
                self.drain_queue();
                if flow == Flow::Ended {
                    break;
                }
                if let Err(error) = self.drive(Drive::Serve).await {
                    // Handled and dropped here: an `Error` kept alive
                    // across the await below would enlarge the future.
                    end_with_error(handler, &error);
                    break;
                }
            }
            self.finish_transport().await;
        }
    }

    /// Moves queued handle messages into the connection, in order, while
    /// the output buffer is below its high-water mark.
    fn drain_queue(&mut self) {
        let Some(outbox) = self.outbox.get() else {
            return;
        };
        let mut state = outbox.lock();
        if !state.queue.is_empty() {
            // An idle connection gave its buffers back; encode into a
            // pooled one, not a fresh allocation per message.
            provide_buffers(&mut self.conn);
        }
        while self.conn.buffered_amount() < OUTPUT_HIGH_WATER {
            let Some(item) = state.queue.pop_front() else {
                break;
            };
            let result = match &item {
                Outgoing::Text(text) => self.conn.send_text(text),
                Outgoing::Binary(data) => self.conn.send_binary(data),
                Outgoing::Shared(shared) => send_shared(&mut self.conn, shared),
                Outgoing::Ping(payload) => self.conn.send_ping(payload),
                Outgoing::Close(code, reason) => self.conn.close(*code, reason),
            };
            state.buffered = state.buffered.saturating_sub(item.cost());
            if result.is_err() {
                // The connection is closing: nothing more can be sent.
                state.closed = true;
                state.queue.clear();
                state.buffered = 0;
            }
        }
        state.buffered =
            state.queue.iter().map(Outgoing::cost).sum::<usize>() + self.conn.buffered_amount();
    }

    /// Updates the byte count senders see and wakes those waiting for room.
    fn account_written(&mut self) {
        let Some(outbox) = self.outbox.get() else {
            return;
        };
        let mut state = outbox.lock();
        let queued: usize = state.queue.iter().map(Outgoing::cost).sum();
        let before = state.buffered;
        state.buffered = queued + self.conn.buffered_amount();
        let freed = state.buffered < before;
        drop(state);
        if freed {
            outbox.space.notify_waiters();
        }
    }

    /// Writes pending output and, at the same time, waits for input,
    /// queued messages, a timer or a shutdown abort — so timers still fire
    /// while a peer is not reading. Input is read only while little output
    /// is pending: a peer that does not read stops being read from.
    ///
    /// Not an `async fn`, and the waiting is a `poll_fn` over one `&mut`:
    /// this future sits in every idle connection's task, so its state is
    /// kept to the closure's few words.
    fn drive(&mut self, mode: Drive) -> impl Future<Output = Result<(), Error>> + '_ {
        let timed = self.arm_timer();
        poll_fn(move |cx| {
            let wake = std::task::ready!(self.poll_wake(cx, mode, timed));
            Poll::Ready(self.apply_wake(wake))
        })
    }

    /// Points the timer at the connection's next deadline; false if no
    /// timer runs.
    fn arm_timer(&mut self) -> bool {
        // Most connections run no timer: skip the clock read (2% of the
        // server's time in a one-message-per-connection echo).
        if !self.conn.timers_active() {
            return false;
        }
        let Some(deadline) = self.conn.poll_timeout(Instant::now()) else {
            return false;
        };
        let deadline = ::tokio::time::Instant::from_std(deadline);
        match self.timer.as_mut() {
            Some(timer) => timer.as_mut().reset(deadline),
            None => self.timer = Some(Box::pin(::tokio::time::sleep_until(deadline))),
        }
        true
    }

    /// One poll of everything [`WebSocket::drive`] waits for.
    fn poll_wake(&mut self, cx: &mut Context<'_>, mode: Drive, timed: bool) -> Poll<Wake> {
        let WebSocket {
            stream,
            conn,
            outbox,
            timer,
            ..
        } = self;
        let mut written = false;
        if !conn.pending_output().is_empty() {
            match poll_write_output(stream, conn, cx) {
                Poll::Ready(Ok(())) => written = true,
                Poll::Ready(Err(e)) => return Poll::Ready(Wake::WriteFailed(e)),
                Poll::Pending => {}
            }
        }
        // Output still pointing into the input buffer is written before
        // reading more would force a copy of it.
        let room = conn.buffered_amount() < OUTPUT_HIGH_WATER && !conn.output_borrows_input();
        if let Some(outbox) = outbox.get() {
            let mut state = outbox.lock();
            if state.aborted {
                return Poll::Ready(Wake::Aborted);
            }
            if mode == Drive::Serve && room && !state.queue.is_empty() {
                return Poll::Ready(Wake::Queued);
            }
            if !state
                .driver
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                state.driver = Some(cx.waker().clone());
            }
        }
        if written {
            return Poll::Ready(Wake::Written);
        }
        if mode == Drive::Serve && room {
            if let Poll::Ready(result) = poll_read_into(stream, conn, cx) {
                return Poll::Ready(Wake::Read(result));
            }
        }
        if timed {
            if let Some(timer) = timer.as_mut() {
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Timer);
                }
            }
        }
        Poll::Pending
    }

    /// Acts on what woke [`WebSocket::drive`].
    fn apply_wake(&mut self, woke: Wake) -> Result<(), Error> {
        match woke {
            Wake::Read(Ok(0)) => self.conn.handle_eof(),
            Wake::Read(Ok(_)) | Wake::Queued => {}
            Wake::Written => self.account_written(),
            Wake::Read(Err(e)) | Wake::WriteFailed(e) => return Err(e.into()),
            Wake::Timer => self.conn.handle_timeout(Instant::now()),
            Wake::Aborted => {
                self.conn.abort();
                return Err(Error::Io(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "dropped at the shutdown deadline",
                )));
            }
        }
        Ok(())
    }

    /// Ends the transport after the connection closed: flush, half-close
    /// (the server first, RFC 6455 §7.1.1), and read until the peer closes
    /// too, within the close timeout and 1 MiB, so our last frame is not
    /// lost to a reset.
    async fn finish_transport(&mut self) {
        if self.transport_done {
            return;
        }
        self.transport_done = true;
        if let Some(outbox) = self.outbox.get() {
            outbox.close();
        }
        let timeout = self.conn.config().close_timeout;
        if self.conn.should_linger() {
            // Bounded: a peer that never reads cannot hold us here.
            let _ = Box::pin(::tokio::time::timeout(timeout, self.flush())).await;
        }
        if self.conn.role() == Role::Server || !self.conn.should_linger() {
            let _ = Box::pin(::tokio::time::timeout(timeout, self.stream.shutdown())).await;
        }
        if !self.conn.should_linger() {
            return;
        }
        // Boxed, with its scratch on the heap: this rare path must not
        // enlarge every connection's task.
        let stream = &mut self.stream;
        let _ = Box::pin(::tokio::time::timeout(timeout, async move {
            let mut scratch = vec![0u8; 4096];
            let mut drained = 0usize;
            while drained < 1 << 20 {
                match stream.read(&mut scratch).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => drained += n,
                }
            }
        }))
        .await;
        if self.conn.role() == Role::Client {
            let _ = self.stream.shutdown().await;
        }
    }
}

/// The reading half of a split [`WebSocket`]; it also drives the writes
/// queued through the [`WriteHalf`].
#[derive(Debug)]
pub struct ReadHalf<S> {
    ws: WebSocket<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> ReadHalf<S> {
    /// Waits for the next event. See [`WebSocket::recv`].
    ///
    /// # Errors
    /// As [`WebSocket::recv`].
    pub async fn recv(&mut self) -> Result<OwnedEvent, Error> {
        self.ws.recv().await
    }

    /// Waits for the next event, borrowed. See [`WebSocket::recv_event`].
    ///
    /// # Errors
    /// As [`WebSocket::recv`].
    pub async fn recv_event(&mut self) -> Result<(Event<'_>, Sender<'_>), Error> {
        self.ws.recv_event().await
    }
}

/// The writing half of a split [`WebSocket`]: a [`Handle`] whose `send`
/// waits for queue room. Clone it to send from several tasks.
#[derive(Debug, Clone)]
pub struct WriteHalf {
    handle: Handle,
}

impl WriteHalf {
    /// Queues a message, waiting while the queue is full.
    ///
    /// # Errors
    /// [`SendError::Closed`] once the connection ends.
    pub async fn send(&self, message: Message<'_>) -> Result<(), SendError> {
        self.handle.send(message).await
    }

    /// Starts the closing handshake. See [`Handle::close`].
    ///
    /// # Errors
    /// As [`Handle::close`].
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        self.handle.close(code, reason)
    }

    /// The underlying handle.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

#[cfg(test)]
mod size_guard {
    /// Every idle connection is a task holding these futures: a stack
    /// array or an unboxed handshake here costs every connection.
    #[test]
    fn per_connection_futures_stay_small() {
        fn size_of_future<F: std::future::Future>(_: &F) -> usize {
            std::mem::size_of::<F>()
        }
        struct Quiet;
        impl crate::Handler for Quiet {}
        let runtime = ::tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (a, b) = ::tokio::io::duplex(64);
            let ws = super::WebSocket::from_parts(
                a,
                crate::Connection::new(crate::Role::Server, crate::Config::shared_default()),
            );
            assert!(
                std::mem::size_of_val(&ws) <= 96,
                "WebSocket {}",
                std::mem::size_of_val(&ws)
            );
            let mut handler = Quiet;
            let serve = ws.serve(&mut handler);
            assert!(
                size_of_future(&serve) <= 192,
                "serve {}",
                size_of_future(&serve)
            );
            drop(serve);
            let accept = super::Builder::new(b).accept();
            assert!(
                size_of_future(&accept) <= 160,
                "accept {}",
                size_of_future(&accept)
            );
        });
    }
}
