//! Streaming, fail-fast UTF-8 validation for text messages (RFC 6455 §8.1).
//!
//! A text message may arrive in many frames, and each frame in many reads.
//! RFC 6455 §8.1 says an endpoint that receives invalid UTF-8 MUST _Fail the
//! WebSocket Connection_; doing it as soon as the offending byte arrives
//! (rather than at the end of the message) is what Autobahn 6.4.x checks.
//!
//! Each chunk is validated with `simdutf8`. A code point cut by a chunk
//! boundary leaves at most three bytes that are a valid *prefix*; they are
//! carried into the next chunk. A chunk that cannot be the prefix of any
//! valid UTF-8 (an invalid byte, an overlong form, a surrogate, a code point
//! above U+10FFFF) is rejected at once, even mid-code-point.

/// Incremental validator state: the carried bytes of a split code point.
#[derive(Debug, Clone, Default)]
pub(crate) struct Utf8Validator {
    carry: [u8; 4],
    /// At most 4 (a code point's bytes), so a byte holds it.
    carry_len: u8,
}

/// The bytes seen so far cannot be the start of valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidUtf8;

impl Utf8Validator {
    /// Forgets any carried bytes, ready for a new message.
    pub(crate) fn reset(&mut self) {
        self.carry_len = 0;
    }

    /// Validates the next chunk of the message.
    pub(crate) fn feed(&mut self, mut data: &[u8]) -> Result<(), InvalidUtf8> {
        if self.carry_len > 0 {
            let carried = usize::from(self.carry_len);
            let width = sequence_width(self.carry[0]);
            let take = width.saturating_sub(carried).min(data.len());
            let (head, rest) = data.split_at(take);
            let end = carried + take;
            let Some(slot) = self.carry.get_mut(carried..end) else {
                return Err(InvalidUtf8);
            };
            slot.copy_from_slice(head);
            // `end` is at most the width of a sequence, 4.
            self.carry_len = end as u8;
            data = rest;
            // `end` is in bounds: the slot above was.
            let carried = self.carry.get(..end).unwrap_or_default();
            match std::str::from_utf8(carried) {
                Ok(_) => self.carry_len = 0,
                // Still a valid prefix, and `data` is exhausted.
                Err(e) if e.error_len().is_none() => return Ok(()),
                Err(_) => return Err(InvalidUtf8),
            }
        }
        match simdutf8::compat::from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                // The input ends inside a code point whose bytes so far are
                // valid: carry them (at most 3).
                let tail = data.get(e.valid_up_to()..).unwrap_or_default();
                let Some(slot) = self.carry.get_mut(..tail.len()) else {
                    return Err(InvalidUtf8);
                };
                slot.copy_from_slice(tail);
                // At most 3 bytes (the slot above was in bounds).
                self.carry_len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// Checks that the message did not end inside a code point.
    pub(crate) fn finish(&self) -> Result<(), InvalidUtf8> {
        if self.carry_len == 0 {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }
}

/// The length of the sequence a lead byte starts (RFC 3629 §4). Only lead
/// bytes of valid prefixes reach here.
fn sequence_width(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn feed_in_pieces(data: &[u8], cuts: &[usize]) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::default();
        let mut at = 0;
        for &cut in cuts {
            let cut = cut.clamp(at, data.len());
            v.feed(&data[at..cut])?;
            at = cut;
        }
        v.feed(&data[at..])?;
        v.finish()
    }

    #[test]
    fn valid_text_split_everywhere() {
        let text = "κόσμε ascii 𝄞 €uro".as_bytes();
        for a in 0..=text.len() {
            for b in a..=text.len() {
                assert_eq!(feed_in_pieces(text, &[a, b]), Ok(()), "cuts {a} {b}");
            }
        }
    }

    #[test]
    fn fails_fast_inside_a_code_point() {
        // Autobahn 6.4.1: F4 90 can never start a valid sequence (> U+10FFFF).
        let mut v = Utf8Validator::default();
        assert_eq!(v.feed("κόσμε".as_bytes()), Ok(()));
        assert_eq!(v.feed(&[0xF4]), Ok(()));
        assert_eq!(v.feed(&[0x90]), Err(InvalidUtf8));
    }

    #[test]
    fn invalid_continuation_after_carry_fails_immediately() {
        let mut v = Utf8Validator::default();
        assert_eq!(v.feed(&[0xE2, 0x82]), Ok(()));
        assert_eq!(v.feed(&[0x41]), Err(InvalidUtf8));
    }

    #[test]
    fn surrogates_and_overlongs_fail() {
        for bad in [
            &[0xED, 0xA0, 0x80][..],
            &[0xC0, 0xAF],
            &[0xE0, 0x80, 0xAF],
            &[0xFF],
        ] {
            let mut v = Utf8Validator::default();
            assert_eq!(v.feed(bad), Err(InvalidUtf8), "{bad:x?}");
            // Fed one byte at a time it fails no later than the whole.
            let mut v = Utf8Validator::default();
            let failed = bad.iter().any(|b| v.feed(&[*b]).is_err());
            assert!(failed, "{bad:x?} bytewise");
        }
    }

    #[test]
    fn truncated_message_fails_at_finish() {
        let mut v = Utf8Validator::default();
        assert_eq!(v.feed(&[0xF0, 0x9D, 0x84]), Ok(()));
        assert_eq!(v.finish(), Err(InvalidUtf8));
        v.reset();
        assert_eq!(v.finish(), Ok(()));
    }

    proptest! {
        #[test]
        fn agrees_with_std(data in proptest::collection::vec(any::<u8>(), 0..64), cuts in proptest::collection::vec(0usize..64, 0..4)) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            let expected = std::str::from_utf8(&data).is_ok();
            prop_assert_eq!(feed_in_pieces(&data, &cuts).is_ok(), expected);
        }

        #[test]
        fn valid_strings_pass_in_any_pieces(s in "\\PC{0,40}", cuts in proptest::collection::vec(0usize..200, 0..6)) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            prop_assert_eq!(feed_in_pieces(s.as_bytes(), &cuts), Ok(()));
        }
    }
}
