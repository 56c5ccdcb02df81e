//! Blocking adapter: runs a [`Connection`] over any `Read + Write` (a TCP
//! stream, a TLS stream, a Unix socket).
//!
//! All protocol logic lives in the core; this file only moves bytes and
//! runs the timers the core asks for. Reads go straight into the
//! connection's buffer ([`Connection::read_buf`]); all pending output is
//! written in as few `write` calls as the stream accepts.
//!
//! Timers (keepalive, idle, close handshake, opening handshake) need a way
//! to wake a blocked read. Give the adapter a [`StreamControl`] (TCP and
//! Unix sockets have ready-made ones) and it sets the stream's read timeout
//! to the next deadline. Without one, timers still run whenever a read
//! returns `WouldBlock`/`TimedOut`, so a read timeout you set yourself works
//! as a tick.
//!
//! ```no_run
//! use chito::blocking;
//! use chito::{Handler, Message, Sender};
//!
//! struct Echo;
//! impl Handler for Echo {
//!     fn on_message(&mut self, sender: &mut Sender<'_>, message: Message<'_>) {
//!         let _ = sender.send(message);
//!     }
//! }
//!
//! let listener = std::net::TcpListener::bind("127.0.0.1:9001")?;
//! for stream in listener.incoming() {
//!     std::thread::spawn(move || {
//!         if let Ok(ws) = blocking::Builder::tcp(stream?).accept() {
//!             ws.serve(&mut Echo);
//!         }
//!         Ok::<_, std::io::Error>(())
//!     });
//! }
//! # Ok::<_, std::io::Error>(())
//! ```

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::adapter::{self, Next, HANDSHAKE_TIMEOUT, HEAD_CHUNK};
use crate::close::CloseCode;
use crate::config::Config;
use crate::connection::{
    CloseStep, Connection, Event, Message, OwnedEvent, Sender, State, UsageError,
};
use crate::error::{Error, Timeout};
use crate::handler::{dispatch, end_with_error, Flow, Handler};
use crate::handshake::{
    Accept, ClientHandshake, ClientRequest, Rejection, ServerHandshake, UpgradeRequest,
    UpgradeResponse,
};

/// How the adapter controls a stream beyond reading and writing: read and
/// write timeouts (to wake for timers while blocked, either way) and
/// half-closing (to end a connection without losing the last frame).
pub struct StreamControl<S> {
    set_read_timeout: fn(&S, Option<Duration>) -> io::Result<()>,
    set_write_timeout: fn(&S, Option<Duration>) -> io::Result<()>,
    shutdown_write: fn(&S) -> io::Result<()>,
}

impl<S> Clone for StreamControl<S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for StreamControl<S> {}

impl<S> std::fmt::Debug for StreamControl<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamControl")
    }
}

impl<S> StreamControl<S> {
    /// Hooks for any stream, e.g. a TLS stream over TCP:
    /// `StreamControl::new(|s, t| s.get_ref().set_read_timeout(t), |s, t| s.get_ref().set_write_timeout(t), |s| s.get_ref().shutdown(Shutdown::Write))`.
    pub fn new(
        set_read_timeout: fn(&S, Option<Duration>) -> io::Result<()>,
        set_write_timeout: fn(&S, Option<Duration>) -> io::Result<()>,
        shutdown_write: fn(&S) -> io::Result<()>,
    ) -> Self {
        StreamControl {
            set_read_timeout,
            set_write_timeout,
            shutdown_write,
        }
    }
}

impl StreamControl<TcpStream> {
    /// Hooks for a plain TCP stream.
    pub fn tcp() -> Self {
        StreamControl::new(
            TcpStream::set_read_timeout,
            TcpStream::set_write_timeout,
            |s| s.shutdown(std::net::Shutdown::Write),
        )
    }
}

#[cfg(unix)]
impl StreamControl<std::os::unix::net::UnixStream> {
    /// Hooks for a Unix domain socket.
    pub fn unix() -> Self {
        use std::os::unix::net::UnixStream;
        StreamControl::new(
            UnixStream::set_read_timeout,
            UnixStream::set_write_timeout,
            |s| s.shutdown(std::net::Shutdown::Write),
        )
    }
}

/// Opening handshake over a stream, for either role.
#[derive(Debug)]
pub struct Builder<S> {
    stream: S,
    config: Arc<Config>,
    control: Option<StreamControl<S>>,
    handshake_timeout: Duration,
}

impl Builder<TcpStream> {
    /// A builder for a TCP stream, with [`StreamControl::tcp`] and
    /// `TCP_NODELAY` (frames are written whole; Nagle would only delay them).
    pub fn tcp(stream: TcpStream) -> Self {
        let _ = stream.set_nodelay(true);
        Builder::new(stream).control(StreamControl::tcp())
    }
}

