//! The client side of the opening handshake on hostile responses.
//!
//! Two `ClientHandshake`s are made from a fixed `ClientRequest` offering
//! two subprotocols: A with `Config::default()`, which adds and verifies
//! the permessage-deflate offer itself, and B with deflate off in the
//! config and the same offer written into the request, which checks only
//! RFC 6455 §4.1. Input: a mode byte, then raw response bytes in which
//! every `$ACCEPT` becomes the correct `Sec-WebSocket-Accept` for each
//! handshake's (random) key (even mode), or bytes that `arbitrary` turns
//! into a response — status, reason, headers, sometimes the right accept
//! key (odd mode).
//!
//! Checks: both send the same request but for the key; `feed` never
//! panics; each yields `Ok(Some)` only for a 101 over HTTP/1.1+ whose single
//! `Sec-WebSocket-Accept` is the expected one, whose protocol was offered
//! and whose extensions were offered, with the bytes after the head as the
//! leftover; a non-101 is `UnexpectedStatus`. When the two inputs differ
//! only in `Sec-WebSocket-Accept` lines, A, fed its bytes in two pieces
//! split at a point taken from the mode byte, ends as B does, except that
//! it may fail with `Deflate`, and only when extensions were answered. A's
//! successes yield parameters a `Connection` can use (windows 8..=15, our
//! own 9..=15), which then starts from the leftover bytes.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use chito::handshake::{
    accept_key, ClientHandshake, ClientRequest, Connected, HandshakeError, ServerHandshake,
};
use chito::{Config, Connection, Role};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Name {
    Upgrade,
    Connection,
    Accept,
    Protocol,
    Extensions,
    Other(String),
}

#[derive(Debug, Arbitrary)]
enum Value {
    Valid,
    /// The correct accept value with something appended (near miss).
    AcceptWith(String),
    Deflate {
        server_nct: bool,
        client_nct: bool,
        server_bits: Option<u8>,
        client_bits: Option<u8>,
        junk: Option<String>,
    },
    Raw(String),
}

#[derive(Debug, Arbitrary)]
struct Head {
    status: Option<u16>,
    reason: Option<String>,
    minor_version: u8,
    headers: Vec<(Name, Value)>,
    trailing: Vec<u8>,
}

fn format_head(head: &Head, accept: &str) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(
        format!(
            "HTTP/1.{} {} {}\r\n",
            head.minor_version % 3,
            head.status.map_or(101, |s| s % 1000),
            head.reason.as_deref().unwrap_or("Switching Protocols")
        )
        .as_bytes(),
    );
    for (name, value) in &head.headers {
        let name_str = match name {
            Name::Upgrade => "Upgrade",
            Name::Connection => "connection",
            Name::Accept => "Sec-WebSocket-Accept",
            Name::Protocol => "Sec-WebSocket-Protocol",
            Name::Extensions => "Sec-WebSocket-Extensions",
            Name::Other(s) => s,
        };
        let value = match value {
            Value::Valid => match name {
                Name::Upgrade => "websocket".to_owned(),
                Name::Connection => "Upgrade".to_owned(),
                Name::Accept => accept.to_owned(),
                Name::Protocol => "superchat".to_owned(),
                Name::Extensions => "permessage-deflate".to_owned(),
                Name::Other(_) => "x".to_owned(),
            },
            Value::AcceptWith(s) => format!("{accept}{s}"),
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
                    v.push_str("; client_no_context_takeover");
                }
                if let Some(bits) = server_bits {
                    v.push_str(&format!("; server_max_window_bits={}", bits % 18));
                }
                if let Some(bits) = client_bits {
                    v.push_str(&format!("; client_max_window_bits={}", bits % 18));
                }
                if let Some(junk) = junk {
                    v.push_str(junk);
                }
                v
            }
            Value::Raw(s) => s.clone(),
        };
        out.extend_from_slice(name_str.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&head.trailing);
    out
}

fn replace_all(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

/// The header values called `name` in a raw head, trimmed (independent of
/// chito's parser; only used on heads chito accepted).
fn header_values(head: &[u8], name: &str) -> Vec<Vec<u8>> {
    head.split(|&b| b == b'\n')
        .skip(1)
        .filter_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let colon = line.iter().position(|&b| b == b':')?;
            let (n, v) = line.split_at(colon);
            if !n.eq_ignore_ascii_case(name.as_bytes()) {
                return None;
            }
            let v = &v[1..];
            let start = v
                .iter()
                .position(|&b| b != b' ' && b != b'\t')
                .unwrap_or(v.len());
            let end = v
                .iter()
                .rposition(|&b| b != b' ' && b != b'\t')
                .map_or(start, |e| e + 1);
            Some(v[start..end].to_vec())
        })
        .collect()
}

