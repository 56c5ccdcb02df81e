//! The server side of the opening handshake on hostile requests.
//!
//! Input: a mode byte, then either raw request bytes (even mode) or bytes
//! that `arbitrary` turns into a request line and header set, formatted as
//! an HTTP head (odd mode, so field values reach the checks intact).
//!
//! Checks: `ServerHandshake::feed` (the bytes in one piece, and again in two
//! pieces split at a point taken from the mode byte) and
//! `UpgradeRequest::accept(Accept::default(), &Config::default())` never
//! panic, and the split does not change the outcome; a refusal is a 400,
//! 426 or 431 whose `to_response` is a well-formed HTTP head; a request
//! that `feed` validated is always accepted, and yields a `101` whose
//! `Sec-WebSocket-Accept` is `accept_key` of the request's key, with
//! `Sec-WebSocket-Extensions` present exactly when permessage-deflate was
//! negotiated (and then naming it, with parameters the default config can
//! honour); the bytes after the head come back as the leftover. In odd mode
//! the same fields also go through `UpgradeRequest::from_extended_connect`
//! (RFC 8441): a 400/431, or a `200` without the HTTP/1.1 upgrade fields.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use chito::handshake::{
    accept_key, Accept, Rejection, ServerHandshake, UpgradeForm, UpgradeRequest,
};
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

/// The request line's method and target, and the header fields, as text.
fn head_parts(head: &Head) -> (&str, &str, Vec<(&str, String)>) {
    let method = match &head.method {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Connect => "CONNECT",
        Method::Other(m) => m,
    };
    let target = head.target.as_deref().unwrap_or("/chat");
    let engine = &base64_engine::STANDARD;
    let fields = head
        .headers
        .iter()
        .map(|(name, value)| {
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
            (name.as_str(), value)
        })
        .collect();
    (method, target, fields)
}

fn format_head(head: &Head) -> Vec<u8> {
    let (method, target, fields) = head_parts(head);
    let mut out = Vec::new();
    out.extend_from_slice(
        format!("{method} {target} HTTP/1.{}\r\n", head.minor_version % 3).as_bytes(),
    );
    for (name, value) in &fields {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&head.trailing);
    out
}

/// The same fields as an HTTP/2 extended CONNECT (RFC 8441): never a
/// panic; a refusal is a 400 or 431; an accepted request is answered with
/// `200` and none of the HTTP/1.1 upgrade's fields.
fn check_extended_connect(head: &Head, config: &Config) {
    let (method, target, fields) = head_parts(head);
    let protocol = match head.minor_version % 3 {
        0 => None,
        1 => Some("websocket"),
        _ => Some(target),
    };
    let outcome = UpgradeRequest::from_extended_connect(
        method,
        protocol,
        "example.com",
        target,
        fields.iter().map(|(n, v)| (*n, v.as_bytes())),
        config,
    );
    match outcome {
        Err(rejection) => assert!(
            matches!(rejection.status(), 400 | 431),
            "extended CONNECT refused with {}",
            rejection.status()
        ),
        Ok(request) => {
            assert_eq!(request.form(), UpgradeForm::ExtendedConnect);
            let accepted = request
                .accept(Accept::default(), config)
                .expect("a valid extended CONNECT must be accepted");
            assert_eq!(accepted.status(), 200);
            for (name, _) in accepted.headers() {
                assert!(
                    !["Upgrade", "Connection", "Sec-WebSocket-Accept"].contains(&name),
                    "{name} in an HTTP/2 answer"
                );
            }
        }
    }
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
        check_extended_connect(&head, &Config::default());
        format_head(&head)
    };
    let config = Config::default();
    let max_head = config.max_handshake_size;
    let outcome = ServerHandshake::new(&config).feed(&bytes);
    // The same bytes in two pieces end the same way; a request then keeps
    // the second piece's bytes after the head, and the caller the rest.
    let split = usize::from(mode >> 1) * 37 % (bytes.len() + 1);
    let mut two_pieces = ServerHandshake::new(&config);
    let (first, second) = bytes.split_at(split);
    let (split_outcome, unfed) = match two_pieces.feed(first) {
        Ok(None) => (two_pieces.feed(second), &[][..]),
        other => (other, second),
    };
    let request = match outcome {
        Ok(Some(request)) => request,
        Ok(None) => {
            assert_eq!(split_outcome, Ok(None));
            assert!(bytes.len() <= max_head, "partial head over the limit");
            return;
        }
        Err(rejection) => {
            let split_status = split_outcome.as_ref().map_err(Rejection::status);
            assert_eq!(split_status.err(), Some(rejection.status()), "split feed");
            let status = rejection.status();
            // 400/431 for what is not a readable head, 400/426 for a head
            // that is not a valid upgrade (RFC 6455 §4.2.1, §4.4).
            assert!(matches!(status, 400 | 426 | 431), "refused with {status}");
            let (line, headers) = parse_head(&rejection.to_response());
            assert!(line.starts_with(&format!("HTTP/1.1 {status} ")), "{line}");
            if status == 426 {
                assert!(headers
                    .iter()
                    .any(|(n, v)| n.eq_ignore_ascii_case("Sec-WebSocket-Version") && v == "13"));
            }
            return;
        }
    };
    let split_request = split_outcome
        .expect("split feed refused a valid request")
        .expect("split feed needs more");
    assert_eq!(
        fields(&split_request),
        fields(&request),
        "split feed gave another request"
    );

    // A request that validated must be accepted: with `Accept::default()`
    // nothing is left to refuse.
    let accepted = match request.clone().accept(Accept::default(), &config) {
        Ok(accepted) => accepted,
        Err(rejection) => panic!(
            "valid request rejected ({}: {})",
            rejection.status(),
            rejection.reason()
        ),
    };
    let consumed = bytes.len() - accepted.leftover().len();
    assert!(consumed <= max_head);
    assert!(
        bytes[..consumed].ends_with(b"\n"),
        "head does not end a line"
    );
    assert_eq!(accepted.leftover(), &bytes[consumed..]);
    let split_accepted = split_request
        .accept(Accept::default(), &config)
        .expect("split request rejected");
    assert_eq!(split_accepted.response(), accepted.response());
    assert_eq!(
        [split_accepted.leftover(), unfed].concat(),
        accepted.leftover()
    );
    // Parsing only the head gives the same request, with nothing left over.
    let alone = ServerHandshake::new(&config)
        .feed(&bytes[..consumed])
        .ok()
        .flatten()
        .expect("the head alone is not a request");
    assert_eq!(fields(&alone), fields(&request));
    assert!(alone
        .accept(Accept::default(), &config)
        .expect("the head alone is refused")
        .leftover()
        .is_empty());

    let response = accepted.response();
    let negotiated = accepted.negotiated();
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
    let as_pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(accepted.headers().collect::<Vec<_>>(), as_pairs);
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
            assert!(request
                .extensions()
                .iter()
                .any(|o| o.name.eq_ignore_ascii_case("permessage-deflate")));
        }
    }
    assert!(negotiated.protocol.is_none());
});

/// What a request holds, to compare two of them (their leftover bytes are
/// compared through `Accepted::leftover`).
fn fields(request: &UpgradeRequest) -> impl PartialEq + std::fmt::Debug + '_ {
    (
        request.method(),
        request.target(),
        request.form(),
        request.headers().collect::<Vec<_>>(),
        request.extensions(),
    )
}
