//! Engine.IO session ids: 16 unpredictable bytes in unpadded base64url
//! (22 characters). The sid is a bearer secret — whoever knows it can POST
//! and GET as the client — so it must not be guessable (docs/socketio.md §2).
//!
//! Randomness without a new dependency, as chito's own `rand.rs` does it:
//! `std`'s `RandomState` is keyed from the operating system's random
//! source, and SipHash under that secret key is a pseudo-random function,
//! so hashing a counter gives values nobody can predict without the key.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// The length of a sid's text: 16 bytes in unpadded base64.
pub const SID_LEN: usize = 22;

/// An Engine.IO session id.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sid([u8; SID_LEN]);

impl Sid {
    /// The sid of 16 given bytes (tests, or a caller's own generator).
    pub fn from_bytes(bytes: [u8; 16]) -> Sid {
        let mut text = [0u8; SID_LEN];
        // 16 bytes are exactly 22 unpadded base64 characters; the call
        // cannot fail, and on a failure the sid would stay all zero bytes,
        // which `from_str` never accepts, so it could not be hijacked.
        let _ = URL_SAFE_NO_PAD.encode_slice(bytes, &mut text);
        Sid(text)
    }

    /// The sid a client sent in `?sid=`, if it has a sid's shape.
    pub fn parse(text: &str) -> Option<Sid> {
        let bytes: [u8; SID_LEN] = text.as_bytes().try_into().ok()?;
        let decoded = URL_SAFE_NO_PAD.decode(bytes).ok()?;
        let decoded: [u8; 16] = decoded.try_into().ok()?;
        // Only the canonical encoding names a session.
        let sid = Sid::from_bytes(decoded);
        (sid.0 == bytes).then_some(sid)
    }

    /// The sid's text.
    pub fn as_str(&self) -> &str {
        // Always base64url ASCII by construction.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A secret: debug output shows only its first characters.
        write!(f, "Sid({}…)", self.as_str().get(..4).unwrap_or(""))
    }
}

/// A generator of unpredictable sids, shareable between tasks.
#[derive(Debug)]
pub struct SidGenerator {
    key: RandomState,
    counter: AtomicU64,
}

impl SidGenerator {
    /// A generator keyed from the OS-seeded `RandomState`.
    pub fn new() -> SidGenerator {
        SidGenerator {
            key: RandomState::new(),
            counter: AtomicU64::new(0),
        }
    }

    pub(crate) fn next_u64(&self) -> u64 {
        let mut hasher = self.key.build_hasher();
        hasher.write_u64(self.counter.fetch_add(1, Ordering::Relaxed));
        hasher.finish()
    }

    /// A fresh sid.
    pub fn next_sid(&self) -> Sid {
        let mut bytes = [0u8; 16];
        let (low, high) = bytes.split_at_mut(8);
        low.copy_from_slice(&self.next_u64().to_ne_bytes());
        high.copy_from_slice(&self.next_u64().to_ne_bytes());
        Sid::from_bytes(bytes)
    }
}

impl Default for SidGenerator {
    fn default() -> Self {
        SidGenerator::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn sids_are_22_url_safe_chars_and_unique() {
        let generator = SidGenerator::new();
        let sids: HashSet<Sid> = (0..10_000).map(|_| generator.next_sid()).collect();
        assert_eq!(sids.len(), 10_000);
        for sid in sids.iter().take(100) {
            assert_eq!(sid.as_str().len(), SID_LEN);
            assert!(sid
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            assert_eq!(Sid::parse(sid.as_str()), Some(*sid));
        }
        assert_ne!(
            SidGenerator::new().next_sid(),
            SidGenerator::new().next_sid()
        );
    }

    #[test]
    fn parse_refuses_what_is_not_a_sid() {
        let sid = Sid::from_bytes([0xab; 16]);
        let text = sid.as_str().to_owned();
        assert!(Sid::parse("").is_none());
        assert!(Sid::parse(&text[..21]).is_none());
        assert!(Sid::parse(&format!("{text}A")).is_none());
        assert!(Sid::parse("!!!!!!!!!!!!!!!!!!!!!!").is_none());
        // Non-canonical trailing bits.
        let mut bad = text.clone().into_bytes();
        bad[21] = b'z';
        if let Ok(bad) = String::from_utf8(bad) {
            assert!(Sid::parse(&bad).is_none() || bad == text);
        }
        assert!(!format!("{sid:?}").contains(&text));
    }
}
