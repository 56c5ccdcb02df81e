//! Limits and timers, in one place, with their defaults and what happens at
//! each limit.

use std::time::Duration;

/// Connection limits and timers: the protocol's, shared by every adapter.
/// (What only an adapter has — its handshake timeout, the bound of a
/// tokio handle's queue — is set on that adapter's `Builder`.)
///
/// Start from [`Config::default`] and change fields; the struct is
/// `#[non_exhaustive]` so new limits can be added without breaking you.
///
/// | field | default | at the limit |
/// |---|---|---|
/// | `max_frame_size` | 16 MiB | close 1009 |
/// | `max_message_size` | 64 MiB | close 1009 |
/// | `max_fragments` | 131 072 | close 1009 |
/// | `auto_pong` | on | — |
/// | `max_pending_pong_bytes` | 64 KiB | only the latest ping's pong is kept, sent when output drains |
/// | `read_chunk_size` | 4 KiB | — |
/// | `ping_interval` | off | — |
/// | `pong_timeout` | 30 s | connection fails, [`crate::ConnectionError::KeepaliveTimeout`] |
/// | `idle_timeout` | off | close 1001 |
/// | `close_timeout` | 10 s | connection ends, [`crate::ConnectionError::CloseTimeout`]; also bounds the transport's end |
/// | `max_handshake_size` | 16 KiB | HTTP 431 |
/// | `max_handshake_headers` | 64 | HTTP 431 |
///
/// Memory: an incoming frame is held in the read buffer until complete, so
/// the read buffer grows (doubling, as bytes actually arrive, never on the
/// strength of a declared length) up to `max_frame_size` plus a header; a
/// fragmented message is assembled in a second buffer of at most
/// `max_message_size`. Fragments are stored contiguously, so many tiny
/// fragments cost no more memory than one large one.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The largest payload accepted in one frame.
    pub max_frame_size: usize,
    /// The largest message accepted (all fragments together).
    pub max_message_size: usize,
    /// The most frames one message may be split into. Autobahn 9.3/9.4 send
    /// 4 MiB in 64-byte fragments (65 536 frames), so keep it above that if
    /// you want to pass them.
    pub max_fragments: usize,
    /// Answer pings with pongs automatically (RFC 6455 §5.5.2: an endpoint
    /// MUST answer a ping). Turn off only if you answer them yourself.
    pub auto_pong: bool,
    /// Automatic pongs wait while more than this many output bytes
    /// are waiting to be written: the latest ping's payload is kept and
    /// answered once the output drains below this, so a peer that floods
    /// pings without reading cannot grow the output buffer (§5.5.3 lets an
    /// endpoint answer only the most recent ping).
    pub max_pending_pong_bytes: usize,
    /// How much free space [`crate::Connection::read_buf`] offers at least.
    /// The read buffer is allocated on first use.
    pub read_chunk_size: usize,
    /// Send a ping after this long without receiving anything.
    pub ping_interval: Option<Duration>,
    /// Fail the connection if nothing arrives this long after a keepalive ping.
    pub pong_timeout: Duration,
    /// Close the connection (1001) after this long without receiving anything.
    pub idle_timeout: Option<Duration>,
    /// After sending a close frame, give up waiting for the peer's reply
    /// after this long; once closed, give up waiting for the peer to end
    /// the transport (RFC 6455 §7.1.1) after this long.
    pub close_timeout: Duration,
    /// The largest HTTP head (request line or status line plus headers)
    /// accepted during the opening handshake.
    pub max_handshake_size: usize,
    /// The most header fields accepted during the opening handshake.
    pub max_handshake_headers: usize,
    /// permessage-deflate (RFC 7692): `None` neither offers (client) nor
    /// accepts (server) it. The default accepts and offers it **without
    /// context takeover** in both directions, so a connection holds no
    /// compression state between messages (zlib states are borrowed from a
    /// per-thread pool for the length of one message). Context takeover
    /// compresses repetitive traffic better at a cost of about 371 KiB
    /// (compressor, 15-bit window) + 46 KiB (decompressor) per connection;
    /// see [`crate::deflate::DeflateConfig`].
    #[cfg(feature = "deflate")]
    pub deflate: Option<crate::deflate::DeflateConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame_size: 16 << 20,
            max_message_size: 64 << 20,
            max_fragments: 1 << 17,
            auto_pong: true,
            max_pending_pong_bytes: 64 << 10,
            read_chunk_size: 4096,
            ping_interval: None,
            pong_timeout: Duration::from_secs(30),
            idle_timeout: None,
            close_timeout: Duration::from_secs(10),
            max_handshake_size: 16 << 10,
            max_handshake_headers: 64,
            #[cfg(feature = "deflate")]
            deflate: Some(
                crate::deflate::DeflateConfig::default()
                    .with_server_no_context_takeover(true)
                    .with_client_no_context_takeover(true),
            ),
        }
    }
}

impl Config {
    /// The default configuration as one shared `Arc`: the adapters build
    /// connections from it, so they share a single copy instead of each
    /// carrying its own.
    pub(crate) fn shared_default() -> std::sync::Arc<Config> {
        static DEFAULT: std::sync::OnceLock<std::sync::Arc<Config>> = std::sync::OnceLock::new();
        DEFAULT
            .get_or_init(|| std::sync::Arc::new(Config::default()))
            .clone()
    }
}
