//! Time, injected: keepalive pings, the pong timeout, the idle timeout and
//! the close-handshake timeout (RFC 6455 §5.5.2, §7.1.1), computed from the
//! `now` the I/O loop passes in. The core never reads the clock.

use std::time::Instant;

use super::error::ConnectionError;
use super::{Connection, State};
use crate::close::CloseCode;
use crate::frame::OpCode;

/// Timer bookkeeping. Deadlines are computed lazily from the `now` given
/// to [`Connection::poll_timeout`] and [`Connection::handle_timeout`].
#[derive(Debug, Default)]
pub(super) struct Timers {
    /// When bytes last arrived (or the connection started).
    last_rx: Option<Instant>,
    last_ping: Option<Instant>,
    /// While closing: when to stop waiting for the peer's close frame.
    /// Once closed: when to stop waiting for the peer to end the transport
    /// (then `Teardown::deadline_closed` is set).
    pub(super) close_deadline: Option<Instant>,
}

impl Connection {
    /// Whether any timer can run: false while the connection is open with
    /// neither a keepalive nor an idle timeout configured, and once closed
    /// with nothing left to wait for. Then [`Connection::poll_timeout`]
    /// would return `None`, so an I/O loop may skip reading the clock.
    // A hook of the tokio adapter's loop and buffer pool.
    #[cfg_attr(
        not(any(feature = "tokio", all(feature = "uring", target_os = "linux"))),
        allow(dead_code)
    )]
    pub(crate) fn timers_active(&self) -> bool {
        let c = &self.config;
        match self.tx.state {
            State::Open => {
                self.awaiting_pong || c.ping_interval.is_some() || c.idle_timeout.is_some()
            }
            State::Closing => true,
            State::Closed => self.should_linger() || self.teardown.shut_waiting,
        }
    }

    /// When [`Connection::handle_timeout`] should next be called, or `None`
    /// if no timer runs. Call it after feeding input, sending, or handling
    /// a timeout, with the current time. Once closed, it bounds the steps
    /// of [`Connection::close_step`] by [`crate::Config::close_timeout`].
    pub fn poll_timeout(&mut self, now: Instant) -> Option<Instant> {
        self.note_activity(now);
        let pong_deadline = self.pong_deadline();
        let closed = self.tx.state == State::Closed;
        if closed && !self.should_linger() {
            // Only a pending half-close may still be waited for, bounded
            // by its own deadline (`Connection::shutdown_write_pending`).
            return self
                .teardown
                .shut_waiting
                .then_some(self.timers.close_deadline)
                .flatten();
        }
        let t = &mut self.timers;
        let c = &self.config;
        // The close timeout restarts when the connection closes: the
        // transport's end gets its own `close_timeout`.
        let set_in_closed = &mut self.teardown.deadline_closed;
        if self.tx.state != State::Open && (t.close_deadline.is_none() || *set_in_closed != closed)
        {
            t.close_deadline = Some(now + c.close_timeout);
            *set_in_closed = closed;
        }
        if closed {
            return t.close_deadline;
        }
        let last_rx = t.last_rx.unwrap_or(now);
        let mut next: Option<Instant> = t.close_deadline;
        let mut consider = |deadline: Option<Instant>| {
            if let Some(d) = deadline {
                next = Some(next.map_or(d, |n| n.min(d)));
            }
        };
        consider(pong_deadline);
        if self.tx.state == State::Open {
            if let Some(interval) = c.ping_interval {
                if pong_deadline.is_none() {
                    let since = t.last_ping.map_or(last_rx, |p| p.max(last_rx));
                    consider(Some(since + interval));
                }
            }
            if let Some(idle) = c.idle_timeout {
                consider(Some(last_rx + idle));
            }
        }
        next
    }

    /// Runs the timers due at `now`: sends keepalive pings, closes idle
    /// connections (1001), fails connections whose peer stopped answering
    /// (reported once by [`Connection::poll_event`]), and, once closed,
    /// stops waiting for the peer to end the transport.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.note_activity(now);
        let expired = |deadline: Option<Instant>| deadline.is_some_and(|d| d <= now);
        if self.tx.state == State::Closed {
            if self.teardown.deadline_closed && expired(self.timers.close_deadline) {
                self.peer_responsive = false;
                self.teardown.give_up_shutdown();
            }
            return;
        }
        let pong_deadline = self.pong_deadline();
        if !self.teardown.deadline_closed && expired(self.timers.close_deadline) {
            self.fail_silently(ConnectionError::CloseTimeout);
            return;
        }
        if expired(pong_deadline) {
            // The peer is gone or stuck; a close frame would not be read.
            self.fail_silently(ConnectionError::KeepaliveTimeout);
            return;
        }
        if self.tx.state != State::Open {
            return;
        }
        let t = &mut self.timers;
        let c = &self.config;
        let last_rx = t.last_rx.unwrap_or(now);
        if let Some(idle) = c.idle_timeout {
            if last_rx + idle <= now {
                self.tx.write_close(CloseCode::GoingAway, "idle timeout");
                t.close_deadline = Some(now + c.close_timeout);
                return;
            }
        }
        if let Some(interval) = c.ping_interval {
            let since = t.last_ping.map_or(last_rx, |p| p.max(last_rx));
            if !self.awaiting_pong && since + interval <= now {
                self.tx.write_frame(OpCode::Ping, true, b"chito");
                t.last_ping = Some(now);
                self.awaiting_pong = true;
            }
        }
    }

    /// When the outstanding keepalive ping, if any, stops being answerable.
    fn pong_deadline(&self) -> Option<Instant> {
        let sent = self.timers.last_ping.filter(|_| self.awaiting_pong)?;
        Some(sent + self.config.pong_timeout)
    }

    /// Any input proves the peer alive: it restarts the idle clock and
    /// satisfies an outstanding keepalive ping.
    fn note_activity(&mut self, now: Instant) {
        if self.rx.activity || self.timers.last_rx.is_none() {
            self.rx.activity = false;
            self.timers.last_rx = Some(now);
            self.awaiting_pong = false;
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::time::{Duration, Instant};

    use crate::{CloseCode, Config, Connection, Role, State};

    /// A close frame with code 1000, masked as a client sends it.
    pub(crate) fn client_close() -> Vec<u8> {
        let key = [1, 2, 3, 4];
        let body = 1000u16.to_be_bytes();
        let mut frame = vec![0x88, 0x82];
        frame.extend(key);
        frame.extend(body.iter().zip(key).map(|(byte, k)| byte ^ k));
        frame
    }

    #[test]
    fn timers_active_agrees_with_poll_timeout() {
        let t0 = Instant::now();
        let close_timeout = Config::default().close_timeout;
        // No keepalive, no idle timeout: nothing to wake for while open.
        let mut conn = Connection::new(Role::Server, Config::default());
        assert!(!conn.timers_active());
        assert_eq!(conn.poll_timeout(t0), None);
        // Closing: the close handshake has a deadline (§7.1.1).
        conn.sender().close(CloseCode::Normal, "").unwrap();
        assert!(conn.timers_active());
        assert_eq!(conn.poll_timeout(t0), Some(t0 + close_timeout));
        // Closed: the transport's end gets a close timeout of its own ...
        conn.feed(&client_close());
        while conn.poll_event().unwrap().is_some() {}
        assert_eq!(conn.state(), State::Closed);
        let t1 = t0 + Duration::from_secs(1);
        assert!(conn.timers_active());
        assert_eq!(conn.poll_timeout(t1), Some(t1 + close_timeout));
        // ... and once the peer has ended the stream, nothing runs.
        conn.handle_eof();
        assert!(!conn.timers_active());
        assert_eq!(conn.poll_timeout(t1), None);
        // A keepalive or an idle timeout runs from the start.
        for keepalive in [true, false] {
            let mut config = Config::default();
            if keepalive {
                config.ping_interval = Some(Duration::from_secs(10));
            } else {
                config.idle_timeout = Some(Duration::from_secs(10));
            }
            let mut conn = Connection::new(Role::Server, config);
            assert!(conn.timers_active());
            assert_eq!(conn.poll_timeout(t0), Some(t0 + Duration::from_secs(10)));
        }
    }
}
