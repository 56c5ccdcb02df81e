//! The end of the transport (RFC 6455 §7.1.1), decided once for every
//! I/O loop.
//!
//! Once a connection is [`State::Closed`] — the closing handshake done, a
//! protocol failure answered, a timer given up, or the stream ended — the
//! transport must still be ended without losing the last frame: a socket
//! closed while unread input waits makes the kernel send a reset, which can
//! destroy the close frame still in flight. So the output is flushed, the
//! write side is half-closed (the server first, §7.1.1; the client after
//! the server's end of stream), and the peer's remaining input is read and
//! dropped until it closes too — bounded by [`Config::close_timeout`] and
//! [`DRAIN_LIMIT`] bytes, so a peer that never stops cannot hold the
//! connection. [`Connection::close_step`] says which step is next.
//!
//! [`Config::close_timeout`]: crate::Config::close_timeout

use std::time::Instant;

use super::error::ConnectionError;
use super::{Connection, State};
use crate::role::Role;

/// At most this many bytes are read and dropped while waiting for the peer
/// to end the transport.
pub(super) const DRAIN_LIMIT: usize = 1 << 20;

/// What the I/O loop does next with the transport of a closed connection
/// (RFC 6455 §7.1.1), from [`Connection::close_step`]. Wait for each step
/// at most until [`Connection::poll_timeout`]'s deadline, and call
/// [`Connection::handle_timeout`] when it passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseStep {
    /// Write the pending output (a close frame, say), then ask again.
    Flush,
    /// Half-close the transport: shut down its write side (TCP FIN, a TLS
    /// `close_notify`), then ask again. Failures do not matter here.
    ShutdownWrite,
    /// Read once and give what arrived to [`Connection::feed`] or
    /// [`Connection::commit_read`] (it is dropped), or call
    /// [`Connection::handle_eof`] at end of stream; then ask again.
    Drain,
    /// Close the transport: nothing more is worth doing.
    Release,
}

/// Progress of the transport's end.
#[derive(Debug, Default)]
pub(super) struct Teardown {
    /// `CloseStep::ShutdownWrite` was handed out (and not handed back as
    /// pending).
    write_shut: bool,
    /// The driver reported the half-close pending
    /// (`Connection::shutdown_write_pending`): it is handed out again until
    /// it completes or `close_deadline` passes, and that deadline runs even
    /// when nothing else is waited for.
    pub(super) shut_waiting: bool,
    /// The close deadline (`Timers::close_deadline`) was set once closed,
    /// so it bounds the transport's end, not the closing handshake.
    pub(super) deadline_closed: bool,
    /// Bytes read and dropped since the connection closed (at most
    /// `DRAIN_LIMIT` plus one read, so 32 bits hold it).
    pub(super) drained: u32,
}

impl Teardown {
    /// The deadline passed: a pending half-close is not handed out again.
    pub(super) fn give_up_shutdown(&mut self) {
        if self.shut_waiting {
            self.shut_waiting = false;
            self.write_shut = true;
        }
    }
}

impl Connection {
    /// The next step in ending the transport, or `None` while the
    /// connection is not [`State::Closed`].
    pub fn close_step(&mut self) -> Option<CloseStep> {
        if self.tx.state != State::Closed {
            return None;
        }
        let linger = self.should_linger();
        let t = &mut self.teardown;
        if t.shut_waiting && t.write_shut {
            // The half-close handed out again last time was not reported
            // pending: it completed, and nothing waits on it any more.
            t.shut_waiting = false;
        }
        if linger && self.tx.buffered() > 0 {
            return Some(CloseStep::Flush);
        }
        // §7.1.1: the server closes the TCP connection first, a client
        // waits for it. An end that gave up on its peer closes at once.
        if !t.write_shut && (self.tx.role == Role::Server || !linger) {
            t.write_shut = true;
            return Some(CloseStep::ShutdownWrite);
        }
        if linger {
            return Some(CloseStep::Drain);
        }
        if !t.write_shut {
            // A client, once the server ended the stream: let it see our
            // end too, even if the transport is kept around.
            t.write_shut = true;
            return Some(CloseStep::ShutdownWrite);
        }
        Some(CloseStep::Release)
    }

