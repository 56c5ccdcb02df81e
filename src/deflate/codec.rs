//! Compression and decompression of `permessage-deflate` messages
//! (RFC 7692 §6, §7.2): [`Deflater`] for what an endpoint sends, [`Inflater`]
//! for what it receives. Each takes its zlib state from the per-thread
//! [`pool`] when a message starts and, when no context has to be kept
//! between messages (RFC 7692 §7.1.1), gives it back when the message ends;
//! the window limits and the memory estimates live here too.

use std::fmt;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::pool;

/// The largest LZ77 window, 32 KiB (RFC 7692 §7.1.2: the default).
pub const MAX_WINDOW_BITS: u8 = 15;
/// The smallest window zlib can *compress* with. RFC 7692 §7.1.2 allows 8,
/// but zlib's raw deflate only supports 9 to 15; a peer's window of 8 is no
/// problem when decompressing (a larger window always works).
pub const MIN_WINDOW_BITS: u8 = 9;

/// The bytes a sync flush ends with: an empty stored block. RFC 7692
/// §7.2.1 removes them from each compressed message and §7.2.2 appends them
/// again before decompressing.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// How much output buffer [`Inflater::inflate`] adds at a time at most
/// when the buffer is small; larger buffers grow geometrically, never past
/// the caller's limit plus one byte.
const INFLATE_STEP: usize = 32 * 1024;

/// Why compressing or decompressing a message failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeflateError {
    /// The decompressed message would exceed the caller's limit (a
    /// decompression bomb, or simply too large); RFC 6455 §7.4.1 close
    /// code 1009.
    TooBig,
    /// The compressed data is not valid DEFLATE (RFC 7692 §7.2.2); close
    /// code 1007 or 1002 are both defensible, 1007 ("inconsistent data") is
    /// the usual choice.
    Corrupt,
    /// A [`Deflater`] was asked for a window outside `9..=15`.
    InvalidWindowBits(u8),
    /// A [`Deflater`] was asked for a compression level above 9.
    InvalidLevel(u32),
    /// zlib reported an error while compressing (not expected to happen).
    Compress,
}

impl fmt::Display for DeflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeflateError::TooBig => f.write_str("decompressed message exceeds the size limit"),
            DeflateError::Corrupt => f.write_str("invalid DEFLATE data in compressed message"),
            DeflateError::InvalidWindowBits(bits) => write!(
                f,
                "window bits {bits} not supported for compression (expected \
                 {MIN_WINDOW_BITS} to {MAX_WINDOW_BITS})"
            ),
            DeflateError::InvalidLevel(level) => {
                write!(
                    f,
                    "compression level {level} not supported (expected 0 to 9)"
                )
            }
            DeflateError::Compress => f.write_str("compressor failed"),
        }
    }
}

impl std::error::Error for DeflateError {}

/// Heap bytes held by one raw-deflate compressor with a window of
/// `window_bits`, measured with zlib-rs 0.6 (the level does not matter):
/// 4 bytes per window byte (window and hash chains) plus about 243 KiB of
/// fixed tables and buffers, so 245 KiB at 9 bits, 259 KiB at 12 and
/// 371 KiB at 15. All of it is allocated when the state is created.
fn compressor_memory(window_bits: u8) -> usize {
    let window = 1usize << window_bits.min(MAX_WINDOW_BITS);
    window.saturating_mul(4).saturating_add(COMPRESSOR_FIXED)
}
/// The part of a compressor's size that does not depend on the window.
const COMPRESSOR_FIXED: usize = 248_960;
/// Heap bytes held by one 15-bit raw-inflate decompressor, including its
/// 32 KiB window (measured with zlib-rs 0.6; allocated when created).
const DECOMPRESSOR_MEMORY: usize = 47_552;

/// Compresses the messages one endpoint sends on one connection
/// (RFC 7692 §7.2.1).
///
/// Creating one allocates nothing; the zlib state is obtained when the
/// first message starts. With context takeover it then lives as long as
/// the `Deflater` (and goes to the per-thread pool when dropped); without,
/// it is borrowed from the pool for each message only.
#[derive(Debug)]
pub struct Deflater {
    window_bits: u8,
    level: u32,
    no_context_takeover: bool,
    state: Option<Compress>,
    /// A message has been started with `fin == false` and not finished.
    in_message: bool,
}

