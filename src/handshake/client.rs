//! Client side of the opening handshake (RFC 6455 §4.1): the request to
//! write, and a sans-IO machine that checks the server's answer.

use std::borrow::Cow;

use base64::Engine as _;

use super::extensions::{format_extensions, parse_extensions, ExtensionOffer};
use super::http::{
    find_header, header_values, is_safe_field_value, is_token, iter_headers, list_contains_token,
    own_headers, Ended, Fields, HeadBuffer, HeadError,
};
use super::negotiate::{self, ClientNegotiation, Negotiated};
use super::url::WsUrl;
use super::{accept_key, HandshakeError, RequestError};
use crate::config::Config;

/// Request headers that [`ClientHandshake::new`] writes itself;
/// [`ClientRequest::headers`] may not repeat them.
const RESERVED_REQUEST_HEADERS: [&str; 7] = [
    "Host",
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Protocol",
    "Sec-WebSocket-Extensions",
];

/// What a client asks for in its opening handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRequest {
    /// The `Host` header value: host, plus `:port` if not the scheme's
    /// default (RFC 6455 §4.1 item 4). [`WsUrl::host_header`] gives it.
    pub host: String,
    /// The request target: path and query, starting with `/`.
    pub target: String,
    /// Subprotocols to offer, most preferred first (RFC 6455 §4.1 item 10);
    /// each must be a token and appear once.
    pub protocols: Vec<String>,
    /// Extensions to offer, most preferred first (RFC 6455 §9.1); names and
    /// values must be tokens.
    pub extensions: Vec<ExtensionOffer>,
    /// Extra headers such as `Origin`, `Cookie` or `Authorization`. Names
    /// must be tokens, values free of CR, LF and other control characters.
    pub headers: Vec<(String, String)>,
}

impl ClientRequest {
    /// A request for `target` on `host`; an empty `target` means `/`.
    pub fn new(host: impl Into<String>, target: impl Into<String>) -> Self {
        let mut target = target.into();
        if target.is_empty() {
            target.push('/');
        }
        ClientRequest {
            host: host.into(),
            target,
            protocols: Vec::new(),
            extensions: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// A request for the host, port and target of `url`.
    pub fn from_url(url: &WsUrl) -> Self {
        ClientRequest::new(url.host_header(), url.target.clone())
    }

    /// Offers one more subprotocol (builder style).
    pub fn with_protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocols.push(protocol.into());
        self
    }

    /// Offers one more extension (builder style).
    pub fn with_extension(mut self, extension: ExtensionOffer) -> Self {
        self.extensions.push(extension);
        self
    }

    /// Adds an extra request header (builder style).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A client's opening handshake in progress: what was offered, to check
/// the server's answer against, and the answer's bytes so far.
///
/// ```
/// use chito::handshake::{accept_key, ClientHandshake, ClientRequest};
/// use chito::Config;
///
/// let config = Config::default();
/// let request = ClientRequest::new("example.com", "/chat");
/// let (mut handshake, bytes) = ClientHandshake::new(&request, &config).unwrap();
/// assert!(bytes.starts_with(b"GET /chat HTTP/1.1\r\nHost: example.com\r\n"));
/// // ... write `bytes`, then feed what the server answers:
/// let answer = format!(
///     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
///      Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
///     accept_key(handshake.key().as_bytes())
/// );
/// let (first, rest) = answer.as_bytes().split_at(10);
/// assert_eq!(handshake.feed(first), Ok(None)); // read more
/// let connected = handshake.feed(rest).unwrap().unwrap();
/// assert_eq!(connected.response().status(), 101);
/// assert!(connected.leftover().is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHandshake {
    key: String,
    expected_accept: String,
    protocols: Vec<String>,
    extension_names: Vec<String>,
    negotiation: ClientNegotiation,
    head: HeadBuffer,
    ended: Ended<HandshakeError>,
}

impl ClientHandshake {
    /// Starts a handshake: checks `request`, adds the permessage-deflate
    /// offer [`Config::deflate`] asks for (unless `request` already offers
    /// permessage-deflate), picks a fresh random key and returns the
    /// request bytes to write (RFC 6455 §4.1):
    ///
    /// ```text
    /// GET <target> HTTP/1.1
    /// Host: <host>
    /// Upgrade: websocket
    /// Connection: Upgrade
    /// Sec-WebSocket-Key: <base64 of 16 random bytes>
    /// Sec-WebSocket-Version: 13
    /// [Sec-WebSocket-Protocol: a, b]
    /// [Sec-WebSocket-Extensions: ...]
    /// <extra headers>
    /// ```
    ///
    /// The server's head may be at most [`Config::max_handshake_size`]
    /// bytes with [`Config::max_handshake_headers`] fields.
    ///
    /// # Errors
    /// Every user-provided value is checked first, so nothing can inject a
    /// header or break the request line; see [`RequestError`].
    pub fn new(
        request: &ClientRequest,
        config: &Config,
    ) -> Result<(ClientHandshake, Vec<u8>), RequestError> {
        // RFC 6455 §4.1 item 7: "a randomly selected 16-byte value that has
        // been base64-encoded".
        let nonce = crate::rand::Rng::new().bytes16();
        let key = base64::engine::general_purpose::STANDARD.encode(nonce);
        Self::with_key(request, config, key)
    }

