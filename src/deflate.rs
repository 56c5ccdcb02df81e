//! The `permessage-deflate` extension (RFC 7692): negotiation and
//! per-message compression.
//!
//! * Negotiation (RFC 7692 §5, §7.1): a server calls [`server_negotiate`]
//!   with the client's parsed `Sec-WebSocket-Extensions` offers and, if it
//!   gets `Some`, writes the returned [`ExtensionOffer`] into its response;
//!   a client sends [`client_offer`] and checks the server's answer with
//!   [`client_negotiate`]. Both yield the agreed [`DeflateParams`].
//! * Compression (RFC 7692 §6, §7.2): one [`Deflater`] compresses the
//!   messages an endpoint sends, one [`Inflater`] decompresses the messages
//!   it receives. A compressed message is marked by RSV1 on its first frame
//!   (RFC 7692 §6); that bit, the choice to compress a given message (see
//!   [`DeflateConfig::threshold`]) and the framing are the caller's job.
//!
//! # Memory
//!
//! A zlib compressor holds 245 KiB (9-bit window) to 371 KiB (15-bit
//! window), a decompressor 46 KiB (see [`Deflater::memory_estimate`] and
//! [`Inflater::memory_estimate`]). When no
//! context takeover applies to a direction (RFC 7692 §7.1.1), nothing needs
//! to survive between messages, so the state is borrowed from a small
//! per-thread pool when a message starts and given back, reset, when it
//! ends: an idle connection then holds no zlib state for that direction, and
//! a busy thread allocates none per message. With context takeover the
//! state must persist for the connection's lifetime; it is allocated on
//! first use and handed to the pool when the [`Deflater`] or [`Inflater`] is
//! dropped.
//!
//! # Decompression bombs
//!
//! A few KiB of DEFLATE data can expand to gigabytes. [`Inflater::inflate`]
//! takes a hard output limit and stops with [`DeflateError::TooBig`] as soon
//! as it would be passed, having grown the output buffer to at most one
//! byte past the limit.

// Peer data must never make this code panic: forbid the usual culprits
// outside of tests.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::arithmetic_side_effects
    )
)]

use std::fmt;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::handshake::ExtensionOffer;

/// The extension's registered name (RFC 7692 §5).
pub const EXTENSION_NAME: &str = "permessage-deflate";

/// Parameter names defined by RFC 7692 §7.1.
const SERVER_NO_CONTEXT_TAKEOVER: &str = "server_no_context_takeover";
const CLIENT_NO_CONTEXT_TAKEOVER: &str = "client_no_context_takeover";
const SERVER_MAX_WINDOW_BITS: &str = "server_max_window_bits";
const CLIENT_MAX_WINDOW_BITS: &str = "client_max_window_bits";

/// The largest LZ77 window, 32 KiB (RFC 7692 §7.1.2: the default).
pub const MAX_WINDOW_BITS: u8 = 15;
/// The smallest window zlib can *compress* with. RFC 7692 §7.1.2 allows 8,
/// but zlib's raw deflate only supports 9 to 15; a peer's window of 8 is no
/// problem when decompressing (a larger window always works).
pub const MIN_WINDOW_BITS: u8 = 9;
/// The smallest window RFC 7692 §7.1.2.1 / §7.1.2.2 allow on the wire.
const PROTOCOL_MIN_WINDOW_BITS: u8 = 8;

/// The bytes a sync flush ends with: an empty stored block. RFC 7692
/// §7.2.1 removes them from each compressed message and §7.2.2 appends them
/// again before decompressing.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// How much output buffer [`Inflater::inflate`] adds at a time at most
/// when the buffer is small; larger buffers grow geometrically, never past
/// the caller's limit plus one byte.
const INFLATE_STEP: usize = 32 * 1024;

// ---------------------------------------------------------------------------
// Configuration and negotiated parameters
// ---------------------------------------------------------------------------

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

    /// Whether a message of `len` payload bytes should be compressed, per
    /// [`threshold`](Self::threshold).
    pub fn should_compress(&self, len: usize) -> bool {
        len >= self.threshold
    }

    /// The compression level actually used: at most 9.
    pub fn effective_level(&self) -> u32 {
        self.compression_level.min(9)
    }

    fn server_bits(&self) -> u8 {
        clamp_bits(self.server_max_window_bits)
    }

    fn client_bits(&self) -> u8 {
        clamp_bits(self.client_max_window_bits)
    }
}

fn clamp_bits(bits: u8) -> u8 {
    bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS)
}

/// Which end of the connection an endpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeflateRole {
    /// The endpoint that opened the connection.
    Client,
    /// The endpoint that accepted it.
    Server,
}

/// The agreed `permessage-deflate` parameters (RFC 7692 §7.1), named from
/// the wire's point of view; the methods taking a [`DeflateRole`] translate
/// them into "what I send" and "what I receive".
///
/// Window sizes are base-2 logarithms and already account for both sides'
/// limits: the `*_max_window_bits` value of the side that compresses is the
/// window it must compress with at most (`9..=15`, since zlib cannot
/// compress with 8); the other side may see any value in `8..=15`, but
/// always decompresses with a 15-bit window, which is safe for any smaller
/// one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeflateParams {
    /// The server resets its compression context after each message
    /// (RFC 7692 §7.1.1.1).
    pub server_no_context_takeover: bool,
    /// The client resets its compression context after each message
    /// (RFC 7692 §7.1.1.2).
    pub client_no_context_takeover: bool,
    /// The largest window the server compresses with (RFC 7692 §7.1.2.1).
    pub server_max_window_bits: u8,
    /// The largest window the client compresses with (RFC 7692 §7.1.2.2).
    pub client_max_window_bits: u8,
}

