//! What the core reports, by blame.
//!
//! - [`ProtocolError`]: the **peer** broke RFC 6455 (or RFC 7692). Each one
//!   carries the close code it is answered with; the connection has
//!   already queued that close frame when you see it.
//! - [`UsageError`]: the **local caller** asked for something the protocol
//!   forbids in the current state (sending after close, an oversized ping).
//!   Nothing was queued; the connection is unchanged.
//! - [`InternalError`]: something inside chito or a library it uses failed
//!   (the compressor); neither side broke a rule.
//!
//! [`ConnectionError`] is what [`crate::Connection::poll_event`] returns,
//! [`SendError`] what a [`crate::Sender`] returns. Handshake and I/O
//! failures never come from here: they belong to the layers above
//! ([`crate::Error`]). A normal close is never an error: it is
//! [`crate::Event::Close`].

use std::fmt;

use crate::close::CloseCode;
use crate::frame::HeaderError;

/// The peer violated the protocol. The connection fails with
/// [`ProtocolError::close_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A reserved opcode (RFC 6455 §5.2).
    ReservedOpcode(u8),
    /// A 64-bit payload length with the most significant bit set (§5.2).
    LengthTopBit,
    /// A payload length not in its minimal encoding (§5.2).
    NonMinimalLength,
    /// An RSV bit that no negotiated extension defines (§5.2).
    ReservedBits,
    /// RSV1 (compression) on a control or continuation frame (RFC 7692 §6).
    UnexpectedCompression,
    /// A compressed message that does not inflate (RFC 7692 §6.2).
    InvalidCompressedData,
    /// A client sent an unmasked frame (§5.1).
    UnmaskedFrame,
    /// A server sent a masked frame (§5.1).
    MaskedFrame,
    /// A control frame with more than 125 payload bytes (§5.5).
    ControlFrameTooLong,
    /// A control frame without FIN (§5.5: control frames MUST NOT be fragmented).
    FragmentedControlFrame,
    /// A continuation frame with no message in progress (§5.4).
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is in progress (§5.4).
    ExpectedContinuation,
    /// A text message, or a close reason, that is not valid UTF-8 (§8.1).
    InvalidUtf8,
    /// A close frame with a one-byte payload (§5.5.1: a body starts with a 2-byte code).
    InvalidClosePayload,
    /// A close frame with a code that must not be sent (§7.4).
    InvalidCloseCode(u16),
    /// A frame whose payload exceeds [`crate::Config::max_frame_size`].
    FrameTooBig,
    /// A message whose size exceeds [`crate::Config::max_message_size`].
    MessageTooBig,
    /// A message with more fragments than [`crate::Config::max_fragments`].
    TooManyFragments,
}

impl ProtocolError {
    /// The close code this violation is answered with (RFC 6455 §7.4.1).
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8 | ProtocolError::InvalidCompressedData => {
                CloseCode::InvalidPayload
            }
            ProtocolError::FrameTooBig
            | ProtocolError::MessageTooBig
            | ProtocolError::TooManyFragments => CloseCode::MessageTooBig,
            _ => CloseCode::ProtocolError,
        }
    }

    /// The short reason sent in the close frame.
    pub fn reason(&self) -> &'static str {
        match self {
            ProtocolError::ReservedOpcode(_) => "reserved opcode",
            ProtocolError::LengthTopBit => "64-bit length with top bit set",
            ProtocolError::NonMinimalLength => "length not minimally encoded",
            ProtocolError::ReservedBits => "reserved bits set",
            ProtocolError::UnexpectedCompression => "RSV1 on a control or continuation frame",
            ProtocolError::InvalidCompressedData => "compressed data does not inflate",
            ProtocolError::UnmaskedFrame => "client frame not masked",
            ProtocolError::MaskedFrame => "server frame masked",
            ProtocolError::ControlFrameTooLong => "control frame over 125 bytes",
            ProtocolError::FragmentedControlFrame => "fragmented control frame",
            ProtocolError::UnexpectedContinuation => "continuation without a message",
            ProtocolError::ExpectedContinuation => "new message inside a fragmented one",
            ProtocolError::InvalidUtf8 => "invalid UTF-8",
            ProtocolError::InvalidClosePayload => "close payload of one byte",
            ProtocolError::InvalidCloseCode(_) => "invalid close code",
            ProtocolError::FrameTooBig => "frame too big",
            ProtocolError::MessageTooBig => "message too big",
            ProtocolError::TooManyFragments => "too many fragments",
        }
    }
}

