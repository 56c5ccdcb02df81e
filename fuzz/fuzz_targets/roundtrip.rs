//! Client and server `Connection`s talking to each other (structured with
//! `arbitrary`): every message, ping and pong sent — whole or in arbitrary
//! fragments with pings between them, text split even inside a character —
//! arrives unchanged and in order at the other end, in both directions,
//! whatever the chunking of the wire bytes and the permessage-deflate
//! parameters (the same on both sides, or none). Pings are answered with
//! equal pongs; a final close completes the closing handshake on both
//! sides, after which nothing more is delivered. Each side's output is
//! also checked frame by frame (`OutputChecker`).
#![no_main]

use std::collections::VecDeque;

use arbitrary::Arbitrary;
use chito::close::MAX_CLOSE_REASON;
use chito::frame::MAX_CONTROL_PAYLOAD;
use chito::handshake::Negotiated;
use chito::{
    CloseCode, CloseFrame, Config, Connection, Message, MessageKind, OwnedEvent, Role, SendError,
    State, UsageError,
};
use chito_fuzz::{FuzzDeflateParams, OutputChecker};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Kind {
    Text(String),
    Binary(Vec<u8>),
    /// A message in fragments of the given sizes (the rest in the last
    /// one), with a ping after the fragments marked `true`.
    Fragmented {
        text: bool,
        data: String,
        binary: Vec<u8>,
        cuts: Vec<(u8, bool)>,
    },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
struct Op {
    from_client: bool,
    kind: Kind,
}

#[derive(Debug, Arbitrary)]
struct Scenario {
    deflate: Option<FuzzDeflateParams>,
    level: u8,
    threshold: u8,
    /// Wire chunk sizes (cycled), client → server and back.
    chunks_up: Vec<u8>,
    chunks_down: Vec<u8>,
    ops: Vec<Op>,
    close: Option<(bool, u16, String)>,
}

struct Side {
    conn: Connection,
    checker: OutputChecker,
    expected: VecDeque<OwnedEvent>,
    name: &'static str,
}

fn config(s: &Scenario) -> Config {
    let mut config = Config::default();
    if let Some(settings) = config.deflate.as_mut() {
        settings.compression_level = (s.level % 10) as u32;
        settings.threshold = s.threshold as usize;
    }
    config
}

/// Moves everything `from` has queued into `to`, in chunks, checking
/// `to`'s events against what it expects. Returns whether bytes moved.
fn transfer(from: &mut Side, to: &mut Side, chunks: &[u8]) -> bool {
    let out = from.conn.pending_output().to_vec();
    from.conn.consume_output(out.len());
    from.checker.check(&out);
    let mut rest = &out[..];
    let mut i = 0;
    while !rest.is_empty() {
        let size = chunks
            .get(i % chunks.len().max(1))
            .map_or(rest.len(), |&c| c as usize + 1);
        i += 1;
        let (piece, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        to.conn.feed(piece);
        loop {
            match to.conn.poll_event() {
                Ok(Some((event, _))) => {
                    let event = event.into_owned();
                    let want = to.expected.pop_front();
                    assert_eq!(
                        Some(&event),
                        want.as_ref(),
                        "{} received the wrong event",
                        to.name
                    );
                }
                Ok(None) => break,
                Err(e) => panic!("{} failed: {e}", to.name),
            }
        }
    }
    !out.is_empty()
}

fn settle(client: &mut Side, server: &mut Side, s: &Scenario) {
    for _ in 0..8 {
        let up = transfer(client, server, &s.chunks_up);
        let down = transfer(server, client, &s.chunks_down);
        if !up && !down {
            break;
        }
    }
    assert!(client.conn.pending_output().is_empty() && server.conn.pending_output().is_empty());
    assert!(
        client.expected.is_empty(),
        "client still expects {:?}",
        client.expected
    );
    assert!(
        server.expected.is_empty(),
        "server still expects {:?}",
        server.expected
    );
}

fn control_payload(bytes: &[u8]) -> Vec<u8> {
    bytes[..bytes.len().min(MAX_CONTROL_PAYLOAD)].to_vec()
}

fn send(op: &Op, sender: &mut Side, receiver: &mut Side) {
    let conn = &mut sender.conn;
    match &op.kind {
        Kind::Text(text) => {
            conn.sender().send(Message::Text(text)).unwrap();
            receiver.expected.push_back(OwnedEvent::Text(text.clone()));
        }
        Kind::Binary(data) => {
            conn.sender().send(Message::Binary(data)).unwrap();
            receiver
                .expected
                .push_back(OwnedEvent::Binary(data.clone()));
        }
        Kind::Ping(payload) => {
            let payload = control_payload(payload);
            conn.sender().send_ping(&payload).unwrap();
            receiver
                .expected
                .push_back(OwnedEvent::Ping(payload.clone()));
            // auto_pong (on by default) answers it.
            sender.expected.push_back(OwnedEvent::Pong(payload));
        }
        Kind::Pong(payload) => {
            let payload = control_payload(payload);
            conn.sender().send_pong(&payload).unwrap();
            receiver.expected.push_back(OwnedEvent::Pong(payload));
        }
        Kind::Fragmented {
            text,
            data,
            binary,
            cuts,
        } => {
            let (kind, bytes) = if *text {
                (MessageKind::Text, data.as_bytes())
            } else {
                (MessageKind::Binary, &binary[..])
            };
            let mut rest = bytes;
            let mut pongs = Vec::new();
            for (k, &(cut, ping)) in cuts.iter().enumerate().take(64) {
                let (piece, tail) = rest.split_at((cut as usize).min(rest.len()));
                rest = tail;
                conn.sender().send_fragment(kind, piece, false).unwrap();
                // Another message cannot start inside this one.
                assert_eq!(
                    conn.sender().send(Message::Text("x")),
                    Err(SendError::Usage(UsageError::FragmentInProgress))
                );
                if ping {
                    let payload = vec![k as u8; k % 4];
                    conn.sender().send_ping(&payload).unwrap();
                    receiver
                        .expected
                        .push_back(OwnedEvent::Ping(payload.clone()));
                    pongs.push(OwnedEvent::Pong(payload));
                }
            }
            conn.sender().send_fragment(kind, rest, true).unwrap();
            // Pings between fragments are delivered before the message.
            receiver.expected.push_back(if *text {
                OwnedEvent::Text(data.clone())
            } else {
                OwnedEvent::Binary(binary.clone())
            });
            sender.expected.extend(pongs);
        }
    }
}

fuzz_target!(|s: Scenario| {
    let config = config(&s);
    let mut negotiated = Negotiated::default();
    negotiated.deflate = s.deflate.map(|p| p.0);
    let compression = negotiated.deflate.is_some();
    let side = |role, name| Side {
        conn: Connection::with_negotiated(role, config.clone(), negotiated.clone(), &[]),
        checker: OutputChecker::new(role, compression),
        expected: VecDeque::new(),
        name,
    };
    let mut client = side(Role::Client, "client");
    let mut server = side(Role::Server, "server");

    for op in &s.ops {
        if op.from_client {
            send(op, &mut client, &mut server);
        } else {
            send(op, &mut server, &mut client);
        }
        settle(&mut client, &mut server, &s);
        assert_eq!(client.conn.state(), State::Open);
        assert_eq!(server.conn.state(), State::Open);
    }

    if let Some((by_client, code, reason)) = &s.close {
        let mut end = reason.len().min(MAX_CLOSE_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let reason = &reason[..end];
        let (closer, peer) = if *by_client {
            (&mut client, &mut server)
        } else {
            (&mut server, &mut client)
        };
        let mut code = CloseCode::from_u16(*code);
        if !code.is_sendable() {
            assert_eq!(
                closer.conn.sender().close(code, reason),
                Err(SendError::Usage(UsageError::UnsendableCloseCode(
                    code.as_u16()
                )))
            );
            assert_eq!(closer.conn.state(), State::Open);
            code = CloseCode::Normal;
        }
        closer.conn.sender().close(code, reason).unwrap();
        assert_eq!(closer.conn.state(), State::Closing);
        assert!(closer.conn.sender().send(Message::Text("late")).is_err());
        peer.expected.push_back(OwnedEvent::Close(Some(
            CloseFrame::new(code, reason).into_owned(),
        )));
        closer.expected.push_back(OwnedEvent::Close(Some(
            CloseFrame::new(code, "").into_owned(),
        )));
        settle(&mut client, &mut server, &s);
        for side in [&mut client, &mut server] {
            assert_eq!(side.conn.state(), State::Closed, "{} not closed", side.name);
            assert!(side.checker.closed, "{} sent no close frame", side.name);
            assert!(matches!(side.conn.poll_event(), Ok(None)));
            assert!(side.conn.sender().send_ping(b"").is_err());
        }
    }
});