impl Default for DeflateParams {
    /// The parameters of a bare `permessage-deflate` agreement: context
    /// takeover both ways and 32 KiB windows.
    fn default() -> Self {
        DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
        }
    }
}

impl DeflateParams {
    /// The window `role` compresses its messages with.
    pub fn send_window_bits(&self, role: DeflateRole) -> u8 {
        match role {
            DeflateRole::Client => self.client_max_window_bits,
            DeflateRole::Server => self.server_max_window_bits,
        }
    }

    /// The largest window the peer of `role` compresses with.
    /// ([`Inflater`] always uses 15, so this is informational.)
    pub fn receive_window_bits(&self, role: DeflateRole) -> u8 {
        match role {
            DeflateRole::Client => self.server_max_window_bits,
            DeflateRole::Server => self.client_max_window_bits,
        }
    }

    /// Whether `role` resets its compressor after each message.
    pub fn send_no_context_takeover(&self, role: DeflateRole) -> bool {
        match role {
            DeflateRole::Client => self.client_no_context_takeover,
            DeflateRole::Server => self.server_no_context_takeover,
        }
    }

    /// Whether the peer of `role` resets its compressor after each message,
    /// so that `role` may reset its decompressor too.
    pub fn receive_no_context_takeover(&self, role: DeflateRole) -> bool {
        match role {
            DeflateRole::Client => self.server_no_context_takeover,
            DeflateRole::Server => self.client_no_context_takeover,
        }
    }

    /// The compressor for the messages `role` sends.
    ///
    /// Fails only with parameters not produced by negotiation (send window
    /// outside `9..=15`) or a `level` above 9.
    pub fn deflater(&self, role: DeflateRole, level: u32) -> Result<Deflater, DeflateError> {
        Deflater::new(
            self.send_window_bits(role),
            self.send_no_context_takeover(role),
            level,
        )
    }

    /// The decompressor for the messages `role` receives.
    pub fn inflater(&self, role: DeflateRole) -> Inflater {
        Inflater::new(self.receive_no_context_takeover(role))
    }
}

// ---------------------------------------------------------------------------
// Negotiation (RFC 7692 §5, §7.1)
// ---------------------------------------------------------------------------

/// Why a server's `permessage-deflate` response is refused by the client.
/// RFC 7692 §5.1 / §7.1: the client must fail the WebSocket connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeflateNegotiationError {
    /// The response holds more than one `permessage-deflate` element
    /// (RFC 7692 §5.1: a server accepts at most one offer).
    MultipleAccepted,
    /// A parameter RFC 7692 §7.1 does not define (named here).
    UnknownParameter(String),
    /// A parameter appears twice (RFC 7692 §7.1).
    DuplicateParameter(String),
    /// `server_no_context_takeover` or `client_no_context_takeover` has a
    /// value; RFC 7692 §7.1.1 defines them without one.
    UnexpectedValue(String),
    /// A `*_max_window_bits` parameter without the value a response must
    /// carry (RFC 7692 §7.1.2).
    MissingValue(String),
    /// A `*_max_window_bits` value that is not a decimal integer from 8 to
    /// 15 without leading zeros (RFC 7692 §7.1.2).
    InvalidValue {
        /// The parameter's name.
        parameter: String,
        /// The value received.
        value: String,
    },
    /// The client asked for `server_no_context_takeover` and the response
    /// lacks it, so the offer was not accepted (RFC 7692 §7.1.1.1).
    MissingServerNoContextTakeover,
    /// The client asked for `server_max_window_bits` and the response lacks
    /// it, so the offer was not accepted (RFC 7692 §7.1.2.1).
    MissingServerMaxWindowBits {
        /// The value the client offered.
        requested: u8,
    },
    /// The response's `server_max_window_bits` is larger than the value
    /// the client offered (RFC 7692 §7.1.2.1: the same or smaller).
    ServerMaxWindowBitsTooLarge {
        /// The value the client offered.
        requested: u8,
        /// The value the server answered.
        received: u8,
    },
    /// The server limits the client's window to 8 bits, which zlib cannot
    /// compress with (it supports 9 to 15).
    UnsupportedClientMaxWindowBits(u8),
}

impl fmt::Display for DeflateNegotiationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeflateNegotiationError::MultipleAccepted => {
                f.write_str("server accepted permessage-deflate more than once")
            }
            DeflateNegotiationError::UnknownParameter(name) => {
                write!(f, "unknown permessage-deflate parameter {name:?}")
            }
            DeflateNegotiationError::DuplicateParameter(name) => {
                write!(f, "duplicate permessage-deflate parameter {name:?}")
            }
            DeflateNegotiationError::UnexpectedValue(name) => {
                write!(
                    f,
                    "permessage-deflate parameter {name:?} must not have a value"
                )
            }
            DeflateNegotiationError::MissingValue(name) => {
                write!(f, "permessage-deflate parameter {name:?} needs a value")
            }
            DeflateNegotiationError::InvalidValue { parameter, value } => write!(
                f,
                "permessage-deflate parameter {parameter:?} has invalid value {value:?} \
                 (expected 8 to 15)"
            ),
            DeflateNegotiationError::MissingServerNoContextTakeover => f.write_str(
                "server ignored the requested permessage-deflate server_no_context_takeover",
            ),
            DeflateNegotiationError::MissingServerMaxWindowBits { requested } => write!(
                f,
                "server ignored the requested permessage-deflate server_max_window_bits={requested}"
            ),
            DeflateNegotiationError::ServerMaxWindowBitsTooLarge {
                requested,
                received,
            } => write!(
                f,
                "server answered server_max_window_bits={received}, larger than the \
                 requested {requested}"
            ),
            DeflateNegotiationError::UnsupportedClientMaxWindowBits(bits) => write!(
                f,
                "server requires client_max_window_bits={bits}, but compression needs at \
                 least {MIN_WINDOW_BITS}"
            ),
        }
    }
}

