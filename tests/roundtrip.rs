//! Property: any sequence of messages, fragmented at any sizes and fed in
//! any chunking, arrives client → server (and server → client) unchanged.

use chito::{Config, Connection, Event, MessageKind, OwnedEvent, Role};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Msg {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
}

fn msg() -> impl Strategy<Value = Msg> {
    prop_oneof![
        "\\PC{0,300}".prop_map(Msg::Text),
        proptest::collection::vec(any::<u8>(), 0..3000).prop_map(Msg::Binary),
        proptest::collection::vec(any::<u8>(), 0..126).prop_map(Msg::Ping),
    ]
}

/// Sends `msgs` from `tx`, splitting each data message into fragments of
/// the sizes in `frag` (cycled), and returns what `rx` delivers when the
/// bytes are fed in chunks of the sizes in `chunks` (cycled).
fn transfer(
    tx: &mut Connection,
    rx: &mut Connection,
    msgs: &[Msg],
    frag: &[usize],
    chunks: &[usize],
) -> Vec<OwnedEvent> {
    let mut sizes = frag.iter().cycle();
    for m in msgs {
        let (kind, bytes) = match m {
            Msg::Text(t) => (MessageKind::Text, t.as_bytes()),
            Msg::Binary(b) => (MessageKind::Binary, b.as_slice()),
            Msg::Ping(p) => {
                tx.sender().send_ping(p).unwrap();
                continue;
            }
        };
        let mut rest = bytes;
        loop {
            let size = (*sizes.next().unwrap()).max(1);
            if rest.len() <= size {
                tx.sender().send_fragment(kind, rest, true).unwrap();
                break;
            }
            let (now, later) = rest.split_at(size);
            tx.sender().send_fragment(kind, now, false).unwrap();
            rest = later;
        }
    }
    let wire = tx.pending_output().to_vec();
    tx.consume_output(wire.len());
    let mut events = Vec::new();
    let mut sizes = chunks.iter().cycle();
    let mut at = 0;
    while at < wire.len() {
        let n = (*sizes.next().unwrap()).max(1).min(wire.len() - at);
        rx.feed(&wire[at..at + n]);
        at += n;
        while let Some((e, _)) = rx.poll_event().unwrap() {
            events.push(e.into_owned());
        }
    }
    events
}

fn expected(msgs: &[Msg]) -> Vec<OwnedEvent> {
    msgs.iter()
        .map(|m| match m {
            Msg::Text(t) => OwnedEvent::Text(t.clone()),
            Msg::Binary(b) => OwnedEvent::Binary(b.clone()),
            Msg::Ping(p) => OwnedEvent::Ping(p.clone()),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn client_to_server(
        msgs in proptest::collection::vec(msg(), 0..12),
        frag in proptest::collection::vec(1usize..500, 1..5),
        chunks in proptest::collection::vec(1usize..700, 1..5),
    ) {
        let mut client = Connection::new(Role::Client, Config::default());
        let mut server = Connection::new(Role::Server, Config::default());
        prop_assert_eq!(transfer(&mut client, &mut server, &msgs, &frag, &chunks), expected(&msgs));
    }

    #[test]
    fn server_to_client(
        msgs in proptest::collection::vec(msg(), 0..12),
        frag in proptest::collection::vec(1usize..500, 1..5),
        chunks in proptest::collection::vec(1usize..700, 1..5),
    ) {
        let mut client = Connection::new(Role::Client, Config::default());
        let mut server = Connection::new(Role::Server, Config::default());
        prop_assert_eq!(transfer(&mut server, &mut client, &msgs, &frag, &chunks), expected(&msgs));
    }
}

#[test]
fn pings_are_answered_across_the_pair() {
    let mut client = Connection::new(Role::Client, Config::default());
    let mut server = Connection::new(Role::Server, Config::default());
    client.sender().send_ping(b"are you there").unwrap();
    server.feed(client.pending_output());
    assert_eq!(
        server.poll_event().unwrap().map(|(event, _)| event),
        Some(Event::Ping(&b"are you there"[..]))
    );
    client.feed(server.pending_output());
    assert_eq!(
        client.poll_event().unwrap().map(|(event, _)| event),
        Some(Event::Pong(&b"are you there"[..]))
    );
}
