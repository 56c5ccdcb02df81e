//! Server side of the opening handshake (RFC 6455 §4.2).

use base64::Engine as _;

use super::extensions::{parse_extensions, ExtensionOffer, ExtensionParseError};
use super::http::{
    find_header, is_safe_field_value, is_token, iter_headers, list_contains_token, list_elements,
    own_headers, parse_head, push_header, trim_ows, HeadError,
};
use super::{accept_key, Limits, Rejection};

/// Response headers that [`Request::accept`] writes itself; [`Accept::headers`]
/// may not repeat them.
const RESERVED_RESPONSE_HEADERS: [&str; 5] = [
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Accept",
    "Sec-WebSocket-Protocol",
    "Sec-WebSocket-Extensions",
];

/// A client's opening handshake request: the request line and header fields
/// of an HTTP/1.1 `GET`, owned.
///
/// Build one with [`Request::parse`] from raw bytes, or with
/// [`Request::from_parts`] when another HTTP stack parsed the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    method: String,
    target: String,
    http_minor_version: u8,
    /// In arrival order, OWS trimmed from values, repeated names kept.
    headers: Vec<(String, Vec<u8>)>,
}

impl Request {
    /// Parses the request head at the start of `buf`.
    ///
    /// * `Ok(None)`: the head is not complete yet; read more and call again
    ///   with the whole buffer.
    /// * `Ok(Some((request, consumed)))`: `consumed` is the length of the
    ///   head including its final empty line. Bytes after it belong to the
    ///   WebSocket connection (a client may send frames right behind its
    ///   request) and must be kept.
    /// * `Err`: a `431` if more than [`Limits::max_headers`] fields arrive,
    ///   or more than [`Limits::max_head_size`] bytes without the end of the
    ///   head; a `400` for anything that is not HTTP/1.x syntax.
    ///
    /// This only parses; call [`validate`](Self::validate) (or
    /// [`accept`](Self::accept), which validates) to check the WebSocket
    /// rules.
    pub fn parse(buf: &[u8], limits: &Limits) -> Result<Option<(Request, usize)>, Rejection> {
        let parsed = parse_head(buf, limits, |window, slots| {
            let mut request = httparse::Request::new(slots);
            Ok(match request.parse(window)? {
                httparse::Status::Complete(consumed) => httparse::Status::Complete((
                    Request {
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
            Ok(parsed) => Ok(parsed),
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

    /// Builds a request from parts that another HTTP stack (hyper, axum...)
    /// already parsed. Header values have surrounding whitespace trimmed.
    ///
    /// [`validate`](Self::validate) checks the HTTP/1.1 handshake of
    /// RFC 6455 §4.2.1 only. An HTTP/2 extended `CONNECT` (RFC 8441) or
    /// HTTP/3 (RFC 9220) WebSocket stream has method `CONNECT`, a
    /// `:protocol` pseudo-header and no `Sec-WebSocket-Key`, so it fails
    /// that check; such servers negotiate with [`protocols`](Self::protocols)
    /// and [`extensions`](Self::extensions) and answer `200` themselves.
    pub fn from_parts<'a, I>(
        method: &str,
        target: &str,
        http_minor_version: u8,
        headers: I,
    ) -> Request
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        Request {
            method: method.to_owned(),
            target: target.to_owned(),
            http_minor_version,
            headers: headers
                .into_iter()
                .map(|(name, value)| (name.to_owned(), trim_ows(value).to_vec()))
                .collect(),
        }
    }

    /// The request method, e.g. `GET`.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request target as sent: normally path and query
    /// (`/chat?room=1`), or an absolute `http(s)://` URI (RFC 6455 §4.1
    /// allows both).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The minor HTTP version: `1` for HTTP/1.1.
    pub fn http_minor_version(&self) -> u8 {
        self.http_minor_version
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
    /// trimmed, empty elements and non-UTF-8 ones skipped.
    pub fn protocols(&self) -> impl Iterator<Item = &str> {
        list_elements(&self.headers, "Sec-WebSocket-Protocol")
            .filter_map(|element| std::str::from_utf8(element).ok())
    }

    /// The extensions the client offers, parsed from every
    /// `Sec-WebSocket-Extensions` header (RFC 6455 §9.1), in order.
    pub fn extensions(&self) -> Result<Vec<ExtensionOffer>, ExtensionParseError> {
        parse_extensions(self.header_values("Sec-WebSocket-Extensions"))
    }

    /// The values of every header called `name`.
    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice())
    }

    /// The single header called `name`; `Err(())` if it appears more than once.
    fn single_header(&self, name: &str) -> Result<Option<&[u8]>, ()> {
        let mut values = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice());
        let first = values.next();
        match values.next() {
            Some(_) => Err(()),
            None => Ok(first),
        }
    }

    /// Checks that this is a WebSocket opening handshake (RFC 6455 §4.2.1).
    ///
    /// Refusals, in the order checked:
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
    pub fn validate(&self) -> Result<(), Rejection> {
        // RFC 6455 §4.2.1 item 1: "An HTTP/1.1 or higher GET request".
        // Methods are case-sensitive (RFC 7231 §4.1).
        if self.method != "GET" {
            return Err(Rejection::new(400, "WebSocket handshake must use GET"));
        }
        if self.http_minor_version < 1 {
            return Err(Rejection::new(
                400,
                "WebSocket handshake needs HTTP/1.1 or later",
            ));
        }
        // RFC 6455 §4.2.1 item 1: the Request-URI is a /resource name/ or an
        // absolute HTTP/HTTPS URI containing one; §3: never a fragment.
        if !is_valid_target(&self.target) {
            return Err(Rejection::new(400, "invalid request target"));
        }
        // RFC 6455 §4.2.1 item 2 and RFC 7230 §5.4: exactly one Host, with a
        // value.
        match self.single_header("Host") {
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
        let content_length_zero = match self.single_header("Content-Length") {
            Ok(None) => true,
            Ok(Some(value)) => value == b"0",
            Err(()) => false,
        };
        if self.header("Transfer-Encoding").is_some() || !content_length_zero {
            return Err(Rejection::new(
                400,
                "WebSocket handshake must not have a body",
            ));
        }
        // RFC 6455 §4.2.1 item 3: Upgrade contains "websocket", ASCII
        // case-insensitive; Upgrade is a comma list (RFC 7230 §6.7).
        if !list_contains_token(&self.headers, "Upgrade", "websocket") {
            return Err(Rejection::new(400, "Upgrade header must contain websocket"));
        }
        // RFC 6455 §4.2.1 item 4: Connection contains the token "Upgrade",
        // ASCII case-insensitive; a list field that may be split over
        // several headers (RFC 7230 §3.2.2, §6.1).
        if !list_contains_token(&self.headers, "Connection", "upgrade") {
            return Err(Rejection::new(
                400,
                "Connection header must contain upgrade",
            ));
        }
        // RFC 6455 §4.2.1 item 6 / §4.2.2 / §4.4: version 13, else 426 with
        // the versions we support. RFC 7231 §6.5.15: a 426 MUST carry Upgrade.
        match self.single_header("Sec-WebSocket-Version") {
            Ok(Some(b"13")) => {}
            _ => {
                return Err(Rejection::new(426, "Sec-WebSocket-Version must be 13")
                    .with_header("Upgrade", "websocket")
                    .with_header("Sec-WebSocket-Version", "13"))
            }
        }
        // RFC 6455 §4.2.1 item 5: a Sec-WebSocket-Key that is the base64 of
        // 16 bytes. RFC 6455 §11.3.1: it may appear only once.
        match self.single_header("Sec-WebSocket-Key") {
            Ok(Some(key)) if is_valid_key(key) => {}
            _ => {
                return Err(Rejection::new(
                    400,
                    "Sec-WebSocket-Key must be one base64-encoded 16-byte value",
                ))
            }
        }
        // RFC 6455 §4.1: subprotocol names are tokens.
        if !list_elements(&self.headers, "Sec-WebSocket-Protocol").all(is_token) {
            return Err(Rejection::new(400, "invalid Sec-WebSocket-Protocol"));
        }
        // RFC 6455 §9.1 grammar.
        if let Err(error) = self.extensions() {
            return Err(Rejection::new(400, error.to_string()));
        }
        Ok(())
    }

    /// The `101 Switching Protocols` response (RFC 6455 §4.2.2) as bytes to
    /// write, after [`validate`](Self::validate).
    ///
    /// The headers are those of [`accept_headers`](Self::accept_headers).
    /// The response is complete: WebSocket frames may follow it right away.
    pub fn accept(&self, accept: &Accept) -> Result<Vec<u8>, Rejection> {
        let headers = self.accept_headers(accept)?;
        let mut response = Vec::with_capacity(256);
        response.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
        for (name, value) in &headers {
            push_header(&mut response, name, value);
        }
        response.extend_from_slice(b"\r\n");
        Ok(response)
    }

    /// The header fields of the `101` response, for a server that writes
    /// its own response: `Upgrade`, `Connection`, `Sec-WebSocket-Accept`,
    /// then `Sec-WebSocket-Protocol` and `Sec-WebSocket-Extensions` if
    /// chosen, then [`Accept::headers`].
    ///
    /// Errors:
    /// * the request's own refusal from [`validate`](Self::validate);
    /// * a `500` if `accept` is wrong, a bug in the server rather than in
    ///   the client: a protocol the client did not offer (RFC 6455 §4.2.2
    ///   /subprotocol/), an extensions value that is malformed or names an
    ///   extension the client did not offer (RFC 6455 §9.1), or an extra
    ///   header that is not a token name with a CR/LF-free value
    ///   (header injection) or repeats one of the five headers above.
    pub fn accept_headers(&self, accept: &Accept) -> Result<Vec<(String, String)>, Rejection> {
        self.validate()?;
        let key = self
            .header("Sec-WebSocket-Key")
            .ok_or_else(|| Rejection::new(400, "Sec-WebSocket-Key missing"))?;
        let mut headers = Vec::with_capacity(5 + accept.headers.len());
        headers.push(("Upgrade".to_owned(), "websocket".to_owned()));
        headers.push(("Connection".to_owned(), "Upgrade".to_owned()));
        // RFC 6455 §4.2.2 item 5.4.
        headers.push(("Sec-WebSocket-Accept".to_owned(), accept_key(key)));

        if let Some(protocol) = &accept.protocol {
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

        if let Some(extensions) = &accept.extensions {
            // RFC 6455 §9.1: the server may only accept extensions the
            // client offered. Parsing also rules out CR/LF.
            let offered = self.extensions().unwrap_or_default();
            let accepted = parse_extensions([extensions.as_bytes()]).map_err(|_| {
                Rejection::new(500, "server produced a malformed Sec-WebSocket-Extensions")
            })?;
            if !accepted.iter().all(|ext| {
                offered
                    .iter()
                    .any(|offer| offer.name.eq_ignore_ascii_case(&ext.name))
            }) {
                return Err(Rejection::new(
                    500,
                    "server accepted an extension the client did not offer",
                ));
            }
            headers.push(("Sec-WebSocket-Extensions".to_owned(), extensions.clone()));
        }

        for (name, value) in &accept.headers {
            if !is_token(name.as_bytes()) || !is_safe_field_value(value.as_bytes()) {
                return Err(Rejection::new(500, "invalid extra response header"));
            }
            if RESERVED_RESPONSE_HEADERS
                .iter()
                .any(|reserved| reserved.eq_ignore_ascii_case(name))
            {
                return Err(Rejection::new(
                    500,
                    "extra response header repeats a handshake header",
                ));
            }
            headers.push((name.clone(), value.clone()));
        }
        Ok(headers)
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
/// [`Request::accept`].
///
/// `Accept::default()` accepts without subprotocol or extensions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accept {
    /// The chosen subprotocol; must be one the client offered
    /// ([`Request::protocols`]).
    pub protocol: Option<String>,
    /// The `Sec-WebSocket-Extensions` response value, already negotiated
    /// (e.g. by a permessage-deflate module); may only name extensions the
    /// client offered.
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

#[cfg(test)]
mod tests {
    use super::*;
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

    fn parse(head: &str) -> Request {
        let (request, consumed) = Request::parse(head.as_bytes(), &Limits::default())
            .unwrap()
            .expect("complete head");
        assert_eq!(consumed, head.len());
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

    fn refusal(head: &str) -> Rejection {
        parse(head).validate().unwrap_err()
    }

    #[test]
    fn valid_request_is_accepted() {
        let request = parse(&valid_head());
        request.validate().unwrap();
        assert_eq!(request.method(), "GET");
        assert_eq!(request.target(), "/chat?room=1");
        assert_eq!(request.path(), "/chat");
        assert_eq!(request.query(), Some("room=1"));
        assert_eq!(request.http_minor_version(), 1);
        assert_eq!(request.header("host"), Some(&b"server.example.com"[..]));
        assert_eq!(request.header_str("SEC-WEBSOCKET-KEY"), Some(KEY));
        assert_eq!(request.headers().count(), 6);
        assert_eq!(
            request.protocols().collect::<Vec<_>>(),
            ["chat", "superchat"]
        );
        assert_eq!(request.extensions().unwrap(), vec![]);
    }

    #[test]
    fn accept_writes_rfc_sample_response() {
        let response = parse(&valid_head())
            .accept(&Accept::default().with_protocol("chat"))
            .unwrap();
        assert_eq!(
            String::from_utf8(response).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
             Sec-WebSocket-Protocol: chat\r\n\
             \r\n"
        );
    }

    #[test]
    fn accept_headers_lists_everything() {
        let head = with_header(
            "Sec-WebSocket-Version",
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
        );
        let accept = Accept::default()
            .with_extensions("permessage-deflate")
            .with_header("Set-Cookie", "a=b");
        let headers = parse(&head).accept_headers(&accept).unwrap();
        let names: Vec<_> = headers.iter().map(|(n, _)| n.as_str()).collect();
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
    }

    #[test]
    fn lowercase_and_mixed_tokens_are_accepted() {
        let head = valid_head()
            .replace("Upgrade: websocket", "upgrade: WebSocket")
            .replace("Connection: Upgrade", "connection: keep-alive, UPGRADE");
        parse(&head).validate().unwrap();
    }

    #[test]
    fn upgrade_list_containing_websocket_is_accepted() {
        let head = valid_head().replace("Upgrade: websocket", "Upgrade: h2c, websocket");
        parse(&head).validate().unwrap();
    }

    #[test]
    fn upgrade_token_across_several_connection_headers() {
        let head = with_header(
            "Connection",
            "Connection: keep-alive\r\nConnection: Upgrade\r\n",
        );
        parse(&head).validate().unwrap();
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
        parse(&head).validate().unwrap();
    }

    #[test]
    fn request_body_is_400() {
        let cl = with_header("Host", "Host: a\r\nContent-Length: 5\r\n");
        assert_eq!(refusal(&cl).status(), 400);
        let te = with_header("Host", "Host: a\r\nTransfer-Encoding: chunked\r\n");
        assert_eq!(refusal(&te).status(), 400);
        let zero = with_header("Host", "Host: a\r\nContent-Length: 0\r\n");
        parse(&zero).validate().unwrap();
    }

    #[test]
    fn targets() {
        let absolute = valid_head().replace("/chat?room=1", "http://example.com/chat?room=1");
        let request = parse(&absolute);
        request.validate().unwrap();
        assert_eq!(request.path(), "/chat");
        assert_eq!(request.query(), Some("room=1"));

        let bare = parse(&valid_head().replace("/chat?room=1", "https://example.com"));
        bare.validate().unwrap();
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
            let rejection = Request::parse(head.as_bytes(), &Limits::default()).unwrap_err();
            assert_eq!(rejection.status(), 400, "{head:?}");
        }
    }

    #[test]
    fn too_many_headers_is_431() {
        let mut limits = Limits::default().with_max_headers(6);
        assert!(Request::parse(valid_head().as_bytes(), &limits)
            .unwrap()
            .is_some());
        limits = limits.with_max_headers(5);
        let rejection = Request::parse(valid_head().as_bytes(), &limits).unwrap_err();
        assert_eq!(rejection.status(), 431);
    }

    #[test]
    fn more_headers_than_the_stack_holds() {
        let extra: String = (0..100).map(|i| format!("X-{i}: {i}\r\n")).collect();
        let head = with_header("Host", &format!("Host: a\r\n{extra}"));
        let mut limits = Limits::default();
        assert_eq!(
            Request::parse(head.as_bytes(), &limits)
                .unwrap_err()
                .status(),
            431
        );
        limits = limits.with_max_headers(200);
        let (request, _) = Request::parse(head.as_bytes(), &limits).unwrap().unwrap();
        request.validate().unwrap();
        assert_eq!(request.header("X-99"), Some(&b"99"[..]));
    }

    #[test]
    fn head_too_large_while_partial_is_431() {
        let limits = Limits::default().with_max_head_size(64);
        let partial = format!("GET / HTTP/1.1\r\nX-Filler: {}", "a".repeat(60));
        let rejection = Request::parse(partial.as_bytes(), &limits).unwrap_err();
        assert_eq!(rejection.status(), 431);
        // At the limit it is still only incomplete.
        assert_eq!(Request::parse(&partial.as_bytes()[..64], &limits), Ok(None));
    }

    #[test]
    fn head_of_exactly_max_size_followed_by_frames_is_accepted() {
        let head = valid_head();
        let mut limits = Limits::default().with_max_head_size(head.len());
        let mut buf = head.clone().into_bytes();
        buf.extend_from_slice(&[0x81, 0x85, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let (_, consumed) = Request::parse(&buf, &limits).unwrap().unwrap();
        assert_eq!(consumed, head.len());
        limits = limits.with_max_head_size(head.len() - 1);
        assert_eq!(Request::parse(&buf, &limits).unwrap_err().status(), 431);
    }

    #[test]
    fn every_split_point_of_a_valid_request_needs_more() {
        let head = valid_head();
        for end in 0..head.len() {
            assert_eq!(
                Request::parse(&head.as_bytes()[..end], &Limits::default()),
                Ok(None),
                "split at {end}"
            );
        }
    }

    #[test]
    fn bytes_after_the_head_are_not_consumed() {
        let head = valid_head();
        let mut buf = head.clone().into_bytes();
        buf.extend_from_slice(b"\x81\x80\0\0\0\0GET / HTTP/1.1\r\n\r\n");
        let (_, consumed) = Request::parse(&buf, &Limits::default()).unwrap().unwrap();
        assert_eq!(consumed, head.len());
        assert_eq!(&buf[consumed..consumed + 2], b"\x81\x80");
    }

    #[test]
    fn selected_protocol_must_have_been_offered() {
        let request = parse(&valid_head());
        request
            .accept(&Accept::default().with_protocol("superchat"))
            .unwrap();
        let rejection = request
            .accept(&Accept::default().with_protocol("other"))
            .unwrap_err();
        assert_eq!(rejection.status(), 500);
        // Case-sensitive, exact match.
        assert!(request
            .accept(&Accept::default().with_protocol("Chat"))
            .is_err());
        let no_offer = parse(&with_header("Sec-WebSocket-Protocol", ""));
        assert_eq!(no_offer.protocols().count(), 0);
        assert!(no_offer
            .accept(&Accept::default().with_protocol("chat"))
            .is_err());
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
        let rejection = request
            .accept(&Accept::default().with_extensions("x-other"))
            .unwrap_err();
        assert_eq!(rejection.status(), 500);
        let malformed = request
            .accept(&Accept::default().with_extensions("permessage-deflate\r\nX: y"))
            .unwrap_err();
        assert_eq!(malformed.status(), 500);
        request
            .accept(
                &Accept::default()
                    .with_extensions("permessage-deflate; server_no_context_takeover"),
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
            let rejection = request
                .accept(&Accept::default().with_header(name, value))
                .unwrap_err();
            assert_eq!(rejection.status(), 500, "{name:?}: {value:?}");
        }
        let rejection = request
            .accept(&Accept::default().with_protocol("chat\r\nX: y"))
            .unwrap_err();
        assert_eq!(rejection.status(), 500);
    }

    #[test]
    fn accept_refuses_invalid_request() {
        let request = parse(&valid_head().replace("GET ", "PUT "));
        assert_eq!(
            request.accept(&Accept::default()).unwrap_err().status(),
            400
        );
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
        let request = Request::from_parts("GET", "/ws", 1, headers);
        let headers = request.accept_headers(&Accept::default()).unwrap();
        assert_eq!(
            headers[2],
            (
                "Sec-WebSocket-Accept".to_owned(),
                "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".to_owned()
            )
        );
        // RFC 8441 extended CONNECT is not an HTTP/1.1 handshake.
        let connect = Request::from_parts("CONNECT", "/ws", 0, [("host", &b"example.com"[..])]);
        assert_eq!(connect.validate().unwrap_err().status(), 400);
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let limits = Limits::default().with_max_head_size(256);
            if let Ok(Some((request, consumed))) = Request::parse(&bytes, &limits) {
                prop_assert!(consumed <= bytes.len());
                let _ = request.validate();
                let _ = request.accept(&Accept::default());
                let _ = (request.path(), request.query(), request.extensions());
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
            if let Ok(Some((request, consumed))) = Request::parse(&bytes, &Limits::default()) {
                prop_assert!(consumed <= bytes.len());
                if let Ok(response) = request.accept(&Accept::default()) {
                    prop_assert!(response.ends_with(b"\r\n\r\n"));
                }
                let _ = (request.path(), request.query(), request.extensions());
            }
        }
    }
}
