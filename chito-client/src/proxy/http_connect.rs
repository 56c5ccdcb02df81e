//! The HTTP CONNECT handshake (RFC 9110 §9.3.6), sans-IO: the request's
//! bytes out, the response head in.
//!
//! The tunnel's first byte from the server may follow the proxy's head in
//! the same read. Nothing must be lost, and the stream handed on is a bare
//! `TcpStream`, so the driver *peeks* at the input, feeds it here, and
//! then consumes only the bytes that [`HttpConnect::feed`] says were the
//! head's (`Ok(Some(n))`).

use base64::Engine as _;

use crate::error::ProxyError;
use crate::proxy::Credentials;

/// The largest proxy response head accepted; a proxy's CONNECT answer is a
/// status line and a few headers.
const MAX_HEAD: usize = 8 * 1024;

/// Headers parsed at most in a proxy's response head.
const MAX_HEADERS: usize = 64;

/// One CONNECT exchange.
#[derive(Debug)]
pub(crate) struct HttpConnect {
    /// The response head read so far (bounded by [`MAX_HEAD`]).
    head: Vec<u8>,
}

impl HttpConnect {
    /// The machine and the request to send: `CONNECT host:port HTTP/1.1`,
    /// `Host` (RFC 9110 §9.3.6: the request target is the authority form,
    /// RFC 9112 §3.2.3) and, with credentials, `Proxy-Authorization:
    /// Basic` (RFC 9110 §11.7.2, RFC 7617).
    pub(crate) fn new(authority: &str, credentials: Option<&Credentials>) -> (Self, Vec<u8>) {
        let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
        if let Some(credentials) = credentials {
            // RFC 7617 §2: base64 of user-id ":" password.
            let pair = format!("{}:{}", credentials.username, credentials.password);
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            request.push_str("Proxy-Authorization: Basic ");
            request.push_str(&encoded);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        (HttpConnect { head: Vec::new() }, request.into_bytes())
    }

    /// Feeds bytes read (or peeked) from the proxy. `Ok(None)`: all of
    /// them were head, more is needed. `Ok(Some(n))`: the tunnel is open
    /// and the first `n` of `bytes` ended the head; the rest belong to
    /// the server.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Result<Option<usize>, ProxyError> {
        let before = self.head.len();
        let room = MAX_HEAD.saturating_sub(before);
        let taken = bytes.get(..room.min(bytes.len())).unwrap_or(bytes);
        self.head.extend_from_slice(taken);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&self.head) {
            Ok(httparse::Status::Complete(len)) => {
                let status = response
                    .code
                    .ok_or(ProxyError::Protocol("no status code"))?;
                match status {
                    // RFC 9110 §9.3.6: "Any 2xx (Successful) response
                    // indicates that the sender (and all inbound proxies)
                    // will switch to tunnel mode".
                    200..=299 => Ok(Some(len.saturating_sub(before))),
                    // RFC 9110 §15.5.8: 407 Proxy Authentication Required.
                    407 => Err(ProxyError::Auth("407 Proxy Authentication Required")),
                    _ => Err(ProxyError::Refused {
                        status,
                        reason: response.reason.unwrap_or("").to_owned(),
                    }),
                }
            }
            Ok(httparse::Status::Partial) if self.head.len() >= MAX_HEAD => {
                Err(ProxyError::Protocol("response head over 8 KiB"))
            }
            Ok(httparse::Status::Partial) => Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                Err(ProxyError::Protocol("over 64 headers in the response"))
            }
            Err(_) => Err(ProxyError::Protocol("not an HTTP/1.x response head")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            username: "aladdin".into(),
            password: "opensesame".into(),
        }
    }

    #[test]
    fn request_names_the_authority_and_carries_basic_auth() {
        let (_, bytes) = HttpConnect::new("example.com:443", None);
        assert_eq!(
            bytes,
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
        );
        let (_, bytes) = HttpConnect::new("[::1]:80", Some(&creds()));
        let text = String::from_utf8(bytes).unwrap();
        // RFC 7617 §2's example credentials.
        assert!(text.starts_with("CONNECT [::1]:80 HTTP/1.1\r\nHost: [::1]:80\r\n"));
        assert!(text.contains("\r\nProxy-Authorization: Basic YWxhZGRpbjpvcGVuc2VzYW1l\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn any_2xx_opens_the_tunnel_and_keeps_the_server_bytes() {
        let reply = b"HTTP/1.1 200 Connection established\r\nVia: test\r\n\r\nSERVER";
        let (mut m, _) = HttpConnect::new("h:1", None);
        assert_eq!(m.feed(reply).unwrap(), Some(reply.len() - b"SERVER".len()));
        let (mut m, _) = HttpConnect::new("h:1", None);
        assert_eq!(m.feed(b"HTTP/1.0 204 OK\r\n\r\n").unwrap(), Some(19));
    }

    #[test]
    fn byte_by_byte_input_needs_more_until_the_last_byte() {
        let reply = b"HTTP/1.1 200 OK\r\nX: y\r\n\r\nAB";
        let head_len = reply.len() - 2;
        let (mut m, _) = HttpConnect::new("h:1", None);
        for (i, byte) in reply.iter().enumerate() {
            let got = m.feed(std::slice::from_ref(byte)).unwrap();
            if i + 1 < head_len {
                assert_eq!(got, None, "byte {i}");
            } else {
                // The head's last byte: one byte of this chunk was head.
                assert_eq!(got, Some(1));
                return;
            }
        }
        panic!("never completed");
    }

    #[test]
    fn statuses_map_to_errors() {
        let (mut m, _) = HttpConnect::new("h:1", None);
        let err = m
            .feed(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
            .unwrap_err();
        assert!(matches!(err, ProxyError::Auth(_)), "{err:?}");
        for (reply, code, phrase) in [
            (&b"HTTP/1.1 403 Forbidden\r\n\r\n"[..], 403, "Forbidden"),
            (
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n",
                502,
                "Bad Gateway",
            ),
            (
                b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
                101,
                "Switching Protocols",
            ),
            (b"HTTP/1.1 301 \r\n\r\n", 301, ""),
        ] {
            let (mut m, _) = HttpConnect::new("h:1", None);
            match m.feed(reply) {
                Err(ProxyError::Refused { status, reason }) => {
                    assert_eq!((status, reason.as_str()), (code, phrase));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn garbage_and_oversized_heads_are_protocol_errors() {
        let (mut m, _) = HttpConnect::new("h:1", None);
        assert!(matches!(
            m.feed(b"\x05\x00\x00\x01"),
            Err(ProxyError::Protocol(_))
        ));
        let (mut m, _) = HttpConnect::new("h:1", None);
        assert_eq!(m.feed(b"HTTP/1.1 200 OK\r\n").unwrap(), None);
        let filler = b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        let mut result = Ok(None);
        for _ in 0..1000 {
            result = m.feed(filler);
            if result.is_err() {
                break;
            }
        }
        assert!(matches!(result, Err(ProxyError::Protocol(_))), "{result:?}");
        assert!(m.head.len() <= MAX_HEAD);
    }
}
