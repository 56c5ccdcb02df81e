//! permessage-deflate (RFC 7692) through the connection: negotiation,
//! round trips, RSV1 rules, the decompression bomb, and idle memory.
#![cfg(feature = "deflate")]

use chito::deflate::{DeflateConfig, DeflateParams, Deflater};
use chito::frame::{FrameHeader, OpCode};
use chito::handshake::{
    Accept, Accepted, ClientHandshake, ClientRequest, Negotiated, ServerHandshake, UpgradeRequest,
};
use chito::mask::apply_mask;
use chito::{
    Config, Connection, ConnectionError, Event, Message, MessageKind, OwnedEvent, ProtocolError,
    Role,
};

/// The next event, without the reply handle it comes with.
fn event(conn: &mut Connection) -> Result<Option<Event<'_>>, ConnectionError> {
    conn.poll_event().map(|ready| ready.map(|(event, _)| event))
}

fn params(server_nct: bool, client_nct: bool, server_bits: u8, client_bits: u8) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: server_nct,
        client_no_context_takeover: client_nct,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
    }
}

fn pair(p: DeflateParams) -> (Connection, Connection) {
    let mut negotiated = Negotiated::default();
    negotiated.deflate = Some(p);
    let client =
        Connection::with_negotiated(Role::Client, Config::default(), negotiated.clone(), &[]);
    let server = Connection::with_negotiated(Role::Server, Config::default(), negotiated, &[]);
    (client, server)
}

fn move_bytes(from: &mut Connection, to: &mut Connection) -> usize {
    let bytes = from.pending_output().to_vec();
    from.consume_output(bytes.len());
    to.feed(&bytes);
    bytes.len()
}

fn json(i: usize) -> String {
    format!(
        r#"{{"id":{i},"user":"user-{}","text":"the quick brown fox jumps over the lazy dog","tags":["alpha","beta","gamma"],"score":{}}}"#,
        i % 17,
        i * 31 % 1000
    )
}

#[test]
fn round_trips_at_window_bits_9_and_15_with_and_without_takeover() {
    for bits in [9u8, 15] {
        for takeover in [false, true] {
            let (mut client, mut server) = pair(params(!takeover, !takeover, bits, bits));
            let mut wire = 0;
            let mut raw = 0;
            for i in 0..50 {
                let text = json(i);
                raw += text.len();
                client.sender().send(Message::Text(&text)).unwrap();
                wire += move_bytes(&mut client, &mut server);
                assert_eq!(
                    event(&mut server).unwrap(),
                    Some(Event::Text(text.as_str()))
                );
                server
                    .sender()
                    .send(Message::Binary(text.as_bytes()))
                    .unwrap();
                move_bytes(&mut server, &mut client);
                assert_eq!(
                    event(&mut client).unwrap(),
                    Some(Event::Binary(text.as_bytes()))
                );
            }
            assert!(
                wire < raw,
                "bits {bits} takeover {takeover}: {wire} >= {raw}"
            );
            if !takeover {
                assert_eq!(server.compression_memory(), 0);
                assert_eq!(client.compression_memory(), 0);
            } else {
                assert!(server.compression_memory() > 0);
            }
        }
    }
}

#[test]
fn context_takeover_compresses_repeats_better() {
    let sizes: Vec<usize> = [false, true]
        .iter()
        .map(|&takeover| {
            let (mut client, mut server) = pair(params(!takeover, !takeover, 15, 15));
            client.sender().send(Message::Text(&json(1))).unwrap();
            move_bytes(&mut client, &mut server);
            client.sender().send(Message::Text(&json(1))).unwrap();
            move_bytes(&mut client, &mut server)
        })
        .collect();
    assert!(sizes[1] * 2 < sizes[0], "{sizes:?}");
}

#[test]
fn rsv1_only_on_the_first_frame_and_small_messages_go_plain() {
    let (mut client, mut server) = pair(params(true, true, 15, 15));
    client
        .sender()
        .send_fragment(MessageKind::Text, json(1).as_bytes(), false)
        .unwrap();
    client
        .sender()
        .send_fragment(MessageKind::Text, json(2).as_bytes(), true)
        .unwrap();
    client.sender().send(Message::Text("tiny")).unwrap();
    let out = client.pending_output().to_vec();
    let (first, n1) = FrameHeader::parse(&out).unwrap().unwrap();
    let at = n1 + first.payload_len as usize;
    let (second, n2) = FrameHeader::parse(&out[at..]).unwrap().unwrap();
    let at = at + n2 + second.payload_len as usize;
    let (third, _) = FrameHeader::parse(&out[at..]).unwrap().unwrap();
    assert!(first.rsv1 && !second.rsv1 && second.opcode == OpCode::Continuation);
    assert!(!third.rsv1, "below the threshold, sent plain");
    move_bytes(&mut client, &mut server);
    let expected = json(1) + &json(2);
    assert_eq!(
        event(&mut server).unwrap(),
        Some(Event::Text(expected.as_str()))
    );
    assert_eq!(event(&mut server).unwrap(), Some(Event::Text("tiny")));
}

