//! The Engine.IO limits and timers a session runs with (docs/socketio.md
//! §9; defaults are the JavaScript server's).

use std::time::Duration;

/// An Engine.IO server's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// How long after the open packet (and after each pong) the server
    /// sends a ping (`pingInterval`, 25 000 ms).
    pub ping_interval: Duration,
    /// How long the client has to answer a ping (`pingTimeout`, 20 000 ms).
    pub ping_timeout: Duration,
    /// The largest polling body, and WebSocket message, either side may
    /// send (`maxPayload`, JS `maxHttpBufferSize`, 1 000 000 bytes).
    pub max_payload: usize,
    /// How long a probing WebSocket has to send `5` (`upgradeTimeout`,
    /// 10 000 ms).
    pub upgrade_timeout: Duration,
    /// Whether polling sessions may upgrade to WebSocket (the open
    /// packet's `upgrades`).
    pub allow_upgrades: bool,
    /// The most bytes of application messages a session may have waiting
    /// for its client (the polling queue, or the WebSocket queue before
    /// chito's own, alike; docs/socketio.md §9: 1 MiB). Control packets
    /// (ping, noop, close, `3probe`) are not refused: the state machine
    /// already bounds them to a few at a time, and refusing a ping would
    /// make a slow client look dead.
    pub max_queued_bytes: usize,
    /// What a message that would pass `max_queued_bytes` does.
    pub queue_overflow: QueueOverflow,
}

/// What happens to a message sent to a session whose queue is full
/// (docs/socketio.md §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueOverflow {
    /// The message is not queued and the sender is told
    /// ([`SendError::Full`](super::session::SendError::Full)); the session
    /// goes on. The default, as chito's `Overflow::Reject`: one slow
    /// moment of one member (a room emit, a phone on a bad network) must
    /// not disconnect it, the sender can decide (a volatile emit simply
    /// skips), and a client that is truly gone is closed anyway by the
    /// heartbeat within `pingInterval + pingTimeout`, so memory stays
    /// bounded either way.
    #[default]
    Reject,
    /// The session is closed as a slow consumer (`transport error`;
    /// WebSocket close 1008, a parked GET answered `1`) and its queue
    /// dropped: for applications that prefer a reconnect (and state
    /// recovery) to a gap in the stream.
    CloseSession,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            max_payload: 1_000_000,
            upgrade_timeout: Duration::from_millis(10_000),
            allow_upgrades: true,
            max_queued_bytes: 1 << 20,
            queue_overflow: QueueOverflow::Reject,
        }
    }
}
