//! Sans-IO tests of the session: every rule of docs/socketio.md §2–§3,
//! time stepped by hand.

use super::*;
use crate::engineio::packet::SharedPacket;
use std::time::Duration;

fn config() -> EngineConfig {
    EngineConfig {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        max_payload: 1_000_000,
        upgrade_timeout: Duration::from_millis(1000),
        allow_upgrades: true,
        ..EngineConfig::default()
    }
}

fn ms(start: Instant, millis: u64) -> Instant {
    start + Duration::from_millis(millis)
}

fn sid() -> Sid {
    Sid::from_bytes([7; 16])
}

fn polling(start: Instant) -> Session {
    let mut session = Session::open(sid(), TransportKind::Polling, &config(), start);
    match session.get_arrived(start) {
        GetAction::Respond(_) => {}
        other => panic!("handshake GET: {other:?}"),
    }
    session
}

fn body(action: GetAction) -> String {
    match action {
        GetAction::Respond(body) => String::from_utf8(body.to_vec()).unwrap(),
        other => panic!("expected a body, got {other:?}"),
    }
}

fn text(packet: Option<Outgoing>) -> String {
    match packet {
        Some(Outgoing::Text(text)) => text,
        other => panic!("expected a text packet, got {other:?}"),
    }
}

#[test]
fn open_packet_has_exactly_the_five_keys() {
    let start = Instant::now();
    let mut session = Session::open(sid(), TransportKind::Polling, &config(), start);
    let open = body(session.get_arrived(start));
    assert_eq!(
        open,
        format!(
            r#"0{{"sid":"{}","upgrades":["websocket"],"pingInterval":300,"pingTimeout":200,"maxPayload":1000000}}"#,
            sid()
        )
    );
    let mut ws = Session::open(sid(), TransportKind::WebSocket, &config(), start);
    assert!(text(ws.poll_transmit()).contains(r#""upgrades":[]"#));
    assert_eq!(ws.poll_transmit(), None);
}

#[test]
fn polling_echo_flow() {
    let start = Instant::now();
    let mut session = polling(start);
    assert_eq!(session.post_begin(), Ok(()));
    assert_eq!(session.post_body(b"4hello\x1ebAQIDBA==", start), Ok(()));
    assert_eq!(
        session.poll_event(),
        Some(EngineEvent::Text("hello".into()))
    );
    assert_eq!(
        session.poll_event(),
        Some(EngineEvent::Binary(Bytes::from_static(&[1, 2, 3, 4])))
    );
    assert_eq!(session.poll_event(), None);
    session.send_text("hello");
    session.send_binary(Bytes::from_static(&[1, 2, 3, 4]));
    assert_eq!(body(session.get_arrived(start)), "4hello\x1ebAQIDBA==");
}

#[test]
fn parked_get_gets_later_packets() {
    let start = Instant::now();
    let mut session = polling(start);
    assert_eq!(session.get_arrived(start), GetAction::Park);
    assert_eq!(session.take_poll_body(), None);
    session.send_text("a");
    session.send_text("b");
    assert_eq!(session.take_poll_body().as_deref(), Some(&b"4a\x1e4b"[..]));
    assert_eq!(session.take_poll_body(), None);
}

#[test]
fn heartbeat_over_polling() {
    let start = Instant::now();
    let mut session = polling(start);
    assert_eq!(session.poll_timeout(), Some(ms(start, 300)));
    assert_eq!(session.get_arrived(ms(start, 10)), GetAction::Park);
    session.handle_timeout(ms(start, 299));
    assert_eq!(session.take_poll_body(), None);
    session.handle_timeout(ms(start, 300));
    assert_eq!(session.take_poll_body().as_deref(), Some(&b"2"[..]));
    assert_eq!(session.poll_timeout(), Some(ms(start, 500)));
    // Any other packet is not a pong.
    session.post_begin().unwrap();
    session.post_body(b"4x", ms(start, 350)).unwrap();
    assert_eq!(session.poll_timeout(), Some(ms(start, 500)));
    session.post_begin().unwrap();
    session.post_body(b"3", ms(start, 400)).unwrap();
    assert_eq!(session.poll_timeout(), Some(ms(start, 700)));
    // No pong this time: closed at the deadline, GETs refused after.
    session.handle_timeout(ms(start, 700));
    session.handle_timeout(ms(start, 899));
    assert!(!session.is_closed());
    assert_eq!(
        session.get_arrived(ms(start, 900)),
        GetAction::Reject(RequestError::UnknownSid)
    );
    assert_eq!(session.close_reason(), Some(CloseReason::PingTimeout));
    assert_eq!(session.poll_timeout(), None);
}

#[test]
fn unsolicited_pong_does_not_delay_the_ping() {
    let start = Instant::now();
    let mut session = polling(start);
    session.post_begin().unwrap();
    session.post_body(b"3", ms(start, 250)).unwrap();
    assert_eq!(session.poll_timeout(), Some(ms(start, 300)));
}

#[test]
fn overlapping_get_closes_the_session() {
    let start = Instant::now();
    let mut session = polling(start);
    assert_eq!(session.get_arrived(start), GetAction::Park);
    assert_eq!(
        session.get_arrived(start),
        GetAction::Reject(RequestError::BadRequest)
    );
    assert_eq!(session.take_poll_body().as_deref(), Some(&b"1"[..]));
    assert_eq!(session.close_reason(), Some(CloseReason::TransportError));
    assert_eq!(
        session.get_arrived(start),
        GetAction::Reject(RequestError::UnknownSid)
    );
}

#[test]
fn abandoned_get_is_not_an_overlap() {
    let start = Instant::now();
    let mut session = polling(start);
    assert_eq!(session.get_arrived(start), GetAction::Park);
    session.get_abandoned();
    assert_eq!(session.get_arrived(start), GetAction::Park);
    assert!(!session.is_closed());
}

#[test]
fn overlapping_post_closes_the_session() {
    let start = Instant::now();
    let mut session = polling(start);
    session.post_begin().unwrap();
    assert_eq!(
        session.post_begin(),
        Err(PostError::Request(RequestError::BadRequest))
    );
    assert_eq!(session.close_reason(), Some(CloseReason::TransportError));
}

#[test]
fn bad_bodies_close_the_session() {
    let start = Instant::now();
    let mut session = polling(start);
    session.post_begin().unwrap();
    assert_eq!(session.post_body(b"abc", start), Err(PostError::BadPayload));
    assert_eq!(session.close_reason(), Some(CloseReason::ParseError));
    assert_eq!(
        session.poll_event(),
        Some(EngineEvent::Closed(CloseReason::ParseError))
    );
    assert_eq!(
        session.get_arrived(start),
        GetAction::Reject(RequestError::UnknownSid)
    );

    let mut session = polling(start);
    session.post_begin().unwrap();
    let big = vec![b'4'; 1_000_001];
    assert_eq!(session.post_body(&big, start), Err(PostError::TooLarge));
    assert_eq!(session.close_reason(), Some(CloseReason::TransportError));

    for bad in [&b"0"[..], b"5", b"2", b"4a\x1e", b"", b"7"] {
        let mut session = polling(start);
        session.post_begin().unwrap();
        let _ = session.post_body(bad, start);
        assert!(session.is_closed(), "{bad:?} left the session open");
    }
}

#[test]
fn client_close_answers_the_parked_get_with_noop() {
    let start = Instant::now();
    let mut session = polling(start);
    assert_eq!(session.get_arrived(start), GetAction::Park);
    session.post_begin().unwrap();
    assert_eq!(session.post_body(b"1", start), Ok(()));
    assert_eq!(session.take_poll_body().as_deref(), Some(&b"6"[..]));
    assert_eq!(
        session.poll_event(),
        Some(EngineEvent::Closed(CloseReason::TransportClose))
    );
    assert_eq!(session.poll_event(), None);
    assert_eq!(
        session.get_arrived(start),
        GetAction::Reject(RequestError::UnknownSid)
    );
    assert!(!session.send_text("late"));
}

#[test]
fn server_close_answers_the_parked_get_with_close() {
    let start = Instant::now();
    let mut session = polling(start);
    assert_eq!(session.get_arrived(start), GetAction::Park);
    session.close(CloseReason::ForcedClose);
    session.close(CloseReason::PingTimeout);
    assert_eq!(session.take_poll_body().as_deref(), Some(&b"1"[..]));
    assert_eq!(session.close_reason(), Some(CloseReason::ForcedClose));
    assert_eq!(
        session.poll_event(),
        Some(EngineEvent::Closed(CloseReason::ForcedClose))
    );
    assert_eq!(session.poll_event(), None);
}

#[test]
fn get_response_respects_max_payload() {
    let start = Instant::now();
    let mut cfg = config();
    cfg.max_payload = 10;
    let mut session = Session::open(sid(), TransportKind::Polling, &cfg, start);
    let _ = session.get_arrived(start);
    session.send_text("12345");
    session.send_text("12345");
    assert_eq!(body(session.get_arrived(start)), "412345");
    assert_eq!(body(session.get_arrived(start)), "412345");
}

#[test]
fn websocket_session() {
    let start = Instant::now();
    let mut session = Session::open(sid(), TransportKind::WebSocket, &config(), start);
    let _open = text(session.poll_transmit());
    session.recv_text("4hello", start);
    assert_eq!(
        session.poll_event(),
        Some(EngineEvent::Text("hello".into()))
    );
    session.recv_binary(Bytes::from_static(&[1, 2]));
    assert_eq!(
        session.poll_event(),
        Some(EngineEvent::Binary(Bytes::from_static(&[1, 2])))
    );
    session.send_text("hello");
    assert_eq!(text(session.poll_transmit()), "4hello");
    // Heartbeat on WebSocket.
    session.handle_timeout(ms(start, 300));
    assert_eq!(text(session.poll_transmit()), "2");
    session.recv_text("3", ms(start, 310));
    assert_eq!(session.poll_timeout(), Some(ms(start, 610)));
    // Polling requests for a WebSocket-only session are bad requests.
    assert_eq!(
        session.get_arrived(ms(start, 320)),
        GetAction::Reject(RequestError::BadRequest)
    );
    assert_eq!(
        session.begin_upgrade(start),
        Err(UpgradeRefusal::AlreadyUpgraded)
    );
    session.recv_text("abc", start);
    assert_eq!(session.close_reason(), Some(CloseReason::ParseError));
}

#[test]
fn websocket_ping_timeout_and_close() {
    let start = Instant::now();
    let mut session = Session::open(sid(), TransportKind::WebSocket, &config(), start);
    session.handle_timeout(ms(start, 300));
    session.handle_timeout(ms(start, 500));
    assert_eq!(session.close_reason(), Some(CloseReason::PingTimeout));

    let mut session = Session::open(sid(), TransportKind::WebSocket, &config(), start);
    session.recv_text("1", start);
    assert_eq!(session.close_reason(), Some(CloseReason::TransportClose));
}

#[test]
fn upgrade_with_probe() {
    let start = Instant::now();
    let mut session = polling(start);
    assert_eq!(session.get_arrived(start), GetAction::Park);
    session.send_text("queued");
    assert_eq!(session.take_poll_body().as_deref(), Some(&b"4queued"[..]));
    assert_eq!(session.get_arrived(start), GetAction::Park);
    assert_eq!(session.begin_upgrade(start), Ok(()));
    assert_eq!(session.probe_status(), ProbeStatus::Probing);
    assert_eq!(
        session.begin_upgrade(start),
        Err(UpgradeRefusal::AlreadyUpgraded)
    );
    // Polling goes on meanwhile.
    session.send_text("during");
    session.recv_probe_text("2probe", start);
    assert_eq!(text(session.poll_probe_transmit()), "3probe");
    // The parked GET gets a noop within 100 ms (the reference server's
    // check), or is refused if the upgrade completes first (below).
    assert_eq!(session.take_poll_body(), None);
    session.handle_timeout(ms(start, 100));
    assert_eq!(session.take_poll_body().as_deref(), Some(&b"6"[..]));
    // A GET after the probe waits up to 100 ms for the upgrade, then gets
    // a noop.
    assert_eq!(session.get_arrived(ms(start, 100)), GetAction::Park);
    assert_eq!(session.take_poll_body(), None);
    assert_eq!(session.poll_timeout(), Some(ms(start, 200)));
    session.handle_timeout(ms(start, 200));
    assert_eq!(session.take_poll_body().as_deref(), Some(&b"6"[..]));
    // One racing the client's `5` (on another connection) was a request
    // after the upgrade: refused as one.
    assert_eq!(session.get_arrived(ms(start, 200)), GetAction::Park);
    session.recv_probe_text("5", start);
    assert_eq!(session.take_poll_body(), None);
    assert_eq!(session.take_poll_refusal(), Some(RequestError::UnknownSid));
    assert_eq!(session.take_poll_refusal(), None);
    assert_eq!(session.probe_status(), ProbeStatus::Completed);
    assert_eq!(session.transport(), TransportKind::WebSocket);
    assert_eq!(session.poll_event(), Some(EngineEvent::Upgraded));
    // What was queued for polling comes first on the WebSocket.
    assert_eq!(text(session.poll_transmit()), "4during");
    session.recv_text("4hello", start);
    assert_eq!(
        session.poll_event(),
        Some(EngineEvent::Text("hello".into()))
    );
    assert_eq!(
        session.get_arrived(start),
        GetAction::Reject(RequestError::UnknownSid)
    );
    assert_eq!(
        session.post_begin(),
        Err(PostError::Request(RequestError::UnknownSid))
    );
    assert_eq!(
        session.begin_upgrade(start),
        Err(UpgradeRefusal::AlreadyUpgraded)
    );
}

#[test]
fn upgrade_without_waiting_for_the_probe_answer() {
    let start = Instant::now();
    let mut session = polling(start);
    session.begin_upgrade(start).unwrap();
    session.recv_probe_text("2probe", start);
    session.recv_probe_text("5", start);
    assert_eq!(session.probe_status(), ProbeStatus::Completed);
    assert_eq!(text(session.poll_transmit()), "3probe");
}

#[test]
fn upgrade_failures_leave_the_session_on_polling() {
    let start = Instant::now();
    for failure in 0..4 {
        let mut session = polling(start);
        session.begin_upgrade(start).unwrap();
        match failure {
            0 => session.recv_probe_text("4hello", start),
            1 => session.recv_probe_binary(),
            2 => session.probe_closed(),
            _ => {
                // Heartbeats answered on polling meanwhile.
                for at in [300, 600, 900] {
                    assert_eq!(session.poll_timeout(), Some(ms(start, at)));
                    session.handle_timeout(ms(start, at));
                    session.post_begin().unwrap();
                    session.post_body(b"3", ms(start, at)).unwrap();
                }
                assert_eq!(session.poll_timeout(), Some(ms(start, 1000)));
                session.handle_timeout(ms(start, 1000));
            }
        }
        assert_eq!(
            session.probe_status(),
            ProbeStatus::Failed,
            "failure {failure}"
        );
        assert!(!session.is_closed());
        assert_eq!(session.transport(), TransportKind::Polling);
        // A new upgrade may be tried.
        assert_eq!(session.begin_upgrade(start), Ok(()));
    }
}

#[test]
fn closing_during_the_probe_fails_it() {
    let start = Instant::now();
    let mut session = polling(start);
    session.begin_upgrade(start).unwrap();
    session.close(CloseReason::ServerShutdown);
    assert_eq!(session.probe_status(), ProbeStatus::Failed);
    assert_eq!(
        session.begin_upgrade(start),
        Err(UpgradeRefusal::SessionClosed)
    );
}

#[test]
fn upgrades_can_be_disabled() {
    let start = Instant::now();
    let mut cfg = config();
    cfg.allow_upgrades = false;
    let mut session = Session::open(sid(), TransportKind::Polling, &cfg, start);
    assert!(body(session.get_arrived(start)).contains(r#""upgrades":[]"#));
    assert_eq!(
        session.begin_upgrade(start),
        Err(UpgradeRefusal::NotAllowed)
    );
}

#[test]
fn every_prefix_and_bit_flip_of_a_body_never_panics() {
    let start = Instant::now();
    let body: &[u8] = b"4hello\x1ebAQIDBA==\x1e3\x1e6\x1e1";
    for end in 0..=body.len() {
        let mut session = polling(start);
        session.post_begin().unwrap();
        let _ = session.post_body(&body[..end], start);
        while session.poll_event().is_some() {}
    }
    for index in 0..body.len() {
        for bit in 0..8 {
            let mut flipped = body.to_vec();
            flipped[index] ^= 1 << bit;
            let mut session = polling(start);
            session.post_begin().unwrap();
            let _ = session.post_body(&flipped, start);
            let _ = session.get_arrived(start);
            let mut session = Session::open(sid(), TransportKind::WebSocket, &config(), start);
            if let Ok(text) = std::str::from_utf8(&flipped) {
                session.recv_text(text, start);
            }
        }
    }
}

#[test]
fn close_reasons_have_the_reference_texts() {
    assert_eq!(CloseReason::PingTimeout.as_str(), "ping timeout");
    assert_eq!(CloseReason::TransportClose.as_str(), "transport close");
    assert_eq!(CloseReason::ParseError.as_str(), "parse error");
}

#[test]
fn a_late_timer_keeps_the_clients_deadline() {
    // The timer never ran: a GET at pingInterval + pingTimeout finds the
    // session closed, as if the ping had gone out on time.
    let start = Instant::now();
    let mut session = polling(start);
    assert_eq!(
        session.get_arrived(ms(start, 500)),
        GetAction::Reject(RequestError::UnknownSid)
    );
    assert_eq!(session.close_reason(), Some(CloseReason::PingTimeout));
    // Just before it, the GET gets the ping.
    let mut session = polling(start);
    assert_eq!(body(session.get_arrived(ms(start, 499))), "2");
}

#[test]
fn a_get_racing_the_clients_close_gets_noop_once() {
    let start = Instant::now();
    let mut session = polling(start);
    session.post_begin().unwrap();
    session.post_body(b"1", start).unwrap();
    assert!(session.is_closed());
    assert!(!session.is_finished());
    assert_eq!(session.poll_timeout(), Some(ms(start, 1000)));
    assert_eq!(body(session.get_arrived(ms(start, 5))), "6");
    assert!(session.is_finished());
    assert_eq!(
        session.get_arrived(ms(start, 6)),
        GetAction::Reject(RequestError::UnknownSid)
    );
    // Unclaimed, the grace ends by itself.
    let mut session = polling(start);
    session.post_begin().unwrap();
    session.post_body(b"1", start).unwrap();
    session.handle_timeout(ms(start, 1000));
    assert!(session.is_finished());
    assert_eq!(session.poll_timeout(), None);
    // A server-side close finishes at once.
    let mut session = polling(start);
    session.close(CloseReason::ForcedClose);
    assert!(session.is_finished());
}

// ------------------------------------------------- max_queued_bytes (§9)

fn bounded(max_queued_bytes: usize, queue_overflow: QueueOverflow) -> EngineConfig {
    EngineConfig {
        max_queued_bytes,
        queue_overflow,
        ..config()
    }
}

#[test]
fn a_full_polling_queue_rejects_the_message_and_the_session_goes_on() {
    let start = Instant::now();
    let cfg = bounded(10, QueueOverflow::Reject);
    let mut session = Session::open(sid(), TransportKind::Polling, &cfg, start);
    body(session.get_arrived(start));
    assert_eq!(session.queued_bytes(), 0);
    assert_eq!(session.try_send(Outgoing::message("hello")), Ok(()));
    assert_eq!(session.queued_bytes(), 6);
    assert_eq!(
        session.try_send(Outgoing::message("world")),
        Err(SendError::Full)
    );
    assert!(!session.send_text("again"));
    assert!(!session.is_closed());
    // Binary counts in its polling form: `b` + base64 (4 bytes → 9).
    assert_eq!(
        session.try_send(Outgoing::Binary(Bytes::from_static(&[1, 2, 3, 4]))),
        Err(SendError::Full)
    );
    // The ping is not refused by a full queue: a slow client is not
    // mistaken for a dead one.
    session.handle_timeout(ms(start, 300));
    assert_eq!(body(session.get_arrived(ms(start, 301))), "4hello\x1e2");
    assert_eq!(session.queued_bytes(), 0);
    assert_eq!(session.try_send(Outgoing::message("world")), Ok(()));
    assert_eq!(
        session.try_send(Outgoing::Binary(Bytes::from_static(&[1, 2, 3]))),
        Err(SendError::Full)
    );
}

#[test]
fn one_message_larger_than_the_bound_goes_into_an_empty_queue() {
    let start = Instant::now();
    let mut session = polling_with(bounded(4, QueueOverflow::Reject), start);
    let big = "x".repeat(100);
    assert_eq!(session.try_send(Outgoing::message(&big)), Ok(()));
    assert_eq!(session.queued_bytes(), 101);
    assert_eq!(
        session.try_send(Outgoing::message("y")),
        Err(SendError::Full)
    );
    assert_eq!(body(session.get_arrived(start)), format!("4{big}"));
    assert_eq!(session.queued_bytes(), 0);
}

fn polling_with(cfg: EngineConfig, start: Instant) -> Session {
    let mut session = Session::open(sid(), TransportKind::Polling, &cfg, start);
    body(session.get_arrived(start));
    session
}

#[test]
fn close_session_policy_closes_a_polling_slow_consumer_and_answers_its_get() {
    let start = Instant::now();
    let mut session = polling_with(bounded(10, QueueOverflow::CloseSession), start);
    assert_eq!(session.try_send(Outgoing::message("hello")), Ok(()));
    assert_eq!(
        session.try_send(Outgoing::message("world")),
        Err(SendError::ClosedSlowConsumer)
    );
    assert_eq!(session.close_reason(), Some(CloseReason::TransportError));
    assert!(session.closed_as_slow_consumer());
    assert_eq!(session.queued_bytes(), 0);
    assert_eq!(
        session.try_send(Outgoing::message("x")),
        Err(SendError::Closed)
    );
    assert_eq!(
        session.poll_event(),
        Some(EngineEvent::Closed(CloseReason::TransportError))
    );
    assert_eq!(
        session.get_arrived(start),
        GetAction::Reject(RequestError::UnknownSid)
    );
}

#[test]
fn close_session_policy_answers_a_parked_get_with_close() {
    let start = Instant::now();
    let mut session = polling_with(bounded(10, QueueOverflow::CloseSession), start);
    assert_eq!(session.get_arrived(start), GetAction::Park);
    // Parked: the queue empties into the GET as soon as it is taken.
    assert_eq!(session.try_send(Outgoing::message("hello")), Ok(()));
    assert_eq!(
        session.try_send(Outgoing::message("world")),
        Err(SendError::ClosedSlowConsumer)
    );
    assert_eq!(session.take_poll_body().as_deref(), Some(&b"1"[..]));
}

#[test]
fn a_websocket_queue_counts_raw_bytes_and_drains_with_poll_transmit() {
    let start = Instant::now();
    let cfg = bounded(8, QueueOverflow::CloseSession);
    let mut session = Session::open(sid(), TransportKind::WebSocket, &cfg, start);
    assert!(text(session.poll_transmit()).starts_with("0{"));
    assert_eq!(session.queued_bytes(), 0);
    // Raw on WebSocket: 6 bytes of binary count 6, not base64's 9.
    assert_eq!(
        session.try_send(Outgoing::Binary(Bytes::from_static(&[0; 6]))),
        Ok(())
    );
    assert_eq!(session.queued_bytes(), 6);
    assert_eq!(session.try_send(Outgoing::message("a")), Ok(()));
    assert_eq!(session.queued_bytes(), 8);
    assert!(session.poll_transmit().is_some());
    assert_eq!(session.queued_bytes(), 2);
    assert_eq!(session.try_send(Outgoing::message("bcdef")), Ok(()));
    assert_eq!(
        session.try_send(Outgoing::message("g")),
        Err(SendError::ClosedSlowConsumer)
    );
    assert!(session.closed_as_slow_consumer());
    // What was queued is dropped: the client reconnects rather than
    // getting the stream with a gap.
    assert_eq!(session.poll_transmit(), None);
    assert_eq!(session.queued_bytes(), 0);
}

#[test]
fn the_upgrade_moves_the_polling_queue_and_its_count() {
    let start = Instant::now();
    let mut session = polling_with(bounded(1 << 20, QueueOverflow::Reject), start);
    assert!(session.send(Outgoing::Binary(Bytes::from_static(&[1, 2, 3]))));
    assert_eq!(session.queued_bytes(), 5);
    session.begin_upgrade(start).unwrap();
    session.recv_probe_text("2probe", start);
    session.recv_probe_text("5", start);
    assert_eq!(session.transport(), TransportKind::WebSocket);
    // `3probe` (6) and the binary message raw (3).
    assert_eq!(session.queued_bytes(), 9);
    while session.poll_transmit().is_some() {}
    assert_eq!(session.queued_bytes(), 0);
}

// ------------------------------------------ WebSocket write pacing (§3)

#[test]
fn one_websocket_write_in_flight_and_what_comes_meanwhile_waits_for_the_next() {
    let start = Instant::now();
    let mut session = Session::open(sid(), TransportKind::WebSocket, &config(), start);
    // The open packet goes in a write of its own.
    assert!(session.begin_websocket_write());
    assert!(text(session.poll_transmit()).starts_with("0{"));
    assert_eq!(session.poll_transmit(), None);
    // While it is in flight (engine.io: the transport is not writable),
    // packets queue and no second write starts.
    assert!(session.send_text("connect-answer"));
    assert!(!session.begin_websocket_write());
    assert!(session.websocket_writing());
    session.websocket_write_done();
    assert!(session.begin_websocket_write());
    assert_eq!(text(session.poll_transmit()), "4connect-answer");
    assert_eq!(session.poll_transmit(), None);
    assert!(session.send_text("first-emit"));
    assert!(session.send_text("second-emit"));
    assert!(!session.begin_websocket_write());
    session.websocket_write_done();
    // What piled up goes as one write.
    assert!(session.begin_websocket_write());
    assert_eq!(text(session.poll_transmit()), "4first-emit");
    assert_eq!(text(session.poll_transmit()), "4second-emit");
    assert_eq!(session.poll_transmit(), None);
    session.websocket_write_done();
    // Nothing queued: nothing to write.
    assert!(!session.begin_websocket_write());
}

#[test]
fn a_write_in_flight_counts_against_the_bound_until_it_completes() {
    let start = Instant::now();
    let cfg = bounded(11, QueueOverflow::Reject);
    let mut session = Session::open(sid(), TransportKind::WebSocket, &cfg, start);
    while session.poll_transmit().is_some() {}
    assert_eq!(session.try_send(Outgoing::message("12345678")), Ok(()));
    assert!(session.begin_websocket_write());
    assert!(session.poll_transmit().is_some());
    // Taken but not written: still 9 bytes.
    assert_eq!(session.queued_bytes(), 9);
    assert_eq!(
        session.try_send(Outgoing::message("ab")),
        Err(SendError::Full)
    );
    // The transport could not take it: requeued first, still counted.
    let again = Outgoing::message("x");
    assert_eq!(session.try_send(again.clone()), Ok(()));
    assert_eq!(session.queued_bytes(), 11);
    assert_eq!(session.poll_transmit(), Some(again.clone()));
    session.requeue_front(again.clone());
    assert_eq!(session.queued_bytes(), 11);
    session.websocket_write_done();
    assert_eq!(session.queued_bytes(), 2);
    assert!(session.begin_websocket_write());
    assert_eq!(session.poll_transmit(), Some(again));
    session.websocket_write_done();
    assert_eq!(session.queued_bytes(), 0);
}

#[test]
fn try_send_all_queues_all_or_none_against_the_bound() {
    let start = Instant::now();
    let mut session = polling_with(bounded(10, QueueOverflow::Reject), start);
    let attachment = Outgoing::Binary(Bytes::from_static(&[1, 2, 3])); // b + 4: 5
    let packet = [Outgoing::message("abc"), attachment.clone()]; // 4 + 5
    assert_eq!(session.try_send_all(&packet), Ok(()));
    assert_eq!(session.queued_bytes(), 9);
    // 9 + 9 > 10: neither part is queued.
    assert_eq!(session.try_send_all(&packet), Err(SendError::Full));
    assert_eq!(session.queued_bytes(), 9);
    assert_eq!(body(session.get_arrived(start)), "4abc\u{1e}bAQID");
}

#[test]
fn shared_packets_reach_a_thousand_polling_sessions_byte_exact_base64_built_once() {
    let start = Instant::now();
    let text = SharedPacket::text(r#"451-["file",{"_placeholder":true,"num":0}]"#.to_owned());
    let data: Vec<u8> = (0..=255).collect();
    let attachment = SharedPacket::binary(&data);
    let packets = [
        Outgoing::Shared(text.clone()),
        Outgoing::Shared(attachment.clone()),
    ];
    use base64::Engine as _;
    let expected = format!(
        "451-[\"file\",{{\"_placeholder\":true,\"num\":0}}]\u{1e}b{}",
        base64::engine::general_purpose::STANDARD.encode(&data)
    );
    for _ in 0..1_000 {
        let mut session = polling(start);
        assert_eq!(session.try_send_all(&packets), Ok(()));
        // Counted in the polling form: the text, `b` + base64.
        assert_eq!(session.queued_bytes(), expected.len() - 1);
        assert_eq!(body(session.get_arrived(start)), expected);
        assert_eq!(session.queued_bytes(), 0);
    }
    assert_eq!(attachment.polling_builds(), 1);
    assert_eq!(text.polling_builds(), 0, "text is its own polling form");
    // Nothing on the WebSocket side was framed by the polling sessions.
    assert_eq!(attachment.message().encodings(), 0);
}

#[test]
fn a_packet_sent_apart_ends_its_write_and_asks_for_a_pause() {
    let start = Instant::now();
    let mut session = Session::open(sid(), TransportKind::WebSocket, &config(), start);
    while session.poll_transmit().is_some() {}
    assert!(session.send_text("before"));
    assert_eq!(session.try_send_apart(Outgoing::message("connect")), Ok(()));
    assert!(session.send_text("first-emit"));
    assert!(session.send_text("second-emit"));
    assert!(session.begin_websocket_write());
    assert_eq!(text(session.poll_transmit()), "4before");
    assert_eq!(text(session.poll_transmit()), "4connect");
    // The write ends there.
    assert_eq!(session.poll_transmit(), None);
    assert!(session.websocket_pause_after_write());
    session.websocket_write_done();
    assert!(!session.websocket_pause_after_write());
    assert!(session.begin_websocket_write());
    assert_eq!(text(session.poll_transmit()), "4first-emit");
    assert_eq!(text(session.poll_transmit()), "4second-emit");
    assert!(!session.websocket_pause_after_write());
    session.websocket_write_done();
}

#[test]
fn a_packet_sent_apart_and_requeued_still_ends_the_next_write() {
    let start = Instant::now();
    let mut session = Session::open(sid(), TransportKind::WebSocket, &config(), start);
    while session.poll_transmit().is_some() {}
    assert_eq!(session.try_send_apart(Outgoing::message("connect")), Ok(()));
    assert!(session.send_text("emit"));
    assert!(session.begin_websocket_write());
    let connect = session.poll_transmit().expect("queued");
    // The transport could not take it now.
    session.requeue_front(connect);
    assert!(!session.websocket_pause_after_write());
    session.websocket_write_done();
    assert!(session.begin_websocket_write());
    assert_eq!(text(session.poll_transmit()), "4connect");
    assert_eq!(session.poll_transmit(), None);
    assert!(session.websocket_pause_after_write());
}