impl Deflater {
    /// A compressor using a window of `window_bits` (`9..=15`; RFC 7692
    /// §7.1.2 allows 8, but zlib cannot compress with it, so negotiation
    /// never agrees to it), resetting its context after each message if
    /// `no_context_takeover` (RFC 7692 §7.1.1), at zlib `level` (`0..=9`).
    pub fn new(
        window_bits: u8,
        no_context_takeover: bool,
        level: u32,
    ) -> Result<Self, DeflateError> {
        if !(MIN_WINDOW_BITS..=MAX_WINDOW_BITS).contains(&window_bits) {
            return Err(DeflateError::InvalidWindowBits(window_bits));
        }
        if level > 9 {
            return Err(DeflateError::InvalidLevel(level));
        }
        Ok(Deflater {
            window_bits,
            level,
            no_context_takeover,
            state: None,
            in_message: false,
        })
    }

    /// Appends the compressed form of `input` to `out`.
    ///
    /// `input` is a whole message, or the next piece of one; `fin` marks its
    /// last piece. Pieces before the last are not flushed, so their output
    /// may be short or empty; the last piece ends with a sync flush whose
    /// trailing `00 00 ff ff` is removed (RFC 7692 §7.2.1). An empty message
    /// compresses to the single byte `00` (RFC 7692 §7.2.3.6). The caller
    /// sends the output as the message's payload with RSV1 set on the first
    /// frame (RFC 7692 §6); it may split it into frames at any byte.
    ///
    /// After the message, the context is reset if no context takeover was
    /// agreed (RFC 7692 §7.1.1) and kept otherwise.
    pub fn compress(
        &mut self,
        input: &[u8],
        fin: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), DeflateError> {
        let mut state = match self.state.take() {
            Some(state) => state,
            None => pool::take_compressor(self.window_bits, self.level).unwrap_or_else(|| {
                Compress::new_with_window_bits(
                    Compression::new(self.level),
                    false,
                    self.window_bits,
                )
            }),
        };
        let start = out.len();
        if let Err(error) = deflate_into(&mut state, input, fin, out) {
            // The stream is unusable; a later message starts afresh (the
            // connection is expected to be failed anyway).
            self.in_message = false;
            return Err(error);
        }
        self.in_message = !fin;
        if fin {
            let emitted = out.get(start..).unwrap_or_default();
            if emitted.ends_with(&TAIL) {
                // RFC 7692 §7.2.1: remove the four octets of the empty
                // stored block that ends the sync flush.
                out.truncate(out.len().saturating_sub(TAIL.len()));
            } else if emitted.is_empty() {
                // zlib emits nothing for a sync flush with nothing new to
                // flush (an empty message after another with context
                // takeover). The stream is byte-aligned, so one 0x00 (a
                // stored block header the receiver completes with the tail
                // it appends) is a valid empty message (RFC 7692 §7.2.3.6).
                out.push(0x00);
            } else {
                return Err(DeflateError::Compress);
            }
            if self.no_context_takeover {
                // RFC 7692 §7.1.1: start the next message with an empty
                // window. Nothing needs keeping, so give the state back.
                state.reset();
                pool::put_compressor(self.window_bits, self.level, state);
                return Ok(());
            }
        }
        self.state = Some(state);
        Ok(())
    }

    /// Gives the zlib state back to the per-thread pool if nothing in it
    /// needs keeping: without context takeover, between messages. (That
    /// already happens at the end of each message, so this only matters
    /// after a failed call.) With context takeover the state holds the
    /// window the next message may refer to (RFC 7692 §7.1.1) and is kept
    /// until the `Deflater` is dropped.
    pub fn release_idle(&mut self) {
        if self.no_context_takeover && !self.in_message {
            if let Some(mut state) = self.state.take() {
                state.reset();
                pool::put_compressor(self.window_bits, self.level, state);
            }
        }
    }

    /// The window this compressor uses, as a base-2 logarithm.
    pub(crate) fn window_bits(&self) -> u8 {
        self.window_bits
    }

    /// The zlib level this compressor uses.
    pub(crate) fn level(&self) -> u32 {
        self.level
    }