    /// [`new`](Self::new) with a given key.
    fn with_key(
        request: &ClientRequest,
        config: &Config,
        key: String,
    ) -> Result<(ClientHandshake, Vec<u8>), RequestError> {
        check_request(request)?;
        let mut offers = Cow::Borrowed(request.extensions.as_slice());
        // Built from the configuration, so valid by construction.
        if let Some(offer) = negotiate::client_offer(&request.extensions, config) {
            offers.to_mut().push(offer);
        }
        let mut bytes = Vec::with_capacity(256);
        // RFC 6455 §4.1 items 1-2: a GET of the /resource name/ over HTTP/1.1.
        push_line(&mut bytes, &["GET ", &request.target, " HTTP/1.1"]);
        // Item 4: Host.
        push_line(&mut bytes, &["Host: ", &request.host]);
        // Items 5-6: Upgrade and Connection.
        push_line(&mut bytes, &["Upgrade: websocket"]);
        push_line(&mut bytes, &["Connection: Upgrade"]);
        // Item 7: the nonce.
        push_line(&mut bytes, &["Sec-WebSocket-Key: ", &key]);
        // Item 9: version 13.
        push_line(&mut bytes, &["Sec-WebSocket-Version: 13"]);
        // Item 10: subprotocols, comma-separated.
        if !request.protocols.is_empty() {
            let protocols = request.protocols.join(", ");
            push_line(&mut bytes, &["Sec-WebSocket-Protocol: ", &protocols]);
        }
        // Item 11 / §9.1: extensions.
        if !offers.is_empty() {
            let extensions = format_extensions(&offers);
            push_line(&mut bytes, &["Sec-WebSocket-Extensions: ", &extensions]);
        }
        // Item 12: other header fields (cookies, Origin, authentication...).
        for (name, value) in &request.headers {
            push_line(&mut bytes, &[name, ": ", value]);
        }
        bytes.extend_from_slice(b"\r\n");

        let handshake = ClientHandshake {
            expected_accept: accept_key(key.as_bytes()),
            key,
            protocols: request.protocols.clone(),
            extension_names: offers.iter().map(|offer| offer.name.clone()).collect(),
            negotiation: ClientNegotiation::new(config),
            head: HeadBuffer::new(config.max_handshake_size, config.max_handshake_headers),
            ended: Ended::No,
        };
        Ok((handshake, bytes))
    }

    /// The `Sec-WebSocket-Key` sent.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Takes the next bytes read from the server, in chunks of any size.
    ///
    /// * `Ok(None)`: the head is not complete yet; read more and feed them.
    /// * `Ok(Some(connected))`: the handshake succeeded (RFC 6455 §4.1) and
    ///   the permessage-deflate answer, if any, fits our offer (RFC 7692
    ///   §5). Bytes fed after the head are the first WebSocket frames:
    ///   they come out of [`Connected::leftover`].
    /// * `Err`: the connection must be failed (RFC 6455 §4.1); the variant
    ///   says why. A status other than 101 gives
    ///   [`HandshakeError::UnexpectedStatus`] with the status, reason and
    ///   headers (e.g. `Location` or `WWW-Authenticate`); its body is not
    ///   read.
    ///
    /// Only the first [`Config::max_handshake_size`] bytes are ever parsed,
    /// and the buffer never holds more than that plus the chunk just fed.
    /// Once the handshake ended, an error is repeated to later calls;
    /// feeding bytes after `Ok(Some)` is a bug in the caller (they belong
    /// to the connection): debug builds panic, release builds ignore them
    /// and return `Ok(None)`.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<Connected>, HandshakeError> {
        if let Some(answer) = self.ended.replay() {
            return answer;
        }
        let outcome = self.read(bytes);
        self.ended.record(&outcome);
        outcome
    }

    /// Buffers `bytes`, parses the head once it is complete and checks it.
    fn read(&mut self, bytes: &[u8]) -> Result<Option<Connected>, HandshakeError> {
        let parsed = self.head.feed(bytes, |window, slots| {
            // httparse skips empty lines before a start line; RFC 9112 §2.2
            // allows that to a server reading a request, not to a client:
            // a response starts with its status line.
            if matches!(window.first(), Some(b'\r' | b'\n')) {
                return Err(httparse::Error::Version);
            }
            let mut response = httparse::Response::new(slots);
            Ok(match response.parse(window)? {
                httparse::Status::Complete(consumed) => httparse::Status::Complete((
                    UpgradeResponse {
                        status: response.code.unwrap_or_default(),
                        reason: response.reason.unwrap_or_default().to_owned(),
                        http_minor_version: response.version.unwrap_or_default(),
                        headers: own_headers(response.headers),
                        protocol: None,
                        extensions: Vec::new(),
                    },
                    consumed,
                )),
                httparse::Status::Partial => httparse::Status::Partial,
            })
        });
        let (mut response, leftover) = match parsed {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Ok(None),
            Err(HeadError::TooLarge) => {
                return Err(HandshakeError::HeadTooLarge {
                    limit: self.head.max_size(),
                })
            }
            Err(HeadError::TooManyHeaders) => {
                return Err(HandshakeError::TooManyHeaders {
                    limit: self.head.max_headers(),
                })
            }
            Err(HeadError::Malformed(message)) => {
                return Err(HandshakeError::MalformedResponse(message))
            }
        };
        let (protocol, extensions) = self.check_response(&response)?;
        response.protocol = protocol;
        response.extensions = extensions;
        let negotiated = self
            .negotiation
            .finish(response.protocol(), response.extensions())?;
        Ok(Some(Connected {
            response,
            negotiated,
            leftover,
        }))
    }