impl std::error::Error for DeflateNegotiationError {}

/// The parameters of one `permessage-deflate` element, checked against the
/// grammar of RFC 7692 §7.1 (but not yet against the other side's wishes).
#[derive(Debug, Default)]
struct ParsedParams {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    /// `server_max_window_bits=N`.
    server_max_window_bits: Option<u8>,
    /// `client_max_window_bits`, with its value if any.
    client_max_window_bits: Option<Option<u8>>,
}

/// RFC 7692 §7.1.2.1 / §7.1.2.2: "a decimal integer value without leading
/// zeroes between 8 to 15, inclusive" (`1*DIGIT`).
fn parse_window_bits(value: &str) -> Option<u8> {
    let bytes = value.as_bytes();
    let well_formed = matches!(bytes.first(), Some(b'1'..=b'9'))
        && bytes.len() <= 2
        && bytes.iter().all(u8::is_ascii_digit);
    if !well_formed {
        return None;
    }
    value
        .parse::<u8>()
        .ok()
        .filter(|bits| (PROTOCOL_MIN_WINDOW_BITS..=MAX_WINDOW_BITS).contains(bits))
}

/// Checks one element's parameters. `response` selects the rules for a
/// server's answer, where `client_max_window_bits` needs a value
/// (RFC 7692 §7.1.2.2); in an offer it may be bare.
fn parse_params(
    element: &ExtensionOffer,
    response: bool,
) -> Result<ParsedParams, DeflateNegotiationError> {
    let mut parsed = ParsedParams::default();
    let mut seen = [false; 4];
    for param in &element.params {
        let name = param.name.as_str();
        let index = [
            SERVER_NO_CONTEXT_TAKEOVER,
            CLIENT_NO_CONTEXT_TAKEOVER,
            SERVER_MAX_WINDOW_BITS,
            CLIENT_MAX_WINDOW_BITS,
        ]
        .iter()
        .position(|known| known.eq_ignore_ascii_case(name))
        .ok_or_else(|| DeflateNegotiationError::UnknownParameter(name.to_owned()))?;
        // RFC 7692 §7.1: an element with a parameter given twice is invalid.
        match seen.get_mut(index) {
            Some(flag) if !*flag => *flag = true,
            _ => return Err(DeflateNegotiationError::DuplicateParameter(name.to_owned())),
        }
        let value = param.value.as_deref();
        let bits = |value: &str| {
            parse_window_bits(value).ok_or_else(|| DeflateNegotiationError::InvalidValue {
                parameter: name.to_owned(),
                value: value.to_owned(),
            })
        };
        match (index, value) {
            // RFC 7692 §7.1.1.1 / §7.1.1.2: these have no value.
            (0 | 1, Some(_)) => {
                return Err(DeflateNegotiationError::UnexpectedValue(name.to_owned()))
            }
            (0, None) => parsed.server_no_context_takeover = true,
            (1, None) => parsed.client_no_context_takeover = true,
            // RFC 7692 §7.1.2.1: server_max_window_bits always has a value.
            (2, Some(value)) => parsed.server_max_window_bits = Some(bits(value)?),
            // RFC 7692 §7.1.2.2: bare in an offer, valued in a response.
            (3, Some(value)) => parsed.client_max_window_bits = Some(Some(bits(value)?)),
            (3, None) if !response => parsed.client_max_window_bits = Some(None),
            _ => return Err(DeflateNegotiationError::MissingValue(name.to_owned())),
        }
    }
    Ok(parsed)
}

fn is_permessage_deflate(element: &ExtensionOffer) -> bool {
    element.name.eq_ignore_ascii_case(EXTENSION_NAME)
}

/// Server side: picks the first acceptable `permessage-deflate` offer.
///
/// `offers` are the client's parsed `Sec-WebSocket-Extensions` elements in
/// order (all header values; other extensions are skipped). A client lists
/// offers in order of preference (RFC 7692 §5.1), so the first one this
/// server can accept wins. An offer is declined (RFC 7692 §5.1, §7.1) when
/// it has an unknown or repeated parameter, a value on a
/// `*_no_context_takeover` flag, a `server_max_window_bits` without a valid
/// value or a `client_max_window_bits` with an invalid one (valid: 8 to 15
/// without leading zeros), or `server_max_window_bits=8`, which zlib cannot
/// compress with (§7.1.2.1 lets a server decline a window it does not
/// support).
///
/// Returns `None` when no offer is acceptable: the connection then goes on
/// without compression, which is not an error. Otherwise returns the
/// agreed parameters and the element to send back in the response's
/// `Sec-WebSocket-Extensions` (see
/// [`format_extensions`](crate::handshake::format_extensions)). The
/// response holds:
/// * `server_no_context_takeover` if the client asked for it (accepting it
///   means including it, §7.1.1.1) or [`DeflateConfig`] wants it;
/// * `client_no_context_takeover` if the client offered it (turning the
///   client's hint into an agreement) or the configuration wants it
///   (§7.1.1.2 allows it unasked);
/// * `server_max_window_bits=N` if the client offered a value (then the
///   smaller of the two, §7.1.2.1) or if the configured window is below 15
///   (§7.1.2.1: a server may include it unasked);
/// * `client_max_window_bits=N` only if the client offered the parameter
///   (§7.1.2.2 forbids it otherwise), with the smaller of the client's value
///   (15 if bare) and the configured one, and only when that limits
///   something: the client gave a value, or the result is below 15.
pub fn server_negotiate(
    offers: &[ExtensionOffer],
    config: &DeflateConfig,
) -> Option<(DeflateParams, ExtensionOffer)> {
    offers
        .iter()
        .filter(|offer| is_permessage_deflate(offer))
        .find_map(|offer| accept_offer(offer, config))
}