/// Feeds `bytes` to `handshake` in two pieces, split at `split`; a
/// success's leftover then also holds the bytes not fed, as a caller hands
/// both to the connection.
fn feed_in_two(
    handshake: &mut ClientHandshake,
    bytes: &[u8],
    split: usize,
) -> Result<Option<(Connected, Vec<u8>)>, HandshakeError> {
    let (first, second) = bytes.split_at(split);
    let (outcome, unfed) = match handshake.feed(first)? {
        Some(connected) => (Some(connected), second),
        None => (handshake.feed(second)?, &[][..]),
    };
    Ok(outcome.map(|connected| {
        let leftover = [connected.leftover(), unfed].concat();
        (connected, leftover)
    }))
}

/// Whether `a` and `b` (the same input with each handshake's accept value
/// in place of `$ACCEPT`) differ only in `Sec-WebSocket-Accept` lines: then
/// both handshakes must end the same way. Elsewhere an accept value may
/// change the outcome (its `/`, `+` and `=` are not token characters).
fn only_accept_lines_differ(a: &[u8], b: &[u8]) -> bool {
    const NAME: &[u8] = b"sec-websocket-accept:";
    a.len() == b.len()
        && a.split(|&c| c == b'\n')
            .zip(b.split(|&c| c == b'\n'))
            .all(|(la, lb)| {
                la == lb
                    || la
                        .get(..NAME.len())
                        .is_some_and(|n| n.eq_ignore_ascii_case(NAME))
            })
}

type Outcome = Result<Option<(Connected, Vec<u8>)>, HandshakeError>;

