//! WebSockets over HTTP/2 (RFC 8441) and HTTP/3 (RFC 9220): the extended
//! `CONNECT` that opens a stream carrying WebSocket frames.
//!
//! There is no byte-level machine here: HTTP/2 and HTTP/3 framing belong to
//! the HTTP stack (hyper, h2, h3), which hands over the request's method,
//! pseudo-header fields and header pairs. What the stack does not know is
//! what makes such a request a WebSocket handshake; that is checked here,
//! and the result is the same [`UpgradeRequest`] an HTTP/1.1 upgrade gives,
//! accepted the same way.

use super::http::{find_header, single_header, Fields};
use super::server::{own_fields, UpgradeRequest};
use super::Rejection;
use crate::config::Config;

/// Header fields that are specific to one HTTP/1.1 connection and so are
/// malformed in an HTTP/2 or HTTP/3 request (RFC 9113 §8.2.2, RFC 9114
/// §4.2); an HTTP/1.1 upgrade sent down an HTTP/2 stream would carry them.
const CONNECTION_SPECIFIC: [&str; 5] = [
    "Connection",
    "Upgrade",
    "Keep-Alive",
    "Proxy-Connection",
    "Transfer-Encoding",
];

impl UpgradeRequest {
    /// Validates an extended `CONNECT` (RFC 8441 §4–5, RFC 9220 §3) that an
    /// HTTP/2 or HTTP/3 stack parsed: `method`, the `:protocol`,
    /// `:authority` and `:path` pseudo-header fields (`None`/empty if
    /// absent), and the regular header fields, within the head limits of
    /// `config` (`431`, as [`from_parts`](Self::from_parts)). Accept it with
    /// [`UpgradeRequest::accept`] and answer with [`Accepted::status`]
    /// (`200`) and [`Accepted::headers`]; the stream's data is then the
    /// WebSocket connection. The server must have sent
    /// `SETTINGS_ENABLE_CONNECT_PROTOCOL = 1` (RFC 8441 §3) for clients to
    /// send such requests at all.
    ///
    /// Refusals, in the order checked:
    ///
    /// * `400`: method not `CONNECT`; no `:protocol`, or one other than
    ///   `websocket` (ASCII case-insensitive, as the `Upgrade` token of RFC
    ///   6455 §4.2.1); `:authority` missing or empty; `:path` not
    ///   origin-form or with a fragment (RFC 8441 §4 requires it); a
    ///   connection-specific field (`Connection`, `Upgrade`, ...);
    /// * `400` with `Sec-WebSocket-Version: 13`: version missing or not 13
    ///   (RFC 8441 §5 keeps the field; the `426` HTTP/1.1 uses must carry
    ///   `Upgrade`, which HTTP/2 forbids);
    /// * `400`: a `Sec-WebSocket-Protocol` element that is not a token, a
    ///   malformed `Sec-WebSocket-Extensions` (as for HTTP/1.1).
    ///
    /// A `Sec-WebSocket-Key` is not required and, if sent, ignored: RFC
    /// 8441 §5 replaces its role with `:protocol`.
    ///
    /// [`Accepted::status`]: super::Accepted::status
    /// [`Accepted::headers`]: super::Accepted::headers
    ///
    /// # Errors
    /// The [`Rejection`] to answer with.
    ///
    /// ```
    /// use chito::handshake::{Accept, UpgradeForm, UpgradeRequest};
    /// use chito::Config;
    ///
    /// let headers: [(&str, &[u8]); 2] = [
    ///     ("sec-websocket-version", b"13"),
    ///     ("sec-websocket-extensions", b"permessage-deflate"),
    /// ];
    /// let request = UpgradeRequest::from_extended_connect(
    ///     "CONNECT",
    ///     Some("websocket"),
    ///     "example.com",
    ///     "/chat",
    ///     headers,
    ///     &Config::default(),
    /// )
    /// .unwrap();
    /// assert_eq!(request.form(), UpgradeForm::ExtendedConnect);
    /// let accepted = request.accept(Accept::default(), &Config::default()).unwrap();
    /// assert_eq!(accepted.status(), 200);
    /// assert!(accepted.headers().all(|(name, _)| name != "Sec-WebSocket-Accept"));
    /// ```
    pub fn from_extended_connect<'a, I>(
        method: &str,
        protocol: Option<&str>,
        authority: &str,
        path: &str,
        headers: I,
        config: &Config,
    ) -> Result<UpgradeRequest, Rejection>
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        // RFC 8441 §4: "a CONNECT request ... MUST include the :protocol
        // pseudo-header"; a CONNECT without it is a tunnel request (RFC
        // 9113 §8.5), not ours.
        if method != "CONNECT" {
            return Err(Rejection::new(
                400,
                "WebSocket over HTTP/2 must use an extended CONNECT",
            ));
        }
        match protocol {
            Some(protocol) if protocol.eq_ignore_ascii_case("websocket") => {}
            Some(_) => return Err(Rejection::new(400, ":protocol must be websocket")),
            None => return Err(Rejection::new(400, "CONNECT without :protocol")),
        }
        // RFC 8441 §4: :authority, :scheme and :path are all present (the
        // stack checks :scheme); RFC 9113 §8.3.1: :path is origin-form.
        if authority.is_empty() {
            return Err(Rejection::new(400, ":authority is required"));
        }
        let origin_form =
            path.starts_with('/') && path.bytes().all(|b| b.is_ascii_graphic() && b != b'#');
        if !origin_form {
            return Err(Rejection::new(400, "invalid :path"));
        }
        // The pseudo-header fields count as fields, as HPACK sizes them.
        let pseudo = method.len() + authority.len() + path.len() + 40;
        let headers: Fields = own_fields(pseudo, headers, config)?;
        if CONNECTION_SPECIFIC
            .iter()
            .any(|name| find_header(&headers, name).is_some())
        {
            return Err(Rejection::new(
                400,
                "connection-specific header field in an HTTP/2 request",
            ));
        }
        // RFC 8441 §5 / RFC 6455 §4.4: version 13, and say which we speak.
        if !matches!(
            single_header(&headers, "Sec-WebSocket-Version"),
            Ok(Some(b"13"))
        ) {
            return Err(Rejection::new(400, "Sec-WebSocket-Version must be 13")
                .with_header("Sec-WebSocket-Version", "13"));
        }
        UpgradeRequest::validated(
            method.to_owned(),
            path.to_owned(),
            headers,
            None,
            Vec::new(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::{Accept, UpgradeForm};

    const VERSION: (&str, &[u8]) = ("sec-websocket-version", b"13");

    fn connect<'a>(
        method: &str,
        protocol: Option<&str>,
        authority: &str,
        path: &str,
        headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<UpgradeRequest, Rejection> {
        UpgradeRequest::from_extended_connect(
            method,
            protocol,
            authority,
            path,
            headers,
            &Config::default(),
        )
    }

    fn status(outcome: Result<UpgradeRequest, Rejection>) -> u16 {
        outcome.map_or_else(|r| r.status(), |_| 0)
    }

    #[test]
    fn a_valid_extended_connect_is_accepted_with_200() {
        let headers: [(&str, &[u8]); 3] = [
            VERSION,
            ("sec-websocket-protocol", b"chat, superchat"),
            ("origin", b"https://example.com"),
        ];
        let request = connect(
            "CONNECT",
            Some("websocket"),
            "example.com",
            "/chat?room=1",
            headers,
        )
        .unwrap();
        assert_eq!(request.form(), UpgradeForm::ExtendedConnect);
        assert_eq!(request.method(), "CONNECT");
        assert_eq!(request.path(), "/chat");
        assert_eq!(request.query(), Some("room=1"));
        assert_eq!(
            request.protocols().collect::<Vec<_>>(),
            ["chat", "superchat"]
        );
        let accepted = request
            .accept(Accept::default().with_protocol("chat"), &Config::default())
            .unwrap();
        assert_eq!(accepted.status(), 200);
        // No Upgrade, Connection or Sec-WebSocket-Accept: HTTP/2 has no
        // upgrade and RFC 8441 §5 drops the key exchange.
        assert_eq!(
            accepted.headers().collect::<Vec<_>>(),
            [("Sec-WebSocket-Protocol", "chat")]
        );
        assert!(accepted.response().starts_with(b"HTTP/1.1 200 OK\r\n"));
    }

    #[cfg(feature = "deflate")]
    #[test]
    fn permessage_deflate_is_negotiated_as_on_http_1_1() {
        let headers: [(&str, &[u8]); 2] = [
            VERSION,
            (
                "sec-websocket-extensions",
                b"permessage-deflate; client_max_window_bits",
            ),
        ];
        let request = connect("CONNECT", Some("websocket"), "h", "/", headers).unwrap();
        let accepted = request
            .accept(Accept::default(), &Config::default())
            .unwrap();
        assert!(accepted.negotiated().deflate.is_some());
        assert!(accepted
            .headers()
            .any(|(name, value)| name == "Sec-WebSocket-Extensions"
                && value.starts_with("permessage-deflate")));
    }

    #[test]
    fn refusals() {
        let ok = || [VERSION];
        assert_eq!(
            status(connect("GET", Some("websocket"), "h", "/", ok())),
            400
        );
        assert_eq!(status(connect("CONNECT", None, "h", "/", ok())), 400);
        assert_eq!(
            status(connect("CONNECT", Some("webtransport"), "h", "/", ok())),
            400
        );
        assert_eq!(
            status(connect("CONNECT", Some("websocket"), "", "/", ok())),
            400
        );
        assert_eq!(
            status(connect("CONNECT", Some("websocket"), "h", "", ok())),
            400
        );
        assert_eq!(
            status(connect("CONNECT", Some("websocket"), "h", "/a#b", ok())),
            400
        );
        assert_eq!(
            status(connect("CONNECT", Some("WebSocket"), "h", "/", ok())),
            0
        );
        let upgrade: [(&str, &[u8]); 2] = [VERSION, ("upgrade", b"websocket")];
        assert_eq!(
            status(connect("CONNECT", Some("websocket"), "h", "/", upgrade)),
            400
        );
        let bad_protocol: [(&str, &[u8]); 2] = [VERSION, ("sec-websocket-protocol", b"a b")];
        assert_eq!(
            status(connect(
                "CONNECT",
                Some("websocket"),
                "h",
                "/",
                bad_protocol
            )),
            400
        );
        let bad_extension: [(&str, &[u8]); 2] = [VERSION, ("sec-websocket-extensions", b";")];
        assert_eq!(
            status(connect(
                "CONNECT",
                Some("websocket"),
                "h",
                "/",
                bad_extension
            )),
            400
        );
    }

    #[test]
    fn the_head_limits_apply() {
        let config = Config {
            max_handshake_headers: 3,
            ..Config::default()
        };
        let headers: [(&str, &[u8]); 4] = [VERSION, ("a", b"1"), ("b", b"2"), ("c", b"3")];
        let refused = UpgradeRequest::from_extended_connect(
            "CONNECT",
            Some("websocket"),
            "h",
            "/",
            headers,
            &config,
        );
        assert_eq!(status(refused), 431);
        let big = vec![b'x'; Config::default().max_handshake_size];
        assert_eq!(
            status(connect(
                "CONNECT",
                Some("websocket"),
                "h",
                "/",
                [VERSION, ("cookie", &big)]
            )),
            431
        );
    }

    #[test]
    fn a_wrong_version_names_the_supported_one() {
        for version in [&b"8"[..], b"", b"13, 13"] {
            let rejection = connect(
                "CONNECT",
                Some("websocket"),
                "h",
                "/",
                [("sec-websocket-version", version)],
            )
            .unwrap_err();
            assert_eq!(rejection.status(), 400);
            assert!(rejection
                .headers()
                .any(|header| header == ("Sec-WebSocket-Version", "13")));
        }
        let missing = connect("CONNECT", Some("websocket"), "h", "/", []).unwrap_err();
        assert_eq!(missing.status(), 400);
    }

    #[test]
    fn a_key_is_ignored_and_the_answer_has_no_accept() {
        let headers: [(&str, &[u8]); 2] = [VERSION, ("sec-websocket-key", b"not even base64")];
        let request = connect("CONNECT", Some("websocket"), "h", "/", headers).unwrap();
        let accepted = request
            .accept(Accept::default(), &Config::default())
            .unwrap();
        assert_eq!(accepted.headers().count(), 0);
    }
}
