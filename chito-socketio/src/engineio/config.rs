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
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            max_payload: 1_000_000,
            upgrade_timeout: Duration::from_millis(10_000),
            allow_upgrades: true,
        }
    }
}
