//! [`WebSocket`]: the task that owns a socket and drives its connection.
//!
//! Its loop: hand ready events to the handler, move queued [`Handle`]
//! messages into the core (while output is below a high-water mark), then
//! `drive`: write pending output and, in the same poll, read input (only
//! while little output is pending), take newly queued messages, run the
//! core's timer, or notice a shutdown abort. Because writing and timers
//! share one poll, a peer that stops reading cannot stall the timers.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use ::tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use ::tokio::time::Sleep;

use super::read::poll_read_into;
use crate::adapter::{self, Next};
use crate::close::CloseCode;
use crate::connection::{
    CloseStep, Connection, Event, Message, OwnedEvent, Sender, State, UsageError,
};
use crate::error::Error;
use crate::handle::{Handle, Outbox, QueueLimit};
use crate::handler::{dispatch, end_with_error, Flow, Handler};
use crate::shutdown::Registration;

/// Handle messages are encoded into the connection only while less than
/// this much output waits, so the queue, not the output buffer, absorbs
/// bursts and backpressure stays visible to senders.
const OUTPUT_HIGH_WATER: usize = 256 * 1024;

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
    /// What only some connections have, boxed so the others (and every
    /// idle task) do not carry it.
    extras: Option<Box<Extras>>,
    /// Allocated the first time a timer is needed, then reset in place.
    timer: Option<Pin<Box<Sleep>>>,
}

/// A queue limit other than the default, a shutdown registration.
#[derive(Debug)]
struct Extras {
    queue: QueueLimit,
    registration: Option<Registration>,
}

