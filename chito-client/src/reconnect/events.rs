//! What the reconnecting client reports: [`ClientEvent`]s, why a
//! connection ended ([`Disconnect`]), why reconnection stopped
//! ([`GiveUp`]), the client's [`ClientState`], and why a send or close was
//! refused ([`SendError`]).

use std::fmt;
use std::time::Duration;

use chito::handshake::UpgradeResponse;
use chito::{CloseCode, CloseFrame};

use crate::ConnectError;

/// Everything that happens to the logical connection, in order, from
/// [`ReconnectingClient::recv`](super::ReconnectingClient::recv).
///
/// A run looks like `Connecting{1}`, `Connected{1, reconnected: false}`,
/// messages…, `Disconnected{cause}`, `RetryIn{n, delay}`, `Connecting{n}`
/// (perhaps `Disconnected`, `RetryIn`, `Connecting` again),
/// `Connected{n, reconnected: true}`, … — `n` is 1 again after a connection
/// that lasted `reset_after`, the next number otherwise — and ends with
/// exactly one of
/// [`ClientEvent::Closed`] (the user's close) or [`ClientEvent::GaveUp`];
/// `recv` returns `None` after it.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A connection attempt starts: the `attempt`-th of this series (see
    /// [`Backoff::max_attempts`](super::Backoff::max_attempts)).
    Connecting {
        /// 1-based number of the attempt in the current series.
        attempt: u32,
    },
    /// The handshake succeeded; the `on_connected` hook has run and held
    /// messages are being sent.
    Connected {
        /// The attempt that succeeded.
        attempt: u32,
        /// The server's `101` answer (subprotocol, extensions, headers).
        response: UpgradeResponse,
        /// False for the client's first connection, true for every later
        /// one.
        reconnected: bool,
    },
    /// A text message from the server.
    Text(String),
    /// A binary message from the server.
    Binary(Vec<u8>),
    /// A connection ended, or an attempt failed, by no wish of the user's.
    Disconnected {
        /// Why.
        cause: Disconnect,
    },
    /// The next attempt starts after `delay`.
    RetryIn {
        /// The number the next attempt will have.
        attempt: u32,
        /// The wait, drawn by the [`Backoff`](super::Backoff).
        delay: Duration,
    },
    /// Reconnection stopped; the last event.
    GaveUp {
        /// Why.
        cause: GiveUp,
    },
    /// The user's [`close`](super::ReconnectingClient::close) is done; the
    /// last event.
    Closed,
}

/// Why a connection ended or an attempt failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Disconnect {
    /// The server sent a close frame (RFC 6455 §5.5.1; `None`: it had no
    /// code, §7.1.5 "1005"). The close was answered.
    Closed(Option<CloseFrame<'static>>),
    /// No pong (or anything else) arrived within the keepalive's
    /// `pong_timeout` after a ping: the server or the path is dead
    /// without having said so (no FIN, no RST).
    KeepaliveTimeout,
    /// The transport failed or ended without a close frame (RFC 6455
    /// §7.1.5: code 1006), or the server broke the protocol.
    Transport(chito::Error),
    /// The connection could not be opened; [`ConnectError::hop`] names the
    /// step that failed.
    Connect(ConnectError),
}

impl fmt::Display for Disconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Disconnect::Closed(Some(frame)) => {
                write!(f, "server closed ({} {:?})", frame.code, frame.reason)
            }
            Disconnect::Closed(None) => f.write_str("server closed (no code)"),
            Disconnect::KeepaliveTimeout => f.write_str("keepalive timeout"),
            Disconnect::Transport(e) => write!(f, "transport: {e}"),
            Disconnect::Connect(e) => write!(f, "connect ({}): {e}", e.hop()),
        }
    }
}

/// Why reconnection stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GiveUp {
    /// This many attempts in a row failed (or connected too briefly),
    /// the [`Backoff`](super::Backoff)'s limit.
    MaxAttempts(u32),
    /// The server closed with a code in the client's `final_close_codes`.
    FinalCloseCode(CloseCode),
    /// The URL or request cannot be sent at all: retrying cannot help.
    InvalidRequest,
}

impl fmt::Display for GiveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GiveUp::MaxAttempts(n) => write!(f, "gave up after {n} attempts"),
            GiveUp::FinalCloseCode(code) => write!(f, "server closed with final code {code}"),
            GiveUp::InvalidRequest => f.write_str("the request cannot be sent"),
        }
    }
}

/// Where the client is, from [`ReconnectingClient::state`](super::ReconnectingClient::state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// An attempt is under way.
    Connecting,
    /// A connection is up (held messages may still be moving into it).
    Connected,
    /// Waiting for the backoff's delay before the next attempt.
    WaitingToRetry,
    /// Ended: closed by the user, or reconnection gave up.
    Closed,
}

/// Which bound of [`Outbox::Hold`](super::Outbox::Hold) refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldLimit {
    /// `max_messages` messages are held already.
    Messages(usize),
    /// The message would take the held bytes over `max_bytes`.
    Bytes(usize),
}

/// Why a send (or a close) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// Not connected, and the client's policy is
    /// [`Outbox::Reject`](super::Outbox::Reject).
    Disconnected,
    /// Not connected, and the hold queue has no room for the message.
    HoldFull(HoldLimit),
    /// The client is closing or has ended (the user's close, or it gave
    /// up): nothing more can be sent.
    Closed,
    /// A close code that may not be sent (RFC 6455 §7.4.1: 1005, 1006,
    /// 1015, reserved ranges) or a reason over 123 bytes (§5.5); nothing
    /// changed.
    InvalidClose,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Disconnected => {
                f.write_str("not connected (messages are rejected meanwhile)")
            }
            SendError::HoldFull(HoldLimit::Messages(n)) => {
                write!(f, "not connected and {n} messages are held already")
            }
            SendError::HoldFull(HoldLimit::Bytes(n)) => {
                write!(
                    f,
                    "not connected and the message would pass the {n} held bytes"
                )
            }
            SendError::Closed => f.write_str("the client is closed"),
            SendError::InvalidClose => f.write_str("close code or reason may not be sent"),
        }
    }
}

impl std::error::Error for SendError {}
