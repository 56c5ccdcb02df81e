//! The post-handshake connection: a sans-IO state machine (RFC 6455 §5–§7).
//!
//! Bytes in, events out; messages in, bytes out. A [`Connection`] never
//! touches a socket and never reads the clock:
//!
//! 1. Put received bytes in with [`Connection::feed`] (copies), or read
//!    straight into [`Connection::read_buf`] and [`Connection::commit_read`]
//!    (no copy).
//! 2. Take events with [`Connection::poll_event`] until it returns `None`.
//!    Message payloads are borrowed from the connection's buffers: a
//!    message that arrived in one frame is handed out in place (no copy);
//!    a fragmented message is assembled once into a reused buffer.
//! 3. Send with [`Connection::send_text`] and friends (or a [`Sender`]):
//!    frames are encoded into the output buffer (one copy of the payload,
//!    masked in place by a client).
//! 4. Write [`Connection::pending_output`] to the transport and report how
//!    much went with [`Connection::consume_output`]. A driver that writes
//!    with vectored I/O may call [`Connection::enable_output_from_input`]:
//!    a large message sent straight back from a received one (an echo, a
//!    relay) is then written from the input buffer, not copied
//!    ([`Connection::pending_output_vectored`]).
//! 5. Drive timers with [`Connection::poll_timeout`] and
//!    [`Connection::handle_timeout`].
//! 6. When [`Connection::is_closed`] is true and the output is drained,
//!    close the transport.

use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use crate::close::{CloseCode, CloseFrame, MAX_CLOSE_REASON};
use crate::config::Config;
#[cfg(feature = "deflate")]
use crate::deflate::{DeflateError, Deflater, Inflater};
use crate::error::{Error, ProtocolError, Timeout, UsageError};
use crate::frame::{FrameHeader, OpCode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use crate::handshake::Negotiated;
use crate::mask::apply_mask;
use crate::rand::Rng;
pub use crate::role::Role;
use crate::utf8::Utf8Validator;

/// The closing state (RFC 6455 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// We sent a close frame and wait for the peer's; incoming messages are
    /// still delivered, nothing more can be sent.
    Closing,
    /// The close handshake is complete, or the connection failed. Flush the
    /// output, then close the transport.
    Closed,
}

/// The kind of a data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// UTF-8 text (opcode 0x1).
    Text,
    /// Binary data (opcode 0x2).
    Binary,
}

/// A data message, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl Message<'_> {
    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(text) => text.as_bytes(),
            Message::Binary(bytes) => bytes,
        }
    }

    /// Text or binary.
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Text(_) => MessageKind::Text,
            Message::Binary(_) => MessageKind::Binary,
        }
    }
}