/// A masked client frame with the given first byte.
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    let key = [9, 8, 7, 6];
    out.extend_from_slice(&key);
    let mut body = payload.to_vec();
    apply_mask(&mut body, key, 0);
    out.extend_from_slice(&body);
    out
}

fn expect(server: &mut Connection, input: &[u8], error: ProtocolError) {
    server.feed(input);
    let mut result = event(server).map(|e| e.map(Event::into_owned));
    while let Ok(Some(_)) = result {
        result = event(server).map(|e| e.map(Event::into_owned));
    }
    match result {
        Err(ConnectionError::Protocol(e)) => assert_eq!(e, error),
        other => panic!("expected {error:?}, got {other:?}"),
    }
    assert_eq!(error.close_code().as_u16(), sent_close(server));
}

fn sent_close(conn: &mut Connection) -> u16 {
    let out = conn.pending_output().to_vec();
    let (h, n) = FrameHeader::parse(&out).unwrap().unwrap();
    assert_eq!(h.opcode, OpCode::Close);
    u16::from_be_bytes([out[n], out[n + 1]])
}

#[test]
fn rsv1_rules_give_1002() {
    // RSV1 without the extension.
    let mut plain = Connection::new(Role::Server, Config::default());
    expect(
        &mut plain,
        &client_frame(0xC1, b"x"),
        ProtocolError::ReservedBits,
    );
    // RSV1 on a control frame.
    let (_, mut server) = pair(params(true, true, 15, 15));
    expect(
        &mut server,
        &client_frame(0xC9, b""),
        ProtocolError::UnexpectedCompression,
    );
    // RSV1 on a continuation frame.
    let (_, mut server) = pair(params(true, true, 15, 15));
    let mut input = client_frame(0x01, b"a");
    input.extend(client_frame(0xC0, b"b"));
    expect(&mut server, &input, ProtocolError::UnexpectedCompression);
    // RSV2 even with the extension.
    let (_, mut server) = pair(params(true, true, 15, 15));
    expect(
        &mut server,
        &client_frame(0xA1, b"x"),
        ProtocolError::ReservedBits,
    );
}

#[test]
fn corrupt_compressed_data_gives_1007() {
    let (_, mut server) = pair(params(true, true, 15, 15));
    expect(
        &mut server,
        &client_frame(0xC2, &[0xFF, 0xFF, 0xFF, 0xFF]),
        ProtocolError::InvalidCompressedData,
    );
}

#[test]
fn invalid_utf8_inside_compressed_text_gives_1007() {
    let (_, mut server) = pair(params(true, true, 15, 15));
    let mut deflater = Deflater::new(15, true, 6).unwrap();
    let mut payload = Vec::new();
    deflater
        .compress(&[b'a', 0xFF, b'b'], true, &mut payload)
        .unwrap();
    expect(
        &mut server,
        &client_frame(0xC1, &payload),
        ProtocolError::InvalidUtf8,
    );
}

#[test]
fn decompression_bomb_is_closed_with_1009_and_memory_stays_bounded() {
    // 16 MiB of zeros deflate to about 16 KiB.
    let mut deflater = Deflater::new(15, true, 9).unwrap();
    let mut bomb = Vec::new();
    deflater
        .compress(&vec![0u8; 16 << 20], true, &mut bomb)
        .unwrap();
    assert!(bomb.len() < 64 << 10, "{}", bomb.len());

    let mut negotiated = Negotiated::default();
    negotiated.deflate = Some(params(true, true, 15, 15));
    let mut config = Config::default();
    config.max_message_size = 1 << 20;
    let mut server = Connection::with_negotiated(Role::Server, config, negotiated, &[]);
    let frame = client_frame(0xC2, &bomb);
    // Fed in pieces, as a socket would deliver it.
    let mut result = Ok(None);
    for piece in frame.chunks(16 << 10) {
        server.feed(piece);
        result = event(&mut server).map(|e| e.map(Event::into_owned));
        if result.is_err() {
            break;
        }
    }
    assert!(
        matches!(
            result,
            Err(ConnectionError::Protocol(ProtocolError::MessageTooBig))
        ),
        "{result:?}"
    );
    assert_eq!(sent_close(&mut server), 1009);
    // Inflated output never passed the limit by more than one step, and the
    // read buffer held at most the compressed frame.
    let bound = (1 << 20) + (64 << 10) + frame.len() * 2 + (64 << 10);
    assert!(
        server.buffer_capacity() <= bound,
        "{} > {bound}",
        server.buffer_capacity()
    );
}

