//! What waits to be written: the output buffer and, for a large message
//! sent straight back from a received one, a loan of the input buffer.
//!
//! A server that sends back, unchanged, a received payload of 64 KiB or
//! more (an echo, a relay) encodes only its header; pending output is then
//! up to three pieces — output before, the payload in the input buffer,
//! output after — for one vectored write. Input that arrives before they
//! are written makes the connection copy the loaned bytes out first.

use std::io::IoSlice;

use super::send::Tx;
use super::{Connection, State};
use crate::frame::OpCode;

impl Tx {
    /// Bytes waiting to be written, loaned ones included.
    #[inline]
    pub(super) fn buffered(&self) -> usize {
        self.out.len() - self.out_pos + self.loan.len()
    }

    /// Marks `n` bytes of pending output as written, in wire order.
    fn consume(&mut self, mut n: usize) {
        if !self.loan.is_empty() {
            let before = self.loan_mark.saturating_sub(self.out_pos).min(n);
            self.out_pos += before;
            n -= before;
            if self.out_pos < self.loan_mark {
                return;
            }
            let loaned = n.min(self.loan.len());
            self.loan.start += loaned;
            n -= loaned;
            if !self.loan.is_empty() {
                return;
            }
            // Written: the input buffer is free again.
            self.loan = 0..0;
        }
        self.out_pos = (self.out_pos + n).min(self.out.len());
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
    }
}

impl Connection {
    /// Encoded bytes waiting to be written to the transport: the first of
    /// up to three pieces (see [`Connection::pending_output_vectored`]).
    /// Write it, call [`Connection::consume_output`], repeat until empty.
    pub fn pending_output(&self) -> &[u8] {
        self.output_pieces()
            .into_iter()
            .find(|piece| !piece.is_empty())
            .unwrap_or_default()
    }

    /// All pending output as up to three slices, in order, for one vectored
    /// write; returns how many of `bufs` were filled (only non-empty
    /// slices). Report what was written with [`Connection::consume_output`].
    pub fn pending_output_vectored<'a>(&'a self, bufs: &mut [IoSlice<'a>]) -> usize {
        let mut filled = 0;
        for (slot, piece) in bufs
            .iter_mut()
            .zip(self.output_pieces().into_iter().filter(|p| !p.is_empty()))
        {
            *slot = IoSlice::new(piece);
            filled += 1;
        }
        filled
    }

    /// Pending output in wire order: the output buffer up to the loan, the
    /// loaned input bytes, the rest of the output buffer (without a loan,
    /// all of it is the first piece).
    fn output_pieces(&self) -> [&[u8]; 3] {
        let tx = &self.tx;
        let mark = if tx.loan.is_empty() {
            tx.out.len()
        } else {
            tx.loan_mark
        };
        // out_pos <= mark <= out.len(), and a loan lies in received input.
        debug_assert!(tx.out_pos <= mark && mark <= tx.out.len());
        [
            tx.out.get(tx.out_pos..mark).unwrap_or_default(),
            self.rx.bytes(tx.loan.clone()),
            tx.out.get(mark..).unwrap_or_default(),
        ]
    }

    /// True while pending output points into the input buffer: reading
    /// into that buffer now would cost a copy of that output.
    // A hook of the tokio adapter's loop and buffer pool, and of the
    // uring loop's send queue.
    #[cfg_attr(not(any(feature = "tokio", feature = "uring")), allow(dead_code))]
    pub(crate) fn output_borrows_input(&self) -> bool {
        !self.tx.loan.is_empty()
    }

    /// Moves output that points into the input buffer into the output
    /// buffer, before the input buffer is reused or given away.
    pub(super) fn copy_loaned_output(&mut self) {
        if self.tx.loan.is_empty() {
            return;
        }
        let range = std::mem::replace(&mut self.tx.loan, 0..0);
        let mark = self.tx.loan_mark;
        let bytes = self.rx.bytes(range);
        let out = &mut self.tx.out;
        let (n, old) = (bytes.len(), out.len());
        out.resize(old + n, 0);
        out.copy_within(mark..old, mark + n);
        if let Some(slot) = out.get_mut(mark..mark + n) {
            slot.copy_from_slice(bytes);
        }
    }

    /// Marks the first `n` bytes of pending output as written. This can
    /// queue more output (a pong that waited for the output to drain), so
    /// write until [`Connection::pending_output`] is empty.
    pub fn consume_output(&mut self, n: usize) {
        self.tx.consume(n);
        self.output_written();
    }

    /// Hands all pending output over as an owned buffer without copying
    /// it, when it lies wholly in the output buffer: the bytes are moved
    /// into `spare`, whose (cleared) allocation becomes the output buffer.
    /// Returns false, moving nothing, while output borrows the input
    /// buffer, after part of it was written, or when there is none. For a
    /// completion-based driver, whose kernel owns a send's buffer until it
    /// completes.
    // A hook of the uring loop's sends (docs/uring.md §6.4, the lease).
    #[cfg_attr(not(feature = "uring"), allow(dead_code))]
    pub(crate) fn take_output(&mut self, spare: &mut Vec<u8>) -> bool {
        let tx = &mut self.tx;
        if !tx.loan.is_empty() || tx.out_pos != 0 || tx.out.is_empty() {
            return false;
        }
        spare.clear();
        std::mem::swap(&mut tx.out, spare);
        self.output_written();
        true
    }

    /// After output was written (or handed over): a pong that waited for
    /// the output to drain is queued.
    fn output_written(&mut self) {
        if self.deferred_pong.is_some() && self.tx.buffered() <= self.config.max_pending_pong_bytes
        {
            if let Some(pong) = self.deferred_pong.take() {
                if self.tx.state == State::Open {
                    self.tx.write_frame(OpCode::Pong, true, pong.get());
                }
            }
        }
    }

    /// How many bytes wait to be written.
    pub fn buffered_amount(&self) -> usize {
        self.tx.buffered()
    }
}
