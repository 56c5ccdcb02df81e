//! The provided-buffer ring (`io_uring_register_buf_ring(3)`): the entries
//! shared with the kernel, the buffers they point into, and [`Received`],
//! the borrow that lends one buffer's bytes and gives the buffer back.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use crate::BUFFER_OFFSET;

/// `struct io_uring_buf` (include/uapi/linux/io_uring.h): one entry of the
/// provided-buffer ring; the `resv` field of entry 0 is the ring's tail.
#[repr(C)]
struct BufEntry {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

/// A page of the buffer ring's entries: the ring must be page-aligned
/// (`io_uring_register_buf_ring(3)`).
#[repr(C, align(4096))]
#[derive(Clone, Copy)]
struct Page([u8; 4096]);

/// The provided-buffer ring: entries shared with the kernel, and the
/// buffers they point into. Both are raw allocations: the kernel writes
/// into them behind Rust's back, so no Rust reference to them lives longer
/// than one access.
pub(crate) struct BufRing {
    /// `entries` [`BufEntry`]s over whole pages (from `Box<[Page]>`).
    ring: *mut Page,
    ring_pages: usize,
    /// `entries × size` bytes after [`BUFFER_OFFSET`] (from `Box<[u8]>`).
    pool: *mut u8,
    pool_len: usize,
    pub(crate) entries: u16,
    pub(crate) size: u32,
    /// Our copy of the tail: entries written but maybe not published.
    tail: u16,
    published: u16,
    /// Buffers lent out through [`Received`] and not given back yet.
    pub(crate) lent: usize,
}

impl BufRing {
    pub(crate) fn new(entries: u16, size: u32) -> io::Result<BufRing> {
        if !entries.is_power_of_two() || entries > 32768 || size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffers must be a power of two ≤ 32768, of a non-zero size",
            ));
        }
        let ring_bytes = usize::from(entries) * std::mem::size_of::<BufEntry>();
        let ring_pages = ring_bytes.div_ceil(4096);
        let ring = Box::into_raw(vec![Page([0; 4096]); ring_pages].into_boxed_slice()).cast();
        let pool_len = BUFFER_OFFSET + usize::from(entries) * size as usize;
        // Filled with a non-zero byte so every page is resident from the
        // start: zeroed memory would come from the allocator as untouched
        // pages, faulted in one by one as the kernel first writes each
        // buffer, so the pool's fixed cost would show up spread over the
        // first connections' receives instead of once, at start-up.
        let pool = Box::into_raw(vec![0xa5u8; pool_len].into_boxed_slice()).cast::<u8>();
        let mut bufs = BufRing {
            ring,
            ring_pages,
            pool,
            pool_len,
            entries,
            size,
            tail: 0,
            published: 0,
            lent: 0,
        };
        for bid in 0..entries {
            bufs.give(bid);
        }
        Ok(bufs)
    }

    fn entry_ptr(&self, index: u16) -> *mut BufEntry {
        let index = usize::from(index & (self.entries - 1));
        // Within the allocation: index < entries, and the pages hold
        // `entries` entries. `wrapping_add` keeps this a safe computation.
        self.ring.cast::<BufEntry>().wrapping_add(index)
    }

    fn buffer_ptr(&self, bid: u16) -> *mut u8 {
        let offset = BUFFER_OFFSET + usize::from(bid) * self.size as usize;
        self.pool.wrapping_add(offset)
    }

    /// The address of the entries, for `io_uring_register_buf_ring(3)`.
    pub(crate) fn ring_addr(&self) -> u64 {
        self.ring as u64
    }

    /// Lends buffer `bid`, which the kernel filled with `len` bytes
    /// (checked against the buffer size by the caller).
    pub(crate) fn lend(&mut self, bid: u16, len: usize) -> Received<'_> {
        self.lent += 1;
        Received {
            bufs: self,
            bid,
            len,
        }
    }

    /// Puts buffer `bid` back at the tail (published by [`BufRing::publish`]).
    pub(crate) fn give(&mut self, bid: u16) {
        debug_assert!(bid < self.entries);
        let entry = self.entry_ptr(self.tail);
        let addr = self.buffer_ptr(bid) as u64;
        // SAFETY: `entry` points at an entry inside the ring's allocation,
        // which lives as long as `self`. The kernel reads only entries
        // between its head and the published tail; this one is at our
        // unpublished tail, so the kernel does not read it now, and the
        // writes go through raw field pointers, never touching `resv` (the
        // tail, in entry 0), which the kernel may read.
        unsafe {
            std::ptr::addr_of_mut!((*entry).addr).write(addr);
            std::ptr::addr_of_mut!((*entry).len).write(self.size);
            std::ptr::addr_of_mut!((*entry).bid).write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the buffers given since the last call visible to the kernel:
    /// one release store of the tail (`io_uring_buf_ring_advance(3)`).
    pub(crate) fn publish(&mut self) {
        if self.published == self.tail {
            return;
        }
        let entry0 = self.ring.cast::<BufEntry>();
        // SAFETY: `resv` of entry 0 is inside the ring's allocation, live
        // as long as `self`, and 2-aligned (the pages are 4096-aligned); the
        // kernel only reads it, and every access from our side goes
        // through this atomic view.
        let tail = unsafe { AtomicU16::from_ptr(std::ptr::addr_of_mut!((*entry0).resv)) };
        tail.store(self.tail, Ordering::Release);
        self.published = self.tail;
    }

    /// Forgets the allocations without freeing them: the kernel may still
    /// write into them (a drop that could not wait for every operation).
    pub(crate) fn leak(&mut self) {
        self.ring = std::ptr::null_mut();
        self.pool = std::ptr::null_mut();
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if !self.ring.is_null() {
            let pages = std::ptr::slice_from_raw_parts_mut(self.ring, self.ring_pages);
            // SAFETY: `pages` is exactly what `Box::into_raw` returned in
            // `BufRing::new`; the kernel no longer uses it (the owner
            // unregistered the ring, or `leak` nulled the pointer).
            drop(unsafe { Box::from_raw(pages) });
        }
        if !self.pool.is_null() {
            let pool = std::ptr::slice_from_raw_parts_mut(self.pool, self.pool_len);
            // SAFETY: as above, for the buffers' allocation.
            drop(unsafe { Box::from_raw(pool) });
        }
    }
}

/// Received bytes in a provided buffer, lent for as long as this value
/// lives; dropping it gives the buffer back to the kernel.
pub struct Received<'r> {
    bufs: &'r mut BufRing,
    bid: u16,
    len: usize,
}

impl std::ops::Deref for Received<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        let data = self.bufs.buffer_ptr(self.bid);
        // SAFETY: `bid` came from the kernel's completion, so the kernel
        // has finished writing `len` (≤ the buffer size, checked when this
        // value was made) bytes there and took the buffer off the ring; it
        // cannot reuse it before `Drop` gives it back, which cannot happen
        // while this borrow of `self` lives.
        unsafe { std::slice::from_raw_parts(data, self.len) }
    }
}

impl Drop for Received<'_> {
    fn drop(&mut self) {
        self.bufs.lent -= 1;
        self.bufs.give(self.bid);
    }
}

impl fmt::Debug for Received<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Received")
            .field("bid", &self.bid)
            .field("len", &self.len)
            .finish()
    }
}
