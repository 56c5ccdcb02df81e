//! A refused opening handshake: the HTTP response a server sends instead of
//! `101 Switching Protocols` (RFC 6455 §4.2.2 item 4, RFC 7231 §6).

use std::borrow::Cow;
use std::fmt;

use super::http::{is_safe_field_value, is_token, push_header};

/// A refused handshake: the HTTP status to answer with, a reason, and extra
/// response headers. [`to_response`](Self::to_response) gives the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    status: u16,
    reason: Cow<'static, str>,
    headers: Vec<(String, String)>,
}

impl Rejection {
    /// A refusal with `status` and a human-readable `reason`, which becomes
    /// the plain-text body of [`to_response`](Self::to_response).
    pub fn new(status: u16, reason: impl Into<Cow<'static, str>>) -> Self {
        Rejection {
            status,
            reason: reason.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a response header (builder style), e.g. `WWW-Authenticate`.
    /// See [`to_response`](Self::to_response) for which are written.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Why the handshake was refused.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The extra response headers.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }

    /// A complete HTTP/1.1 response:
    ///
    /// ```text
    /// HTTP/1.1 <status> <standard reason phrase>
    /// <extra headers>
    /// Content-Type: text/plain; charset=utf-8
    /// Content-Length: <length of reason>
    /// Connection: close
    ///
    /// <reason>
    /// ```
    ///
    /// A status outside 100–599 is written as 500. Extra headers whose name
    /// is not a token or whose value holds CR, LF or another control
    /// character are left out (header injection), as are `Content-Type`,
    /// `Content-Length` and `Connection`, which this writes itself. If an
    /// `Upgrade` header is present (the `426` of a version mismatch),
    /// `Connection` is `Upgrade, close`: RFC 7230 §6.7 requires the
    /// `upgrade` option alongside an `Upgrade` header.
    pub fn to_response(&self) -> Vec<u8> {
        let status = if (100..=599).contains(&self.status) {
            self.status
        } else {
            500
        };
        let mut out = Vec::with_capacity(160 + self.reason.len());
        out.extend_from_slice(
            format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status)).as_bytes(),
        );
        let mut has_upgrade = false;
        for (name, value) in &self.headers {
            let owned_by_us = ["Content-Type", "Content-Length", "Connection"]
                .iter()
                .any(|ours| ours.eq_ignore_ascii_case(name));
            if owned_by_us || !is_token(name.as_bytes()) || !is_safe_field_value(value.as_bytes()) {
                continue;
            }
            has_upgrade |= name.eq_ignore_ascii_case("Upgrade");
            push_header(&mut out, name, value);
        }
        push_header(&mut out, "Content-Type", "text/plain; charset=utf-8");
        push_header(&mut out, "Content-Length", &self.reason.len().to_string());
        let connection = if has_upgrade {
            "Upgrade, close"
        } else {
            "close"
        };
        push_header(&mut out, "Connection", connection);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(self.reason.as_bytes());
        out
    }
}

/// The standard reason phrase (RFC 7231 §6.1, RFC 6585) for the statuses a
/// handshake is likely to be refused with, and a generic one for the rest.
fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => match status / 100 {
            4 => "Client Error",
            5 => "Server Error",
            _ => "Unknown",
        },
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "handshake refused with {} {}: {}",
            self.status,
            reason_phrase(self.status),
            self.reason
        )
    }
}

impl std::error::Error for Rejection {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejection_response_drops_injected_headers() {
        let rejection = Rejection::new(401, "who are you?")
            .with_header("WWW-Authenticate", "Basic realm=\"x\"")
            .with_header("X-Evil", "a\r\nSet-Cookie: b")
            .with_header("Content-Length", "0");
        let response = String::from_utf8(rejection.to_response()).unwrap();
        assert_eq!(
            response,
            "HTTP/1.1 401 Unauthorized\r\n\
             WWW-Authenticate: Basic realm=\"x\"\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 12\r\n\
             Connection: close\r\n\
             \r\n\
             who are you?"
        );
    }

    #[test]
    fn rejection_reason_phrases_and_display() {
        for (status, phrase) in [
            (400, "Bad Request"),
            (403, "Forbidden"),
            (404, "Not Found"),
            (429, "Too Many Requests"),
            (431, "Request Header Fields Too Large"),
            (503, "Service Unavailable"),
            (418, "Client Error"),
        ] {
            let response = Rejection::new(status, "x").to_response();
            let expected = format!("HTTP/1.1 {status} {phrase}\r\n");
            assert!(response.starts_with(expected.as_bytes()), "{status}");
        }
        assert!(Rejection::new(7, "x")
            .to_response()
            .starts_with(b"HTTP/1.1 500 "));
        assert_eq!(
            Rejection::new(404, "no such room").to_string(),
            "handshake refused with 404 Not Found: no such room"
        );
    }

    proptest! {
        #[test]
        fn rejection_response_is_well_formed(
            status in any::<u16>(),
            reason in ".{0,40}",
            name in ".{0,10}",
            value in ".{0,10}",
        ) {
            let response = Rejection::new(status, reason.clone()).with_header(name, value).to_response();
            let mut headers = [httparse::EMPTY_HEADER; 8];
            let mut parsed = httparse::Response::new(&mut headers);
            let head_len = match parsed.parse(&response) {
                Ok(httparse::Status::Complete(n)) => n,
                other => return Err(TestCaseError::fail(format!("{other:?}"))),
            };
            prop_assert_eq!(&response[head_len..], reason.as_bytes());
        }
    }
}
