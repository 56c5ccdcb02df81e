//! Rooms across processes, end to end: a real broker (`redis-server`, or
//! `nats-server`, started here on a free loopback port with no
//! persistence), two or three `chat_node` processes (the example, built
//! here with cargo), and chito's own WebSocket client speaking the chat's
//! JSON protocol to them. Every scenario runs against Redis pub/sub,
//! Redis sharded pub/sub and NATS core; JetStream has its own.
//!
//! 1. `fanout`: an emit on node A reaches every member on B and C once,
//!    and A's own members once (A's echo from the broker is dropped);
//! 2. `order`: two publishers on two nodes, 1,000 lines each: every
//!    receiver gets all 2,000, each publisher's in its order;
//! 3. `subscriptions`: a node with no member in a room holds no
//!    subscription for it (`PUBSUB NUMSUB`/`SHARDNUMSUB` and `PUBSUB
//!    CHANNELS`/`SHARDCHANNELS` on Redis, `/subsz?subs=1` on NATS's
//!    monitoring port), and drops it after the unsubscribe debounce;
//! 4. `presence`: member counts converge at once (deltas, well within a
//!    snapshot period); a `kill -9`ed node's members disappear after the
//!    expiry, a gracefully stopped node's at once;
//! 5. `broker_restart`: the broker is killed and started again on its
//!    port: local delivery never stops, `/health` and `/stats` report the
//!    loss and the dropped publishes, cross-node traffic resumes without
//!    restarting the nodes;
//! 6. `jetstream_resume`: a JetStream node killed and restarted with the
//!    same durable name receives what it missed, once and in order.
//!
//! Logs of every process are in `target/cluster/<test>/`; a failing test
//! prints their tails.

#![cfg(all(feature = "redis", feature = "nats"))]

mod cluster_common;
mod common;

use std::time::{Duration, Instant};

use cluster_common::{Client, Cluster, Kind};
use serde_json::Value;