/// Something the peer sent, borrowed from the connection's buffers until the
/// next call that takes `&mut self`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete text message (validated UTF-8).
    Text(&'a str),
    /// A complete binary message.
    Binary(&'a [u8]),
    /// A ping. With [`Config::auto_pong`] the pong is already queued.
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// The peer's close frame (`None`: it carried no code, which the RFC
    /// reports as 1005). The reply, if one was due, is already queued and
    /// the connection is now [`State::Closed`].
    Close(Option<CloseFrame<'a>>),
}

impl Event<'_> {
    /// The event with its payload copied out of the connection.
    pub fn into_owned(self) -> OwnedEvent {
        match self {
            Event::Text(text) => OwnedEvent::Text(text.to_owned()),
            Event::Binary(bytes) => OwnedEvent::Binary(bytes.to_vec()),
            Event::Ping(bytes) => OwnedEvent::Ping(bytes.to_vec()),
            Event::Pong(bytes) => OwnedEvent::Pong(bytes.to_vec()),
            Event::Close(frame) => OwnedEvent::Close(frame.map(CloseFrame::into_owned)),
        }
    }
}

/// An [`Event`] that owns its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedEvent {
    /// A complete text message.
    Text(String),
    /// A complete binary message.
    Binary(Vec<u8>),
    /// A ping.
    Ping(Vec<u8>),
    /// A pong.
    Pong(Vec<u8>),
    /// The peer's close frame.
    Close(Option<CloseFrame<'static>>),
}

/// The sans-IO WebSocket connection.
#[derive(Debug)]
pub struct Connection {
    /// Shared by every connection built from the same `Arc` (an idle
    /// connection should not carry its own copy of the limits).
    config: Arc<Config>,
    negotiated: Negotiated,
    rx: Rx,
    tx: Tx,
    timers: Timers,
    pending_error: Option<Box<Error>>,
    /// An event found by `prepare_event`, not yet handed out.
    ready: Option<Ready>,
    /// Whether the peer is still worth waiting for once closed (false after
    /// a timeout or end of stream).
    peer_responsive: bool,
    /// A keepalive ping was sent at `timers.last_ping` and nothing has
    /// arrived since. (Here, not in `Timers`: it fits in padding.)
    awaiting_pong: bool,
    /// The latest ping's payload, while its pong waits for the output to
    /// drain below `Config::max_pending_pong_bytes`.
    deferred_pong: Option<Box<ControlPayload>>,
}

/// A control frame's payload, stored without a second allocation.
#[derive(Debug)]
struct ControlPayload {
    len: u8,
    bytes: [u8; MAX_CONTROL_PAYLOAD],
}

/// The read side: input buffer, the frame and message being received.
#[derive(Debug)]
struct Rx {
    /// Input bytes live in `buf[start..end]`; the whole vector is
    /// initialised so reads can go straight into `buf[end..]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    frame: Option<InFrame>,
    message: Option<InMessage>,
    /// A fragmented message is assembled here.
    assembled: Vec<u8>,
    utf8: Utf8Validator,
    /// What the last event borrowed, dropped on the next `&mut` call.
    release: Release,
    /// Set when bytes arrive; consumed by the timers.
    activity: bool,
    /// Decompresses messages with RSV1 set (RFC 7692 §6.2), if negotiated.
    /// Boxed: most connections never negotiate compression.
    #[cfg(feature = "deflate")]
    inflater: Option<Box<Inflater>>,
}

/// A frame whose header has been parsed.
#[derive(Debug, Clone, Copy)]
struct InFrame {
    opcode: OpCode,
    fin: bool,
    mask: Option<[u8; 4]>,
    /// Absolute index of the payload in `Rx::buf`.
    payload_at: usize,
    len: usize,
    /// Payload bytes already unmasked (and, for text, validated).
    done: usize,
    /// Whether the streaming UTF-8 validator sees this frame's bytes.
    validate: bool,
    /// The frame belongs to a compressed message: its payload is inflated
    /// into the assembly buffer as it arrives.
    compressed: bool,
    /// The frame belongs to a text message.
    text: bool,
}

/// A fragmented message being received.
#[derive(Debug, Clone, Copy)]
struct InMessage {
    kind: MessageKind,
    fragments: usize,
    compressed: bool,
}

#[derive(Debug, Clone, Copy)]
enum Release {
    Nothing,
    /// The event borrowed `buf[..upto]`; input resumes there.
    Input(usize),
    /// The event borrowed the assembled message.
    Assembled,
}

/// What `process` found, located but not yet borrowed.
#[derive(Debug)]
enum Ready {
    Data { kind: MessageKind, at: Located },
    Ping(Range<usize>),
    Pong(Range<usize>),
    Close(Option<(CloseCode, Range<usize>)>),
}

#[derive(Debug, Clone)]
enum Located {
    Input(Range<usize>),
    Assembled,
}

/// The write side: output buffer and sending state.
#[derive(Debug)]
struct Tx {
    role: Role,
    state: State,
    out: Vec<u8>,
    /// Bytes before this index have been written to the transport.
    out_pos: usize,
    /// Mask keys; only a client masks (RFC 6455 §5.3).
    rng: Option<Box<Rng>>,
    /// The kind of the fragmented message being sent, if any.
    sending: Option<MessageKind>,
    /// Compresses outgoing messages (RFC 7692 §6.1), if negotiated.
    /// Boxed: most connections never negotiate compression.
    #[cfg(feature = "deflate")]
    deflater: Option<Box<Deflater>>,
    /// Messages shorter than this are sent uncompressed.
    #[cfg(feature = "deflate")]
    compress_threshold: usize,
    /// Whether the fragmented message being sent is compressed.
    #[cfg(feature = "deflate")]
    sending_compressed: bool,
    /// Set by a driver that writes `pending_output_vectored`: payloads of
    /// at least this many bytes may be written from the input (0: never).
    output_from_input_min: u32,
    /// Output still to be written from the input buffer, `rx.buf[loan]`
    /// (empty: none). Pending output is `out[out_pos..loan_mark]`, then
    /// these bytes, then `out[loan_mark..]`; the input buffer is not
    /// reused until they are written.
    loan: Range<usize>,
    loan_mark: usize,
}

/// The size from which the adapters send a received payload back from the
/// input buffer (see [`Connection::enable_output_from_input`]): below it the
/// copy is cheaper than a second piece in the write.
pub const OUTPUT_FROM_INPUT_MIN: usize = 64 * 1024;

/// Timer bookkeeping. Deadlines are computed lazily from the `now` given
/// to [`Connection::poll_timeout`] and [`Connection::handle_timeout`].
#[derive(Debug, Default)]
struct Timers {
    /// When bytes last arrived (or the connection started).
    last_rx: Option<Instant>,
    last_ping: Option<Instant>,
    close_deadline: Option<Instant>,
}

impl Connection {
    /// A connection that starts open, with nothing negotiated and nothing
    /// read yet.
    pub fn new(role: Role, config: impl Into<Arc<Config>>) -> Connection {
        Connection::with_negotiated(role, config, Negotiated::default(), &[])
    }

    /// A connection taking over after an opening handshake done elsewhere
    /// (chito's [`crate::handshake`], hyper, axum, an HTTP/2 extended
    /// CONNECT stream): `leftover` holds bytes that were read past the end
    /// of the handshake and already belong to the WebSocket stream.
    pub fn with_negotiated(
        role: Role,
        config: impl Into<Arc<Config>>,
        negotiated: Negotiated,
        leftover: &[u8],
    ) -> Connection {
        let config = config.into();
        #[cfg(feature = "deflate")]
        let (deflater, inflater, compress_threshold) = compression_for(role, &config, &negotiated);
        let mut conn = Connection {
            config,
            negotiated,
            rx: Rx {
                buf: Vec::new(),
                start: 0,
                end: 0,
                frame: None,
                message: None,
                assembled: Vec::new(),
                utf8: Utf8Validator::default(),
                release: Release::Nothing,
                activity: false,
                #[cfg(feature = "deflate")]
                inflater,
            },
            tx: Tx {
                role,
                state: State::Open,
                out: Vec::new(),
                out_pos: 0,
                rng: (role == Role::Client).then(|| Box::new(Rng::new())),
                sending: None,
                #[cfg(feature = "deflate")]
                deflater,
                #[cfg(feature = "deflate")]
                compress_threshold,
                #[cfg(feature = "deflate")]
                sending_compressed: false,
                output_from_input_min: 0,
                loan: 0..0,
                loan_mark: 0,
            },
            timers: Timers::default(),
            pending_error: None,
            ready: None,
            peer_responsive: true,
            awaiting_pong: false,
            deferred_pong: None,
        };
        if !leftover.is_empty() {
            conn.feed(leftover);
        }
        conn
    }

    /// Client or server.
    pub fn role(&self) -> Role {
        self.tx.role
    }

    /// The closing state.
    pub fn state(&self) -> State {
        self.tx.state
    }

    /// True once the close handshake is complete or the connection failed:
    /// flush [`Connection::pending_output`], then close the transport.
    pub fn is_closed(&self) -> bool {
        self.tx.state == State::Closed
    }

    /// Whether, once closed, it is worth waiting (up to the close timeout)
    /// for the peer to close the transport: true after a closing handshake
    /// or a protocol failure (the peer may still be sending; draining its
    /// input keeps our close frame from being lost to a reset), false after
    /// a timeout or end of stream (nobody is listening).
    pub fn should_linger(&self) -> bool {
        self.peer_responsive
    }

    /// What the handshake negotiated.
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// The limits in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    // ---- input -------------------------------------------------------

    /// Copies received bytes into the connection. Nothing is parsed until
    /// [`Connection::poll_event`].
    pub fn feed(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let space = self.reserve_input(data.len());
        let n = data.len().min(space.len());
        space[..n].copy_from_slice(&data[..n]);
        self.commit_read(n);
    }

    /// Free space at the end of the input buffer, at least
    /// [`Config::read_chunk_size`] bytes (more while a large frame is
    /// arriving, growing with what has actually arrived). Read from the
    /// transport into it, then call [`Connection::commit_read`] with the
    /// count. This avoids the copy [`Connection::feed`] makes.
    pub fn read_buf(&mut self) -> &mut [u8] {
        let want = self.read_hint();
        let limit = self.read_limit();
        let space = self.reserve_input(want);
        let n = space.len().min(limit);
        &mut space[..n]
    }

    /// While a large frame arrives, reads stop at its last byte. The next
    /// frame then starts in an emptied buffer, at offset 0, instead of
    /// being read in behind this one and moved to the front later: for
    /// back-to-back 1 MiB messages that move cost as much as the read.
    fn read_limit(&self) -> usize {
        let chunk = self.config.read_chunk_size.max(64);
        match self.frame_missing() {
            Some(missing) if missing >= chunk => missing,
            _ => usize::MAX,
        }
    }

    /// Payload bytes of the frame being received that have not arrived.
    fn frame_missing(&self) -> Option<usize> {
        let frame = self.rx.frame?;
        let have = self.rx.end.saturating_sub(frame.payload_at);
        Some(frame.len.saturating_sub(have))
    }

    /// Marks `n` bytes at the start of [`Connection::read_buf`] as received.
    pub fn commit_read(&mut self, n: usize) {
        let n = n.min(self.rx.buf.len() - self.rx.end);
        self.rx.end += n;
        if n > 0 {
            self.rx.activity = true;
        }
    }

    /// The transport reached end of stream. If the close handshake had not
    /// completed, the connection fails and the next
    /// [`Connection::poll_event`] reports an
    /// [`io::ErrorKind::UnexpectedEof`] error (close code 1006).
    pub fn handle_eof(&mut self) {
        self.release_delivered();
        self.peer_responsive = false;
        if self.tx.state != State::Closed {
            self.tx.state = State::Closed;
            self.pending_error = Some(Box::new(Error::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed by the peer without a close frame",
            ))));
        }
        self.rx.discard();
    }

    /// Ends the connection at once, without a closing handshake (a
    /// shutdown deadline, say): nothing more is sent or delivered, pending
    /// output is dropped, and [`Connection::should_linger`] turns false so
    /// the adapter closes the transport without waiting for the peer.
    pub fn abort(&mut self) {
        self.release_delivered();
        self.ready = None;
        self.tx.state = State::Closed;
        self.peer_responsive = false;
        self.tx.out.clear();
        self.tx.out_pos = 0;
        self.tx.loan = 0..0;
        self.rx.discard();
    }

    /// How much to read next: a chunk, or more while a big frame arrives.
    fn read_hint(&self) -> usize {
        let chunk = self.config.read_chunk_size.max(64);
        match self.frame_missing() {
            // While a big frame arrives, ask for as much as has arrived so
            // far (the buffer doubles), never trusting the declared length
            // for an allocation.
            Some(missing) => chunk.max(missing.min(self.rx.end - self.rx.start)),
            None => chunk,
        }
    }

    /// Makes at least `want` bytes of free space after `end` and returns it.
    fn reserve_input(&mut self, want: usize) -> &mut [u8] {
        self.release_delivered();
        // New input may overwrite the bytes pending output points into.
        self.copy_loaned_output();
        let rx = &mut self.rx;
        if rx.start == rx.end && rx.frame.is_none() {
            rx.start = 0;
            rx.end = 0;
        }
        if rx.buf.len() - rx.end < want && rx.start > 0 {
            // Move the unread bytes to the front.
            rx.buf.copy_within(rx.start..rx.end, 0);
            if let Some(frame) = rx.frame.as_mut() {
                frame.payload_at -= rx.start;
            }
            rx.end -= rx.start;
            rx.start = 0;
        }
        if rx.buf.len() - rx.end < want {
            // `resize` grows the capacity geometrically; use all of it.
            rx.buf.resize(rx.end + want, 0);
            let capacity = rx.buf.capacity();
            rx.buf.resize(capacity, 0);
        }
        let end = rx.end;
        &mut rx.buf[end..]
    }

    /// Drops what the previous event borrowed. An event that was prepared
    /// but not yet handed out keeps its bytes.
    fn release_delivered(&mut self) {
        if self.ready.is_some() {
            return;
        }
        match std::mem::replace(&mut self.rx.release, Release::Nothing) {
            Release::Nothing => {}
            Release::Input(upto) => self.rx.start = upto.max(self.rx.start),
            Release::Assembled => self.rx.assembled.clear(),
        }
    }

    // ---- events ------------------------------------------------------

    /// The next event, or `None` when more input is needed (or the
    /// connection is closed).
    ///
    /// # Errors
    /// - [`Error::Protocol`]: the peer broke the protocol. The close frame
    ///   with [`ProtocolError::close_code`] is already queued; flush the
    ///   output and close the transport. Returned once; afterwards `None`.
    /// - [`Error::Timeout`]: a timer expired (see [`Connection::handle_timeout`]).
    /// - [`Error::Io`] with `UnexpectedEof`: after [`Connection::handle_eof`]
    ///   on an unfinished connection.
    pub fn poll_event(&mut self) -> Result<Option<Event<'_>>, Error> {
        Ok(self.next_event()?.map(|(event, _)| event))
    }

    /// Like [`Connection::poll_event`], also handing back a [`Sender`] so
    /// a reply can be queued while the event is still borrowed:
    ///
    /// ```
    /// # use chito::{Connection, Role, Config, Event};
    /// # fn echo(conn: &mut Connection) -> Result<(), chito::Error> {
    /// while let Some((event, mut sender)) = conn.next_event()? {
    ///     if let Event::Text(text) = event {
    ///         sender.send_text(text)?;
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn next_event(&mut self) -> Result<Option<(Event<'_>, Sender<'_>)>, Error> {
        if !self.prepare_event()? {
            return Ok(None);
        }
        let Some(ready) = self.ready.take() else {
            return Ok(None);
        };
        let Connection { rx, tx, .. } = self;
        let mut lent: (&[u8], usize) = (&[], 0);
        let event = match ready {
            Ready::Data { kind, at } => {
                let bytes = rx.located(&at);
                if let Located::Input(range) = &at {
                    lent = (bytes, range.start);
                }
                match kind {
                    MessageKind::Binary => Event::Binary(bytes),
                    // RFC 6455 §8.1: text must be valid UTF-8. A message that
                    // arrived whole is validated here in one pass; one that
                    // arrived in pieces was already checked piece by piece
                    // (fail-fast), and this pass yields the `&str`.
                    MessageKind::Text => match simdutf8::basic::from_utf8(bytes) {
                        Ok(text) => Event::Text(text),
                        Err(_) => {
                            tx.fail(ProtocolError::InvalidUtf8);
                            return Err(Error::Protocol(ProtocolError::InvalidUtf8));
                        }
                    },
                }
            }
            Ready::Ping(range) => Event::Ping(rx.buf.get(range).unwrap_or_default()),
            Ready::Pong(range) => Event::Pong(rx.buf.get(range).unwrap_or_default()),
            Ready::Close(None) => Event::Close(None),
            Ready::Close(Some((code, range))) => {
                // The reason was validated in `on_close_frame`.
                let reason = rx.buf.get(range).unwrap_or_default();
                let reason = std::str::from_utf8(reason).unwrap_or_default();
                Event::Close(Some(CloseFrame::new(code, reason)))
            }
        };
        Ok(Some((
            event,
            Sender {
                tx,
                lent: lent.0,
                lent_at: lent.1,
            },
        )))
    }

    /// Processes input until an event is ready, without borrowing it:
    /// `Ok(true)` means the next [`Connection::next_event`] or
    /// [`Connection::poll_event`] returns `Some`. Useful to an I/O loop that
    /// must decide whether to read more before borrowing an event.
    ///
    /// # Errors
    /// As [`Connection::poll_event`].
    pub fn prepare_event(&mut self) -> Result<bool, Error> {
        if self.ready.is_some() {
            return Ok(true);
        }
        self.release_delivered();
        if let Some(error) = self.pending_error.take() {
            return Err(*error);
        }
        match self.process() {
            Ok(Some(ready)) => {
                self.ready = Some(ready);
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(error) => {
                self.tx.fail(error);
                self.rx.discard();
                Err(Error::Protocol(error))
            }
        }
    }

    /// Parses and checks input until something can be delivered.
    fn process(&mut self) -> Result<Option<Ready>, ProtocolError> {
        loop {
            if self.tx.state == State::Closed {
                // After the close handshake or a failure, input is ignored
                // (RFC 6455 §5.5.1: no frames follow a close frame).
                self.rx.discard();
                return Ok(None);
            }
            let frame = match self.rx.frame {
                Some(frame) => frame,
                None => {
                    let input = self
                        .rx
                        .buf
                        .get(self.rx.start..self.rx.end)
                        .unwrap_or_default();
                    let Some((header, header_len)) = FrameHeader::parse(input)? else {
                        return Ok(None);
                    };
                    let frame = self.check_header(&header, self.rx.start + header_len)?;
                    self.rx.frame = Some(frame);
                    frame
                }
            };
            let have = (self.rx.end - frame.payload_at).min(frame.len);

            if frame.opcode.is_control() {
                // Control payloads are at most 125 bytes: wait for all of it.
                if have < frame.len {
                    return Ok(None);
                }
                self.rx.frame = None;
                let range = frame.payload_at..frame.payload_at + frame.len;
                if let (Some(key), Some(payload)) = (frame.mask, self.rx.buf.get_mut(range.clone()))
                {
                    apply_mask(payload, key, 0);
                }
                self.rx.release = Release::Input(range.end);
                return self.on_control(frame.opcode, range).map(Some);
            }

            if have > frame.done {
                let piece = frame.payload_at + frame.done..frame.payload_at + have;
                if let Some(bytes) = self.rx.buf.get_mut(piece) {
                    if let Some(key) = frame.mask {
                        apply_mask(bytes, key, frame.done);
                    }
                    if frame.validate && self.rx.utf8.feed(bytes).is_err() {
                        return Err(ProtocolError::InvalidUtf8);
                    }
                }
                if frame.compressed {
                    self.inflate_piece(
                        frame.payload_at + frame.done..frame.payload_at + have,
                        frame.text,
                        false,
                    )?;
                }
                if let Some(current) = self.rx.frame.as_mut() {
                    current.done = have;
                }
            }
            if have < frame.len {
                return Ok(None);
            }

            // The frame is complete.
            self.rx.frame = None;
            let payload = frame.payload_at..frame.payload_at + frame.len;
            let message = match self.rx.message {
                None if frame.fin && !frame.compressed => {
                    // A whole message in one frame: hand it out in place.
                    let kind = kind_of(frame.opcode);
                    if frame.validate && self.rx.utf8.finish().is_err() {
                        return Err(ProtocolError::InvalidUtf8);
                    }
                    self.rx.release = Release::Input(payload.end);
                    return Ok(Some(Ready::Data {
                        kind,
                        at: Located::Input(payload),
                    }));
                }
                None => InMessage {
                    kind: kind_of(frame.opcode),
                    fragments: 1,
                    compressed: frame.compressed,
                },
                Some(message) => message,
            };
            if message.compressed {
                // The payload was inflated as it arrived; the message ends
                // with this frame's FIN (RFC 7692 §7.2.2).
                if frame.fin {
                    self.inflate_piece(payload.end..payload.end, frame.text, true)?;
                }
            } else {
                let bytes = self.rx.buf.get(payload.clone()).unwrap_or_default();
                self.rx.assembled.extend_from_slice(bytes);
            }
            self.rx.start = payload.end;
            if frame.fin {
                self.rx.message = None;
                if message.kind == MessageKind::Text && self.rx.utf8.finish().is_err() {
                    return Err(ProtocolError::InvalidUtf8);
                }
                self.rx.release = Release::Assembled;
                return Ok(Some(Ready::Data {
                    kind: message.kind,
                    at: Located::Assembled,
                }));
            }
            self.rx.message = Some(message);
        }
    }

    /// Applies the rules that depend on role, extensions and message state
    /// to a freshly parsed header (RFC 6455 §5.1–§5.5).
    fn check_header(
        &mut self,
        header: &FrameHeader,
        payload_at: usize,
    ) -> Result<InFrame, ProtocolError> {
        // §5.2: RSV1-3 MUST be 0 unless an extension defines them.
        // permessage-deflate defines RSV1 on the first frame of a data
        // message only (RFC 7692 §6: never on control frames or
        // continuation frames).
        if header.rsv2 || header.rsv3 || (header.rsv1 && !self.compression_negotiated()) {
            return Err(ProtocolError::ReservedBits);
        }
        if header.rsv1
            && matches!(
                header.opcode,
                OpCode::Continuation | OpCode::Close | OpCode::Ping | OpCode::Pong
            )
        {
            return Err(ProtocolError::UnexpectedCompression);
        }
        // §5.1: a server MUST close on an unmasked frame, a client on a
        // masked one.
        match (self.tx.role, header.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        let len = usize::try_from(header.payload_len).map_err(|_| ProtocolError::FrameTooBig)?;
        let mut validate = false;
        let mut compressed = header.rsv1;
        let mut text = header.opcode == OpCode::Text;
        if header.opcode.is_control() {
            // §5.5: control frames carry at most 125 bytes and are never
            // fragmented.
            if len > MAX_CONTROL_PAYLOAD {
                return Err(ProtocolError::ControlFrameTooLong);
            }
            if !header.fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
        } else {
            if len > self.config.max_frame_size {
                return Err(ProtocolError::FrameTooBig);
            }
            match (header.opcode, self.rx.message.as_mut()) {
                // §5.4: a continuation needs a message in progress, and a new
                // message cannot start inside one.
                (OpCode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
                (OpCode::Continuation, Some(message)) => {
                    message.fragments += 1;
                    if message.fragments > self.config.max_fragments {
                        return Err(ProtocolError::TooManyFragments);
                    }
                    compressed = message.compressed;
                    text = message.kind == MessageKind::Text;
                    // A compressed message's limit applies to the inflated
                    // size, checked while inflating.
                    if !compressed
                        && self.rx.assembled.len().saturating_add(len)
                            > self.config.max_message_size
                    {
                        return Err(ProtocolError::MessageTooBig);
                    }
                    validate = message.kind == MessageKind::Text && !compressed;
                }
                (_, Some(_)) => return Err(ProtocolError::ExpectedContinuation),
                (opcode, None) => {
                    if !compressed && len > self.config.max_message_size {
                        return Err(ProtocolError::MessageTooBig);
                    }
                    self.rx.utf8.reset();
                    self.rx.assembled.clear();
                    // A text frame whose payload is already all here is
                    // validated once, on delivery; otherwise it is checked
                    // piece by piece as bytes arrive, so invalid UTF-8 fails
                    // the connection at once (§8.1).
                    let complete_now = header.fin && self.rx.end - payload_at >= len;
                    validate = opcode == OpCode::Text && !complete_now && !compressed;
                }
            }
        }
        Ok(InFrame {
            opcode: header.opcode,
            fin: header.fin,
            mask: header.mask,
            payload_at,
            len,
            done: 0,
            validate,
            compressed,
            text,
        })
    }

    /// Whether permessage-deflate is in force on this connection.
    fn compression_negotiated(&self) -> bool {
        #[cfg(feature = "deflate")]
        {
            self.rx.inflater.is_some()
        }
        #[cfg(not(feature = "deflate"))]
        {
            false
        }
    }

    /// Inflates `buf[piece]` into the assembly buffer (RFC 7692 §6.2),
    /// bounded by the message size limit, and validates inflated text as
    /// it appears so invalid UTF-8 still fails fast. `fin` ends the message.
    #[cfg(feature = "deflate")]
    fn inflate_piece(
        &mut self,
        piece: Range<usize>,
        text: bool,
        fin: bool,
    ) -> Result<(), ProtocolError> {
        let Rx {
            buf,
            assembled,
            inflater,
            utf8,
            ..
        } = &mut self.rx;
        let Some(inflater) = inflater.as_mut() else {
            return Err(ProtocolError::ReservedBits);
        };
        let input = buf.get(piece).unwrap_or_default();
        let before = assembled.len();
        inflater
            .inflate(input, fin, assembled, self.config.max_message_size)
            .map_err(|e| match e {
                DeflateError::TooBig => ProtocolError::MessageTooBig,
                _ => ProtocolError::InvalidCompressedData,
            })?;
        if text {
            let grown = assembled.get(before..).unwrap_or_default();
            if utf8.feed(grown).is_err() || (fin && utf8.finish().is_err()) {
                return Err(ProtocolError::InvalidUtf8);
            }
        }
        Ok(())
    }

    #[cfg(not(feature = "deflate"))]
    fn inflate_piece(
        &mut self,
        _piece: Range<usize>,
        _text: bool,
        _fin: bool,
    ) -> Result<(), ProtocolError> {
        Err(ProtocolError::ReservedBits)
    }

    /// Handles a complete control frame whose payload is `buf[range]`.
    fn on_control(&mut self, opcode: OpCode, range: Range<usize>) -> Result<Ready, ProtocolError> {
        let payload = self.rx.buf.get(range.clone()).unwrap_or_default();
        match opcode {
            OpCode::Ping => {
                // §5.5.2: answer with a pong carrying the same payload.
                // While much output is waiting, only the latest ping's
                // pong is kept, and sent once the output drains (§5.5.3
                // allows answering only the most recent ping): a ping
                // flood from a peer that does not read cannot grow the
                // output, and no ping goes unanswered.
                if self.config.auto_pong && self.tx.state == State::Open {
                    if self.tx.buffered() <= self.config.max_pending_pong_bytes {
                        self.deferred_pong = None;
                        self.tx.write_frame(OpCode::Pong, true, payload);
                    } else {
                        let pong = self.deferred_pong.get_or_insert_with(|| {
                            Box::new(ControlPayload {
                                len: 0,
                                bytes: [0; MAX_CONTROL_PAYLOAD],
                            })
                        });
                        let n = payload.len().min(MAX_CONTROL_PAYLOAD);
                        pong.bytes[..n].copy_from_slice(&payload[..n]);
                        pong.len = n as u8;
                    }
                }
                Ok(Ready::Ping(range))
            }
            OpCode::Pong => Ok(Ready::Pong(range)),
            _ => self.on_close_frame(range),
        }
    }

    /// §5.5.1 and §7.4: validate the peer's close frame, answer it if we
    /// have not closed yet, and finish the closing handshake.
    fn on_close_frame(&mut self, range: Range<usize>) -> Result<Ready, ProtocolError> {
        let payload = self.rx.buf.get(range.clone()).unwrap_or_default();
        let close = match payload {
            [] => None,
            [_] => return Err(ProtocolError::InvalidClosePayload),
            [high, low, reason @ ..] => {
                let code = CloseCode::from_u16(u16::from_be_bytes([*high, *low]));
                if !code.is_sendable() {
                    return Err(ProtocolError::InvalidCloseCode(code.as_u16()));
                }
                if simdutf8::basic::from_utf8(reason).is_err() {
                    return Err(ProtocolError::InvalidUtf8);
                }
                Some((code, range.start + 2..range.end))
            }
        };
        if self.tx.state == State::Open {
            // Echo the code, as §5.5.1 suggests, without the reason.
            match close {
                Some((code, _)) => {
                    self.tx
                        .write_frame(OpCode::Close, true, &code.as_u16().to_be_bytes())
                }
                None => self.tx.write_frame(OpCode::Close, true, &[]),
            }
        }
        self.tx.state = State::Closed;
        self.rx.start = self.rx.end;
        Ok(Ready::Close(close))
    }

    // ---- output ------------------------------------------------------

    /// The write half, for sending while no event is borrowed.
    pub fn sender(&mut self) -> Sender<'_> {
        self.release_delivered();
        Sender {
            tx: &mut self.tx,
            lent: &[],
            lent_at: 0,
        }
    }

    /// Queues a text message. See [`Sender::send_text`].
    pub fn send_text(&mut self, text: &str) -> Result<(), UsageError> {
        self.sender().send_text(text)
    }

    /// Queues a binary message. See [`Sender::send_binary`].
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), UsageError> {
        self.sender().send_binary(data)
    }

    /// Queues a message. See [`Sender::send`].
    pub fn send(&mut self, message: Message<'_>) -> Result<(), UsageError> {
        self.sender().send(message)
    }

    /// Queues one fragment of a message. See [`Sender::send_fragment`].
    pub fn send_fragment(
        &mut self,
        kind: MessageKind,
        data: &[u8],
        fin: bool,
    ) -> Result<(), UsageError> {
        self.sender().send_fragment(kind, data, fin)
    }

    /// Queues a ping. See [`Sender::send_ping`].
    pub fn send_ping(&mut self, payload: &[u8]) -> Result<(), UsageError> {
        self.sender().send_ping(payload)
    }

    /// Queues a pong. See [`Sender::send_pong`].
    pub fn send_pong(&mut self, payload: &[u8]) -> Result<(), UsageError> {
        self.sender().send_pong(payload)
    }

    /// Starts the closing handshake. See [`Sender::close`].
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), UsageError> {
        self.sender().close(code, reason)
    }

    /// Queues a frame that was encoded elsewhere — typically once for many
    /// connections (a broadcast) — as the next message, copying its bytes
    /// into the output buffer. The caller vouches for the encoding: an
    /// unmasked server frame (`Role::Server` only), FIN set, and RSV1 only
    /// if this connection negotiated permessage-deflate without server
    /// context takeover and a window at least as large as the one used.
    ///
    /// # Errors
    /// After close, or while a fragmented message is being sent.
    pub fn send_encoded_frame(&mut self, frame: &[u8]) -> Result<(), UsageError> {
        self.release_delivered();
        self.tx.check_open()?;
        if self.tx.sending.is_some() {
            return Err(UsageError::FragmentInProgress);
        }
        self.tx.out.extend_from_slice(frame);
        Ok(())
    }

    /// Encoded bytes waiting to be written to the transport: all of them,
    /// unless [`Connection::enable_output_from_input`] was called, in which
    /// case this is the first of up to three pieces. Write it, call
    /// [`Connection::consume_output`], repeat until empty.
    pub fn pending_output(&self) -> &[u8] {
        self.output_pieces()
            .into_iter()
            .find(|piece| !piece.is_empty())
            .unwrap_or_default()
    }

    /// All pending output as up to three slices, in order, for one vectored
    /// write; returns how many of `bufs` were filled (only non-empty
    /// slices). Report what was written with [`Connection::consume_output`].
    pub fn pending_output_vectored<'a>(&'a self, bufs: &mut [io::IoSlice<'a>]) -> usize {
        let mut filled = 0;
        for (slot, piece) in bufs
            .iter_mut()
            .zip(self.output_pieces().into_iter().filter(|p| !p.is_empty()))
        {
            *slot = io::IoSlice::new(piece);
            filled += 1;
        }
        filled
    }

    /// Pending output in wire order: the output buffer up to the loan, the
    /// loaned input bytes, the rest of the output buffer (without a loan,
    /// all of it is the first piece).
    fn output_pieces(&self) -> [&[u8]; 3] {
        let tx = &self.tx;
        let mark = if tx.loan.is_empty() {
            tx.out.len()
        } else {
            tx.loan_mark
        };
        [
            tx.out.get(tx.out_pos..mark).unwrap_or_default(),
            self.rx.buf.get(tx.loan.clone()).unwrap_or_default(),
            tx.out.get(mark..).unwrap_or_default(),
        ]
    }

    /// Lets a message of at least `min_len` bytes (the adapters use
    /// [`OUTPUT_FROM_INPUT_MIN`]) that is sent straight back from a
    /// received one — `sender.send(message)` inside the event's borrow, as
    /// an echo or relay does — go out from the input buffer instead of
    /// being copied into the output buffer. The driver must
    /// then write with [`Connection::pending_output_vectored`] (or loop on
    /// [`Connection::pending_output`], which returns one piece at a time),
    /// and should write before reading: input arriving while such output
    /// is pending makes the connection copy it after all. Servers only (a
    /// client masks every frame, so it copies anyway).
    pub fn enable_output_from_input(&mut self, min_len: usize) {
        self.tx.output_from_input_min = min_len.clamp(1, u32::MAX as usize) as u32;
    }

    /// True while pending output points into the input buffer (see
    /// [`Connection::enable_output_from_input`]): reading now would cost a
    /// copy of that output.
    pub fn output_borrows_input(&self) -> bool {
        !self.tx.loan.is_empty()
    }

    /// Moves output that points into the input buffer into the output
    /// buffer, before the input buffer is reused or given away.
    fn copy_loaned_output(&mut self) {
        if self.tx.loan.is_empty() {
            return;
        }
        let range = std::mem::replace(&mut self.tx.loan, 0..0);
        let mark = self.tx.loan_mark;
        let bytes = self.rx.buf.get(range).unwrap_or_default();
        let out = &mut self.tx.out;
        let (n, old) = (bytes.len(), out.len());
        out.resize(old + n, 0);
        out.copy_within(mark..old, mark + n);
        if let Some(slot) = out.get_mut(mark..mark + n) {
            slot.copy_from_slice(bytes);
        }
    }

    /// Marks the first `n` bytes of [`Connection::pending_output`] as
    /// written. This can queue more output (a pong that waited for the
    /// output to drain), so write until `pending_output` is empty.
    pub fn consume_output(&mut self, n: usize) {
        self.tx.consume(n);
        if self.deferred_pong.is_some() && self.tx.buffered() <= self.config.max_pending_pong_bytes
        {
            if let Some(pong) = self.deferred_pong.take() {
                if self.tx.state == State::Open {
                    let payload = pong.bytes.get(..pong.len as usize).unwrap_or_default();
                    self.tx.write_frame(OpCode::Pong, true, payload);
                }
            }
        }
    }

    /// How many bytes wait in the output buffer.
    pub fn buffered_amount(&self) -> usize {
        self.tx.buffered()
    }

    /// Frees the input, assembly and output buffers if they hold nothing,
    /// so an idle connection costs only its fixed state. Call it when the
    /// transport has nothing to read and the output is drained; buffers are
    /// allocated again on demand.
    pub fn release_idle_buffers(&mut self) {
        self.release_delivered();
        self.copy_loaned_output();
        let rx = &mut self.rx;
        if rx.start == rx.end && rx.frame.is_none() {
            rx.buf = Vec::new();
            rx.start = 0;
            rx.end = 0;
        }
        if rx.message.is_none() {
            rx.assembled = Vec::new();
        }
        if self.tx.buffered() == 0 {
            self.tx.out = Vec::new();
            self.tx.out_pos = 0;
        }
        #[cfg(feature = "deflate")]
        {
            if let Some(deflater) = self.tx.deflater.as_mut() {
                deflater.release_idle();
            }
            if let Some(inflater) = self.rx.inflater.as_mut() {
                inflater.release_idle();
            }
        }
    }

    /// Bytes of compression state (zlib windows and tables) this connection
    /// holds now: zero without permessage-deflate, and zero between
    /// messages in a direction without context takeover (states are
    /// borrowed from a per-thread pool for the length of a message).
    pub fn compression_memory(&self) -> usize {
        #[cfg(feature = "deflate")]
        {
            self.tx.deflater.as_ref().map_or(0, |d| d.memory_estimate())
                + self.rx.inflater.as_ref().map_or(0, |i| i.memory_estimate())
        }
        #[cfg(not(feature = "deflate"))]
        {
            0
        }
    }

    /// True while bytes of an unfinished frame (or undelivered input) sit
    /// in the input buffer, so more input must go into that buffer.
    pub fn input_pending(&self) -> bool {
        self.rx.start < self.rx.end || self.rx.frame.is_some() || self.ready.is_some()
    }

    /// Like [`Connection::release_idle_buffers`], but hands each freed
    /// buffer (cleared, capacity kept) to `recycle`, e.g. a per-thread
    /// pool, instead of dropping it.
    pub fn recycle_idle_buffers(&mut self, recycle: &mut dyn FnMut(Vec<u8>)) {
        self.release_delivered();
        self.copy_loaned_output();
        if self.ready.is_none()
            && self.rx.start == self.rx.end
            && self.rx.frame.is_none()
            && self.rx.buf.capacity() > 0
        {
            // Handed back filled to capacity (initialised bytes), so the
            // next user need not zero it again.
            let mut buf = std::mem::take(&mut self.rx.buf);
            let capacity = buf.capacity();
            buf.resize(capacity, 0);
            recycle(buf);
            self.rx.start = 0;
            self.rx.end = 0;
        }
        if self.tx.buffered() == 0 && self.tx.out.capacity() > 0 {
            let mut out = std::mem::take(&mut self.tx.out);
            out.clear();
            self.tx.out_pos = 0;
            recycle(out);
        }
        if self.rx.message.is_none() && self.ready.is_none() && self.rx.assembled.capacity() > 0 {
            let mut assembled = std::mem::take(&mut self.rx.assembled);
            assembled.clear();
            recycle(assembled);
        }
    }

    /// Gives the connection a buffer (from a pool, say) to use for input if
    /// it has none allocated; otherwise hands it back.
    pub fn provide_input_buffer(&mut self, mut buf: Vec<u8>) -> Option<Vec<u8>> {
        if self.rx.buf.capacity() > 0 || self.rx.start != self.rx.end {
            return Some(buf);
        }
        // Only bytes never initialised are zeroed (a buffer from a pool of
        // input buffers is already full length).
        let capacity = buf.capacity();
        buf.resize(capacity, 0);
        self.rx.buf = buf;
        self.rx.start = 0;
        self.rx.end = 0;
        None
    }

    /// Gives the connection a buffer to encode output into if it has none
    /// allocated; otherwise hands it back.
    pub fn provide_output_buffer(&mut self, mut buf: Vec<u8>) -> Option<Vec<u8>> {
        if self.tx.out.capacity() > 0 || self.tx.buffered() > 0 {
            return Some(buf);
        }
        buf.clear();
        self.tx.out = buf;
        self.tx.out_pos = 0;
        None
    }

    /// Whether the connection has an input buffer / an output buffer
    /// allocated.
    pub fn has_buffers(&self) -> (bool, bool) {
        (self.rx.buf.capacity() > 0, self.tx.out.capacity() > 0)
    }

    /// Bytes currently allocated for buffers (input, assembly, output).
    pub fn buffer_capacity(&self) -> usize {
        self.rx.buf.capacity() + self.rx.assembled.capacity() + self.tx.out.capacity()
    }

    // ---- time --------------------------------------------------------

    /// Whether any timer can run: false while the connection is open with
    /// neither a keepalive nor an idle timeout configured (and when it is
    /// closed). Then [`Connection::poll_timeout`] would return `None`, so
    /// a driver may skip reading the clock.
    pub fn timers_active(&self) -> bool {
        let c = &self.config;
        match self.tx.state {
            State::Open => {
                self.awaiting_pong || c.ping_interval.is_some() || c.idle_timeout.is_some()
            }
            State::Closing => true,
            State::Closed => false,
        }
    }

    /// When [`Connection::handle_timeout`] should next be called, or `None`
    /// if no timer runs. Call it after feeding input, sending, or handling
    /// a timeout, with the current time.
    pub fn poll_timeout(&mut self, now: Instant) -> Option<Instant> {
        self.note_activity(now);
        let pong_deadline = self.pong_deadline();
        let t = &mut self.timers;
        let c = &self.config;
        if self.tx.state == State::Closing && t.close_deadline.is_none() {
            t.close_deadline = Some(now + c.close_timeout);
        }
        if self.tx.state == State::Closed {
            return None;
        }
        let last_rx = t.last_rx.unwrap_or(now);
        let mut next: Option<Instant> = t.close_deadline;
        let mut consider = |deadline: Option<Instant>| {
            if let Some(d) = deadline {
                next = Some(next.map_or(d, |n| n.min(d)));
            }
        };
        consider(pong_deadline);
        if self.tx.state == State::Open {
            if let Some(interval) = c.ping_interval {
                if pong_deadline.is_none() {
                    let since = t.last_ping.map_or(last_rx, |p| p.max(last_rx));
                    consider(Some(since + interval));
                }
            }
            if let Some(idle) = c.idle_timeout {
                consider(Some(last_rx + idle));
            }
        }
        next
    }

    /// Runs the timers due at `now`: sends keepalive pings, closes idle
    /// connections (1001), and fails connections whose peer stopped
    /// answering (reported by the next [`Connection::poll_event`] as
    /// [`Error::Timeout`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.note_activity(now);
        if self.tx.state == State::Closed {
            return;
        }
        let pong_deadline = self.pong_deadline();
        let t = &mut self.timers;
        let c = &self.config;
        let expired = |deadline: Option<Instant>| deadline.is_some_and(|d| d <= now);
        if expired(t.close_deadline) {
            self.peer_responsive = false;
            self.tx.state = State::Closed;
            self.pending_error = Some(Box::new(Error::Timeout(Timeout::CloseHandshake)));
            return;
        }
        if expired(pong_deadline) {
            // The peer is gone or stuck; a close frame would not be read.
            self.peer_responsive = false;
            self.tx.state = State::Closed;
            self.pending_error = Some(Box::new(Error::Timeout(Timeout::Keepalive)));
            return;
        }
        if self.tx.state != State::Open {
            return;
        }
        let last_rx = t.last_rx.unwrap_or(now);
        if let Some(idle) = c.idle_timeout {
            if last_rx + idle <= now {
                self.tx.write_close(CloseCode::GoingAway, "idle timeout");
                t.close_deadline = Some(now + c.close_timeout);
                return;
            }
        }
        if let Some(interval) = c.ping_interval {
            let since = t.last_ping.map_or(last_rx, |p| p.max(last_rx));
            if !self.awaiting_pong && since + interval <= now {
                self.tx.write_frame(OpCode::Ping, true, b"chito");
                t.last_ping = Some(now);
                self.awaiting_pong = true;
            }
        }
    }

    /// When the outstanding keepalive ping, if any, stops being answerable.
    fn pong_deadline(&self) -> Option<Instant> {
        let sent = self.timers.last_ping.filter(|_| self.awaiting_pong)?;
        Some(sent + self.config.pong_timeout)
    }

    /// Any input proves the peer alive: it restarts the idle clock and
    /// satisfies an outstanding keepalive ping.
    fn note_activity(&mut self, now: Instant) {
        if self.rx.activity || self.timers.last_rx.is_none() {
            self.rx.activity = false;
            self.timers.last_rx = Some(now);
            self.awaiting_pong = false;
        }
    }
}

