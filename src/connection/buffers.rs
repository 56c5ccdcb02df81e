//! Input space and idle memory: where received bytes go, and how a
//! connection gives its buffers back when it has nothing to hold.
//!
//! Memory follows what actually arrives, never a declared length: the
//! input buffer grows (doubling) only as bytes of a large frame arrive.
//! An idle connection can drop, or hand to a pool, every buffer it holds
//! ([`Connection::release_idle_buffers`]).

use super::receive::Release;
use super::send::Tx;
use super::{pool, Connection, State};
use crate::frame::{MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};

impl Connection {
    /// Copies received bytes into the connection. Nothing is parsed until
    /// [`Connection::poll_event`]. Once the connection is closed, input is
    /// dropped (see [`super::CloseStep::Drain`]).
    pub fn feed(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if self.tx.state == State::Closed {
            self.drop_input(data.len());
            return;
        }
        let space = self.reserve_input(data.len());
        let n = data.len().min(space.len());
        space.split_at_mut(n).0.copy_from_slice(data.split_at(n).0);
        self.commit_read(n);
    }

    /// Free space at the end of the input buffer, at least
    /// [`crate::Config::read_chunk_size`] bytes (more while a large frame
    /// is arriving, growing with what has actually arrived). Read from the
    /// transport into it, then call [`Connection::commit_read`] with the
    /// count. This avoids the copy [`Connection::feed`] makes.
    pub fn read_buf(&mut self) -> &mut [u8] {
        let want = self.read_hint();
        let limit = self.read_limit();
        let space = self.reserve_input(want);
        let n = space.len().min(limit);
        space.split_at_mut(n).0
    }

    /// Marks `n` bytes at the start of [`Connection::read_buf`] as received.
    pub fn commit_read(&mut self, n: usize) {
        let n = n.min(self.rx.buf.len() - self.rx.end);
        if self.tx.state == State::Closed {
            self.drop_input(n);
            return;
        }
        self.rx.end += n;
        if n > 0 {
            self.rx.activity = true;
        }
    }

    /// Input after close: counted towards the drain limit, dropped.
    fn drop_input(&mut self, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.teardown.drained = self.teardown.drained.saturating_add(n);
        self.rx.discard();
    }

    /// While a large frame arrives, reads stop at its last byte. The next
    /// frame then starts in an emptied buffer, at offset 0, instead of
    /// being read in behind this one and moved to the front later: for
    /// back-to-back 1 MiB messages that move cost as much as the read.
    fn read_limit(&self) -> usize {
        let chunk = self.config.read_chunk_size.max(64);
        match self.frame_missing() {
            Some(missing) if missing >= chunk => missing,
            _ => usize::MAX,
        }
    }

    /// Payload bytes of the frame being received that have not arrived.
    fn frame_missing(&self) -> Option<usize> {
        let frame = self.rx.frame?;
        let have = self.rx.end.saturating_sub(frame.payload_at);
        Some(frame.len.saturating_sub(have))
    }

    /// How much to read next: a chunk, or more while a big frame arrives.
    fn read_hint(&self) -> usize {
        let chunk = self.config.read_chunk_size.max(64);
        match self.frame_missing() {
            // While a big frame arrives, ask for as much as has arrived so
            // far (the buffer doubles), never trusting the declared length
            // for an allocation.
            Some(missing) => chunk.max(missing.min(self.rx.end - self.rx.start)),
            None => chunk,
        }
    }

    /// Makes at least `want` bytes of free space after `end` and returns it.
    fn reserve_input(&mut self, want: usize) -> &mut [u8] {
        self.release_delivered();
        // New input may overwrite the bytes pending output points into.
        self.copy_loaned_output();
        let rx = &mut self.rx;
        if rx.start == rx.end && rx.frame.is_none() {
            rx.start = 0;
            rx.end = 0;
        }
        if rx.buf.capacity() == 0 && self.tx.pooled {
            // No bigger than this connection could grow its own to (an
            // unfinished frame and a read), so its limits still bound it.
            let chunk = self.config.read_chunk_size.max(64);
            let frame = self.config.max_frame_size.max(MAX_CONTROL_PAYLOAD);
            let fits = 2 * (MAX_HEADER_LEN + frame + chunk);
            if let Some(buf) = pool::take_input(fits) {
                rx.buf = buf;
            }
        }
        if rx.buf.len() - rx.end < want && rx.start > 0 {
            // Move the unread bytes to the front.
            rx.buf.copy_within(rx.start..rx.end, 0);
            if let Some(frame) = rx.frame.as_mut() {
                frame.payload_at -= rx.start;
            }
            rx.end -= rx.start;
            rx.start = 0;
        }
        if rx.buf.len() - rx.end < want {
            // `resize` grows the capacity geometrically; use all of it.
            rx.buf.resize(rx.end + want, 0);
            let capacity = rx.buf.capacity();
            rx.buf.resize(capacity, 0);
        }
        rx.buf.split_at_mut(rx.end).1
    }

