//! The `metrics` facade sees the same numbers as `BrokerBackplane::stats`:
//! a recorder of our own, installed globally in this test binary (so in a
//! file of its own), over two nodes on a real redis-server.
#![cfg(feature = "redis")]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chito::handshake::Negotiated;
use chito::rooms::Rooms;
use chito::tokio::Builder;
use chito::{Config, Connection, Handler, Message, Role};
use chito_backplane::{BrokerBackplane, Settings};
use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString,
    Unit,
};

/// A counter or gauge value (gauges as f64 bits).
#[derive(Default)]
struct Value(AtomicU64);

impl CounterFn for Value {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.0.fetch_max(value, Ordering::Relaxed);
    }
}

impl GaugeFn for Value {
    fn increment(&self, value: f64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some((f64::from_bits(b) + value).to_bits())
            });
    }
    fn decrement(&self, value: f64) {
        GaugeFn::increment(self, -value);
    }
    fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }
}

#[derive(Default)]
struct TestRecorder {
    described: Mutex<HashSet<String>>,
    values: Mutex<HashMap<String, Arc<Value>>>,
}

impl TestRecorder {
    fn value(&self, name: &str) -> Arc<Value> {
        self.values
            .lock()
            .unwrap()
            .entry(name.to_owned())
            .or_default()
            .clone()
    }
    fn counter(&self, name: &str) -> u64 {
        self.value(name).0.load(Ordering::Relaxed)
    }
    fn gauge(&self, name: &str) -> f64 {
        f64::from_bits(self.value(name).0.load(Ordering::Relaxed))
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
        self.described
            .lock()
            .unwrap()
            .insert(key.as_str().to_owned());
    }
    fn describe_gauge(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
        self.described
            .lock()
            .unwrap()
            .insert(key.as_str().to_owned());
    }
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.value(key.name()))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.value(key.name()))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

struct Quiet;
impl Handler for Quiet {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_match_stats() {
    let recorder: &'static TestRecorder = Box::leak(Box::default());
    metrics::set_global_recorder(recorder).expect("the only recorder of this binary");

    let redis = common::Redis::start();
    let settings = || Settings {
        presence_period: Duration::from_millis(200),
        ..Settings::default()
    };
    let a_bp = BrokerBackplane::connect(&redis.url(), settings())
        .await
        .unwrap();
    let b_bp = BrokerBackplane::connect(&redis.url(), settings())
        .await
        .unwrap();
    let a = Rooms::with_backplane(a_bp.clone());
    let b = Rooms::with_backplane(b_bp.clone());
    let (server, _client) = tokio::io::duplex(1 << 16);
    let server = Builder::new(server).upgraded(Connection::with_negotiated(
        Role::Server,
        Config::default(),
        Negotiated::default(),
        &[],
    ));
    let member = b.add(server.handle());
    tokio::spawn(async move { server.serve(&mut Quiet).await });
    b.join(member.id(), "r");
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.count("r") != 1 || b_bp.stats().subscriptions < 4 || b.stats().remote_nodes != 1 {
        assert!(Instant::now() < deadline, "no convergence");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..10 {
        a.emit("r", Message::Text(&format!("m{i}")));
    }
    while b_bp.stats().delivered < 10 {
        assert!(Instant::now() < deadline, "not delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let described = recorder.described.lock().unwrap().clone();
    for name in [
        "chito_backplane_published_total",
        "chito_backplane_received_total",
        "chito_backplane_delivered_total",
        "chito_backplane_publish_dropped_queue_full_total",
        "chito_backplane_connected",
        "chito_backplane_subscriptions",
        "chito_backplane_queued",
    ] {
        assert!(
            described.contains(name),
            "{name} not described: {described:?}"
        );
    }
    // One recorder, two nodes: the metric is the sum of both nodes' stats
    // (read after them, so the metric is at least that).
    let (sa, sb) = (a_bp.stats(), b_bp.stats());
    assert!(recorder.counter("chito_backplane_published_total") >= sa.published + sb.published);
    assert!(recorder.counter("chito_backplane_delivered_total") >= 10);
    assert_eq!(
        recorder.counter("chito_backplane_delivered_total"),
        sa.delivered + sb.delivered
    );
    assert_eq!(recorder.gauge("chito_backplane_connected"), 1.0);

    chito_backplane::record_rooms_metrics(&b);
    assert_eq!(recorder.gauge("chito_rooms_members"), 1.0);
    assert_eq!(recorder.gauge("chito_rooms_remote_nodes"), 1.0);
    assert!(recorder.gauge("chito_rooms_deliveries") >= 10.0);
}