/// The compressor and decompressor a connection needs for what was
/// negotiated, and its compression threshold.
#[cfg(feature = "deflate")]
fn compression_for(
    role: Role,
    config: &Config,
    negotiated: &Negotiated,
) -> (Option<Box<Deflater>>, Option<Box<Inflater>>, usize) {
    let Some(params) = negotiated.deflate else {
        return (None, None, 0);
    };
    let settings = config.deflate.clone().unwrap_or_default();
    // A compressor that cannot be built (it would need a window zlib lacks)
    // leaves messages uncompressed, which RFC 7692 §6 always allows.
    let deflater = params
        .deflater(role, settings.effective_level())
        .ok()
        .map(Box::new);
    (
        deflater,
        Some(Box::new(params.inflater(role))),
        settings.threshold,
    )
}

fn kind_of(opcode: OpCode) -> MessageKind {
    if opcode == OpCode::Text {
        MessageKind::Text
    } else {
        MessageKind::Binary
    }
}

impl Rx {
    /// Forgets all buffered input and any message in progress.
    fn discard(&mut self) {
        self.start = self.end;
        self.frame = None;
        self.message = None;
        self.assembled.clear();
        self.release = Release::Nothing;
    }

    fn located(&self, at: &Located) -> &[u8] {
        match at {
            Located::Input(range) => self.buf.get(range.clone()).unwrap_or_default(),
            Located::Assembled => &self.assembled,
        }
    }
}

