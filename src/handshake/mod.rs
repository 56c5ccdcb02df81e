//! The WebSocket opening handshake (RFC 6455 §4), without I/O.
//!
//! Both sides are *sans-IO*: they take the bytes read so far and return
//! parsed values, or the bytes to write. Nothing here touches a socket.
//!
//! * Server: [`Request::parse`] the client's head, then
//!   [`Request::accept`] (bytes of a `101` response) or send
//!   [`Rejection::to_response`]. A server whose HTTP stack has already parsed
//!   the request builds it with [`Request::from_parts`] and writes
//!   [`Request::accept_headers`] itself.
//! * Client: [`ClientHandshake::new`] returns the request bytes to write,
//!   then [`ClientHandshake::parse_response`] checks the server's answer.
//! * [`parse_extensions`] / [`format_extensions`] implement the
//!   `Sec-WebSocket-Extensions` grammar of RFC 6455 §9.1.
//! * [`WsUrl`] parses `ws://` and `wss://` URIs (RFC 6455 §3).
//! * [`server_response`] / [`negotiate_client`] turn a parsed handshake
//!   into the [`crate::Negotiated`] a connection starts from, negotiating
//!   extensions (permessage-deflate) per [`crate::Config`].
//!
//! Both parsers are incremental: `Ok(None)` means "read more and call again
//! with the whole buffer". On success they also return how many bytes the
//! HTTP head took; any bytes after it already belong to the WebSocket
//! connection and must be handed to it.

// Peer data must never make the handshake code panic: forbid the usual
// culprits outside of tests.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::string_slice,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable
    )
)]

mod client;
mod error;
pub(crate) mod extensions;
mod http;
mod negotiate;
mod rejection;
mod server;
mod url;

pub use client::{ClientHandshake, ClientRequest, Response};
pub use error::HandshakeError;
pub use extensions::{
    format_extensions, parse_extensions, ExtensionOffer, ExtensionParam, ExtensionParseError,
};
pub use negotiate::{
    negotiate_client, negotiate_server, offer_extensions, server_response, server_response_headers,
};
pub use rejection::Rejection;
pub use server::{Accept, Request};
pub use url::{UrlError, WsUrl};

use base64::Engine as _;

/// The GUID that RFC 6455 §1.3 / §4.2.2 appends to the client's key.
const WEBSOCKET_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Size limits applied while parsing an HTTP head.
///
/// Marked `#[non_exhaustive]` so that limits can be added later; start from
/// [`Limits::default`] and assign fields or use the `with_` methods:
///
/// ```
/// # use chito::handshake::Limits;
/// let limits = Limits::default().with_max_head_size(4096);
/// let mut same = Limits::default();
/// same.max_head_size = 4096;
/// assert_eq!(limits, same);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest accepted head, request/status line through the final empty
    /// line, in bytes. A buffer that holds more than this without a complete
    /// head is refused (`431` on the server, [`HandshakeError::HeadTooLarge`]
    /// on the client). Default: 16 KiB.
    pub max_head_size: usize,
    /// Largest accepted number of header fields. More are refused (`431` on
    /// the server, [`HandshakeError::TooManyHeaders`] on the client).
    /// Default: 64.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_size: 16 * 1024,
            max_headers: 64,
        }
    }
}

impl Limits {
    /// These limits with [`max_head_size`](Self::max_head_size) set.
    pub fn with_max_head_size(mut self, max_head_size: usize) -> Self {
        self.max_head_size = max_head_size;
        self
    }

    /// These limits with [`max_headers`](Self::max_headers) set.
    pub fn with_max_headers(mut self, max_headers: usize) -> Self {
        self.max_headers = max_headers;
        self
    }
}

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key` value.
///
/// RFC 6455 §4.2.2: base64 of the SHA-1 of the key (as sent, not decoded)
/// concatenated with the GUID `258EAFA5-E914-47DA-95CA-C5AB0DC85B11`.
pub fn accept_key(key: &[u8]) -> String {
    let mut sha1 = sha1_smol::Sha1::new();
    sha1.update(key);
    sha1.update(WEBSOCKET_GUID);
    base64::engine::general_purpose::STANDARD.encode(sha1.digest().bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_6455_sample() {
        // RFC 6455 §1.3 / §4.2.2 worked example.
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn default_limits() {
        let limits = Limits::default();
        assert_eq!(limits.max_head_size, 16 * 1024);
        assert_eq!(limits.max_headers, 64);
    }
}
