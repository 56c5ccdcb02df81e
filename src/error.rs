//! The crate-level error: what an adapter's call can end with, by blame.
//!
//! The sans-IO core reports only what it can produce
//! ([`ConnectionError`] from [`crate::Connection::poll_event`],
//! [`SendError`] from a [`crate::Sender`]); the opening handshake reports
//! the peer's faults ([`HandshakeError`], [`Rejection`]) apart from the
//! caller's ([`RequestError`]). [`Error`] gathers them for the adapters,
//! with the transport's I/O errors and the timers the adapters run.
//!
//! A normal close is never an error: it is [`crate::Event::Close`].

use std::fmt;
use std::io;

use crate::close::CloseCode;
use crate::connection::{ConnectionError, InternalError, ProtocolError, SendError, UsageError};
use crate::handshake::{HandshakeError, Rejection, RequestError};

/// Which timer expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// No pong (or any other data) arrived within
    /// [`crate::Config::pong_timeout`] of a keepalive ping.
    Keepalive,
    /// The peer did not answer our close frame within
    /// [`crate::Config::close_timeout`].
    CloseHandshake,
    /// The opening handshake did not complete within the adapter's
    /// handshake timeout (a slow or silent peer).
    Handshake,
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Timeout::Keepalive => "no pong within the keepalive timeout",
            Timeout::CloseHandshake => "no close reply within the close timeout",
            Timeout::Handshake => "opening handshake timed out",
        })
    }
}

/// Everything an adapter's call can end with, by blame.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The peer broke the protocol; the close frame is already queued.
    Protocol(ProtocolError),
    /// The local caller misused the API; nothing was sent.
    Usage(UsageError),
    /// A failure inside chito or a library it uses; the connection failed.
    Internal(InternalError),
    /// A timer expired.
    Timeout(Timeout),
    /// The server's answer to our opening handshake was not a valid
    /// acceptance (client).
    Handshake(HandshakeError),
    /// Our own opening handshake request (or URL) cannot be sent (client).
    Request(RequestError),
    /// We refused the peer's opening handshake with this HTTP response,
    /// which was sent (server).
    Rejected(Rejection),
    /// The transport failed or ended (adapters only).
    Io(io::Error),
}

impl Error {
    /// The close code that describes this error to the application, as
    /// `on_close`/`Event::Close` would (1006 for transport loss and
    /// timeouts, 1011 for an internal failure).
    pub fn close_code(&self) -> CloseCode {
        match self {
            Error::Protocol(e) => e.close_code(),
            Error::Internal(_) => CloseCode::InternalError,
            _ => CloseCode::Abnormal,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Protocol(e) => write!(f, "peer protocol violation: {e}"),
            Error::Usage(e) => write!(f, "API misuse: {e}"),
            Error::Internal(e) => write!(f, "internal failure: {e}"),
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
            Error::Internal(e) => Some(e),
            Error::Handshake(e) => Some(e),
            Error::Request(e) => Some(e),
            Error::Rejected(e) => Some(e),
            Error::Io(e) => Some(e),
            Error::Timeout(_) => None,
        }
    }
}

impl From<ConnectionError> for Error {
    fn from(e: ConnectionError) -> Self {
        match e {
            ConnectionError::Protocol(e) => Error::Protocol(e),
            ConnectionError::KeepaliveTimeout => Error::Timeout(Timeout::Keepalive),
            ConnectionError::CloseTimeout => Error::Timeout(Timeout::CloseHandshake),
            // The transport's fact, reported as the transport's error.
            ConnectionError::EndOfStream => Error::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed by the peer without a close frame",
            )),
        }
    }
}

impl From<SendError> for Error {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Usage(e) => Error::Usage(e),
            SendError::Internal(e) => Error::Internal(e),
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