/// The server machine's validated request for a complete head.
fn request(head: &[u8], config: &Config) -> UpgradeRequest {
    ServerHandshake::new(config).feed(head).unwrap().unwrap()
}

/// `request` accepted with `Accept::default()`.
fn accept(head: &[u8], config: &Config) -> Accepted {
    request(head, config)
        .accept(Accept::default(), config)
        .unwrap()
}

#[test]
fn negotiation_through_the_handshake_both_sides() {
    let config = Config::default();
    let request = ClientRequest::new("example.com", "/");
    let (mut client_hs, bytes) = ClientHandshake::new(&request, &config).unwrap();
    let accepted = accept(&bytes, &config);
    let server_negotiated = accepted.negotiated().clone();
    let connected = client_hs.feed(&accepted.response()).unwrap().unwrap();
    let client_negotiated = connected.negotiated().clone();
    assert!(server_negotiated.deflate.is_some());
    assert_eq!(server_negotiated.deflate, client_negotiated.deflate);
    // The lean default: no context takeover either way.
    let p = server_negotiated.deflate.unwrap();
    assert!(p.server_no_context_takeover && p.client_no_context_takeover);
}

#[test]
fn server_declines_window_bits_8_and_takes_the_next_offer() {
    let config = Config::default();
    let head = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
                Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=10\r\n\r\n";
    let accepted = accept(head.as_bytes(), &config);
    assert_eq!(
        accepted
            .negotiated()
            .deflate
            .unwrap()
            .server_max_window_bits,
        10
    );
    let text = String::from_utf8(accepted.response()).unwrap();
    assert!(text.contains("server_max_window_bits=10"), "{text}");
}

#[test]
fn no_deflate_when_disabled_or_not_offered() {
    let mut config = Config::default();
    config.deflate = None;
    let head = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
                Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n";
    let accepted = accept(head.as_bytes(), &config);
    assert!(accepted.negotiated().deflate.is_none());
    assert!(!String::from_utf8(accepted.response())
        .unwrap()
        .contains("permessage-deflate"));

    let config = Config::default();
    let plain = head.replace("Sec-WebSocket-Extensions: permessage-deflate\r\n", "");
    let accepted = accept(plain.as_bytes(), &config);
    assert!(accepted.negotiated().deflate.is_none());
}

#[test]
fn context_takeover_config_is_honoured() {
    let mut config = Config::default();
    config.deflate = Some(DeflateConfig::default());
    let request = ClientRequest::new("h", "/");
    let (mut client_hs, bytes) = ClientHandshake::new(&request, &config).unwrap();
    let accepted = accept(&bytes, &config);
    let p = accepted.negotiated().deflate.unwrap();
    assert!(!p.server_no_context_takeover && !p.client_no_context_takeover);
    let connected = client_hs.feed(&accepted.response()).unwrap().unwrap();
    assert_eq!(connected.negotiated().deflate, Some(p));
}

#[test]
fn compressed_fragments_fed_bytewise_match() {
    let (mut client, mut server) = pair(params(false, false, 12, 12));
    let mut expected = Vec::new();
    for i in 0..5 {
        let text = json(i).repeat(i + 1);
        let half = text.len() / 2;
        client
            .sender()
            .send_fragment(MessageKind::Text, &text.as_bytes()[..half], false)
            .unwrap();
        client.sender().send_ping(b"mid").unwrap();
        client
            .sender()
            .send_fragment(MessageKind::Text, &text.as_bytes()[half..], true)
            .unwrap();
        expected.push(OwnedEvent::Ping(b"mid".to_vec()));
        expected.push(OwnedEvent::Text(text));
    }
    let wire = client.pending_output().to_vec();
    let mut got = Vec::new();
    for byte in wire {
        server.feed(&[byte]);
        while let Some(e) = event(&mut server).unwrap() {
            got.push(e.into_owned());
        }
    }
    assert_eq!(got, expected);
}

#[test]
fn extension_names_match_case_insensitively() {
    // Found by the handshake_request fuzz target: this offer used to get a
    // 500 because the answer was checked against the offer case-sensitively.
    let config = Config::default();
    let head = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
                Sec-WebSocket-Extensions: Permessage-Deflate\r\n\r\n";
    let accepted = accept(head.as_bytes(), &config);
    assert!(accepted.negotiated().deflate.is_some());
    assert!(String::from_utf8(accepted.response())
        .unwrap()
        .starts_with("HTTP/1.1 101"));
}
