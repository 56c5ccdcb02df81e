//! Per-thread pools of buffers. A connection whose driver asks for it
//! (the tokio adapter does) takes its input and output buffers from here
//! when it needs them and gives them back when it has nothing to hold
//! ([`super::Connection::release_idle_buffers`], or when dropped): steady
//! traffic allocates no buffer per message, idle connections hold none, and
//! a thread's pools stay bounded. Without it a connection allocates its own
//! buffers, sized only by its own limits and traffic.

use std::cell::RefCell;

/// Buffers larger than this are freed rather than pooled.
const MAX_BUFFER: usize = 16 << 20;
/// Bytes each pool keeps at most (large messages reuse their big buffers
/// instead of regrowing them; idle memory stays bounded).
const MAX_BYTES: usize = 32 << 20;
/// Buffers kept per pool.
const MAX_COUNT: usize = 512;

/// A free list of buffers.
struct Pool {
    buffers: Vec<Vec<u8>>,
    bytes: usize,
}

thread_local! {
    /// Input buffers keep their initialised length, so reuse never
    /// zero-fills.
    static INPUT: RefCell<Pool> = const { RefCell::new(Pool { buffers: Vec::new(), bytes: 0 }) };
    static OUTPUT: RefCell<Pool> = const { RefCell::new(Pool { buffers: Vec::new(), bytes: 0 }) };
}

/// Runs `f` on one of this thread's pools; `None` while the thread is
/// being torn down.
fn with<R>(input: bool, f: impl FnOnce(&mut Pool) -> R) -> Option<R> {
    let run = |cell: &RefCell<Pool>| cell.try_borrow_mut().ok().map(|mut pool| f(&mut pool));
    let pool = if input { &INPUT } else { &OUTPUT };
    pool.try_with(run).ok().flatten()
}

/// The most recently pooled buffer, if its capacity is at most `max`.
fn take(input: bool, max: usize) -> Option<Vec<u8>> {
    with(input, |pool| {
        if pool.buffers.last()?.capacity() > max {
            return None;
        }
        let buf = pool.buffers.pop()?;
        pool.bytes -= buf.capacity();
        Some(buf)
    })
    .flatten()
}

/// An input buffer of at most `max` bytes, filled to its capacity with
/// initialised bytes.
pub(super) fn take_input(max: usize) -> Option<Vec<u8>> {
    take(true, max)
}

/// An empty output buffer.
pub(super) fn take_output() -> Option<Vec<u8>> {
    take(false, usize::MAX)
}

/// Keeps `buf` for reuse (or frees it if the pool is full): an input
/// buffer resized to its capacity, an output buffer cleared.
pub(super) fn give(mut buf: Vec<u8>, input: bool) {
    let capacity = buf.capacity();
    if capacity == 0 || capacity > MAX_BUFFER {
        return;
    }
    if input {
        buf.resize(capacity, 0);
    } else {
        buf.clear();
    }
    // Dropped outside the pool if it is full or gone.
    let _ = with(input, move |pool| {
        if pool.buffers.len() < MAX_COUNT && pool.bytes + capacity <= MAX_BYTES {
            pool.bytes += capacity;
            pool.buffers.push(buf);
        }
    });
}