    /// Whether each message starts with an empty window (RFC 7692 §7.1.1),
    /// so a message compressed by another compressor with the same window
    /// and level is interchangeable with this one's.
    pub(crate) fn resets_context(&self) -> bool {
        self.no_context_takeover
    }

    /// Approximate heap bytes held by this compressor now: 0 when it holds
    /// no zlib state.
    pub fn memory_estimate(&self) -> usize {
        if self.state.is_some() {
            compressor_memory(self.window_bits)
        } else {
            0
        }
    }
}

impl Drop for Deflater {
    fn drop(&mut self) {
        if let Some(mut state) = self.state.take() {
            state.reset();
            pool::put_compressor(self.window_bits, self.level, state);
        }
    }
}

/// Runs `input` through the compressor, with a sync flush if `fin`.
fn deflate_into(
    state: &mut Compress,
    input: &[u8],
    fin: bool,
    out: &mut Vec<u8>,
) -> Result<(), DeflateError> {
    let flush = if fin {
        FlushCompress::Sync
    } else {
        FlushCompress::None
    };
    let mut rest = input;
    loop {
        // Room for about half the remaining input at a time: most text
        // compresses better than that, and the loop handles the rest.
        out.reserve((rest.len() / 2).saturating_add(64));
        let spare = out.capacity().saturating_sub(out.len());
        let before_in = state.total_in();
        let before_len = out.len();
        state
            .compress_vec(rest, out, flush)
            .map_err(|_| DeflateError::Compress)?;
        let consumed = usize::try_from(state.total_in().saturating_sub(before_in))
            .map_err(|_| DeflateError::Compress)?;
        let produced = out.len().saturating_sub(before_len);
        rest = rest.get(consumed..).ok_or(DeflateError::Compress)?;
        // Done once all input is taken and zlib stopped short of filling
        // the output space (so the flush, if any, is complete).
        if rest.is_empty() && produced < spare {
            return Ok(());
        }
        if consumed == 0 && produced == 0 {
            // No progress possible (zlib's Z_BUF_ERROR): with no input left
            // that means nothing remains to flush.
            return if rest.is_empty() {
                Ok(())
            } else {
                Err(DeflateError::Compress)
            };
        }
    }
}

/// Decompresses the messages one endpoint receives on one connection
/// (RFC 7692 §7.2.2).
///
/// Always uses a 15-bit (32 KiB) window, which decodes data compressed
/// with any smaller one (RFC 7692 §7.1.2.1), so the peer's window size
/// needs no handling. Creating one allocates nothing.
#[derive(Debug)]
pub struct Inflater {
    no_context_takeover: bool,
    state: Option<Decompress>,
    /// A message has started and not finished.
    in_message: bool,
    /// The current message held a final (`BFINAL`) block; the rest of it is
    /// ignored and the stream restarts with the next message.
    ended: bool,
}

impl Inflater {
    /// A decompressor that resets its context after each message if the
    /// peer agreed to `no_context_takeover` (RFC 7692 §7.1.1).
    pub fn new(no_context_takeover: bool) -> Self {
        Inflater {
            no_context_takeover,
            state: None,
            in_message: false,
            ended: false,
        }
    }