    /// The driver's half-close (`CloseStep::ShutdownWrite`) could not
    /// complete yet (a TLS `close_notify` waiting for the socket): hand it
    /// out again on the next [`Connection::close_step`]. A poll-based driver
    /// cannot wait inside one step as an async one does, so the core bounds
    /// the retries: from the first pending report, [`Connection::poll_timeout`]
    /// returns a deadline even when the connection no longer lingers
    /// (`close_timeout` from now then; the transport's end's deadline while
    /// it lingers), and [`Connection::handle_timeout`] past it gives the
    /// half-close up.
    // A hook of the tokio adapter's poll-based transport end.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn shutdown_write_pending(&mut self, now: Instant) {
        let linger = self.should_linger();
        let t = &mut self.teardown;
        t.write_shut = false;
        if t.shut_waiting {
            return;
        }
        t.shut_waiting = true;
        // An async driver bounded this step by the transport's end's
        // deadline while lingering, else by `close_timeout` from its start.
        if !linger || !t.deadline_closed {
            self.timers.close_deadline = Some(now + self.config.close_timeout);
            t.deadline_closed = true;
        }
    }

    /// Whether nothing more will come out of this connection: it is closed,
    /// no event or error waits to be handed out, and the transport's end
    /// is done ([`Connection::close_step`] says `Release`).
    // A hook of the tokio adapter's `FusedStream`.
    #[cfg_attr(not(feature = "futures"), allow(dead_code))]
    pub(crate) fn is_finished(&self) -> bool {
        self.tx.state == State::Closed
            && self.ready.is_none()
            && self.pending_error.is_none()
            && !self.should_linger()
            && self.teardown.write_shut
    }

    /// Whether, once closed, it is worth waiting for the peer to end the
    /// transport: true after a closing handshake or a protocol failure
    /// (the peer may still be sending; draining its input keeps our close
    /// frame from being lost to a reset), false after a timeout, end of
    /// stream, an abort, or enough input drained.
    pub(crate) fn should_linger(&self) -> bool {
        self.peer_responsive && (self.teardown.drained as usize) < DRAIN_LIMIT
    }

    /// The transport reached end of stream. If the close handshake had not
    /// completed, the connection fails and the next
    /// [`Connection::poll_event`] reports [`ConnectionError::EndOfStream`]
    /// (close code 1006).
    pub fn handle_eof(&mut self) {
        self.release_delivered();
        if self.tx.state == State::Closed {
            self.peer_responsive = false;
        } else {
            self.fail_silently(ConnectionError::EndOfStream);
        }
        self.rx.discard();
    }

    /// Ends the connection at once, without a closing handshake (a
    /// shutdown deadline, a failed write): nothing more is sent or
    /// delivered, pending output is dropped, and [`Connection::close_step`]
    /// goes straight to the transport's end.
    pub fn abort(&mut self) {
        self.release_delivered();
        self.ready = None;
        self.tx.state = State::Closed;
        self.peer_responsive = false;
        self.tx.out.clear();
        self.tx.out_pos = 0;
        self.tx.loan = 0..0;
        self.rx.discard();
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{CloseStep, DRAIN_LIMIT};
    use crate::connection::timers::tests::client_close;
    use crate::{CloseCode, Config, Connection, Message, Role};

    /// Every step until `Release`, with `io` acting on each.
    fn steps(
        conn: &mut Connection,
        mut io: impl FnMut(&mut Connection, CloseStep),
    ) -> Vec<CloseStep> {
        let mut seen = Vec::new();
        while let Some(step) = conn.close_step() {
            seen.push(step);
            if step == CloseStep::Release || seen.len() > 10 {
                break;
            }
            io(conn, step);
        }
        seen
    }

    /// A server that received the client's close and answered it.
    fn closed_by_client() -> Connection {
        let mut conn = Connection::new(Role::Server, Config::default());
        conn.feed(&client_close());
        while conn.poll_event().unwrap().is_some() {}
        conn
    }

    /// Writes all output; reads end of stream.
    fn cooperative(conn: &mut Connection, step: CloseStep) {
        match step {
            CloseStep::Flush => {
                let n = conn.pending_output().len();
                conn.consume_output(n);
            }
            CloseStep::Drain => conn.handle_eof(),
            _ => {}
        }
    }

    #[test]
    fn open_connection_has_no_close_step() {
        let mut conn = Connection::new(Role::Server, Config::default());
        assert_eq!(conn.close_step(), None);
        conn.sender().close(CloseCode::Normal, "").unwrap();
        assert_eq!(conn.close_step(), None, "closing, not closed");
    }

    #[test]
    fn server_flushes_then_half_closes_first_then_drains() {
        // RFC 6455 §7.1.1: the server closes the TCP connection first.
        let mut conn = closed_by_client();
        assert_eq!(
            steps(&mut conn, cooperative),
            [
                CloseStep::Flush,
                CloseStep::ShutdownWrite,
                CloseStep::Drain,
                CloseStep::Release
            ]
        );
    }

    #[test]
    fn client_waits_for_the_servers_end_before_half_closing() {
        let mut client = Connection::new(Role::Client, Config::default());
        client.sender().close(CloseCode::Normal, "bye").unwrap();
        // The server's close reply: unmasked, code 1000.
        client.feed(&[0x88, 0x02, 0x03, 0xe8]);
        while client.poll_event().unwrap().is_some() {}
        assert_eq!(
            steps(&mut client, cooperative),
            [
                CloseStep::Flush,
                CloseStep::Drain,
                CloseStep::ShutdownWrite,
                CloseStep::Release
            ]
        );
    }

    #[test]
    fn a_deadline_ends_the_wait_for_the_peer() {
        let mut conn = closed_by_client();
        let t0 = Instant::now();
        let deadline = conn
            .poll_timeout(t0)
            .expect("the transport's end is bounded");
        assert_eq!(deadline, t0 + Config::default().close_timeout);
        // The peer neither reads nor writes: the flush never completes.
        assert_eq!(conn.close_step(), Some(CloseStep::Flush));
        conn.handle_timeout(deadline - Duration::from_millis(1));
        assert_eq!(conn.close_step(), Some(CloseStep::Flush), "not yet");
        conn.handle_timeout(deadline);
        assert_eq!(conn.close_step(), Some(CloseStep::ShutdownWrite));
        assert_eq!(conn.close_step(), Some(CloseStep::Release));
        assert_eq!(conn.poll_timeout(deadline), None);
    }

    #[test]
    fn draining_stops_at_the_limit() {
        let mut conn = closed_by_client();
        let n = conn.pending_output().len();
        conn.consume_output(n);
        assert_eq!(conn.close_step(), Some(CloseStep::ShutdownWrite));
        let junk = vec![0u8; 64 * 1024];
        let capacity = conn.buffer_capacity();
        let mut fed = 0;
        while conn.close_step() == Some(CloseStep::Drain) {
            conn.feed(&junk);
            fed += junk.len();
            assert!(fed <= DRAIN_LIMIT + junk.len(), "drained past the limit");
        }
        assert!(fed >= DRAIN_LIMIT);
        assert_eq!(
            conn.buffer_capacity(),
            capacity,
            "drained input is not kept"
        );
        assert_eq!(conn.close_step(), Some(CloseStep::Release));
    }

    #[test]
    fn abort_skips_the_flush_and_the_drain() {
        let mut conn = Connection::new(Role::Client, Config::default());
        conn.sender().send(Message::Text("unsent")).unwrap();
        conn.abort();
        assert_eq!(conn.pending_output(), b"");
        assert_eq!(
            steps(&mut conn, cooperative),
            [CloseStep::ShutdownWrite, CloseStep::Release]
        );
    }

    /// A poll-based driver whose half-close stays pending (a TLS
    /// `close_notify` waiting for the socket) gets the step again, within
    /// a deadline that runs although nothing else is waited for.
    #[test]
    fn a_pending_half_close_is_handed_out_again_until_it_completes() {
        let close_timeout = Config::default().close_timeout;
        let mut conn = Connection::new(Role::Server, Config::default());
        conn.abort();
        let t0 = Instant::now();
        assert_eq!(conn.poll_timeout(t0), None, "nothing lingers");
        assert_eq!(conn.close_step(), Some(CloseStep::ShutdownWrite));
        conn.shutdown_write_pending(t0);
        assert!(conn.timers_active());
        assert_eq!(conn.poll_timeout(t0), Some(t0 + close_timeout));
        assert!(!conn.is_finished());
        // Still pending a second later: the deadline runs from the first
        // report, it does not restart.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(conn.close_step(), Some(CloseStep::ShutdownWrite));
        conn.shutdown_write_pending(t1);
        assert_eq!(conn.poll_timeout(t1), Some(t0 + close_timeout));
        // Handed out once more, and this time it completes.
        assert_eq!(conn.close_step(), Some(CloseStep::ShutdownWrite));
        assert_eq!(conn.close_step(), Some(CloseStep::Release));
        assert_eq!(conn.poll_timeout(t1), None);
        assert!(!conn.timers_active());
        assert!(conn.is_finished());
    }

    #[test]
    fn a_pending_half_close_is_given_up_at_its_deadline() {
        let mut conn = Connection::new(Role::Client, Config::default());
        conn.handle_eof();
        assert!(conn.poll_event().is_err());
        let t0 = Instant::now();
        assert_eq!(conn.close_step(), Some(CloseStep::ShutdownWrite));
        conn.shutdown_write_pending(t0);
        let deadline = conn.poll_timeout(t0).expect("bounded");
        conn.handle_timeout(deadline - Duration::from_millis(1));
        assert_eq!(conn.close_step(), Some(CloseStep::ShutdownWrite), "not yet");
        conn.shutdown_write_pending(deadline - Duration::from_millis(1));
        conn.handle_timeout(deadline);
        assert_eq!(conn.close_step(), Some(CloseStep::Release));
        assert_eq!(conn.poll_timeout(deadline), None);
        assert!(conn.is_finished());
    }

    /// While the server lingers, its pending half-close keeps the
    /// transport's end's deadline (as an async driver's step did), and the
    /// drain follows once it completes.
    #[test]
    fn a_lingering_servers_pending_half_close_keeps_the_closed_deadline() {
        let mut conn = closed_by_client();
        let t0 = Instant::now();
        let deadline = conn
            .poll_timeout(t0)
            .expect("the transport's end is bounded");
        assert_eq!(conn.close_step(), Some(CloseStep::Flush));
        let n = conn.pending_output().len();
        conn.consume_output(n);
        assert_eq!(conn.close_step(), Some(CloseStep::ShutdownWrite));
        conn.shutdown_write_pending(t0 + Duration::from_secs(1));
        assert_eq!(
            conn.poll_timeout(t0 + Duration::from_secs(1)),
            Some(deadline)
        );
        assert_eq!(conn.close_step(), Some(CloseStep::ShutdownWrite));
        assert_eq!(conn.close_step(), Some(CloseStep::Drain));
        assert!(!conn.is_finished());
        // The deadline passes while draining: released, nothing waits.
        conn.handle_timeout(deadline);
        assert_eq!(conn.close_step(), Some(CloseStep::Release));
        assert!(conn.is_finished());

        // Pending when the deadline passes: given up, released.
        let mut conn = closed_by_client();
        let deadline = conn.poll_timeout(t0).expect("bounded");
        let n = conn.pending_output().len();
        conn.consume_output(n);
        assert_eq!(conn.close_step(), Some(CloseStep::ShutdownWrite));
        conn.shutdown_write_pending(t0);
        conn.handle_timeout(deadline);
        assert_eq!(conn.close_step(), Some(CloseStep::Release));
    }

    #[test]
    fn a_closed_connection_is_finished_only_once_its_close_is_handed_out() {
        let mut conn = Connection::new(Role::Server, Config::default());
        conn.feed(&client_close());
        assert!(conn.prepare_event().unwrap());
        assert!(!conn.is_finished(), "the close event waits");
        steps(&mut conn, cooperative);
        assert!(!conn.is_finished(), "the close event still waits");
        assert!(conn.poll_event().unwrap().is_some());
        assert!(conn.is_finished());
    }

    #[test]
    fn end_of_stream_while_open_half_closes_at_once() {
        let mut conn = Connection::new(Role::Server, Config::default());
        conn.handle_eof();
        assert!(conn.poll_event().is_err());
        assert_eq!(
            steps(&mut conn, cooperative),
            [CloseStep::ShutdownWrite, CloseStep::Release]
        );
    }
}
