//! [`DeflateConfig`]: what this endpoint asks for and accepts when
//! negotiating `permessage-deflate` (RFC 7692 §7.1), and how it compresses.

use super::codec::{MAX_WINDOW_BITS, MIN_WINDOW_BITS};

/// What this endpoint asks for and accepts when negotiating
/// `permessage-deflate`, and how it compresses.
///
/// Marked `#[non_exhaustive]`: start from [`DeflateConfig::default`] and
/// assign fields or use the `with_` methods. Window bits outside
/// `9..=15` are clamped into that range and a level above 9 is treated as 9
/// (zlib cannot compress with a window of 8: see [`MIN_WINDOW_BITS`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// Server: always answer with `server_no_context_takeover` (RFC 7692
    /// §7.1.1.1 lets a server include it unasked), so the server's
    /// compressor needs no memory between messages. Client: offer it,
    /// asking the server not to keep context. Default: `false`.
    pub server_no_context_takeover: bool,
    /// Server: always answer with `client_no_context_takeover` (allowed
    /// unasked by RFC 7692 §7.1.1.2), so the server's decompressor needs no
    /// memory between messages. Client: offer it, promising not to keep
    /// context (and keep that promise whatever the answer). Default:
    /// `false`.
    pub client_no_context_takeover: bool,
    /// The largest window the server compresses with, as a base-2
    /// logarithm (`9..=15`). Server: the most it will use; a smaller value
    /// is announced in the response (RFC 7692 §7.1.2.1). Client: if below
    /// 15, requested in the offer. Default: 15.
    pub server_max_window_bits: u8,
    /// The largest window the client compresses with (`9..=15`). Server:
    /// answered when the client offered `client_max_window_bits` (RFC 7692
    /// §7.1.2.2 forbids it otherwise). Client: the window it compresses
    /// with; offered as `client_max_window_bits` (bare when 15).
    /// Default: 15.
    pub client_max_window_bits: u8,
    /// zlib compression level, 0 (store only) to 9 (smallest). Default: 1.
    /// On JSON-like messages of about 1 KB, level 1 compressed 3 to 6
    /// times faster than level 6 (the zlib default), for output 25 to 30%
    /// larger; a server with many connections is usually short of CPU
    /// before bandwidth.
    pub compression_level: u32,
    /// Messages whose payload is shorter than this many bytes are sent
    /// uncompressed (RSV1 is chosen per message, RFC 7692 §6). Default: 32.
    /// Without context takeover, DEFLATE output of text shorter than about
    /// 48 bytes is 2 bytes larger than the input; with it, short messages
    /// shrink by a few bytes at best, not worth a compressor call (and,
    /// without context takeover, a ~4 µs compressor reset).
    pub threshold: usize,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
            compression_level: 1,
            threshold: 32,
        }
    }
}

impl DeflateConfig {
    /// This configuration with
    /// [`server_no_context_takeover`](Self::server_no_context_takeover) set.
    pub fn with_server_no_context_takeover(mut self, value: bool) -> Self {
        self.server_no_context_takeover = value;
        self
    }

    /// This configuration with
    /// [`client_no_context_takeover`](Self::client_no_context_takeover) set.
    pub fn with_client_no_context_takeover(mut self, value: bool) -> Self {
        self.client_no_context_takeover = value;
        self
    }

    /// This configuration with
    /// [`server_max_window_bits`](Self::server_max_window_bits) set.
    pub fn with_server_max_window_bits(mut self, bits: u8) -> Self {
        self.server_max_window_bits = bits;
        self
    }

    /// This configuration with
    /// [`client_max_window_bits`](Self::client_max_window_bits) set.
    pub fn with_client_max_window_bits(mut self, bits: u8) -> Self {
        self.client_max_window_bits = bits;
        self
    }

    /// This configuration with
    /// [`compression_level`](Self::compression_level) set.
    pub fn with_compression_level(mut self, level: u32) -> Self {
        self.compression_level = level;
        self
    }

    /// This configuration with [`threshold`](Self::threshold) set.
    pub fn with_threshold(mut self, threshold: usize) -> Self {
        self.threshold = threshold;
        self
    }

    /// The compression level actually used: at most 9.
    pub fn effective_level(&self) -> u32 {
        self.compression_level.min(9)
    }

    pub(super) fn server_bits(&self) -> u8 {
        clamp_bits(self.server_max_window_bits)
    }

    pub(super) fn client_bits(&self) -> u8 {
        clamp_bits(self.client_max_window_bits)
    }
}

fn clamp_bits(bits: u8) -> u8 {
    bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS)
}