    /// Appends the decompressed form of `input` to `out`.
    ///
    /// `input` is the next piece of a compressed message's payload (a whole
    /// message, a frame, or any part of one); `fin` marks its last piece,
    /// after which `00 00 ff ff` is appended to the data before
    /// decompressing (RFC 7692 §7.2.2). The output is the message's
    /// decompressed bytes, in order, across calls.
    ///
    /// `out.len()` never exceeds `max_out`: the buffer grows in steps of
    /// at most 32 KiB (or geometrically once large, capped at `max_out + 1`
    /// bytes of capacity), and [`DeflateError::TooBig`] is returned as soon
    /// as the output would pass `max_out`. Pass the message size limit minus
    /// what earlier pieces of the message produced into other buffers, or
    /// reuse one buffer for the whole message.
    ///
    /// A final (`BFINAL`) block ends the DEFLATE stream: the rest of the
    /// message is ignored (RFC 7692 §7.2.3.4's example has an extra byte
    /// after it) and the next message starts a new stream.
    ///
    /// After an error the connection should be failed; the decompressor is
    /// reset, so with context takeover later messages would not decode.
    pub fn inflate(
        &mut self,
        input: &[u8],
        fin: bool,
        out: &mut Vec<u8>,
        max_out: usize,
    ) -> Result<(), DeflateError> {
        let mut state = match self.state.take() {
            Some(state) => state,
            None => pool::take_decompressor().unwrap_or_else(|| Decompress::new(false)),
        };
        let mut result = Ok(());
        if !self.ended {
            result = inflate_into(&mut state, input, out, max_out).map(|ended| self.ended = ended);
        }
        if result.is_ok() && fin && !self.ended {
            // RFC 7692 §7.2.2: append the tail removed by the sender.
            result = inflate_into(&mut state, &TAIL, out, max_out).map(|_| ());
        }
        if let Err(error) = result {
            self.in_message = false;
            self.ended = false;
            state.reset(false);
            if self.no_context_takeover {
                pool::put_decompressor(state);
            } else {
                self.state = Some(state);
            }
            return Err(error);
        }
        self.in_message = !fin;
        if fin {
            if self.ended {
                // A BFINAL block ended the stream; the next message is a
                // new one.
                state.reset(false);
                self.ended = false;
            }
            if self.no_context_takeover {
                // RFC 7692 §7.1.1: the peer starts each message with an
                // empty window, so nothing needs keeping.
                state.reset(false);
                pool::put_decompressor(state);
                return Ok(());
            }
        }
        self.state = Some(state);
        Ok(())
    }

    /// Gives the zlib state back to the per-thread pool if nothing in it
    /// needs keeping: without context takeover, between messages (which
    /// already happens at the end of each message). With context takeover
    /// the state holds the window the peer's next message may refer to
    /// (RFC 7692 §7.1.1) and is kept until the `Inflater` is dropped.
    pub fn release_idle(&mut self) {
        if self.no_context_takeover && !self.in_message {
            if let Some(mut state) = self.state.take() {
                state.reset(false);
                pool::put_decompressor(state);
            }
        }
    }

    /// Approximate heap bytes held by this decompressor now: 0 when it
    /// holds no zlib state.
    pub fn memory_estimate(&self) -> usize {
        if self.state.is_some() {
            DECOMPRESSOR_MEMORY
        } else {
            0
        }
    }
}

impl Drop for Inflater {
    fn drop(&mut self) {
        if let Some(mut state) = self.state.take() {
            state.reset(false);
            pool::put_decompressor(state);
        }
    }
}

/// Runs `input` through the decompressor into `out`, never letting
/// `out.len()` pass `max_out`. Returns whether the DEFLATE stream ended (a
/// `BFINAL` block).
fn inflate_into(
    state: &mut Decompress,
    input: &[u8],
    out: &mut Vec<u8>,
    max_out: usize,
) -> Result<bool, DeflateError> {
    let mut rest = input;
    // One byte past the limit: writing it proves the output is too big.
    let hard_cap = max_out.saturating_add(1);
    loop {
        if out.len() >= hard_cap {
            return Err(DeflateError::TooBig);
        }
        reserve_bounded(out, hard_cap);
        let spare = out.capacity().saturating_sub(out.len());
        let before_in = state.total_in();
        let before_len = out.len();
        let status = match state.decompress_vec(rest, out, FlushDecompress::None) {
            Ok(status) => status,
            Err(_) => {
                // zlib may have written into the spare byte before failing:
                // the length promise holds on every path (found by fuzzing).
                out.truncate(max_out.min(out.len()));
                return Err(DeflateError::Corrupt);
            }
        };
        let consumed = usize::try_from(state.total_in().saturating_sub(before_in))
            .map_err(|_| DeflateError::Corrupt)?;
        let produced = out.len().saturating_sub(before_len);
        rest = rest.get(consumed..).ok_or(DeflateError::Corrupt)?;
        if out.len() > max_out {
            // The caller's buffer may have had more capacity than our cap;
            // keep the promise on the length.
            out.truncate(max_out);
            return Err(DeflateError::TooBig);
        }
        if status == Status::StreamEnd {
            return Ok(true);
        }
        if rest.is_empty() && produced < spare {
            return Ok(false);
        }
        if consumed == 0 && produced == 0 {
            // No progress although there is room: with input left, zlib
            // cannot use it, which does not happen with valid data.
            return if rest.is_empty() {
                Ok(false)
            } else {
                Err(DeflateError::Corrupt)
            };
        }
    }
}

