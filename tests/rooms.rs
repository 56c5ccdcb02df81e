//! Rooms: every operation, encode-once, slow members, metadata, presence,
//! and concurrent join/leave/emit from many tasks. Members are real server
//! connections over in-memory pipes, read by real client connections.
#![cfg(feature = "rooms")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chito::handshake::Negotiated;
use chito::rooms::{MemberId, Membership, Presence, Rooms};
use chito::tokio::{Builder, WebSocket};
use chito::{Config, Connection, Handler, Message, OwnedEvent, Role, SharedMessage};
use tokio::io::DuplexStream;

struct Quiet;
impl Handler for Quiet {}

/// A served member and the client reading what it is sent.
struct Peer {
    membership: Membership,
    client: WebSocket<DuplexStream>,
}

fn negotiated(deflate: bool) -> Negotiated {
    let mut n = Negotiated::default();
    if deflate {
        n.deflate = Some(chito::deflate::DeflateParams {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        });
    }
    n
}

/// A member whose queue holds `queue` bytes, over a pipe of `pipe` bytes.
fn peer_with(rooms: &Rooms, queue: usize, deflate: bool, pipe: usize) -> Peer {
    let (a, b) = tokio::io::duplex(pipe);
    let config = Config::default();
    let server = Builder::new(a)
        .max_queued_bytes(queue)
        .upgraded(Connection::with_negotiated(
            Role::Server,
            config.clone(),
            negotiated(deflate),
            &[],
        ));
    let client = Builder::new(b).upgraded(Connection::with_negotiated(
        Role::Client,
        config,
        negotiated(deflate),
        &[],
    ));
    let membership = rooms.add(server.handle());
    tokio::spawn(async move { server.serve(&mut Quiet).await });
    Peer { membership, client }
}

/// The default queue bound of a tokio connection.
const QUEUE: usize = 4 << 20;

fn peer(rooms: &Rooms) -> Peer {
    peer_with(rooms, QUEUE, false, 1 << 16)
}

async fn next_text(client: &mut WebSocket<DuplexStream>) -> String {
    match tokio::time::timeout(Duration::from_secs(5), client.recv()).await {
        Ok(Ok(OwnedEvent::Text(t))) => t,
        other => panic!("{other:?}"),
    }
}