impl<S: Read + Write> Builder<S> {
    /// A builder with the default [`Config`], a 10 s handshake timeout
    /// and no [`StreamControl`].
    pub fn new(stream: S) -> Self {
        Builder {
            stream,
            config: Config::shared_default(),
            control: None,
            handshake_timeout: HANDSHAKE_TIMEOUT,
        }
    }

    /// Sets the limits and timers. Pass an `Arc<Config>` to share one
    /// copy among many connections.
    pub fn config(mut self, config: impl Into<Arc<Config>>) -> Self {
        self.config = config.into();
        self
    }

    /// Sets the stream hooks used for timers and half-close.
    pub fn control(mut self, control: StreamControl<S>) -> Self {
        self.control = Some(control);
        self
    }

    /// Abandons an opening handshake that takes longer
    /// ([`Timeout::Handshake`]); needs a [`StreamControl`] to interrupt a
    /// blocked read. Default: 10 s.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Wraps a stream whose opening handshake was done elsewhere, with the
    /// connection built for it ([`Connection::with_negotiated`]).
    pub fn upgraded(self, conn: Connection) -> WebSocket<S> {
        WebSocket {
            stream: self.stream,
            conn,
            control: self.control,
        }
    }

    /// Server side: reads the request, accepts any valid WebSocket upgrade
    /// without a subprotocol.
    ///
    /// # Errors
    /// [`Error::Rejected`] if the request is not a valid upgrade (the HTTP
    /// error response was sent), [`Error::Timeout`] after the handshake
    /// timeout, [`Error::Io`].
    pub fn accept(self) -> Result<WebSocket<S>, Error> {
        self.accept_with(|_| Ok(Accept::default()))
    }

    /// Server side with a hook that inspects the request (path, origin,
    /// cookies, authorization) and either chooses what to accept (a
    /// subprotocol, extra headers) or refuses with an HTTP status.
    ///
    /// # Errors
    /// As [`Builder::accept`]; a refusal from `inspect` is sent and
    /// returned as [`Error::Rejected`].
    pub fn accept_with<F>(mut self, inspect: F) -> Result<WebSocket<S>, Error>
    where
        F: FnOnce(&UpgradeRequest) -> Result<Accept, Rejection>,
    {
        let mut handshake = ServerHandshake::new(&self.config);
        let started = Instant::now();
        let request = loop {
            match self.read_head(started, |chunk| handshake.feed(chunk))? {
                Ok(Some(request)) => break request,
                Ok(None) => {}
                Err(rejection) => return Err(self.refuse(rejection)),
            }
        };
        let accepted = match adapter::answer(request, inspect, &self.config) {
            Ok(accepted) => accepted,
            Err(rejection) => return Err(self.refuse(rejection)),
        };
        write_all(&mut self.stream, &accepted.response())?;
        let conn = adapter::server_connection(self.config.clone(), &accepted);
        Ok(self.upgraded(conn))
    }

    /// Client side: sends the request and verifies the response.
    ///
    /// # Errors
    /// [`Error::Request`] for a request that cannot be sent,
    /// [`Error::Handshake`] if the server refused or answered wrongly,
    /// [`Error::Timeout`], [`Error::Io`].
    pub fn connect(
        mut self,
        request: &ClientRequest,
    ) -> Result<(WebSocket<S>, UpgradeResponse), Error> {
        let (mut handshake, bytes) = ClientHandshake::new(request, &self.config)?;
        write_all(&mut self.stream, &bytes)?;
        let started = Instant::now();
        let connected = loop {
            if let Some(connected) = self.read_head(started, |chunk| handshake.feed(chunk))?? {
                break connected;
            }
        };
        let conn = adapter::client_connection(self.config.clone(), &connected);
        Ok((self.upgraded(conn), connected.into_response()))
    }