impl Tx {
    fn buffered(&self) -> usize {
        self.out.len() - self.out_pos + self.loan.len()
    }

    fn consume(&mut self, mut n: usize) {
        if !self.loan.is_empty() {
            let before = self.loan_mark.saturating_sub(self.out_pos).min(n);
            self.out_pos += before;
            n -= before;
            if self.out_pos < self.loan_mark {
                return;
            }
            let loaned = n.min(self.loan.len());
            self.loan.start += loaned;
            n -= loaned;
            if !self.loan.is_empty() {
                return;
            }
        }
        self.out_pos = (self.out_pos + n).min(self.out.len());
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
    }

    fn check_open(&self) -> Result<(), UsageError> {
        match self.state {
            State::Open => Ok(()),
            State::Closing => Err(UsageError::AlreadyClosing),
            State::Closed => Err(UsageError::Closed),
        }
    }

    /// Encodes one frame into the output buffer: header, payload copy, and
    /// for a client a fresh masking key applied in place (§5.3).
    fn write_frame(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) {
        let mut header = FrameHeader::new(opcode, payload.len() as u64);
        header.fin = fin;
        if let Some(rng) = self.rng.as_mut() {
            header.mask = Some(rng.mask_key());
        }
        let mut head = [0u8; MAX_HEADER_LEN];
        let head_len = header.encode(&mut head);
        self.out.reserve(head_len + payload.len());
        self.out.extend_from_slice(&head[..head_len]);
        let at = self.out.len();
        self.out.extend_from_slice(payload);
        if let (Some(key), Some(bytes)) = (header.mask, self.out.get_mut(at..)) {
            apply_mask(bytes, key, 0);
        }
    }

