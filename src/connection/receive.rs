//! The receive path: frames in, events out (RFC 6455 §5.1–§5.5, §7.4,
//! §8.1; RFC 7692 §6.2). Header rules by role, extension and message
//! state; unmasking in place; fail-fast UTF-8; assembly of fragments;
//! inflation of compressed messages; answers to pings and close frames.

use std::ops::Range;

use super::error::{ConnectionError, ProtocolError};
use super::event::{Event, MessageKind};
use super::send::Sender;
use super::{Connection, State};
use crate::close::{CloseCode, CloseFrame};
#[cfg(feature = "deflate")]
use crate::deflate::{DeflateError, Inflater};
use crate::frame::{FrameHeader, OpCode, MAX_CONTROL_PAYLOAD};
use crate::mask::apply_mask;
use crate::role::Role;
use crate::utf8::Utf8Validator;

/// The read side: input buffer, the frame and message being received.
#[derive(Debug)]
pub(super) struct Rx {
    /// Input bytes live in `buf[start..end]`; the whole vector is
    /// initialised so reads can go straight into `buf[end..]`.
    pub(super) buf: Vec<u8>,
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) frame: Option<InFrame>,
    pub(super) message: Option<InMessage>,
    /// A fragmented message is assembled here.
    pub(super) assembled: Vec<u8>,
    utf8: Utf8Validator,
    /// What the last event borrowed, dropped on the next `&mut` call.
    pub(super) release: Release,
    /// Set when bytes arrive; consumed by the timers.
    pub(super) activity: bool,
    /// Decompresses messages with RSV1 set (RFC 7692 §6.2), if negotiated.
    /// Boxed: most connections never negotiate compression.
    #[cfg(feature = "deflate")]
    pub(super) inflater: Option<Box<Inflater>>,
}

/// A frame whose header has been parsed.
#[derive(Debug, Clone, Copy)]
pub(super) struct InFrame {
    opcode: OpCode,
    fin: bool,
    mask: Option<[u8; 4]>,
    /// Absolute index of the payload in `Rx::buf`.
    pub(super) payload_at: usize,
    pub(super) len: usize,
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
pub(super) struct InMessage {
    kind: MessageKind,
    /// Frames so far (saturating; the limit is far below 2^32).
    fragments: u32,
    compressed: bool,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Release {
    Nothing,
    /// The event borrowed `buf[..upto]`; input resumes there.
    Input(usize),
    /// The event borrowed the assembled message.
    Assembled,
}

/// What `process` found, located but not yet borrowed.
#[derive(Debug)]
pub(super) enum Ready {
    Data { kind: MessageKind, at: Located },
    Ping(Range<usize>),
    Pong(Range<usize>),
    Close(Option<(CloseCode, Range<usize>)>),
}

#[derive(Debug, Clone)]
pub(super) enum Located {
    Input(Range<usize>),
    Assembled,
}

/// A control frame's payload, stored without a second allocation.
#[derive(Debug)]
pub(super) struct ControlPayload {
    len: u8,
    bytes: [u8; MAX_CONTROL_PAYLOAD],
}

impl ControlPayload {
    fn set(&mut self, payload: &[u8]) {
        // §5.5: a control payload is at most 125 bytes, checked in
        // `check_header` before any control frame gets here.
        debug_assert!(payload.len() <= MAX_CONTROL_PAYLOAD);
        let mut len = 0u8;
        for (slot, byte) in self.bytes.iter_mut().zip(payload) {
            *slot = *byte;
            len += 1;
        }
        self.len = len;
    }

    pub(super) fn get(&self) -> &[u8] {
        self.bytes.split_at(usize::from(self.len)).0
    }
}

impl Rx {
    pub(super) fn new(#[cfg(feature = "deflate")] inflater: Option<Box<Inflater>>) -> Rx {
        Rx {
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
        }
    }

    /// Forgets all buffered input and any message in progress.
    pub(super) fn discard(&mut self) {
        self.start = self.end;
        self.frame = None;
        self.message = None;
        self.assembled.clear();
        self.release = Release::Nothing;
    }

