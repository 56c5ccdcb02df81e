//! Idle memory: reads of idle connections land in a per-thread scratch
//! buffer, and connections borrow their buffers from per-thread pools
//! while messages flow, so waiting costs no buffer and steady traffic no
//! allocation.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use ::tokio::io::{AsyncRead, ReadBuf};

use crate::connection::Connection;

/// Reads of idle connections land here first, so waiting costs no buffer.
const SCRATCH_SIZE: usize = 64 * 1024;
/// Buffers larger than this are freed rather than pooled.
const POOL_MAX_BUFFER: usize = 16 << 20;
/// Bytes each per-thread pool keeps at most (large messages reuse their
/// big buffers instead of regrowing them; idle memory stays bounded).
const POOL_MAX_BYTES: usize = 32 << 20;
/// Buffers kept per pool per thread.
const POOL_MAX_COUNT: usize = 512;

/// A per-thread free list of buffers.
#[derive(Default)]
struct Pool {
    buffers: Vec<Vec<u8>>,
    bytes: usize,
}

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Input buffers keep their initialised length, so reuse never zero-fills.
    static INPUT_POOL: RefCell<Pool> = RefCell::new(Pool::default());
    static OUTPUT_POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

fn take(input: bool) -> Option<Vec<u8>> {
    let take = |pool: &RefCell<Pool>| {
        let mut pool = pool.borrow_mut();
        let buf = pool.buffers.pop()?;
        pool.bytes -= buf.capacity();
        Some(buf)
    };
    if input {
        INPUT_POOL.with(take)
    } else {
        OUTPUT_POOL.with(take)
    }
}

/// Keeps a buffer for reuse. The connection hands back input buffers
/// filled to capacity (initialised) and other buffers empty.
pub(super) fn give(buf: Vec<u8>) {
    let capacity = buf.capacity();
    if capacity == 0 || capacity > POOL_MAX_BUFFER {
        return;
    }
    let input = !buf.is_empty() && buf.len() == capacity;
    let give = |pool: &RefCell<Pool>| {
        let mut pool = pool.borrow_mut();
        if pool.buffers.len() < POOL_MAX_COUNT && pool.bytes + capacity <= POOL_MAX_BYTES {
            pool.bytes += capacity;
            pool.buffers.push(buf);
        }
    };
    if input {
        INPUT_POOL.with(give);
    } else {
        OUTPUT_POOL.with(give);
    }
}

/// Gives an input and an output buffer from the pools to a connection that
/// has none.
pub(super) fn provide_buffers(conn: &mut Connection) {
    let (input, output) = conn.has_buffers();
    if !input {
        if let Some(back) = take(true).and_then(|buf| conn.provide_input_buffer(buf)) {
            give(back);
        }
    }
    if !output {
        if let Some(back) = take(false).and_then(|buf| conn.provide_output_buffer(buf)) {
            give(back);
        }
    }
}

/// Reads once from `stream` into `conn`. A connection with a frame half
/// received reads straight into its own buffer; an idle one reads into the
/// per-thread scratch buffer and, when the read would block, gives its
/// buffers back to the pool.
pub(super) fn poll_read_into<S: AsyncRead + Unpin>(
    stream: &mut S,
    conn: &mut Connection,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if conn.input_pending() {
        provide_buffers(conn);
        let mut buf = ReadBuf::new(conn.read_buf());
        let polled = Pin::new(stream).poll_read(cx, &mut buf);
        let n = buf.filled().len();
        return polled.map_ok(|()| {
            conn.commit_read(n);
            n
        });
    }
    let polled = SCRATCH.with(|cell| {
        let mut scratch = cell.borrow_mut();
        if scratch.len() < SCRATCH_SIZE {
            scratch.resize(SCRATCH_SIZE, 0);
        }
        let mut buf = ReadBuf::new(scratch.as_mut_slice());
        let polled = Pin::new(stream).poll_read(cx, &mut buf);
        polled.map_ok(|()| {
            let filled = buf.filled();
            if !filled.is_empty() {
                provide_buffers(conn);
                conn.feed(filled);
            }
            filled.len()
        })
    });
    if polled.is_pending() {
        conn.recycle_idle_buffers(&mut give);
    }
    polled
}
