//! Errors, split by blame.
//!
//! - [`ProtocolError`]: the **peer** broke RFC 6455. Each one carries the
//!   close code it is answered with ([`ProtocolError::close_code`]); the
//!   connection has already queued that close frame when you see it.
//! - [`UsageError`]: the **local caller** asked for something the protocol
//!   forbids in the current state (sending after close, an oversized ping).
//!   Nothing was sent; the connection is unchanged.
//! - [`Timeout`]: the peer stopped answering (keepalive or close handshake).
//! - I/O and handshake failures exist only in the adapters and handshake.
//!
//! A normal close is never an error: it is [`crate::Event::Close`].

use std::fmt;
use std::io;

use crate::close::CloseCode;
use crate::handshake::{HandshakeError, Rejection, RequestError};

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
/// was queued.
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
    /// A new message while a fragmented one is being sent (§5.4).
    FragmentInProgress,
    /// A continuation fragment with no fragmented message begun.
    NoFragmentInProgress,
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
            UsageError::NoFragmentInProgress => f.write_str("no fragmented message in progress"),
        }
    }
}

impl std::error::Error for UsageError {}

/// Which timer expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// No pong (or any other data) arrived within
    /// [`crate::Config::pong_timeout`] of a keepalive ping.
    Keepalive,
    /// The peer did not answer our close frame within
    /// [`crate::Config::close_timeout`].
    CloseHandshake,
    /// Nothing arrived for [`crate::Config::idle_timeout`].
    Idle,
    /// The opening handshake did not complete in time (adapters).
    Handshake,
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Timeout::Keepalive => "no pong within the keepalive timeout",
            Timeout::CloseHandshake => "no close reply within the close timeout",
            Timeout::Idle => "idle timeout",
            Timeout::Handshake => "opening handshake timed out",
        })
    }
}

/// Everything that can go wrong, by blame.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The peer broke the protocol; the close frame is already queued.
    Protocol(ProtocolError),
    /// The local caller misused the API.
    Usage(UsageError),
    /// A timer expired.
    Timeout(Timeout),
    /// The server's answer to the client's opening handshake was not an
    /// acceptable `101` (the server's fault).
    Handshake(HandshakeError),
    /// The client's opening handshake request could not be built from what
    /// it was given (a bad URL or request value; nothing was sent).
    Request(RequestError),
    /// The server refused the opening handshake with this HTTP response.
    Rejected(Rejection),
    /// The transport failed (adapters only).
    Io(io::Error),
}

impl Error {
    /// The close code that describes this error to the application, as
    /// `on_close`/`Event::Close` would (1006 for transport loss and timeouts).
    pub fn close_code(&self) -> CloseCode {
        match self {
            Error::Protocol(e) => e.close_code(),
            _ => CloseCode::Abnormal,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Protocol(e) => write!(f, "peer protocol violation: {e}"),
            Error::Usage(e) => write!(f, "API misuse: {e}"),
            Error::Timeout(e) => write!(f, "timeout: {e}"),
            Error::Handshake(e) => write!(f, "handshake failed: {e}"),
            Error::Request(e) => write!(f, "invalid handshake request: {e}"),
            Error::Rejected(e) => write!(f, "handshake rejected: {e}"),
            Error::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Protocol(e) => Some(e),
            Error::Usage(e) => Some(e),
            Error::Handshake(e) => Some(e),
            Error::Request(e) => Some(e),
            Error::Rejected(e) => Some(e),
            Error::Io(e) => Some(e),
            Error::Timeout(_) => None,
        }
    }
}

impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Self {
        Error::Protocol(e)
    }
}

impl From<UsageError> for Error {
    fn from(e: UsageError) -> Self {
        Error::Usage(e)
    }
}

impl From<HandshakeError> for Error {
    fn from(e: HandshakeError) -> Self {
        Error::Handshake(e)
    }
}

impl From<RequestError> for Error {
    fn from(e: RequestError) -> Self {
        Error::Request(e)
    }
}

impl From<Rejection> for Error {
    fn from(e: Rejection) -> Self {
        Error::Rejected(e)
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}
