//! Payload masking (RFC 6455 §5.3).
//!
//! Every frame a client sends carries a 4-byte masking key and its payload is
//! XOR-ed with that key repeated; the server applies the same XOR to recover
//! the data. The work is done in place, eight bytes at a time, in safe code:
//! the key is widened to a `u64` and each 8-byte chunk of the payload is read,
//! XOR-ed and written back as one word, which the compiler turns into vector
//! instructions. A payload that arrives in several reads is unmasked piece by
//! piece: `offset` says how far into the payload the piece starts, so the key
//! is rotated to stay aligned with the frame.

/// XORs `data` with the masking `key`, as if `data` started `offset` bytes
/// into the frame's payload.
///
/// Applying it twice with the same key and offset restores the input.
///
/// ```
/// let key = [0x37, 0xfa, 0x21, 0x3d];
/// let mut data = *b"Hello";
/// chito::mask::apply_mask(&mut data, key, 0);
/// assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]); // RFC 6455 §5.7 example
/// chito::mask::apply_mask(&mut data, key, 0);
/// assert_eq!(&data, b"Hello");
/// ```
#[inline]
pub fn apply_mask(data: &mut [u8], key: [u8; 4], offset: usize) {
    let key = rotate_key(key, offset);
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = data.chunks_exact_mut(32);
    for chunk in &mut chunks {
        for word in chunk.chunks_exact_mut(8) {
            xor_word(word, wide);
        }
    }
    let rest = chunks.into_remainder();
    let mut words = rest.chunks_exact_mut(8);
    for word in &mut words {
        xor_word(word, wide);
    }
    // The tail is shorter than a word and starts at a multiple of 8, so
    // the key phase is unchanged.
    for (byte, k) in words.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *byte ^= k;
    }
}

/// The key as seen by a piece of payload starting `offset` bytes in.
#[inline]
fn rotate_key(key: [u8; 4], offset: usize) -> [u8; 4] {
    let mut rotated = key;
    rotated.rotate_left(offset % 4);
    rotated
}

#[inline(always)]
fn xor_word(word: &mut [u8], key: u64) {
    if let Ok(bytes) = <[u8; 8]>::try_from(&*word) {
        let value = u64::from_ne_bytes(bytes) ^ key;
        word.copy_from_slice(&value.to_ne_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference(data: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, b) in data.iter_mut().enumerate() {
            *b ^= key[(i + offset) % 4];
        }
    }

    #[test]
    fn rfc_example() {
        // RFC 6455 §5.7: a masked "Hello" from a client.
        let mut data = *b"Hello";
        apply_mask(&mut data, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }

    #[test]
    fn every_length_and_offset_matches_bytewise() {
        let key = [0x12, 0x34, 0x56, 0x78];
        for len in 0..100 {
            for offset in 0..8 {
                let original: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                let mut fast = original.clone();
                let mut slow = original.clone();
                apply_mask(&mut fast, key, offset);
                reference(&mut slow, key, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
            }
        }
    }

    proptest! {
        #[test]
        fn split_unmasking_equals_whole(
            data in proptest::collection::vec(any::<u8>(), 0..300),
            key in any::<[u8; 4]>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut whole = data.clone();
            apply_mask(&mut whole, key, 0);
            let mut split = data.clone();
            let at = if data.is_empty() { 0 } else { cut.index(data.len() + 1) };
            let (a, b) = split.split_at_mut(at);
            apply_mask(a, key, 0);
            apply_mask(b, key, at);
            prop_assert_eq!(whole, split);
        }
    }
}
