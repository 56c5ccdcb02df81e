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
pub(crate) mod extensions;
mod negotiate;
mod server;
mod url;

pub use client::{ClientHandshake, ClientRequest, HandshakeError, Response};
pub use extensions::{
    format_extensions, parse_extensions, ExtensionOffer, ExtensionParam, ExtensionParseError,
};
pub use negotiate::{
    negotiate_client, negotiate_server, offer_extensions, server_response, server_response_headers,
};
pub use server::{Accept, Rejection, Request};
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

/// Number of header slots handed to `httparse` without a heap allocation.
const STACK_HEADERS: usize = 64;

/// RFC 7230 §3.2.6: `tchar`, the characters of a `token`.
pub(crate) fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// RFC 7230 §3.2.6: `token = 1*tchar`.
pub(crate) fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&b| is_tchar(b))
}

/// RFC 7230 §3.2: a `field-value` we are willing to write: visible
/// characters, obs-text, spaces and tabs, so never CR, LF, NUL or another
/// control character that could end the field early (header injection).
pub(crate) fn is_safe_field_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || b == b' ' || (b >= 0x21 && b != 0x7f))
}

/// RFC 7230 §3.2.3: optional whitespace is spaces and horizontal tabs.
pub(crate) fn trim_ows(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |last| last + 1);
    bytes.get(start..end).unwrap_or_default()
}

/// RFC 7230 §7: the non-empty elements of a comma-separated list header,
/// across every header called `name`, with OWS trimmed.
pub(crate) fn list_elements<'a>(
    headers: &'a [(String, Vec<u8>)],
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, value)| value.split(|&b| b == b','))
        .map(trim_ows)
        .filter(|element| !element.is_empty())
}

/// Whether some element of the comma-separated list header `name` is, case
/// insensitively, `token`.
pub(crate) fn list_contains_token(headers: &[(String, Vec<u8>)], name: &str, token: &str) -> bool {
    list_elements(headers, name).any(|element| element.eq_ignore_ascii_case(token.as_bytes()))
}

/// The headers parsed by `httparse`, owned, with OWS trimmed from values
/// (RFC 7230 §3.2.4: it is not part of the field value).
pub(crate) fn own_headers(headers: &[httparse::Header<'_>]) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|h| (h.name.to_owned(), trim_ows(h.value).to_vec()))
        .collect()
}

/// How an attempt to parse an HTTP head ended, before mapping to the
/// side-specific error type.
pub(crate) enum HeadError {
    /// More than `max_head_size` bytes without a complete head.
    TooLarge,
    /// More than `max_headers` header fields.
    TooManyHeaders,
    /// Not HTTP/1.x syntax.
    Malformed(httparse::Error),
}

/// Runs `parse` over at most `limits.max_head_size` bytes of `buf`, with
/// `limits.max_headers` header slots, and maps the outcome.
///
/// Only the first `max_head_size` bytes are looked at, so a large buffer
/// (a head followed by many frames) costs no more than the limit, and a
/// partial head in a buffer longer than the limit is refused.
pub(crate) fn parse_head<T>(
    buf: &[u8],
    limits: &Limits,
    parse: impl for<'b, 'h> FnOnce(&'b [u8], &'h mut [httparse::Header<'b>]) -> httparse::Result<T>,
) -> Result<Option<T>, HeadError> {
    let window = buf.get(..limits.max_head_size).unwrap_or(buf);
    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut heap = Vec::new();
    let slots: &mut [httparse::Header<'_>] = match stack.get_mut(..limits.max_headers) {
        Some(slots) => slots,
        None => {
            heap.resize(limits.max_headers, httparse::EMPTY_HEADER);
            &mut heap
        }
    };
    match parse(window, slots) {
        Ok(httparse::Status::Complete(value)) => Ok(Some(value)),
        Ok(httparse::Status::Partial) if buf.len() > limits.max_head_size => {
            Err(HeadError::TooLarge)
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooManyHeaders),
        Err(error) => Err(HeadError::Malformed(error)),
    }
}

/// The value of the first field called `name` (ASCII case-insensitive, RFC
/// 7230 §3.2), for header fields stored as both sides of the handshake
/// store them: names as sent, values as bytes, in arrival order.
pub(crate) fn find_header<'a>(fields: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_slice())
}

/// Every field in arrival order, repeated names included.
pub(crate) fn iter_headers(fields: &[(String, Vec<u8>)]) -> impl Iterator<Item = (&str, &[u8])> {
    fields
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_slice()))
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

    #[test]
    fn trim_ows_edges() {
        assert_eq!(trim_ows(b""), b"");
        assert_eq!(trim_ows(b" \t "), b"");
        assert_eq!(trim_ows(b" a b\t"), b"a b");
        assert_eq!(trim_ows(b"x"), b"x");
    }

    #[test]
    fn tokens() {
        assert!(is_token(b"permessage-deflate"));
        assert!(!is_token(b""));
        assert!(!is_token(b"a b"));
        assert!(!is_token(b"a,b"));
        assert!(!is_token(b"\"a\""));
    }

    #[test]
    fn field_values() {
        assert!(is_safe_field_value(b"a b\tc \xc3\xa9"));
        assert!(!is_safe_field_value(b"a\r\nb: c"));
        assert!(!is_safe_field_value(b"a\nb"));
        assert!(!is_safe_field_value(b"a\0"));
        assert!(!is_safe_field_value(b"\x7f"));
    }
}
