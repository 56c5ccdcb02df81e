//! The Engine.IO request query (`EIO`, `transport`, `sid`) and the
//! reference server's error answers, codes 0–5 (engine.io `Server.errors`;
//! docs/socketio.md §3). `t` (the clients' cache buster) and any other
//! parameter are ignored.

use std::fmt;

/// The two Engine.IO v4 transports this server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// HTTP long-polling: GET receives, POST sends.
    Polling,
    /// One WebSocket, one Engine.IO packet per message.
    WebSocket,
}

impl TransportKind {
    /// The transport's name in `?transport=`.
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::Polling => "polling",
            TransportKind::WebSocket => "websocket",
        }
    }
}

/// The reference server's request errors, answered as
/// `{"code":N,"message":"…"}` with `Content-Type: application/json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// 0: `transport` missing or not one this server speaks.
    UnknownTransport,
    /// 1: `sid` names no open session (unknown, closed or upgraded away).
    UnknownSid,
    /// 2: a handshake (no `sid`) by any method but GET.
    BadHandshakeMethod,
    /// 3: the request does not fit the session (polling on a
    /// WebSocket-only session, a method polling does not use).
    BadRequest,
    /// 4: refused by the application's request filter.
    Forbidden,
    /// 5: `EIO` missing or not `4`.
    UnsupportedProtocolVersion,
}

impl RequestError {
    /// The numeric code of the JSON body.
    pub fn code(self) -> u8 {
        match self {
            RequestError::UnknownTransport => 0,
            RequestError::UnknownSid => 1,
            RequestError::BadHandshakeMethod => 2,
            RequestError::BadRequest => 3,
            RequestError::Forbidden => 4,
            RequestError::UnsupportedProtocolVersion => 5,
        }
    }

    /// The reference server's message for the code.
    pub fn message(self) -> &'static str {
        match self {
            RequestError::UnknownTransport => "Transport unknown",
            RequestError::UnknownSid => "Session ID unknown",
            RequestError::BadHandshakeMethod => "Bad handshake method",
            RequestError::BadRequest => "Bad request",
            RequestError::Forbidden => "Forbidden",
            RequestError::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }

    /// The HTTP status: 403 for `Forbidden`, 400 for every other.
    pub fn status(self) -> u16 {
        match self {
            RequestError::Forbidden => 403,
            _ => 400,
        }
    }

    /// The JSON body of the answer.
    pub fn json_body(self) -> String {
        format!(
            "{{\"code\":{},\"message\":\"{}\"}}",
            self.code(),
            self.message()
        )
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for RequestError {}

/// A checked Engine.IO query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineQuery<'a> {
    /// The transport the request is for.
    pub transport: TransportKind,
    /// The session's id as sent (`None`: a handshake). Its lookup is the
    /// caller's: an unknown one is [`RequestError::UnknownSid`].
    pub sid: Option<&'a str>,
}

/// Parses a request's query string (without `?`). Checks the transport
/// first, then the protocol version, as the reference server does.
pub fn parse_query(query: Option<&str>) -> Result<EngineQuery<'_>, RequestError> {
    let mut eio = None;
    let mut transport = None;
    let mut sid = None;
    for pair in query.unwrap_or("").split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        // The first occurrence wins; none of the values needs
        // percent-decoding (digits, a transport name, base64url).
        let slot = match key {
            "EIO" => &mut eio,
            "transport" => &mut transport,
            "sid" => &mut sid,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(value);
        }
    }
    let transport = match transport {
        Some("polling") => TransportKind::Polling,
        Some("websocket") => TransportKind::WebSocket,
        _ => return Err(RequestError::UnknownTransport),
    };
    // Engine.IO v3 (`EIO=3`) is out of scope (docs/socketio.md, intro).
    if eio != Some("4") {
        return Err(RequestError::UnsupportedProtocolVersion);
    }
    Ok(EngineQuery { transport, sid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_clients_queries() {
        assert_eq!(
            parse_query(Some("EIO=4&transport=polling&t=Nx1")),
            Ok(EngineQuery {
                transport: TransportKind::Polling,
                sid: None
            })
        );
        assert_eq!(
            parse_query(Some("EIO=4&transport=websocket&sid=abc")),
            Ok(EngineQuery {
                transport: TransportKind::WebSocket,
                sid: Some("abc")
            })
        );
    }

    #[test]
    fn the_suites_bad_queries_get_their_codes() {
        use RequestError::*;
        assert_eq!(
            parse_query(Some("transport=polling")),
            Err(UnsupportedProtocolVersion)
        );
        assert_eq!(
            parse_query(Some("EIO=abc&transport=polling")),
            Err(UnsupportedProtocolVersion)
        );
        assert_eq!(
            parse_query(Some("EIO=3&transport=polling")),
            Err(UnsupportedProtocolVersion)
        );
        assert_eq!(parse_query(Some("EIO=4")), Err(UnknownTransport));
        assert_eq!(
            parse_query(Some("EIO=4&transport=abc")),
            Err(UnknownTransport)
        );
        assert_eq!(parse_query(None), Err(UnknownTransport));
        assert_eq!(parse_query(Some("&&==&")), Err(UnknownTransport));
    }

    #[test]
    fn error_bodies_are_the_reference_servers() {
        assert_eq!(
            RequestError::UnknownSid.json_body(),
            r#"{"code":1,"message":"Session ID unknown"}"#
        );
        assert_eq!(RequestError::Forbidden.status(), 403);
        assert_eq!(RequestError::BadHandshakeMethod.status(), 400);
        for error in [
            RequestError::UnknownTransport,
            RequestError::UnknownSid,
            RequestError::BadHandshakeMethod,
            RequestError::BadRequest,
            RequestError::Forbidden,
            RequestError::UnsupportedProtocolVersion,
        ] {
            assert!(error.json_body().contains(error.message()));
        }
    }

    #[test]
    fn every_prefix_parses_or_errs() {
        let query = "EIO=4&transport=websocket&sid=AAAAAAAAAAAAAAAAAAAAAA&t=é";
        for end in 0..=query.len() {
            if let Some(prefix) = query.get(..end) {
                let _ = parse_query(Some(prefix));
            }
        }
    }
}