impl From<HeaderError> for ProtocolError {
    fn from(error: HeaderError) -> Self {
        match error {
            HeaderError::ReservedOpcode(bits) => ProtocolError::ReservedOpcode(bits),
            HeaderError::LengthTopBit => ProtocolError::LengthTopBit,
            HeaderError::NonMinimalLength => ProtocolError::NonMinimalLength,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            ProtocolError::InvalidCloseCode(code) => write!(f, "invalid close code {code}"),
            other => f.write_str(other.reason()),
        }?;
        write!(f, " (close {})", self.close_code())
    }
}

impl std::error::Error for ProtocolError {}

/// The local caller asked for something the protocol forbids now. Nothing
/// was queued; the connection is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UsageError {
    /// A close frame was already sent (RFC 6455 §5.5.1: no frames after Close).
    AlreadyClosing,
    /// The connection is closed.
    Closed,
    /// A ping or pong payload over 125 bytes (§5.5).
    ControlPayloadTooLong,
    /// A close reason over 123 bytes (§5.5).
    CloseReasonTooLong,
    /// A close code that must not be sent (1005, 1006, 1015, reserved ranges; §7.4).
    UnsendableCloseCode(u16),
    /// A new message while a fragmented one is being sent, or a fragment of
    /// another kind than the message in progress (§5.4).
    FragmentInProgress,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::AlreadyClosing => f.write_str("a close frame was already sent"),
            UsageError::Closed => f.write_str("the connection is closed"),
            UsageError::ControlPayloadTooLong => f.write_str("control payload over 125 bytes"),
            UsageError::CloseReasonTooLong => f.write_str("close reason over 123 bytes"),
            UsageError::UnsendableCloseCode(code) => write!(f, "close code {code} cannot be sent"),
            UsageError::FragmentInProgress => f.write_str("a fragmented message is in progress"),
        }
    }
}

impl std::error::Error for UsageError {}

/// A failure inside chito or a library it uses, not caused by the caller
/// or the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InternalError {
    /// The compressor failed in the middle of a fragmented message, whose
    /// compressed stream cannot be continued (RFC 7692 §6.1). The
    /// connection was closed with 1011 (internal error).
    Compression,
}

impl fmt::Display for InternalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InternalError::Compression => {
                f.write_str("the compressor failed inside a fragmented message (close 1011)")
            }
        }
    }
}

impl std::error::Error for InternalError {}

/// Why a [`crate::Sender`] did not queue a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The call broke a rule in the connection's state; nothing was queued
    /// and nothing changed.
    Usage(UsageError),
    /// The frame could not be produced; the connection has failed.
    Internal(InternalError),
}

impl From<UsageError> for SendError {
    fn from(error: UsageError) -> Self {
        SendError::Usage(error)
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Usage(e) => e.fmt(f),
            SendError::Internal(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::Usage(e) => Some(e),
            SendError::Internal(e) => Some(e),
        }
    }
}

/// Why a connection ended other than by a closing handshake, as
/// [`crate::Connection::poll_event`] reports it (once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The peer broke the protocol; the close frame with
    /// [`ProtocolError::close_code`] is already queued.
    Protocol(ProtocolError),
    /// No pong (or any other input) arrived within
    /// [`crate::Config::pong_timeout`] of a keepalive ping.
    KeepaliveTimeout,
    /// The peer did not answer our close frame within
    /// [`crate::Config::close_timeout`].
    CloseTimeout,
    /// The transport ended before the closing handshake completed
    /// ([`crate::Connection::handle_eof`]); RFC 6455 §7.1.5 reports this as
    /// 1006.
    EndOfStream,
}

impl ConnectionError {
    /// The close code that describes this ending to the application, as
    /// `on_close` would (RFC 6455 §7.1.5: 1006 when no close frame was
    /// received).
    pub fn close_code(&self) -> CloseCode {
        match self {
            ConnectionError::Protocol(e) => e.close_code(),
            _ => CloseCode::Abnormal,
        }
    }
}

impl From<ProtocolError> for ConnectionError {
    fn from(error: ProtocolError) -> Self {
        ConnectionError::Protocol(error)
    }
}

impl fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionError::Protocol(e) => write!(f, "peer protocol violation: {e}"),
            ConnectionError::KeepaliveTimeout => {
                f.write_str("no pong within the keepalive timeout")
            }
            ConnectionError::CloseTimeout => f.write_str("no close reply within the close timeout"),
            ConnectionError::EndOfStream => {
                f.write_str("connection closed by the peer without a close frame")
            }
        }
    }
}

impl std::error::Error for ConnectionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectionError::Protocol(e) => Some(e),
            _ => None,
        }
    }
}
