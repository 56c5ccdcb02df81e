//! Several `Rooms` registries in one process, each with its own
//! `BrokerBackplane` (its own NodeId and broker connections), over a real
//! broker started by the test: Redis pub/sub, Redis sharded pub/sub, NATS
//! core and NATS JetStream. Members are real chito server connections over
//! in-memory pipes, read by real client connections.
#![cfg(all(feature = "redis", feature = "nats"))]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chito::handshake::Negotiated;
use chito::rooms::{
    MemberId, Membership, Presence, Publish, PublishError, Rooms, Select, SharedBatch,
};
use chito::tokio::{Builder, WebSocket};
use chito::{Config, Connection, Handler, Message, OwnedEvent, Role, SharedMessage};
use chito_backplane::{BackplaneEvent, BrokerBackplane, JetStreamSettings, Settings};
use common::{Nats, Redis};
use tokio::io::DuplexStream;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Redis,
    RedisSharded,
    Nats,
    JetStream,
}

enum Broker {
    Redis(Redis),
    Nats(Nats),
}

impl Broker {
    fn start(mode: Mode) -> Broker {
        match mode {
            Mode::Redis | Mode::RedisSharded => Broker::Redis(Redis::start()),
            Mode::Nats | Mode::JetStream => Broker::Nats(Nats::start()),
        }
    }

    fn url(&self, mode: Mode) -> String {
        match (self, mode) {
            (Broker::Redis(r), Mode::RedisSharded) => r.sharded_url(),
            (Broker::Redis(r), _) => r.url(),
            (Broker::Nats(n), Mode::JetStream) => n.jetstream_url(),
            (Broker::Nats(n), _) => n.url(),
        }
    }

    fn kill(&mut self) {
        match self {
            Broker::Redis(r) => r.kill(),
            Broker::Nats(n) => n.kill(),
        }
    }

    fn restart(&mut self) {
        match self {
            Broker::Redis(r) => r.restart(),
            Broker::Nats(n) => n.restart(),
        }
    }

    /// The room channels/subjects the broker has subscribers for (with
    /// JetStream: the consumers' filter subjects).
    async fn room_subscriptions(&self, mode: Mode) -> Vec<String> {
        let all: Vec<String> = match (self, mode) {
            (Broker::Redis(r), Mode::RedisSharded) => r.shard_channels("*").await,
            (Broker::Redis(r), _) => r.channels("*").await,
            (Broker::Nats(n), Mode::JetStream) => {
                let body = n.monitor("/jsz?consumers=true&config=true");
                // The consumers' filter subjects (not the stream's
                // `chito.test.room.>`).
                body.replace("\\u003e", ">")
                    .split('"')
                    .filter(|s| s.starts_with("chito.test.room.") && !s.ends_with('>'))
                    .map(str::to_owned)
                    .collect()
            }
            (Broker::Nats(n), _) => n.subscribed_subjects(),
        };
        let mut rooms: Vec<String> = all
            .into_iter()
            .filter(|c| c.starts_with("chito.test.room."))
            .collect();
        rooms.sort();
        rooms.dedup();
        rooms
    }
}

fn settings(mode: Mode, durable: &str) -> Settings {
    Settings {
        namespace: "test".into(),
        unsubscribe_debounce: Duration::from_millis(300),
        presence_period: Duration::from_millis(300),
        reconnect_delay: Duration::from_millis(50),
        reconnect_max_delay: Duration::from_millis(200),
        jetstream: (mode == Mode::JetStream).then(|| JetStreamSettings {
            durable_name: durable.into(),
            resume_grace: Duration::from_secs(3),
            ..Default::default()
        }),
        ..Default::default()
    }
}

struct Node {
    rooms: Rooms,
    bp: Arc<BrokerBackplane>,
}

async fn node_with(url: &str, settings: Settings) -> Node {
    let bp = BrokerBackplane::connect(url, settings)
        .await
        .expect("connect to the broker");
    let rooms = Rooms::with_backplane(bp.clone());
    Node { rooms, bp }
}