/// The RFC 6455 §4.1 checks of one handshake's outcome on `bytes`, whose
/// right accept value is `accept`: a success only for a 101 over HTTP/1.1+
/// whose single `Sec-WebSocket-Accept` is the expected one, whose protocol
/// was offered and whose extensions were offered; a non-101 is
/// `UnexpectedStatus`; a partial head is within the limit.
fn check_rfc6455(bytes: &[u8], accept: &str, outcome: &Outcome, max_head: usize) {
    let (connected, leftover) = match outcome {
        Ok(Some(success)) => success,
        Ok(None) => {
            assert!(bytes.len() <= max_head, "partial head over the limit");
            return;
        }
        Err(HandshakeError::UnexpectedStatus { status, .. }) => {
            assert_ne!(*status, 101, "101 reported as unexpected");
            return;
        }
        Err(_) => return,
    };
    let consumed = bytes.len() - leftover.len();
    assert!(consumed <= max_head);
    assert_eq!(leftover, &bytes[consumed..]);
    let head = &bytes[..consumed];
    let response = connected.response();
    assert_eq!(
        response.status(),
        101,
        "accepted status {}",
        response.status()
    );
    assert!(
        head.starts_with(b"HTTP/1.1 ") || head.starts_with(b"HTTP/1.2 "),
        "accepted a non-HTTP/1.1 head: {:?}",
        String::from_utf8_lossy(&head[..head.len().min(12)])
    );
    assert_eq!(
        header_values(head, "Sec-WebSocket-Accept"),
        [accept.as_bytes().to_vec()],
        "accepted without exactly the right accept key"
    );
    let upgrade = header_values(head, "Upgrade");
    assert!(upgrade.len() == 1 && upgrade[0].eq_ignore_ascii_case(b"websocket"));
    if let Some(protocol) = response.protocol() {
        assert!(
            protocol == "chat" || protocol == "superchat",
            "{protocol:?}"
        );
    }
    for ext in response.extensions() {
        // Extension names match case-insensitively (as the server side
        // does); only permessage-deflate was offered.
        assert!(
            ext.name.eq_ignore_ascii_case("permessage-deflate"),
            "unoffered extension accepted: {:?}",
            ext.name
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let config = Config::default();
    let base = ClientRequest::new("example.com", "/chat")
        .with_protocol("chat")
        .with_protocol("superchat");
    // A: the config adds the permessage-deflate offer and checks the answer.
    let (mut a, request_a) = ClientHandshake::new(&base, &config).expect("valid request");
    assert!(request_a.ends_with(b"\r\n\r\n"));
    // B: the same offers written into the request, deflate off in the
    // config, so only the RFC 6455 checks apply.
    let offered = ServerHandshake::new(&config)
        .feed(&request_a)
        .expect("our own request refused")
        .expect("our own request incomplete");
    assert!(offered
        .extensions()
        .iter()
        .any(|o| o.name == "permessage-deflate"));
    let mut request = base.clone();
    request.extensions = offered.extensions().to_vec();
    let mut plain = config.clone();
    plain.deflate = None;
    let (mut b, request_b) = ClientHandshake::new(&request, &plain).expect("valid request");
    assert_eq!(
        String::from_utf8_lossy(&request_b).replace(b.key(), a.key()),
        String::from_utf8_lossy(&request_a),
        "the config's offer differs from the same offer in the request"
    );

    let accept_a = accept_key(a.key().as_bytes());
    let accept_b = accept_key(b.key().as_bytes());
    let make = |accept: &str| -> Option<Vec<u8>> {
        if mode % 2 == 0 {
            Some(replace_all(rest, b"$ACCEPT", accept.as_bytes()))
        } else {
            let head = Head::arbitrary_take_rest(Unstructured::new(rest)).ok()?;
            Some(format_head(&head, accept))
        }
    };
    let (Some(bytes_a), Some(bytes_b)) = (make(&accept_a), make(&accept_b)) else {
        return;
    };
    let max_head = config.max_handshake_size;
    // B in one piece, A in two.
    let outcome_b = feed_in_two(&mut b, &bytes_b, bytes_b.len());
    let split = usize::from(mode >> 1) * 37 % (bytes_a.len() + 1);
    let outcome_a = feed_in_two(&mut a, &bytes_a, split);
    check_rfc6455(&bytes_b, &accept_b, &outcome_b, max_head);
    check_rfc6455(&bytes_a, &accept_a, &outcome_a, max_head);

    // A makes B's checks, then checks the permessage-deflate answer against
    // our offer (RFC 7692 §5).
    if only_accept_lines_differ(&bytes_a, &bytes_b) {
        match (&outcome_b, &outcome_a) {
            (Ok(None), a) => assert!(matches!(a, Ok(None)), "{a:?}"),
            (
                Err(HandshakeError::UnexpectedStatus { status, reason, .. }),
                Err(HandshakeError::UnexpectedStatus {
                    status: status_a,
                    reason: reason_a,
                    ..
                }),
            ) => assert_eq!((status, reason), (status_a, reason_a)),
            // The parser's message may name an earlier point of the split.
            (
                Err(HandshakeError::MalformedResponse(_)),
                Err(HandshakeError::MalformedResponse(_)),
            ) => {}
            (Err(error), a) => assert_eq!(Err(error), a.as_ref().map(|_| ())),
            (Ok(Some((response, leftover))), a) => {
                let response = response.response();
                match a {
                    Err(HandshakeError::Deflate(_)) => assert!(
                        !response.extensions().is_empty(),
                        "refused without extensions"
                    ),
                    Ok(Some((connected, leftover_a))) => {
                        assert_eq!(connected.response().protocol(), response.protocol());
                        assert_eq!(connected.response().extensions(), response.extensions());
                        // Accept lines may stand after the head too.
                        assert_eq!(leftover_a.len(), leftover.len());
                    }
                    other => panic!("A ended with {other:?} where B succeeded"),
                }
            }
        }
    }
    if let Ok(Some((connected, _))) = &outcome_b {
        assert_eq!(connected.negotiated().deflate, None, "deflate off in B");
    }

    let Ok(Some((connected, leftover))) = outcome_a else {
        return;
    };
    let response = connected.response();
    let negotiated = connected.negotiated().clone();
    assert_eq!(negotiated.protocol.as_deref(), response.protocol());
    if let Some(params) = negotiated.deflate {
        assert!(!response.extensions().is_empty());
        // The client compresses with its own window: 9..=15.
        assert!(
            (9..=15).contains(&params.client_max_window_bits),
            "{params:?}"
        );
        assert!(
            (8..=15).contains(&params.server_max_window_bits),
            "{params:?}"
        );
        // We offered client_no_context_takeover (Config::default),
        // and keep that promise whatever the answer.
        assert!(params.client_no_context_takeover, "{params:?}");
        // We also asked for server_no_context_takeover, which the
        // server must grant or the negotiation fails.
        assert!(params.server_no_context_takeover, "{params:?}");
    } else {
        assert!(response.extensions().is_empty(), "deflate answer ignored");
    }
    // The connection starts from the result and the leftover bytes.
    let mut conn = Connection::with_negotiated(Role::Client, config.clone(), negotiated, &leftover);
    for _ in 0..64 {
        match conn.poll_event() {
            Ok(Some(_)) => {}
            _ => break,
        }
    }
});
