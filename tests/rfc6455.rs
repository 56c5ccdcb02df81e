//! One test per RFC 6455 rule the connection enforces, each checking the
//! event or the close code that goes on the wire.

use std::time::{Duration, Instant};

use chito::frame::{FrameHeader, OpCode};
use chito::mask::apply_mask;
use chito::{
    CloseCode, Config, Connection, ConnectionError, Event, Message, MessageKind, OwnedEvent,
    ProtocolError, Role, SendError, State, UsageError,
};

/// The next event, without the reply handle it comes with.
fn event(conn: &mut Connection) -> Result<Option<Event<'_>>, ConnectionError> {
    conn.poll_event().map(|ready| ready.map(|(event, _)| event))
}

/// Encodes a frame as a client would (masked) or a server (unmasked).
fn frame(opcode: u8, fin: bool, rsv: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![(if fin { 0x80 } else { 0 }) | (rsv << 4) | opcode];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(m | n as u8),
        n @ 126..=0xFFFF => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mut body = payload.to_vec();
    if let Some(key) = mask {
        out.extend_from_slice(&key);
        apply_mask(&mut body, key, 0);
    }
    out.extend_from_slice(&body);
    out
}

const KEY: [u8; 4] = [0xA1, 0xB2, 0xC3, 0xD4];

fn from_client(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    frame(opcode, fin, 0, payload, Some(KEY))
}

fn server() -> Connection {
    Connection::new(Role::Server, Config::default())
}

/// Drains the connection's output and decodes the frames in it (from a
/// server: unmasked).
fn output_frames(conn: &mut Connection) -> Vec<(OpCode, Vec<u8>)> {
    // As a driver does: write until nothing is pending (writing can
    // release a deferred pong).
    let mut out = Vec::new();
    loop {
        let chunk = conn.pending_output().to_vec();
        if chunk.is_empty() {
            break;
        }
        conn.consume_output(chunk.len());
        out.extend(chunk);
    }
    let mut frames = Vec::new();
    let mut at = 0;
    while at < out.len() {
        let (h, n) = FrameHeader::parse(&out[at..]).unwrap().unwrap();
        let len = h.payload_len as usize;
        let mut payload = out[at + n..at + n + len].to_vec();
        if let Some(key) = h.mask {
            apply_mask(&mut payload, key, 0);
        }
        frames.push((h.opcode, payload));
        at += n + len;
    }
    frames
}

/// The close code of the last frame the connection sent.
fn sent_close_code(conn: &mut Connection) -> Option<u16> {
    output_frames(conn)
        .into_iter()
        .rev()
        .find(|(op, _)| *op == OpCode::Close)
        .map(|(_, p)| u16::from_be_bytes([p[0], p[1]]))
}

fn expect_failure(input: &[u8], expected: ProtocolError) {
    let mut conn = server();
    conn.feed(input);
    let mut result = event(&mut conn).map(|e| e.map(Event::into_owned));
    while let Ok(Some(_)) = result {
        result = event(&mut conn).map(|e| e.map(Event::into_owned));
    }
    match result {
        Err(ConnectionError::Protocol(e)) => assert_eq!(e, expected),
        other => panic!("expected {expected:?}, got {other:?}"),
    }
    assert!((conn.state() == State::Closed));
    assert_eq!(
        sent_close_code(&mut conn),
        Some(expected.close_code().as_u16())
    );
    // After failing, nothing more is delivered.
    conn.feed(&from_client(1, true, b"late"));
    assert!(matches!(event(&mut conn), Ok(None)));
}

#[test]
fn text_and_binary_are_delivered_in_place() {
    let mut conn = server();
    conn.feed(&from_client(1, true, "héllo".as_bytes()));
    conn.feed(&from_client(2, true, &[0, 1, 2]));
    assert_eq!(event(&mut conn).unwrap(), Some(Event::Text("héllo")));
    assert_eq!(
        event(&mut conn).unwrap(),
        Some(Event::Binary(&[0, 1, 2][..]))
    );
    assert_eq!(event(&mut conn).unwrap(), None);
}

#[test]
fn server_requires_masked_frames() {
    // §5.1: a server MUST close on an unmasked frame.
    expect_failure(
        &frame(1, true, 0, b"hi", None),
        ProtocolError::UnmaskedFrame,
    );
}

