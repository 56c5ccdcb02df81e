//! Close codes and close frames (RFC 6455 §5.5.1, §7.4).

use std::borrow::Cow;
use std::fmt;

/// A close status code (RFC 6455 §7.4, IANA "WebSocket Close Code Number
/// Registry").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// 1000: the purpose of the connection has been fulfilled.
    Normal,
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    GoingAway,
    /// 1002: the peer broke the protocol.
    ProtocolError,
    /// 1003: the endpoint cannot accept this kind of data.
    UnsupportedData,
    /// 1005: no code was present in the close frame. Never sent on the wire.
    NoStatusReceived,
    /// 1006: the connection ended without a close frame. Never sent on the wire.
    Abnormal,
    /// 1007: a text message was not valid UTF-8 (or data was inconsistent
    /// with its type).
    InvalidPayload,
    /// 1008: the message violates the endpoint's policy.
    PolicyViolation,
    /// 1009: the message is too big to process.
    MessageTooBig,
    /// 1010: (client) the server did not negotiate an extension the client needs.
    MandatoryExtension,
    /// 1011: (server) an unexpected condition prevented fulfilling the request.
    InternalError,
    /// 1012: the service is restarting.
    ServiceRestart,
    /// 1013: try again later (temporary overload).
    TryAgainLater,
    /// 1014: a gateway received an invalid response upstream.
    BadGateway,
    /// 1015: the TLS handshake failed. Never sent on the wire.
    TlsHandshake,
    /// 3000–3999: registered with IANA for libraries and frameworks.
    Registered(u16),
    /// 4000–4999: private use by applications.
    Private(u16),
    /// Any other value: reserved or invalid. Receiving one in a close frame
    /// is a protocol error.
    Reserved(u16),
}

impl CloseCode {
    /// The code for a numeric value.
    pub fn from_u16(code: u16) -> CloseCode {
        match code {
            1000 => CloseCode::Normal,
            1001 => CloseCode::GoingAway,
            1002 => CloseCode::ProtocolError,
            1003 => CloseCode::UnsupportedData,
            1005 => CloseCode::NoStatusReceived,
            1006 => CloseCode::Abnormal,
            1007 => CloseCode::InvalidPayload,
            1008 => CloseCode::PolicyViolation,
            1009 => CloseCode::MessageTooBig,
            1010 => CloseCode::MandatoryExtension,
            1011 => CloseCode::InternalError,
            1012 => CloseCode::ServiceRestart,
            1013 => CloseCode::TryAgainLater,
            1014 => CloseCode::BadGateway,
            1015 => CloseCode::TlsHandshake,
            3000..=3999 => CloseCode::Registered(code),
            4000..=4999 => CloseCode::Private(code),
            _ => CloseCode::Reserved(code),
        }
    }

    /// The numeric value.
    pub fn as_u16(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::ProtocolError => 1002,
            CloseCode::UnsupportedData => 1003,
            CloseCode::NoStatusReceived => 1005,
            CloseCode::Abnormal => 1006,
            CloseCode::InvalidPayload => 1007,
            CloseCode::PolicyViolation => 1008,
            CloseCode::MessageTooBig => 1009,
            CloseCode::MandatoryExtension => 1010,
            CloseCode::InternalError => 1011,
            CloseCode::ServiceRestart => 1012,
            CloseCode::TryAgainLater => 1013,
            CloseCode::BadGateway => 1014,
            CloseCode::TlsHandshake => 1015,
            CloseCode::Registered(code) | CloseCode::Private(code) | CloseCode::Reserved(code) => {
                code
            }
        }
    }

    /// Whether this code may appear in a close frame on the wire.
    ///
    /// RFC 6455 §7.4.1: 1005, 1006 and 1015 are "reserved values and MUST NOT
    /// be set as a status code in a Close control frame"; 1004 and
    /// 1016–2999 are reserved for future definition, and values below 1000
    /// or at 5000 and above are not used (§7.4.2).
    pub fn is_sendable(self) -> bool {
        matches!(self.as_u16(), 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        CloseCode::from_u16(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.as_u16()
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_u16())
    }
}

/// The body of a close frame: a code and a UTF-8 reason of at most 123 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame<'a> {
    /// The status code.
    pub code: CloseCode,
    /// The reason, possibly empty.
    pub reason: Cow<'a, str>,
}

impl<'a> CloseFrame<'a> {
    /// A close frame borrowing its reason.
    pub fn new(code: CloseCode, reason: &'a str) -> Self {
        CloseFrame {
            code,
            reason: Cow::Borrowed(reason),
        }
    }

    /// The same frame owning its reason.
    pub fn into_owned(self) -> CloseFrame<'static> {
        CloseFrame {
            code: self.code,
            reason: Cow::Owned(self.reason.into_owned()),
        }
    }
}

/// The most reason bytes that fit beside the code in a 125-byte control
/// payload (RFC 6455 §5.5).
pub const MAX_CLOSE_REASON: usize = 123;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_roundtrip() {
        for code in 0..=u16::MAX {
            assert_eq!(CloseCode::from_u16(code).as_u16(), code);
        }
    }

    #[test]
    fn sendable_codes_follow_rfc_7_4() {
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            assert!(CloseCode::from_u16(code).is_sendable(), "{code}");
        }
        for code in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!CloseCode::from_u16(code).is_sendable(), "{code}");
        }
    }
}
