//! Server side of the opening handshake (RFC 6455 §4.2): a sans-IO machine
//! that turns the client's bytes into one validated [`UpgradeRequest`] (or
//! the [`Rejection`] to send), and the one way to accept it.

use base64::Engine as _;

use super::extensions::{parse_extensions, ExtensionOffer};
use super::http::{
    find_header, header_values, is_safe_field_value, is_token, iter_headers, list_contains_token,
    list_elements, own_headers, push_header, single_header, trim_ows, Ended, Fields, HeadBuffer,
    HeadError,
};
use super::negotiate::{self, Negotiated};
use super::{accept_key, Rejection};
use crate::config::Config;

/// Response headers that [`UpgradeRequest::accept`] writes itself;
/// [`Accept::headers`] may not repeat them.
const RESERVED_RESPONSE_HEADERS: [&str; 5] = [
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Accept",
    "Sec-WebSocket-Protocol",
    "Sec-WebSocket-Extensions",
];

/// A server's opening handshake in progress: collects the client's request
/// head from the bytes read so far and validates it.
///
/// ```
/// use chito::handshake::{Accept, ServerHandshake};
/// use chito::Config;
///
/// let config = Config::default();
/// let mut handshake = ServerHandshake::new(&config);
/// let wire = b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\
///              Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
///              Sec-WebSocket-Version: 13\r\n\r\n";
/// let (first, rest) = wire.split_at(20);
/// assert_eq!(handshake.feed(first), Ok(None)); // read more
/// let request = handshake.feed(rest).unwrap().unwrap();
/// assert_eq!(request.path(), "/chat");
/// let accepted = request.accept(Accept::default(), &config).unwrap();
/// assert!(accepted.response().starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHandshake {
    head: HeadBuffer,
    ended: Ended<Rejection>,
}

impl ServerHandshake {
    /// A handshake that accepts a request head of at most
    /// [`Config::max_handshake_size`] bytes and
    /// [`Config::max_handshake_headers`] header fields.
    pub fn new(config: &Config) -> Self {
        ServerHandshake {
            head: HeadBuffer::new(config.max_handshake_size, config.max_handshake_headers),
            ended: Ended::No,
        }
    }

    /// Takes the next bytes read from the client, in chunks of any size.
    ///
    /// * `Ok(None)`: the head is not complete yet; read more and feed them.
    /// * `Ok(Some(request))`: a complete head that is a valid upgrade
    ///   (RFC 6455 §4.2.1; see [`UpgradeRequest`] for the checks). Bytes
    ///   fed after the head already belong to the WebSocket connection (a
    ///   client may send frames right behind its request): they are kept
    ///   and come out of [`Accepted::leftover`].
    /// * `Err(rejection)`: send [`Rejection::to_response`] and close. A
    ///   `431` (RFC 6585 §5) if more than
    ///   [`Config::max_handshake_headers`] fields arrive, or more than
    ///   [`Config::max_handshake_size`] bytes without the end of the head; a
    ///   `400` for anything that is not HTTP/1.x syntax; otherwise the
    ///   validation refusals of [`UpgradeRequest`].
    ///
    /// Only the first `max_handshake_size` bytes are ever parsed, and the
    /// buffer never holds more than that plus the chunk just fed. Once the
    /// handshake ended, an error is repeated to later calls; feeding bytes
    /// after `Ok(Some)` is a bug in the caller (they belong to the
    /// connection): debug builds panic, release builds ignore them and
    /// return `Ok(None)`.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<UpgradeRequest>, Rejection> {
        if let Some(answer) = self.ended.replay() {
            return answer;
        }
        let outcome = self.read(bytes);
        self.ended.record(&outcome);
        outcome
    }

    /// Buffers `bytes`, parses the head once it is complete and validates it.
    fn read(&mut self, bytes: &[u8]) -> Result<Option<UpgradeRequest>, Rejection> {
        let parsed = self.head.feed(bytes, |window, slots| {
            let mut request = httparse::Request::new(slots);
            Ok(match request.parse(window)? {
                httparse::Status::Complete(consumed) => httparse::Status::Complete((
                    RequestHead {
                        method: request.method.unwrap_or_default().to_owned(),
                        target: request.path.unwrap_or_default().to_owned(),
                        http_minor_version: request.version.unwrap_or_default(),
                        headers: own_headers(request.headers),
                    },
                    consumed,
                )),
                httparse::Status::Partial => httparse::Status::Partial,
            })
        });
        match parsed {
            Ok(None) => Ok(None),
            Ok(Some((head, leftover))) => UpgradeRequest::validate(head, leftover).map(Some),
            // RFC 6585 §5: 431 for header fields that are too large, alone
            // or together.
            Err(HeadError::TooLarge) => Err(Rejection::new(431, "request head too large")),
            Err(HeadError::TooManyHeaders) => Err(Rejection::new(431, "too many header fields")),
            Err(HeadError::Malformed(error)) => Err(Rejection::new(
                400,
                format!("malformed HTTP request: {error}"),
            )),
        }
    }
}

/// How a client asked for a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeForm {
    /// An HTTP/1.1 `GET` with `Upgrade: websocket` (RFC 6455 §4.1),
    /// answered with `101 Switching Protocols`.
    Upgrade,
    /// An extended `CONNECT` with `:protocol` `websocket` on an HTTP/2
    /// stream (RFC 8441) or HTTP/3 stream (RFC 9220), answered with `200`;
    /// the stream then carries the WebSocket frames.
    ExtendedConnect,
}

/// Header pairs from another HTTP stack, owned, values OWS-trimmed, within
/// the same limits a head read by [`ServerHandshake`] has: at most
/// [`Config::max_handshake_headers`] fields and
/// [`Config::max_handshake_size`] bytes, counting `start_line` bytes and
/// each field as `name: value` with its CRLF (RFC 6585 §5: `431`), so an
/// embedded server answers as a standalone one does and a request held
/// here stays bounded.
pub(super) fn own_fields<'a, I>(
    start_line: usize,
    headers: I,
    config: &Config,
) -> Result<Fields, Rejection>
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    let mut size = start_line;
    let mut fields = Fields::new();
    for (name, value) in headers {
        size = size.saturating_add(name.len() + value.len() + 4);
        if fields.len() == config.max_handshake_headers {
            return Err(Rejection::new(431, "too many header fields"));
        }
        if size > config.max_handshake_size {
            return Err(Rejection::new(431, "request head too large"));
        }
        fields.push((name.to_owned(), trim_ows(value).to_vec()));
    }
    Ok(fields)
}

/// A parsed request head, not validated yet.
struct RequestHead {
    method: String,
    target: String,
    http_minor_version: u8,
    headers: Fields,
}