    /// Encodes a data frame, compressed when permessage-deflate is in force
    /// and the message qualifies (RFC 7692 §6.1: RSV1 on the first frame of
    /// a compressed message only).
    fn write_data(
        &mut self,
        opcode: OpCode,
        fin: bool,
        data: &[u8],
        from_input: Option<Range<usize>>,
    ) -> Result<(), UsageError> {
        #[cfg(feature = "deflate")]
        {
            let first = opcode != OpCode::Continuation;
            if first {
                // A whole message below the threshold goes uncompressed; a
                // fragmented one is compressed (its size is not known yet).
                let whole = fin;
                self.sending_compressed =
                    self.deflater.is_some() && (!whole || data.len() >= self.compress_threshold);
            }
            if self.sending_compressed {
                if self.write_compressed(opcode, fin, first, data) {
                    return Ok(());
                }
                if first && fin {
                    // RSV1 is per message: this one simply goes uncompressed.
                    self.sending_compressed = false;
                } else {
                    // The compressed stream of a fragmented message cannot
                    // be continued; end the connection cleanly instead.
                    self.sending = None;
                    self.write_close(CloseCode::InternalError, "compression failed");
                    return Err(UsageError::AlreadyClosing);
                }
            }
        }
        match from_input {
            Some(range) if self.rng.is_none() && self.loan.is_empty() => {
                self.write_header_for_input(opcode, fin, range);
            }
            _ => self.write_frame(opcode, fin, data),
        }
        Ok(())
    }

