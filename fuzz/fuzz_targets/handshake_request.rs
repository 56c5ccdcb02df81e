//! The server side of the opening handshake on hostile requests.
//!
//! Input: a mode byte, then either raw request bytes (even mode) or bytes
//! that `arbitrary` turns into a request line and header set, formatted as
//! an HTTP head (odd mode, so field values reach the checks intact).
//!
//! Checks: `Request::parse` and `server_response(&req, Accept::default(),
//! &Config::default())` never panic; a refusal is a 4xx or 5xx status whose
//! `to_response` is a well-formed HTTP head; an accepted request yields a
//! `101` whose `Sec-WebSocket-Accept` is `accept_key` of the request's key,
//! with `Sec-WebSocket-Extensions` present exactly when permessage-deflate
//! was negotiated (and then naming it, with parameters the default config
//! can honour).
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use chito::handshake::{accept_key, server_response, Accept, Limits, Request};
use chito::Config;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Method {
    Get,
    Post,
    Connect,
    Other(String),
}

#[derive(Debug, Arbitrary)]
enum Name {
    Host,
    Upgrade,
    Connection,
    Key,
    Version,
    Protocol,
    Extensions,
    ContentLength,
    TransferEncoding,
    Other(String),
}

#[derive(Debug, Arbitrary)]
enum Value {
    Valid,
    /// A key made of arbitrary 16 bytes (so valid, but not the RFC one).
    Key([u8; 16]),
    Deflate {
        server_nct: bool,
        client_nct: bool,
        server_bits: Option<u8>,
        client_bits: Option<Option<u8>>,
        junk: Option<String>,
    },
    Raw(String),
}

#[derive(Debug, Arbitrary)]
struct Head {
    method: Method,
    target: Option<String>,
    minor_version: u8,
    headers: Vec<(Name, Value)>,
    trailing: Vec<u8>,
}

impl Name {
    fn as_str(&self) -> &str {
        match self {
            Name::Host => "Host",
            Name::Upgrade => "upgrade",
            Name::Connection => "Connection",
            Name::Key => "Sec-WebSocket-Key",
            Name::Version => "sec-websocket-version",
            Name::Protocol => "Sec-WebSocket-Protocol",
            Name::Extensions => "Sec-WebSocket-Extensions",
            Name::ContentLength => "Content-Length",
            Name::TransferEncoding => "Transfer-Encoding",
            Name::Other(s) => s,
        }
    }

    fn valid_value(&self) -> &str {
        match self {
            Name::Host => "example.com:8080",
            Name::Upgrade => "h2c, WebSocket",
            Name::Connection => "keep-alive, Upgrade",
            Name::Key => "dGhlIHNhbXBsZSBub25jZQ==",
            Name::Version => "13",
            Name::Protocol => "chat, superchat",
            Name::Extensions => "permessage-deflate; client_max_window_bits",
            Name::ContentLength => "0",
            Name::TransferEncoding => "chunked",
            Name::Other(_) => "x",
        }
    }
}

fn format_head(head: &Head) -> Vec<u8> {
    let mut out = Vec::new();
    let method = match &head.method {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Connect => "CONNECT",
        Method::Other(m) => m,
    };
    let target = head.target.as_deref().unwrap_or("/chat");
    out.extend_from_slice(
        format!("{method} {target} HTTP/1.{}\r\n", head.minor_version % 3).as_bytes(),
    );
    let engine = &base64_engine::STANDARD;
    for (name, value) in &head.headers {
        let value = match value {
            Value::Valid => name.valid_value().to_owned(),
            Value::Key(bytes) => engine.encode(bytes),
            Value::Deflate {
                server_nct,
                client_nct,
                server_bits,
                client_bits,
                junk,
            } => {
                let mut v = String::from("permessage-deflate");
                if *server_nct {
                    v.push_str("; server_no_context_takeover");
                }
                if *client_nct {
                    v.push_str(";client_no_context_takeover");
                }
                if let Some(bits) = server_bits {
                    v.push_str(&format!("; server_max_window_bits={}", bits % 18));
                }
                match client_bits {
                    Some(Some(bits)) => {
                        v.push_str(&format!("; client_max_window_bits=\"{}\"", bits % 18))
                    }
                    Some(None) => v.push_str("; client_max_window_bits"),
                    None => {}
                }
                if let Some(junk) = junk {
                    v.push_str(junk);
                }
                v
            }
            Value::Raw(s) => s.clone(),
        };
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&head.trailing);
    out
}

/// Minimal base64 (standard alphabet, padded), so the fuzz crate needs no
/// extra dependency.
mod base64_engine {
    pub struct Engine;
    pub const STANDARD: Engine = Engine;
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    impl Engine {
        pub fn encode(&self, bytes: &[u8]) -> String {
            let mut out = String::new();
            for chunk in bytes.chunks(3) {
                let b = [
                    chunk[0],
                    *chunk.get(1).unwrap_or(&0),
                    *chunk.get(2).unwrap_or(&0),
                ];
                let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
                for i in 0..4 {
                    if i <= chunk.len() {
                        out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                    } else {
                        out.push('=');
                    }
                }
            }
            out
        }
    }
}

