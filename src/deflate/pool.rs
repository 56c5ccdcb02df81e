//! The per-thread free lists of zlib states used without context takeover
//! (and for states of dropped `Deflater`s / `Inflater`s). Every state in
//! here has been reset, so no data of one connection can reach another.

use std::cell::RefCell;

use flate2::{Compress, Decompress};

/// At most this many idle states per kind (compressor window bits and
/// level, or decompressor) are kept per thread; more are freed.
const MAX_PER_KEY: usize = 8;

struct Pool {
    compressors: Vec<(u8, u32, Compress)>,
    decompressors: Vec<Decompress>,
}

thread_local! {
    static POOL: RefCell<Pool> = const {
        RefCell::new(Pool {
            compressors: Vec::new(),
            decompressors: Vec::new(),
        })
    };
}

/// Runs `f` on this thread's pool; `None` while the thread is being
/// torn down (or, which cannot happen, if the pool is borrowed).
fn with<R>(f: impl FnOnce(&mut Pool) -> R) -> Option<R> {
    POOL.try_with(|pool| pool.try_borrow_mut().ok().map(|mut pool| f(&mut pool)))
        .ok()
        .flatten()
}

pub(super) fn take_compressor(bits: u8, level: u32) -> Option<Compress> {
    with(|pool| {
        let index = pool
            .compressors
            .iter()
            .position(|(b, l, _)| *b == bits && *l == level)?;
        Some(pool.compressors.swap_remove(index).2)
    })
    .flatten()
}

/// `state` must have been reset.
pub(super) fn put_compressor(bits: u8, level: u32, state: Compress) {
    // Dropped outside the borrow if the pool is full or gone.
    let _ = with(move |pool| {
        let count = pool
            .compressors
            .iter()
            .filter(|(b, l, _)| *b == bits && *l == level)
            .count();
        if count < MAX_PER_KEY {
            pool.compressors.push((bits, level, state));
        }
    });
}

pub(super) fn take_decompressor() -> Option<Decompress> {
    with(|pool| pool.decompressors.pop()).flatten()
}

/// `state` must have been reset.
pub(super) fn put_decompressor(state: Decompress) {
    let _ = with(move |pool| {
        if pool.decompressors.len() < MAX_PER_KEY {
            pool.decompressors.push(state);
        }
    });
}

/// How many idle compressors and decompressors this thread holds.
#[cfg(test)]
fn sizes() -> (usize, usize) {
    with(|pool| (pool.compressors.len(), pool.decompressors.len())).unwrap_or((0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deflate::codec::tests::{compress_all, inflate_all, HELLO};
    use crate::deflate::codec::{DeflateError, Deflater, Inflater};

    #[test]
    fn pool_holds_idle_states() {
        // Thread-local pool: run on a fresh thread for exact counts.
        std::thread::spawn(|| {
            assert_eq!(sizes(), (0, 0));
            let mut deflater = Deflater::new(15, true, 6).unwrap();
            let mut inflater = Inflater::new(true);
            let payload = compress_all(&mut deflater, b"Hello");
            inflate_all(&mut inflater, &payload).unwrap();
            // Between messages nothing is held, and the states wait in the
            // pool.
            assert_eq!(deflater.memory_estimate(), 0);
            assert_eq!(inflater.memory_estimate(), 0);
            assert_eq!(sizes(), (1, 1));
            // A message in progress borrows them ...
            let mut payload = Vec::new();
            deflater.compress(b"Hel", false, &mut payload).unwrap();
            assert!(deflater.memory_estimate() > 200_000);
            assert_eq!(sizes(), (0, 1));
            deflater.compress(b"lo", true, &mut payload).unwrap();
            let mut out = Vec::new();
            inflater
                .inflate(&payload[..2], false, &mut out, 100)
                .unwrap();
            assert!(inflater.memory_estimate() > 0);
            assert_eq!(sizes(), (1, 0));
            inflater
                .inflate(&payload[2..], true, &mut out, 100)
                .unwrap();
            assert_eq!(out, b"Hello");
            // ... and a second connection reuses them.
            assert_eq!(sizes(), (1, 1));
            let mut other = Deflater::new(15, true, 6).unwrap();
            assert_eq!(compress_all(&mut other, b"Hello"), HELLO);
            assert_eq!(sizes(), (1, 1));
            // Another window size or level is another key.
            let mut small = Deflater::new(9, true, 6).unwrap();
            compress_all(&mut small, b"Hello");
            assert_eq!(sizes(), (2, 1));
            // Context takeover keeps its state, and pools it when dropped.
            let mut keeping = Deflater::new(15, false, 6).unwrap();
            let mut keeping_in = Inflater::new(false);
            let payload = compress_all(&mut keeping, b"Hello");
            inflate_all(&mut keeping_in, &payload).unwrap();
            assert!(keeping.memory_estimate() > 0);
            assert!(keeping_in.memory_estimate() > 0);
            keeping.release_idle();
            keeping_in.release_idle();
            assert!(keeping.memory_estimate() > 0);
            assert!(keeping_in.memory_estimate() > 0);
            assert_eq!(sizes(), (1, 0));
            drop(keeping);
            drop(keeping_in);
            assert_eq!(sizes(), (2, 1));
            // The pool is bounded.
            let mut many: Vec<Deflater> = (0..2 * MAX_PER_KEY)
                .map(|_| Deflater::new(15, false, 6).unwrap())
                .collect();
            for deflater in &mut many {
                compress_all(deflater, b"x");
            }
            drop(many);
            assert_eq!(sizes(), (MAX_PER_KEY + 1, 1));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn pooled_state_is_clean() {
        // A state used with context takeover and then pooled must not leak
        // its window into another connection's stream.
        std::thread::spawn(|| {
            let mut first = Deflater::new(15, false, 6).unwrap();
            compress_all(&mut first, b"Hello");
            drop(first);
            let mut second = Deflater::new(15, false, 6).unwrap();
            assert_eq!(compress_all(&mut second, b"Hello"), HELLO);
            let mut inflater = Inflater::new(false);
            inflate_all(&mut inflater, HELLO).unwrap();
            drop(inflater);
            let mut inflater = Inflater::new(false);
            assert_eq!(
                inflate_all(&mut inflater, &[0xf2, 0x00, 0x11, 0x00, 0x00]),
                Err(DeflateError::Corrupt)
            );
        })
        .join()
        .unwrap();
    }
}