/// Answers one offer, or `None` to decline it.
fn accept_offer(
    offer: &ExtensionOffer,
    config: &DeflateConfig,
) -> Option<(DeflateParams, ExtensionOffer)> {
    let parsed = parse_params(offer, false).ok()?;
    // RFC 7692 §7.1.2.1: a server that cannot use the requested window
    // declines the offer; zlib cannot compress with 8 bits.
    if parsed.server_max_window_bits == Some(PROTOCOL_MIN_WINDOW_BITS) {
        return None;
    }
    let mut response = ExtensionOffer::new(EXTENSION_NAME);
    let server_no_context_takeover =
        parsed.server_no_context_takeover || config.server_no_context_takeover;
    if server_no_context_takeover {
        response = response.with_param(SERVER_NO_CONTEXT_TAKEOVER, None);
    }
    let client_no_context_takeover =
        parsed.client_no_context_takeover || config.client_no_context_takeover;
    if client_no_context_takeover {
        response = response.with_param(CLIENT_NO_CONTEXT_TAKEOVER, None);
    }
    let server_bits = match parsed.server_max_window_bits {
        Some(requested) => requested.min(config.server_bits()),
        None => config.server_bits(),
    };
    if parsed.server_max_window_bits.is_some() || server_bits < MAX_WINDOW_BITS {
        let value = server_bits.to_string();
        response = response.with_param(SERVER_MAX_WINDOW_BITS, Some(&value));
    }
    let client_bits = match parsed.client_max_window_bits {
        // §7.1.2.2: not offered, so it must not be answered; the client may
        // use the full window.
        None => MAX_WINDOW_BITS,
        Some(offered) => {
            let bits = offered.unwrap_or(MAX_WINDOW_BITS).min(config.client_bits());
            if offered.is_some() || bits < MAX_WINDOW_BITS {
                let value = bits.to_string();
                response = response.with_param(CLIENT_MAX_WINDOW_BITS, Some(&value));
            }
            bits
        }
    };
    let params = DeflateParams {
        server_no_context_takeover,
        client_no_context_takeover,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
    };
    Some((params, response))
}

/// Client side: the `permessage-deflate` offer to send in
/// `Sec-WebSocket-Extensions` (RFC 7692 §5.1, §7.1).
///
/// It always includes `client_max_window_bits` (bare for 15, else with the
/// configured value), telling the server it may limit the client's window
/// (§7.1.2.2); `server_max_window_bits=N` only when the configured server
/// window is below 15; and the `*_no_context_takeover` flags the
/// configuration sets.
pub fn client_offer(config: &DeflateConfig) -> ExtensionOffer {
    let mut offer = ExtensionOffer::new(EXTENSION_NAME);
    if config.server_no_context_takeover {
        offer = offer.with_param(SERVER_NO_CONTEXT_TAKEOVER, None);
    }
    if config.client_no_context_takeover {
        offer = offer.with_param(CLIENT_NO_CONTEXT_TAKEOVER, None);
    }
    let server_bits = config.server_bits();
    if server_bits < MAX_WINDOW_BITS {
        let value = server_bits.to_string();
        offer = offer.with_param(SERVER_MAX_WINDOW_BITS, Some(&value));
    }
    let client_bits = config.client_bits();
    if client_bits < MAX_WINDOW_BITS {
        let value = client_bits.to_string();
        offer = offer.with_param(CLIENT_MAX_WINDOW_BITS, Some(&value));
    } else {
        offer = offer.with_param(CLIENT_MAX_WINDOW_BITS, None);
    }
    offer
}

/// Client side: checks the server's answer to [`client_offer`]`(config)`.
///
/// `response` is the parsed `Sec-WebSocket-Extensions` of the `101`
/// response (other extensions are ignored). Returns `Ok(None)` when it has
/// no `permessage-deflate` element (the server declined: no compression),
/// the agreed parameters when the answer is valid, or an error, upon which
/// the client must fail the connection (RFC 7692 §5.1, §7.1).
///
/// Accepted beyond what was offered, as RFC 7692 allows: either
/// `*_no_context_takeover` flag (§7.1.1.1, §7.1.1.2),
/// `server_max_window_bits` when not requested (§7.1.2.1; any value 8 to 15
/// works, since the [`Inflater`] always uses a 32 KiB window), and a
/// `client_max_window_bits` larger than offered (the client still uses its
/// own, smaller window). The agreed `client_no_context_takeover` is also
/// set when the configuration offered it, as a promise to keep.
pub fn client_negotiate(
    response: &[ExtensionOffer],
    config: &DeflateConfig,
) -> Result<Option<DeflateParams>, DeflateNegotiationError> {
    let mut elements = response.iter().filter(|e| is_permessage_deflate(e));
    let element = match (elements.next(), elements.next()) {
        (None, _) => return Ok(None),
        (Some(element), None) => element,
        (Some(_), Some(_)) => return Err(DeflateNegotiationError::MultipleAccepted),
    };
    let parsed = parse_params(element, true)?;
    if config.server_no_context_takeover && !parsed.server_no_context_takeover {
        return Err(DeflateNegotiationError::MissingServerNoContextTakeover);
    }
    let requested = config.server_bits();
    let server_bits = match parsed.server_max_window_bits {
        Some(received) if received > requested => {
            return Err(DeflateNegotiationError::ServerMaxWindowBitsTooLarge {
                requested,
                received,
            })
        }
        Some(received) => received,
        None if requested < MAX_WINDOW_BITS => {
            return Err(DeflateNegotiationError::MissingServerMaxWindowBits { requested })
        }
        None => MAX_WINDOW_BITS,
    };
    let client_bits = match parsed.client_max_window_bits {
        Some(Some(bits)) if bits < MIN_WINDOW_BITS => {
            return Err(DeflateNegotiationError::UnsupportedClientMaxWindowBits(
                bits,
            ))
        }
        Some(Some(bits)) => bits.min(config.client_bits()),
        // `parse_params` refuses a bare one in a response.
        Some(None) | None => config.client_bits(),
    };
    Ok(Some(DeflateParams {
        server_no_context_takeover: parsed.server_no_context_takeover,
        client_no_context_takeover: parsed.client_no_context_takeover
            || config.client_no_context_takeover,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
    }))
}

