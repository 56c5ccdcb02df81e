//! Why a client handshake could not be started or was failed.

use std::fmt;

use super::extensions::ExtensionParseError;
use super::url::UrlError;
#[cfg(doc)]
use super::{ClientRequest, Limits};

/// Why a client handshake could not be started or was failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// [`ClientRequest::host`] is empty or holds whitespace or control
    /// characters.
    InvalidHost,
    /// [`ClientRequest::target`] does not start with `/`, holds a fragment
    /// (`#`), whitespace, control or non-ASCII characters.
    InvalidTarget,
    /// A subprotocol to offer is not a token (RFC 6455 §4.1 item 10).
    InvalidProtocol(String),
    /// A subprotocol is offered twice (RFC 6455 §4.1 item 10).
    DuplicateProtocol(String),
    /// An extension to offer (named here) has a name, parameter name or value
    /// that is not a token (RFC 6455 §9.1).
    InvalidExtension(String),
    /// An extra header (named here) has a name that is not a token or a
    /// value holding CR, LF or another control character.
    InvalidHeader(String),
    /// An extra header repeats one the handshake writes itself (`Host`,
    /// `Upgrade`, `Connection` or a `Sec-WebSocket-*` header).
    ReservedHeader(String),
    /// The response head is larger than [`Limits::max_head_size`].
    HeadTooLarge {
        /// The limit in force.
        limit: usize,
    },
    /// The response has more than [`Limits::max_headers`] header fields.
    TooManyHeaders {
        /// The limit in force.
        limit: usize,
    },
    /// The response is not HTTP/1.x syntax; the parser's message.
    MalformedResponse(String),
    /// The server answered with a status other than 101 (RFC 6455 §4.1:
    /// handled "per HTTP procedures", e.g. authentication or a redirect).
    UnexpectedStatus {
        /// The status code.
        status: u16,
        /// The reason phrase.
        reason: String,
        /// The response's header fields, in order.
        headers: Vec<(String, Vec<u8>)>,
    },
    /// A 101 response over HTTP/1.0, which has no such status.
    UnsupportedHttpVersion,
    /// `Upgrade` is missing, repeated, or not `websocket` (RFC 6455 §4.1).
    InvalidUpgrade,
    /// `Connection` does not contain `Upgrade` (RFC 6455 §4.1).
    MissingConnectionUpgrade,
    /// No `Sec-WebSocket-Accept` (RFC 6455 §4.1).
    MissingAccept,
    /// `Sec-WebSocket-Accept` is repeated or not the value derived from our
    /// key (RFC 6455 §4.1).
    AcceptMismatch,
    /// The server selected a subprotocol that was not offered (RFC 6455
    /// §4.1), or one when none was offered.
    UnexpectedProtocol(String),
    /// `Sec-WebSocket-Protocol` is repeated or is not a single token.
    InvalidProtocolHeader,
    /// `Sec-WebSocket-Extensions` does not follow RFC 6455 §9.1.
    InvalidExtensions(ExtensionParseError),
    /// The server accepted an extension that was not offered (RFC 6455
    /// §4.1, §9.1).
    UnexpectedExtension(String),
    /// The URL given to a `connect` helper is not a valid `ws://`/`wss://`
    /// URL (RFC 6455 §3).
    InvalidUrl(UrlError),
    /// A `wss://` URL was given to a helper that opens plain TCP; open a
    /// TLS stream and run the handshake over it.
    TlsRequired,
    /// The server's permessage-deflate answer is invalid for our offer
    /// (RFC 7692 §5).
    #[cfg(feature = "deflate")]
    Deflate(crate::deflate::DeflateNegotiationError),
}

impl From<UrlError> for HandshakeError {
    fn from(error: UrlError) -> Self {
        HandshakeError::InvalidUrl(error)
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::InvalidHost => f.write_str("invalid Host value"),
            HandshakeError::InvalidTarget => f.write_str("invalid request target"),
            HandshakeError::InvalidProtocol(p) => write!(f, "subprotocol {p:?} is not a token"),
            HandshakeError::DuplicateProtocol(p) => write!(f, "subprotocol {p:?} offered twice"),
            HandshakeError::InvalidExtension(name) => {
                write!(f, "extension offer {name:?} has a non-token name or value")
            }
            HandshakeError::InvalidHeader(name) => write!(f, "invalid header {name:?}"),
            HandshakeError::ReservedHeader(name) => {
                write!(f, "header {name:?} is written by the handshake itself")
            }
            HandshakeError::HeadTooLarge { limit } => {
                write!(f, "response head larger than {limit} bytes")
            }
            HandshakeError::TooManyHeaders { limit } => {
                write!(f, "response has more than {limit} header fields")
            }
            HandshakeError::MalformedResponse(message) => {
                write!(f, "malformed HTTP response: {message}")
            }
            HandshakeError::UnexpectedStatus { status, reason, .. } => {
                write!(f, "server answered {status} {reason} instead of 101")
            }
            HandshakeError::UnsupportedHttpVersion => f.write_str("101 response over HTTP/1.0"),
            HandshakeError::InvalidUpgrade => {
                f.write_str("response Upgrade header is missing or not websocket")
            }
            HandshakeError::MissingConnectionUpgrade => {
                f.write_str("response Connection header does not contain upgrade")
            }
            HandshakeError::MissingAccept => f.write_str("response lacks Sec-WebSocket-Accept"),
            HandshakeError::AcceptMismatch => {
                f.write_str("Sec-WebSocket-Accept does not match the key sent")
            }
            HandshakeError::UnexpectedProtocol(p) => {
                write!(
                    f,
                    "server selected subprotocol {p:?}, which was not offered"
                )
            }
            HandshakeError::InvalidProtocolHeader => {
                f.write_str("response Sec-WebSocket-Protocol is not a single token")
            }
            HandshakeError::InvalidExtensions(error) => error.fmt(f),
            HandshakeError::InvalidUrl(error) => write!(f, "invalid URL: {error}"),
            HandshakeError::TlsRequired => f.write_str("wss:// needs a TLS stream"),
            #[cfg(feature = "deflate")]
            HandshakeError::Deflate(error) => write!(f, "permessage-deflate: {error}"),
            HandshakeError::UnexpectedExtension(name) => {
                write!(
                    f,
                    "server accepted extension {name:?}, which was not offered"
                )
            }
        }
    }
}

impl std::error::Error for HandshakeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HandshakeError::InvalidExtensions(error) => Some(error),
            #[cfg(feature = "deflate")]
            HandshakeError::Deflate(error) => Some(error),
            _ => None,
        }
    }
}
