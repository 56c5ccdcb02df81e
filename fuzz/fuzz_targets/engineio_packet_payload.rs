//! chito-socketio's Engine.IO parsers on arbitrary client input (issue #13,
//! docs/socketio.md §2-§3, §9): one packet (a WebSocket text message), a
//! polling POST body, the request query, and a polling session fed the
//! body. Never panics; what decodes re-encodes to the bytes it came from
//! (Engine.IO packets and payloads have one spelling: a type digit and
//! data, standard padded base64, `\x1e` between packets).
#![no_main]

use std::time::{Duration, Instant};

use bytes::BytesMut;
use chito_socketio::engineio::payload::{
    decode_payload, encode_polling_packet, PayloadError, PayloadPacket,
};
use chito_socketio::engineio::query::parse_query;
use chito_socketio::engineio::{
    packet::decode_text, EngineConfig, GetAction, Outgoing, Session, Sid, TransportKind,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = std::str::from_utf8(data).ok();

    // One packet, as a WebSocket text message brings it.
    if let Some(text) = text {
        if let Ok(packet) = decode_text(text) {
            assert_eq!(packet.encode(), text, "packet does not re-encode");
        }
    }

    // A polling POST body, over and within maxPayload: one byte over is
    // refused whatever the bytes are.
    if let Some(max_payload) = data.len().checked_sub(1) {
        assert!(
            matches!(
                decode_payload(data, max_payload),
                Err(PayloadError::TooLarge)
            ),
            "{} bytes accepted under maxPayload {max_payload}",
            data.len()
        );
    }
    if let Ok(packets) = decode_payload(data, data.len()) {
        assert!(!packets.is_empty());
        let mut again = BytesMut::new();
        for (at, packet) in packets.iter().enumerate() {
            if at > 0 {
                again.extend_from_slice(b"\x1e");
            }
            let outgoing = match packet {
                PayloadPacket::Text(packet) => Outgoing::Text(packet.encode()),
                PayloadPacket::Binary(bytes) => Outgoing::Binary(bytes.clone()),
            };
            encode_polling_packet(&outgoing, &mut again);
        }
        assert_eq!(&again[..], data, "payload does not re-encode");
    }

    // The query of any request (`EIO`, `transport`, `sid`).
    if let Some(text) = text {
        if let Ok(query) = parse_query(Some(text)) {
            if let Some(sid) = query.sid {
                assert!(text.contains(sid), "sid not taken from the query");
            }
        }
    }

    // The body POSTed to an open polling session: the session answers a
    // GET afterwards without panicking, closed or not.
    let start = Instant::now();
    let config = EngineConfig {
        max_payload: 4096,
        max_queued_bytes: 256,
        ..EngineConfig::default()
    };
    let mut session = Session::open(
        Sid::from_bytes([1; 16]),
        TransportKind::Polling,
        &config,
        start,
    );
    let _ = session.get_arrived(start);
    if session.post_begin().is_ok() {
        let _ = session.post_body(data, start + Duration::from_millis(1));
    }
    while let Some(event) = session.poll_event() {
        if let chito_socketio::engineio::EngineEvent::Text(text) = event {
            let _ = session.try_send(Outgoing::message(&text));
        }
    }
    match session.get_arrived(start + Duration::from_millis(2)) {
        GetAction::Respond(body) => assert!(!body.is_empty()),
        GetAction::Park => assert!(session.take_poll_body().is_none()),
        GetAction::Reject(_) => assert!(session.is_closed()),
    }
    session.handle_timeout(start + Duration::from_secs(3600));
    assert!(session.is_closed(), "no pong within an hour: closed");
});
