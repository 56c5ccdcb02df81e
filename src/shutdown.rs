//! [`Shutdown`]: a server's graceful end, for any driver that gives its
//! connections a [`Handle`]. Nothing here depends on a runtime: waiting is
//! plain `Waker`s, and the grace period is kept by a short-lived timer
//! thread.

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crate::close::CloseCode;
use crate::handle::Handle;

/// Stops a server gracefully: new handshakes are refused (503), every live
/// connection is sent close 1001, and whatever has not finished by the
/// deadline is dropped.
///
/// Give it to each `Builder` (e.g. `chito::tokio::Builder::shutdown`), stop
/// your accept loop when [`Shutdown::triggered`] resolves, and call
/// [`Shutdown::shutdown`].
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    triggered: AtomicBool,
    next_id: AtomicU64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    live: HashMap<u64, Member>,
    /// Tasks waiting for shutdown to start, or for the last connection.
    waiting: Vec<Waker>,
}

/// What one registration stands for.
#[derive(Debug)]
enum Member {
    /// One connection, reached through its queue.
    Connection(Handle),
    /// A driver's loop, registered once for all its connections (the
    /// uring loop: no queue per connection just for shutdown).
    Loop(Arc<dyn LoopMember>),
}

/// A driver loop that registers once for all its connections: it counts
/// them, and reacts to shutdown itself. Calls come from the thread that
/// runs the shutdown, so an implementation only flags and wakes its loop.
#[cfg_attr(not(feature = "uring"), allow(dead_code))]
pub(crate) trait LoopMember: Send + Sync + std::fmt::Debug {
    /// Its connections open now.
    fn live(&self) -> usize;
    /// Shutdown started: refuse new handshakes (503), send close 1001 to
    /// every live connection, end once none is left.
    fn going_away(&self);
    /// The grace period is over: end every connection now.
    fn abort(&self);
}

impl Member {
    fn live(&self) -> usize {
        match self {
            Member::Connection(_) => 1,
            Member::Loop(member) => member.live(),
        }
    }

    fn going_away(&self) {
        match self {
            Member::Connection(handle) => {
                let _ = handle.close(CloseCode::GoingAway, "server shutting down");
            }
            Member::Loop(member) => member.going_away(),
        }
    }

    fn abort(&self) {
        match self {
            Member::Connection(handle) => handle.abort(),
            Member::Loop(member) => member.abort(),
        }
    }
}

impl Clone for Member {
    fn clone(&self) -> Self {
        match self {
            Member::Connection(handle) => Member::Connection(handle.clone()),
            Member::Loop(member) => Member::Loop(member.clone()),
        }
    }
}

/// Keeps a connection (or a loop) counted as live until dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    inner: Arc<Inner>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut state = lock(&self.inner);
        state.live.remove(&self.id);
        if state.live.is_empty() {
            let waiting = std::mem::take(&mut state.waiting);
            drop(state);
            waiting.into_iter().for_each(Waker::wake);
        }
    }
}

fn lock(inner: &Inner) -> MutexGuard<'_, State> {
    // Every update is a single map operation or push: a panic elsewhere
    // cannot leave the state half-done.
    inner.state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Adds `waker` to `waiting` unless it is there already.
fn wait(waiting: &mut Vec<Waker>, waker: &Waker) {
    if !waiting.iter().any(|w| w.will_wake(waker)) {
        waiting.push(waker.clone());
    }
}

impl Shutdown {
    /// A shutdown coordinator with no connections.
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// Whether [`Shutdown::shutdown`] has been called.
    pub fn is_triggered(&self) -> bool {
        self.inner.triggered.load(Ordering::Acquire)
    }

    /// Resolves once shutdown starts: select on it in the accept loop.
    pub async fn triggered(&self) {
        poll_fn(|cx| {
            let mut state = lock(&self.inner);
            if self.is_triggered() {
                return Poll::Ready(());
            }
            wait(&mut state.waiting, cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Connections currently open.
    pub fn live_connections(&self) -> usize {
        lock(&self.inner).live.values().map(Member::live).sum()
    }

    /// Starts shutdown: refuses new handshakes, sends close 1001 ("going
    /// away") to every live connection, waits up to `grace` for them to
    /// finish, then makes the rest end at once. Returns how many had to be
    /// dropped.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        let deadline = Instant::now() + grace;
        let (handles, waiting) = {
            let mut state = lock(&self.inner);
            self.inner.triggered.store(true, Ordering::Release);
            let members: Vec<Member> = state.live.values().cloned().collect();
            (members, std::mem::take(&mut state.waiting))
        };
        waiting.into_iter().for_each(Waker::wake);
        handles.iter().for_each(Member::going_away);
        let mut timer_set = false;
        poll_fn(|cx| {
            let mut state = lock(&self.inner);
            if state.live.is_empty() {
                return Poll::Ready(0);
            }
            if Instant::now() >= deadline || !(timer_set || wake_at(deadline, cx.waker())) {
                // The grace period is over (or no timer could be set):
                // the rest end now.
                let rest: Vec<Member> = state.live.values().cloned().collect();
                drop(state);
                rest.iter().for_each(Member::abort);
                return Poll::Ready(rest.iter().map(Member::live).sum());
            }
            timer_set = true;
            wait(&mut state.waiting, cx.waker());
            Poll::Pending
        })
        .await
    }

    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn register(&self, handle: Handle) -> Registration {
        self.enroll(Member::Connection(handle))
    }

    /// Counts a driver loop's connections as live until the registration
    /// is dropped (the loop ends once none is left).
    #[cfg_attr(not(feature = "uring"), allow(dead_code))]
    pub(crate) fn register_loop(&self, member: Arc<dyn LoopMember>) -> Registration {
        self.enroll(Member::Loop(member))
    }

    fn enroll(&self, member: Member) -> Registration {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.inner).live.insert(id, member);
        Registration {
            inner: self.inner.clone(),
            id,
        }
    }
}

/// Wakes `waker` at `deadline` from a timer thread; false if none could
/// be started.
fn wake_at(deadline: Instant, waker: &Waker) -> bool {
    let waker = waker.clone();
    std::thread::Builder::new()
        .name("chito-shutdown-timer".into())
        .spawn(move || {
            std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
            waker.wake();
        })
        .is_ok()
}