    /// `buf[range]`, for a range of received input.
    #[inline]
    pub(super) fn bytes(&self, range: Range<usize>) -> &[u8] {
        received(&self.buf, self.end, range)
    }

    fn located(&self, at: &Located) -> &[u8] {
        match at {
            Located::Input(range) => self.bytes(range.clone()),
            Located::Assembled => &self.assembled,
        }
    }
}

/// `buf[range]` for a range of received input. The receive path forms
/// ranges only from `start`, `end` and frame offsets that lie within them,
/// so every range is in bounds; the assertion makes that invariant visible.
#[inline]
fn received(buf: &[u8], end: usize, range: Range<usize>) -> &[u8] {
    debug_assert!(
        range.start <= range.end && range.end <= end,
        "{range:?} outside the input (end {end})"
    );
    buf.get(range).unwrap_or_default()
}

/// [`received`], mutably (for unmasking in place).
#[inline]
fn received_mut(buf: &mut [u8], end: usize, range: Range<usize>) -> &mut [u8] {
    debug_assert!(
        range.start <= range.end && range.end <= end,
        "{range:?} outside the input (end {end})"
    );
    buf.get_mut(range).unwrap_or_default()
}

fn kind_of(opcode: OpCode) -> MessageKind {
    if opcode == OpCode::Text {
        MessageKind::Text
    } else {
        MessageKind::Binary
    }
}

impl Connection {
    /// The next event, with a [`Sender`] so a reply can be queued while the
    /// event is still borrowed; `None` when more input is needed (or the
    /// connection is closed).
    ///
    /// ```
    /// # use chito::{Connection, Event, Message};
    /// # fn echo(conn: &mut Connection) -> Result<(), Box<dyn std::error::Error>> {
    /// while let Some((event, mut sender)) = conn.poll_event()? {
    ///     if let Event::Text(text) = event {
    ///         sender.send(Message::Text(text))?;
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// Returned once; afterwards `None`. The connection is then
    /// [`State::Closed`]:
    /// - [`ConnectionError::Protocol`]: the peer broke the protocol. The
    ///   close frame with [`ProtocolError::close_code`] is already queued.
    /// - [`ConnectionError::KeepaliveTimeout`],
    ///   [`ConnectionError::CloseTimeout`]: a timer expired (see
    ///   [`Connection::handle_timeout`]).
    /// - [`ConnectionError::EndOfStream`], once
    ///   [`Connection::handle_eof`] was called on an unfinished connection.
    pub fn poll_event(&mut self) -> Result<Option<(Event<'_>, Sender<'_>)>, ConnectionError> {
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
                            return Err(ProtocolError::InvalidUtf8.into());
                        }
                    },
                }
            }
            Ready::Ping(range) => Event::Ping(rx.bytes(range)),
            Ready::Pong(range) => Event::Pong(rx.bytes(range)),
            Ready::Close(None) => Event::Close(None),
            Ready::Close(Some((code, range))) => {
                // `on_close_frame` validated the reason as UTF-8.
                let reason = std::str::from_utf8(rx.bytes(range)).unwrap_or_default();
                Event::Close(Some(CloseFrame::new(code, reason)))
            }
        };
        Ok(Some((event, Sender::lending(tx, lent.0, lent.1))))
    }

    /// Processes input until an event is ready, without borrowing it:
    /// `Ok(true)` means the next [`Connection::poll_event`] returns `Some`.
    /// An I/O loop that must decide whether to read more before borrowing
    /// an event uses it (the borrow checker cannot return a borrow from
    /// one arm of a loop and read in another).
    pub(crate) fn prepare_event(&mut self) -> Result<bool, ConnectionError> {
        if self.ready.is_some() {
            return Ok(true);
        }
        self.release_delivered();
        if let Some(error) = self.pending_error.take() {
            return Err(error);
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
                Err(error.into())
            }
        }
    }

    /// Puts back an error [`Connection::prepare_event`] returned, to be
    /// returned again next time: a poll-based driver that must end the
    /// transport before reporting it may have to wait first.
    // A hook of the tokio adapter's poll-based receive.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn defer_error(&mut self, error: ConnectionError) {
        self.pending_error = Some(error);
    }

    /// Drops what the previous event borrowed. An event that was prepared
    /// but not yet handed out keeps its bytes.
    #[inline]
    pub(super) fn release_delivered(&mut self) {
        if self.ready.is_some() {
            return;
        }
        match std::mem::replace(&mut self.rx.release, Release::Nothing) {
            Release::Nothing => {}
            Release::Input(upto) => self.rx.start = upto.max(self.rx.start),
            Release::Assembled => self.rx.assembled.clear(),
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
                    let input = self.rx.bytes(self.rx.start..self.rx.end);
                    let Some((header, header_len)) = FrameHeader::parse(input)? else {
                        return Ok(None);
                    };
                    let frame = self.check_header(&header, self.rx.start + header_len)?;
                    self.rx.frame = Some(frame);
                    frame
                }
            };
            // A frame's payload starts within the received input.
            debug_assert!(frame.payload_at <= self.rx.end);
            let have = (self.rx.end - frame.payload_at).min(frame.len);

            if frame.opcode.is_control() {
                // Control payloads are at most 125 bytes: wait for all of it.
                if have < frame.len {
                    return Ok(None);
                }
                self.rx.frame = None;
                let range = frame.payload_at..frame.payload_at + frame.len;
                if let Some(key) = frame.mask {
                    apply_mask(
                        received_mut(&mut self.rx.buf, self.rx.end, range.clone()),
                        key,
                        0,
                    );
                }
                self.rx.release = Release::Input(range.end);
                return self.on_control(frame.opcode, range).map(Some);
            }

            if have > frame.done {
                let piece = frame.payload_at + frame.done..frame.payload_at + have;
                let Rx { buf, end, utf8, .. } = &mut self.rx;
                let bytes = received_mut(buf, *end, piece.clone());
                if let Some(key) = frame.mask {
                    apply_mask(bytes, key, frame.done);
                }
                if frame.validate && utf8.feed(bytes).is_err() {
                    return Err(ProtocolError::InvalidUtf8);
                }
                if frame.compressed {
                    self.inflate_piece(piece, frame.text, false)?;
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
                    if frame.validate && self.rx.utf8.finish().is_err() {
                        return Err(ProtocolError::InvalidUtf8);
                    }
                    self.rx.release = Release::Input(payload.end);
                    return Ok(Some(Ready::Data {
                        kind: kind_of(frame.opcode),
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
                let Rx {
                    buf,
                    end,
                    assembled,
                    ..
                } = &mut self.rx;
                assembled.extend_from_slice(received(buf, *end, payload.clone()));
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
                    message.fragments = message.fragments.saturating_add(1);
                    if message.fragments as usize > self.config.max_fragments {
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
                    // The header was parsed from input, so the payload
                    // starts at or before its end.
                    debug_assert!(payload_at <= self.rx.end);
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
            end,
            assembled,
            inflater,
            utf8,
            ..
        } = &mut self.rx;
        let Some(inflater) = inflater.as_mut() else {
            return Err(ProtocolError::ReservedBits);
        };
        let input = received(buf, *end, piece);
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
        match opcode {
            OpCode::Ping => {
                // §5.5.2: answer with a pong carrying the same payload.
                // While much output is waiting, only the latest ping's
                // pong is kept, and sent once the output drains (§5.5.3
                // allows answering only the most recent ping): a ping
                // flood from a peer that does not read cannot grow the
                // output, and no ping goes unanswered.
                if self.config.auto_pong && self.tx.state == State::Open {
                    let payload = self.rx.bytes(range.clone());
                    if self.tx.buffered() <= self.config.max_pending_pong_bytes {
                        self.deferred_pong = None;
                        self.tx.write_frame(OpCode::Pong, true, payload);
                    } else {
                        self.deferred_pong
                            .get_or_insert_with(|| {
                                Box::new(ControlPayload {
                                    len: 0,
                                    bytes: [0; MAX_CONTROL_PAYLOAD],
                                })
                            })
                            .set(payload);
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
        let close = match self.rx.bytes(range.clone()) {
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
}