#[test]
fn client_rejects_masked_frames() {
    let mut conn = Connection::new(Role::Client, Config::default());
    conn.feed(&from_client(1, true, b"hi"));
    assert!(matches!(
        event(&mut conn),
        Err(ConnectionError::Protocol(ProtocolError::MaskedFrame))
    ));
    assert_eq!(sent_close_code(&mut conn), Some(1002));
}

#[test]
fn reserved_bits_fail_with_1002() {
    for rsv in 1..8 {
        expect_failure(
            &frame(1, true, rsv, b"x", Some(KEY)),
            ProtocolError::ReservedBits,
        );
    }
}

#[test]
fn reserved_opcodes_fail_with_1002() {
    for op in [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        expect_failure(
            &from_client(op, true, b""),
            ProtocolError::ReservedOpcode(op),
        );
    }
}

#[test]
fn control_frames_over_125_bytes_fail() {
    expect_failure(
        &from_client(9, true, &[0; 126]),
        ProtocolError::ControlFrameTooLong,
    );
}

#[test]
fn fragmented_control_frames_fail() {
    expect_failure(
        &from_client(9, false, b"ping"),
        ProtocolError::FragmentedControlFrame,
    );
}

#[test]
fn continuation_without_message_fails() {
    expect_failure(
        &from_client(0, true, b"x"),
        ProtocolError::UnexpectedContinuation,
    );
}

#[test]
fn new_message_inside_fragmented_one_fails() {
    let mut input = from_client(1, false, b"a");
    input.extend(from_client(1, true, b"b"));
    expect_failure(&input, ProtocolError::ExpectedContinuation);
}

#[test]
fn fragments_reassemble_with_control_frames_between() {
    let mut conn = server();
    let mut input = from_client(1, false, "frag".as_bytes());
    input.extend(from_client(9, true, b"p"));
    input.extend(from_client(0, false, "men".as_bytes()));
    input.extend(from_client(10, true, b"q"));
    input.extend(from_client(0, true, "ted".as_bytes()));
    conn.feed(&input);
    assert_eq!(event(&mut conn).unwrap(), Some(Event::Ping(&b"p"[..])));
    assert_eq!(event(&mut conn).unwrap(), Some(Event::Pong(&b"q"[..])));
    assert_eq!(event(&mut conn).unwrap(), Some(Event::Text("fragmented")));
    // The ping was answered with the same payload.
    assert_eq!(
        output_frames(&mut conn),
        vec![(OpCode::Pong, b"p".to_vec())]
    );
}

#[test]
fn auto_pong_can_be_turned_off() {
    let mut config = Config::default();
    config.auto_pong = false;
    let mut conn = Connection::new(Role::Server, config);
    conn.feed(&from_client(9, true, b"p"));
    assert_eq!(event(&mut conn).unwrap(), Some(Event::Ping(&b"p"[..])));
    assert!(conn.pending_output().is_empty());
}

#[test]
fn ping_flood_does_not_grow_output_past_the_limit() {
    let mut config = Config::default();
    config.max_pending_pong_bytes = 1000;
    let mut conn = Connection::new(Role::Server, config);
    for _ in 0..10_000 {
        conn.feed(&from_client(9, true, &[7; 125]));
        while event(&mut conn).unwrap().is_some() {}
    }
    assert!(
        conn.buffered_amount() <= 1000 + 127,
        "{}",
        conn.buffered_amount()
    );
}

#[test]
fn ping_during_a_large_send_is_answered_once_output_drains() {
    // §5.5.2: a ping must be answered. With a large message unwritten, the
    // pong waits; of several pings only the latest is answered (§5.5.3).
    let mut conn = server();
    conn.sender()
        .send(Message::Binary(&vec![1u8; 200_000]))
        .unwrap();
    conn.feed(&from_client(9, true, b"first"));
    conn.feed(&from_client(9, true, b"latest"));
    while event(&mut conn).unwrap().is_some() {}
    let frames = output_frames(&mut conn);
    assert_eq!(frames.len(), 2, "the message, then one pong");
    assert_eq!(frames[0].0, OpCode::Binary);
    assert_eq!(frames[1], (OpCode::Pong, b"latest".to_vec()));
    // With the output drained, pongs go out at once again.
    conn.feed(&from_client(9, true, b"now"));
    while event(&mut conn).unwrap().is_some() {}
    assert_eq!(
        output_frames(&mut conn),
        vec![(OpCode::Pong, b"now".to_vec())]
    );
}