    /// Encodes only the header of a frame whose payload is `rx.buf[range]`
    /// (see [`Connection::enable_output_from_input`]); the payload is
    /// written from there. A server does not mask (RFC 6455 §5.1), so the
    /// received bytes go out as they are.
    fn write_header_for_input(&mut self, opcode: OpCode, fin: bool, range: Range<usize>) {
        let mut header = FrameHeader::new(opcode, range.len() as u64);
        header.fin = fin;
        let mut head = [0u8; MAX_HEADER_LEN];
        let head_len = header.encode(&mut head);
        self.out.extend_from_slice(&head[..head_len]);
        self.loan_mark = self.out.len();
        self.loan = range;
    }

    /// Compresses `data` straight into the output buffer behind a
    /// maximum-size header slot, then closes the gap once the length is
    /// known. Returns false (output unchanged) if the compressor failed.
    #[cfg(feature = "deflate")]
    fn write_compressed(&mut self, opcode: OpCode, fin: bool, rsv1: bool, data: &[u8]) -> bool {
        let Some(deflater) = self.deflater.as_mut() else {
            return false;
        };
        let at = self.out.len();
        self.out.resize(at + MAX_HEADER_LEN, 0);
        if deflater.compress(data, fin, &mut self.out).is_err() {
            self.out.truncate(at);
            return false;
        }
        let body_len = self.out.len() - at - MAX_HEADER_LEN;
        let mut header = FrameHeader::new(opcode, body_len as u64);
        header.fin = fin;
        header.rsv1 = rsv1;
        if let Some(rng) = self.rng.as_mut() {
            header.mask = Some(rng.mask_key());
        }
        let mut head = [0u8; MAX_HEADER_LEN];
        let head_len = header.encode(&mut head);
        self.out.copy_within(at + MAX_HEADER_LEN.., at + head_len);
        self.out.truncate(at + head_len + body_len);
        if let Some(slot) = self.out.get_mut(at..at + head_len) {
            slot.copy_from_slice(&head[..head_len]);
        }
        if let (Some(key), Some(body)) = (header.mask, self.out.get_mut(at + head_len..)) {
            apply_mask(body, key, 0);
        }
        true
    }

