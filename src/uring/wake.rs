//! Waking the loop from other threads: a [`Handle`]'s queue wakes its
//! connection through a `Waker` that puts the connection's tag on the
//! loop's queue and, if the loop is waiting in the kernel, signals its
//! eventfd (whose readiness the ring watches); shutdown does the same
//! through [`LoopShared`] (docs/uring.md §6.7, §6.9).

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Wake, Waker};

use chito_ring::EventFd;

use crate::handle::{Handle, Outbox, QueueLimit};
use crate::shutdown::LoopMember;

/// No shutdown asked.
pub(super) const RUNNING: u8 = 0;
/// Shutdown started: 503 to new handshakes, 1001 to open connections.
pub(super) const GOING_AWAY: u8 = 1;
/// The grace period is over: end everything now.
pub(super) const ABORT: u8 = 2;

/// What other threads share with one loop.
#[derive(Debug)]
pub(super) struct LoopShared {
    /// Tags of connections whose queue has something for the loop.
    queued: Mutex<Vec<u64>>,
    /// Signalled when the loop must wake while it waits in the kernel.
    event: EventFd,
    /// The loop is (about to be) waiting in the kernel.
    sleeping: AtomicBool,
    /// [`RUNNING`], [`GOING_AWAY`] or [`ABORT`].
    shutdown: AtomicU8,
    /// Open connections, for `Shutdown::live_connections`.
    live: AtomicUsize,
}

impl LoopShared {
    pub(super) fn new() -> std::io::Result<LoopShared> {
        Ok(LoopShared {
            queued: Mutex::new(Vec::new()),
            event: EventFd::new()?,
            sleeping: AtomicBool::new(false),
            shutdown: AtomicU8::new(RUNNING),
            live: AtomicUsize::new(0),
        })
    }

    pub(super) fn event(&self) -> &EventFd {
        &self.event
    }

    pub(super) fn shutdown_state(&self) -> u8 {
        self.shutdown.load(Ordering::Acquire)
    }

    pub(super) fn set_live(&self, live: usize) {
        self.live.store(live, Ordering::Relaxed);
    }

    /// Wakes the loop if it waits in the kernel. SeqCst against
    /// [`LoopShared::sleep`]: either the loop sees what was queued before
    /// it waits, or this sees it sleeping and signals.
    fn wake_loop(&self) {
        if self.sleeping.load(Ordering::SeqCst) {
            self.event.notify();
        }
    }

    /// The loop is about to wait: true if something is queued already
    /// (then it must not wait long).
    pub(super) fn sleep(&self) -> bool {
        self.sleeping.store(true, Ordering::SeqCst);
        !self.lock().is_empty() || self.shutdown_state() != RUNNING
    }

    /// The loop is awake again.
    pub(super) fn awake(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
    }

    /// Moves the queued tags into `into` (emptied first).
    pub(super) fn take_queued(&self, into: &mut Vec<u64>) {
        into.clear();
        std::mem::swap(&mut *self.lock(), into);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u64>> {
        // Every update is one push or swap: a panic elsewhere cannot leave
        // it half-done.
        self.queued.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_shutdown(&self, state: u8) {
        self.shutdown.fetch_max(state, Ordering::AcqRel);
        self.event.notify();
    }
}

impl LoopMember for LoopShared {
    fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    fn going_away(&self) {
        self.set_shutdown(GOING_AWAY);
    }

    fn abort(&self) {
        self.set_shutdown(ABORT);
    }
}

/// The waker of one connection's queue.
#[derive(Debug)]
pub(super) struct ConnWake {
    shared: Arc<LoopShared>,
    tag: u64,
    /// The tag is on the loop's queue already.
    queued: AtomicBool,
}

impl Wake for ConnWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.shared.lock().push(self.tag);
        }
        self.shared.wake_loop();
    }
}

/// What a connection has once a [`Handle`] was asked for: its queue and
/// the waker the queue wakes. Boxed in the slot, so connections without
/// one pay a pointer.
#[derive(Debug)]
pub(super) struct Extras {
    pub(super) outbox: Arc<Outbox>,
    wake: Arc<ConnWake>,
    waker: Waker,
}

impl Extras {
    pub(super) fn new(shared: &Arc<LoopShared>, tag: u64, limit: QueueLimit) -> Extras {
        let wake = Arc::new(ConnWake {
            shared: shared.clone(),
            tag,
            queued: AtomicBool::new(false),
        });
        let waker = Waker::from(wake.clone());
        let outbox = Arc::new(Outbox::new(limit));
        outbox.lock().register(&waker);
        Extras {
            outbox,
            wake,
            waker,
        }
    }

    pub(super) fn handle(&self) -> Handle {
        Handle::new(self.outbox.clone())
    }

    /// The loop took this connection off its queue: the next wake queues
    /// it again. The queue's waker is taken at each wake, so it is given
    /// again here.
    pub(super) fn rearm(&self) {
        self.wake.queued.store(false, Ordering::Release);
        self.outbox.lock().register(&self.waker);
    }

    /// The connection is gone: nothing queued will be written.
    pub(super) fn end(&self) {
        self.outbox.end();
    }
}
