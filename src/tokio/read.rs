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
/// Where in a 4 KiB page the scratch window starts. What is read is copied
/// into the connection's own buffer, and x86 `memcpy` slows down several
/// times when source and destination share their offset within a page
/// (4K aliasing: loads wrongly wait on earlier stores to the same low
/// address bits). Connection buffers come from the heap and usually start
/// near a page's beginning; a window starting mid-page keeps the two
/// apart. (Measured: the 64 × 4 × 4 KiB echo ran at half speed in about
/// half of the server starts without this.)
const SCRATCH_PAGE_OFFSET: usize = 2048;

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
        if scratch.len() < SCRATCH_SIZE + 4096 {
            scratch.resize(SCRATCH_SIZE + 4096, 0);
        }
        let offset = (SCRATCH_PAGE_OFFSET + 4096 - scratch.as_ptr() as usize % 4096) % 4096;
        // `offset` < 4096 and the buffer is 4096 longer than the window.
        debug_assert!(offset + SCRATCH_SIZE <= scratch.len());
        let window = scratch
            .get_mut(offset..offset + SCRATCH_SIZE)
            .unwrap_or_default();
        let mut buf = ReadBuf::new(window);
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
