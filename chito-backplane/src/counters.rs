//! The counters behind [`BackplaneStats`], each also recorded through the
//! `metrics` facade, so an application that installs a recorder
//! (Prometheus exporter or other) sees the same numbers; and the
//! registry's own figures as gauges ([`record_rooms_metrics`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Once;

use crate::settings::BackplaneStats;

/// One counter: its place in [`Counters`] and its metric name.
#[derive(Debug, Clone, Copy)]
pub(crate) enum C {
    Published,
    DroppedQueueFull,
    TooLarge,
    PublishFailed,
    Received,
    Delivered,
    OwnEcho,
    Duplicate,
    BadEnvelope,
    SnapshotDropped,
    PresenceIn,
    PresenceOut,
    Reconnects,
    BytesIn,
    BytesOut,
}

const ALL: [(C, &str, &str); 15] = [
    (
        C::Published,
        "chito_backplane_published_total",
        "broker messages published",
    ),
    (
        C::DroppedQueueFull,
        "chito_backplane_publish_dropped_queue_full_total",
        "publishes dropped: queue full",
    ),
    (
        C::TooLarge,
        "chito_backplane_publish_too_large_total",
        "emits refused: larger than max_payload",
    ),
    (
        C::PublishFailed,
        "chito_backplane_publish_failed_total",
        "publish attempts that failed",
    ),
    (
        C::Received,
        "chito_backplane_received_total",
        "broker messages received",
    ),
    (
        C::Delivered,
        "chito_backplane_delivered_total",
        "received emits delivered locally",
    ),
    (
        C::OwnEcho,
        "chito_backplane_own_echoes_total",
        "received emits of this node, dropped",
    ),
    (
        C::Duplicate,
        "chito_backplane_duplicates_total",
        "received emits already delivered, dropped",
    ),
    (
        C::BadEnvelope,
        "chito_backplane_bad_envelopes_total",
        "received messages that did not decode",
    ),
    (
        C::SnapshotDropped,
        "chito_backplane_snapshot_rooms_dropped_total",
        "remote rooms whose snapshot parts did not all arrive, given up",
    ),
    (
        C::PresenceIn,
        "chito_backplane_presence_in_total",
        "presence messages from other nodes",
    ),
    (
        C::PresenceOut,
        "chito_backplane_presence_out_total",
        "presence messages published",
    ),
    (
        C::Reconnects,
        "chito_backplane_reconnects_total",
        "broker connection regained",
    ),
    (
        C::BytesIn,
        "chito_backplane_bytes_in_total",
        "broker payload bytes received",
    ),
    (
        C::BytesOut,
        "chito_backplane_bytes_out_total",
        "broker payload bytes published",
    ),
];

pub(crate) const CONNECTED: &str = "chito_backplane_connected";
pub(crate) const SUBSCRIPTIONS: &str = "chito_backplane_subscriptions";
pub(crate) const QUEUED: &str = "chito_backplane_queued";

/// Describes every metric once (to the recorder installed at that time).
pub(crate) fn describe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (_, name, help) in ALL {
            metrics::describe_counter!(name, help);
        }
        metrics::describe_gauge!(CONNECTED, "1 while the broker connection is up");
        metrics::describe_gauge!(SUBSCRIPTIONS, "channels/subjects subscribed now");
        metrics::describe_gauge!(QUEUED, "messages waiting in the publish queue");
    });
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    values: [AtomicU64; ALL.len()],
    pub(crate) connected: AtomicBool,
    pub(crate) subscriptions: AtomicU64,
    pub(crate) queued: AtomicU64,
}

impl Counters {
    pub(crate) fn add(&self, c: C, n: u64) {
        let i = c as usize;
        if let (Some(v), Some((_, name, _))) = (self.values.get(i), ALL.get(i)) {
            v.fetch_add(n, Ordering::Relaxed);
            metrics::counter!(*name).increment(n);
        }
    }

    pub(crate) fn get(&self, c: C) -> u64 {
        self.values
            .get(c as usize)
            .map_or(0, |v| v.load(Ordering::Relaxed))
    }

    pub(crate) fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Relaxed);
        metrics::gauge!(CONNECTED).set(if up { 1.0 } else { 0.0 });
    }

    pub(crate) fn set_subscriptions(&self, n: usize) {
        self.subscriptions.store(n as u64, Ordering::Relaxed);
        metrics::gauge!(SUBSCRIPTIONS).set(n as f64);
    }

    pub(crate) fn queued_delta(&self, up: bool) {
        if up {
            self.queued.fetch_add(1, Ordering::Relaxed);
            metrics::gauge!(QUEUED).increment(1.0);
        } else {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            metrics::gauge!(QUEUED).decrement(1.0);
        }
    }

    pub(crate) fn snapshot(&self) -> BackplaneStats {
        BackplaneStats {
            published: self.get(C::Published),
            publish_dropped_queue_full: self.get(C::DroppedQueueFull),
            publish_too_large: self.get(C::TooLarge),
            publish_failed: self.get(C::PublishFailed),
            received: self.get(C::Received),
            delivered: self.get(C::Delivered),
            own_echoes: self.get(C::OwnEcho),
            duplicates: self.get(C::Duplicate),
            bad_envelopes: self.get(C::BadEnvelope),
            snapshot_rooms_dropped: self.get(C::SnapshotDropped),
            presence_in: self.get(C::PresenceIn),
            presence_out: self.get(C::PresenceOut),
            subscriptions: self.subscriptions.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed),
            connected: self.connected.load(Ordering::Relaxed),
            reconnects: self.get(C::Reconnects),
            bytes_in: self.get(C::BytesIn),
            bytes_out: self.get(C::BytesOut),
        }
    }
}

/// Records a registry's own figures (`Rooms::stats`) through the
/// `metrics` facade as gauges named `chito_rooms_*` (members, rooms,
/// remote nodes and members, and the counters as totals so far), e.g. from
/// a periodic task or before a scrape. Per-room figures are left out: room
/// names as labels would make the metric set unbounded.
pub fn record_rooms_metrics(rooms: &chito::rooms::Rooms) {
    let s = rooms.stats();
    let gauges: [(&'static str, f64); 13] = [
        ("chito_rooms_members", s.members as f64),
        ("chito_rooms_rooms", s.rooms as f64),
        ("chito_rooms_remote_nodes", s.remote_nodes as f64),
        ("chito_rooms_remote_members", s.remote_members as f64),
        ("chito_rooms_emits", s.emits as f64),
        ("chito_rooms_deliveries", s.deliveries as f64),
        ("chito_rooms_bytes_out", s.bytes_out as f64),
        ("chito_rooms_full", s.full as f64),
        ("chito_rooms_closed", s.closed as f64),
        ("chito_rooms_published", s.published as f64),
        ("chito_rooms_publish_failed", s.publish_failed as f64),
        ("chito_rooms_remote_received", s.remote_received as f64),
        ("chito_rooms_remote_dropped", s.remote_dropped as f64),
    ];
    for (name, value) in gauges {
        metrics::gauge!(name).set(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_has_its_slot() {
        for (i, (c, _, _)) in ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
    }
}