    fn write_close(&mut self, code: CloseCode, reason: &str) {
        let mut body = [0u8; 2 + MAX_CLOSE_REASON];
        let reason = truncate_utf8(reason, MAX_CLOSE_REASON);
        body[..2].copy_from_slice(&code.as_u16().to_be_bytes());
        body[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
        self.write_frame(OpCode::Close, true, &body[..2 + reason.len()]);
        self.state = State::Closing;
    }

    /// _Fail the WebSocket Connection_ (§7.1.7): send a close frame with the
    /// violation's code if none was sent yet, and stop.
    fn fail(&mut self, error: ProtocolError) {
        if self.state == State::Open {
            self.write_close(error.close_code(), error.reason());
        }
        self.state = State::Closed;
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a
/// character boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The write half of a [`Connection`]: queues frames into its output
/// buffer. Obtained from [`Connection::sender`] or alongside an event from
/// [`Connection::next_event`].
#[derive(Debug)]
pub struct Sender<'a> {
    tx: &'a mut Tx,
    /// The payload of the event this sender came with, if it lies in the
    /// input buffer (at `rx.buf[lent_at..]`): sent back as is, it need not
    /// be copied (see [`Connection::enable_output_from_input`]).
    lent: &'a [u8],
    lent_at: usize,
}

impl Sender<'_> {
    /// Queues a text message in one frame.
    ///
    /// # Errors
    /// [`UsageError::AlreadyClosing`]/[`UsageError::Closed`] after a close
    /// frame was sent; [`UsageError::FragmentInProgress`] while a fragmented
    /// message is being sent.
    pub fn send_text(&mut self, text: &str) -> Result<(), UsageError> {
        self.send_whole(MessageKind::Text, text.as_bytes())
    }

    /// Queues a binary message in one frame. Errors as [`Sender::send_text`].
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), UsageError> {
        self.send_whole(MessageKind::Binary, data)
    }

