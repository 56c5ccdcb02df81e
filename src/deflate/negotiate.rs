//! Negotiation of `permessage-deflate` (RFC 7692 §5, §7.1): the server's
//! answer to the client's offers ([`server_negotiate`]), the client's offer
//! ([`client_offer`]) and its check of the answer ([`client_negotiate`]),
//! the parameter grammar both share, and the agreed [`DeflateParams`].

use std::fmt;

use super::codec::{DeflateError, Deflater, Inflater, MAX_WINDOW_BITS, MIN_WINDOW_BITS};
use super::config::DeflateConfig;
use crate::handshake::extensions::ExtensionOffer;
use crate::role::Role;

/// The extension's registered name (RFC 7692 §5).
pub const EXTENSION_NAME: &str = "permessage-deflate";

/// Parameter names defined by RFC 7692 §7.1.
const SERVER_NO_CONTEXT_TAKEOVER: &str = "server_no_context_takeover";
const CLIENT_NO_CONTEXT_TAKEOVER: &str = "client_no_context_takeover";
const SERVER_MAX_WINDOW_BITS: &str = "server_max_window_bits";
const CLIENT_MAX_WINDOW_BITS: &str = "client_max_window_bits";

/// The smallest window RFC 7692 §7.1.2.1 / §7.1.2.2 allow on the wire.
const PROTOCOL_MIN_WINDOW_BITS: u8 = 8;

/// The agreed `permessage-deflate` parameters (RFC 7692 §7.1), named from
/// the wire's point of view; the methods taking a [`Role`] translate
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
    pub fn send_window_bits(&self, role: Role) -> u8 {
        match role {
            Role::Client => self.client_max_window_bits,
            Role::Server => self.server_max_window_bits,
        }
    }

    /// The largest window the peer of `role` compresses with.
    /// ([`Inflater`] always uses 15, so this is informational.)
    pub fn receive_window_bits(&self, role: Role) -> u8 {
        match role {
            Role::Client => self.server_max_window_bits,
            Role::Server => self.client_max_window_bits,
        }
    }

    /// Whether `role` resets its compressor after each message.
    pub fn send_no_context_takeover(&self, role: Role) -> bool {
        match role {
            Role::Client => self.client_no_context_takeover,
            Role::Server => self.server_no_context_takeover,
        }
    }

    /// Whether the peer of `role` resets its compressor after each message,
    /// so that `role` may reset its decompressor too.
    pub fn receive_no_context_takeover(&self, role: Role) -> bool {
        match role {
            Role::Client => self.server_no_context_takeover,
            Role::Server => self.client_no_context_takeover,
        }
    }

    /// The compressor for the messages `role` sends.
    ///
    /// Fails only with parameters not produced by negotiation (send window
    /// outside `9..=15`) or a `level` above 9.
    pub fn deflater(&self, role: Role, level: u32) -> Result<Deflater, DeflateError> {
        Deflater::new(
            self.send_window_bits(role),
            self.send_no_context_takeover(role),
            level,
        )
    }

    /// The decompressor for the messages `role` receives.
    pub fn inflater(&self, role: Role) -> Inflater {
        Inflater::new(self.receive_no_context_takeover(role))
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deflate::codec::tests::{compress_all, inflate_all};
    use crate::handshake::extensions::{format_extensions, parse_extensions, ExtensionParam};
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
    }

    #[test]
    fn roles_map_params() {
        let p = params(true, false, 10, 12);
        assert_eq!(p.send_window_bits(Role::Server), 10);
        assert_eq!(p.send_window_bits(Role::Client), 12);
        assert_eq!(p.receive_window_bits(Role::Server), 12);
        assert_eq!(p.receive_window_bits(Role::Client), 10);
        assert!(p.send_no_context_takeover(Role::Server));
        assert!(!p.send_no_context_takeover(Role::Client));
        assert!(!p.receive_no_context_takeover(Role::Server));
        assert!(p.receive_no_context_takeover(Role::Client));
        // The server's deflater feeds the client's inflater.
        let mut deflater = p.deflater(Role::Server, 6).unwrap();
        let mut inflater = p.inflater(Role::Client);
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
}
