//! `Inflater` on hostile compressed streams.
//!
//! Input: `[flags][max_out: u16 LE][n][n piece sizes][stream]`.
//!
//! - flags bit 0: no_context_takeover (both the Inflater and, in deflater
//!   mode, the Deflater); bit 1: deflater mode (the stream is plaintext,
//!   compressed by a `Deflater` first); bit 2: mutate the compressed bytes
//!   (positions and values from the piece sizes); bit 3: two messages on
//!   the same Inflater; bits 4..8: the Deflater's window, 9 + v % 7.
//! - `n % 17` piece sizes (bytes, 0 allowed) cycle to cut the stream into
//!   the pieces given to `inflate`; `n >> 5` is the compression level.
//!
//! Checks: never a panic; `out.len() <= max_out` after every call;
//! `out.capacity() <= max_out + 1` (documented cap; the buffer starts
//! empty); `TooBig` is the only error on data a `Deflater` produced, and
//! then only if the plaintext is longer than `max_out`, else the output is
//! the plaintext exactly; the result does not depend on how the stream is
//! cut into pieces.
#![no_main]

use chito::deflate::{DeflateError, Deflater, Inflater};
use libfuzzer_sys::fuzz_target;

/// Inflates one message, cut into pieces, checking the bounds after each
/// call; the error, if any, ends the message.
fn inflate_message(
    inflater: &mut Inflater,
    stream: &[u8],
    sizes: &[u8],
    out: &mut Vec<u8>,
    max_out: usize,
) -> Result<(), DeflateError> {
    out.clear();
    // All-zero sizes would never make progress: one piece then.
    let sizes = if sizes.iter().all(|&s| s == 0) {
        &[][..]
    } else {
        sizes
    };
    // With an even number of sizes, the message ends with an empty piece
    // (as a connection does when the last frame's payload was inflated
    // before its FIN was seen).
    let separate_fin = !sizes.is_empty() && sizes.len() % 2 == 0;
    let mut rest = stream;
    let mut i = 0;
    let mut done = false;
    loop {
        let take = if sizes.is_empty() {
            rest.len()
        } else {
            (sizes[i % sizes.len()] as usize).min(rest.len())
        };
        i += 1;
        let (piece, tail) = rest.split_at(if done { 0 } else { take });
        rest = tail;
        // Empty pieces are allowed (a zero size); a cycle always advances.
        let (piece, fin) = if done {
            (&[][..], true)
        } else {
            done = rest.is_empty();
            (piece, done && !separate_fin)
        };
        let result = inflater.inflate(piece, fin, out, max_out);
        assert!(
            out.len() <= max_out,
            "output {} > max_out {max_out} ({result:?})",
            out.len()
        );
        assert!(
            out.capacity() <= max_out + 1,
            "capacity {} > max_out + 1 = {}",
            out.capacity(),
            max_out + 1
        );
        if let Err(e) = result {
            return Err(e);
        }
        if fin {
            return Ok(());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [flags, lo, hi, n, rest @ ..] = data else {
        return;
    };
    let nct = flags & 1 != 0;
    let deflater_mode = flags & 2 != 0;
    let mutate = flags & 4 != 0;
    let two = flags & 8 != 0;
    let window = 9 + (flags >> 4) % 7;
    let max_out = u16::from_le_bytes([*lo, *hi]) as usize;
    let level = (n >> 5) as u32;
    let (sizes, stream) = rest.split_at(((n % 17) as usize).min(rest.len()));

    // Each message: (compressed bytes, Some(plaintext) if untouched Deflater output).
    let mut messages: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
    if deflater_mode {
        let mut deflater = Deflater::new(window, nct, level).expect("valid parameters");
        let plains: Vec<Vec<u8>> = if two {
            vec![stream.to_vec(), stream.iter().rev().copied().collect()]
        } else {
            vec![stream.to_vec()]
        };
        for plain in plains {
            let mut compressed = Vec::new();
            // Compress in pieces too (the Deflater's streaming path).
            let cut = sizes
                .first()
                .map_or(plain.len(), |&s| (s as usize).min(plain.len()));
            deflater
                .compress(&plain[..cut], false, &mut compressed)
                .expect("compress first piece");
            deflater
                .compress(&plain[cut..], true, &mut compressed)
                .expect("compress last piece");
            assert!(!compressed.is_empty(), "empty compressed message");
            let mut intact = true;
            if mutate {
                for (k, &s) in sizes.iter().enumerate() {
                    let at = (s as usize * 31 + k) % compressed.len();
                    compressed[at] ^= s | 1;
                    intact = false;
                }
            }
            messages.push((compressed, intact.then_some(plain)));
        }
    } else {
        messages.push((stream.to_vec(), None));
        if two {
            messages.push((stream.to_vec(), None));
        }
    }

    let mut inflater = Inflater::new(nct);
    let mut whole = Inflater::new(nct);
    let mut out = Vec::new();
    let mut out_whole = Vec::new();
    let mut all_intact = true;
    for (compressed, plain) in &messages {
        let result = inflate_message(&mut inflater, compressed, sizes, &mut out, max_out);
        // The same messages, each in one piece, on a second Inflater.
        let result_whole = inflate_message(&mut whole, compressed, &[], &mut out_whole, max_out);
        assert_eq!(
            result.is_ok(),
            result_whole.is_ok(),
            "piece split changes the outcome: {result:?} vs {result_whole:?}"
        );
        if result.is_ok() {
            assert_eq!(out, out_whole, "piece split changes the output");
        }
        all_intact &= plain.is_some();
        if let (Some(plain), true) = (plain, all_intact) {
            if plain.len() <= max_out {
                assert_eq!(result, Ok(()), "Deflater output does not inflate");
                assert!(out == *plain, "round trip changed the message");
            } else {
                assert_eq!(result, Err(DeflateError::TooBig));
            }
        }
        if result.is_err() {
            // After an error the context is gone (takeover mode); later
            // messages may legitimately fail.
            all_intact = nct && all_intact;
        }
    }
});