    /// True while bytes of an unfinished frame (or undelivered input) sit
    /// in the input buffer, so more input must go into that buffer.
    // A hook of the tokio adapter's loop and buffer pool.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn input_pending(&self) -> bool {
        self.rx.start < self.rx.end || self.rx.frame.is_some() || self.ready.is_some()
    }

    /// Received bytes not yet taken apart into events.
    // A hook of the uring loop, which feeds a turn's receives before it
    // dispatches.
    #[cfg_attr(not(feature = "uring"), allow(dead_code))]
    pub(crate) fn input_buffered(&self) -> usize {
        self.rx.end - self.rx.start
    }

    /// Frees the input, assembly and output buffers if they hold nothing
    /// (the tokio adapter's connections give them to a per-thread pool
    /// instead), and compression state that nothing needs between
    /// messages, so an idle connection costs only its fixed state. Call it
    /// when the transport has nothing to read and the output is drained;
    /// buffers are allocated again on demand.
    pub fn release_idle_buffers(&mut self) {
        let pooled = self.tx.pooled;
        self.release_delivered();
        self.copy_loaned_output();
        let idle = self.ready.is_none() && self.rx.frame.is_none();
        if idle && self.rx.start == self.rx.end && self.rx.buf.capacity() > 0 {
            release(std::mem::take(&mut self.rx.buf), true, pooled);
            self.rx.start = 0;
            self.rx.end = 0;
        }
        if self.tx.buffered() == 0 && self.tx.out.capacity() > 0 {
            release(std::mem::take(&mut self.tx.out), false, pooled);
            self.tx.out_pos = 0;
        }
        let delivered = matches!(self.rx.release, Release::Nothing);
        if idle && delivered && self.rx.message.is_none() && self.rx.assembled.capacity() > 0 {
            release(std::mem::take(&mut self.rx.assembled), false, pooled);
        }
        #[cfg(feature = "deflate")]
        {
            if let Some(deflater) = self.tx.deflater.as_mut() {
                deflater.release_idle();
            }
            if let Some(inflater) = self.rx.inflater.as_mut() {
                inflater.release_idle();
            }
        }
    }

    /// Bytes currently allocated for buffers (input, assembly, output).
    pub fn buffer_capacity(&self) -> usize {
        self.rx.buf.capacity() + self.rx.assembled.capacity() + self.tx.out.capacity()
    }

    /// Bytes of compression state (zlib windows and tables) this connection
    /// holds now: zero without permessage-deflate, and zero between
    /// messages in a direction without context takeover (states are
    /// borrowed from a per-thread pool for the length of a message).
    pub fn compression_memory(&self) -> usize {
        #[cfg(feature = "deflate")]
        {
            self.tx.deflater.as_ref().map_or(0, |d| d.memory_estimate())
                + self.rx.inflater.as_ref().map_or(0, |i| i.memory_estimate())
        }
        #[cfg(not(feature = "deflate"))]
        {
            0
        }
    }
}

/// Gives `buf` to this thread's pool, or frees it.
fn release(buf: Vec<u8>, input: bool, pooled: bool) {
    if pooled {
        pool::give(buf, input);
    }
}

impl Connection {
    /// Lets this connection take its buffers from the thread's pool and
    /// give them back when idle or dropped: for drivers that run many
    /// connections on one thread (the tokio adapter).
    #[cfg_attr(
        not(any(feature = "tokio", all(feature = "uring", target_os = "linux"))),
        allow(dead_code)
    )]
    pub(crate) fn use_buffer_pool(&mut self) {
        self.tx.pooled = true;
    }
}

impl Drop for Connection {
    /// A pooled connection's buffers go to its thread's pool for the next
    /// connection.
    fn drop(&mut self) {
        if self.tx.pooled {
            pool::give(std::mem::take(&mut self.rx.buf), true);
            pool::give(std::mem::take(&mut self.tx.out), false);
            pool::give(std::mem::take(&mut self.rx.assembled), false);
        }
    }
}

impl Tx {
    /// The output buffer, taken from this thread's pool (if this
    /// connection uses it) when none is allocated.
    #[inline]
    pub(super) fn out(&mut self) -> &mut Vec<u8> {
        if self.out.capacity() == 0 && self.pooled {
            if let Some(buf) = pool::take_output() {
                self.out = buf;
                self.out_pos = 0;
            }
        }
        &mut self.out
    }
}