impl<S> Drop for WebSocket<S> {
    fn drop(&mut self) {
        if let Some(outbox) = self.outbox.get() {
            outbox.end();
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    pub(super) fn new(stream: S, mut conn: Connection, queue: QueueLimit) -> Self {
        // Many connections share this thread: their buffers circulate
        // through its pool.
        conn.use_buffer_pool();
        let custom = queue != QueueLimit::default();
        WebSocket {
            stream,
            conn: Box::new(conn),
            outbox: OnceLock::new(),
            extras: custom.then(|| {
                Box::new(Extras {
                    queue,
                    registration: None,
                })
            }),
            timer: None,
        }
    }

    /// Counts the connection as live in a shutdown coordinator.
    pub(super) fn register(&mut self, shutdown: &crate::shutdown::Shutdown) {
        let registration = shutdown.register(self.handle());
        let queue = self
            .extras
            .as_ref()
            .map_or_else(QueueLimit::default, |e| e.queue);
        self.extras
            .get_or_insert_with(|| {
                Box::new(Extras {
                    queue,
                    registration: None,
                })
            })
            .registration = Some(registration);
    }

    /// A cloneable sender other tasks can use while this task drives the
    /// connection.
    pub fn handle(&self) -> Handle {
        let queue = self
            .extras
            .as_ref()
            .map_or_else(QueueLimit::default, |e| e.queue);
        Handle::new(
            self.outbox
                .get_or_init(|| Arc::new(Outbox::new(queue)))
                .clone(),
        )
    }

    /// Splits into a [`Handle`] usable from any task and a reading half,
    /// which drives the connection (reads, timers, and writing what the
    /// handle queues) — sender first, receiver second, as
    /// `futures::StreamExt::split` orders them. Keep a task calling
    /// [`ReadHalf::recv`] (or polling it as a `Stream`).
    pub fn split(self) -> (Handle, ReadHalf<S>) {
        let handle = self.handle();
        (handle, ReadHalf { ws: self })
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
        if !poll_fn(|cx| self.poll_recv(cx)).await? {
            return Err(UsageError::Closed.into());
        }
        self.take_event()
    }

    /// Polls until an event is ready: `Ok(true)` when
    /// [`Connection::poll_event`] hands one out, `Ok(false)` once the
    /// connection ended earlier and its transport has ended. An error
    /// comes once the transport has ended, except an I/O error, which
    /// comes at once. (It does not return the borrowed event itself: a
    /// `poll_fn` closure cannot hand out a borrow of what it captures.)
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, Error>> {
        loop {
            match adapter::next(&mut self.conn) {
                Next::Deliver => break,
                Next::Failed(error) => {
                    if self.poll_finish(cx).is_pending() {
                        // Reported once the transport has ended; until
                        // then the connection keeps it.
                        self.conn.defer_error(error);
                        return Poll::Pending;
                    }
                    return Poll::Ready(Err(error.into()));
                }
                Next::Ended => {
                    std::task::ready!(self.poll_finish(cx));
                    return Poll::Ready(Ok(false));
                }
                Next::Io => {
                    self.drain_queue();
                    std::task::ready!(self.poll_drive(cx, Drive::Serve))?;
                }
            }
        }
        if self.conn.state() == State::Closed {
            // The peer's close arrived and was answered: end the transport
            // (the close event waits in the connection meanwhile).
            std::task::ready!(self.poll_finish(cx));
        }
        Poll::Ready(Ok(true))
    }

    /// The event [`WebSocket::poll_recv`] found ready.
    fn take_event(&mut self) -> Result<(Event<'_>, Sender<'_>), Error> {
        match self.conn.poll_event()? {
            Some(pair) => Ok(pair),
            None => Err(UsageError::Closed.into()),
        }
    }

    /// Sends a message and writes it out.
    ///
    /// # Errors
    /// [`Error::Usage`] after close, [`Error::Io`].
    pub async fn send(&mut self, message: Message<'_>) -> Result<(), Error> {
        self.conn.sender().send(message)?;
        self.flush().await
    }

    /// Sends a ping and writes it out.
    ///
    /// # Errors
    /// As [`WebSocket::send`], and over 125 bytes.
    pub async fn send_ping(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.conn.sender().send_ping(payload)?;
        self.flush().await
    }

    /// Starts the closing handshake; keep calling [`WebSocket::recv`] until
    /// it returns the peer's close.
    ///
    /// # Errors
    /// As [`WebSocket::send`], and for a code or reason that cannot be sent.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.start_close(code, reason)?;
        self.flush().await
    }

    /// Queues the close frame; handles can send nothing after it.
    fn start_close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.conn.sender().close(code, reason)?;
        if let Some(outbox) = self.outbox.get() {
            outbox.close();
        }
        Ok(())
    }

    /// Writes everything pending.
    ///
    /// # Errors
    /// [`Error::Io`]; a timer's error if one gave up on the peer meanwhile.
    pub async fn flush(&mut self) -> Result<(), Error> {
        poll_fn(|cx| self.poll_write_down(cx, 0)).await
    }

    /// Writes pending output until at most `high_water` bytes wait (all of
    /// it for a flush; a `Sink` that is ready for more writes only down to
    /// the adapter's high-water mark).
    fn poll_write_down(
        &mut self,
        cx: &mut Context<'_>,
        high_water: usize,
    ) -> Poll<Result<(), Error>> {
        while self.conn.buffered_amount() > high_water {
            std::task::ready!(self.poll_drive(cx, Drive::Flush))?;
            if self.conn.state() == State::Closed && !self.conn.should_linger() {
                // A timer expired while the peer was not reading: report it.
                self.conn.prepare_event()?;
                return Poll::Ready(Err(UsageError::Closed.into()));
            }
        }
        self.account_written();
        Poll::Ready(Ok(()))
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
        outbox.lock().drain_into(&mut self.conn, OUTPUT_HIGH_WATER);
    }