async fn node(broker: &Broker, mode: Mode, name: &str) -> Node {
    node_with(&broker.url(mode), settings(mode, name)).await
}

struct Quiet;
impl Handler for Quiet {}

/// A served member and the client reading what it is sent.
struct Peer {
    membership: Membership,
    client: WebSocket<DuplexStream>,
}

impl Peer {
    fn id(&self) -> MemberId {
        self.membership.id()
    }
}

fn peer(rooms: &Rooms) -> Peer {
    let (a, b) = tokio::io::duplex(1 << 16);
    let config = Config::default();
    let server = Builder::new(a).upgraded(Connection::with_negotiated(
        Role::Server,
        config.clone(),
        Negotiated::default(),
        &[],
    ));
    let client = Builder::new(b).upgraded(Connection::with_negotiated(
        Role::Client,
        config,
        Negotiated::default(),
        &[],
    ));
    let membership = rooms.add(server.handle());
    tokio::spawn(async move { server.serve(&mut Quiet).await });
    Peer { membership, client }
}

async fn next_text(peer: &mut Peer) -> String {
    match tokio::time::timeout(Duration::from_secs(5), peer.client.recv()).await {
        Ok(Ok(OwnedEvent::Text(t))) => t,
        other => panic!("expected a text message, got {other:?}"),
    }
}

async fn nothing_arrives(peer: &mut Peer, wait: Duration) {
    if let Ok(event) = tokio::time::timeout(wait, peer.client.recv()).await {
        panic!("expected nothing, got {event:?}");
    }
}

/// Polls `check` until it holds, for at most `timeout`.
async fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every node sees `count` members in `room` and holds its
/// subscriptions (3 fixed channels plus `rooms[i]` rooms).
async fn converge(nodes: &[&Node], room: &str, count: usize, rooms: &[u64]) {
    for (n, want) in nodes.iter().zip(rooms) {
        eventually("subscriptions", Duration::from_secs(10), || {
            n.bp.stats().subscriptions >= 3 + want
        })
        .await;
    }
    for n in nodes {
        eventually(
            &format!("{room} to count {count}"),
            Duration::from_secs(10),
            || n.rooms.count(room) == count,
        )
        .await;
    }
}

macro_rules! per_mode {
    ($($name:ident),* $(,)?) => {
        mod redis { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Mode::Redis).await } )* }
        mod redis_sharded { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Mode::RedisSharded).await } )* }
        mod nats { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Mode::Nats).await } )* }
        mod jetstream { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Mode::JetStream).await } )* }
    };
}

per_mode!(
    emit_reaches_every_node_once,
    emit_many_and_broadcast_and_send_to,
    presence_deltas_snapshots_expiry_and_goodbye,
    subscribed_only_while_a_local_member_exists,
    broker_killed_and_restarted,
    new_node_learns_existing_members_at_once,
    large_room_reaches_other_nodes_in_parts,
    shutdown_returns_while_the_broker_is_away,
    select_batch_and_hold_across_the_broker,
);

async fn next_binary(peer: &mut Peer) -> Vec<u8> {
    match tokio::time::timeout(Duration::from_secs(5), peer.client.recv()).await {
        Ok(Ok(OwnedEvent::Binary(b))) => b,
        other => panic!("expected a binary message, got {other:?}"),
    }
}

