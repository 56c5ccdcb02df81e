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

use ::tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
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
            outbox.close();
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
    /// [`ReadHalf::recv`].
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
        loop {
            match adapter::next(&mut self.conn) {
                Next::Deliver => break,
                Next::Failed(error) => {
                    self.finish_transport().await;
                    return Err(error.into());
                }
                Next::Ended => {
                    self.finish_transport().await;
                    return Err(UsageError::Closed.into());
                }
                Next::Io => {
                    self.drain_queue();
                    self.drive(Drive::Serve).await?;
                }
            }
        }
        if self.conn.state() == State::Closed {
            // The peer's close arrived and was answered: end the transport.
            self.finish_transport().await;
        }
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
        self.conn.sender().close(code, reason)?;
        if let Some(outbox) = self.outbox.get() {
            outbox.close();
        }
        self.flush().await
    }

    /// Writes everything pending.
    ///
    /// # Errors
    /// [`Error::Io`]; a timer's error if one gave up on the peer meanwhile.
    pub async fn flush(&mut self) -> Result<(), Error> {
        while !self.conn.pending_output().is_empty() {
            self.drive(Drive::Flush).await?;
            if self.conn.state() == State::Closed && !self.conn.should_linger() {
                // A timer expired while the peer was not reading: report it.
                self.conn.prepare_event()?;
                return Err(UsageError::Closed.into());
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
    async fn finish_transport(&mut self) {
        // Idempotent: once the transport's end is done, `close_step`
        // answers `Release` at once.
        if self.conn.state() != State::Closed {
            // The transport failed or is given up while the connection was
            // open: nothing more is worth sending or waiting for.
            self.conn.abort();
        }
        if let Some(outbox) = self.outbox.get() {
            outbox.close();
        }
        // Boxed: this rare path must not enlarge every connection's task.
        Box::pin(async {
            let mut scratch = Vec::new();
            while let Some(step) = self.conn.close_step() {
                let now = Instant::now();
                let deadline = self
                    .conn
                    .poll_timeout(now)
                    .unwrap_or(now + self.conn.config().close_timeout);
                let deadline = ::tokio::time::Instant::from_std(deadline);
                let stream = &mut self.stream;
                let conn = &mut *self.conn;
                let done = match step {
                    CloseStep::Flush => {
                        let write = poll_fn(|cx| poll_write_output(stream, conn, cx));
                        ::tokio::time::timeout_at(deadline, write).await
                    }
                    CloseStep::ShutdownWrite => {
                        let shut = ::tokio::io::AsyncWriteExt::shutdown(stream);
                        let _ = ::tokio::time::timeout_at(deadline, shut).await;
                        continue;
                    }
                    CloseStep::Drain => {
                        scratch.resize(4096, 0);
                        let read = stream.read(&mut scratch);
                        let read = ::tokio::time::timeout_at(deadline, read).await;
                        if let Ok(Ok(n)) = read {
                            match scratch.get(..n) {
                                Some([]) | None => conn.handle_eof(),
                                Some(bytes) => conn.feed(bytes),
                            }
                        }
                        read.map(|r| r.map(drop))
                    }
                    CloseStep::Release => return,
                };
                match done {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => self.conn.abort(),
                    Err(_elapsed) => self.conn.handle_timeout(Instant::now()),
                }
            }
        })
        .await;
    }
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