    /// Updates the byte count senders see and wakes those waiting for room.
    fn account_written(&mut self) {
        if let Some(outbox) = self.outbox.get() {
            outbox.written(&self.conn);
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
        poll_fn(move |cx| self.poll_drive(cx, mode))
    }

    /// One poll of [`WebSocket::drive`]: the timer follows the
    /// connection's deadline at every poll, so callers that poll (a
    /// `Stream`, a `Sink`) and the async loops behave alike.
    fn poll_drive(&mut self, cx: &mut Context<'_>, mode: Drive) -> Poll<Result<(), Error>> {
        let timed = self.arm_timer();
        let wake = std::task::ready!(self.poll_wake(cx, mode, timed));
        Poll::Ready(self.apply_wake(wake))
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
        set_timer(&mut self.timer, deadline);
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
            let mut queue = outbox.lock();
            if queue.aborted() {
                return Poll::Ready(Wake::Aborted);
            }
            if mode == Drive::Serve && room && queue.has_items() {
                return Poll::Ready(Wake::Queued);
            }
            queue.register(cx.waker());
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

    /// Ends the transport once the connection is closed, step by step as
    /// the core says (RFC 6455 §7.1.1), each step bounded by its deadline.
    // Not an `async fn`: the future is the closure's one `&mut`, so this
    // rare path does not enlarge every connection's task.
    fn finish_transport(&mut self) -> impl Future<Output = ()> + '_ {
        poll_fn(move |cx| self.poll_finish(cx))
    }

    /// One poll of [`WebSocket::finish_transport`]. Idempotent: once the
    /// transport's end is done, `close_step` answers `Release` at once.
    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.conn.state() != State::Closed {
            // The transport failed or is given up while the connection was
            // open: nothing more is worth sending or waiting for.
            self.conn.abort();
        }
        let WebSocket {
            stream,
            conn,
            outbox,
            timer,
            ..
        } = self;
        if let Some(outbox) = outbox.get() {
            outbox.close();
        }
        loop {
            let polled = match conn.close_step() {
                None | Some(CloseStep::Release) => {
                    if let Some(outbox) = outbox.get() {
                        outbox.end();
                    }
                    return Poll::Ready(());
                }
                Some(CloseStep::Flush) => {
                    let written = poll_write_output(stream, conn, cx);
                    if let (Poll::Ready(Ok(())), Some(outbox)) = (&written, outbox.get()) {
                        // Senders waiting for room learn it was freed.
                        outbox.written(conn);
                    }
                    written
                }
                Some(CloseStep::ShutdownWrite) => match Pin::new(&mut *stream).poll_shutdown(cx) {
                    // Failures do not matter here.
                    Poll::Ready(_) => continue,
                    Poll::Pending => {
                        // Asked for again by `close_step`, within a deadline.
                        conn.shutdown_write_pending(Instant::now());
                        Poll::Pending
                    }
                },
                Some(CloseStep::Drain) => poll_drain(stream, conn, cx),
            };
            match polled {
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(_)) => {
                    conn.abort();
                    continue;
                }
                Poll::Pending => {}
            }
            // The step waits: at most until the core's deadline, kept in the
            // connection so that it does not restart at every poll.
            let now = Instant::now();
            let deadline = conn.poll_timeout(now);
            debug_assert!(deadline.is_some(), "a waiting step has a deadline");
            let deadline = deadline.unwrap_or(now + conn.config().close_timeout);
            if set_timer(timer, deadline).poll(cx).is_ready() {
                // The timer fired, so the deadline has passed even where
                // tokio's clock runs ahead of std's (a paused test clock).
                conn.handle_timeout(Instant::now().max(deadline));
                continue;
            }
            return Poll::Pending;
        }
    }
}

/// Points `timer` at `deadline`, creating it the first time; a timer
/// already there is reset only if the deadline moved (a reset re-registers
/// it with the runtime, and pollers re-arm at every poll).
fn set_timer(timer: &mut Option<Pin<Box<Sleep>>>, deadline: Instant) -> Pin<&mut Sleep> {
    let deadline = ::tokio::time::Instant::from_std(deadline);
    match timer {
        Some(sleep) => {
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
            sleep.as_mut()
        }
        None => timer
            .insert(Box::pin(::tokio::time::sleep_until(deadline)))
            .as_mut(),
    }
}

