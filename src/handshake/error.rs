//! Client-side handshake errors, split by blame: [`RequestError`] is a
//! mistake in what we were asked to send (nothing was sent);
//! [`HandshakeError`] is a fault in what the server answered (RFC 6455 §4.1:
//! the client fails the connection). The server side refuses with a
//! [`super::Rejection`], which already carries its blame in its status
//! (4xx the client's, 5xx the server's).

use std::fmt;

use super::extensions::ExtensionParseError;
use super::url::UrlError;

/// The server's answer to our opening handshake is not an acceptable
/// `101` (RFC 6455 §4.1), so the connection must be failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The response head is larger than
    /// [`Config::max_handshake_size`](crate::Config::max_handshake_size).
    HeadTooLarge {
        /// The limit in force.
        limit: usize,
    },
    /// The response has more header fields than
    /// [`Config::max_handshake_headers`](crate::Config::max_handshake_headers).
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
    /// The server's permessage-deflate answer is invalid for our offer
    /// (RFC 7692 §5).
    #[cfg(feature = "deflate")]
    Deflate(crate::deflate::DeflateNegotiationError),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
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
            HandshakeError::UnexpectedExtension(name) => {
                write!(
                    f,
                    "server accepted extension {name:?}, which was not offered"
                )
            }
            #[cfg(feature = "deflate")]
            HandshakeError::Deflate(error) => write!(f, "permessage-deflate: {error}"),
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

/// What we were asked to send cannot make a valid opening handshake
/// request (RFC 6455 §4.1); nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// [`ClientRequest::host`](super::ClientRequest::host) is empty or
    /// holds whitespace or control characters.
    InvalidHost,
    /// [`ClientRequest::target`](super::ClientRequest::target) does not
    /// start with `/`, holds a fragment (`#`), whitespace, control or
    /// non-ASCII characters.
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
    /// The URL given to a `connect` helper is not a valid `ws://`/`wss://`
    /// URL (RFC 6455 §3).
    InvalidUrl(UrlError),
    /// A `wss://` URL was given to a helper that opens plain TCP; use the
    /// `chito-client` crate, or open a TLS stream and run the handshake
    /// over it.
    TlsRequired,
}

impl From<UrlError> for RequestError {
    fn from(error: UrlError) -> Self {
        RequestError::InvalidUrl(error)
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::InvalidHost => f.write_str("invalid Host value"),
            RequestError::InvalidTarget => f.write_str("invalid request target"),
            RequestError::InvalidProtocol(p) => write!(f, "subprotocol {p:?} is not a token"),
            RequestError::DuplicateProtocol(p) => write!(f, "subprotocol {p:?} offered twice"),
            RequestError::InvalidExtension(name) => {
                write!(f, "extension offer {name:?} has a non-token name or value")
            }
            RequestError::InvalidHeader(name) => write!(f, "invalid header {name:?}"),
            RequestError::ReservedHeader(name) => {
                write!(f, "header {name:?} is written by the handshake itself")
            }
            RequestError::InvalidUrl(error) => write!(f, "invalid URL: {error}"),
            RequestError::TlsRequired => {
                f.write_str("wss:// needs a TLS stream (chito-client opens one)")
            }
        }
    }
}

// No `source`: the URL error's text is already part of `Display`, as it
// was when these were `HandshakeError` variants.
impl std::error::Error for RequestError {}
