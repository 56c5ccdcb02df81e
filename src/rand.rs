//! Unpredictable bytes for masking keys and `Sec-WebSocket-Key`, without a
//! new dependency.
//!
//! RFC 6455 §5.3 requires each masking key to be "derived from a strong
//! source of entropy" so that a script cannot predict the bytes that appear
//! on the wire, and §4.1 requires the handshake nonce to be randomly
//! selected. `std`'s [`RandomState`] is seeded from the operating system's
//! random source once per thread; SipHash keyed with that secret seed is a
//! pseudo-random function, so hashing a counter yields a stream of values
//! that cannot be predicted without the key, even by a peer that sees every
//! previous output.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// A keyed generator of unpredictable 64-bit values.
#[derive(Debug, Clone)]
pub(crate) struct Rng {
    key: RandomState,
    counter: u64,
}

impl Rng {
    /// A generator whose key comes from the OS-seeded `RandomState`.
    pub(crate) fn new() -> Self {
        Rng {
            key: RandomState::new(),
            counter: 0,
        }
    }

    /// The next unpredictable 64-bit value.
    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut hasher = self.key.build_hasher();
        hasher.write_u64(self.counter);
        self.counter = self.counter.wrapping_add(1);
        hasher.finish()
    }

    /// A fresh 4-byte masking key (RFC 6455 §5.3).
    pub(crate) fn mask_key(&mut self) -> [u8; 4] {
        let bytes = self.next_u64().to_ne_bytes();
        [bytes[0], bytes[1], bytes[2], bytes[3]]
    }

    /// Sixteen unpredictable bytes, the handshake nonce of RFC 6455 §4.1.
    pub(crate) fn bytes16(&mut self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.next_u64().to_ne_bytes());
        out[8..].copy_from_slice(&self.next_u64().to_ne_bytes());
        out
    }
}

impl Default for Rng {
    fn default() -> Self {
        Rng::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn values_do_not_repeat() {
        let mut rng = Rng::new();
        let seen: HashSet<u64> = (0..10_000).map(|_| rng.next_u64()).collect();
        assert_eq!(seen.len(), 10_000);
    }

    #[test]
    fn two_generators_differ() {
        let mut a = Rng::new();
        let mut b = Rng::new();
        assert_ne!(a.bytes16(), b.bytes16());
    }

    #[test]
    fn bits_are_balanced() {
        // A crude check that the output is not constant or biased:
        // over 4096 values each bit position is set roughly half the time.
        let mut rng = Rng::new();
        let mut ones = [0u32; 64];
        for _ in 0..4096 {
            let v = rng.next_u64();
            for (bit, count) in ones.iter_mut().enumerate() {
                *count += ((v >> bit) & 1) as u32;
            }
        }
        for count in ones {
            assert!((1700..2400).contains(&count), "bit set {count} times");
        }
    }
}