    /// RFC 6455 §4.1, the client's checks of the server's response, in the
    /// RFC's order; returns the negotiated protocol and extensions.
    fn check_response(
        &self,
        response: &UpgradeResponse,
    ) -> Result<(Option<String>, Vec<ExtensionOffer>), HandshakeError> {
        // Item 1: "If the status code received from the server is not 101,
        // the client handles the response per HTTP procedures."
        if response.status != 101 {
            return Err(HandshakeError::UnexpectedStatus {
                status: response.status,
                reason: response.reason.clone(),
                headers: response.headers.clone(),
            });
        }
        // 101 exists only from HTTP/1.1 on (RFC 7231 §6.2.2, §6.2).
        if response.http_minor_version < 1 {
            return Err(HandshakeError::UnsupportedHttpVersion);
        }
        // Item 2: Upgrade is an ASCII case-insensitive match for "websocket".
        let mut upgrades = response.header_values("Upgrade");
        match (upgrades.next(), upgrades.next()) {
            (Some(value), None) if value.eq_ignore_ascii_case(b"websocket") => {}
            _ => return Err(HandshakeError::InvalidUpgrade),
        }
        // Item 3: Connection contains the token "Upgrade", ASCII
        // case-insensitive (a list, RFC 7230 §6.1).
        if !list_contains_token(&response.headers, "Connection", "upgrade") {
            return Err(HandshakeError::MissingConnectionUpgrade);
        }
        // Item 4: Sec-WebSocket-Accept is base64(SHA-1(key ++ GUID)).
        let mut accepts = response.header_values("Sec-WebSocket-Accept");
        match (accepts.next(), accepts.next()) {
            (Some(value), None) if value == self.expected_accept.as_bytes() => {}
            (None, _) => return Err(HandshakeError::MissingAccept),
            _ => return Err(HandshakeError::AcceptMismatch),
        }
        // Item 5: every extension in use must have been offered (§9.1).
        let extensions = parse_extensions(response.header_values("Sec-WebSocket-Extensions"))
            .map_err(HandshakeError::InvalidExtensions)?;
        if let Some(unexpected) = extensions.iter().find(|ext| {
            !self
                .extension_names
                .iter()
                .any(|name| name.eq_ignore_ascii_case(&ext.name))
        }) {
            return Err(HandshakeError::UnexpectedExtension(unexpected.name.clone()));
        }
        // Item 6: a subprotocol must be one that was offered; §4.2.2 /
        // §11.3.4: the response holds a single one.
        let mut protocols = response.header_values("Sec-WebSocket-Protocol");
        let protocol = match (protocols.next(), protocols.next()) {
            (None, _) => None,
            (Some(value), None) => {
                let value = std::str::from_utf8(value)
                    .ok()
                    .filter(|value| is_token(value.as_bytes()))
                    .ok_or(HandshakeError::InvalidProtocolHeader)?;
                if !self.protocols.iter().any(|offered| offered == value) {
                    return Err(HandshakeError::UnexpectedProtocol(value.to_owned()));
                }
                Some(value.to_owned())
            }
            (Some(_), Some(_)) => return Err(HandshakeError::InvalidProtocolHeader),
        };
        Ok((protocol, extensions))
    }
}

/// RFC 6455 §4.1: the client's own values must make a valid request; this
/// also keeps CR/LF out of every line (header injection).
fn check_request(request: &ClientRequest) -> Result<(), RequestError> {
    // RFC 7230 §5.4 / RFC 3986 §3.2.2: a host is visible ASCII.
    if request.host.is_empty() || !request.host.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(RequestError::InvalidHost);
    }
    // RFC 6455 §3: path and query, no fragment; RFC 7230 §5.3 origin-form.
    if !request.target.starts_with('/')
        || !request
            .target
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'#')
    {
        return Err(RequestError::InvalidTarget);
    }
    // RFC 6455 §4.1 item 10: tokens, all unique.
    for (i, protocol) in request.protocols.iter().enumerate() {
        if !is_token(protocol.as_bytes()) {
            return Err(RequestError::InvalidProtocol(protocol.clone()));
        }
        if request.protocols.iter().take(i).any(|p| p == protocol) {
            return Err(RequestError::DuplicateProtocol(protocol.clone()));
        }
    }
    // RFC 6455 §9.1: names and values are tokens.
    if let Some(offer) = request.extensions.iter().find(|offer| !offer.is_valid()) {
        return Err(RequestError::InvalidExtension(offer.name.clone()));
    }
    // RFC 7230 §3.2: field-name = token; field-value without CR/LF/CTLs.
    for (name, value) in &request.headers {
        if !is_token(name.as_bytes()) || !is_safe_field_value(value.as_bytes()) {
            return Err(RequestError::InvalidHeader(name.clone()));
        }
        if RESERVED_REQUEST_HEADERS
            .iter()
            .any(|reserved| reserved.eq_ignore_ascii_case(name))
        {
            return Err(RequestError::ReservedHeader(name.clone()));
        }
    }
    Ok(())
}