    /// Reads more of an HTTP head within the handshake timeout and feeds it
    /// to a handshake machine.
    fn read_head<T>(
        &mut self,
        started: Instant,
        feed: impl FnOnce(&[u8]) -> T,
    ) -> Result<T, Error> {
        let mut chunk = [0u8; HEAD_CHUNK];
        loop {
            let remaining = self.handshake_timeout.saturating_sub(started.elapsed());
            if remaining.is_zero() {
                return Err(Error::Timeout(Timeout::Handshake));
            }
            if let Some(control) = &self.control {
                (control.set_read_timeout)(&self.stream, Some(remaining))?;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(adapter::eof_during_handshake()),
                Ok(n) => return Ok(feed(chunk.get(..n).unwrap_or_default())),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Sends the refusal's HTTP response and turns it into the error.
    fn refuse(&mut self, rejection: Rejection) -> Error {
        let _ = write_all(&mut self.stream, &rejection.to_response());
        if let Some(control) = &self.control {
            let _ = (control.shutdown_write)(&self.stream);
        }
        Error::Rejected(rejection)
    }
}

/// Connects to a `ws://` URL over TCP and performs the client handshake.
///
/// Plain TCP only, no proxy. `wss://`, HTTP and SOCKS5 proxies and
/// reconnection are the `chito-client` crate's (it keeps rustls out of
/// chito); or open a TLS stream yourself and use [`Builder::connect`].
///
/// # Errors
/// [`Error::Request`] for a bad or `wss://` URL; [`Error::Handshake`] if
/// the server refused; [`Error::Io`] if the TCP connection fails.
pub fn connect(url: &str) -> Result<(WebSocket<TcpStream>, UpgradeResponse), Error> {
    connect_with(url, Config::default())
}

/// [`connect`] with a [`Config`].
///
/// # Errors
/// As [`connect`].
pub fn connect_with(
    url: &str,
    config: Config,
) -> Result<(WebSocket<TcpStream>, UpgradeResponse), Error> {
    let (addr, request) = adapter::tcp_target(url)?;
    let stream = TcpStream::connect(addr)?;
    Builder::tcp(stream).config(config).connect(&request)
}

/// An open WebSocket over a blocking stream.
#[derive(Debug)]
pub struct WebSocket<S> {
    stream: S,
    conn: Connection,
    control: Option<StreamControl<S>>,
}

impl<S: Read + Write> WebSocket<S> {
    /// The sans-IO connection.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The sans-IO connection, mutably (e.g. to queue several messages
    /// before one [`WebSocket::flush`]).
    pub fn connection_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// Splits into the stream and the connection.
    pub fn into_parts(self) -> (S, Connection) {
        (self.stream, self.conn)
    }

    /// Blocks until the next event and returns it owned. After the close
    /// handshake (an [`OwnedEvent::Close`]) further calls return
    /// [`UsageError::Closed`].
    ///
    /// # Errors
    /// [`Error::Protocol`] (the close frame was sent), [`Error::Timeout`],
    /// [`Error::Io`], [`Error::Usage`] after the connection ended.
    pub fn recv(&mut self) -> Result<OwnedEvent, Error> {
        let (event, _) = self.recv_event()?;
        Ok(event.into_owned())
    }

    /// Blocks until the next event and returns it borrowed, with a
    /// [`Sender`] to queue replies (sent by the next receive or flush).
    ///
    /// # Errors
    /// As [`WebSocket::recv`].
    pub fn recv_event(&mut self) -> Result<(Event<'_>, Sender<'_>), Error> {
        loop {
            match adapter::next(&mut self.conn) {
                Next::Deliver => break,
                Next::Failed(error) => {
                    self.finish_transport();
                    return Err(error.into());
                }
                Next::Ended => {
                    self.finish_transport();
                    return Err(UsageError::Closed.into());
                }
                Next::Io => {
                    self.flush()?;
                    self.fill()?;
                }
            }
        }
        if self.conn.state() == State::Closed {
            // The peer's close arrived and was answered: end the transport.
            self.finish_transport();
        }
        match self.conn.poll_event()? {
            Some(pair) => Ok(pair),
            None => Err(UsageError::Closed.into()),
        }
    }

    /// Sends a message and flushes.
    ///
    /// # Errors
    /// [`Error::Usage`] after close; [`Error::Io`].
    pub fn send(&mut self, message: Message<'_>) -> Result<(), Error> {
        self.conn.sender().send(message)?;
        self.flush()
    }

    /// Sends a ping and flushes.
    ///
    /// # Errors
    /// As [`WebSocket::send`], and over 125 bytes.
    pub fn send_ping(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.conn.sender().send_ping(payload)?;
        self.flush()
    }

    /// Starts the closing handshake and flushes. Keep calling
    /// [`WebSocket::recv`] until it returns the peer's
    /// [`OwnedEvent::Close`].
    ///
    /// # Errors
    /// As [`WebSocket::send`], and for a code or reason that cannot be sent.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.conn.sender().close(code, reason)?;
        self.flush()
    }

    /// Writes all pending output.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn flush(&mut self) -> Result<(), Error> {
        if self.conn.pending_output().is_empty() {
            return Ok(());
        }
        while !self.conn.pending_output().is_empty() {
            if let Some(control) = &self.control {
                // Wake for timers even while the peer is not reading; once
                // closed, the transport's deadline bounds the last frames.
                let now = Instant::now();
                let closed = self.conn.state() == State::Closed;
                let deadline = self
                    .conn
                    .poll_timeout(now)
                    .or_else(|| closed.then(|| now + self.conn.config().close_timeout));
                let timeout = deadline.map(|d| {
                    d.saturating_duration_since(now)
                        .max(Duration::from_millis(1))
                });
                (control.set_write_timeout)(&self.stream, timeout)?;
            }
            let mut slices = [io::IoSlice::new(&[]); 3];
            let n = self.conn.pending_output_vectored(&mut slices);
            match self
                .stream
                .write_vectored(slices.get(..n).unwrap_or_default())
            {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
                Ok(n) => self.conn.consume_output(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) && self.control.is_some() => {
                    let was_closed = self.conn.state() == State::Closed;
                    self.conn.handle_timeout(Instant::now());
                    if was_closed {
                        return Err(e.into());
                    }
                    if self.conn.state() == State::Closed && !self.conn.should_linger() {
                        // A timer gave up on the peer: report why.
                        self.conn.prepare_event()?;
                        return Err(UsageError::Closed.into());
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.stream.flush()?;
        Ok(())
    }

    /// Runs `handler` until the connection ends: [`Handler::on_open`], one
    /// callback per event, then [`Handler::on_close`] exactly once.
    /// Errors reach the handler through [`Handler::on_error`].
    pub fn serve<H: Handler + ?Sized>(mut self, handler: &mut H) {
        handler.on_open(&mut self.conn.sender());
        loop {
            let flow = dispatch(&mut self.conn, handler);
            if let Err(error) = self.flush() {
                if flow == Flow::Continue {
                    end_with_error(handler, &error);
                }
                self.finish_transport();
                return;
            }
            if flow == Flow::Ended {
                self.finish_transport();
                return;
            }
            if let Err(error) = self.fill() {
                end_with_error(handler, &error);
                return;
            }
        }
    }

    /// Reads once from the stream into the connection, or runs the timers
    /// if the read timed out.
    fn fill(&mut self) -> Result<(), Error> {
        loop {
            let now = Instant::now();
            let deadline = self.conn.poll_timeout(now);
            if let Some(control) = &self.control {
                // Zero would mean "no timeout" to the OS: wait at least 1 ms.
                let timeout = deadline.map(|d| {
                    d.saturating_duration_since(now)
                        .max(Duration::from_millis(1))
                });
                (control.set_read_timeout)(&self.stream, timeout)?;
            }
            match self.stream.read(self.conn.read_buf()) {
                Ok(0) => {
                    self.conn.handle_eof();
                    return Ok(());
                }
                Ok(n) => {
                    self.conn.commit_read(n);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => {
                    self.conn.handle_timeout(Instant::now());
                    self.flush()?;
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Ends the transport once the connection is closed, step by step as
    /// the core says (RFC 6455 §7.1.1). Without a [`StreamControl`] the
    /// adapter can neither half-close nor bound a read, so it stops after
    /// the flush.
    fn finish_transport(&mut self) {
        // Idempotent: once the transport's end is done, `close_step`
        // answers `Release` at once.
        if self.conn.state() != State::Closed {
            // The transport failed or is given up while the connection was
            // open: nothing more is worth sending or waiting for.
            self.conn.abort();
        }
        let mut scratch = [0u8; 4096];
        while let Some(step) = self.conn.close_step() {
            match (step, self.control) {
                (CloseStep::Flush, _) => {
                    if self.flush().is_err() {
                        self.conn.abort();
                    }
                }
                (CloseStep::ShutdownWrite, Some(control)) => {
                    let _ = (control.shutdown_write)(&self.stream);
                }
                (CloseStep::ShutdownWrite, None) => {}
                (CloseStep::Drain, Some(control)) => {
                    let now = Instant::now();
                    let remaining = self
                        .conn
                        .poll_timeout(now)
                        .map(|d| d.saturating_duration_since(now));
                    let Some(remaining) = remaining.filter(|r| !r.is_zero()) else {
                        self.conn.handle_timeout(now);
                        continue;
                    };
                    if (control.set_read_timeout)(&self.stream, Some(remaining)).is_err() {
                        return;
                    }
                    match self.stream.read(&mut scratch) {
                        Ok(0) => self.conn.handle_eof(),
                        Ok(n) => self.conn.feed(scratch.get(..n).unwrap_or_default()),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) if is_timeout(&e) => self.conn.handle_timeout(Instant::now()),
                        Err(_) => self.conn.abort(),
                    }
                }
                (CloseStep::Drain, None) | (CloseStep::Release, _) => return,
            }
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn write_all<S: Write>(stream: &mut S, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match stream.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    stream.flush()
}
