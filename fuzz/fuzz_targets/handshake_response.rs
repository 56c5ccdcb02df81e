//! The client side of the opening handshake on hostile responses.
//!
//! A `ClientHandshake` is made from a fixed `ClientRequest` (offering two
//! subprotocols and, via `offer_extensions`, permessage-deflate). Input: a
//! mode byte, then raw response bytes in which every `$ACCEPT` becomes the
//! correct `Sec-WebSocket-Accept` for this handshake's (random) key (even
//! mode), or bytes that `arbitrary` turns into a response — status, reason,
//! headers, sometimes the right accept key (odd mode).
//!
//! Checks: `parse_response` never panics; `Ok(Some)` only for a 101 over
//! HTTP/1.1+ whose single `Sec-WebSocket-Accept` is the expected one, whose
//! protocol was offered and whose extensions were offered; `negotiate_client`
//! on accepted responses never panics and yields parameters a `Connection`
//! can use (windows 8..=15, our own 9..=15).
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use chito::handshake::{
    accept_key, negotiate_client, offer_extensions, ClientHandshake, ClientRequest, HandshakeError,
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

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let config = Config::default();
    let mut request = ClientRequest::new("example.com", "/chat")
        .with_protocol("chat")
        .with_protocol("superchat");
    offer_extensions(&mut request, &config);
    let (handshake, request_bytes) = ClientHandshake::new(&request).expect("valid request");
    assert!(request_bytes.ends_with(b"\r\n\r\n"));
    let accept = accept_key(handshake.key().as_bytes());

    let bytes = if mode % 2 == 0 {
        replace_all(rest, b"$ACCEPT", accept.as_bytes())
    } else {
        let Ok(head) = Head::arbitrary_take_rest(Unstructured::new(rest)) else {
            return;
        };
        format_head(&head, &accept)
    };
    let limits = config.handshake_limits();
    let (response, consumed) = match handshake.parse_response(&bytes, &limits) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            assert!(
                bytes.len() <= limits.max_head_size,
                "partial head over the limit"
            );
            return;
        }
        Err(HandshakeError::UnexpectedStatus { status, .. }) => {
            assert_ne!(status, 101, "101 reported as unexpected");
            return;
        }
        Err(_) => return,
    };
    assert!(consumed <= bytes.len() && consumed <= limits.max_head_size);
    let head = &bytes[..consumed];
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

    match negotiate_client(&response, &config) {
        Err(_) => {
            assert!(
                !response.extensions().is_empty(),
                "refused without extensions"
            );
        }
        Ok(negotiated) => {
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
            let mut conn = Connection::with_negotiated(
                Role::Client,
                config.clone(),
                negotiated,
                &bytes[consumed..],
            );
            for _ in 0..64 {
                match conn.poll_event() {
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
        }
    }
});
