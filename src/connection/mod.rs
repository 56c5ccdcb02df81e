//! The post-handshake connection: a sans-IO state machine (RFC 6455 §5–§7).
//!
//! Bytes in, events out; messages in, bytes out. A [`Connection`] never
//! touches a socket and never reads the clock. An I/O loop drives it:
//!
//! 1. Put received bytes in with [`Connection::feed`] (copies), or read
//!    straight into [`Connection::read_buf`] and [`Connection::commit_read`]
//!    (no copy). At end of stream, [`Connection::handle_eof`].
//! 2. Take events with [`Connection::poll_event`] until it returns `None`.
//!    Message payloads are borrowed from the connection's buffers: a
//!    message that arrived in one frame is handed out in place (no copy);
//!    a fragmented message is assembled once into a reused buffer. Each
//!    event comes with a [`Sender`] for replies.
//! 3. Send through a [`Sender`] ([`Connection::sender`], or the one an
//!    event came with): frames are encoded into the output buffer (one
//!    copy of the payload, masked in place by a client). A
//!    [`SharedMessage`] for many connections is encoded once.
//! 4. Write [`Connection::pending_output`] to the transport and report how
//!    much went with [`Connection::consume_output`]. A large message sent
//!    straight back from a received one (an echo, a relay) is written from
//!    the input buffer, not copied: [`Connection::pending_output_vectored`]
//!    gives all pieces for one vectored write.
//! 5. Drive timers with [`Connection::poll_timeout`] and
//!    [`Connection::handle_timeout`].
//! 6. Once [`State::Closed`], follow [`Connection::close_step`] to end the
//!    transport without losing the last frame (RFC 6455 §7.1.1).
//!
//! The files of this module follow those seams: `receive` (frames in,
//! events out), `send` ([`Sender`], frames out), `output` (what waits to be
//! written), `buffers` and `pool` (input space, idle memory, per-thread
//! buffer pools), `timers`, `closing`
//! (the transport's end), `shared` (encode once, send many), `event` and
//! `error` (the types).

mod buffers;
mod closing;
mod error;
mod event;
mod output;
mod pool;
mod receive;
mod send;
mod shared;
mod timers;

use std::sync::Arc;

use crate::config::Config;
use crate::handshake::Negotiated;
use crate::rand::Rng;
use crate::role::Role;

pub use closing::CloseStep;
pub use error::{ConnectionError, InternalError, ProtocolError, SendError, UsageError};
pub use event::{Event, Message, MessageKind, OwnedEvent};
pub use send::Sender;
#[cfg(any(feature = "tokio", all(feature = "uring", target_os = "linux")))]
pub(crate) use send::{check_close, check_control};
pub use shared::{SharedBatch, SharedMessage};

use closing::Teardown;
use receive::{ControlPayload, Ready, Rx};
use send::Tx;
use timers::Timers;

/// The closing state (RFC 6455 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// We sent a close frame and wait for the peer's; incoming messages are
    /// still delivered, nothing more can be sent.
    Closing,
    /// The close handshake is complete, or the connection failed. Follow
    /// [`Connection::close_step`] to end the transport.
    Closed,
}

/// The sans-IO WebSocket connection.
#[derive(Debug)]
pub struct Connection {
    /// Shared by every connection built from the same `Arc` (an idle
    /// connection should not carry its own copy of the limits).
    config: Arc<Config>,
    negotiated: Negotiated,
    rx: Rx,
    tx: Tx,
    timers: Timers,
    /// Why the connection failed, reported once by `poll_event`.
    pending_error: Option<ConnectionError>,
    /// An event found by `prepare_event`, not yet handed out.
    ready: Option<Ready>,
    /// Whether the peer is still worth waiting for once closed (false after
    /// a timeout or end of stream).
    peer_responsive: bool,
    /// A keepalive ping was sent at `timers.last_ping` and nothing has
    /// arrived since. (Here, not in `Timers`: it fits in padding.)
    awaiting_pong: bool,
    /// Progress of the transport's end once closed (§7.1.1).
    teardown: Teardown,
    /// The latest ping's payload, while its pong waits for the output to
    /// drain below `Config::max_pending_pong_bytes`.
    deferred_pong: Option<Box<ControlPayload>>,
}

impl Connection {
    /// A connection that starts open, with nothing negotiated and nothing
    /// read yet.
    pub fn new(role: Role, config: impl Into<Arc<Config>>) -> Connection {
        Connection::with_negotiated(role, config, Negotiated::default(), &[])
    }

    /// A connection taking over after an opening handshake
    /// ([`crate::handshake`], or one a framework such as hyper did):
    /// `leftover` holds bytes that were read past the end of the handshake
    /// and already belong to the WebSocket stream.
    pub fn with_negotiated(
        role: Role,
        config: impl Into<Arc<Config>>,
        negotiated: Negotiated,
        leftover: &[u8],
    ) -> Connection {
        let config = config.into();
        #[cfg(feature = "deflate")]
        let (deflater, inflater, compress_threshold) = compression_for(role, &config, &negotiated);
        let mut conn = Connection {
            config,
            negotiated,
            rx: Rx::new(
                #[cfg(feature = "deflate")]
                inflater,
            ),
            tx: Tx::new(
                role,
                (role == Role::Client).then(|| Box::new(Rng::new())),
                #[cfg(feature = "deflate")]
                deflater,
                #[cfg(feature = "deflate")]
                compress_threshold,
            ),
            timers: Timers::default(),
            pending_error: None,
            ready: None,
            peer_responsive: true,
            awaiting_pong: false,
            teardown: Teardown::default(),
            deferred_pong: None,
        };
        if !leftover.is_empty() {
            conn.feed(leftover);
        }
        conn
    }

    /// Client or server.
    pub fn role(&self) -> Role {
        self.tx.role
    }

    /// The closing state.
    pub fn state(&self) -> State {
        self.tx.state
    }

    /// What the handshake negotiated.
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// The limits in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Records a failure that ends the connection without a closing
    /// handshake; `poll_event` reports it once.
    fn fail_silently(&mut self, error: ConnectionError) {
        self.peer_responsive = false;
        self.tx.state = State::Closed;
        self.pending_error = Some(error);
    }
}

/// The compressor and decompressor a connection needs for what was
/// negotiated, and its compression threshold.
#[cfg(feature = "deflate")]
fn compression_for(
    role: Role,
    config: &Config,
    negotiated: &Negotiated,
) -> (
    Option<Box<crate::deflate::Deflater>>,
    Option<Box<crate::deflate::Inflater>>,
    usize,
) {
    let Some(params) = negotiated.deflate else {
        return (None, None, 0);
    };
    let settings = config.deflate.clone().unwrap_or_default();
    // A compressor that cannot be built (it would need a window zlib lacks)
    // leaves messages uncompressed, which RFC 7692 §6 always allows.
    let deflater = params
        .deflater(role, settings.effective_level())
        .ok()
        .map(Box::new);
    (
        deflater,
        Some(Box::new(params.inflater(role))),
        settings.threshold,
    )
}

#[cfg(test)]
mod size_guard {
    /// An idle connection's fixed cost is this struct (buffers are released
    /// when idle): keep it small. Compression state and the client's RNG
    /// are boxed so connections without them do not pay for them. At 376
    /// bytes its allocation, with malloc's 8-byte header, fills a 384-byte
    /// chunk; a few bytes more cost 32 per connection.
    #[test]
    fn connection_state_stays_small() {
        let size = std::mem::size_of::<super::Connection>();
        assert!(size <= 376, "Connection grew to {size} bytes");
    }
}
