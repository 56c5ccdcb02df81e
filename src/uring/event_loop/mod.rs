//! One loop: a ring, a slab of connections, a timer heap, and the turn of
//! docs/uring.md §6.1 —
//!
//! 1. submit everything pushed and wait for a completion, a deadline or a
//!    wake-up (one `io_uring_enter`);
//! 2. handle each completion (`completions.rs`): accepted sockets get a
//!    slot, received bytes go into the handshake or the `Connection` and
//!    the buffer goes back, finished sends free their buffer or send the
//!    rest;
//! 3. take the connections other threads woke, apply shutdown, run due
//!    timers;
//! 4. serve every connection marked ready once: dispatch events to the
//!    handler, move `Handle` messages in, hand the output to one send,
//!    walk the transport's end (RFC 6455 §7.1.1), re-arm the receive,
//!    release idle buffers, and set the next deadline.

use std::io;
use std::net::{Shutdown as HowShutdown, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chito_ring::{Op, Ring, MAX_TAG};

use super::send_buffers::SendBuffers;
use super::slab::{Open as OpenConn, Phase, Slab, Slot};
use super::timers::Timers;
use super::wake::{Extras, LoopShared, ABORT, GOING_AWAY, RUNNING};
use super::{Open, Settings};
use crate::close::CloseCode;
use crate::connection::{CloseStep, State};
use crate::error::Error;
use crate::handler::{dispatch_while, end_with_error, Flow, Handler};

mod completions;

/// The tag of the multishot accept.
const ACCEPT_TAG: u64 = MAX_TAG;
/// The tag of the eventfd's multishot poll.
const WAKE_TAG: u64 = MAX_TAG - 1;

/// `Handle` messages are encoded into a connection only while less than
/// this much output waits, and its receive is paused above it while a
/// send is in flight: a peer that does not read stops being read from
/// (TCP flow control then holds it), so its memory stays bounded.
const OUTPUT_HIGH_WATER: usize = 256 * 1024;

/// A connection is served at once, within the turn's completions, when
/// this much received input waits in it undispatched. Otherwise a turn
/// feeds every receive first: a flood could put the whole buffer pool
/// (4 MiB by default) into one connection's input buffer before any of it
/// is taken apart, where the core's limits (pong backlog, output mark)
/// would see it only afterwards.
const INPUT_HIGH_WATER: usize = 256 * 1024;

/// How long a failed accept (EMFILE, ENFILE, ENOBUFS…) waits before the
/// accept is armed again: the server goes on, without spinning.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// What a completion leaves to do once the ring is free again.
enum Follow {
    Nothing,
    /// Send `buffer[from..]` for the slot at this index.
    Send(u32, Vec<u8>, usize),
    /// Serve the slot at this index now (`INPUT_HIGH_WATER`).
    Serve(u32),
}

/// A loop and everything it owns except the ring (so that a completion,
/// which borrows the ring, can update it).
pub(super) struct Core<F, H> {
    slab: Slab<H>,
    timers: Timers,
    shared: Arc<LoopShared>,
    settings: Arc<Settings>,
    listener: Option<TcpListener>,
    new_handler: F,
    /// Send buffers to reuse, and output queued behind sends in flight.
    send_buffers: SendBuffers,
    /// Slots to serve this turn (each once: `Slot::ready`).
    ready: Vec<u32>,
    /// Tags taken from the cross-thread queue (kept for its capacity).
    woken: Vec<u64>,
    /// This turn's clock, read at most once and only when needed.
    now: Option<Instant>,
    accepting: bool,
    rearm_accept: bool,
    accept_retry: Option<Instant>,
    rearm_wake: bool,
    /// The shutdown state already applied.
    shutdown_seen: u8,
    /// Connections past the handshake (for `Shutdown::live_connections`).
    open: usize,
}

/// Runs one loop on this thread until its shutdown completes.
pub(super) fn run<F, H>(
    listener: TcpListener,
    settings: Arc<Settings>,
    new_handler: F,
) -> io::Result<()>
where
    F: FnMut(&mut Open<'_>) -> H,
    H: Handler,
{
    let mut ring = Ring::new(&settings.ring).map_err(|e| io::Error::other(e.to_string()))?;
    let shared = Arc::new(LoopShared::new()?);
    let registration = settings
        .shutdown
        .as_ref()
        .map(|shutdown| shutdown.register_loop(shared.clone()));
    if settings.shutdown.as_ref().is_some_and(|s| s.is_triggered()) {
        crate::shutdown::LoopMember::going_away(&*shared);
    }
    let mut core = Core {
        slab: Slab::new(),
        timers: Timers::default(),
        shared,
        settings,
        listener: Some(listener),
        new_handler,
        send_buffers: SendBuffers::default(),
        ready: Vec::new(),
        woken: Vec::new(),
        now: None,
        accepting: false,
        rearm_accept: true,
        accept_retry: None,
        rearm_wake: true,
        shutdown_seen: RUNNING,
        open: 0,
    };
    let result = core.run(&mut ring);
    // The ring first (its drop waits for what is in flight), then the
    // connections, then the registration: shutdown completes last.
    drop(ring);
    drop(core);
    drop(registration);
    result
}

impl<F, H> Core<F, H>
where
    F: FnMut(&mut Open<'_>) -> H,
    H: Handler,
{
    fn run(&mut self, ring: &mut Ring) -> io::Result<()> {
        loop {
            self.arm_loop_ops(ring)?;
            self.now = None;
            let timeout = self.wait_timeout();
            let timeout = if self.shared.sleep() {
                Some(Duration::ZERO)
            } else {
                timeout
            };
            let waited = ring.submit_and_wait(timeout);
            self.shared.awake();
            waited?;
            self.now = None;
            loop {
                let Some(completion) = ring.next_completion() else {
                    break;
                };
                let follow = self.complete(completion);
                self.follow(ring, follow);
            }
            self.take_wakes();
            self.apply_shutdown(ring);
            self.run_timers();
            while let Some(index) = self.ready.pop() {
                self.serve(ring, index);
            }
            self.shared.set_live(self.open);
            if self.shutdown_seen != RUNNING && self.slab.used() == 0 && !self.accepting {
                return Ok(());
            }
        }
    }

    /// This turn's clock.
    fn now(&mut self) -> Instant {
        *self.now.get_or_insert_with(Instant::now)
    }

    /// The accept and the wake-up poll, armed again when they ended.
    fn arm_loop_ops(&mut self, ring: &mut Ring) -> io::Result<()> {
        if self.rearm_wake {
            ring.poll_readable(self.shared.event().as_fd(), WAKE_TAG)?;
            self.rearm_wake = false;
        }
        let retry_due = match self.accept_retry {
            Some(at) => self.now() >= at,
            None => true,
        };
        if self.rearm_accept && retry_due && self.shutdown_seen == RUNNING {
            if let Some(listener) = &self.listener {
                ring.accept_multi(listener.as_fd(), ACCEPT_TAG)?;
                self.accepting = true;
                self.rearm_accept = false;
                self.accept_retry = None;
            }
        }
        Ok(())
    }

    /// How long the wait may last: until the earliest deadline (the clock
    /// is read only if one is armed).
    fn wait_timeout(&mut self) -> Option<Duration> {
        let mut timeout = None;
        if !self.timers.is_empty() {
            let now = self.now();
            timeout = self.timers.timeout(now);
        }
        if let Some(at) = self.accept_retry {
            let now = self.now();
            let retry = at.saturating_duration_since(now);
            timeout = Some(timeout.map_or(retry, |t: Duration| t.min(retry)));
        }
        timeout
    }

    fn mark_ready(ready: &mut Vec<u32>, index: u32, slot: &mut Slot<H>) {
        if !slot.ready {
            slot.ready = true;
            ready.push(index);
        }
    }

    fn follow(&mut self, ring: &mut Ring, follow: Follow) {
        match follow {
            Follow::Nothing => {}
            Follow::Send(index, buffer, from) => self.send(ring, index, buffer, from),
            // Still in this turn's ready list: served again at its end,
            // which is harmless (serving is idempotent).
            Follow::Serve(index) => self.serve(ring, index),
        }
    }

    /// Submits `buffer[from..]` for the slot at `index`.
    fn send(&mut self, ring: &mut Ring, index: u32, buffer: Vec<u8>, from: usize) {
        let Some(slot) = self.slab.at_mut(index) else {
            return;
        };
        let Some(stream) = slot.stream.as_ref() else {
            return;
        };
        let len = buffer.len().saturating_sub(from);
        match ring.send(stream.as_fd(), buffer, from, slot.tag(index)) {
            Ok(()) => {
                slot.ops += 1;
                slot.sending = true;
                slot.send_from = from;
                slot.send_len = len;
            }
            Err(error) => Self::fail(slot, error),
        }
        Self::mark_ready(&mut self.ready, index, slot);
    }

    /// Marks the connections other threads woke.
    fn take_wakes(&mut self) {
        self.shared.take_queued(&mut self.woken);
        for &tag in &self.woken {
            if let Some((index, slot)) = self.slab.get_mut(tag) {
                Self::mark_ready(&mut self.ready, index, slot);
            }
        }
    }

    /// Applies a shutdown state newly set by `Shutdown`.
    fn apply_shutdown(&mut self, ring: &mut Ring) {
        let state = self.shared.shutdown_state();
        if state == self.shutdown_seen {
            return;
        }
        if self.shutdown_seen == RUNNING {
            // Stop accepting: cancel the accept and close the listener
            // once the cancel is through (the ring holds its own reference
            // meanwhile).
            if self.accepting {
                let _ = ring.cancel(Op::Accept, ACCEPT_TAG, ACCEPT_TAG);
            }
            self.listener = None;
        }
        self.shutdown_seen = state;
        for index in self.slab.indices() {
            let Some(slot) = self.slab.at_mut(index) else {
                continue;
            };
            match (&mut slot.phase, state) {
                (Phase::Open(open), GOING_AWAY) if !open.ended => {
                    let _ = open
                        .conn
                        .sender()
                        .close(CloseCode::GoingAway, "server shutting down");
                    if let Some(extras) = &slot.extras {
                        extras.outbox.close();
                    }
                }
                (Phase::Open(_), ABORT) => Self::fail(
                    slot,
                    io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "dropped at the shutdown deadline",
                    ),
                ),
                (_, ABORT) => slot.closing = true,
                _ => {}
            }
            Self::mark_ready(&mut self.ready, index, slot);
        }
    }

    /// Runs the deadlines that are due.
    fn run_timers(&mut self) {
        if self.timers.is_empty() {
            return;
        }
        let now = self.now();
        while let Some((when, tag)) = self.timers.pop_due(now) {
            let Some((index, slot)) = self.slab.get_mut(tag) else {
                continue;
            };
            if slot.deadline != Some(when) {
                // Superseded by an earlier deadline, or cleared.
                continue;
            }
            slot.deadline = None;
            match &mut slot.phase {
                // The handshake timeout: the socket is dropped, as the
                // tokio adapter does.
                Phase::Handshake(_) => slot.closing = true,
                Phase::Open(open) => open.conn.handle_timeout(now),
                _ => {}
            }
            Self::mark_ready(&mut self.ready, index, slot);
        }
    }

    /// Serves one ready connection.
    fn serve(&mut self, ring: &mut Ring, index: u32) {
        let Some(slot) = self.slab.at_mut(index) else {
            return;
        };
        slot.ready = false;
        let tag = slot.tag(index);
        let release = match &mut slot.phase {
            Phase::Free => return,
            Phase::Handshake(_) => slot.closing,
            Phase::Refusing => {
                if slot.sending {
                    false
                } else {
                    shut_write(
                        ring,
                        slot.stream.as_ref(),
                        &mut slot.write_shut,
                        &mut slot.ops,
                        tag,
                    );
                    true
                }
            }
            Phase::Open(_) => {
                let buffers = &mut self.send_buffers;
                let now = &mut self.now;
                Self::serve_open(ring, slot, index, buffers, now, &mut self.timers)
            }
        };
        if release {
            self.release(ring, index);
            return;
        }
        let Some(slot) = self.slab.at_mut(index) else {
            return;
        };
        if !slot.receiving && !slot.input_ended && !slot.receive_paused && !slot.closing {
            if let Some(stream) = slot.stream.as_ref() {
                match ring.recv_multi(stream.as_fd(), tag) {
                    Ok(()) => {
                        slot.receiving = true;
                        slot.ops += 1;
                    }
                    Err(error) => Self::fail(slot, error),
                }
            }
        }
    }

    /// An open connection's turn; true once its transport can be released.
    fn serve_open(
        ring: &mut Ring,
        slot: &mut Slot<H>,
        index: u32,
        buffers: &mut SendBuffers,
        now: &mut Option<Instant>,
        timers: &mut Timers,
    ) -> bool {
        let tag = slot.tag(index);
        // Output the loop holds for this connection: the send in flight
        // and what is queued behind it.
        let held = |sending: bool, send_len: usize, buffers: &SendBuffers| {
            buffers.queued_len(index) + if sending { send_len } else { 0 }
        };
        let held_before = held(slot.sending, slot.send_len, buffers);
        let Phase::Open(open) = &mut slot.phase else {
            return false;
        };
        let OpenConn {
            conn,
            handler,
            opened,
            ended,
        } = open;
        if !*ended {
            if let Some(extras) = &slot.extras {
                extras.rearm();
                let mut queue = extras.outbox.lock();
                if queue.aborted() {
                    drop(queue);
                    let aborted = io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "dropped at the shutdown deadline",
                    );
                    let _ = catch_unwind(AssertUnwindSafe(|| {
                        end_with_error(handler, &Error::Io(aborted));
                    }));
                    conn.abort();
                    *ended = true;
                } else {
                    // What the loop holds counts against the mark, so
                    // the memory of this connection stays bounded.
                    queue.drain_into(conn, OUTPUT_HIGH_WATER.saturating_sub(held_before));
                }
            }
        }
        if !*ended {
            // Events are handed out only while the connection's backlog
            // (output pending and in flight) is under the mark: input read
            // ahead waits in the connection meanwhile, so a peer that
            // sends without reading cannot grow the output unbounded.
            let in_flight = held_before;
            let flow = catch_unwind(AssertUnwindSafe(|| {
                if !*opened {
                    *opened = true;
                    handler.on_open(&mut conn.sender());
                }
                dispatch_while(conn, handler, |conn| {
                    conn.buffered_amount() + in_flight < OUTPUT_HIGH_WATER
                })
            }));
            match flow {
                Ok(Flow::Continue) => {}
                Ok(Flow::Ended) => *ended = true,
                // A panicking handler ends its own connection only: no
                // close handshake (its state is unknown), the transport
                // ends.
                Err(_) => {
                    conn.abort();
                    *ended = true;
                }
            }
        }
        if *ended {
            if conn.state() != State::Closed {
                conn.abort();
            }
            if let Some(extras) = &slot.extras {
                extras.outbox.close();
            }
        }
        // Output: everything pending in one owned buffer (the core's own
        // output buffer when it holds all of it, else a copy), one send in
        // flight per connection (docs/uring.md §6.4).
        // While one is in flight, output that borrows the input buffer (an
        // echo) is copied behind it at once: left in the core, the next
        // receive would make the core copy it first. Other output stays in
        // the core, whose own limits (the pong backlog) see it there.
        if slot.sending {
            if conn.output_borrows_input() {
                buffers.queue(index, conn);
            }
        } else if let Some(buffer) = buffers.next(index, conn) {
            let len = buffer.len();
            let sent = slot
                .stream
                .as_ref()
                .map(|stream| ring.send(stream.as_fd(), buffer, 0, tag));
            match sent {
                Some(Ok(())) => {
                    slot.ops += 1;
                    slot.sending = true;
                    slot.send_from = 0;
                    slot.send_len = len;
                }
                _ => {
                    conn.abort();
                    *ended = true;
                }
            }
        }
        let held_now = held(slot.sending, slot.send_len, buffers);
        if let Some(extras) = &slot.extras {
            extras
                .outbox
                .written_with(conn.buffered_amount() + held_now);
        }
        // A peer that sends while not reading what we send: stop
        // receiving until the backlog (in flight and pending) drains.
        let backlog = conn.buffered_amount() + held_now;
        if slot.sending && backlog >= OUTPUT_HIGH_WATER {
            if slot.receiving && !slot.cancelling && ring.cancel(Op::Recv, tag, tag).is_ok() {
                slot.ops += 1;
                slot.cancelling = true;
            }
            slot.receive_paused = true;
        } else if backlog < OUTPUT_HIGH_WATER / 2 {
            slot.receive_paused = false;
        }
        let mut release = false;
        if conn.state() == State::Closed {
            slot.receive_paused = false;
            loop {
                if slot.sending && conn.should_linger() {
                    // The close frame (and what precedes it) is on its way.
                    break;
                }
                match conn.close_step() {
                    None => break,
                    Some(CloseStep::Flush) => break,
                    Some(CloseStep::ShutdownWrite) => {
                        let stream = slot.stream.as_ref();
                        shut_write(ring, stream, &mut slot.write_shut, &mut slot.ops, tag);
                    }
                    // The receive stays armed; what arrives is fed and
                    // dropped, bounded by the core (RFC 6455 §7.1.1).
                    Some(CloseStep::Drain) => break,
                    Some(CloseStep::Release) => {
                        release = true;
                        break;
                    }
                }
            }
        }
        if !slot.sending && conn.pending_output().is_empty() && !release {
            // An idle connection holds no buffer.
            conn.release_idle_buffers();
        }
        if !release && (conn.timers_active() || conn.state() == State::Closed) {
            let now = *now.get_or_insert_with(Instant::now);
            if let Some(deadline) = conn.poll_timeout(now) {
                if slot.deadline.map_or(true, |current| deadline < current) {
                    slot.deadline = Some(deadline);
                    timers.push(deadline, tag);
                }
            }
        }
        release
    }

    /// Ends the slot's transport: cancels what is in flight, and frees the
    /// slot once every completion of it arrived.
    fn release(&mut self, ring: &mut Ring, index: u32) {
        let Some(slot) = self.slab.at_mut(index) else {
            return;
        };
        slot.closing = true;
        if (slot.receiving || slot.sending) && !slot.cancelling {
            if let Some(stream) = slot.stream.as_ref() {
                if ring.cancel_fd(stream.as_fd(), slot.tag(index)).is_ok() {
                    slot.ops += 1;
                    slot.cancelling = true;
                }
            }
        }
        if slot.ops > 0 {
            return;
        }
        if let Phase::Open(_) = slot.phase {
            self.open -= 1;
        }
        if let Some(extras) = slot.extras.as_deref() {
            extras.end();
        }
        // The index is free for the next connection.
        self.send_buffers.forget(index);
        self.slab.remove(index);
    }
}

/// Submits the socket's half-close once (RFC 6455 §7.1.1: the server ends
/// the TCP connection first), counting it among the slot's operations.
fn shut_write(
    ring: &mut Ring,
    stream: Option<&TcpStream>,
    write_shut: &mut bool,
    ops: &mut u16,
    tag: u64,
) {
    if *write_shut {
        return;
    }
    if let Some(stream) = stream {
        if ring
            .shutdown(stream.as_fd(), HowShutdown::Write, tag)
            .is_ok()
        {
            *ops += 1;
        }
    }
    *write_shut = true;
}

/// Gives `Open::handle` its queue (created on demand).
pub(super) fn handle_for(
    extras: &mut Option<Box<Extras>>,
    shared: &Arc<LoopShared>,
    tag: u64,
    queue: crate::handle::QueueLimit,
) -> crate::handle::Handle {
    extras
        .get_or_insert_with(|| Box::new(Extras::new(shared, tag, queue)))
        .handle()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handle::QueueLimit;
    use chito_ring::Completion;

    struct Quiet;
    impl Handler for Quiet {}

    fn core(listener: TcpListener) -> Core<impl FnMut(&mut Open<'_>) -> Quiet, Quiet> {
        let settings = Arc::new(Settings {
            config: crate::config::Config::shared_default(),
            handshake_timeout: Duration::from_secs(10),
            queue: QueueLimit::default(),
            inspect: None,
            shutdown: None,
            ring: chito_ring::RingConfig::default(),
        });
        Core {
            slab: Slab::new(),
            timers: Timers::default(),
            shared: Arc::new(LoopShared::new().unwrap()),
            settings,
            listener: Some(listener),
            new_handler: |_: &mut Open<'_>| Quiet,
            send_buffers: SendBuffers::default(),
            ready: Vec::new(),
            woken: Vec::new(),
            now: None,
            accepting: true,
            rearm_accept: false,
            accept_retry: None,
            rearm_wake: false,
            shutdown_seen: RUNNING,
            open: 0,
        }
    }

    #[test]
    fn an_accept_that_fails_with_emfile_is_retried_later_not_at_once() {
        let mut ring = Ring::new(&chito_ring::RingConfig::default()).unwrap();
        let mut core = core(TcpListener::bind("127.0.0.1:0").unwrap());
        // What the kernel posts when the process is out of descriptors:
        // -EMFILE, and the multishot accept has ended.
        let follow = core.complete(Completion {
            op: Op::Accept,
            tag: ACCEPT_TAG,
            result: -24,
            more: false,
            received: None,
            accepted: None,
            sent: None,
        });
        assert!(matches!(follow, Follow::Nothing));
        assert!(!core.accepting);
        assert_eq!(core.slab.used(), 0, "no connection from a failed accept");
        let retry = core.accept_retry.expect("a retry is scheduled");
        // Not re-armed at once (that would spin while descriptors lack)…
        core.now = None;
        core.arm_loop_ops(&mut ring).unwrap();
        assert!(!core.accepting);
        // …the wait ends in time for the retry…
        core.now = None;
        let timeout = core.wait_timeout().expect("the wait is bounded");
        assert!(timeout <= ACCEPT_RETRY, "{timeout:?}");
        // …and the accept is armed again once it is due.
        std::thread::sleep(retry.saturating_duration_since(Instant::now()));
        core.now = None;
        core.arm_loop_ops(&mut ring).unwrap();
        assert!(core.accepting);
        assert!(core.accept_retry.is_none());
    }
}