/// Splits an HTTP response into (status line, [(name, value)]); panics if
/// it is not well formed: CRLF lines, `name: value`, an empty line, then
/// exactly `Content-Length` bytes of body (none without the header).
fn parse_head(bytes: &[u8]) -> (String, Vec<(String, String)>) {
    let text = std::str::from_utf8(bytes).expect("response is not UTF-8");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("response head not terminated: {text:?}"));
    let mut lines = head.split("\r\n");
    let status = lines.next().expect("status line").to_owned();
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (name, value) = line
                .split_once(": ")
                .unwrap_or_else(|| panic!("bad line {line:?}"));
            assert!(
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':'),
                "bad header name {name:?}"
            );
            assert!(
                !value.contains(['\r', '\n', '\0']),
                "header injection in {value:?}"
            );
            (name.to_owned(), value.to_owned())
        })
        .collect();
    let length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("Content-Length"))
        .map_or(0, |(_, v)| v.parse::<usize>().expect("Content-Length"));
    assert_eq!(
        body.len(),
        length,
        "body length differs from Content-Length"
    );
    (status, headers)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        let Ok(head) = Head::arbitrary_take_rest(Unstructured::new(rest)) else {
            return;
        };
        format_head(&head)
    };
    let config = Config::default();
    let limits = config.handshake_limits();
    let parsed = match Request::parse(&bytes, &limits) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            assert!(
                bytes.len() <= limits.max_head_size,
                "partial head over the limit"
            );
            return;
        }
        Err(rejection) => {
            assert!(
                matches!(rejection.status(), 400 | 431),
                "parse refused with {}",
                rejection.status()
            );
            parse_head(&rejection.to_response());
            return;
        }
    };
    let (request, consumed) = parsed;
    assert!(consumed <= bytes.len() && consumed <= limits.max_head_size);
    assert!(
        bytes[..consumed].ends_with(b"\n"),
        "head does not end a line"
    );
    // Parsing only the head gives the same request.
    assert_eq!(
        Request::parse(&bytes[..consumed], &Limits::default())
            .ok()
            .flatten(),
        Some((request.clone(), consumed))
    );

    match server_response(&request, Accept::default(), &config) {
        Err(rejection) => {
            let status = rejection.status();
            assert!(
                (400..600).contains(&status),
                "rejected with status {status}"
            );
            // A request that validates must be accepted: the only
            // refusals come from `validate`.
            assert!(
                request.validate().is_err(),
                "valid request rejected ({status}: {})",
                rejection.reason()
            );
            let (line, headers) = parse_head(&rejection.to_response());
            assert!(line.starts_with(&format!("HTTP/1.1 {status} ")), "{line}");
            if status == 426 {
                assert!(headers
                    .iter()
                    .any(|(n, v)| n.eq_ignore_ascii_case("Sec-WebSocket-Version") && v == "13"));
            }
        }
        Ok((response, negotiated)) => {
            request.validate().expect("accepted an invalid request");
            assert_eq!(request.method(), "GET");
            let key = request
                .header("Sec-WebSocket-Key")
                .expect("accepted without a key");
            let (line, headers) = parse_head(&response);
            assert_eq!(line, "HTTP/1.1 101 Switching Protocols");
            let find = |name: &str| -> Vec<&str> {
                headers
                    .iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.as_str())
                    .collect()
            };
            assert_eq!(find("Sec-WebSocket-Accept"), [accept_key(key).as_str()]);
            assert_eq!(find("Upgrade"), ["websocket"]);
            assert_eq!(find("Connection"), ["Upgrade"]);
            assert!(
                find("Sec-WebSocket-Protocol").is_empty(),
                "protocol not asked for"
            );
            let extensions = find("Sec-WebSocket-Extensions");
            match negotiated.deflate {
                None => assert!(extensions.is_empty(), "extensions without deflate"),
                Some(params) => {
                    assert_eq!(extensions.len(), 1);
                    assert!(
                        extensions[0].starts_with("permessage-deflate"),
                        "{extensions:?}"
                    );
                    // Config::default() answers with no context takeover
                    // both ways, and windows zlib can compress with.
                    assert!(params.server_no_context_takeover && params.client_no_context_takeover);
                    assert!(
                        (9..=15).contains(&params.server_max_window_bits),
                        "{params:?}"
                    );
                    assert!(
                        (8..=15).contains(&params.client_max_window_bits),
                        "{params:?}"
                    );
                    let offers = request.extensions().expect("validated");
                    assert!(offers
                        .iter()
                        .any(|o| o.name.eq_ignore_ascii_case("permessage-deflate")));
                }
            }
            assert!(negotiated.protocol.is_none());
        }
    }
});