/// A selection (a room, a listed member of the other node, an
/// except-room) carrying a batch reaches exactly its members, each batch
/// whole and in order; a hold keeps a room's subscription without a
/// member, and what is emitted to it reaches the remote hook.
async fn select_batch_and_hold_across_the_broker(mode: Mode) {
    let broker = Broker::start(mode);
    let a = node(&broker, mode, "a").await;
    let b = node(&broker, mode, "b").await;
    let mut in_room = peer(&b.rooms);
    let mut muted = peer(&b.rooms);
    let mut listed = peer(&b.rooms);
    b.rooms.join(in_room.id(), "r");
    b.rooms.join(muted.id(), "r");
    b.rooms.join(muted.id(), "muted");
    let sender = peer(&a.rooms);
    a.rooms.join(sender.id(), "r");
    converge(&[&a, &b], "r", 3, &[1, 2]).await;

    let select = Select {
        rooms: vec!["r".into()],
        members: vec![listed.id()],
        except_rooms: vec!["muted".into()],
        except_members: vec![sender.id()],
    };
    let batch = SharedBatch::new(vec![
        SharedMessage::text("head".into()),
        SharedMessage::binary(vec![1, 2, 3]),
    ]);
    let report = a.rooms.emit_select(&select, batch);
    assert_eq!((report.delivered, report.published), (0, Publish::Queued));
    for p in [&mut in_room, &mut listed] {
        assert_eq!(next_text(p).await, "head");
        assert_eq!(next_binary(p).await, [1, 2, 3]);
    }
    nothing_arrives(&mut muted, Duration::from_millis(300)).await;
    nothing_arrives(&mut in_room, Duration::from_millis(10)).await;

    let heard = Arc::new(Mutex::new(Vec::new()));
    let log = heard.clone();
    b.rooms.on_remote_payload(move |select, payload| {
        log.lock().unwrap().push(select.rooms.clone());
        payload
    });
    let hold = b.rooms.hold("held");
    eventually("the held room subscribed", Duration::from_secs(5), || {
        b.bp.stats().subscriptions == 6
    })
    .await;
    a.rooms.emit("held", Message::Text("for later"));
    eventually("the hook heard it", Duration::from_secs(5), || {
        !heard.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(
        *heard.lock().unwrap(),
        [vec![std::sync::Arc::<str>::from("held")]]
    );
    drop(hold);
    eventually("the held room let go", Duration::from_secs(5), || {
        b.bp.stats().subscriptions == 5
    })
    .await;
}

/// With the broker killed, a publish queue that cannot drain and a client
/// that keeps reconnecting, `shutdown` still returns: within its two
/// bounds (queue, then close), not whenever the broker comes back.
async fn shutdown_returns_while_the_broker_is_away(mode: Mode) {
    let mut broker = Broker::start(mode);
    let a = node_with(
        &broker.url(mode),
        Settings {
            publish_timeout: Duration::from_millis(500),
            queue_messages: 4,
            ..settings(mode, "away")
        },
    )
    .await;
    let member = peer(&a.rooms);
    a.rooms.join(member.id(), "r");
    broker.kill();
    for _ in 0..16 {
        a.rooms
            .emit("r", Message::Text("into a queue that cannot drain"));
    }
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), a.bp.shutdown())
        .await
        .expect("shutdown returns with the broker away");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert!(!a.bp.is_connected());
}

/// A room whose members on one node do not fit in one message (30 000
/// members with presence data: more than the 1 MiB `max_payload`; a small
/// `snapshot_chunk_bytes` makes it dozens of parts) reaches a node that
/// starts later completely: its snapshot parts are put back together and
/// the room applied whole.
async fn large_room_reaches_other_nodes_in_parts(mode: Mode) {
    const MEMBERS: usize = 30_000;
    let broker = Broker::start(mode);
    let large = |name: &str| Settings {
        presence_period: Duration::from_secs(60),
        snapshot_chunk_bytes: 16 << 10,
        queue_messages: 100_000,
        ..settings(mode, name)
    };
    let a = node_with(&broker.url(mode), large("a")).await;
    // One connection stands for every member (nothing is sent to them).
    let connection = peer(&a.rooms);
    let handle = a.rooms.handle(connection.id()).expect("the peer's handle");
    let members: Vec<Membership> = (0..MEMBERS)
        .map(|i| {
            let m = a.rooms.add(handle.clone());
            a.rooms
                .set_presence_data(m.id(), format!("a member called number {i:05}"));
            a.rooms.join(m.id(), "big");
            m
        })
        .collect();
    let small = a.rooms.add(handle.clone());
    a.rooms.join(small.id(), "small");
    // The joins' deltas are out before B exists: B learns the room from
    // A's snapshot only (A answers B's first snapshot with its own).
    eventually("A's queue drained", Duration::from_secs(20), || {
        a.bp.stats().queued == 0
    })
    .await;
    let b = node_with(&broker.url(mode), large("b")).await;
    eventually("B to see every member", Duration::from_secs(20), || {
        b.rooms.count("big") == MEMBERS
    })
    .await;
    assert_eq!(b.rooms.count("small"), 1);
    let last = members[MEMBERS - 1].id();
    assert_eq!(
        b.rooms.presence_data(last).as_deref(),
        Some("a member called number 29999")
    );
    let (sa, sb) = (a.bp.stats(), b.bp.stats());
    assert_eq!(sa.publish_too_large, 0);
    assert!(
        sa.presence_out >= 60,
        "{} presence messages",
        sa.presence_out
    );
    assert_eq!(sb.snapshot_rooms_dropped, 0);
    assert_eq!(sb.bad_envelopes, 0);
}