#[test]
fn deferred_pong_is_dropped_once_closing() {
    // Nothing may follow our close frame (§5.5.1).
    let mut conn = server();
    conn.sender()
        .send(Message::Binary(&vec![1u8; 200_000]))
        .unwrap();
    conn.feed(&from_client(9, true, b"late"));
    while event(&mut conn).unwrap().is_some() {}
    conn.sender().close(CloseCode::Normal, "").unwrap();
    let frames = output_frames(&mut conn);
    let opcodes: Vec<OpCode> = frames.iter().map(|f| f.0).collect();
    assert_eq!(opcodes, vec![OpCode::Binary, OpCode::Close]);
}

#[test]
fn invalid_utf8_fails_with_1007() {
    expect_failure(
        &from_client(1, true, &[0xCE, 0xBA, 0xFF]),
        ProtocolError::InvalidUtf8,
    );
}

#[test]
fn truncated_utf8_at_message_end_fails() {
    let mut input = from_client(1, false, &[0x41]);
    input.extend(from_client(0, true, &[0xE2, 0x82]));
    expect_failure(&input, ProtocolError::InvalidUtf8);
}

#[test]
fn invalid_utf8_fails_before_the_frame_completes() {
    // Autobahn 6.4.x: the bad byte arrives while the frame is unfinished.
    let mut conn = server();
    let whole = from_client(1, true, &[b'a', b'b', 0xF4, 0x90, 0x80, 0x80, b'c', b'd']);
    conn.feed(&whole[..6 + 3]); // header (6 bytes) + "ab" + 0xF4
    assert!(matches!(event(&mut conn), Ok(None)));
    conn.feed(&whole[9..10]); // 0x90: can never follow 0xF4
    assert!(matches!(
        event(&mut conn),
        Err(ConnectionError::Protocol(ProtocolError::InvalidUtf8))
    ));
    assert_eq!(sent_close_code(&mut conn), Some(1007));
}

#[test]
fn invalid_utf8_across_fragments_fails_at_the_bad_fragment() {
    let mut conn = server();
    conn.feed(&from_client(1, false, &[0xF0, 0x9F]));
    assert!(matches!(event(&mut conn), Ok(None)));
    conn.feed(&from_client(0, false, &[0x41]));
    assert!(matches!(
        event(&mut conn),
        Err(ConnectionError::Protocol(ProtocolError::InvalidUtf8))
    ));
}

#[test]
fn close_is_echoed_and_reported() {
    let mut conn = server();
    let mut body = 1000u16.to_be_bytes().to_vec();
    body.extend_from_slice(b"bye");
    conn.feed(&from_client(8, true, &body));
    match event(&mut conn).unwrap() {
        Some(Event::Close(Some(frame))) => {
            assert_eq!(frame.code, CloseCode::Normal);
            assert_eq!(frame.reason, "bye");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(conn.state(), State::Closed);
    assert_eq!(
        output_frames(&mut conn),
        vec![(OpCode::Close, 1000u16.to_be_bytes().to_vec())]
    );
    assert_eq!(
        conn.sender().send(Message::Text("x")),
        Err(SendError::Usage(UsageError::Closed))
    );
}

#[test]
fn empty_close_is_answered_with_empty_close() {
    let mut conn = server();
    conn.feed(&from_client(8, true, b""));
    assert_eq!(event(&mut conn).unwrap(), Some(Event::Close(None)));
    assert_eq!(output_frames(&mut conn), vec![(OpCode::Close, vec![])]);
}

#[test]
fn close_with_one_byte_fails() {
    expect_failure(
        &from_client(8, true, &[3]),
        ProtocolError::InvalidClosePayload,
    );
}

#[test]
fn invalid_close_codes_fail_with_1002() {
    for code in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        expect_failure(
            &from_client(8, true, &code.to_be_bytes()),
            ProtocolError::InvalidCloseCode(code),
        );
    }
}

#[test]
fn valid_close_codes_are_echoed() {
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
    ] {
        let mut conn = server();
        conn.feed(&from_client(8, true, &code.to_be_bytes()));
        assert!(matches!(
            event(&mut conn).unwrap(),
            Some(Event::Close(Some(_)))
        ));
        assert_eq!(sent_close_code(&mut conn), Some(code));
    }
}

