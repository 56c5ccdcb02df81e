//! [`Shutdown`]: a server's graceful end.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ::tokio::sync::Notify;

use super::Handle;
use crate::close::CloseCode;

/// Stops a server gracefully: new handshakes are refused (503), every live
/// connection is sent close 1001, and whatever has not finished by the
/// deadline is dropped.
///
/// Give it to each [`super::Builder`] with [`super::Builder::shutdown`], stop your accept
/// loop when [`Shutdown::triggered`] resolves, and call
/// [`Shutdown::shutdown`].
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    inner: Arc<ShutdownInner>,
}

#[derive(Debug, Default)]
struct ShutdownInner {
    triggered: AtomicBool,
    started: Notify,
    next_id: AtomicU64,
    live: Mutex<HashMap<u64, Handle>>,
    all_gone: Notify,
}

/// Keeps a connection counted as live until dropped.
#[derive(Debug)]
pub(super) struct Registration {
    inner: Arc<ShutdownInner>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut live = self.inner.live.lock().unwrap_or_else(|p| p.into_inner());
        live.remove(&self.id);
        if live.is_empty() {
            self.inner.all_gone.notify_waiters();
        }
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
        let notified = self.inner.started.notified();
        ::tokio::pin!(notified);
        notified.as_mut().enable();
        if self.is_triggered() {
            return;
        }
        notified.await;
    }

    /// Connections currently open.
    pub fn live_connections(&self) -> usize {
        self.inner
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Starts shutdown: refuses new handshakes, sends close 1001 ("going
    /// away") to every live connection, waits up to `grace` for them to
    /// finish, then makes the rest end at once. Returns how many had to be
    /// dropped.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.inner.triggered.store(true, Ordering::Release);
        self.inner.started.notify_waiters();
        let handles: Vec<Handle> = self.lock_live().values().cloned().collect();
        for handle in &handles {
            let _ = handle.close(CloseCode::GoingAway, "server shutting down");
        }
        let deadline = ::tokio::time::Instant::now() + grace;
        loop {
            let gone = self.inner.all_gone.notified();
            ::tokio::pin!(gone);
            gone.as_mut().enable();
            if self.lock_live().is_empty() {
                return 0;
            }
            if ::tokio::time::timeout_at(deadline, gone).await.is_err() {
                break;
            }
        }
        let rest: Vec<Handle> = self.lock_live().values().cloned().collect();
        for handle in &rest {
            handle.outbox.lock().abort();
        }
        rest.len()
    }

    fn lock_live(&self) -> MutexGuard<'_, HashMap<u64, Handle>> {
        self.inner.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn register(&self, handle: Handle) -> Registration {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock_live().insert(id, handle);
        Registration {
            inner: self.inner.clone(),
            id,
        }
    }
}
