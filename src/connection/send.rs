//! The send path: [`Sender`] checks each request against the protocol and
//! the connection's state (RFC 6455 §5.4, §5.5, §7.4), then encodes the
//! frame into the output buffer — compressed when permessage-deflate is in
//! force (RFC 7692 §6.1), masked by a client (§5.3).

use std::ops::Range;

#[cfg(feature = "deflate")]
use super::error::InternalError;
use super::error::{SendError, UsageError};
use super::event::{Message, MessageKind};
use super::State;
use crate::close::{CloseCode, MAX_CLOSE_REASON};
#[cfg(feature = "deflate")]
use crate::deflate::Deflater;
use crate::frame::{FrameHeader, OpCode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use crate::mask::apply_mask;
use crate::rand::Rng;
use crate::role::Role;

/// The size from which a received payload sent straight back goes out
/// from the input buffer instead of being copied: below it the copy is
/// cheaper than a second piece in the write.
#[cfg(not(fuzzing))]
const OUTPUT_FROM_INPUT_MIN: usize = 64 * 1024;
/// Fuzzing builds send small payloads back from the input too, so inputs
/// of a few KiB reach that path.
#[cfg(fuzzing)]
const OUTPUT_FROM_INPUT_MIN: usize = 16;

/// The write side: output buffer and sending state.
#[derive(Debug)]
pub(super) struct Tx {
    pub(super) role: Role,
    pub(super) state: State,
    pub(super) out: Vec<u8>,
    /// Bytes before this index have been written to the transport.
    pub(super) out_pos: usize,
    /// Mask keys; only a client masks (RFC 6455 §5.3).
    rng: Option<Box<Rng>>,
    /// The kind of the fragmented message being sent, if any.
    sending: Option<MessageKind>,
    /// Compresses outgoing messages (RFC 7692 §6.1), if negotiated.
    /// Boxed: most connections never negotiate compression.
    #[cfg(feature = "deflate")]
    pub(super) deflater: Option<Box<Deflater>>,
    /// Messages shorter than this are sent uncompressed.
    #[cfg(feature = "deflate")]
    pub(super) compress_threshold: usize,
    /// Whether the fragmented message being sent is compressed.
    #[cfg(feature = "deflate")]
    sending_compressed: bool,
    /// Output still to be written from the input buffer, `rx.buf[loan]`
    /// (empty: none). Pending output is `out[out_pos..loan_mark]`, then
    /// these bytes, then `out[loan_mark..]`; the input buffer is not
    /// reused until they are written.
    pub(super) loan: Range<usize>,
    pub(super) loan_mark: usize,
    /// Buffers come from, and go back to, the thread's pool.
    pub(super) pooled: bool,
}

impl Tx {
    pub(super) fn new(
        role: Role,
        rng: Option<Box<Rng>>,
        #[cfg(feature = "deflate")] deflater: Option<Box<Deflater>>,
        #[cfg(feature = "deflate")] compress_threshold: usize,
    ) -> Tx {
        Tx {
            role,
            state: State::Open,
            out: Vec::new(),
            out_pos: 0,
            rng,
            sending: None,
            #[cfg(feature = "deflate")]
            deflater,
            #[cfg(feature = "deflate")]
            compress_threshold,
            #[cfg(feature = "deflate")]
            sending_compressed: false,
            loan: 0..0,
            loan_mark: 0,
            pooled: false,
        }
    }

    #[inline]
    pub(super) fn check_open(&self) -> Result<(), UsageError> {
        match self.state {
            State::Open => Ok(()),
            State::Closing => Err(UsageError::AlreadyClosing),
            State::Closed => Err(UsageError::Closed),
        }
    }

    /// A fresh masking key if this end masks (a client, RFC 6455 §5.3).
    #[inline]
    fn mask_key(&mut self) -> Option<[u8; 4]> {
        self.rng.as_mut().map(|rng| rng.mask_key())
    }

    /// Encodes one frame into the output buffer: header, payload copy, and
    /// for a client a fresh masking key applied in place (§5.3).
    pub(super) fn write_frame(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) {
        let mut header = FrameHeader::new(opcode, payload.len() as u64);
        header.fin = fin;
        header.mask = self.mask_key();
        let out = self.out();
        out.reserve(MAX_HEADER_LEN + payload.len());
        header.write_to(out);
        let at = out.len();
        out.extend_from_slice(payload);
        if let (Some(key), Some(bytes)) = (header.mask, out.get_mut(at..)) {
            apply_mask(bytes, key, 0);
        }
    }

    /// Copies a frame encoded elsewhere (a [`super::SharedMessage`]'s)
    /// into the output buffer as the next message.
    pub(super) fn write_encoded(&mut self, frame: &[u8]) -> Result<(), UsageError> {
        self.check_open()?;
        if self.sending.is_some() {
            return Err(UsageError::FragmentInProgress);
        }
        self.out().extend_from_slice(frame);
        Ok(())
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
    ) -> Result<(), SendError> {
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
                    return Err(SendError::Internal(InternalError::Compression));
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

    /// Encodes only the header of a frame whose payload is `rx.buf[range]`;
    /// the payload is written from there. A server does not mask (RFC 6455
    /// §5.1), so the received bytes go out as they are.
    fn write_header_for_input(&mut self, opcode: OpCode, fin: bool, range: Range<usize>) {
        let mut header = FrameHeader::new(opcode, range.len() as u64);
        header.fin = fin;
        header.write_to(self.out());
        self.loan_mark = self.out.len();
        self.loan = range;
    }

    /// Compresses `data` straight into the output buffer behind a
    /// maximum-size header slot, then closes the gap once the length is
    /// known. Returns false (output unchanged) if the compressor failed.
    #[cfg(feature = "deflate")]
    fn write_compressed(&mut self, opcode: OpCode, fin: bool, rsv1: bool, data: &[u8]) -> bool {
        let at = self.out().len();
        let Some(deflater) = self.deflater.as_mut() else {
            return false;
        };
        self.out.resize(at + MAX_HEADER_LEN, 0);
        if deflater.compress(data, fin, &mut self.out).is_err() {
            self.out.truncate(at);
            return false;
        }
        let body_len = self.out.len() - at - MAX_HEADER_LEN;
        let mut header = FrameHeader::new(opcode, body_len as u64);
        header.fin = fin;
        header.rsv1 = rsv1;
        header.mask = self.mask_key();
        let mut head = [0u8; MAX_HEADER_LEN];
        let head_len = header.encode(&mut head);
        // `out` holds the slot and the body behind it: the body moves left
        // to close the gap, and the header fills the space before it.
        self.out.copy_within(at + MAX_HEADER_LEN.., at + head_len);
        self.out.truncate(at + head_len + body_len);
        if let Some(slot) = self.out.get_mut(at..at + head_len) {
            slot.copy_from_slice(head.split_at(head_len).0);
        }
        if let (Some(key), Some(body)) = (header.mask, self.out.get_mut(at + head_len..)) {
            apply_mask(body, key, 0);
        }
        true
    }

    /// Queues a close frame (§5.5.1) and moves to [`State::Closing`]. The
    /// caller checked the code and the reason's length.
    pub(super) fn write_close(&mut self, code: CloseCode, reason: &str) {
        let reason = truncate_utf8(reason, MAX_CLOSE_REASON);
        let mut body = [0u8; MAX_CONTROL_PAYLOAD];
        let bytes = code
            .as_u16()
            .to_be_bytes()
            .into_iter()
            .chain(reason.bytes());
        let mut len = 0;
        for (slot, byte) in body.iter_mut().zip(bytes) {
            *slot = byte;
            len += 1;
        }
        self.write_frame(OpCode::Close, true, body.split_at(len).0);
        self.state = State::Closing;
    }

    /// _Fail the WebSocket Connection_ (§7.1.7): send a close frame with the
    /// violation's code if none was sent yet, and stop.
    pub(super) fn fail(&mut self, error: crate::connection::ProtocolError) {
        if self.state == State::Open {
            self.write_close(error.close_code(), error.reason());
        }
        self.state = State::Closed;
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a
/// character boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    // `end` is a character boundary within `s`.
    s.get(..end).unwrap_or_default()
}

/// §7.4 and §5.5: whether a close frame with `code` and `reason` may be
/// sent. Every path that queues a close — a [`Sender`], an adapter's
/// handle, an overflow policy — checks here first.
pub(crate) fn check_close(code: CloseCode, reason: &str) -> Result<(), UsageError> {
    if !code.is_sendable() {
        return Err(UsageError::UnsendableCloseCode(code.as_u16()));
    }
    if reason.len() > MAX_CLOSE_REASON {
        return Err(UsageError::CloseReasonTooLong);
    }
    Ok(())
}

/// §5.5: a ping or pong payload is at most 125 bytes.
pub(crate) fn check_control(payload: &[u8]) -> Result<(), UsageError> {
    if payload.len() > MAX_CONTROL_PAYLOAD {
        return Err(UsageError::ControlPayloadTooLong);
    }
    Ok(())
}

/// The write half of a [`super::Connection`]: queues frames into its
/// output buffer. Obtained from [`super::Connection::sender`] or alongside
/// an event from [`super::Connection::poll_event`]. Every call either
/// queues its frame or returns an error having changed nothing (but for
/// [`SendError::Internal`], which fails the connection).
#[derive(Debug)]
pub struct Sender<'a> {
    pub(super) tx: &'a mut Tx,
    /// The payload of the event this sender came with, if it lies in the
    /// input buffer (at `rx.buf[lent_at..]`): sent back as is, it need not
    /// be copied.
    lent: &'a [u8],
    lent_at: usize,
}

impl<'a> Sender<'a> {
    /// A sender that may send `lent` (at `rx.buf[lent_at..]`) back from
    /// the input buffer.
    #[inline]
    pub(super) fn lending(tx: &'a mut Tx, lent: &'a [u8], lent_at: usize) -> Self {
        Sender { tx, lent, lent_at }
    }
}

impl Sender<'_> {
    /// Queues a message in one frame.
    ///
    /// # Errors
    /// [`UsageError::AlreadyClosing`]/[`UsageError::Closed`] after a close
    /// frame was sent; [`UsageError::FragmentInProgress`] while a fragmented
    /// message is being sent.
    pub fn send(&mut self, message: Message<'_>) -> Result<(), SendError> {
        if self.tx.sending.is_some() {
            self.tx.check_open()?;
            return Err(UsageError::FragmentInProgress.into());
        }
        self.send_fragment(message.kind(), message.as_bytes(), true)
    }

    /// Queues one fragment of a message (RFC 6455 §5.4). The first call
    /// starts a message of `kind`; later calls continue it until one with
    /// `fin` set ends it. Pings, pongs and close may be sent between
    /// fragments. For text, the concatenated fragments must be UTF-8; a
    /// fragment boundary may fall inside a character.
    ///
    /// # Errors
    /// As [`Sender::send`], plus [`UsageError::FragmentInProgress`] when
    /// `kind` differs from the message in progress, and
    /// [`SendError::Internal`] if the compressor fails inside a fragmented
    /// message (the connection is then closed with 1011).
    pub fn send_fragment(
        &mut self,
        kind: MessageKind,
        data: &[u8],
        fin: bool,
    ) -> Result<(), SendError> {
        self.tx.check_open()?;
        let opcode = match self.tx.sending {
            None => match kind {
                MessageKind::Text => OpCode::Text,
                MessageKind::Binary => OpCode::Binary,
            },
            Some(current) if current == kind => OpCode::Continuation,
            Some(_) => return Err(UsageError::FragmentInProgress.into()),
        };
        // The very bytes lent (same address and length), not a copy or a
        // part of them.
        let from_input = (data.len() >= OUTPUT_FROM_INPUT_MIN && std::ptr::eq(data, self.lent))
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
    pub fn send_ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.control(OpCode::Ping, payload)
    }

    /// Queues an unsolicited pong (a heartbeat, §5.5.3). Errors as
    /// [`Sender::send_ping`].
    pub fn send_pong(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.control(OpCode::Pong, payload)
    }

    fn control(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), SendError> {
        self.tx.check_open()?;
        check_control(payload)?;
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
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        self.tx.check_open()?;
        check_close(code, reason)?;
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

impl super::Connection {
    /// The write half, for sending while no event is borrowed.
    pub fn sender(&mut self) -> Sender<'_> {
        self.release_delivered();
        Sender::lending(&mut self.tx, &[], 0)
    }
}