/// Appends the concatenation of `parts` and CRLF.
fn push_line(out: &mut Vec<u8>, parts: &[&str]) {
    for part in parts {
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// The server's successful (`101`) answer to a client handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeResponse {
    status: u16,
    reason: String,
    http_minor_version: u8,
    headers: Fields,
    protocol: Option<String>,
    extensions: Vec<ExtensionOffer>,
}

impl UpgradeResponse {
    /// The status code: always 101 once checked.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The reason phrase as sent.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The subprotocol the server selected, if any; always one offered.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The extensions the server accepted, with the parameters it chose, in
    /// order (RFC 6455 §9.1); only ones that were offered.
    pub fn extensions(&self) -> &[ExtensionOffer] {
        &self.extensions
    }

    /// The value of the first header called `name` (ASCII
    /// case-insensitive), OWS trimmed.
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

    /// The values of every header called `name`.
    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        header_values(&self.headers, name)
    }
}

/// A successful client handshake: the server's answer, what it settled for
/// the connection, and the bytes that followed the response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    response: UpgradeResponse,
    negotiated: Negotiated,
    leftover: Vec<u8>,
}

impl Connected {
    /// The server's verified `101` response.
    pub fn response(&self) -> &UpgradeResponse {
        &self.response
    }

    /// What the handshake settled, for
    /// [`Connection::with_negotiated`](crate::Connection::with_negotiated).
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// The bytes fed after the response head: the first WebSocket frames,
    /// to be handed to the connection.
    pub fn leftover(&self) -> &[u8] {
        &self.leftover
    }

    /// The server's response, owned.
    pub fn into_response(self) -> UpgradeResponse {
        self.response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::http::feed_in_chunks;
    use crate::handshake::{Accept, ServerHandshake};
    use proptest::prelude::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    /// A config that neither offers nor verifies permessage-deflate, so the
    /// request is sent and the answer checked exactly as given.
    fn config() -> Config {
        #[cfg_attr(not(feature = "deflate"), allow(unused_mut))]
        let mut config = Config::default();
        #[cfg(feature = "deflate")]
        {
            config.deflate = None;
        }
        config
    }

    fn sample_request() -> ClientRequest {
        ClientRequest::new("server.example.com", "/chat")
            .with_protocol("chat")
            .with_protocol("superchat")
            .with_extension(
                ExtensionOffer::new("permessage-deflate")
                    .with_param("client_max_window_bits", None),
            )
            .with_header("Origin", "http://example.com")
    }

    fn sample_handshake() -> ClientHandshake {
        ClientHandshake::with_key(&sample_request(), &config(), KEY.to_owned())
            .unwrap()
            .0
    }

    /// A 101 response with `extra` header lines.
    fn response(extra: &str) -> String {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Accept: {ACCEPT}\r\n\
             {extra}\r\n"
        )
    }

    /// The sample handshake fed `head`, which must be exactly one head.
    fn check(head: &str) -> Result<UpgradeResponse, HandshakeError> {
        let connected = sample_handshake()
            .feed(head.as_bytes())?
            .expect("complete head");
        assert!(connected.leftover().is_empty());
        Ok(connected.into_response())
    }

    /// `handshake` fed `bytes` in chunks of the given sizes (the rest in one
    /// piece once they run out) until an outcome; the leftover of a success
    /// also holds the bytes not fed yet, as a caller hands both on.
    fn feed_chunked(
        mut handshake: ClientHandshake,
        bytes: &[u8],
        sizes: impl IntoIterator<Item = usize>,
    ) -> Result<Option<(UpgradeResponse, Negotiated, Vec<u8>)>, HandshakeError> {
        let outcome = feed_in_chunks(bytes, sizes, |chunk| handshake.feed(chunk))?;
        Ok(outcome.map(|(connected, unfed)| {
            let leftover = [connected.leftover(), unfed].concat();
            let negotiated = connected.negotiated().clone();
            (connected.into_response(), negotiated, leftover)
        }))
    }