/// A node that starts later sees the members of the nodes already there
/// at once (they answer its first snapshot with theirs), not one presence
/// period later.
async fn new_node_learns_existing_members_at_once(mode: Mode) {
    let broker = Broker::start(mode);
    let slow = |name: &str| Settings {
        presence_period: Duration::from_secs(60),
        ..settings(mode, name)
    };
    let a = node_with(&broker.url(mode), slow("a")).await;
    let pa = peer(&a.rooms);
    a.rooms.join(pa.id(), "r");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let b = node_with(&broker.url(mode), slow("b")).await;
    eventually("B to know A's member", Duration::from_secs(3), || {
        b.rooms.count("r") == 1
    })
    .await;
    assert_eq!(b.rooms.members("r"), vec![pa.id()]);
}

/// An emit on A reaches the members on B and C once each, A's own members
/// once (locally), and A drops its echo from the broker.
async fn emit_reaches_every_node_once(mode: Mode) {
    let broker = Broker::start(mode);
    let a = node(&broker, mode, "a").await;
    let b = node(&broker, mode, "b").await;
    let c = node(&broker, mode, "c").await;
    let mut peers: Vec<(usize, Peer)> = Vec::new();
    for (i, n) in [&a, &a, &b, &c].iter().enumerate() {
        let p = peer(&n.rooms);
        assert!(n.rooms.join(p.id(), "lobby"));
        peers.push((i, p));
    }
    converge(&[&a, &b, &c], "lobby", 4, &[1, 1, 1]).await;

    for i in 0..20 {
        let report = a.rooms.emit("lobby", Message::Text(&format!("m{i}")));
        assert_eq!(report.delivered, 2);
        assert_eq!(report.published, Publish::Queued);
    }
    for (_, p) in &mut peers {
        for i in 0..20 {
            assert_eq!(next_text(p).await, format!("m{i}"), "per-publisher order");
        }
    }
    for (_, p) in &mut peers {
        nothing_arrives(p, Duration::from_millis(300)).await;
    }
    eventually("A's own echoes", Duration::from_secs(5), || {
        a.bp.stats().own_echoes >= 20
    })
    .await;
    assert_eq!(b.bp.stats().delivered, 20);
    assert_eq!(c.bp.stats().delivered, 20);
    assert_eq!(a.bp.stats().delivered, 0);
    assert!(a.bp.stats().published >= 20);
    assert_eq!(b.bp.stats().bad_envelopes, 0);
}