/// Makes room in `out` for more output without letting its capacity pass
/// `hard_cap` (unless it already had more): at least
/// `min(INFLATE_STEP, hard_cap - len)` spare bytes, growing geometrically so
/// that a large message costs amortised linear copying.
fn reserve_bounded(out: &mut Vec<u8>, hard_cap: usize) {
    let len = out.len();
    let want = INFLATE_STEP.min(hard_cap.saturating_sub(len));
    if out.capacity().saturating_sub(len) >= want {
        return;
    }
    let target = out
        .capacity()
        .saturating_mul(2)
        .max(len.saturating_add(INFLATE_STEP))
        .min(hard_cap);
    out.reserve_exact(target.saturating_sub(len));
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use proptest::prelude::*;

    // ----- helpers -----------------------------------------------------

    pub(in crate::deflate) fn compress_all(deflater: &mut Deflater, message: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        deflater.compress(message, true, &mut out).unwrap();
        out
    }

    pub(in crate::deflate) fn inflate_all(
        inflater: &mut Inflater,
        payload: &[u8],
    ) -> Result<Vec<u8>, DeflateError> {
        let mut out = Vec::new();
        inflater.inflate(payload, true, &mut out, usize::MAX)?;
        Ok(out)
    }

    /// Repetitive JSON-like text, as a WebSocket API would send.
    fn json_message(i: usize) -> Vec<u8> {
        format!(
            r#"{{"id":{i},"type":"update","user":{{"name":"user{}","active":true}},"values":[{},{},{}]}}"#,
            i % 7,
            i * 3,
            i * 5 % 11,
            i % 13
        )
        .into_bytes()
    }

    /// "Hello" compressed as in RFC 7692 §7.2.3.1.
    pub(in crate::deflate) const HELLO: &[u8] = &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

    // ----- compression ---------------------------------------------------

    #[test]
    fn corrupt_data_never_overshoots_max_out() {
        // Found by the `inflate` fuzz target: a stored block followed by
        // garbage used to leave max_out + 1 bytes behind.
        let mut out = Vec::new();
        let result = Inflater::new(true).inflate(b"\x00\x03\x00\xfc\xffabc\x07", true, &mut out, 2);
        assert_eq!(result, Err(DeflateError::Corrupt));
        assert!(out.len() <= 2, "{}", out.len());
    }

    #[test]
    fn deflate_errors_display() {
        for error in [
            DeflateError::TooBig,
            DeflateError::Corrupt,
            DeflateError::InvalidWindowBits(8),
            DeflateError::InvalidLevel(10),
            DeflateError::Compress,
        ] {
            assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn deflater_rejects_bad_settings() {
        assert_eq!(
            Deflater::new(8, false, 6).unwrap_err(),
            DeflateError::InvalidWindowBits(8)
        );
        assert_eq!(
            Deflater::new(16, false, 6).unwrap_err(),
            DeflateError::InvalidWindowBits(16)
        );
        assert_eq!(
            Deflater::new(15, false, 10).unwrap_err(),
            DeflateError::InvalidLevel(10)
        );
        for bits in MIN_WINDOW_BITS..=MAX_WINDOW_BITS {
            let deflater = Deflater::new(bits, false, 9).unwrap();
            assert_eq!(deflater.memory_estimate(), 0);
        }
    }

    #[test]
    fn rfc7692_7_2_3_1_single_block() {
        // "Hello" in one compressed block, as in RFC 7692 §7.2.3.1.
        let mut deflater = Deflater::new(15, false, 6).unwrap();
        assert_eq!(compress_all(&mut deflater, b"Hello"), HELLO);
        let mut inflater = Inflater::new(false);
        assert_eq!(inflate_all(&mut inflater, HELLO).unwrap(), b"Hello");
        // The same payload sent in two fragments ("f2 48 cd" and
        // "c9 c9 07 00").
        let mut inflater = Inflater::new(false);
        let mut out = Vec::new();
        inflater.inflate(&HELLO[..3], false, &mut out, 100).unwrap();
        inflater.inflate(&HELLO[3..], true, &mut out, 100).unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn rfc7692_7_2_3_2_sliding_window() {
        // RFC 7692 §7.2.3.2: with context takeover the second "Hello" is a
        // back-reference.
        let second: &[u8] = &[0xf2, 0x00, 0x11, 0x00, 0x00];
        let mut deflater = Deflater::new(15, false, 6).unwrap();
        assert_eq!(compress_all(&mut deflater, b"Hello"), HELLO);
        assert_eq!(compress_all(&mut deflater, b"Hello"), second);
        let mut inflater = Inflater::new(false);
        assert_eq!(inflate_all(&mut inflater, HELLO).unwrap(), b"Hello");
        assert_eq!(inflate_all(&mut inflater, second).unwrap(), b"Hello");
        // Without context takeover the window is empty again.
        let mut deflater = Deflater::new(15, true, 6).unwrap();
        assert_eq!(compress_all(&mut deflater, b"Hello"), HELLO);
        assert_eq!(compress_all(&mut deflater, b"Hello"), HELLO);
        let mut inflater = Inflater::new(true);
        assert_eq!(inflate_all(&mut inflater, HELLO).unwrap(), b"Hello");
        assert_eq!(
            inflate_all(&mut inflater, second),
            Err(DeflateError::Corrupt)
        );
    }

    #[test]
    fn rfc7692_7_2_3_3_to_6_other_encodings() {
        let cases: [(&[u8], &[u8]); 4] = [
            // §7.2.3.3: a stored (uncompressed) block.
            (
                &[
                    0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
                ],
                b"Hello",
            ),
            // §7.2.3.4: a block with BFINAL set, then one more byte.
            (&[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00], b"Hello"),
            // §7.2.3.5: two blocks, split by a sync flush.
            (
                &[
                    0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
                ],
                b"Hello",
            ),
            // §7.2.3.6: an empty message.
            (&[0x00], b""),
        ];
        for (payload, message) in cases {
            for no_context_takeover in [false, true] {
                let mut inflater = Inflater::new(no_context_takeover);
                // Twice: the stream must be usable after each form.
                for _ in 0..2 {
                    assert_eq!(inflate_all(&mut inflater, payload).unwrap(), message);
                    assert_eq!(inflate_all(&mut inflater, HELLO).unwrap(), b"Hello");
                }
            }
        }
    }

    #[test]
    fn empty_messages() {
        for no_context_takeover in [false, true] {
            let mut deflater = Deflater::new(15, no_context_takeover, 6).unwrap();
            let mut inflater = Inflater::new(no_context_takeover);
            for message in [&b""[..], b"", b"Hello", b"", b"", b"Hello", b""] {
                let payload = compress_all(&mut deflater, message);
                assert!(!payload.is_empty());
                if message.is_empty() {
                    assert_eq!(payload, [0x00]);
                }
                assert_eq!(inflate_all(&mut inflater, &payload).unwrap(), message);
            }
        }
        // An empty final piece after data.
        let mut deflater = Deflater::new(15, false, 6).unwrap();
        let mut payload = Vec::new();
        deflater.compress(b"Hello", false, &mut payload).unwrap();
        deflater.compress(b"", true, &mut payload).unwrap();
        assert_eq!(payload, HELLO);
    }

    #[test]
    fn round_trips_with_and_without_context_takeover() {
        for bits in [9, 12, 15] {
            for no_context_takeover in [false, true] {
                for level in [0, 1, 6, 9] {
                    let mut deflater = Deflater::new(bits, no_context_takeover, level).unwrap();
                    let mut inflater = Inflater::new(no_context_takeover);
                    let mut sizes = Vec::new();
                    for i in 0..100 {
                        let message = if i % 50 == 7 {
                            // Larger than any window: long-distance data.
                            (0..20_000u32)
                                .flat_map(|n| (n % 251).to_le_bytes())
                                .collect()
                        } else {
                            json_message(i % 3)
                        };
                        let payload = compress_all(&mut deflater, &message);
                        sizes.push(payload.len());
                        let back = inflate_all(&mut inflater, &payload).unwrap();
                        assert!(
                            back == message,
                            "bits {bits} nct {no_context_takeover} #{i}"
                        );
                    }
                    if level > 0 {
                        // Message 3 repeats message 0.
                        if no_context_takeover {
                            assert_eq!(sizes[3], sizes[0]);
                        } else {
                            assert!(sizes[3] * 3 < sizes[0], "{sizes:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn compressed_fragments_round_trip() {
        let message: Vec<u8> = (0..20).flat_map(json_message).collect();
        for no_context_takeover in [false, true] {
            let mut deflater = Deflater::new(15, no_context_takeover, 6).unwrap();
            let mut inflater = Inflater::new(no_context_takeover);
            for _ in 0..3 {
                let mut payload = Vec::new();
                let pieces: Vec<&[u8]> = message.chunks(333).collect();
                for (i, piece) in pieces.iter().enumerate() {
                    deflater
                        .compress(piece, i + 1 == pieces.len(), &mut payload)
                        .unwrap();
                }
                assert_eq!(inflate_all(&mut inflater, &payload).unwrap(), message);
            }
        }
    }

    #[test]
    fn decompression_bomb_is_stopped() {
        let zeros = vec![0u8; 10 * 1024 * 1024];
        let mut deflater = Deflater::new(15, true, 9).unwrap();
        let payload = compress_all(&mut deflater, &zeros);
        assert!(payload.len() < 20 * 1024, "{}", payload.len());
        drop(zeros);
        let max_out = 1024 * 1024;
        for pieces in [1, 7] {
            let mut inflater = Inflater::new(true);
            let mut out = Vec::new();
            let chunk = payload.len() / pieces + 1;
            let mut result = Ok(());
            let mut chunks = payload.chunks(chunk).peekable();
            while let Some(piece) = chunks.next() {
                result = inflater.inflate(piece, chunks.peek().is_none(), &mut out, max_out);
                if result.is_err() {
                    break;
                }
            }
            assert_eq!(result, Err(DeflateError::TooBig));
            assert!(out.len() <= max_out);
            assert!(
                out.capacity() <= max_out + INFLATE_STEP,
                "{}",
                out.capacity()
            );
            // Nothing kept after the failed message.
            assert_eq!(inflater.memory_estimate(), 0);
        }
        // A caller buffer that is already huge: the length bound still holds.
        let mut inflater = Inflater::new(true);
        let mut out = Vec::with_capacity(4 * max_out);
        assert_eq!(
            inflater.inflate(&payload, true, &mut out, max_out),
            Err(DeflateError::TooBig)
        );
        assert!(out.len() <= max_out);
    }

    #[test]
    fn limit_is_exact() {
        let message = vec![b'a'; 100_000];
        let mut deflater = Deflater::new(15, false, 6).unwrap();
        let payload = compress_all(&mut deflater, &message);
        let mut out = Vec::new();
        Inflater::new(true)
            .inflate(&payload, true, &mut out, message.len())
            .unwrap();
        assert_eq!(out, message);
        let mut out = Vec::new();
        assert_eq!(
            Inflater::new(true).inflate(&payload, true, &mut out, message.len() - 1),
            Err(DeflateError::TooBig)
        );
        // The limit counts what is already in the buffer.
        let mut out = vec![0; 10];
        assert_eq!(
            Inflater::new(true).inflate(&payload, true, &mut out, message.len()),
            Err(DeflateError::TooBig)
        );
        let mut out = Vec::new();
        assert_eq!(
            Inflater::new(true).inflate(&payload, true, &mut out, 0),
            Err(DeflateError::TooBig)
        );
        // An empty message fits a limit of 0.
        let mut out = Vec::new();
        Inflater::new(true)
            .inflate(&[0x00], true, &mut out, 0)
            .unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn corrupt_input_is_reported() {
        for payload in [
            &[0xff, 0xff, 0xff, 0xff][..],
            // A reserved block type (BTYPE 11).
            &[0x06],
            // A stored block whose NLEN does not match LEN.
            &[0x00, 0x05, 0x00, 0x00, 0x00, b'H'],
            // A back-reference with nothing before it.
            &[0xf2, 0x00, 0x11, 0x00, 0x00],
        ] {
            let mut inflater = Inflater::new(false);
            assert_eq!(
                inflate_all(&mut inflater, payload),
                Err(DeflateError::Corrupt),
                "{payload:x?}"
            );
            // The inflater can be used again (the connection would be
            // closed, but nothing panics).
            assert_eq!(inflate_all(&mut inflater, HELLO).unwrap(), b"Hello");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Random bytes never panic, and never exceed the limit.
        #[test]
        fn random_input_never_panics(
            pieces in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 1..5),
            no_context_takeover in any::<bool>(),
        ) {
            let mut inflater = Inflater::new(no_context_takeover);
            for _ in 0..2 {
                let mut out = Vec::new();
                for (i, piece) in pieces.iter().enumerate() {
                    match inflater.inflate(piece, i + 1 == pieces.len(), &mut out, 4096) {
                        Ok(()) => {}
                        Err(error) => {
                            prop_assert!(matches!(error, DeflateError::Corrupt | DeflateError::TooBig));
                            break;
                        }
                    }
                    prop_assert!(out.len() <= 4096);
                }
            }
        }

        /// Valid data with corrupted bytes: errors, never panics.
        #[test]
        fn mutated_input_never_panics(
            seed in 0usize..100,
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let message: Vec<u8> = (seed..seed + 10).flat_map(json_message).collect();
            let mut deflater = Deflater::new(15, false, 6).unwrap();
            let mut payload = compress_all(&mut deflater, &message);
            for (index, byte) in flips {
                let i = index.index(payload.len());
                payload[i] ^= byte;
            }
            let mut out = Vec::new();
            let _ = Inflater::new(false).inflate(&payload, true, &mut out, 1 << 20);
            prop_assert!(out.len() <= 1 << 20);
        }

        /// Feeding a payload in arbitrary pieces gives the same result as
        /// feeding it at once.
        #[test]
        fn inflate_piece_splits_agree(
            seed in 0usize..1000,
            count in 1usize..30,
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
            no_context_takeover in any::<bool>(),
        ) {
            let messages: Vec<Vec<u8>> = (0..3)
                .map(|m| (seed + m..seed + m + count).flat_map(json_message).collect())
                .collect();
            let mut deflater = Deflater::new(15, no_context_takeover, 6).unwrap();
            let mut whole = Inflater::new(no_context_takeover);
            let mut split = Inflater::new(no_context_takeover);
            for message in &messages {
                let payload = compress_all(&mut deflater, message);
                let expected = inflate_all(&mut whole, &payload).unwrap();
                prop_assert_eq!(&expected, message);
                let mut points: Vec<usize> = cuts.iter().map(|c| c.index(payload.len() + 1)).collect();
                points.push(0);
                points.push(payload.len());
                points.sort_unstable();
                let mut out = Vec::new();
                for (i, pair) in points.windows(2).enumerate() {
                    let fin = i + 2 == points.len();
                    split.inflate(&payload[pair[0]..pair[1]], fin, &mut out, usize::MAX).unwrap();
                }
                prop_assert_eq!(&out, message);
            }
        }

        /// Any data, compressed in any pieces at any window and level,
        /// comes back.
        #[test]
        fn compress_round_trips(
            data in prop::collection::vec(prop::sample::select(b"ab{}\":,0123 xyz".to_vec()), 0..3000),
            noise in prop::collection::vec(any::<u8>(), 0..200),
            bits in MIN_WINDOW_BITS..=MAX_WINDOW_BITS,
            level in 0u32..=9,
            chunk in 1usize..2000,
            no_context_takeover in any::<bool>(),
        ) {
            let mut message = data;
            message.extend_from_slice(&noise);
            let mut deflater = Deflater::new(bits, no_context_takeover, level).unwrap();
            let mut inflater = Inflater::new(no_context_takeover);
            for _ in 0..2 {
                let mut payload = Vec::new();
                let pieces: Vec<&[u8]> = message.chunks(chunk).collect();
                if pieces.is_empty() {
                    deflater.compress(&[], true, &mut payload).unwrap();
                }
                for (i, piece) in pieces.iter().enumerate() {
                    deflater.compress(piece, i + 1 == pieces.len(), &mut payload).unwrap();
                }
                prop_assert_eq!(inflate_all(&mut inflater, &payload).unwrap(), message.clone());
            }
        }
    }
}