    #[test]
    fn empty_lines_before_the_status_line_are_refused() {
        // RFC 9112 §2.2: only a server may skip them (before a request).
        for prefix in ["\n", "\r\n", "\r\n\r\n"] {
            let head = format!("{prefix}{}", response(""));
            assert!(
                matches!(check(&head), Err(HandshakeError::MalformedResponse(_))),
                "{prefix:?}"
            );
        }
        check(&response("")).unwrap();
    }

    #[test]
    fn request_bytes_are_exact() {
        let (handshake, bytes) =
            ClientHandshake::with_key(&sample_request(), &config(), KEY.to_owned()).unwrap();
        assert_eq!(handshake.key(), KEY);
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "GET /chat HTTP/1.1\r\n\
             Host: server.example.com\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: chat, superchat\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
             Origin: http://example.com\r\n\
             \r\n"
        );
    }

    #[test]
    fn minimal_request_bytes() {
        let (_, bytes) =
            ClientHandshake::with_key(&ClientRequest::new("h", ""), &config(), KEY.to_owned())
                .unwrap();
        assert!(bytes.starts_with(b"GET / HTTP/1.1\r\nHost: h\r\n"));
        let text = String::from_utf8(bytes).unwrap();
        assert!(!text.contains("Sec-WebSocket-Protocol"));
        assert!(!text.contains("Sec-WebSocket-Extensions"));
    }

    #[test]
    fn fresh_keys_are_random_16_bytes() {
        let (a, _) = ClientHandshake::new(&sample_request(), &config()).unwrap();
        let (b, _) = ClientHandshake::new(&sample_request(), &config()).unwrap();
        assert_ne!(a.key(), b.key());
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(a.key())
            .unwrap();
        assert_eq!(decoded.len(), 16);
    }

    #[test]
    fn server_accepts_what_the_client_sends() {
        let config = config();
        let (mut handshake, bytes) = ClientHandshake::new(&sample_request(), &config).unwrap();
        let request = ServerHandshake::new(&config).feed(&bytes).unwrap().unwrap();
        assert_eq!(request.extensions(), sample_request().extensions);
        let accepted = request
            .accept(
                Accept::default()
                    .with_protocol("superchat")
                    .with_extensions("permessage-deflate"),
                &config,
            )
            .unwrap();
        assert!(accepted.leftover().is_empty());
        let answer = accepted.response();
        let connected = handshake.feed(&answer).unwrap().unwrap();
        assert!(connected.leftover().is_empty());
        let response = connected.response();
        assert_eq!(response.protocol(), Some("superchat"));
        assert_eq!(
            response.extensions(),
            [ExtensionOffer::new("permessage-deflate")]
        );
        assert_eq!(
            connected.negotiated().protocol.as_deref(),
            Some("superchat")
        );
    }

    #[test]
    fn valid_response_with_frames_after_it() {
        let head = response("Sec-WebSocket-Protocol: chat\r\n");
        let mut buf = head.clone().into_bytes();
        buf.extend_from_slice(b"\x81\x02hi");
        let connected = sample_handshake().feed(&buf).unwrap().unwrap();
        assert_eq!(buf.len() - connected.leftover().len(), head.len());
        assert_eq!(connected.leftover(), b"\x81\x02hi");
        let response = connected.response();
        assert_eq!(response.status(), 101);
        assert_eq!(response.reason(), "Switching Protocols");
        assert_eq!(response.protocol(), Some("chat"));
        assert_eq!(response.header_str("sec-websocket-accept"), Some(ACCEPT));
        assert_eq!(response.headers().count(), 4);
        assert!(response.extensions().is_empty());
    }

    #[test]
    fn case_insensitive_tokens_are_fine() {
        let head = response("")
            .replace("Upgrade: websocket", "upgrade: WEBSOCKET")
            .replace("Connection: Upgrade", "connection: keep-alive, upgrade");
        check(&head).unwrap();
    }

    #[test]
    fn partial_response_needs_more_at_every_split() {
        let head = response("Sec-WebSocket-Protocol: chat\r\n");
        for end in 0..head.len() {
            assert_eq!(
                sample_handshake().feed(&head.as_bytes()[..end]),
                Ok(None),
                "split at {end}"
            );
        }
        // One machine fed one byte at a time needs more until the last.
        let mut handshake = sample_handshake();
        let (last, init) = head.as_bytes().split_last().unwrap();
        for byte in init {
            assert_eq!(handshake.feed(std::slice::from_ref(byte)), Ok(None));
        }
        let connected = handshake.feed(&[*last]).unwrap().unwrap();
        assert_eq!(connected.into_response(), check(&head).unwrap());
    }

    #[test]
    fn byte_at_a_time_gives_the_same_response_and_leftover() {
        let mut wire = response("Sec-WebSocket-Protocol: superchat\r\n").into_bytes();
        let frames = b"\x81\x05hello\x89\x00\x88\x02\x03\xe8";
        wire.extend_from_slice(frames);
        let whole = feed_chunked(sample_handshake(), &wire, [])
            .unwrap()
            .unwrap();
        let bytewise = feed_chunked(sample_handshake(), &wire, std::iter::repeat(1))
            .unwrap()
            .unwrap();
        assert_eq!(bytewise, whole);
        assert_eq!(whole.2, frames);
        assert_eq!(whole.1.protocol.as_deref(), Some("superchat"));
        // All of the head but its last byte, then that byte with the start
        // of the frames: the frames fed with it are kept.
        let head_len = wire.len() - frames.len();
        let mut handshake = sample_handshake();
        assert_eq!(handshake.feed(&wire[..head_len - 1]), Ok(None));
        let connected = handshake
            .feed(&wire[head_len - 1..head_len + 3])
            .unwrap()
            .unwrap();
        assert_eq!(connected.leftover(), &frames[..3]);
    }

    #[test]
    fn buffer_stays_within_the_limit_plus_one_chunk() {
        let mut config = config();
        config.max_handshake_size = 512;
        let (mut handshake, _) =
            ClientHandshake::with_key(&sample_request(), &config, KEY.to_owned()).unwrap();
        assert_eq!(handshake.feed(b"HTTP/1.1 101 OK\r\nX-Filler: "), Ok(None));
        let chunk = [b'a'; 64];
        let error = loop {
            match handshake.feed(&chunk) {
                Ok(None) => assert!(handshake.head.len() <= 512, "{}", handshake.head.len()),
                Ok(Some(connected)) => panic!("{connected:?}"),
                Err(error) => break error,
            }
        };
        assert_eq!(error, HandshakeError::HeadTooLarge { limit: 512 });
        assert!(handshake.head.len() <= 512 + chunk.len());
        // The failure is repeated, and nothing more is buffered.
        assert_eq!(handshake.feed(&chunk), Err(error));
        assert!(handshake.head.len() <= 512 + chunk.len());
    }

    #[test]
    fn non_101_keeps_status_reason_and_headers() {
        let head =
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic\r\nContent-Length: 0\r\n\r\n";
        match check(head) {
            Err(HandshakeError::UnexpectedStatus {
                status,
                reason,
                headers,
            }) => {
                assert_eq!((status, reason.as_str()), (401, "Unauthorized"));
                assert_eq!(
                    headers[0],
                    ("WWW-Authenticate".to_owned(), b"Basic".to_vec())
                );
            }
            other => panic!("{other:?}"),
        }
        let err = check("HTTP/1.0 200 OK\r\n\r\n").unwrap_err();
        assert_eq!(err.to_string(), "server answered 200 OK instead of 101");
    }

    #[test]
    fn http_1_0_switching_is_refused() {
        let head = response("").replace("HTTP/1.1", "HTTP/1.0");
        assert_eq!(check(&head), Err(HandshakeError::UnsupportedHttpVersion));
    }

    #[test]
    fn bad_upgrade_is_refused() {
        for replacement in [
            "",
            "Upgrade: h2c\r\n",
            "Upgrade: websocket, h2c\r\n",
            "Upgrade: websocket\r\nUpgrade: websocket\r\n",
        ] {
            let head = response("").replace("Upgrade: websocket\r\n", replacement);
            assert_eq!(
                check(&head),
                Err(HandshakeError::InvalidUpgrade),
                "{replacement:?}"
            );
        }
    }

    #[test]
    fn missing_connection_upgrade_is_refused() {
        for replacement in ["", "Connection: keep-alive\r\n"] {
            let head = response("").replace("Connection: Upgrade\r\n", replacement);
            assert_eq!(check(&head), Err(HandshakeError::MissingConnectionUpgrade));
        }
        let split = response("").replace(
            "Connection: Upgrade\r\n",
            "Connection: x\r\nConnection: upgrade\r\n",
        );
        check(&split).unwrap();
    }

    #[test]
    fn accept_errors() {
        let missing = response("").replace(&format!("Sec-WebSocket-Accept: {ACCEPT}\r\n"), "");
        assert_eq!(check(&missing), Err(HandshakeError::MissingAccept));
        let wrong = response("").replace(ACCEPT, "AAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        assert_eq!(check(&wrong), Err(HandshakeError::AcceptMismatch));
        let twice = response(&format!("Sec-WebSocket-Accept: {ACCEPT}\r\n"));
        assert_eq!(check(&twice), Err(HandshakeError::AcceptMismatch));
        // The accept value comes from this handshake's own key.
        let (mut other, _) = ClientHandshake::new(&sample_request(), &config()).unwrap();
        let answer = response("");
        assert_eq!(
            other.feed(answer.as_bytes()),
            Err(HandshakeError::AcceptMismatch)
        );
    }

    #[test]
    fn unexpected_protocol_is_refused() {
        assert_eq!(
            check(&response("Sec-WebSocket-Protocol: other\r\n")),
            Err(HandshakeError::UnexpectedProtocol("other".to_owned()))
        );
        // Offered none, got one.
        let (mut handshake, _) =
            ClientHandshake::with_key(&ClientRequest::new("h", "/"), &config(), KEY.to_owned())
                .unwrap();
        let head = response("Sec-WebSocket-Protocol: chat\r\n");
        assert_eq!(
            handshake.feed(head.as_bytes()),
            Err(HandshakeError::UnexpectedProtocol("chat".to_owned()))
        );
        // Offered some, server chose none: fine (RFC 6455 §4.2.2 /subprotocol/ null).
        assert_eq!(check(&response("")).unwrap().protocol(), None);
    }

    #[test]
    fn malformed_protocol_header_is_refused() {
        for extra in [
            "Sec-WebSocket-Protocol: chat, superchat\r\n",
            "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: chat\r\n",
            "Sec-WebSocket-Protocol:\r\n",
        ] {
            assert_eq!(
                check(&response(extra)),
                Err(HandshakeError::InvalidProtocolHeader),
                "{extra:?}"
            );
        }
    }

    #[test]
    fn extensions_are_checked() {
        let ok = check(&response(
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n",
        ))
        .unwrap();
        assert_eq!(
            ok.extensions(),
            [ExtensionOffer::new("permessage-deflate")
                .with_param("server_no_context_takeover", None)]
        );
        assert_eq!(
            check(&response(
                "Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n"
            )),
            Err(HandshakeError::UnexpectedExtension(
                "x-webkit-deflate-frame".to_owned()
            ))
        );
        assert!(matches!(
            check(&response(
                "Sec-WebSocket-Extensions: permessage-deflate; a=\r\n"
            )),
            Err(HandshakeError::InvalidExtensions(_))
        ));
    }

    #[test]
    fn limits_apply_to_responses() {
        let head = response("Sec-WebSocket-Protocol: chat\r\n");
        let mut few_headers = config();
        few_headers.max_handshake_headers = 3;
        let (mut handshake, _) =
            ClientHandshake::with_key(&sample_request(), &few_headers, KEY.to_owned()).unwrap();
        assert_eq!(
            handshake.feed(head.as_bytes()),
            Err(HandshakeError::TooManyHeaders { limit: 3 })
        );
        let mut small = config();
        small.max_handshake_size = 20;
        let (mut handshake, _) =
            ClientHandshake::with_key(&sample_request(), &small, KEY.to_owned()).unwrap();
        assert_eq!(
            handshake.feed(head.as_bytes()),
            Err(HandshakeError::HeadTooLarge { limit: 20 })
        );
    }

    #[test]
    fn malformed_response_is_refused() {
        for head in [
            "HTTP/1.1 abc Nope\r\n\r\n",
            "ICY 200 OK\r\n\r\n",
            "HTTP/1.1 101 X\r\nbad\r\n\r\n",
        ] {
            assert!(
                matches!(check(head), Err(HandshakeError::MalformedResponse(_))),
                "{head:?}"
            );
        }
    }

    #[test]
    fn injection_in_request_values_is_refused() {
        let base = || ClientRequest::new("h", "/");
        let cases = [
            (
                ClientRequest::new("h\r\nX: y", "/"),
                RequestError::InvalidHost,
            ),
            (ClientRequest::new("", "/"), RequestError::InvalidHost),
            (ClientRequest::new("a b", "/"), RequestError::InvalidHost),
            (
                ClientRequest::new("h", "/ HTTP/1.0\r\n"),
                RequestError::InvalidTarget,
            ),
            (ClientRequest::new("h", "chat"), RequestError::InvalidTarget),
            (ClientRequest::new("h", "/a#b"), RequestError::InvalidTarget),
            (ClientRequest::new("h", "/é"), RequestError::InvalidTarget),
            (
                base().with_protocol("a\r\n"),
                RequestError::InvalidProtocol("a\r\n".to_owned()),
            ),
            (
                base().with_protocol("a,b"),
                RequestError::InvalidProtocol("a,b".to_owned()),
            ),
            (
                base().with_protocol("a").with_protocol("a"),
                RequestError::DuplicateProtocol("a".to_owned()),
            ),
            (
                base().with_extension(ExtensionOffer::new("x").with_param("p", Some("1\r\nX: y"))),
                RequestError::InvalidExtension("x".to_owned()),
            ),
            (
                base().with_header("X-A", "b\r\nEvil: 1"),
                RequestError::InvalidHeader("X-A".to_owned()),
            ),
            (
                base().with_header("X-A", "b\nc"),
                RequestError::InvalidHeader("X-A".to_owned()),
            ),
            (
                base().with_header("X A", "b"),
                RequestError::InvalidHeader("X A".to_owned()),
            ),
            (
                base().with_header("host", "other"),
                RequestError::ReservedHeader("host".to_owned()),
            ),
            (
                base().with_header("Sec-WebSocket-Key", "x"),
                RequestError::ReservedHeader("Sec-WebSocket-Key".to_owned()),
            ),
        ];
        for (request, expected) in cases {
            assert_eq!(
                ClientHandshake::new(&request, &config()).unwrap_err(),
                expected,
                "{request:?}"
            );
        }
    }

    #[test]
    fn from_url_uses_host_header_and_target() {
        let url = WsUrl::parse("wss://[::1]:9001/a?b").unwrap();
        let request = ClientRequest::from_url(&url);
        assert_eq!(
            (request.host.as_str(), request.target.as_str()),
            ("[::1]:9001", "/a?b")
        );
        let default_port = ClientRequest::from_url(&WsUrl::parse("ws://example.com").unwrap());
        assert_eq!(
            (default_port.host.as_str(), default_port.target.as_str()),
            ("example.com", "/")
        );
    }

    #[test]
    fn error_source_and_display() {
        use std::error::Error as _;
        let err = check(&response("Sec-WebSocket-Extensions: ;\r\n")).unwrap_err();
        assert!(err.source().is_some());
        assert!(HandshakeError::AcceptMismatch.source().is_none());
        assert_eq!(
            HandshakeError::UnexpectedProtocol("x".to_owned()).to_string(),
            "server selected subprotocol \"x\", which was not offered"
        );
        let url_error = WsUrl::parse("http://x").unwrap_err();
        assert_eq!(
            RequestError::from(url_error.clone()).to_string(),
            format!("invalid URL: {url_error}")
        );
    }

    #[cfg(feature = "deflate")]
    #[test]
    fn deflate_offer_comes_from_the_config() {
        let default = Config::default();
        let (_, bytes) =
            ClientHandshake::with_key(&ClientRequest::new("h", "/"), &default, KEY.to_owned())
                .unwrap();
        let offer = crate::deflate::client_offer(default.deflate.as_ref().unwrap());
        let line = format!("Sec-WebSocket-Extensions: {offer}\r\n");
        assert!(String::from_utf8(bytes).unwrap().contains(&line));
        // A request that offers permessage-deflate itself is sent as it is.
        let (_, own) =
            ClientHandshake::with_key(&sample_request(), &default, KEY.to_owned()).unwrap();
        let (_, plain) =
            ClientHandshake::with_key(&sample_request(), &config(), KEY.to_owned()).unwrap();
        assert_eq!(own, plain);
    }

    #[cfg(feature = "deflate")]
    #[test]
    fn deflate_answer_is_verified() {
        let default = Config::default();
        let handshake = || {
            ClientHandshake::with_key(&ClientRequest::new("h", "/"), &default, KEY.to_owned())
                .unwrap()
                .0
        };
        // The default asks for no context takeover both ways.
        let good = response(
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n",
        );
        let connected = handshake().feed(good.as_bytes()).unwrap().unwrap();
        let params = connected.negotiated().deflate.expect("negotiated");
        assert!(params.server_no_context_takeover && params.client_no_context_takeover);
        // RFC 7692 §5: an answer that breaks the offer fails the handshake.
        let bad = response("Sec-WebSocket-Extensions: permessage-deflate\r\n");
        assert_eq!(
            handshake().feed(bad.as_bytes()),
            Err(HandshakeError::Deflate(
                crate::deflate::DeflateNegotiationError::MissingServerNoContextTakeover
            ))
        );
        // Declined: no compression, not an error.
        let declined = handshake().feed(response("").as_bytes()).unwrap().unwrap();
        assert_eq!(declined.negotiated(), &Negotiated::default());
    }

    proptest! {
        #[test]
        fn parse_response_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let mut config = config();
            config.max_handshake_size = 256;
            let (mut handshake, _) =
                ClientHandshake::with_key(&sample_request(), &config, KEY.to_owned()).unwrap();
            if let Ok(Some(connected)) = handshake.feed(&bytes) {
                prop_assert!(connected.leftover().len() <= bytes.len());
            }
        }

        #[test]
        fn mutated_responses_never_panic(
            cut in 0usize..300,
            edits in prop::collection::vec((0usize..300, any::<u8>()), 0..8),
        ) {
            let mut bytes = response("Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Extensions: permessage-deflate\r\n").into_bytes();
            for (at, byte) in edits {
                if let Some(slot) = bytes.get_mut(at) {
                    *slot = byte;
                }
            }
            bytes.truncate(cut);
            let _ = sample_handshake().feed(&bytes);
        }

        #[test]
        fn any_chunking_gives_the_same_outcome(
            edits in prop::collection::vec((0usize..200, any::<u8>()), 0..3),
            trailing in prop::collection::vec(any::<u8>(), 0..20),
            cuts in prop::collection::vec(1usize..40, 0..30),
        ) {
            let mut bytes = response("Sec-WebSocket-Protocol: chat\r\n").into_bytes();
            for (at, byte) in edits {
                if let Some(slot) = bytes.get_mut(at) {
                    *slot = byte;
                }
            }
            bytes.extend_from_slice(&trailing);
            let whole = feed_chunked(sample_handshake(), &bytes, []);
            let chunked = feed_chunked(sample_handshake(), &bytes, cuts);
            match (&whole, &chunked) {
                // A malformed head may be refused sooner when chunked, with
                // the parser's message for the earlier point.
                (
                    Err(HandshakeError::MalformedResponse(_)),
                    Err(HandshakeError::MalformedResponse(_)),
                ) => {}
                _ => prop_assert_eq!(whole, chunked),
            }
        }
    }
}