/// Each scenario as one test per broker.
macro_rules! per_broker {
    ($module:ident, $kind:expr) => {
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn fanout() {
                bounded(super::fanout($kind)).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn order() {
                bounded(super::order($kind)).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn subscriptions() {
                bounded(super::subscriptions($kind)).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn presence() {
                bounded(super::presence($kind)).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn broker_restart() {
                bounded(super::broker_restart($kind)).await
            }
        }
    };
}

per_broker!(redis, Kind::Redis);
per_broker!(redis_sharded, Kind::RedisSharded);
per_broker!(nats, Kind::Nats);

mod jetstream {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fanout() {
        bounded(super::fanout(Kind::JetStream)).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn resume_after_restart() {
        bounded(super::jetstream_resume()).await
    }
}

/// No scenario may take longer than this.
async fn bounded(scenario: impl std::future::Future<Output = ()>) {
    if tokio::time::timeout(Duration::from_secs(90), scenario)
        .await
        .is_err()
    {
        panic!("the scenario took longer than 90 s");
    }
}

/// The longest any single expectation waits.
const WAIT: Duration = Duration::from_secs(10);
/// How long to watch for a message that must not come.
const QUIET: Duration = Duration::from_millis(300);

// ---- 1 ----------------------------------------------------------------------

async fn fanout(kind: Kind) {
    let cluster = Cluster::start(&format!("fanout-{kind}"), kind, 3, &[]).await;
    let (a, b, c) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    let mut clients = vec![
        Client::join(a, "a1", "lobby").await,
        Client::join(a, "a2", "lobby").await,
        Client::join(b, "b1", "lobby").await,
        Client::join(c, "c1", "lobby").await,
        Client::join(c, "c2", "lobby").await,
    ];
    let mut outsider = Client::join(b, "outsider", "elsewhere").await;
    Client::converge(&mut clients, &["a1", "a2", "b1", "c1", "c2"]).await;
    Client::warm_up(&mut clients, 0).await;

    // From A, then from C: every member gets each line once.
    let lines: Vec<String> = (0..10).map(|i| format!("from a1 #{i}")).collect();
    for line in &lines {
        clients[0].say(line).await;
    }
    clients[3].say("from c1").await;
    for client in &mut clients {
        client
            .until("every line", WAIT, |seen| {
                lines.iter().all(|l| seen.count("a1", l) > 0) && seen.count("c1", "from c1") > 0
            })
            .await;
    }
    tokio::time::sleep(QUIET).await;
    for client in &mut clients {
        client.pump().await;
        for line in &lines {
            assert_eq!(
                client.seen.count("a1", line),
                1,
                "{}: {line:?}",
                client.name
            );
        }
        assert_eq!(client.seen.count("c1", "from c1"), 1, "{}", client.name);
    }
    outsider.pump().await;
    assert!(
        outsider.seen.lines.is_empty(),
        "a member of another room got {:?}",
        outsider.seen.lines
    );

    // The stats saw it: A published, B and C delivered from the broker.
    let a_stats = a.stats().await;
    assert!(
        a_stats["rooms_total"]["published"].as_u64() >= Some(10),
        "{a_stats}"
    );
    for node in [b, c] {
        let stats = node.stats().await;
        assert!(
            stats["backplane"]["delivered"].as_u64() >= Some(10),
            "{stats}"
        );
        assert!(
            stats["rooms"]["lobby"]["count"].as_u64() == Some(5),
            "{stats}"
        );
    }
    let b_stats = b.stats().await;
    assert!(b_stats["messages_in"].as_u64() >= Some(2), "{b_stats}");
    cluster.finish();
}

// ---- 2 ----------------------------------------------------------------------

async fn order(kind: Kind) {
    const N: usize = 1000;
    let cluster = Cluster::start(&format!("order-{kind}"), kind, 3, &[]).await;
    let (a, b, c) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    let mut clients = vec![
        Client::join(a, "pa", "race").await,
        Client::join(b, "pb", "race").await,
        Client::join(c, "rc", "race").await,
        Client::join(a, "ra", "race").await,
    ];
    Client::converge(&mut clients, &["pa", "pb", "ra", "rc"]).await;
    Client::warm_up(&mut clients, 0).await;
    Client::warm_up(&mut clients, 1).await;

    let started = Instant::now();
    let senders: Vec<_> = [0, 1]
        .into_iter()
        .map(|i| {
            let handle = clients[i].sender();
            let name = clients[i].name.clone();
            tokio::spawn(async move {
                for n in 0..N {
                    let say = serde_json::json!({ "type": "say", "text": format!("{name} {n}") });
                    handle
                        .send(chito::Message::Text(&say.to_string()))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for sender in senders {
        sender.await.unwrap();
    }
    for client in &mut clients {
        client
            .until("2,000 lines", Duration::from_secs(30), |seen| {
                seen.numbered("pa").len() >= N && seen.numbered("pb").len() >= N
            })
            .await;
    }
    let elapsed = started.elapsed();
    tokio::time::sleep(QUIET).await;
    for client in &mut clients {
        client.pump().await;
        for publisher in ["pa", "pb"] {
            let got = client.seen.numbered(publisher);
            let want: Vec<usize> = (0..N).collect();
            assert!(
                got == want,
                "{} got {} lines of {publisher}, first out of place at {:?}",
                client.name,
                got.len(),
                got.iter().zip(&want).position(|(g, w)| g != w)
            );
        }
    }
    eprintln!("order-{kind}: 2 x {N} lines to 4 members on 3 nodes in {elapsed:?}");
    cluster.finish();
}

// ---- 3 ----------------------------------------------------------------------

async fn subscriptions(kind: Kind) {
    let flags = [
        "--unsubscribe-after-ms",
        "200",
        "--presence-period-ms",
        "500",
    ];
    let cluster = Cluster::start(&format!("subscriptions-{kind}"), kind, 2, &flags).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let mut solo = Client::join(a, "solo", "solo-room").await;
    let lobby_b = Client::join(b, "b1", "lobby").await;
    let solo_channel = a.room_channel("solo-room").await;
    let lobby_channel = b.room_channel("lobby").await;
    let broker = &cluster.broker;

    // One node subscribed to each room: the one with a member in it.
    broker.await_subscribers(&solo_channel, 1, WAIT).await;
    broker.await_subscribers(&lobby_channel, 1, WAIT).await;
    // ... and it stays so (B never subscribes to solo-room, A not to lobby).
    tokio::time::sleep(QUIET).await;
    assert_eq!(broker.subscribers(&solo_channel).await, 1);
    assert_eq!(broker.subscribers(&lobby_channel).await, 1);
    assert!(broker.channels().await.contains(&solo_channel));

    // solo moves to the lobby: A gets the lobby, and drops solo-room after
    // the debounce.
    let moved = Instant::now();
    solo.send_join("solo", "lobby").await;
    broker.await_subscribers(&lobby_channel, 2, WAIT).await;
    broker.await_subscribers(&solo_channel, 0, WAIT).await;
    let dropped_after = moved.elapsed();
    assert!(!broker.channels().await.contains(&solo_channel));
    assert!(
        dropped_after >= Duration::from_millis(150),
        "unsubscribed after {dropped_after:?}, before the 200 ms debounce"
    );
    // A's stats agree: one room channel (and whatever else it holds).
    let a_stats = a.stats().await;
    assert!(a_stats["rooms"].get("solo-room").is_none(), "{a_stats}");

    // B's only member leaves: B holds no room subscription any more.
    drop(lobby_b);
    broker.await_subscribers(&lobby_channel, 1, WAIT).await;
    drop(solo);
    broker.await_subscribers(&lobby_channel, 0, WAIT).await;
    eprintln!(
        "subscriptions-{kind}: solo-room unsubscribed {dropped_after:?} after its last member left"
    );
    cluster.finish();
}

// ---- 4 ----------------------------------------------------------------------

async fn presence(kind: Kind) {
    const PERIOD: Duration = Duration::from_millis(300);
    const PERIODS: u32 = 3;
    let flags = [
        "--presence-period-ms",
        "300",
        "--presence-expiry-periods",
        "3",
    ];
    let mut cluster = Cluster::start(&format!("presence-{kind}"), kind, 3, &flags).await;
    let names = ["a1", "a2", "b1", "c1", "c2", "c3"];
    let mut clients = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let node = &cluster.nodes[[0, 0, 1, 2, 2, 2][i]];
        clients.push(Client::join(node, name, "count").await);
    }
    let joined = Instant::now();
    // Every node counts 6 within one snapshot period of the last join.
    for node in &cluster.nodes {
        node.await_count("count", 6, PERIOD + Duration::from_millis(500))
            .await;
    }
    let converged = joined.elapsed();
    Client::converge(&mut clients, &names).await;

    // kill -9 C: no goodbye; A and B drop c1..c3 after the expiry.
    let killed = Instant::now();
    cluster.nodes[2].kill();
    let expiry = PERIOD * PERIODS;
    for node in &cluster.nodes[..2] {
        node.await_count("count", 3, expiry + PERIOD * 2 + Duration::from_millis(500))
            .await;
    }
    let expired = killed.elapsed();
    // Not at once: a crash says no goodbye (the last snapshot may have been
    // up to one period before the kill).
    assert!(
        expired >= expiry - PERIOD,
        "c1..c3 gone {expired:?} after kill -9, before the expiry ({expiry:?})"
    );
    clients.truncate(3);
    Client::converge(&mut clients, &["a1", "a2", "b1"]).await;

    // B stops gracefully: its goodbye drops b1 at once, before the expiry.
    let stopped = Instant::now();
    cluster.nodes[1].terminate().await;
    cluster.nodes[0]
        .await_count("count", 2, expiry - PERIOD)
        .await;
    let goodbye = stopped.elapsed();
    clients.truncate(2);
    Client::converge(&mut clients, &["a1", "a2"]).await;
    eprintln!(
        "presence-{kind}: converged {converged:?} after the last join; kill -9: members gone \
         after {expired:?} (expiry {expiry:?}); SIGTERM: after {goodbye:?}"
    );
    cluster.finish();
}

// ---- 5 ----------------------------------------------------------------------

async fn broker_restart(kind: Kind) {
    let flags = ["--queue-messages", "20", "--presence-period-ms", "500"];
    let mut cluster = Cluster::start(&format!("restart-{kind}"), kind, 2, &flags).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let mut clients = vec![
        Client::join(a, "a1", "r").await,
        Client::join(a, "a2", "r").await,
        Client::join(b, "b1", "r").await,
    ];
    Client::converge(&mut clients, &["a1", "a2", "b1"]).await;
    Client::warm_up(&mut clients, 0).await;

    cluster.broker.kill();
    let down = Instant::now();
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    for node in [a, b] {
        node.await_health("broker_connected", false, WAIT).await;
    }
    let noticed = down.elapsed();

    // Local delivery goes on: A's members keep chatting.
    let lines: Vec<String> = (0..60).map(|i| format!("while down #{i}")).collect();
    for line in &lines {
        clients[0].say(line).await;
    }
    clients[1].say("a2 still here").await;
    for client in &mut clients[..2] {
        client
            .until("the lines said while the broker was down", WAIT, |seen| {
                lines.iter().all(|l| seen.count("a1", l) == 1)
                    && seen.count("a2", "a2 still here") == 1
            })
            .await;
    }
    // ... and the loss is counted: more publishes than the queue holds.
    let stats = a.stats().await;
    let dropped = stats["backplane"]["publish_dropped_queue_full"]
        .as_u64()
        .unwrap_or(0)
        + stats["rooms_total"]["publish_failed"].as_u64().unwrap_or(0);
    assert!(dropped > 0, "no dropped publish reported: {stats}");
    assert_eq!(stats["backplane"]["connected"], false, "{stats}");

    // The broker returns on its port; the nodes reconnect by themselves.
    cluster.broker.restart();
    let up = Instant::now();
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    for node in [a, b] {
        node.await_health("broker_connected", true, Duration::from_secs(20))
            .await;
    }
    let reconnected = up.elapsed();
    // Subscriptions and presence come back: traffic crosses again, both ways.
    Client::warm_up(&mut clients, 0).await;
    Client::warm_up(&mut clients, 2).await;
    Client::converge(&mut clients, &["a1", "a2", "b1"]).await;
    let stats = a.stats().await;
    assert!(
        stats["backplane"]["reconnects"].as_u64() >= Some(1),
        "{stats}"
    );
    eprintln!(
        "restart-{kind}: loss noticed after {noticed:?}, {dropped} publishes dropped, \
         reconnected {reconnected:?} after the broker's return"
    );
    cluster.finish();
}

// ---- 6 ----------------------------------------------------------------------

async fn jetstream_resume() {
    let kind = Kind::JetStream;
    let flags = |name: &str| {
        [
            "--durable",
            name,
            "--retention-ms",
            "30000",
            "--resume-grace-ms",
            "5000",
            "--presence-period-ms",
            "500",
        ]
        .map(String::from)
        .to_vec()
    };
    let mut cluster = Cluster::start("jetstream-resume", kind, 0, &[]).await;
    cluster.add_node("a", &flags("node-a")).await;
    cluster.add_node("b", &flags("node-b")).await;
    let mut clients = vec![
        Client::join(&cluster.nodes[0], "a1", "js").await,
        Client::join(&cluster.nodes[1], "b1", "js").await,
    ];
    Client::converge(&mut clients, &["a1", "b1"]).await;
    Client::warm_up(&mut clients, 0).await;
    tokio::time::sleep(QUIET).await;

    // B dies; A's member goes on talking.
    cluster.nodes[1].kill();
    let lines: Vec<String> = (0..20).map(|i| format!("missed #{i}")).collect();
    for line in &lines {
        clients[0].say(line).await;
    }
    clients[0]
        .until("its own lines", WAIT, |seen| {
            lines.iter().all(|l| seen.count("a1", l) == 1)
        })
        .await;

    // B comes back under the same durable name; its member rejoins.
    let restarted = Instant::now();
    cluster.restart_node(1).await;
    let mut back = Client::join(&cluster.nodes[1], "b1", "js").await;
    back.until("what it missed", WAIT, |seen| {
        lines.iter().all(|l| seen.count("a1", l) > 0)
    })
    .await;
    let caught_up = restarted.elapsed();
    tokio::time::sleep(QUIET).await;
    back.pump().await;
    let missed: Vec<&str> = back
        .seen
        .lines
        .iter()
        .filter(|(from, text)| from == "a1" && text.starts_with("missed #"))
        .map(|(_, text)| text.as_str())
        .collect();
    assert_eq!(missed, lines, "missed lines, once each and in order");
    // Only what it missed: nothing acknowledged before the kill again.
    assert!(
        !back
            .seen
            .lines
            .iter()
            .any(|(_, t)| t.starts_with("warm-up")),
        "{:?}",
        back.seen.lines
    );
    eprintln!("jetstream-resume: 20 missed lines replayed {caught_up:?} after the restart");
    let stats: Value = cluster.nodes[1].stats().await;
    assert!(
        stats["backplane"]["delivered"].as_u64() >= Some(20),
        "{stats}"
    );
    cluster.finish();
}
