//! Reading without holding a buffer: an idle connection reads through a
//! per-thread scratch buffer, and gives its own buffers back to the core's
//! per-thread pool whenever a read would block, so waiting costs no buffer.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use ::tokio::io::{AsyncRead, ReadBuf};

use crate::connection::Connection;

/// Reads of idle connections land here first (one read can take a burst of
/// pipelined messages).
const SCRATCH_SIZE: usize = 64 * 1024;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Reads once from `stream` into `conn`. A connection with a frame half
/// received reads straight into its own buffer; an idle one reads into the
/// scratch buffer and, when the read would block, releases its buffers.
pub(super) fn poll_read_into<S: AsyncRead + Unpin>(
    stream: &mut S,
    conn: &mut Connection,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if conn.input_pending() {
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
            conn.feed(filled);
            filled.len()
        })
    });
    if polled.is_pending() {
        conn.release_idle_buffers();
    }
    polled
}