/// Reads once while draining the transport's end and drops what arrived
/// (or notes its end). Out of line: its stack buffer stays out of the
/// frames of the loops that call it.
#[inline(never)]
fn poll_drain<S: AsyncRead + Unpin>(
    stream: &mut S,
    conn: &mut Connection,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    let mut scratch = [0u8; 4096];
    let mut buf = ReadBuf::new(&mut scratch);
    std::task::ready!(Pin::new(stream).poll_read(cx, &mut buf))?;
    match buf.filled() {
        [] => conn.handle_eof(),
        bytes => conn.feed(bytes),
    }
    Poll::Ready(Ok(()))
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
            Pin::new(&mut *stream).poll_write_vectored(cx, slices.get(..n).unwrap_or_default())
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

/// The reading half of a split [`WebSocket`]; it also drives the writes
/// queued through the [`Handle`].
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

/// The events as a `futures::Stream`: the peer's close is yielded as
/// [`OwnedEvent::Close`], and the stream ends (`None`) once the connection
/// ended and its transport too — where [`WebSocket::recv`] would say
/// [`UsageError::Closed`]. An error (protocol, timeout, I/O) is yielded
/// once, then `None`.
#[cfg(feature = "futures")]
impl<S: AsyncRead + AsyncWrite + Unpin> futures_core::Stream for WebSocket<S> {
    type Item = Result<OwnedEvent, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let event = match std::task::ready!(this.poll_recv(cx)) {
            Ok(true) => this.take_event().map(|(event, _)| event.into_owned()),
            Ok(false) => return Poll::Ready(None),
            Err(error) => Err(error),
        };
        if event.is_err() && this.conn.state() != State::Closed {
            // An I/O error leaves the connection open (`recv` may be tried
            // again); a stream ends after its error: the next poll ends the
            // transport and says `None`.
            this.conn.abort();
        }
        Poll::Ready(Some(event))
    }
}

#[cfg(feature = "futures")]
impl<S: AsyncRead + AsyncWrite + Unpin> futures_core::FusedStream for WebSocket<S> {
    fn is_terminated(&self) -> bool {
        self.conn.is_finished()
    }
}

/// Messages as a `futures::Sink`, so `SinkExt::send` and
/// `StreamExt::forward` work as with tokio-tungstenite. Each message is
/// copied into the connection's output at `start_send`, so it may borrow
/// anything; `poll_ready` writes while more than the adapter's high-water
/// mark waits, `poll_flush` writes everything, and `poll_close` sends a
/// close (1000) if none was sent and writes it, without waiting for the
/// peer's: read on (through the `Stream`) until its close arrives.
#[cfg(feature = "futures")]
impl<'a, S: AsyncRead + AsyncWrite + Unpin> futures_sink::Sink<Message<'a>> for WebSocket<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_write_down(cx, OUTPUT_HIGH_WATER)
    }

    fn start_send(self: Pin<&mut Self>, item: Message<'a>) -> Result<(), Error> {
        self.get_mut().conn.sender().send(item)?;
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_write_down(cx, 0)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        if this.conn.state() == State::Open {
            this.start_close(CloseCode::Normal, "")?;
        }
        this.poll_write_down(cx, 0)
    }
}

#[cfg(feature = "futures")]
impl<S: AsyncRead + AsyncWrite + Unpin> futures_core::Stream for ReadHalf<S> {
    type Item = Result<OwnedEvent, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        futures_core::Stream::poll_next(Pin::new(&mut self.get_mut().ws), cx)
    }
}

#[cfg(feature = "futures")]
impl<S: AsyncRead + AsyncWrite + Unpin> futures_core::FusedStream for ReadHalf<S> {
    fn is_terminated(&self) -> bool {
        futures_core::FusedStream::is_terminated(&self.ws)
    }
}
