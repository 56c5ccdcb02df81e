//! The loop's owned send buffers: a send hands its buffer to the kernel
//! until it completes, so output leaves the connection as one of these —
//! the connection's own output buffer when all of the output is in it
//! (taken, and a pool buffer put in its place), else a copy. Two things
//! live here:
//!
//! - a pool, so steady traffic reuses buffers instead of allocating one
//!   per send;
//! - output queued behind a send in flight. One send per connection is in
//!   the ring at a time (two sends on one socket could interleave after a
//!   short send). Output written meanwhile that borrows the connection's
//!   input buffer (an echo of a received message) is copied here at once.
//!   Left in the connection, it would be copied twice: into the
//!   connection's output buffer before the next receive overwrites the
//!   input, then into a send buffer; a 1 MiB echo paid that extra copy on
//!   every message. Other output stays in the connection, whose limits
//!   (such as the pong backlog, which counts the connection's own unwritten
//!   bytes) must see it.
//!
//! The queue is a map beside the slab, not a field of every slot: only
//! connections with a send in flight and more to send have an entry, so an
//! idle connection pays nothing for it (docs/uring.md §6.2).

use std::collections::HashMap;
use std::io::IoSlice;

use crate::connection::Connection;

/// Send buffers kept for reuse, and the largest kept.
const POOL: usize = 64;
const POOL_MAX_CAPACITY: usize = 4 << 20;

/// Reusable send buffers and the output queued behind sends in flight,
/// by slab index.
#[derive(Default)]
pub(super) struct SendBuffers {
    pool: Vec<Vec<u8>>,
    queued: HashMap<u32, Vec<u8>>,
}

impl SendBuffers {
    /// Gives a buffer back for reuse (or frees it: the pool is bounded in
    /// count and in the size of what it keeps).
    pub(super) fn recycle(&mut self, mut buffer: Vec<u8>) {
        if self.pool.len() < POOL && buffer.capacity() <= POOL_MAX_CAPACITY {
            buffer.clear();
            self.pool.push(buffer);
        }
    }

    /// Bytes queued for the connection at `index` behind its send in
    /// flight.
    pub(super) fn queued_len(&self, index: u32) -> usize {
        self.queued.get(&index).map_or(0, Vec::len)
    }

    /// Moves all of `conn`'s pending output into the queue of `index`.
    pub(super) fn queue(&mut self, index: u32, conn: &mut Connection) {
        if conn.pending_output().is_empty() {
            return;
        }
        let pool = &mut self.pool;
        let buffer = self
            .queued
            .entry(index)
            .or_insert_with(|| pool.pop().unwrap_or_default());
        copy_out(conn, buffer);
    }

    /// The buffer to send next for `index`: what was queued, then all of
    /// `conn`'s pending output; `None` if there is nothing to send. With
    /// nothing queued and all output in the connection's output buffer,
    /// that buffer itself is taken (a pool buffer takes its place) instead
    /// of being copied.
    pub(super) fn next(&mut self, index: u32, conn: &mut Connection) -> Option<Vec<u8>> {
        let mut buffer = match self.queued.remove(&index) {
            Some(buffer) => buffer,
            None if conn.pending_output().is_empty() => return None,
            None => {
                let mut buffer = self.pool.pop().unwrap_or_default();
                if conn.take_output(&mut buffer) {
                    return Some(buffer);
                }
                buffer
            }
        };
        copy_out(conn, &mut buffer);
        Some(buffer)
    }

    /// Drops what is queued for `index` (its transport ended, or the slot
    /// is being freed and its index may be reused).
    pub(super) fn forget(&mut self, index: u32) {
        if let Some(buffer) = self.queued.remove(&index) {
            self.recycle(buffer);
        }
    }
}

/// Appends `conn`'s pending output to `buffer` and consumes it.
fn copy_out(conn: &mut Connection, buffer: &mut Vec<u8>) {
    let mut slices = [IoSlice::new(&[]); 3];
    let n = conn.pending_output_vectored(&mut slices);
    let before = buffer.len();
    for slice in slices.iter().take(n) {
        buffer.extend_from_slice(slice);
    }
    conn.consume_output(buffer.len() - before);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Message, Role};

    fn open() -> Connection {
        Connection::new(Role::Server, Config::default())
    }

    #[test]
    fn queued_output_goes_first_then_the_rest() {
        let mut buffers = SendBuffers::default();
        let mut conn = open();
        assert!(buffers.next(3, &mut conn).is_none());
        conn.sender().send(Message::Text("one")).unwrap();
        buffers.queue(3, &mut conn);
        assert!(conn.pending_output().is_empty());
        assert_eq!(buffers.queued_len(3), 5);
        assert_eq!(buffers.queued_len(4), 0);
        conn.sender().send(Message::Text("two")).unwrap();
        let sent = buffers.next(3, &mut conn).unwrap();
        assert_eq!(sent, b"\x81\x03one\x81\x03two");
        assert_eq!(buffers.queued_len(3), 0);
        assert!(conn.pending_output().is_empty());
    }

    #[test]
    fn output_wholly_in_the_output_buffer_is_taken_not_copied() {
        let mut buffers = SendBuffers::default();
        buffers.recycle(Vec::with_capacity(4096));
        let mut conn = open();
        conn.sender().send(Message::Text("one")).unwrap();
        let at = conn.pending_output().as_ptr();
        let sent = buffers.next(1, &mut conn).unwrap();
        // The same allocation: moved, not copied.
        assert_eq!(sent.as_ptr(), at);
        assert_eq!(sent, b"\x81\x03one");
        assert!(conn.pending_output().is_empty());
        // The pool's buffer is now the connection's: the next output is
        // written into it, and taken in turn.
        conn.sender().send(Message::Text("two")).unwrap();
        assert_eq!(buffers.next(1, &mut conn).unwrap(), b"\x81\x03two");
        // Partly written output is copied (the written part is not sent
        // again).
        conn.sender().send(Message::Text("three")).unwrap();
        conn.consume_output(2);
        assert_eq!(buffers.next(1, &mut conn).unwrap(), b"three");
    }

    #[test]
    fn a_forgotten_queue_does_not_reach_the_next_user_of_the_index() {
        let mut buffers = SendBuffers::default();
        let mut conn = open();
        conn.sender().send(Message::Binary(&[1, 2, 3])).unwrap();
        buffers.queue(7, &mut conn);
        buffers.forget(7);
        assert_eq!(buffers.queued_len(7), 0);
        let mut next = open();
        assert!(buffers.next(7, &mut next).is_none());
        // The buffer went back to the pool, cleared.
        next.sender().send(Message::Text("x")).unwrap();
        assert_eq!(buffers.next(7, &mut next).unwrap(), b"\x81\x01x");
    }
}