/// A client's opening handshake request, validated: an HTTP/1.1 `GET` that
/// asks for a WebSocket upgrade (RFC 6455 §4.2.1), or an HTTP/2 or HTTP/3
/// extended `CONNECT` (RFC 8441, see
/// [`from_extended_connect`](Self::from_extended_connect)).
///
/// There are two ways to get an HTTP/1.1 one, and both run the same checks:
/// [`ServerHandshake::feed`] from raw bytes, or [`from_parts`](Self::from_parts)
/// when another HTTP stack parsed the request. Whatever holds an
/// `UpgradeRequest` can accept it: refusals, in the order checked, are
///
/// * `400`: method not `GET`; HTTP/1.0; a target that is neither
///   origin-form nor an absolute `http(s)` URI, or has a fragment;
///   `Host` missing, empty or repeated; a request body
///   (`Transfer-Encoding`, or `Content-Length` other than 0); no
///   `websocket` in `Upgrade`; no `upgrade` in `Connection`;
/// * `426` with `Sec-WebSocket-Version: 13`: version missing or not 13;
/// * `400`: `Sec-WebSocket-Key` missing, repeated, or not the base64 of
///   16 bytes; a `Sec-WebSocket-Protocol` element that is not a token; a
///   malformed `Sec-WebSocket-Extensions`.
///
/// Missing or wrong `Upgrade` is a `400`, not a `426`: RFC 6455 §4.2.2
/// says a request that is not a valid handshake gets "an appropriate
/// error code (such as 400 Bad Request)", and reserves `426` (§4.4) for
/// a version mismatch, where the client can retry with another version.
/// A `426` (RFC 7231 §6.5.15) would also invite a plain HTTP client to
/// retry an upgrade it does not speak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRequest {
    method: String,
    target: String,
    /// In arrival order, OWS trimmed from values, repeated names kept.
    headers: Fields,
    /// The `Sec-WebSocket-Key` value, checked to be the base64 of 16 bytes
    /// (so 24 ASCII characters); `None` for an extended `CONNECT`, which has
    /// no key (RFC 8441 §5).
    key: Option<String>,
    /// Every `Sec-WebSocket-Extensions` offer, parsed once, in order.
    extensions: Vec<ExtensionOffer>,
    /// Bytes fed after the head: the start of the WebSocket stream.
    leftover: Vec<u8>,
}