    /// Queues a message in one frame. Errors as [`Sender::send_text`].
    pub fn send(&mut self, message: Message<'_>) -> Result<(), UsageError> {
        self.send_whole(message.kind(), message.as_bytes())
    }

    fn send_whole(&mut self, kind: MessageKind, data: &[u8]) -> Result<(), UsageError> {
        if self.tx.sending.is_some() {
            self.tx.check_open()?;
            return Err(UsageError::FragmentInProgress);
        }
        self.send_fragment(kind, data, true)
    }

    /// Queues one fragment of a message (RFC 6455 §5.4). The first call
    /// starts a message of `kind`; later calls continue it until one with
    /// `fin` set ends it. Pings, pongs and close may be sent between
    /// fragments. For text, the concatenated fragments must be UTF-8; a
    /// fragment boundary may fall inside a character.
    ///
    /// # Errors
    /// As [`Sender::send_text`], plus [`UsageError::FragmentInProgress`]
    /// when `kind` differs from the message in progress.
    pub fn send_fragment(
        &mut self,
        kind: MessageKind,
        data: &[u8],
        fin: bool,
    ) -> Result<(), UsageError> {
        self.tx.check_open()?;
        let opcode = match self.tx.sending {
            None => match kind {
                MessageKind::Text => OpCode::Text,
                MessageKind::Binary => OpCode::Binary,
            },
            Some(current) if current == kind => OpCode::Continuation,
            Some(_) => return Err(UsageError::FragmentInProgress),
        };
        // The very bytes lent (same address and length), not a copy or a
        // part of them.
        let min = self.tx.output_from_input_min;
        let from_input = (min > 0 && data.len() >= min as usize && std::ptr::eq(data, self.lent))
            .then(|| self.lent_at..self.lent_at + data.len());
        self.tx.write_data(opcode, fin, data, from_input)?;
        self.tx.sending = if fin { None } else { Some(kind) };
        Ok(())
    }

    /// Queues a ping.
    ///
    /// # Errors
    /// [`UsageError::ControlPayloadTooLong`] over 125 bytes (§5.5), or
    /// after close.
    pub fn send_ping(&mut self, payload: &[u8]) -> Result<(), UsageError> {
        self.control(OpCode::Ping, payload)
    }

    /// Queues an unsolicited pong (a heartbeat, §5.5.3). Errors as
    /// [`Sender::send_ping`].
    pub fn send_pong(&mut self, payload: &[u8]) -> Result<(), UsageError> {
        self.control(OpCode::Pong, payload)
    }

    fn control(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), UsageError> {
        self.tx.check_open()?;
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(UsageError::ControlPayloadTooLong);
        }
        self.tx.write_frame(opcode, true, payload);
        Ok(())
    }

    /// Starts the closing handshake (§7.1.2): queues a close frame. Incoming
    /// messages are still delivered until the peer's close arrives.
    ///
    /// # Errors
    /// [`UsageError::UnsendableCloseCode`] for 1005, 1006, 1015 and reserved
    /// codes; [`UsageError::CloseReasonTooLong`] over 123 bytes; or if a
    /// close was already sent.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), UsageError> {
        self.tx.check_open()?;
        if !code.is_sendable() {
            return Err(UsageError::UnsendableCloseCode(code.as_u16()));
        }
        if reason.len() > MAX_CLOSE_REASON {
            return Err(UsageError::CloseReasonTooLong);
        }
        self.tx.write_close(code, reason);
        Ok(())
    }

    /// How many bytes wait in the output buffer.
    pub fn buffered_amount(&self) -> usize {
        self.tx.buffered()
    }

    /// The closing state.
    pub fn state(&self) -> State {
        self.tx.state
    }
}

#[cfg(test)]
mod size_guard {
    /// An idle connection's fixed cost is this struct (buffers are released
    /// when idle): keep it small. Compression state and the client's RNG
    /// are boxed so connections without them do not pay for them.
    #[test]
    fn connection_state_stays_small() {
        let size = std::mem::size_of::<super::Connection>();
        assert!(size <= 400, "Connection grew to {size} bytes");
    }
}
