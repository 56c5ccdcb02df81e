//! The WebSocket opening handshake (RFC 6455 §4; RFC 8441 over HTTP/2),
//! without I/O.
//!
//! Both sides are *sans-IO* state machines: feed them the bytes read so far,
//! in chunks of any size, and they answer "need more", a result, or an
//! error. Nothing here touches a socket or a clock (timeouts are the
//! adapter's business).
//!
//! * Server: [`ServerHandshake::feed`] yields an [`UpgradeRequest`], a
//!   request already validated as an upgrade (RFC 6455 §4.2.1), or the
//!   [`Rejection`] to send ([`Rejection::to_response`]). Inspect the request
//!   (path, `Origin`, cookies, offered subprotocols), then
//!   [`UpgradeRequest::accept`] it with an [`Accept`]: the [`Accepted`]
//!   holds the `101` response, the [`Negotiated`] result a connection starts
//!   from, and the bytes that followed the request head. A server whose HTTP
//!   stack already parsed the request (hyper, axum) builds the same type
//!   with [`UpgradeRequest::from_parts`] and writes
//!   [`Accepted::headers`] itself; an HTTP/2 or HTTP/3 server that received
//!   an extended `CONNECT` (RFC 8441, RFC 9220) builds it with
//!   [`UpgradeRequest::from_extended_connect`] and answers `200`
//!   ([`Accepted::status`]).
//! * Client: [`ClientHandshake::new`] returns the request bytes to write;
//!   [`ClientHandshake::feed`] checks the server's answer and yields a
//!   [`Connected`] (the [`UpgradeResponse`], [`Negotiated`], leftover
//!   bytes). Mistakes in our own request are [`RequestError`]s; faults in
//!   the server's answer are [`HandshakeError`]s.
//! * permessage-deflate (RFC 7692) is offered, accepted and verified per
//!   [`crate::Config`]'s `deflate` setting inside both machines, so every
//!   adapter and embedder negotiates the same way.
//! * [`parse_extensions`] / [`format_extensions`] implement the
//!   `Sec-WebSocket-Extensions` grammar of RFC 6455 §9.1.
//! * [`WsUrl`] parses `ws://` and `wss://` URIs (RFC 6455 §3).
//!
//! Head size limits come from [`crate::Config::max_handshake_size`] and
//! [`crate::Config::max_handshake_headers`].

mod client;
mod error;
mod extended_connect;
pub(crate) mod extensions;
mod http;
mod negotiate;
mod rejection;
mod server;
mod url;

pub use client::{ClientHandshake, ClientRequest, Connected, UpgradeResponse};
pub use error::{HandshakeError, RequestError};
pub use extensions::{
    format_extensions, parse_extensions, ExtensionOffer, ExtensionParam, ExtensionParseError,
};
pub use negotiate::Negotiated;
pub use rejection::Rejection;
pub use server::{Accept, Accepted, ServerHandshake, UpgradeForm, UpgradeRequest};
pub use url::{UrlError, WsUrl};

use base64::Engine as _;

/// The GUID that RFC 6455 §1.3 / §4.2.2 appends to the client's key.
const WEBSOCKET_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

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
        // The limits that used to be `Limits::default()` are the Config's.
        let config = crate::Config::default();
        assert_eq!(config.max_handshake_size, 16 * 1024);
        assert_eq!(config.max_handshake_headers, 64);
    }
}
