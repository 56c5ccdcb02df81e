//! The broker client behind a backplane (Redis or NATS, one set of
//! methods) and the broker message it publishes.

use std::sync::Weak;

use bytes::Bytes;

use crate::backplane::Shared;
#[cfg(feature = "nats")]
use crate::nats;
#[cfg(feature = "redis")]
use crate::redis;

/// The broker client behind a backplane.
pub(crate) enum Transport {
    #[cfg(feature = "redis")]
    Redis(redis::RedisTransport),
    // Boxed: the JetStream state is large and the enum sits in Shared.
    #[cfg(feature = "nats")]
    Nats(Box<nats::NatsTransport>),
    /// Built without a broker feature: `connect` refuses every URL, so
    /// this is never made.
    #[cfg(not(any(feature = "redis", feature = "nats")))]
    None(std::convert::Infallible),
}

/// One broker message to publish.
pub(crate) struct Outbound {
    pub(crate) channel: String,
    pub(crate) payload: Bytes,
    /// JetStream: goes to the stream with this `Nats-Msg-Id`.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) msg_id: Option<String>,
}

/// Calls the same method on whichever client this is (both transports
/// have the same inherent methods).
macro_rules! on_broker {
    ($transport:expr, $t:ident => $call:expr) => {
        match $transport {
            #[cfg(feature = "redis")]
            Transport::Redis($t) => $call,
            #[cfg(feature = "nats")]
            Transport::Nats($t) => $call,
            #[cfg(not(any(feature = "redis", feature = "nats")))]
            Transport::None(never) => match *never {},
        }
    };
}

impl Transport {
    pub(crate) fn name(&self) -> &'static str {
        on_broker!(self, t => t.name())
    }

    pub(crate) async fn publish(&self, out: &Outbound) -> Result<(), String> {
        on_broker!(self, t => t.publish(out).await)
    }

    /// `durable`: a room or broadcast channel (JetStream consumer filter).
    pub(crate) async fn subscribe(&self, channel: &str, durable: bool) -> Result<(), String> {
        on_broker!(self, t => t.subscribe(channel, durable).await)
    }

    pub(crate) async fn unsubscribe(&self, channel: &str, durable: bool) -> Result<(), String> {
        on_broker!(self, t => t.unsubscribe(channel, durable).await)
    }

    /// After a reconnect, before subscribing again: what the broker may
    /// have lost (a restarted NATS server has no memory stream).
    pub(crate) async fn resync(&self) {
        on_broker!(self, t => t.resync().await)
    }

    pub(crate) fn start(&self, shared: Weak<Shared>) {
        on_broker!(self, t => t.start(shared))
    }

    /// The backplane is gone: stop the tasks and let the connections go.
    pub(crate) fn abort(&self, runtime: &tokio::runtime::Handle) {
        on_broker!(self, t => t.abort(runtime))
    }

    pub(crate) async fn close(&self) {
        on_broker!(self, t => t.close().await)
    }

    /// Whether emits to rooms and broadcasts go through JetStream.
    pub(crate) fn durable(&self) -> bool {
        on_broker!(self, t => t.jetstream())
    }
}