#[test]
fn close_reason_must_be_utf8() {
    let mut body = 1000u16.to_be_bytes().to_vec();
    body.extend_from_slice(&[0xFF]);
    expect_failure(&from_client(8, true, &body), ProtocolError::InvalidUtf8);
}

#[test]
fn local_close_waits_for_reply_and_still_delivers() {
    let mut conn = server();
    conn.sender()
        .close(CloseCode::GoingAway, "shutdown")
        .unwrap();
    assert_eq!(conn.state(), State::Closing);
    assert_eq!(
        conn.sender().send(Message::Text("x")),
        Err(SendError::Usage(UsageError::AlreadyClosing))
    );
    assert_eq!(
        conn.sender().close(CloseCode::Normal, ""),
        Err(SendError::Usage(UsageError::AlreadyClosing))
    );
    let sent = output_frames(&mut conn);
    assert_eq!(sent[0].0, OpCode::Close);
    assert_eq!(&sent[0].1[2..], b"shutdown");
    conn.feed(&from_client(1, true, b"late message"));
    conn.feed(&from_client(8, true, &1001u16.to_be_bytes()));
    assert_eq!(event(&mut conn).unwrap(), Some(Event::Text("late message")));
    assert!(matches!(
        event(&mut conn).unwrap(),
        Some(Event::Close(Some(_)))
    ));
    assert_eq!(conn.state(), State::Closed);
    // The reply completes the handshake: nothing more is sent.
    assert!(conn.pending_output().is_empty());
}

#[test]
fn unsendable_close_codes_are_refused_locally() {
    let mut conn = server();
    for code in [1005u16, 1006, 1015, 1004, 2000, 999] {
        assert_eq!(
            conn.sender().close(CloseCode::from_u16(code), ""),
            Err(SendError::Usage(UsageError::UnsendableCloseCode(code)))
        );
    }
    assert_eq!(
        conn.sender().close(CloseCode::Normal, &"x".repeat(124)),
        Err(SendError::Usage(UsageError::CloseReasonTooLong))
    );
    assert_eq!(
        conn.sender().send_ping(&[0; 126]),
        Err(SendError::Usage(UsageError::ControlPayloadTooLong))
    );
    assert!(conn.pending_output().is_empty());
    assert_eq!(conn.state(), State::Open);
}

#[test]
fn frame_over_limit_fails_with_1009_from_the_header() {
    let mut config = Config::default();
    config.max_frame_size = 1000;
    let mut conn = Connection::new(Role::Server, config);
    // Only the header arrives: the limit is enforced before any payload.
    let input = from_client(2, true, &[0; 1001]);
    conn.feed(&input[..8]);
    assert!(matches!(
        event(&mut conn),
        Err(ConnectionError::Protocol(ProtocolError::FrameTooBig))
    ));
    assert_eq!(sent_close_code(&mut conn), Some(1009));
}

#[test]
fn endless_fragmented_message_fails_at_the_size_limit() {
    let mut config = Config::default();
    config.max_message_size = 10_000;
    let mut conn = Connection::new(Role::Server, config);
    conn.feed(&from_client(2, false, &[1; 1000]));
    let mut result = Ok(None);
    for _ in 0..20 {
        conn.feed(&from_client(0, false, &[1; 1000]));
        result = event(&mut conn).map(|e| e.map(Event::into_owned));
        if result.is_err() {
            break;
        }
    }
    assert!(matches!(
        result,
        Err(ConnectionError::Protocol(ProtocolError::MessageTooBig))
    ));
    assert!(conn.buffer_capacity() < 64 * 1024);
}

#[test]
fn too_many_fragments_fail_with_1009() {
    let mut config = Config::default();
    config.max_fragments = 100;
    let mut conn = Connection::new(Role::Server, config);
    conn.feed(&from_client(2, false, b""));
    for _ in 0..100 {
        conn.feed(&from_client(0, false, b""));
    }
    assert!(matches!(
        event(&mut conn),
        Err(ConnectionError::Protocol(ProtocolError::TooManyFragments))
    ));
}

#[test]
fn length_top_bit_and_non_minimal_lengths_fail() {
    expect_failure(
        &[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4],
        ProtocolError::LengthTopBit,
    );
    expect_failure(
        &[0x82, 0xFE, 0x00, 0x05, 1, 2, 3, 4, 0, 0, 0, 0, 0],
        ProtocolError::NonMinimalLength,
    );
}