// ---------------------------------------------------------------------------
// Compression (RFC 7692 §6, §7.2)
// ---------------------------------------------------------------------------

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

/// The per-thread free lists of zlib states used without context takeover
/// (and for states of dropped `Deflater`s / `Inflater`s). Every state in
/// here has been reset, so no data of one connection can reach another.
mod pool {
    use std::cell::RefCell;

    use flate2::{Compress, Decompress};

    /// At most this many idle states per kind (compressor window bits and
    /// level, or decompressor) are kept per thread; more are freed.
    pub(super) const MAX_PER_KEY: usize = 8;

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
    pub(super) fn sizes() -> (usize, usize) {
        with(|pool| (pool.compressors.len(), pool.decompressors.len())).unwrap_or((0, 0))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn corrupt_data_never_overshoots_max_out() {
        // Found by the `inflate` fuzz target: a stored block followed by
        // garbage used to leave max_out + 1 bytes behind.
        let mut out = Vec::new();
        let result = Inflater::new(true).inflate(b"\x00\x03\x00\xfc\xffabc\x07", true, &mut out, 2);
        assert_eq!(result, Err(DeflateError::Corrupt));
        assert!(out.len() <= 2, "{}", out.len());
    }

    use super::*;
    use crate::handshake::{format_extensions, parse_extensions, ExtensionParam};
    use proptest::prelude::*;

    // ----- helpers -----------------------------------------------------

    fn parse(header: &str) -> Vec<ExtensionOffer> {
        parse_extensions([header.as_bytes()]).unwrap()
    }

    fn server(header: &str, config: &DeflateConfig) -> Option<(DeflateParams, String)> {
        server_negotiate(&parse(header), config)
            .map(|(params, response)| (params, format_extensions(&[response])))
    }

    fn client(
        header: &str,
        config: &DeflateConfig,
    ) -> Result<Option<DeflateParams>, DeflateNegotiationError> {
        client_negotiate(&parse(header), config)
    }

    fn params(snct: bool, cnct: bool, sbits: u8, cbits: u8) -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: snct,
            client_no_context_takeover: cnct,
            server_max_window_bits: sbits,
            client_max_window_bits: cbits,
        }
    }

    fn compress_all(deflater: &mut Deflater, message: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        deflater.compress(message, true, &mut out).unwrap();
        out
    }

    fn inflate_all(inflater: &mut Inflater, payload: &[u8]) -> Result<Vec<u8>, DeflateError> {
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

    // ----- negotiation: server -------------------------------------------

    #[test]
    fn window_bits_grammar() {
        // RFC 7692 §7.1.2: 1*DIGIT, 8..=15, no leading zeros.
        for (value, expected) in [
            ("8", Some(8)),
            ("9", Some(9)),
            ("15", Some(15)),
            ("7", None),
            ("16", None),
            ("08", None),
            ("015", None),
            ("0", None),
            ("", None),
            ("abc", None),
            ("+9", None),
            ("1O", None),
            ("255", None),
            ("99999999999", None),
        ] {
            assert_eq!(parse_window_bits(value), expected, "{value:?}");
        }
    }

    #[test]
    fn server_accepts_bare_offer() {
        let (p, response) = server("permessage-deflate", &DeflateConfig::default()).unwrap();
        assert_eq!(p, DeflateParams::default());
        assert_eq!(response, "permessage-deflate");
    }

    #[test]
    fn server_accepts_browser_offers() {
        // Chrome and Firefox both send this.
        let offer = "permessage-deflate; client_max_window_bits";
        let (p, response) = server(offer, &DeflateConfig::default()).unwrap();
        assert_eq!(p, DeflateParams::default());
        assert_eq!(response, "permessage-deflate");
        // A server limiting the client's window says so (RFC 7692 §7.1.2.2).
        let config = DeflateConfig::default().with_client_max_window_bits(10);
        let (p, response) = server(offer, &config).unwrap();
        assert_eq!(p, params(false, false, 15, 10));
        assert_eq!(response, "permessage-deflate; client_max_window_bits=10");
    }

    #[test]
    fn server_echoes_each_parameter() {
        let config = DeflateConfig::default();
        let cases = [
            (
                "permessage-deflate; server_no_context_takeover",
                params(true, false, 15, 15),
                "permessage-deflate; server_no_context_takeover",
            ),
            (
                "permessage-deflate; client_no_context_takeover",
                params(false, true, 15, 15),
                "permessage-deflate; client_no_context_takeover",
            ),
            (
                "permessage-deflate; server_max_window_bits=10",
                params(false, false, 10, 15),
                "permessage-deflate; server_max_window_bits=10",
            ),
            (
                "permessage-deflate; server_max_window_bits=15",
                params(false, false, 15, 15),
                "permessage-deflate; server_max_window_bits=15",
            ),
            (
                "permessage-deflate; client_max_window_bits=12",
                params(false, false, 15, 12),
                "permessage-deflate; client_max_window_bits=12",
            ),
            (
                // A client may promise a window of 8: we inflate with 15.
                "permessage-deflate; client_max_window_bits=8",
                params(false, false, 15, 8),
                "permessage-deflate; client_max_window_bits=8",
            ),
            (
                "permessage-deflate; client_max_window_bits=9; server_max_window_bits=9; \
                 client_no_context_takeover; server_no_context_takeover",
                params(true, true, 9, 9),
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=9; client_max_window_bits=9",
            ),
            (
                // Quoted values are tokens too (RFC 6455 §9.1).
                "permessage-deflate; server_max_window_bits=\"11\"",
                params(false, false, 11, 15),
                "permessage-deflate; server_max_window_bits=11",
            ),
            (
                // Names compare case-insensitively.
                "PerMessage-Deflate; Server_No_Context_Takeover",
                params(true, false, 15, 15),
                "permessage-deflate; server_no_context_takeover",
            ),
        ];
        for (offer, expected, response) in cases {
            let (p, r) = server(offer, &config).unwrap_or_else(|| panic!("{offer} declined"));
            assert_eq!(p, expected, "{offer}");
            assert_eq!(r, response, "{offer}");
        }
    }

    #[test]
    fn server_applies_its_own_limits() {
        let config = DeflateConfig::default()
            .with_server_max_window_bits(12)
            .with_client_max_window_bits(11)
            .with_server_no_context_takeover(true)
            .with_client_no_context_takeover(true);
        // Unasked: RFC 7692 §7.1.1.1, §7.1.1.2 and §7.1.2.1 allow all but
        // client_max_window_bits, which §7.1.2.2 forbids unless offered.
        let (p, r) = server("permessage-deflate", &config).unwrap();
        assert_eq!(p, params(true, true, 12, 15));
        assert_eq!(
            r,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=12"
        );
        // Asked for more than we allow: the smaller value wins.
        let (p, r) = server(
            "permessage-deflate; server_max_window_bits=14; client_max_window_bits",
            &config,
        )
        .unwrap();
        assert_eq!(p, params(true, true, 12, 11));
        assert!(
            r.ends_with("server_max_window_bits=12; client_max_window_bits=11"),
            "{r}"
        );
        // Asked for less: the client's value wins.
        let (p, _) = server(
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=9",
            &config,
        )
        .unwrap();
        assert_eq!(p, params(true, true, 10, 9));
    }

    #[test]
    fn server_clamps_config() {
        let config = DeflateConfig::default()
            .with_server_max_window_bits(8)
            .with_client_max_window_bits(200);
        let (p, r) = server("permessage-deflate; client_max_window_bits", &config).unwrap();
        assert_eq!(p, params(false, false, 9, 15));
        assert_eq!(r, "permessage-deflate; server_max_window_bits=9");
        assert_eq!(
            DeflateConfig::default()
                .with_compression_level(42)
                .effective_level(),
            9
        );
    }

    #[test]
    fn server_declines_invalid_offers() {
        let config = DeflateConfig::default();
        for offer in [
            // zlib cannot compress with 8 bits: decline (RFC 7692 §7.1.2.1).
            "permessage-deflate; server_max_window_bits=8",
            "permessage-deflate; unknown",
            "permessage-deflate; x-custom=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=10; SERVER_MAX_WINDOW_BITS=10",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover=true",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=abc",
            "permessage-deflate; server_max_window_bits=08",
            "permessage-deflate; server_max_window_bits=015",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=0",
            "permessage-deflate; client_max_window_bits=09",
            "x-webkit-deflate-frame",
            "deflate-frame; server_max_window_bits=10",
        ] {
            assert_eq!(server(offer, &config), None, "{offer}");
        }
        assert_eq!(server_negotiate(&[], &config), None);
        // An empty value cannot come from the parser, but may be built.
        let offer =
            ExtensionOffer::new(EXTENSION_NAME).with_param(CLIENT_MAX_WINDOW_BITS, Some(""));
        assert_eq!(server_negotiate(&[offer], &config), None);
    }

    #[test]
    fn server_takes_first_acceptable_offer() {
        let config = DeflateConfig::default();
        let (p, r) = server(
            "permessage-deflate; server_max_window_bits=8, x-other, \
             permessage-deflate; bogus, \
             permessage-deflate; server_max_window_bits=10, \
             permessage-deflate",
            &config,
        )
        .unwrap();
        assert_eq!(p, params(false, false, 10, 15));
        assert_eq!(r, "permessage-deflate; server_max_window_bits=10");
        // Offers spread over several header values form one list.
        let offers = parse_extensions([
            &b"permessage-deflate; server_max_window_bits=8"[..],
            b"permessage-deflate; client_no_context_takeover",
        ])
        .unwrap();
        let (p, _) = server_negotiate(&offers, &config).unwrap();
        assert_eq!(p, params(false, true, 15, 15));
    }

    // ----- negotiation: client -------------------------------------------

    #[test]
    fn client_offer_forms() {
        let offer = |config: &DeflateConfig| format_extensions(&[client_offer(config)]);
        assert_eq!(
            offer(&DeflateConfig::default()),
            "permessage-deflate; client_max_window_bits"
        );
        let config = DeflateConfig::default()
            .with_server_no_context_takeover(true)
            .with_client_no_context_takeover(true)
            .with_server_max_window_bits(10)
            .with_client_max_window_bits(12);
        assert_eq!(
            offer(&config),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=12"
        );
        // Clamped: never offer 8, which the client could not use.
        let config = DeflateConfig::default().with_client_max_window_bits(8);
        assert_eq!(
            offer(&config),
            "permessage-deflate; client_max_window_bits=9"
        );
        assert!(client_offer(&DeflateConfig::default()).is_valid());
    }

    #[test]
    fn client_accepts_valid_responses() {
        let config = DeflateConfig::default();
        assert_eq!(client("x-other", &config), Ok(None));
        assert_eq!(client_negotiate(&[], &config), Ok(None));
        let cases = [
            ("permessage-deflate", params(false, false, 15, 15)),
            (
                "permessage-deflate; server_no_context_takeover",
                params(true, false, 15, 15),
            ),
            (
                "permessage-deflate; client_no_context_takeover",
                params(false, true, 15, 15),
            ),
            // Unrequested, and 8 is fine: we inflate with 15.
            (
                "permessage-deflate; server_max_window_bits=8",
                params(false, false, 8, 15),
            ),
            (
                "permessage-deflate; client_max_window_bits=9",
                params(false, false, 15, 9),
            ),
            (
                "x-other, permessage-deflate; client_max_window_bits=\"12\"; server_max_window_bits=13",
                params(false, false, 13, 12),
            ),
        ];
        for (response, expected) in cases {
            assert_eq!(client(response, &config), Ok(Some(expected)), "{response}");
        }
    }

    #[test]
    fn client_applies_its_own_limits() {
        let config = DeflateConfig::default()
            .with_client_max_window_bits(10)
            .with_client_no_context_takeover(true)
            .with_server_max_window_bits(12);
        // Larger than offered: the server may ignore our value (RFC 7692
        // §7.1.2.2); we still use our smaller window.
        assert_eq!(
            client(
                "permessage-deflate; server_max_window_bits=12; client_max_window_bits=15",
                &config
            ),
            Ok(Some(params(false, true, 12, 10)))
        );
        assert_eq!(
            client("permessage-deflate; server_max_window_bits=9", &config),
            Ok(Some(params(false, true, 9, 10)))
        );
    }

    #[test]
    fn client_refuses_invalid_responses() {
        use DeflateNegotiationError as E;
        let config = DeflateConfig::default();
        let cases: Vec<(&str, DeflateNegotiationError)> = vec![
            (
                "permessage-deflate, permessage-deflate",
                E::MultipleAccepted,
            ),
            ("permessage-deflate; foo", E::UnknownParameter("foo".into())),
            (
                "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
                E::DuplicateParameter("server_no_context_takeover".into()),
            ),
            (
                "permessage-deflate; client_no_context_takeover=1",
                E::UnexpectedValue("client_no_context_takeover".into()),
            ),
            (
                "permessage-deflate; client_max_window_bits",
                E::MissingValue("client_max_window_bits".into()),
            ),
            (
                "permessage-deflate; server_max_window_bits",
                E::MissingValue("server_max_window_bits".into()),
            ),
            (
                "permessage-deflate; server_max_window_bits=16",
                E::InvalidValue {
                    parameter: "server_max_window_bits".into(),
                    value: "16".into(),
                },
            ),
            (
                "permessage-deflate; client_max_window_bits=08",
                E::InvalidValue {
                    parameter: "client_max_window_bits".into(),
                    value: "08".into(),
                },
            ),
            (
                "permessage-deflate; client_max_window_bits=8",
                E::UnsupportedClientMaxWindowBits(8),
            ),
        ];
        for (response, expected) in cases {
            assert_eq!(client(response, &config), Err(expected), "{response}");
        }

        let config = DeflateConfig::default()
            .with_server_max_window_bits(10)
            .with_server_no_context_takeover(true);
        assert_eq!(
            client("permessage-deflate; server_max_window_bits=10", &config),
            Err(E::MissingServerNoContextTakeover)
        );
        assert_eq!(
            client("permessage-deflate; server_no_context_takeover", &config),
            Err(E::MissingServerMaxWindowBits { requested: 10 })
        );
        assert_eq!(
            client(
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=11",
                &config
            ),
            Err(E::ServerMaxWindowBitsTooLarge {
                requested: 10,
                received: 11
            })
        );
        assert_eq!(
            client(
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=10",
                &config
            ),
            Ok(Some(params(true, false, 10, 15)))
        );
    }

    #[test]
    fn negotiation_errors_display() {
        use DeflateNegotiationError as E;
        let errors = [
            E::MultipleAccepted,
            E::UnknownParameter("a".into()),
            E::DuplicateParameter("a".into()),
            E::UnexpectedValue("a".into()),
            E::MissingValue("a".into()),
            E::InvalidValue {
                parameter: "a".into(),
                value: "b".into(),
            },
            E::MissingServerNoContextTakeover,
            E::MissingServerMaxWindowBits { requested: 9 },
            E::ServerMaxWindowBitsTooLarge {
                requested: 9,
                received: 10,
            },
            E::UnsupportedClientMaxWindowBits(8),
        ];
        for error in errors {
            assert!(!error.to_string().is_empty());
        }
        assert_eq!(
            E::UnsupportedClientMaxWindowBits(8).to_string(),
            "server requires client_max_window_bits=8, but compression needs at least 9"
        );
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
    fn roles_map_params() {
        let p = params(true, false, 10, 12);
        assert_eq!(p.send_window_bits(DeflateRole::Server), 10);
        assert_eq!(p.send_window_bits(DeflateRole::Client), 12);
        assert_eq!(p.receive_window_bits(DeflateRole::Server), 12);
        assert_eq!(p.receive_window_bits(DeflateRole::Client), 10);
        assert!(p.send_no_context_takeover(DeflateRole::Server));
        assert!(!p.send_no_context_takeover(DeflateRole::Client));
        assert!(!p.receive_no_context_takeover(DeflateRole::Server));
        assert!(p.receive_no_context_takeover(DeflateRole::Client));
        // The server's deflater feeds the client's inflater.
        let mut deflater = p.deflater(DeflateRole::Server, 6).unwrap();
        let mut inflater = p.inflater(DeflateRole::Client);
        let payload = compress_all(&mut deflater, b"hello hello hello");
        assert_eq!(
            inflate_all(&mut inflater, &payload).unwrap(),
            b"hello hello hello"
        );
    }

    fn config_strategy() -> impl Strategy<Value = DeflateConfig> {
        (any::<bool>(), any::<bool>(), 9u8..=15, 9u8..=15).prop_map(|(s, c, sb, cb)| {
            DeflateConfig::default()
                .with_server_no_context_takeover(s)
                .with_client_no_context_takeover(c)
                .with_server_max_window_bits(sb)
                .with_client_max_window_bits(cb)
        })
    }

    proptest! {
        /// Our client and our server always agree, on the same parameters,
        /// through the real header grammar.
        #[test]
        fn client_and_server_agree(client_config in config_strategy(), server_config in config_strategy()) {
            let offer = format_extensions(&[client_offer(&client_config)]);
            let (server_params, response) =
                server_negotiate(&parse(&offer), &server_config).expect("offer accepted");
            let response = format_extensions(&[response]);
            let client_params = client_negotiate(&parse(&response), &client_config)
                .expect("valid response")
                .expect("accepted");
            prop_assert_eq!(server_params, client_params);
            prop_assert!(server_params.server_max_window_bits <= server_config.server_max_window_bits);
            prop_assert!(server_params.server_max_window_bits <= client_config.server_max_window_bits);
            prop_assert!(client_params.client_max_window_bits <= client_config.client_max_window_bits);
            prop_assert!(client_params.client_max_window_bits >= MIN_WINDOW_BITS);
        }

        /// Arbitrary parameter lists never panic either side.
        #[test]
        fn negotiation_never_panics(
            raw in prop::collection::vec(
                (prop::sample::select(vec![
                    SERVER_NO_CONTEXT_TAKEOVER, CLIENT_NO_CONTEXT_TAKEOVER,
                    SERVER_MAX_WINDOW_BITS, CLIENT_MAX_WINDOW_BITS, "x",
                ]), prop::option::of("[0-9a-z]{0,3}")),
                0..6,
            )
        ) {
            let element = ExtensionOffer {
                name: EXTENSION_NAME.into(),
                params: raw
                    .into_iter()
                    .map(|(name, value)| ExtensionParam { name: name.into(), value })
                    .collect(),
            };
            let config = DeflateConfig::default();
            if let Some((p, _)) = server_negotiate(std::slice::from_ref(&element), &config) {
                prop_assert!(p.server_max_window_bits >= MIN_WINDOW_BITS);
            }
            if let Ok(Some(p)) = client_negotiate(&[element], &config) {
                prop_assert!(p.client_max_window_bits >= MIN_WINDOW_BITS);
            }
        }
    }

    // ----- compression ---------------------------------------------------

    const HELLO: &[u8] = &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

    #[test]
    fn states_can_move_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Deflater>();
        send_sync::<Inflater>();
        send_sync::<DeflateParams>();
        send_sync::<DeflateConfig>();
        send_sync::<DeflateError>();
        send_sync::<DeflateNegotiationError>();
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

    #[test]
    fn pool_holds_idle_states() {
        // Thread-local pool: run on a fresh thread for exact counts.
        std::thread::spawn(|| {
            assert_eq!(pool::sizes(), (0, 0));
            let mut deflater = Deflater::new(15, true, 6).unwrap();
            let mut inflater = Inflater::new(true);
            let payload = compress_all(&mut deflater, b"Hello");
            inflate_all(&mut inflater, &payload).unwrap();
            // Between messages nothing is held, and the states wait in the
            // pool.
            assert_eq!(deflater.memory_estimate(), 0);
            assert_eq!(inflater.memory_estimate(), 0);
            assert_eq!(pool::sizes(), (1, 1));
            // A message in progress borrows them ...
            let mut payload = Vec::new();
            deflater.compress(b"Hel", false, &mut payload).unwrap();
            assert!(deflater.memory_estimate() > 200_000);
            assert_eq!(pool::sizes(), (0, 1));
            deflater.compress(b"lo", true, &mut payload).unwrap();
            let mut out = Vec::new();
            inflater
                .inflate(&payload[..2], false, &mut out, 100)
                .unwrap();
            assert!(inflater.memory_estimate() > 0);
            assert_eq!(pool::sizes(), (1, 0));
            inflater
                .inflate(&payload[2..], true, &mut out, 100)
                .unwrap();
            assert_eq!(out, b"Hello");
            // ... and a second connection reuses them.
            assert_eq!(pool::sizes(), (1, 1));
            let mut other = Deflater::new(15, true, 6).unwrap();
            assert_eq!(compress_all(&mut other, b"Hello"), HELLO);
            assert_eq!(pool::sizes(), (1, 1));
            // Another window size or level is another key.
            let mut small = Deflater::new(9, true, 6).unwrap();
            compress_all(&mut small, b"Hello");
            assert_eq!(pool::sizes(), (2, 1));
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
            assert_eq!(pool::sizes(), (1, 0));
            drop(keeping);
            drop(keeping_in);
            assert_eq!(pool::sizes(), (2, 1));
            // The pool is bounded.
            let mut many: Vec<Deflater> = (0..2 * pool::MAX_PER_KEY)
                .map(|_| Deflater::new(15, false, 6).unwrap())
                .collect();
            for deflater in &mut many {
                compress_all(deflater, b"x");
            }
            drop(many);
            assert_eq!(pool::sizes(), (pool::MAX_PER_KEY + 1, 1));
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
