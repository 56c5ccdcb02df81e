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
    live: HashMap<u64, Handle>,
    /// Tasks waiting for shutdown to start, or for the last connection.
    waiting: Vec<Waker>,
}

/// Keeps a connection counted as live until dropped.
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
        lock(&self.inner).live.len()
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
            let handles: Vec<Handle> = state.live.values().cloned().collect();
            (handles, std::mem::take(&mut state.waiting))
        };
        waiting.into_iter().for_each(Waker::wake);
        for handle in &handles {
            let _ = handle.close(CloseCode::GoingAway, "server shutting down");
        }
        let mut timer_set = false;
        poll_fn(|cx| {
            let mut state = lock(&self.inner);
            if state.live.is_empty() {
                return Poll::Ready(0);
            }
            if Instant::now() >= deadline || !(timer_set || wake_at(deadline, cx.waker())) {
                // The grace period is over (or no timer could be set):
                // the rest end now.
                let rest: Vec<Handle> = state.live.values().cloned().collect();
                drop(state);
                rest.iter().for_each(Handle::abort);
                return Poll::Ready(rest.len());
            }
            timer_set = true;
            wait(&mut state.waiting, cx.waker());
            Poll::Pending
        })
        .await
    }

    pub(crate) fn register(&self, handle: Handle) -> Registration {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.inner).live.insert(id, handle);
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