#[test]
fn byte_at_a_time_input_gives_the_same_events() {
    let mut input = from_client(1, false, "κό".as_bytes());
    input.extend(from_client(9, true, b"ping"));
    input.extend(from_client(0, true, "σμε".as_bytes()));
    input.extend(from_client(2, true, &[9; 300]));
    input.extend(from_client(8, true, &1000u16.to_be_bytes()));
    let mut conn = server();
    let mut events = Vec::new();
    for byte in &input {
        conn.feed(std::slice::from_ref(byte));
        while let Some(e) = event(&mut conn).unwrap() {
            events.push(e.into_owned());
        }
    }
    assert_eq!(
        events,
        vec![
            OwnedEvent::Ping(b"ping".to_vec()),
            OwnedEvent::Text("κόσμε".into()),
            OwnedEvent::Binary(vec![9; 300]),
            OwnedEvent::Close(Some(
                chito::CloseFrame::new(CloseCode::Normal, "").into_owned()
            )),
        ]
    );
}

#[test]
fn read_buf_commit_read_avoids_the_copy() {
    let mut conn = server();
    let input = from_client(2, true, &[5; 10_000]);
    let mut at = 0;
    while at < input.len() {
        let buf = conn.read_buf();
        assert!(!buf.is_empty());
        let n = buf.len().min(input.len() - at);
        buf[..n].copy_from_slice(&input[at..at + n]);
        conn.commit_read(n);
        at += n;
    }
    assert_eq!(
        event(&mut conn).unwrap(),
        Some(Event::Binary(&[5; 10_000][..]))
    );
}

#[test]
fn client_frames_are_masked_with_fresh_keys() {
    let mut client = Connection::new(Role::Client, Config::default());
    client.sender().send(Message::Text("same")).unwrap();
    client.sender().send(Message::Text("same")).unwrap();
    let out = client.pending_output().to_vec();
    let (h1, n1) = FrameHeader::parse(&out).unwrap().unwrap();
    let (h2, _) = FrameHeader::parse(&out[n1 + 4..]).unwrap().unwrap();
    assert!(h1.mask.is_some() && h2.mask.is_some());
    assert_ne!(h1.mask, h2.mask);
}

#[test]
fn fragmented_sends_follow_section_5_4() {
    let mut server = server();
    let mut client = Connection::new(Role::Client, Config::default());
    client
        .sender()
        .send_fragment(MessageKind::Text, "ab".as_bytes(), false)
        .unwrap();
    assert_eq!(
        client.sender().send(Message::Text("x")),
        Err(SendError::Usage(UsageError::FragmentInProgress))
    );
    assert_eq!(
        client
            .sender()
            .send_fragment(MessageKind::Binary, b"x", true),
        Err(SendError::Usage(UsageError::FragmentInProgress))
    );
    client.sender().send_ping(b"between").unwrap();
    client
        .sender()
        .send_fragment(MessageKind::Text, "cd".as_bytes(), true)
        .unwrap();
    server.feed(client.pending_output());
    assert_eq!(
        event(&mut server).unwrap(),
        Some(Event::Ping(&b"between"[..]))
    );
    assert_eq!(event(&mut server).unwrap(), Some(Event::Text("abcd")));
}

#[test]
fn eof_before_close_is_an_error() {
    let mut conn = server();
    conn.handle_eof();
    match event(&mut conn) {
        Err(ConnectionError::EndOfStream) => {}
        other => panic!("{other:?}"),
    }
    assert!((conn.state() == State::Closed));
}

#[test]
fn keepalive_pings_then_times_out() {
    let mut config = Config::default();
    config.ping_interval = Some(Duration::from_secs(10));
    config.pong_timeout = Duration::from_secs(5);
    let mut conn = Connection::new(Role::Server, config);
    let t0 = Instant::now();
    assert_eq!(conn.poll_timeout(t0), Some(t0 + Duration::from_secs(10)));
    conn.handle_timeout(t0 + Duration::from_secs(10));
    assert_eq!(output_frames(&mut conn)[0].0, OpCode::Ping);
    assert_eq!(
        conn.poll_timeout(t0 + Duration::from_secs(10)),
        Some(t0 + Duration::from_secs(15))
    );
    conn.handle_timeout(t0 + Duration::from_secs(15));
    assert!(matches!(
        event(&mut conn),
        Err(ConnectionError::KeepaliveTimeout)
    ));
    assert!((conn.state() == State::Closed));
}