impl UpgradeRequest {
    /// Validates a request that another HTTP stack (hyper, axum...) already
    /// parsed. Header values have surrounding whitespace trimmed. There are
    /// no leftover bytes: the HTTP stack keeps whatever followed the head.
    ///
    /// This checks the HTTP/1.1 handshake of RFC 6455 §4.2.1 only. An
    /// HTTP/2 (RFC 8441) or HTTP/3 (RFC 9220) WebSocket stream has method
    /// `CONNECT`, a `:protocol` pseudo-header and no `Sec-WebSocket-Key`,
    /// so it is refused here: build it with
    /// [`from_extended_connect`](Self::from_extended_connect).
    ///
    /// The head limits of `config` apply as to a request read by
    /// [`ServerHandshake`]: a `431` for more fields or bytes.
    ///
    /// # Errors
    /// The [`Rejection`] to answer with; see [`UpgradeRequest`].
    pub fn from_parts<'a, I>(
        method: &str,
        target: &str,
        http_minor_version: u8,
        headers: I,
        config: &Config,
    ) -> Result<UpgradeRequest, Rejection>
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        // "METHOD target HTTP/1.x\r\n"
        let start_line = method.len() + target.len() + 12;
        let head = RequestHead {
            method: method.to_owned(),
            target: target.to_owned(),
            http_minor_version,
            headers: own_fields(start_line, headers, config)?,
        };
        UpgradeRequest::validate(head, Vec::new())
    }

    /// Checks that `head` is a WebSocket opening handshake (RFC 6455
    /// §4.2.1), in the order [`UpgradeRequest`] documents, and keeps what
    /// accepting it needs.
    fn validate(head: RequestHead, leftover: Vec<u8>) -> Result<UpgradeRequest, Rejection> {
        let RequestHead {
            method,
            target,
            http_minor_version,
            headers,
        } = head;
        // RFC 6455 §4.2.1 item 1: "An HTTP/1.1 or higher GET request".
        // Methods are case-sensitive (RFC 7231 §4.1).
        if method != "GET" {
            return Err(Rejection::new(400, "WebSocket handshake must use GET"));
        }
        if http_minor_version < 1 {
            return Err(Rejection::new(
                400,
                "WebSocket handshake needs HTTP/1.1 or later",
            ));
        }
        // RFC 6455 §4.2.1 item 1: the Request-URI is a /resource name/ or an
        // absolute HTTP/HTTPS URI containing one; §3: never a fragment.
        if !is_valid_target(&target) {
            return Err(Rejection::new(400, "invalid request target"));
        }
        // RFC 6455 §4.2.1 item 2 and RFC 7230 §5.4: exactly one Host, with a
        // value.
        match single_header(&headers, "Host") {
            Ok(Some(host)) if !host.is_empty() => {}
            _ => {
                return Err(Rejection::new(
                    400,
                    "a single non-empty Host header is required",
                ))
            }
        }
        // The bytes after the head belong to the WebSocket connection, so a
        // request body would be read as frames: refuse one (RFC 7230 §3.3).
        let content_length_zero = match single_header(&headers, "Content-Length") {
            Ok(None) => true,
            Ok(Some(value)) => value == b"0",
            Err(()) => false,
        };
        if find_header(&headers, "Transfer-Encoding").is_some() || !content_length_zero {
            return Err(Rejection::new(
                400,
                "WebSocket handshake must not have a body",
            ));
        }
        // RFC 6455 §4.2.1 item 3: Upgrade contains "websocket", ASCII
        // case-insensitive; Upgrade is a comma list (RFC 7230 §6.7).
        if !list_contains_token(&headers, "Upgrade", "websocket") {
            return Err(Rejection::new(400, "Upgrade header must contain websocket"));
        }
        // RFC 6455 §4.2.1 item 4: Connection contains the token "Upgrade",
        // ASCII case-insensitive; a list field that may be split over
        // several headers (RFC 7230 §3.2.2, §6.1).
        if !list_contains_token(&headers, "Connection", "upgrade") {
            return Err(Rejection::new(
                400,
                "Connection header must contain upgrade",
            ));
        }
        // RFC 6455 §4.2.1 item 6 / §4.2.2 / §4.4: version 13, else 426 with
        // the versions we support. RFC 7231 §6.5.15: a 426 MUST carry Upgrade.
        match single_header(&headers, "Sec-WebSocket-Version") {
            Ok(Some(b"13")) => {}
            _ => {
                return Err(Rejection::new(426, "Sec-WebSocket-Version must be 13")
                    .with_header("Upgrade", "websocket")
                    .with_header("Sec-WebSocket-Version", "13"))
            }
        }
        // RFC 6455 §4.2.1 item 5: a Sec-WebSocket-Key that is the base64 of
        // 16 bytes. RFC 6455 §11.3.1: it may appear only once.
        let key = match single_header(&headers, "Sec-WebSocket-Key") {
            // Valid base64 is ASCII, so the conversion loses nothing.
            Ok(Some(key)) if is_valid_key(key) => String::from_utf8_lossy(key).into_owned(),
            _ => {
                return Err(Rejection::new(
                    400,
                    "Sec-WebSocket-Key must be one base64-encoded 16-byte value",
                ))
            }
        };
        UpgradeRequest::validated(method, target, headers, Some(key), leftover)
    }

    /// The checks both handshake forms share, once the form's own passed:
    /// the offered subprotocols and extensions (RFC 6455 §4.1, §9.1; RFC
    /// 8441 §5 keeps both headers as they are).
    pub(super) fn validated(
        method: String,
        target: String,
        headers: Fields,
        key: Option<String>,
        leftover: Vec<u8>,
    ) -> Result<UpgradeRequest, Rejection> {
        // RFC 6455 §4.1: subprotocol names are tokens.
        if !list_elements(&headers, "Sec-WebSocket-Protocol").all(is_token) {
            return Err(Rejection::new(400, "invalid Sec-WebSocket-Protocol"));
        }
        // RFC 6455 §9.1 grammar. Parsed here, once, and kept for
        // negotiation and for checking what the server accepts.
        let extensions = parse_extensions(header_values(&headers, "Sec-WebSocket-Extensions"))
            .map_err(|error| Rejection::new(400, error.to_string()))?;
        Ok(UpgradeRequest {
            method,
            target,
            headers,
            key,
            extensions,
            leftover,
        })
    }

    /// How the client asked: an HTTP/1.1 upgrade or an extended `CONNECT`.
    pub fn form(&self) -> UpgradeForm {
        if self.key.is_some() {
            UpgradeForm::Upgrade
        } else {
            UpgradeForm::ExtendedConnect
        }
    }

    /// The request method: `GET` for an HTTP/1.1 upgrade, `CONNECT` for an
    /// extended `CONNECT`.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request target as sent: normally path and query
    /// (`/chat?room=1`), or an absolute `http(s)://` URI (RFC 6455 §4.1
    /// allows both).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The path part of the target, without the query; `/` if empty. For an
    /// absolute-form target, the path after the authority.
    pub fn path(&self) -> &str {
        let resource = self.resource_name();
        let path = resource
            .split_once('?')
            .map_or(resource, |(path, _query)| path);
        if path.is_empty() {
            "/"
        } else {
            path
        }
    }

    /// The query part of the target, after `?`, if there is one.
    pub fn query(&self) -> Option<&str> {
        self.resource_name()
            .split_once('?')
            .map(|(_path, query)| query)
    }

    /// RFC 6455 §3: the /resource name/ is path and query; for an
    /// absolute-form target, strip `scheme://authority`.
    fn resource_name(&self) -> &str {
        if self.target.starts_with('/') {
            return &self.target;
        }
        match self.target.split_once("://") {
            Some((_scheme, rest)) => rest
                .find(['/', '?'])
                .and_then(|start| rest.get(start..))
                .unwrap_or(""),
            None => &self.target,
        }
    }

    /// The value of the first header called `name` (ASCII
    /// case-insensitive, RFC 7230 §3.2).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        find_header(&self.headers, name)
    }

    /// [`header`](Self::header) as text; `None` if absent or not UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name)
            .and_then(|value| std::str::from_utf8(value).ok())
    }

    /// Every header field in arrival order, repeated names included.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        iter_headers(&self.headers)
    }

    /// The subprotocols the client offers, in order: the comma-separated
    /// elements of every `Sec-WebSocket-Protocol` header (RFC 6455 §4.1),
    /// trimmed, empty elements skipped. Each is a token.
    pub fn protocols(&self) -> impl Iterator<Item = &str> {
        list_elements(&self.headers, "Sec-WebSocket-Protocol")
            .filter_map(|element| std::str::from_utf8(element).ok())
    }

    /// The extensions the client offers, from every
    /// `Sec-WebSocket-Extensions` header (RFC 6455 §9.1), in order.
    pub fn extensions(&self) -> &[ExtensionOffer] {
        &self.extensions
    }

    /// Accepts the request: the `101 Switching Protocols` response
    /// (RFC 6455 §4.2.2) and what it settles.
    ///
    /// Unless `accept.extensions` is set (then the caller owns extension
    /// negotiation and [`Negotiated::deflate`] stays `None`),
    /// permessage-deflate is negotiated from the client's offers per
    /// [`Config::deflate`] (RFC 7692 §5; declining is not an error).
    ///
    /// The response's fields are `Upgrade`, `Connection`,
    /// `Sec-WebSocket-Accept`, then `Sec-WebSocket-Protocol` and
    /// `Sec-WebSocket-Extensions` if chosen, then [`Accept::headers`].
    ///
    /// # Errors
    /// A `500` if `accept` is wrong, a bug in the server rather than in the
    /// client: a protocol the client did not offer (RFC 6455 §4.2.2
    /// /subprotocol/), an extensions value that is malformed or names an
    /// extension the client did not offer (RFC 6455 §9.1), or an extra
    /// header that is not a token name with a CR/LF-free value (header
    /// injection) or repeats one of the five headers above.
    pub fn accept(self, accept: Accept, config: &Config) -> Result<Accepted, Rejection> {
        let Accept {
            protocol,
            extensions,
            headers: extra,
        } = accept;
        let mut headers = Vec::with_capacity(5 + extra.len());
        let status = match &self.key {
            Some(key) => {
                headers.push(("Upgrade".to_owned(), "websocket".to_owned()));
                headers.push(("Connection".to_owned(), "Upgrade".to_owned()));
                // RFC 6455 §4.2.2 item 5.4.
                headers.push((
                    "Sec-WebSocket-Accept".to_owned(),
                    accept_key(key.as_bytes()),
                ));
                101
            }
            // RFC 8441 §5: a 2xx answers an extended CONNECT; there is no
            // key to answer, and Upgrade/Connection are connection-specific
            // fields HTTP/2 forbids (RFC 9113 §8.2.2).
            None => 200,
        };

        if let Some(protocol) = &protocol {
            // RFC 6455 §4.2.2 /subprotocol/: one of the values the client
            // sent, echoed exactly.
            if !self.protocols().any(|offered| offered == protocol) {
                return Err(Rejection::new(
                    500,
                    "server selected a subprotocol the client did not offer",
                ));
            }
            headers.push(("Sec-WebSocket-Protocol".to_owned(), protocol.clone()));
        }

        let (extensions, mut negotiated) = match extensions {
            Some(value) => {
                self.check_accepted_extensions(&value)?;
                (Some(value), Negotiated::default())
            }
            // Our own answer is built from a parsed offer, so it needs no
            // checking against the offers.
            None => negotiate::server_answer(&self.extensions, config),
        };
        negotiated.protocol = protocol;
        if let Some(extensions) = extensions {
            headers.push(("Sec-WebSocket-Extensions".to_owned(), extensions));
        }

        for (name, value) in extra {
            if !is_token(name.as_bytes()) || !is_safe_field_value(value.as_bytes()) {
                return Err(Rejection::new(500, "invalid extra response header"));
            }
            if RESERVED_RESPONSE_HEADERS
                .iter()
                .any(|reserved| reserved.eq_ignore_ascii_case(&name))
            {
                return Err(Rejection::new(
                    500,
                    "extra response header repeats a handshake header",
                ));
            }
            headers.push((name, value));
        }
        Ok(Accepted {
            status,
            headers,
            negotiated,
            leftover: self.leftover,
        })
    }

    /// RFC 6455 §9.1: the server may only accept extensions the client
    /// offered (names match case-insensitively, as tokens do). Parsing the
    /// value also rules out CR/LF.
    fn check_accepted_extensions(&self, value: &str) -> Result<(), Rejection> {
        let accepted = parse_extensions([value.as_bytes()]).map_err(|_| {
            Rejection::new(500, "server produced a malformed Sec-WebSocket-Extensions")
        })?;
        let all_offered = accepted.iter().all(|ext| {
            self.extensions
                .iter()
                .any(|offer| offer.name.eq_ignore_ascii_case(&ext.name))
        });
        if all_offered {
            Ok(())
        } else {
            Err(Rejection::new(
                500,
                "server accepted an extension the client did not offer",
            ))
        }
    }
}