/// emit_many to two rooms: a remote member in both gets one copy (the
/// second is a duplicate dropped by the core); broadcast reaches members in
/// no room; send_to reaches one member on another node.
async fn emit_many_and_broadcast_and_send_to(mode: Mode) {
    let broker = Broker::start(mode);
    let a = node(&broker, mode, "a").await;
    let b = node(&broker, mode, "b").await;
    let mut both = peer(&b.rooms);
    let mut roomless = peer(&b.rooms);
    let mut other = peer(&b.rooms);
    b.rooms.join(both.id(), "r1");
    b.rooms.join(both.id(), "r2");
    b.rooms.join(other.id(), "r2");
    let sender = peer(&a.rooms);
    a.rooms.join(sender.id(), "r1");
    converge(&[&a, &b], "r2", 2, &[1, 2]).await;

    let report = a.rooms.emit_many(&["r1", "r2"], Message::Text("many"));
    assert_eq!(report.published, Publish::Queued);
    assert_eq!(next_text(&mut both).await, "many");
    assert_eq!(next_text(&mut other).await, "many");
    nothing_arrives(&mut both, Duration::from_millis(300)).await;
    eventually("the second copy dropped", Duration::from_secs(5), || {
        b.bp.stats().duplicates >= 1
    })
    .await;

    a.rooms.broadcast(Message::Text("everyone"));
    assert_eq!(next_text(&mut both).await, "everyone");
    assert_eq!(next_text(&mut roomless).await, "everyone");
    assert_eq!(next_text(&mut other).await, "everyone");

    let report = a.rooms.send_to(other.id(), Message::Text("just you"));
    assert_eq!(report.published, Publish::Queued);
    assert_eq!(next_text(&mut other).await, "just you");
    nothing_arrives(&mut both, Duration::from_millis(200)).await;
    nothing_arrives(&mut roomless, Duration::from_millis(10)).await;

    // Too large for the broker: refused up front, local delivery only.
    let big = "x".repeat((1 << 20) + 1);
    let report = a.rooms.emit("r1", Message::Text(&big));
    assert!(
        matches!(
            report.published,
            Publish::Failed(PublishError::TooLarge { .. })
        ),
        "{:?}",
        report.published
    );
}

/// Remote joins and leaves reach the other node's presence hook and
/// counts; presence data travels; a node that stops refreshing expires;
/// a node that shuts down says goodbye.
async fn presence_deltas_snapshots_expiry_and_goodbye(mode: Mode) {
    let broker = Broker::start(mode);
    // A expires remote members after six of its 300 ms periods without
    // news (1.8 s), so B's goodbye (below) is told apart from B's members
    // expiring by a wide margin even on a loaded machine.
    let a = node_with(
        &broker.url(mode),
        Settings {
            presence_expiry_periods: 6,
            ..settings(mode, "a")
        },
    )
    .await;
    let seen: Arc<Mutex<Vec<(bool, MemberId)>>> = Arc::default();
    let log = seen.clone();
    a.rooms.on_presence(move |p| {
        let mut log = log.lock().unwrap();
        match p {
            Presence::Joined { room: "r", member } => log.push((true, member)),
            Presence::Left { room: "r", member } => log.push((false, member)),
            _ => {}
        }
    });
    let b = node(&broker, mode, "b").await;
    let p1 = peer(&b.rooms);
    let p2 = peer(&b.rooms);
    b.rooms.set_presence_data(p1.id(), "Ann");
    b.rooms.join(p1.id(), "r");
    b.rooms.join(p2.id(), "r");
    converge(&[&a, &b], "r", 2, &[0, 1]).await;
    assert_eq!(a.rooms.members("r"), {
        let mut m = vec![p1.id(), p2.id()];
        m.sort();
        m
    });
    assert_eq!(a.rooms.presence_data(p1.id()).as_deref(), Some("Ann"));
    assert!(seen.lock().unwrap().contains(&(true, p1.id())));

    // On demand: B answers A's query.
    let fetched = a.rooms.fetch_members("r", Duration::from_secs(2)).await;
    assert_eq!(fetched.len(), 2, "{fetched:?}");

    b.rooms.leave(p2.id(), "r");
    eventually("the leave on A", Duration::from_secs(5), || {
        a.rooms.count("r") == 1
    })
    .await;
    assert!(seen.lock().unwrap().contains(&(false, p2.id())));

    // A third node that snapshots rarely: A forgets it after six of A's
    // periods without news.
    let mut rare = settings(mode, "c");
    rare.presence_period = Duration::from_secs(60);
    let c = node_with(&broker.url(mode), rare).await;
    let p3 = peer(&c.rooms);
    c.rooms.join(p3.id(), "r");
    eventually("C's member on A", Duration::from_secs(5), || {
        a.rooms.count("r") == 2
    })
    .await;
    let joined = Instant::now();
    eventually("C's member expired on A", Duration::from_secs(5), || {
        a.rooms.count("r") == 1
    })
    .await;
    assert!(joined.elapsed() >= Duration::from_millis(1500));
    assert!(seen.lock().unwrap().contains(&(false, p3.id())));

    // Goodbye: B's member leaves A's view at once, not after the expiry
    // (which comes 1.5 s at the earliest: 1.8 s after B's last snapshot,
    // at most 300 ms old).
    let start = Instant::now();
    b.bp.shutdown().await;
    eventually(
        "B's members gone after goodbye",
        Duration::from_secs(5),
        || a.rooms.count("r") == 0,
    )
    .await;
    assert!(
        start.elapsed() < Duration::from_millis(1200),
        "{:?}",
        start.elapsed()
    );
    drop((p1, p2, p3));
}