async fn nothing_arrives(client: &mut WebSocket<DuplexStream>) {
    assert!(
        tokio::time::timeout(Duration::from_millis(50), client.recv())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn join_leave_and_queries() {
    let rooms = Rooms::with_shards(4);
    let a = peer(&rooms);
    let b = peer(&rooms);
    let (ia, ib) = (a.membership.id(), b.membership.id());
    assert!(rooms.join(ia, "red"));
    assert!(!rooms.join(ia, "red"), "already there");
    assert!(rooms.join(ia, "blue"));
    assert!(rooms.join(ib, "blue"));
    assert_eq!(rooms.rooms_of(ia), ["blue", "red"]);
    assert_eq!(rooms.members("blue"), {
        let mut v = vec![ia, ib];
        v.sort();
        v
    });
    assert_eq!(rooms.count("blue"), 2);
    assert_eq!(rooms.count("nowhere"), 0);
    assert_eq!(rooms.room_names(), ["blue", "red"]);
    assert!(rooms.leave(ia, "red"));
    assert!(!rooms.leave(ia, "red"));
    assert_eq!(rooms.room_names(), ["blue"], "empty rooms disappear");
    rooms.leave_all(ib);
    assert_eq!(rooms.members("blue"), [ia]);
    assert_eq!(rooms.member_count(), 2);
    drop(a);
    assert_eq!(
        rooms.room_names(),
        Vec::<String>::new(),
        "a dropped member leaves every room"
    );
    assert_eq!(rooms.member_count(), 1);
    assert!(!rooms.join(ia, "red"), "unknown member");
}

#[tokio::test]
async fn emit_reaches_exactly_the_room() {
    let rooms = Rooms::new();
    let mut peers: Vec<Peer> = (0..4).map(|_| peer(&rooms)).collect();
    let ids: Vec<MemberId> = peers.iter().map(|p| p.membership.id()).collect();
    rooms.join(ids[0], "a");
    rooms.join(ids[1], "a");
    rooms.join(ids[1], "b");
    rooms.join(ids[2], "b");

    let report = rooms.emit("a", Message::Text("to a"));
    assert_eq!(report.delivered, 2);
    assert_eq!(next_text(&mut peers[0].client).await, "to a");
    assert_eq!(next_text(&mut peers[1].client).await, "to a");
    nothing_arrives(&mut peers[2].client).await;

    let report = rooms.emit_except("b", Message::Text("from 1"), ids[1]);
    assert_eq!(report.delivered, 1);
    assert_eq!(next_text(&mut peers[2].client).await, "from 1");
    nothing_arrives(&mut peers[1].client).await;

    // Member 1 is in both rooms and gets one copy.
    let report = rooms.emit_many(&["a", "b"], Message::Text("both"));
    assert_eq!(report.delivered, 3);
    for p in &mut peers[..3] {
        assert_eq!(next_text(&mut p.client).await, "both");
    }
    nothing_arrives(&mut peers[1].client).await;
    nothing_arrives(&mut peers[3].client).await;

    // Broadcast reaches members in no room too.
    assert_eq!(rooms.broadcast(Message::Text("all")).delivered, 4);
    for p in &mut peers {
        assert_eq!(next_text(&mut p.client).await, "all");
    }
}

#[tokio::test]
async fn a_message_for_many_members_is_encoded_once() {
    for deflate in [false, true] {
        let rooms = Rooms::new();
        let mut peers: Vec<Peer> = (0..50)
            .map(|_| peer_with(&rooms, QUEUE, deflate, 1 << 16))
            .collect();
        for p in &peers {
            rooms.join(p.membership.id(), "big");
        }
        let text = "a long enough message to be compressed, ".repeat(20);
        let shared = SharedMessage::text(text.clone());
        assert_eq!(rooms.emit_shared("big", &shared).delivered, 50);
        for p in &mut peers {
            assert_eq!(next_text(&mut p.client).await, text);
        }
        // One wire form (plain, or compressed for 15-bit windows) for all 50.
        assert_eq!(shared.encodings(), 1, "deflate {deflate}");
    }
}

#[tokio::test]
async fn a_slow_member_is_reported_and_does_not_delay_the_others() {
    let rooms = Rooms::new();
    let queue = 64 << 10;
    // The slow member's pipe is tiny and its client never reads.
    let slow = peer_with(&rooms, queue, false, 1024);
    let mut fast: Vec<Peer> = (0..3)
        .map(|_| peer_with(&rooms, queue, false, 1 << 20))
        .collect();
    rooms.join(slow.membership.id(), "r");
    for p in &fast {
        rooms.join(p.membership.id(), "r");
    }
    let chunk = "x".repeat(4096);
    let mut reported_full = false;
    for i in 0..200 {
        let report = rooms.emit("r", Message::Text(&chunk));
        if report.full.contains(&slow.membership.id()) {
            reported_full = true;
        }
        assert!(report.delivered >= 3, "emit {i}: {report:?}");
        for p in &mut fast {
            assert_eq!(next_text(&mut p.client).await.len(), 4096);
        }
    }
    assert!(reported_full, "the slow member's queue never filled");
    let handle = rooms.handle(slow.membership.id()).unwrap();
    assert!(handle.buffered_amount() <= (64 << 10) + 4096 + 14);
}

#[tokio::test]
async fn typed_metadata() {
    #[derive(Clone, Debug, PartialEq)]
    struct UserName(String);
    let rooms = Rooms::new();
    let a = peer(&rooms);
    let id = a.membership.id();
    assert!(rooms.set_meta(id, UserName("ada".into())));
    assert!(rooms.set_meta(id, 42u32));
    assert_eq!(rooms.meta::<UserName>(id), Some(UserName("ada".into())));
    assert_eq!(rooms.with_meta(id, |n: &u32| n + 1), Some(43));
    assert_eq!(rooms.meta::<u64>(id), None);
    drop(a);
    assert_eq!(rooms.meta::<UserName>(id), None);
}

#[tokio::test]
async fn presence_events() {
    let rooms = Rooms::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    rooms.on_presence(move |event| {
        l.lock().unwrap().push(match event {
            Presence::Joined { room, member } => format!("+{room}:{}", member.number()),
            Presence::Left { room, member } => format!("-{room}:{}", member.number()),
        })
    });
    let a = peer(&rooms);
    let id = a.membership.id().number();
    rooms.join(a.membership.id(), "x");
    rooms.join(a.membership.id(), "y");
    rooms.leave(a.membership.id(), "x");
    drop(a);
    assert_eq!(
        *log.lock().unwrap(),
        [
            format!("+x:{id}"),
            format!("+y:{id}"),
            format!("-x:{id}"),
            format!("-y:{id}")
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_join_leave_emit_from_many_tasks() {
    let rooms = Rooms::with_shards(8);
    let peers: Vec<Peer> = (0..40)
        .map(|_| peer_with(&rooms, QUEUE, false, 1 << 20))
        .collect();
    let ids: Vec<MemberId> = peers.iter().map(|p| p.membership.id()).collect();
    let tasks: Vec<_> = (0..8u64)
        .map(|t| {
            let rooms = rooms.clone();
            let ids = ids.clone();
            tokio::spawn(async move {
                let mut x = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                for _ in 0..2000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let id = ids[(x % ids.len() as u64) as usize];
                    let room = format!("room{}", (x >> 8) % 6);
                    match (x >> 16) % 5 {
                        0 | 1 => {
                            rooms.join(id, &room);
                        }
                        2 => {
                            rooms.leave(id, &room);
                        }
                        3 => {
                            rooms.emit(&room, Message::Text("hi"));
                        }
                        _ => {
                            if (x >> 20) % 50 == 0 {
                                rooms.leave_all(id);
                            }
                        }
                    }
                    if x % 64 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(30), async {
        for task in tasks {
            task.await.unwrap();
        }
    })
    .await
    .expect("no deadlock");
    // Both indexes agree.
    for id in &ids {
        for room in rooms.rooms_of(*id) {
            assert!(rooms.members(&room).contains(id), "{id:?} in {room}");
        }
    }
    for room in rooms.room_names() {
        assert!(rooms.count(&room) > 0, "empty room {room} kept");
        for id in rooms.members(&room) {
            assert!(rooms.rooms_of(id).contains(&room));
        }
    }
    drop(peers);
    assert_eq!(rooms.room_names(), Vec::<String>::new());
    assert_eq!(rooms.member_count(), 0);
}

/// A member whose overflow policy names a close code that cannot be sent
/// (RFC 6455 §7.4.1) is skipped like a full queue under `Reject`, and stays
/// in the room: the policy's error changes nothing, for a `Handle` or for
/// a room.
#[tokio::test]
async fn an_unsendable_overflow_code_skips_the_member_and_keeps_it() {
    let rooms = Rooms::new();
    let (a, _b) = tokio::io::duplex(1024);
    let server = Builder::new(a)
        .max_queued_bytes(16 << 10)
        .queue_overflow(chito::tokio::Overflow::Close(chito::CloseCode::Abnormal))
        .upgraded(Connection::new(Role::Server, Config::default()));
    let membership = rooms.add(server.handle());
    tokio::spawn(async move { server.serve(&mut Quiet).await });
    rooms.join(membership.id(), "r");
    let chunk = "x".repeat(4096);
    let mut skipped = false;
    for _ in 0..64 {
        let report = rooms.emit("r", Message::Text(&chunk));
        assert!(report.closed.is_empty(), "{report:?}");
        if report.full.contains(&membership.id()) {
            skipped = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(skipped, "the queue never filled");
    assert_eq!(rooms.count("r"), 1);
    assert!(!rooms.handle(membership.id()).unwrap().is_closed());
}

/// Several registries joined by an in-memory bus that behaves like a
/// broker's pub/sub: a publish goes to every node subscribed to a target
/// room's channel — the publisher included, as Redis and NATS echo it —
/// once per channel. What the core must do with that (drop own echoes and
/// duplicates, deliver locally only, follow the 0↔1 edges, keep the
/// remote view) is tested here; the real brokers in chito-backplane.
mod cluster {
    use super::*;
    use chito::rooms::{
        Backplane, Delivery, Envelope, MembersQuery, PresenceUpdate, Publish, PublishError,
        RemoteSink, RoomSnapshot,
    };
    use std::collections::BTreeSet;

    #[derive(Default)]
    struct Bus {
        nodes: Mutex<Vec<Arc<BusNode>>>,
    }

    #[derive(Default)]
    struct BusNode {
        sink: Mutex<Option<RemoteSink>>,
        subscribed: Mutex<BTreeSet<String>>,
        /// Every subscribe/unsubscribe call, in order.
        calls: Mutex<Vec<String>>,
        /// Answers to `deliver`, in order.
        deliveries: Mutex<Vec<Delivery>>,
        refuse: Mutex<bool>,
        bus: std::sync::Weak<Bus>,
    }

    impl BusNode {
        fn sink(&self) -> RemoteSink {
            self.sink.lock().unwrap().clone().unwrap()
        }
    }

    impl Backplane for BusNode {
        fn attach(&self, sink: RemoteSink) {
            *self.sink.lock().unwrap() = Some(sink);
        }

        fn publish(&self, envelope: Envelope) -> Result<(), PublishError> {
            if *self.refuse.lock().unwrap() {
                return Err(PublishError::QueueFull);
            }
            let bus = self.bus.upgrade().unwrap();
            let nodes = bus.nodes.lock().unwrap().clone();
            for node in nodes {
                // A broker's channels: one per room, one per node named by
                // a listed member, one for everyone.
                let target = &envelope.target;
                let subs = node.subscribed.lock().unwrap().clone();
                let me = node.sink().node();
                let mut channels: Vec<bool> =
                    target.rooms.iter().map(|r| subs.contains(&**r)).collect();
                channels.push(target.members.iter().any(|m| m.node() == me));
                if target.rooms.is_empty() && target.members.is_empty() {
                    channels.push(true);
                }
                for _ in channels.into_iter().filter(|s| *s) {
                    let d = node.sink().deliver(envelope.clone());
                    node.deliveries.lock().unwrap().push(d);
                }
            }
            Ok(())
        }

        fn subscribe(&self, room: &str) {
            self.calls.lock().unwrap().push(format!("+{room}"));
            self.subscribed.lock().unwrap().insert(room.to_string());
        }

        fn unsubscribe(&self, room: &str) {
            self.calls.lock().unwrap().push(format!("-{room}"));
            if !self.sink().has_local_members(room) {
                self.subscribed.lock().unwrap().remove(room);
            }
        }

        fn publish_presence(&self, update: PresenceUpdate) {
            let bus = self.bus.upgrade().unwrap();
            let nodes = bus.nodes.lock().unwrap().clone();
            for node in nodes {
                node.sink().presence(update.clone());
            }
        }

        fn query_members(&self, room: &str, _timeout: Duration) -> MembersQuery {
            let bus = self.bus.upgrade().unwrap();
            let me = self.sink().node();
            let nodes = bus.nodes.lock().unwrap().clone();
            let answers: Vec<_> = nodes
                .iter()
                .map(|n| n.sink())
                .filter(|s| s.node() != me)
                .flat_map(|s| s.local_members(room))
                .collect();
            Box::pin(async move { answers })
        }
    }

    fn cluster(n: usize) -> (Arc<Bus>, Vec<(Rooms, Arc<BusNode>)>) {
        let bus = Arc::new(Bus::default());
        let nodes = (0..n)
            .map(|_| {
                let node = Arc::new(BusNode {
                    bus: Arc::downgrade(&bus),
                    ..BusNode::default()
                });
                bus.nodes.lock().unwrap().push(node.clone());
                (Rooms::with_backplane(node.clone()), node)
            })
            .collect();
        (bus, nodes)
    }

    #[tokio::test]
    async fn every_emit_variant_reaches_other_nodes_once() {
        let (_bus, nodes) = cluster(3);
        let (a, b, c) = (&nodes[0].0, &nodes[1].0, &nodes[2].0);
        let mut pa = peer(a);
        let mut pb = peer(b);
        let mut pb2 = peer(b);
        let mut pc = peer(c);
        let (ia, ib, ib2, ic) = (
            pa.membership.id(),
            pb.membership.id(),
            pb2.membership.id(),
            pc.membership.id(),
        );
        assert_ne!(ia.node(), ib.node());
        for (rooms, id) in [(a, ia), (b, ib), (c, ic)] {
            rooms.join(id, "r");
        }
        b.join(ib2, "s");
        b.join(ib, "s");

        // emit: each member once, the origin's echo dropped.
        let report = a.emit("r", Message::Text("one"));
        assert_eq!(report.delivered, 1);
        assert_eq!(report.published, Publish::Queued);
        for p in [&mut pa, &mut pb, &mut pc] {
            assert_eq!(next_text(&mut p.client).await, "one");
            nothing_arrives(&mut p.client).await;
        }
        assert_eq!(nodes[0].1.deliveries.lock().unwrap()[0], Delivery::OwnEcho);

        // emit_many: a remote member in both rooms gets one copy although
        // its node receives the envelope on both channels.
        let report = a.emit_many(&["r", "s"], Message::Text("many"));
        assert_eq!(report.delivered, 1);
        assert_eq!(next_text(&mut pb.client).await, "many");
        assert_eq!(next_text(&mut pb2.client).await, "many");
        nothing_arrives(&mut pb.client).await;
        assert_eq!(
            nodes[1].1.deliveries.lock().unwrap().last(),
            Some(&Delivery::Duplicate)
        );
        assert_eq!(next_text(&mut pa.client).await, "many");
        assert_eq!(next_text(&mut pc.client).await, "many");

        // emit_except with a remote member left out.
        c.emit_except("r", Message::Text("not b"), ib);
        assert_eq!(next_text(&mut pa.client).await, "not b");
        assert_eq!(next_text(&mut pc.client).await, "not b");
        nothing_arrives(&mut pb.client).await;

        // broadcast: members in no room too.
        let mut lonely = peer(c);
        b.broadcast(Message::Text("all"));
        for p in [&mut pa, &mut pb, &mut pb2, &mut pc, &mut lonely] {
            assert_eq!(next_text(&mut p.client).await, "all");
        }

        // Direct to one member on another node; a local one; an unknown.
        let report = a.send_to(ib2, Message::Text("just you"));
        assert_eq!((report.delivered, report.published), (0, Publish::Queued));
        assert_eq!(next_text(&mut pb2.client).await, "just you");
        nothing_arrives(&mut pb.client).await;
        let report = a.send_to(ia, Message::Text("me"));
        assert_eq!(
            (report.delivered, report.published),
            (1, Publish::NoBackplane)
        );
        assert_eq!(next_text(&mut pa.client).await, "me");

        // emit_local stays on its node.
        let report = b.emit_local("r", Message::Text("here only"));
        assert_eq!(report.published, Publish::NoBackplane);
        assert_eq!(next_text(&mut pb.client).await, "here only");
        nothing_arrives(&mut pa.client).await;

        // A refused publish is reported; local delivery happened.
        *nodes[0].1.refuse.lock().unwrap() = true;
        let report = a.emit("r", Message::Text("local"));
        assert_eq!(report.published, Publish::Failed(PublishError::QueueFull));
        assert_eq!(next_text(&mut pa.client).await, "local");
        nothing_arrives(&mut pb.client).await;
        let stats = a.stats();
        assert_eq!(stats.publish_failed, 1);
        assert_eq!(
            stats.published, 3,
            "emit, emit_many, send_to a remote member"
        );
        assert!(b.stats().remote_received >= 4);
        assert!(b.stats().remote_dropped >= 1);
    }

    #[tokio::test]
    async fn emit_select_leaves_out_except_rooms_on_every_node() {
        let (_bus, nodes) = cluster(2);
        let (a, b) = (&nodes[0].0, &nodes[1].0);
        let mut a1 = peer(a);
        let mut a2 = peer(a);
        let mut b1 = peer(b);
        let mut b2 = peer(b);
        let mut b3 = peer(b);
        for (rooms, p) in [(a, &a1), (a, &a2), (b, &b1), (b, &b2), (b, &b3)] {
            rooms.join(p.membership.id(), "all");
        }
        // "muted" has a member on each node; b3 is in "vip" too and is
        // selected once although in both target rooms.
        a.join(a2.membership.id(), "muted");
        b.join(b2.membership.id(), "muted");
        b.join(b3.membership.id(), "vip");
        let select = chito::rooms::Select {
            rooms: vec!["all".into(), "vip".into()],
            except_rooms: vec!["muted".into()],
            except_members: vec![a1.membership.id()],
            ..Default::default()
        };
        let report = a.emit_select(&select, SharedMessage::text("hi".into()));
        assert_eq!((report.delivered, report.published), (0, Publish::Queued));
        assert_eq!(next_text(&mut b1.client).await, "hi");
        assert_eq!(next_text(&mut b3.client).await, "hi");
        for p in [&mut a1, &mut a2, &mut b2, &mut b3] {
            nothing_arrives(&mut p.client).await;
        }
    }

    fn text_of(payload: &chito::rooms::Payload) -> String {
        payload
            .messages()
            .iter()
            .map(|m| String::from_utf8_lossy(m.message().as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join("|")
    }

    #[tokio::test]
    async fn a_hold_keeps_the_subscription_and_remote_emits_reach_the_hook() {
        let (_bus, nodes) = cluster(2);
        let (a, bp) = (&nodes[0].0, &nodes[0].1);
        let b = &nodes[1].0;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        a.on_remote_payload(move |select, payload| {
            log.lock()
                .unwrap()
                .push((select.clone(), text_of(&payload)));
            payload
        });
        let hold = a.hold("r");
        assert_eq!(hold.room(), "r");
        assert_eq!(*bp.calls.lock().unwrap(), ["+r"]);
        assert!(bp.sink().has_local_members("r"));
        assert_eq!(bp.sink().local_rooms(), ["r"]);
        // Held is not a member: counts and lists do not see it.
        assert_eq!(a.room_names(), Vec::<String>::new());
        assert_eq!((a.stats().rooms, a.local_count("r")), (0, 0));
        assert!(a.room_stats("r").is_none());

        // A member coming and going does not touch the subscription.
        let p = peer(a);
        assert!(a.join(p.membership.id(), "r"));
        assert!(a.leave(p.membership.id(), "r"));
        assert_eq!(*bp.calls.lock().unwrap(), ["+r"]);

        // With no local member, a remote emit still reaches the hook.
        b.emit("r", Message::Text("while away"));
        assert_eq!(
            *seen.lock().unwrap(),
            [(chito::rooms::Select::room("r"), "while away".to_string())]
        );

        // The last of two holds lets it go; a late unsubscribe of a held
        // room changes nothing.
        let second = a.hold("r");
        drop(hold);
        assert_eq!(*bp.calls.lock().unwrap(), ["+r"]);
        bp.unsubscribe("r");
        assert!(bp.subscribed.lock().unwrap().contains("r"));
        drop(second);
        assert_eq!(*bp.calls.lock().unwrap(), ["+r", "-r", "-r"]);
        assert!(bp.subscribed.lock().unwrap().is_empty());
        b.emit("r", Message::Text("unheard"));
        assert_eq!(seen.lock().unwrap().len(), 1);

        // A hold dropped while a member is in the room keeps it until the
        // member leaves.
        let hold = a.hold("s");
        assert!(a.join(p.membership.id(), "s"));
        drop(hold);
        assert!(bp.subscribed.lock().unwrap().contains("s"));
        assert!(a.leave(p.membership.id(), "s"));
        assert!(!bp.subscribed.lock().unwrap().contains("s"));
        assert_eq!(*bp.calls.lock().unwrap(), ["+r", "-r", "-r", "+s", "-s"]);
    }

    #[tokio::test]
    async fn the_remote_hook_runs_once_per_envelope_and_replaces_its_payload() {
        let (_bus, nodes) = cluster(2);
        let (a, b) = (&nodes[0].0, &nodes[1].0);
        let calls = Arc::new(Mutex::new(Vec::new()));
        let log = calls.clone();
        a.on_remote_payload(move |select, payload| {
            log.lock()
                .unwrap()
                .push((select.rooms.len(), text_of(&payload)));
            match &payload {
                chito::rooms::Payload::Single(m) => SharedMessage::text(format!(
                    "{}+offset",
                    String::from_utf8_lossy(m.message().as_bytes())
                ))
                .into(),
                chito::rooms::Payload::Batch(_) => payload,
            }
        });
        let mut pa = peer(a);
        a.join(pa.membership.id(), "r");
        a.join(pa.membership.id(), "s");
        // Received on both room channels: the second is a duplicate,
        // dropped before the hook.
        b.emit_many(&["r", "s"], Message::Text("hi"));
        assert_eq!(next_text(&mut pa.client).await, "hi+offset");
        nothing_arrives(&mut pa.client).await;
        assert_eq!(*calls.lock().unwrap(), [(2, "hi".to_string())]);

        // A batch arrives as a batch, whole and in order.
        let batch = chito::rooms::SharedBatch::new(vec![
            SharedMessage::text("head".into()),
            SharedMessage::binary(vec![7, 8]),
        ]);
        b.emit_select(&chito::rooms::Select::room("r"), batch);
        assert_eq!(next_text(&mut pa.client).await, "head");
        match tokio::time::timeout(Duration::from_secs(5), pa.client.recv()).await {
            Ok(Ok(OwnedEvent::Binary(bytes))) => assert_eq!(bytes, [7, 8]),
            other => panic!("{other:?}"),
        }
        assert_eq!(calls.lock().unwrap().len(), 2);
        // Local emits never pass through it.
        a.emit("r", Message::Text("local"));
        assert_eq!(next_text(&mut pa.client).await, "local");
        assert_eq!(calls.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn select_members_and_except_members_across_nodes() {
        let (_bus, nodes) = cluster(3);
        let (a, b, c) = (&nodes[0].0, &nodes[1].0, &nodes[2].0);
        let mut a1 = peer(a);
        let mut b1 = peer(b);
        let mut b2 = peer(b);
        let mut c1 = peer(c);
        let (ia, ib1, ib2, ic) = (
            a1.membership.id(),
            b1.membership.id(),
            b2.membership.id(),
            c1.membership.id(),
        );
        b.join(ib2, "x");

        // Listed members on three nodes, one of them excepted.
        let select = chito::rooms::Select {
            members: vec![ib1, ic, ia],
            except_members: vec![ic],
            ..Default::default()
        };
        let report = a.emit_select(&select, SharedMessage::text("listed".into()));
        assert_eq!((report.delivered, report.published), (1, Publish::Queued));
        assert_eq!(next_text(&mut a1.client).await, "listed");
        assert_eq!(next_text(&mut b1.client).await, "listed");
        nothing_arrives(&mut b2.client).await;
        nothing_arrives(&mut c1.client).await;

        // A room and a member of one node: that node hears it on two
        // channels and delivers once.
        let select = chito::rooms::Select {
            rooms: vec!["x".into()],
            members: vec![ib1],
            ..Default::default()
        };
        a.emit_select(&select, SharedMessage::text("twice routed".into()));
        assert_eq!(next_text(&mut b1.client).await, "twice routed");
        assert_eq!(next_text(&mut b2.client).await, "twice routed");
        nothing_arrives(&mut b1.client).await;
        assert_eq!(
            nodes[1].1.deliveries.lock().unwrap().last(),
            Some(&Delivery::Duplicate)
        );

        // Only local members: nothing to publish.
        let select = chito::rooms::Select {
            members: vec![ia],
            ..Default::default()
        };
        let report = a.emit_select(&select, SharedMessage::text("mine".into()));
        assert_eq!(
            (report.delivered, report.published),
            (1, Publish::NoBackplane)
        );
        assert_eq!(next_text(&mut a1.client).await, "mine");

        // Everyone but the members of "x", on every node.
        let select = chito::rooms::Select {
            except_rooms: vec!["x".into()],
            ..Default::default()
        };
        c.emit_select(&select, SharedMessage::text("not x".into()));
        for p in [&mut a1, &mut b1, &mut c1] {
            assert_eq!(next_text(&mut p.client).await, "not x");
        }
        nothing_arrives(&mut b2.client).await;
    }

    #[tokio::test]
    async fn subscriptions_follow_the_first_and_last_local_member() {
        let (_bus, nodes) = cluster(2);
        let (a, bp) = (&nodes[0].0, &nodes[0].1);
        let p1 = peer(a);
        let p2 = peer(a);
        a.join(p1.membership.id(), "r");
        a.join(p2.membership.id(), "r");
        a.leave(p1.membership.id(), "r");
        assert_eq!(*bp.calls.lock().unwrap(), ["+r"], "only the 0->1 edge");
        drop(p2);
        assert_eq!(*bp.calls.lock().unwrap(), ["+r", "-r"]);
        assert!(bp.subscribed.lock().unwrap().is_empty());
        // A late unsubscribe after a new join must not drop the room: the
        // registry is the truth.
        let p3 = peer(a);
        a.join(p3.membership.id(), "r");
        bp.unsubscribe("r");
        assert!(bp.subscribed.lock().unwrap().contains("r"));
        assert_eq!(bp.sink().local_rooms(), ["r"]);
    }

    #[tokio::test]
    async fn presence_counts_lists_and_expiry_across_nodes() {
        let (_bus, nodes) = cluster(2);
        let (a, b) = (&nodes[0].0, &nodes[1].0);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let b_node = b.node();
        a.on_presence(move |event| {
            let (sign, member) = match event {
                Presence::Joined { member, .. } => ('+', member),
                Presence::Left { member, .. } => ('-', member),
            };
            if member.node() == b_node {
                log.lock()
                    .unwrap()
                    .push(format!("{sign}{}", member.number()));
            }
        });
        let pa = peer(a);
        let pb = peer(b);
        let (ia, ib) = (pa.membership.id(), pb.membership.id());
        assert!(b.set_presence_data(ib, "bea"));
        a.join(ia, "r");
        b.join(ib, "r");
        assert_eq!(a.count("r"), 2);
        assert_eq!(a.local_count("r"), 1);
        assert_eq!(a.members("r"), {
            let mut v = vec![ia, ib];
            v.sort();
            v
        });
        assert_eq!(a.presence_data(ib).as_deref(), Some("bea"));
        assert_eq!(a.rooms_of(ib), ["r"]);
        assert_eq!(a.room_stats("r").map(|s| s.remote_members), Some(1));
        let fetched = a.fetch_members("r", Duration::from_millis(100)).await;
        assert_eq!(fetched.len(), 2);
        assert!(fetched.contains(&(ib, Some(Arc::from("bea")))));

        // A new name travels as a join.
        b.set_presence_data(ib, "bee");
        assert_eq!(a.presence_data(ib).as_deref(), Some("bee"));
        let id = ib.number();
        assert_eq!(*seen.lock().unwrap(), [format!("+{id}"), format!("+{id}")]);

        // A lost Left is repaired by the next snapshot.
        let sink_a = nodes[0].1.sink();
        sink_a.snapshot(
            b.node(),
            vec![RoomSnapshot {
                room: Arc::from("r"),
                members: vec![],
            }],
        );
        assert_eq!(a.count("r"), 1);
        sink_a.snapshot(b.node(), nodes[1].1.sink().local_snapshot());
        assert_eq!(a.count("r"), 2);
        // A node that stops refreshing disappears after the expiry.
        tokio::time::sleep(Duration::from_millis(30)).await;
        sink_a.expire(Duration::from_millis(20));
        assert_eq!(a.count("r"), 1);
        assert!(sink_a.known_nodes().is_empty());
        let log = seen.lock().unwrap().clone();
        assert_eq!(
            log.last().map(String::as_str),
            Some(format!("-{id}").as_str())
        );
        // Own presence is never taken as remote.
        sink_a.presence(PresenceUpdate::Left {
            room: Arc::from("r"),
            member: ia,
        });
        assert_eq!(a.local_count("r"), 1);
    }
}

/// Members that are not tokio handles ([`chito::rooms::Sink`]), batches,
/// derived values, restored ids and selections, on one node.
mod sinks {
    use super::*;
    use chito::rooms::{Payload, RestoreError, Select, SharedBatch, Sink};
    use chito::tokio::QueueError;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// A test double: records every payload; answers `Full` or `Closed`
    /// when told to.
    #[derive(Default)]
    struct Recorder {
        payloads: Mutex<Vec<Payload>>,
        full: AtomicBool,
        closed: AtomicBool,
    }

    impl Sink for Recorder {
        fn deliver(&self, payload: &Payload) -> Result<(), QueueError> {
            if self.closed.load(Ordering::SeqCst) {
                return Err(QueueError::Closed);
            }
            if self.full.load(Ordering::SeqCst) {
                return Err(QueueError::Full);
            }
            self.payloads.lock().unwrap().push(payload.clone());
            Ok(())
        }

        fn is_closed(&self) -> bool {
            self.closed.load(Ordering::SeqCst)
        }
    }

    impl Recorder {
        /// Each recorded payload as its messages' texts.
        fn texts(&self) -> Vec<Vec<String>> {
            self.payloads
                .lock()
                .unwrap()
                .iter()
                .map(|p| {
                    p.messages()
                        .iter()
                        .map(|m| String::from_utf8_lossy(m.message().as_bytes()).into_owned())
                        .collect()
                })
                .collect()
        }
    }

    fn batch(texts: &[&str]) -> SharedBatch {
        SharedBatch::new(
            texts
                .iter()
                .map(|t| SharedMessage::text(t.to_string()))
                .collect(),
        )
    }

    #[tokio::test]
    async fn a_sink_member_gets_singles_and_batches_and_its_errors_are_reported() {
        let rooms = Rooms::new();
        let sink = Arc::new(Recorder::default());
        let member = rooms.add_sink(sink.clone());
        let id = member.id();
        assert!(rooms.join(id, "r"));
        assert!(rooms.handle(id).is_none(), "not added as a Handle");

        assert_eq!(rooms.emit("r", Message::Text("one")).delivered, 1);
        let report = rooms.emit_select(&Select::room("r"), batch(&["two", "three"]));
        assert_eq!(report.delivered, 1);
        assert_eq!(sink.texts(), [vec!["one"], vec!["two", "three"]]);
        assert!(matches!(
            sink.payloads.lock().unwrap()[1],
            Payload::Batch(_)
        ));

        sink.full.store(true, Ordering::SeqCst);
        let report = rooms.emit("r", Message::Text("skipped"));
        assert_eq!((report.delivered, report.full.clone()), (0, vec![id]));
        assert_eq!(rooms.count("r"), 1, "a full member stays");

        sink.closed.store(true, Ordering::SeqCst);
        let report = rooms.emit("r", Message::Text("gone"));
        assert_eq!(report.closed, [id]);
        assert_eq!(rooms.count("r"), 0, "a closed member is removed");
        assert_eq!(sink.texts().len(), 2);

        let closed = Arc::new(Recorder::default());
        closed.closed.store(true, Ordering::SeqCst);
        let late = rooms.add_sink(closed);
        assert!(!rooms.join(late.id(), "r"), "a closed sink joins nothing");
    }

    #[tokio::test]
    async fn a_batch_is_queued_all_or_none_and_arrives_in_order() {
        let rooms = Rooms::new();
        // A 1000-byte queue over a 64-byte pipe nobody reads yet: what is
        // queued stays counted.
        let mut p = peer_with(&rooms, 1000, false, 64);
        let id = p.membership.id();
        rooms.join(id, "r");
        let handle = rooms.handle(id).unwrap();
        let first = "f".repeat(600);
        handle.try_send(Message::Text(&first)).unwrap();
        assert!(handle.buffered_amount() > 500);

        // 2 × 300 bytes do not fit in what is left: none of it is queued.
        let (a, b) = ("a".repeat(300), "b".repeat(300));
        let big = batch(&[&a, &b]);
        assert_eq!(handle.try_send_batch(&big), Err(QueueError::Full));
        let report = rooms.emit_select(&Select::room("r"), big);
        assert_eq!(report.full, [id]);
        let before = handle.buffered_amount();
        // 2 × 100 bytes fit: both are queued, as one entry.
        let (c, d) = ("c".repeat(100), "d".repeat(100));
        let small = batch(&[&c, &d]);
        assert_eq!(rooms.emit_select(&Select::room("r"), small).delivered, 1);
        assert!(handle.buffered_amount() >= before + 200);

        for expected in [&first, &c, &d] {
            assert_eq!(&next_text(&mut p.client).await, expected);
        }
        nothing_arrives(&mut p.client).await;
    }

    #[tokio::test]
    async fn a_batch_for_many_members_is_encoded_once_per_message() {
        let rooms = Rooms::new();
        let mut peers: Vec<Peer> = (0..5).map(|_| peer(&rooms)).collect();
        for p in &peers {
            rooms.join(p.membership.id(), "r");
        }
        let sb = SharedBatch::new(vec![
            SharedMessage::text("head".into()),
            SharedMessage::binary(vec![1, 2, 3]),
        ]);
        let report = rooms.emit_select(&Select::room("r"), sb.clone());
        assert_eq!(report.delivered, 5);
        for p in &mut peers {
            assert_eq!(next_text(&mut p.client).await, "head");
            match tokio::time::timeout(Duration::from_secs(5), p.client.recv()).await {
                Ok(Ok(OwnedEvent::Binary(b))) => assert_eq!(b, [1, 2, 3]),
                other => panic!("{other:?}"),
            }
        }
        for m in sb.messages() {
            assert_eq!(m.encodings(), 1);
        }
        assert_eq!(rooms.stats().bytes_out, 5 * 7, "a batch counts its sum");
    }

    /// A sink that asks the payload for a derived value, as a polling
    /// transport asks for its encoding.
    struct Deriving {
        builds: Arc<AtomicUsize>,
        seen: Mutex<Vec<Arc<String>>>,
    }

    impl Sink for Deriving {
        fn deliver(&self, payload: &Payload) -> Result<(), QueueError> {
            let joined = payload
                .derived(|messages| {
                    self.builds.fetch_add(1, Ordering::SeqCst);
                    messages
                        .iter()
                        .map(|m| String::from_utf8_lossy(m.message().as_bytes()).into_owned())
                        .collect::<Vec<_>>()
                        .join("\u{1e}")
                })
                .ok_or(QueueError::Full)?;
            self.seen.lock().unwrap().push(joined);
            Ok(())
        }

        fn is_closed(&self) -> bool {
            false
        }
    }

    #[tokio::test]
    async fn a_derived_value_is_built_once_per_payload_whatever_the_members() {
        let rooms = Rooms::new();
        let builds = Arc::new(AtomicUsize::new(0));
        let sinks: Vec<Arc<Deriving>> = (0..10)
            .map(|_| {
                Arc::new(Deriving {
                    builds: builds.clone(),
                    seen: Mutex::new(Vec::new()),
                })
            })
            .collect();
        let members: Vec<Membership> = sinks.iter().map(|s| rooms.add_sink(s.clone())).collect();
        for m in &members {
            rooms.join(m.id(), "r");
        }
        let single = Payload::from(SharedMessage::text("solo".into()));
        assert_eq!(
            rooms
                .emit_select(&Select::room("r"), single.clone())
                .delivered,
            10
        );
        assert_eq!(builds.load(Ordering::SeqCst), 1);
        assert_eq!(
            rooms
                .emit_select(&Select::room("r"), batch(&["2", "x"]))
                .delivered,
            10
        );
        assert_eq!(builds.load(Ordering::SeqCst), 2);
        let first = sinks[0].seen.lock().unwrap().clone();
        for s in &sinks {
            let seen = s.seen.lock().unwrap();
            assert_eq!(seen.len(), 2);
            assert_eq!(*seen[0], "solo");
            assert_eq!(*seen[1], "2\u{1e}x");
            // Every member got the same value, not a copy.
            assert!(Arc::ptr_eq(&seen[0], &first[0]) && Arc::ptr_eq(&seen[1], &first[1]));
        }
        // The slot has a String now: another type is refused, the same
        // type comes back without being built again.
        assert!(single.derived(|_| 7u32).is_none());
        assert_eq!(
            single
                .derived(|_| String::from("rebuilt"))
                .as_deref()
                .map(String::as_str),
            Some("solo")
        );
        assert_eq!(builds.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn add_sink_as_restores_an_absent_id_of_this_node_only() {
        let rooms = Rooms::new();
        let other = Rooms::new();
        let first = Arc::new(Recorder::default());
        let member = rooms.add_sink(first);
        let id = member.id();
        let again = Arc::new(Recorder::default());
        assert_eq!(
            rooms.add_sink_as(id, again.clone()).err(),
            Some(RestoreError::Present)
        );
        let foreign = other.add_sink(Arc::new(Recorder::default()));
        assert_eq!(
            rooms.add_sink_as(foreign.id(), again.clone()).err(),
            Some(RestoreError::OtherNode)
        );
        let unissued = MemberId::new(rooms.node(), id.number() + 1000);
        assert_eq!(
            rooms.add_sink_as(unissued, again.clone()).err(),
            Some(RestoreError::NotIssued)
        );

        drop(member);
        assert_eq!(rooms.member_count(), 0);
        let restored = rooms.add_sink_as(id, again.clone()).unwrap();
        assert_eq!(restored.id(), id);
        assert!(rooms.join(id, "r"));
        assert_eq!(rooms.send_to(id, Message::Text("back")).delivered, 1);
        assert_eq!(again.texts(), [vec!["back"]]);
        // Numbers given out later never collide with the restored one.
        let next = rooms.add_sink(Arc::new(Recorder::default()));
        assert_ne!(next.id(), id);

        // A member removed while its guard lives on (closed, pruned by an
        // emit), then restored: the old guard's drop leaves the new
        // registration alone.
        let old_sink = Arc::new(Recorder::default());
        let old = rooms.add_sink(old_sink.clone());
        let old_id = old.id();
        rooms.join(old_id, "r");
        old_sink.closed.store(true, Ordering::SeqCst);
        assert_eq!(rooms.emit("r", Message::Text("prune")).closed, [old_id]);
        let new_sink = Arc::new(Recorder::default());
        let renewed = rooms.add_sink_as(old_id, new_sink.clone()).unwrap();
        drop(old);
        assert!(rooms.join(old_id, "r"), "still registered");
        assert_eq!(rooms.send_to(old_id, Message::Text("hi")).delivered, 1);
        assert_eq!(new_sink.texts(), [vec!["hi"]]);
        drop(renewed);
        assert!(!rooms.join(old_id, "r"), "its own guard removes it");
    }

    #[tokio::test]
    async fn select_with_members_and_except_members_on_one_node() {
        let rooms = Rooms::new();
        let sinks: Vec<Arc<Recorder>> = (0..5).map(|_| Arc::new(Recorder::default())).collect();
        let members: Vec<Membership> = sinks.iter().map(|s| rooms.add_sink(s.clone())).collect();
        let ids: Vec<MemberId> = members.iter().map(Membership::id).collect();
        rooms.join(ids[0], "a");
        rooms.join(ids[1], "a");
        rooms.join(ids[2], "b");
        rooms.join(ids[3], "a");
        rooms.join(ids[3], "muted");
        let got = |sinks: &[Arc<Recorder>]| -> Vec<usize> {
            let got = sinks
                .iter()
                .enumerate()
                .filter(|(_, s)| !s.payloads.lock().unwrap().is_empty())
                .map(|(i, _)| i)
                .collect();
            for s in sinks {
                s.payloads.lock().unwrap().clear();
            }
            got
        };

        // Room a and member 4 (in no room) and member 0 again (one copy),
        // but not member 1 nor the members of "muted".
        let select = Select {
            rooms: vec!["a".into()],
            members: vec![ids[4], ids[0]],
            except_rooms: vec!["muted".into()],
            except_members: vec![ids[1]],
        };
        let report = rooms.emit_select(&select, SharedMessage::text("x".into()));
        assert_eq!(report.delivered, 2);
        assert_eq!(got(&sinks), [0, 4]);
        assert_eq!(sinks[0].payloads.lock().unwrap().len(), 0);
        for (i, id) in ids.iter().enumerate() {
            let in_room = |r: &str| rooms.rooms_of(*id).iter().any(|x| x == r);
            assert_eq!(select.selects(*id, in_room), [0, 4].contains(&i), "{i}");
        }

        // Only members: no room is looked at.
        let only = Select {
            members: vec![ids[2]],
            ..Select::default()
        };
        assert_eq!(
            rooms
                .emit_select(&only, SharedMessage::text("y".into()))
                .delivered,
            1
        );
        assert_eq!(got(&sinks), [2]);

        // No room and no member: everyone, but the excepted.
        let everyone_but = Select {
            except_rooms: vec!["a".into()],
            except_members: vec![ids[4]],
            ..Select::default()
        };
        assert_eq!(
            rooms
                .emit_select(&everyone_but, SharedMessage::text("z".into()))
                .delivered,
            1
        );
        assert_eq!(got(&sinks), [2]);
        assert!(everyone_but.selects(ids[2], |_| false));

        // An unknown local member is reported closed.
        let gone = ids[4];
        drop(members);
        let report = rooms.emit_select(
            &Select {
                members: vec![gone],
                ..Select::default()
            },
            SharedMessage::text("?".into()),
        );
        assert_eq!(report.closed, [gone]);
    }
}