/// RFC 6455 §4.2.1 item 1 / §3: origin-form (`/path?query`) or an absolute
/// `http`/`https` URI, visible ASCII only (RFC 7230 §5.3), no fragment.
fn is_valid_target(target: &str) -> bool {
    let visible = !target.is_empty() && target.bytes().all(|b| b.is_ascii_graphic() && b != b'#');
    let form = target.starts_with('/')
        || target.split_once("://").is_some_and(|(scheme, rest)| {
            (scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https"))
                && !rest.is_empty()
        });
    visible && form
}

/// RFC 6455 §4.1 item 7: the base64 (RFC 4648 §4, padded) of 16 bytes.
fn is_valid_key(key: &[u8]) -> bool {
    // 16 bytes are always 24 base64 characters; check before decoding so
    // that a huge value costs nothing.
    key.len() == 24
        && base64::engine::general_purpose::STANDARD
            .decode(key)
            .is_ok_and(|bytes| bytes.len() == 16)
}

/// The server's side of a successful negotiation, given to
/// [`UpgradeRequest::accept`].
///
/// `Accept::default()` accepts without subprotocol, with the extensions
/// [`Config::deflate`] negotiates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accept {
    /// The chosen subprotocol; must be one the client offered
    /// ([`UpgradeRequest::protocols`]).
    pub protocol: Option<String>,
    /// The `Sec-WebSocket-Extensions` response value, already negotiated
    /// by the caller; may only name extensions the client offered. `None`
    /// lets [`UpgradeRequest::accept`] negotiate permessage-deflate.
    pub extensions: Option<String>,
    /// Extra response headers (`Set-Cookie`...). Names must be tokens and
    /// values free of CR, LF and other control characters.
    pub headers: Vec<(String, String)>,
}

impl Accept {
    /// Chooses a subprotocol (builder style).
    pub fn with_protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocol = Some(protocol.into());
        self
    }

    /// Sets the `Sec-WebSocket-Extensions` response value (builder style).
    pub fn with_extensions(mut self, extensions: impl Into<String>) -> Self {
        self.extensions = Some(extensions.into());
        self
    }

    /// Adds an extra response header (builder style).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// An accepted opening handshake: the `101` (or, for an extended
/// `CONNECT`, the `200`) to send, what it settled for the connection, and
/// the bytes that followed the request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    status: u16,
    headers: Vec<(String, String)>,
    negotiated: Negotiated,
    leftover: Vec<u8>,
}

impl Accepted {
    /// The status to answer with: `101` for an HTTP/1.1 upgrade (RFC 6455
    /// §4.2.2), `200` for an extended `CONNECT` (RFC 8441 §5).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The complete `HTTP/1.1 101 Switching Protocols` response
    /// (RFC 6455 §4.2.2) with the fields of [`headers`](Self::headers).
    /// WebSocket frames may follow it right away. (An extended `CONNECT`
    /// is answered by the HTTP/2 or HTTP/3 stack from
    /// [`status`](Self::status) and [`headers`](Self::headers); this writes
    /// its HTTP/1.1 form, which no client of it reads.)
    pub fn response(&self) -> Vec<u8> {
        let mut response = Vec::with_capacity(256);
        let status_line: &[u8] = match self.status {
            101 => b"HTTP/1.1 101 Switching Protocols\r\n",
            _ => b"HTTP/1.1 200 OK\r\n",
        };
        response.extend_from_slice(status_line);
        for (name, value) in &self.headers {
            push_header(&mut response, name, value);
        }
        response.extend_from_slice(b"\r\n");
        response
    }

    /// The response's header fields, in order, for an HTTP stack that
    /// writes its own response (hyper, axum). All are checked to be
    /// token names with CR/LF-free values.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }

    /// What the handshake settled, for
    /// [`Connection::with_negotiated`](crate::Connection::with_negotiated).
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// The bytes fed after the request head: the start of the WebSocket
    /// stream, to be handed to the connection. Empty for a request built
    /// with [`UpgradeRequest::from_parts`].
    pub fn leftover(&self) -> &[u8] {
        &self.leftover
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::http::feed_in_chunks;
    use proptest::prelude::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    /// The RFC 6455 §1.2 sample request, less Origin.
    fn valid_head() -> String {
        format!(
            "GET /chat?room=1 HTTP/1.1\r\n\
             Host: server.example.com\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\n\
             Sec-WebSocket-Protocol: chat, superchat\r\n\
             Sec-WebSocket-Version: 13\r\n\
             \r\n"
        )
    }

    /// A config with the given head limits.
    fn limits(max_size: usize, max_headers: usize) -> Config {
        Config {
            max_handshake_size: max_size,
            max_handshake_headers: max_headers,
            ..Config::default()
        }
    }

    /// A fresh handshake fed `bytes` in one piece.
    fn feed(bytes: &[u8], config: &Config) -> Result<Option<UpgradeRequest>, Rejection> {
        ServerHandshake::new(config).feed(bytes)
    }

    /// A fresh handshake fed `bytes` in chunks of the given sizes (the
    /// rest in one piece once they run out) until an outcome. A request's
    /// leftover then also holds the bytes not fed yet: a caller hands both
    /// to the connection.
    fn feed_chunked(
        bytes: &[u8],
        sizes: impl IntoIterator<Item = usize>,
        config: &Config,
    ) -> Result<Option<UpgradeRequest>, Rejection> {
        let mut handshake = ServerHandshake::new(config);
        let outcome = feed_in_chunks(bytes, sizes, |chunk| handshake.feed(chunk))?;
        Ok(outcome.map(|(mut request, unfed)| {
            request.leftover.extend_from_slice(unfed);
            request
        }))
    }

    /// [`feed_chunked`] one byte at a time.
    fn feed_bytewise(bytes: &[u8], config: &Config) -> Result<Option<UpgradeRequest>, Rejection> {
        feed_chunked(bytes, std::iter::repeat(1), config)
    }

    /// The valid request in `head`, which must be exactly one complete head.
    fn parse(head: &str) -> UpgradeRequest {
        let request = feed(head.as_bytes(), &Config::default())
            .unwrap()
            .expect("complete head");
        assert!(request.leftover.is_empty());
        request
    }

    /// `valid_head` with the header line starting with `name` replaced by
    /// `replacement` (several lines, or none if empty).
    fn with_header(name: &str, replacement: &str) -> String {
        let mut out = String::new();
        for line in valid_head().split_inclusive("\r\n") {
            if line.starts_with(name) {
                out.push_str(replacement);
            } else {
                out.push_str(line);
            }
        }
        out
    }

    /// The refusal of a complete head.
    fn refusal(head: &str) -> Rejection {
        feed(head.as_bytes(), &Config::default()).unwrap_err()
    }

    fn accept(request: &UpgradeRequest, accept: Accept) -> Result<Accepted, Rejection> {
        request.clone().accept(accept, &Config::default())
    }

    #[test]
    fn valid_request_is_accepted() {
        let request = parse(&valid_head());
        assert_eq!(request.method(), "GET");
        assert_eq!(request.target(), "/chat?room=1");
        assert_eq!(request.path(), "/chat");
        assert_eq!(request.query(), Some("room=1"));
        assert_eq!(request.form(), UpgradeForm::Upgrade);
        assert_eq!(request.header("host"), Some(&b"server.example.com"[..]));
        assert_eq!(request.header_str("SEC-WEBSOCKET-KEY"), Some(KEY));
        assert_eq!(request.headers().count(), 6);
        assert_eq!(
            request.protocols().collect::<Vec<_>>(),
            ["chat", "superchat"]
        );
        assert_eq!(request.extensions(), &[] as &[ExtensionOffer]);
    }

    #[test]
    fn accept_writes_rfc_sample_response() {
        let accepted = accept(
            &parse(&valid_head()),
            Accept::default().with_protocol("chat"),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(accepted.response()).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
             Sec-WebSocket-Protocol: chat\r\n\
             \r\n"
        );
        assert_eq!(accepted.negotiated().protocol.as_deref(), Some("chat"));
        assert!(accepted.leftover().is_empty());
    }

    #[test]
    fn accept_headers_lists_everything() {
        let head = with_header(
            "Sec-WebSocket-Version",
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
        );
        let accept_value = Accept::default()
            .with_extensions("permessage-deflate")
            .with_header("Set-Cookie", "a=b");
        let accepted = accept(&parse(&head), accept_value).unwrap();
        let names: Vec<_> = accepted.headers().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "Upgrade",
                "Connection",
                "Sec-WebSocket-Accept",
                "Sec-WebSocket-Extensions",
                "Set-Cookie"
            ]
        );
        // The caller answered the extensions itself: nothing negotiated here.
        assert_eq!(accepted.negotiated(), &Negotiated::default());
    }

    #[test]
    fn lowercase_and_mixed_tokens_are_accepted() {
        let head = valid_head()
            .replace("Upgrade: websocket", "upgrade: WebSocket")
            .replace("Connection: Upgrade", "connection: keep-alive, UPGRADE");
        parse(&head);
    }

    #[test]
    fn upgrade_list_containing_websocket_is_accepted() {
        let head = valid_head().replace("Upgrade: websocket", "Upgrade: h2c, websocket");
        parse(&head);
    }

    #[test]
    fn upgrade_token_across_several_connection_headers() {
        let head = with_header(
            "Connection",
            "Connection: keep-alive\r\nConnection: Upgrade\r\n",
        );
        parse(&head);
    }

    #[test]
    fn non_get_is_400() {
        let rejection = refusal(&valid_head().replace("GET ", "POST "));
        assert_eq!(rejection.status(), 400);
        assert_eq!(refusal(&valid_head().replace("GET ", "get ")).status(), 400);
    }

    #[test]
    fn http_1_0_is_400() {
        let rejection = refusal(&valid_head().replace("HTTP/1.1", "HTTP/1.0"));
        assert_eq!(rejection.status(), 400);
        assert!(rejection.reason().contains("HTTP/1.1"));
    }

    #[test]
    fn missing_or_repeated_host_is_400() {
        assert_eq!(refusal(&with_header("Host", "")).status(), 400);
        assert_eq!(refusal(&with_header("Host", "Host:\r\n")).status(), 400);
        let twice = with_header("Host", "Host: a\r\nHost: b\r\n");
        assert_eq!(refusal(&twice).status(), 400);
    }

    #[test]
    fn missing_upgrade_is_400() {
        assert_eq!(refusal(&with_header("Upgrade", "")).status(), 400);
    }

    #[test]
    fn garbage_upgrade_is_400() {
        for value in ["h2c", "websocketx", "web socket", "websocket/13"] {
            let head = with_header("Upgrade", &format!("Upgrade: {value}\r\n"));
            assert_eq!(refusal(&head).status(), 400, "{value}");
        }
    }

    #[test]
    fn missing_connection_upgrade_is_400() {
        assert_eq!(refusal(&with_header("Connection", "")).status(), 400);
    }

    #[test]
    fn connection_keep_alive_only_is_400() {
        let head = with_header("Connection", "Connection: keep-alive\r\n");
        let rejection = refusal(&head);
        assert_eq!(rejection.status(), 400);
        assert!(rejection.reason().contains("Connection"));
    }

    #[test]
    fn wrong_version_is_426_with_supported_version() {
        for replacement in [
            "Sec-WebSocket-Version: 8\r\n",
            "Sec-WebSocket-Version: 13, 8\r\n",
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 13\r\n",
            "",
        ] {
            let rejection = refusal(&with_header("Sec-WebSocket-Version", replacement));
            assert_eq!(rejection.status(), 426, "{replacement:?}");
            let headers: Vec<_> = rejection.headers().collect();
            assert!(headers.contains(&("Sec-WebSocket-Version", "13")));
            assert!(headers.contains(&("Upgrade", "websocket")));
        }
    }

    #[test]
    fn version_426_response_bytes() {
        let rejection = refusal(&with_header("Sec-WebSocket-Version", ""));
        let response = String::from_utf8(rejection.to_response()).unwrap();
        let body = "Sec-WebSocket-Version must be 13";
        assert_eq!(
            response,
            format!(
                "HTTP/1.1 426 Upgrade Required\r\n\
                 Upgrade: websocket\r\n\
                 Sec-WebSocket-Version: 13\r\n\
                 Content-Type: text/plain; charset=utf-8\r\n\
                 Content-Length: {}\r\n\
                 Connection: Upgrade, close\r\n\
                 \r\n\
                 {body}",
                body.len()
            )
        );
    }

    #[test]
    fn bad_keys_are_400() {
        for replacement in [
            "",
            "Sec-WebSocket-Key: not base64 at all!!!!\r\n",
            // 15 bytes
            "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA\r\n",
            // 17 bytes
            "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA=\r\n",
            // 16 bytes but unpadded
            "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA\r\n",
            // non-canonical trailing bits
            "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAB==\r\n",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        ] {
            let rejection = refusal(&with_header("Sec-WebSocket-Key", replacement));
            assert_eq!(rejection.status(), 400, "{replacement:?}");
        }
    }

    #[test]
    fn key_with_surrounding_whitespace_is_fine() {
        let head = with_header(
            "Sec-WebSocket-Key",
            &format!("Sec-WebSocket-Key:   {KEY}\t\r\n"),
        );
        parse(&head);
    }

    #[test]
    fn request_body_is_400() {
        let cl = with_header("Host", "Host: a\r\nContent-Length: 5\r\n");
        assert_eq!(refusal(&cl).status(), 400);
        let te = with_header("Host", "Host: a\r\nTransfer-Encoding: chunked\r\n");
        assert_eq!(refusal(&te).status(), 400);
        let zero = with_header("Host", "Host: a\r\nContent-Length: 0\r\n");
        parse(&zero);
    }

    #[test]
    fn targets() {
        let absolute = valid_head().replace("/chat?room=1", "http://example.com/chat?room=1");
        let request = parse(&absolute);
        assert_eq!(request.path(), "/chat");
        assert_eq!(request.query(), Some("room=1"));

        let bare = parse(&valid_head().replace("/chat?room=1", "https://example.com"));
        assert_eq!((bare.path(), bare.query()), ("/", None));

        for target in ["*", "chat", "ftp://example.com/", "/chat#frag"] {
            let head = valid_head().replace("/chat?room=1", target);
            assert_eq!(refusal(&head).status(), 400, "{target}");
        }
    }

    #[test]
    fn bad_protocol_or_extension_offer_is_400() {
        let protocol = with_header("Sec-WebSocket-Protocol", "Sec-WebSocket-Protocol: a b\r\n");
        assert_eq!(refusal(&protocol).status(), 400);
        let extension = with_header(
            "Sec-WebSocket-Protocol",
            "Sec-WebSocket-Extensions: ; x\r\n",
        );
        assert_eq!(refusal(&extension).status(), 400);
    }

    #[test]
    fn malformed_http_is_400() {
        for head in [
            "GET /\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
            "GET / HTTP/1.1\r\nbad header\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
            "\0\0\0\r\n\r\n",
        ] {
            let rejection = feed(head.as_bytes(), &Config::default()).unwrap_err();
            assert_eq!(rejection.status(), 400, "{head:?}");
            let bytewise = feed_bytewise(head.as_bytes(), &Config::default());
            assert!(
                matches!(&bytewise, Err(r) if r.status() == 400),
                "{head:?}: {bytewise:?}"
            );
        }
    }

    #[test]
    fn too_many_headers_is_431() {
        let head = valid_head();
        assert!(feed(head.as_bytes(), &limits(16 << 10, 6))
            .unwrap()
            .is_some());
        let rejection = feed(head.as_bytes(), &limits(16 << 10, 5)).unwrap_err();
        assert_eq!(rejection.status(), 431);
    }

    #[test]
    fn more_headers_than_the_stack_holds() {
        let extra: String = (0..100).map(|i| format!("X-{i}: {i}\r\n")).collect();
        let head = with_header("Host", &format!("Host: a\r\n{extra}"));
        assert_eq!(
            feed(head.as_bytes(), &Config::default())
                .unwrap_err()
                .status(),
            431
        );
        let request = feed(head.as_bytes(), &limits(16 << 10, 200))
            .unwrap()
            .unwrap();
        assert_eq!(request.header("X-99"), Some(&b"99"[..]));
    }

    #[test]
    fn head_too_large_while_partial_is_431() {
        let config = limits(64, 64);
        let partial = format!("GET / HTTP/1.1\r\nX-Filler: {}", "a".repeat(60));
        let rejection = feed(partial.as_bytes(), &config).unwrap_err();
        assert_eq!(rejection.status(), 431);
        // At the limit it is still only incomplete.
        assert_eq!(feed(&partial.as_bytes()[..64], &config), Ok(None));
        // Fed byte by byte, the byte past the limit is the one refused.
        let mut handshake = ServerHandshake::new(&config);
        for byte in &partial.as_bytes()[..64] {
            assert_eq!(handshake.feed(std::slice::from_ref(byte)), Ok(None));
        }
        assert_eq!(handshake.feed(b"a").unwrap_err().status(), 431);
    }

    #[test]
    fn head_of_exactly_max_size_followed_by_frames_is_accepted() {
        let head = valid_head();
        let frames = [0x81, 0x85, 1, 2, 3, 4, 5, 6, 7, 8, 9];
        let mut buf = head.clone().into_bytes();
        buf.extend_from_slice(&frames);
        let request = feed(&buf, &limits(head.len(), 64)).unwrap().unwrap();
        assert_eq!(buf.len() - request.leftover.len(), head.len());
        assert_eq!(request.leftover, frames);
        let refused = feed(&buf, &limits(head.len() - 1, 64)).unwrap_err();
        assert_eq!(refused.status(), 431);
    }

    #[test]
    fn every_split_point_of_a_valid_request_needs_more() {
        let head = valid_head();
        for end in 0..head.len() {
            assert_eq!(
                feed(&head.as_bytes()[..end], &Config::default()),
                Ok(None),
                "split at {end}"
            );
        }
        // The same machine fed one byte at a time needs more until the last.
        assert_eq!(
            feed_bytewise(head.as_bytes(), &Config::default()),
            Ok(Some(parse(&head)))
        );
    }

    #[test]
    fn bytes_after_the_head_are_not_consumed() {
        let head = valid_head();
        let trailing = b"\x81\x80\0\0\0\0GET / HTTP/1.1\r\n\r\n";
        let mut buf = head.clone().into_bytes();
        buf.extend_from_slice(trailing);
        let request = feed(&buf, &Config::default()).unwrap().unwrap();
        assert_eq!(buf.len() - request.leftover.len(), head.len());
        assert_eq!(&request.leftover[..2], b"\x81\x80");
        let accepted = request
            .accept(Accept::default(), &Config::default())
            .unwrap();
        assert_eq!(accepted.leftover(), trailing);
    }

    #[test]
    fn byte_at_a_time_gives_the_same_request_and_leftover() {
        let mut wire = with_header(
            "Sec-WebSocket-Version",
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
        )
        .into_bytes();
        let frames = b"\x81\x85\x01\x02\x03\x04hello\x88\x80";
        wire.extend_from_slice(frames);
        let config = Config::default();
        let whole = feed(&wire, &config).unwrap().unwrap();
        let bytewise = feed_bytewise(&wire, &config).unwrap().unwrap();
        assert_eq!(bytewise, whole);
        // Each byte alone: the head ends with the last byte of its
        // empty line, and that call hands the request out.
        let head_len = wire.len() - frames.len();
        let mut handshake = ServerHandshake::new(&config);
        for byte in &wire[..head_len - 1] {
            assert_eq!(handshake.feed(std::slice::from_ref(byte)), Ok(None));
        }
        let last = handshake
            .feed(&wire[head_len - 1..head_len])
            .unwrap()
            .unwrap();
        assert!(last.leftover.is_empty());
        // All of the head but its last byte, then that byte with the start
        // of the frames: the frames fed with it are kept.
        let split = feed_chunked(&wire, [head_len - 1, 5], &config)
            .unwrap()
            .unwrap();
        assert_eq!(split, whole);
        let (a, b) = (
            whole.accept(Accept::default(), &config).unwrap(),
            bytewise.accept(Accept::default(), &config).unwrap(),
        );
        assert_eq!(a, b);
        assert_eq!(a.leftover(), frames);
        #[cfg(feature = "deflate")]
        assert!(a.negotiated().deflate.is_some());
    }

    #[test]
    fn buffer_stays_within_the_limit_plus_one_chunk() {
        let config = limits(1024, 64);
        let mut handshake = ServerHandshake::new(&config);
        assert_eq!(handshake.feed(b"GET / HTTP/1.1\r\nX-Filler: "), Ok(None));
        let chunk = [b'a'; 100];
        let mut fed = 0;
        let rejection = loop {
            match handshake.feed(&chunk) {
                Ok(None) => {
                    assert!(handshake.head.len() <= 1024, "{}", handshake.head.len());
                    fed += chunk.len();
                    assert!(fed < 2048, "never refused");
                }
                Ok(Some(request)) => panic!("{request:?}"),
                Err(rejection) => break rejection,
            }
        };
        assert_eq!(rejection.status(), 431);
        assert!(handshake.head.len() <= 1024 + chunk.len());
        // One huge chunk: held as it came (it may end the head), refused.
        let mut handshake = ServerHandshake::new(&config);
        let huge = vec![b'a'; 1 << 20];
        assert_eq!(handshake.feed(b"GET / HTTP/1.1\r\nX: "), Ok(None));
        assert_eq!(handshake.feed(&huge).unwrap_err().status(), 431);
        assert!(handshake.head.len() <= 1024 + huge.len());
    }

    #[test]
    fn refusal_is_repeated_to_later_calls() {
        let mut handshake = ServerHandshake::new(&Config::default());
        let first = handshake.feed(b"\0\0\0\r\n\r\n").unwrap_err();
        assert_eq!(handshake.feed(&valid_head().into_bytes()), Err(first));
    }

    #[test]
    fn selected_protocol_must_have_been_offered() {
        let request = parse(&valid_head());
        accept(&request, Accept::default().with_protocol("superchat")).unwrap();
        let rejection = accept(&request, Accept::default().with_protocol("other")).unwrap_err();
        assert_eq!(rejection.status(), 500);
        // Case-sensitive, exact match.
        assert!(accept(&request, Accept::default().with_protocol("Chat")).is_err());
        let no_offer = parse(&with_header("Sec-WebSocket-Protocol", ""));
        assert_eq!(no_offer.protocols().count(), 0);
        assert!(accept(&no_offer, Accept::default().with_protocol("chat")).is_err());
    }

    #[test]
    fn protocols_across_several_headers() {
        let head = with_header(
            "Sec-WebSocket-Protocol",
            "Sec-WebSocket-Protocol: a ,b\r\nSec-WebSocket-Protocol: , c\r\n",
        );
        assert_eq!(
            parse(&head).protocols().collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn accepted_extension_must_have_been_offered() {
        let request = parse(&with_header(
            "Sec-WebSocket-Protocol",
            "Sec-WebSocket-Extensions: permessage-deflate\r\n",
        ));
        let rejection = accept(&request, Accept::default().with_extensions("x-other")).unwrap_err();
        assert_eq!(rejection.status(), 500);
        let malformed = accept(
            &request,
            Accept::default().with_extensions("permessage-deflate\r\nX: y"),
        )
        .unwrap_err();
        assert_eq!(malformed.status(), 500);
        accept(
            &request,
            Accept::default().with_extensions("permessage-deflate; server_no_context_takeover"),
        )
        .unwrap();
    }

    #[test]
    fn header_injection_in_accept_is_refused() {
        let request = parse(&valid_head());
        for (name, value) in [
            ("X-A", "b\r\nSet-Cookie: evil"),
            ("X-A", "b\nc"),
            ("X-A", "b\rc"),
            ("X-A\r\nEvil", "b"),
            ("X A", "b"),
            ("", "b"),
            ("Sec-WebSocket-Accept", "forged"),
            ("connection", "close"),
        ] {
            let rejection =
                accept(&request, Accept::default().with_header(name, value)).unwrap_err();
            assert_eq!(rejection.status(), 500, "{name:?}: {value:?}");
        }
        let rejection =
            accept(&request, Accept::default().with_protocol("chat\r\nX: y")).unwrap_err();
        assert_eq!(rejection.status(), 500);
    }

    #[test]
    fn accept_refuses_invalid_request() {
        // An invalid request never becomes an `UpgradeRequest`, so it can
        // never be accepted: the refusal comes from `feed`.
        let rejection = refusal(&valid_head().replace("GET ", "PUT "));
        assert_eq!(rejection.status(), 400);
    }

    #[test]
    fn from_parts_validates_and_accepts() {
        let key = KEY.as_bytes();
        let headers: [(&str, &[u8]); 5] = [
            ("host", b"example.com"),
            ("upgrade", b"websocket"),
            ("connection", b"upgrade"),
            ("sec-websocket-version", b" 13 "),
            ("sec-websocket-key", key),
        ];
        let request =
            UpgradeRequest::from_parts("GET", "/ws", 1, headers, &Config::default()).unwrap();
        let accepted = request
            .accept(Accept::default(), &Config::default())
            .unwrap();
        assert_eq!(
            accepted.headers().nth(2),
            Some(("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="))
        );
        assert!(accepted.leftover().is_empty());
        // RFC 8441 extended CONNECT is not an HTTP/1.1 handshake.
        let connect = UpgradeRequest::from_parts(
            "CONNECT",
            "/ws",
            0,
            [("host", &b"example.com"[..])],
            &Config::default(),
        );
        assert_eq!(connect.unwrap_err().status(), 400);
    }

    #[test]
    fn from_parts_has_the_head_limits_of_feed() {
        let config = limits(300, 8);
        let key = KEY.as_bytes();
        let base: Vec<(&str, &[u8])> = vec![
            ("host", b"example.com"),
            ("upgrade", b"websocket"),
            ("connection", b"upgrade"),
            ("sec-websocket-version", b"13"),
            ("sec-websocket-key", key),
        ];
        let build = |headers: &[(&str, &[u8])]| {
            UpgradeRequest::from_parts("GET", "/", 1, headers.iter().copied(), &config)
        };
        assert!(build(&base).is_ok());
        let mut many = base.clone();
        many.extend([("x-a", &b"1"[..]), ("x-b", b"2"), ("x-c", b"3")]);
        assert_eq!(build(&many).map(drop), Ok(()));
        many.push(("x-d", b"4"));
        assert_eq!(build(&many).unwrap_err().status(), 431);
        let big = vec![b'a'; 200];
        let mut large = base.clone();
        large.push(("cookie", &big));
        assert_eq!(build(&large).unwrap_err().status(), 431);
        // The same request fed as bytes hits the same limits.
        let head = "GET / HTTP/1.1\r\nhost: example.com\r\nupgrade: websocket\r\n\
                    connection: upgrade\r\nsec-websocket-version: 13\r\n\
                    sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nx-a: 1\r\nx-b: 2\r\n\
                    x-c: 3\r\nx-d: 4\r\n\r\n";
        assert_eq!(feed(head.as_bytes(), &config).unwrap_err().status(), 431);
    }

    #[test]
    fn from_parts_and_feed_build_the_same_request() {
        let fed = parse(&valid_head());
        let built = UpgradeRequest::from_parts(
            fed.method(),
            fed.target(),
            1,
            fed.headers(),
            &Config::default(),
        )
        .unwrap();
        assert_eq!(built, fed);
    }

    #[cfg(feature = "deflate")]
    #[test]
    fn accept_negotiates_deflate_from_the_stored_offers() {
        let head = with_header(
            "Sec-WebSocket-Protocol",
            "Sec-WebSocket-Extensions: x-unknown, permessage-deflate; client_max_window_bits\r\n",
        );
        let request = parse(&head);
        assert_eq!(request.extensions().len(), 2);
        let accepted = accept(&request, Accept::default()).unwrap();
        let params = accepted.negotiated().deflate.expect("negotiated");
        assert!(params.server_no_context_takeover && params.client_no_context_takeover);
        let answer: Vec<_> = accepted
            .headers()
            .filter(|(n, _)| *n == "Sec-WebSocket-Extensions")
            .collect();
        assert_eq!(answer.len(), 1);
        assert!(answer[0].1.starts_with("permessage-deflate"));
        // Deflate off: the same request is accepted without it.
        let off = Config {
            deflate: None,
            ..Config::default()
        };
        let plain = request.accept(Accept::default(), &off).unwrap();
        assert_eq!(plain.negotiated(), &Negotiated::default());
        assert!(plain
            .headers()
            .all(|(n, _)| n != "Sec-WebSocket-Extensions"));
    }

    #[test]
    fn response_bytes_are_the_headers() {
        let accepted = accept(
            &parse(&valid_head()),
            Accept::default()
                .with_protocol("chat")
                .with_header("X-A", "b"),
        )
        .unwrap();
        let mut slots = [httparse::EMPTY_HEADER; 8];
        let mut parsed = httparse::Response::new(&mut slots);
        let response = accepted.response();
        assert_eq!(
            parsed.parse(&response),
            Ok(httparse::Status::Complete(response.len()))
        );
        assert_eq!(parsed.code, Some(101));
        let fields: Vec<_> = parsed
            .headers
            .iter()
            .map(|h| (h.name, std::str::from_utf8(h.value).unwrap()))
            .collect();
        assert_eq!(fields, accepted.headers().collect::<Vec<_>>());
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let config = limits(256, 64);
            if let Ok(Some(request)) = feed(&bytes, &config) {
                prop_assert!(request.leftover.len() <= bytes.len());
                let _ = (request.path(), request.query(), request.extensions());
                let _ = request.accept(Accept::default(), &config);
            }
        }

        #[test]
        fn mutated_requests_never_panic(
            cut in 0usize..400,
            edits in prop::collection::vec((0usize..400, any::<u8>()), 0..8),
        ) {
            let mut bytes = valid_head().into_bytes();
            for (at, byte) in edits {
                if let Some(slot) = bytes.get_mut(at) {
                    *slot = byte;
                }
            }
            bytes.truncate(cut);
            if let Ok(Some(request)) = feed(&bytes, &Config::default()) {
                prop_assert!(request.leftover.len() <= bytes.len());
                let _ = (request.path(), request.query(), request.extensions());
                if let Ok(accepted) = request.accept(Accept::default(), &Config::default()) {
                    prop_assert!(accepted.response().ends_with(b"\r\n\r\n"));
                }
            }
        }

        #[test]
        fn any_chunking_gives_the_same_outcome(
            edits in prop::collection::vec((0usize..400, any::<u8>()), 0..3),
            trailing in prop::collection::vec(any::<u8>(), 0..20),
            cuts in prop::collection::vec(1usize..40, 0..30),
        ) {
            let mut bytes = valid_head().into_bytes();
            for (at, byte) in edits {
                if let Some(slot) = bytes.get_mut(at) {
                    *slot = byte;
                }
            }
            bytes.extend_from_slice(&trailing);
            let config = limits(256, 64);
            let whole = feed(&bytes, &config);
            let chunked = feed_chunked(&bytes, cuts, &config);
            match (&whole, &chunked) {
                // A refusal may come earlier in a chunked feed (a bad byte
                // is seen sooner) but has the same status.
                (Err(a), Err(b)) => prop_assert_eq!(a.status(), b.status()),
                _ => prop_assert_eq!(whole, chunked),
            }
        }
    }
}