#[test]
fn keepalive_is_satisfied_by_any_input() {
    let mut config = Config::default();
    config.ping_interval = Some(Duration::from_secs(10));
    config.pong_timeout = Duration::from_secs(5);
    let mut conn = Connection::new(Role::Server, config);
    let t0 = Instant::now();
    conn.poll_timeout(t0);
    conn.handle_timeout(t0 + Duration::from_secs(10));
    conn.feed(&from_client(10, true, b"chito"));
    assert!(event(&mut conn).unwrap().is_some());
    let next = conn.poll_timeout(t0 + Duration::from_secs(12)).unwrap();
    assert_eq!(next, t0 + Duration::from_secs(22));
    conn.handle_timeout(t0 + Duration::from_secs(16));
    assert!(!(conn.state() == State::Closed));
}

#[test]
fn input_postpones_the_keepalive_ping() {
    let mut config = Config::default();
    config.ping_interval = Some(Duration::from_secs(10));
    let mut conn = Connection::new(Role::Server, config);
    let t0 = Instant::now();
    conn.poll_timeout(t0);
    conn.feed(&from_client(1, true, b"hi"));
    event(&mut conn).unwrap();
    assert_eq!(
        conn.poll_timeout(t0 + Duration::from_secs(6)),
        Some(t0 + Duration::from_secs(16))
    );
    conn.handle_timeout(t0 + Duration::from_secs(10));
    assert!(conn.pending_output().is_empty());
}

#[test]
fn close_handshake_times_out() {
    let mut config = Config::default();
    config.close_timeout = Duration::from_secs(3);
    let mut conn = Connection::new(Role::Client, config);
    let t0 = Instant::now();
    conn.sender().close(CloseCode::Normal, "").unwrap();
    assert_eq!(conn.poll_timeout(t0), Some(t0 + Duration::from_secs(3)));
    conn.handle_timeout(t0 + Duration::from_secs(2));
    assert!(!(conn.state() == State::Closed));
    conn.handle_timeout(t0 + Duration::from_secs(3));
    assert!((conn.state() == State::Closed));
    assert!(matches!(
        event(&mut conn),
        Err(ConnectionError::CloseTimeout)
    ));
}

#[test]
fn idle_timeout_sends_going_away() {
    let mut config = Config::default();
    config.idle_timeout = Some(Duration::from_secs(60));
    let mut conn = Connection::new(Role::Server, config);
    let t0 = Instant::now();
    assert_eq!(conn.poll_timeout(t0), Some(t0 + Duration::from_secs(60)));
    conn.handle_timeout(t0 + Duration::from_secs(60));
    assert_eq!(conn.state(), State::Closing);
    assert_eq!(sent_close_code(&mut conn), Some(1001));
}

#[test]
fn idle_buffers_are_released() {
    let mut conn = server();
    conn.feed(&from_client(2, true, &[1; 5000]));
    assert!(event(&mut conn).unwrap().is_some());
    conn.sender().send(Message::Binary(&[2; 5000])).unwrap();
    let n = conn.pending_output().len();
    conn.consume_output(n);
    assert!(conn.buffer_capacity() > 0);
    conn.release_idle_buffers();
    assert_eq!(conn.buffer_capacity(), 0);
    // And it keeps working.
    conn.feed(&from_client(1, true, b"again"));
    assert_eq!(event(&mut conn).unwrap(), Some(Event::Text("again")));
}

#[test]
fn leftover_handshake_bytes_are_not_lost() {
    let input = from_client(1, true, b"early");
    let mut conn =
        Connection::with_negotiated(Role::Server, Config::default(), Default::default(), &input);
    assert_eq!(event(&mut conn).unwrap(), Some(Event::Text("early")));
}

#[test]
fn large_frame_memory_follows_arrival_not_declaration() {
    // A header declaring 16 MiB followed by a trickle must not allocate 16 MiB.
    let mut conn = server();
    let input = from_client(2, true, &vec![0; 16 << 20]);
    conn.feed(&input[..14 + 100]);
    assert!(matches!(event(&mut conn), Ok(None)));
    let _ = conn.read_buf();
    assert!(
        conn.buffer_capacity() < 64 * 1024,
        "{}",
        conn.buffer_capacity()
    );
}