/// A room's channel is subscribed while the node has a member in it, and
/// released after the debounce once the last one left; a member who comes
/// back within the debounce keeps the subscription.
async fn subscribed_only_while_a_local_member_exists(mode: Mode) {
    let broker = Broker::start(mode);
    let a = node(&broker, mode, "a").await;
    let channel = a.bp.room_channel("quiet room.with*odd>chars");
    let before = broker.room_subscriptions(mode).await;
    assert!(before.is_empty(), "{before:?}");
    let p = peer(&a.rooms);
    a.rooms.join(p.id(), "quiet room.with*odd>chars");
    eventually("subscribed", Duration::from_secs(5), || {
        a.bp.stats().subscriptions == 4
    })
    .await;
    assert_eq!(broker.room_subscriptions(mode).await, vec![channel.clone()]);

    // Leave and come back within the debounce: no churn.
    a.rooms.leave(p.id(), "quiet room.with*odd>chars");
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.rooms.join(p.id(), "quiet room.with*odd>chars");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(broker.room_subscriptions(mode).await, vec![channel.clone()]);

    a.rooms.leave(p.id(), "quiet room.with*odd>chars");
    eventually("unsubscribed", Duration::from_secs(5), || {
        a.bp.stats().subscriptions == 3
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !broker.room_subscriptions(mode).await.is_empty() {
        assert!(Instant::now() < deadline, "the broker still has the room");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Broker killed (-9) and restarted on the same port: local delivery goes
/// on, publishes fill the queue and are then dropped and reported, the
/// application sees Disconnected / Lagged / Connected, and traffic resumes
/// without restarting the nodes.
async fn broker_killed_and_restarted(mode: Mode) {
    let mut broker = Broker::start(mode);
    let small = |name: &str| Settings {
        queue_messages: 8,
        ..settings(mode, name)
    };
    let a = node_with(&broker.url(mode), small("a")).await;
    let b = node_with(&broker.url(mode), small("b")).await;
    let mut events = a.bp.events();
    let mut local = peer(&a.rooms);
    let mut remote = peer(&b.rooms);
    a.rooms.join(local.id(), "r");
    b.rooms.join(remote.id(), "r");
    converge(&[&a, &b], "r", 2, &[1, 1]).await;
    a.rooms.emit("r", Message::Text("before"));
    assert_eq!(next_text(&mut local).await, "before");
    assert_eq!(next_text(&mut remote).await, "before");

    broker.kill();
    eventually("A to notice", Duration::from_secs(10), || {
        !a.bp.is_connected()
    })
    .await;
    let mut failed = 0;
    for i in 0..30 {
        let report = a.rooms.emit("r", Message::Text(&format!("down{i}")));
        assert_eq!(report.delivered, 1, "local delivery goes on");
        if report.published == Publish::Failed(PublishError::QueueFull) {
            failed += 1;
        }
    }
    for i in 0..30 {
        assert_eq!(next_text(&mut local).await, format!("down{i}"));
    }
    assert!(failed >= 30 - 8 - 1, "{failed} dropped");
    assert!(a.bp.stats().publish_dropped_queue_full >= failed);

    broker.restart();
    eventually("A reconnected", Duration::from_secs(15), || {
        a.bp.is_connected()
    })
    .await;
    eventually("B reconnected", Duration::from_secs(15), || {
        b.bp.is_connected()
    })
    .await;
    eventually("resubscribed", Duration::from_secs(10), || {
        b.bp.stats().reconnects >= 1 && b.bp.stats().subscriptions >= 4
    })
    .await;
    // Subscriptions are asynchronous on the broker's side: emit until one
    // arrives, then check order and the events.
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !got.iter().any(|t: &String| t == "after") {
        assert!(
            Instant::now() < deadline,
            "nothing after the restart: {got:?}"
        );
        a.rooms.emit("r", Message::Text("after"));
        if let Ok(Ok(OwnedEvent::Text(t))) =
            tokio::time::timeout(Duration::from_millis(300), remote.client.recv()).await
        {
            got.push(t);
        }
    }
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    assert!(
        seen.iter()
            .any(|e| matches!(e, BackplaneEvent::Disconnected { .. })),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|e| matches!(e, BackplaneEvent::Lagged { dropped } if *dropped > 0)),
        "{seen:?}"
    );
    assert!(seen.contains(&BackplaneEvent::Connected), "{seen:?}");
    assert!(a.bp.stats().reconnects >= 1);
    // Count convergence again through the republished snapshots.
    converge(&[&a, &b], "r", 2, &[1, 1]).await;
}

/// JetStream: a node that stopped and came back under the same durable
/// name within the retention window gets what it missed, once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_restarted_node_receives_what_it_missed_once() {
    let mode = Mode::JetStream;
    let broker = Broker::start(mode);
    let a = node(&broker, mode, "node-a").await;
    let sender = peer(&a.rooms);
    a.rooms.join(sender.id(), "r");
    {
        let b = node(&broker, mode, "node-b").await;
        let mut p = peer(&b.rooms);
        b.rooms.join(p.id(), "r");
        converge(&[&a, &b], "r", 2, &[1, 1]).await;
        a.rooms.emit("r", Message::Text("live"));
        assert_eq!(next_text(&mut p).await, "live");
        // Acknowledged after delivery: wait for the ack to reach the server.
        tokio::time::sleep(Duration::from_millis(300)).await;
        // B goes away without a goodbye: a crash as far as A can tell.
        drop(p);
        drop(b);
    }
    // B is down once the server sees its connection gone (a message
    // published before that may be handed to B's last pull request and
    // comes back only after ack_wait, possibly out of order).
    let Broker::Nats(nats) = &broker else {
        unreachable!()
    };
    eventually("B's connection closed", Duration::from_secs(5), || {
        nats.monitor("/connz").contains("\"num_connections\": 1,")
    })
    .await;
    for i in 0..5 {
        a.rooms.emit("r", Message::Text(&format!("missed{i}")));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let b = node(&broker, mode, "node-b").await;
    let mut p = peer(&b.rooms);
    b.rooms.join(p.id(), "r");
    for i in 0..5 {
        assert_eq!(next_text(&mut p).await, format!("missed{i}"));
    }
    nothing_arrives(&mut p, Duration::from_millis(500)).await;
    a.rooms.emit("r", Message::Text("new"));
    assert_eq!(next_text(&mut p).await, "new");
    nothing_arrives(&mut p, Duration::from_millis(300)).await;
    assert_eq!(b.bp.stats().bad_envelopes, 0);
}

/// JetStream: a redelivered or republished envelope (same origin and
/// sequence, new stream message) is dropped by the receiving node, and a
/// republish with the same Nats-Msg-Id is dropped by the stream itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_redelivery_is_delivered_once() {
    let mode = Mode::JetStream;
    let broker = Broker::start(mode);
    let a = node(&broker, mode, "node-a").await;
    let b = node(&broker, mode, "node-b").await;
    let sender = peer(&a.rooms);
    let mut p = peer(&b.rooms);
    a.rooms.join(sender.id(), "r");
    b.rooms.join(p.id(), "r");
    converge(&[&a, &b], "r", 2, &[1, 1]).await;

    // A plain client sees what A publishes on the room's subject.
    let Broker::Nats(nats) = &broker else {
        unreachable!()
    };
    let raw = async_nats::connect(nats.url()).await.expect("raw client");
    let subject = a.bp.room_channel("r");
    let mut watch = raw.subscribe(subject.clone()).await.expect("subscribe");
    // async-nats' flush only writes the socket; the server reads each
    // connection on its own, so A's publish could overtake this SUB. A
    // message to ourselves on another subject comes back only after the
    // server has handled everything this connection sent before it.
    let mut probe = raw.subscribe("chito-test.probe").await.expect("probe");
    raw.publish("chito-test.probe", "p".into())
        .await
        .expect("probe publish");
    tokio::time::timeout(
        Duration::from_secs(5),
        futures_util::StreamExt::next(&mut probe),
    )
    .await
    .expect("the probe came back")
    .expect("a probe message");
    a.rooms.emit("r", Message::Text("once"));
    assert_eq!(next_text(&mut p).await, "once");
    let seen = tokio::time::timeout(
        Duration::from_secs(5),
        futures_util::StreamExt::next(&mut watch),
    )
    .await
    .expect("the emit on the subject")
    .expect("a message");
    let id = seen
        .headers
        .as_ref()
        .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
        .map(|v| v.as_str().to_owned())
        .expect("Nats-Msg-Id");
    assert!(id.contains(':'), "{id}");

    // The same envelope stored again (as a retry after a lost ack would):
    // B's consumer delivers it, chito drops it.
    let js = async_nats::jetstream::new(raw.clone());
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, "test-copy");
    js.publish_with_headers(subject.clone(), headers, seen.payload.clone())
        .await
        .expect("publish")
        .await
        .expect("stored");
    eventually("B dropped the copy", Duration::from_secs(5), || {
        b.bp.stats().duplicates >= 1
    })
    .await;
    nothing_arrives(&mut p, Duration::from_millis(300)).await;

    // The original id again: the stream's duplicate window drops it.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
    let ack = js
        .publish_with_headers(subject, headers, seen.payload.clone())
        .await
        .expect("publish")
        .await
        .expect("ack");
    assert!(ack.duplicate, "the stream kept a second copy of {id}");
    nothing_arrives(&mut p, Duration::from_millis(300)).await;
}

/// Bytes on a channel that are not our format (another application, an
/// attacker, a future version) are counted and dropped; the node goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_broker_is_counted_and_dropped() {
    let mode = Mode::Redis;
    let broker = Broker::start(mode);
    let a = node(&broker, mode, "a").await;
    let b = node(&broker, mode, "b").await;
    let sender = peer(&a.rooms);
    let mut p = peer(&b.rooms);
    a.rooms.join(sender.id(), "r");
    b.rooms.join(p.id(), "r");
    converge(&[&a, &b], "r", 2, &[1, 1]).await;
    let Broker::Redis(redis) = &broker else {
        unreachable!()
    };
    let room = b.bp.room_channel("r");
    for junk in [
        "",
        "hello",
        "\u{1}\u{1}\u{0}\u{0}",
        "\u{2}\u{1}xxxxxxxxxxxxxxxx",
    ] {
        redis.query(&["PUBLISH", &room, junk]).await;
        redis.query(&["PUBLISH", "chito.test.presence", junk]).await;
    }
    eventually("8 bad envelopes on B", Duration::from_secs(5), || {
        b.bp.stats().bad_envelopes == 8
    })
    .await;
    nothing_arrives(&mut p, Duration::from_millis(200)).await;
    a.rooms.emit("r", Message::Text("still fine"));
    assert_eq!(next_text(&mut p).await, "still fine");
}
