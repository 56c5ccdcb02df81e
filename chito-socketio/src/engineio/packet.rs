//! One Engine.IO v4 packet: its type digit (0–6) and data, decoded from a
//! WebSocket text message or one polling packet, and encoded back.
//!
//! Engine.IO v4 protocol, "Packet encoding": a text packet is the type as
//! one ASCII digit followed by its UTF-8 data; a binary message carries no
//! type at all (a WebSocket binary message is a message packet as it is;
//! on polling it is `b` + base64, see [`super::payload`]). Decoding borrows
//! from the input and never allocates.

use std::fmt;

/// The seven Engine.IO v4 packet types (protocol "Packet types" table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// `0`: sent by the server once, with the session's parameters.
    Open,
    /// `1`: the transport may be closed.
    Close,
    /// `2`: heartbeat request (server → client, or `2probe` during an upgrade).
    Ping,
    /// `3`: heartbeat answer (client → server, or `3probe` during an upgrade).
    Pong,
    /// `4`: an application message.
    Message,
    /// `5`: completes the upgrade to WebSocket.
    Upgrade,
    /// `6`: no-op, ends a polling request during an upgrade.
    Noop,
}

impl PacketType {
    /// The type's ASCII digit on the wire.
    pub fn digit(self) -> u8 {
        match self {
            PacketType::Open => b'0',
            PacketType::Close => b'1',
            PacketType::Ping => b'2',
            PacketType::Pong => b'3',
            PacketType::Message => b'4',
            PacketType::Upgrade => b'5',
            PacketType::Noop => b'6',
        }
    }

    /// The type of a wire digit, `None` for anything outside `0`–`6`.
    pub fn from_digit(digit: u8) -> Option<PacketType> {
        Some(match digit {
            b'0' => PacketType::Open,
            b'1' => PacketType::Close,
            b'2' => PacketType::Ping,
            b'3' => PacketType::Pong,
            b'4' => PacketType::Message,
            b'5' => PacketType::Upgrade,
            b'6' => PacketType::Noop,
            _ => return None,
        })
    }
}

/// A decoded text packet, borrowing its data from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The packet's type.
    pub kind: PacketType,
    /// What follows the type digit (`probe` in `2probe`, the message text).
    pub data: &'a str,
}

impl<'a> Packet<'a> {
    /// A packet of `kind` with `data`.
    pub fn new(kind: PacketType, data: &'a str) -> Packet<'a> {
        Packet { kind, data }
    }

    /// The packet's wire form: its digit, then its data.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(1 + self.data.len());
        self.encode_into(&mut out);
        out
    }

    /// Appends the packet's wire form to `out`.
    pub fn encode_into(&self, out: &mut String) {
        out.push(char::from(self.kind.digit()));
        out.push_str(self.data);
    }
}

/// Why a packet could not be decoded. The session answers every one of
/// them with `parse error` (Engine.IO v4, the server's close reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketError {
    /// The packet is empty: it has no type digit.
    Empty,
    /// The first byte is not a type digit `0`–`6`.
    UnknownType(u8),
    /// A polling packet is not UTF-8 (polling payloads are text in v4).
    NotUtf8,
    /// A `b` packet's data is not valid standard base64.
    BadBase64,
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacketError::Empty => f.write_str("empty Engine.IO packet"),
            PacketError::UnknownType(byte) => {
                write!(f, "unknown Engine.IO packet type byte 0x{byte:02x}")
            }
            PacketError::NotUtf8 => f.write_str("Engine.IO polling packet is not UTF-8"),
            PacketError::BadBase64 => f.write_str("Engine.IO binary packet is not valid base64"),
        }
    }
}

impl std::error::Error for PacketError {}

/// Decodes one text packet (a WebSocket text message, or one polling
/// packet that does not start with `b`).
pub fn decode_text(text: &str) -> Result<Packet<'_>, PacketError> {
    let first = *text.as_bytes().first().ok_or(PacketError::Empty)?;
    let kind = PacketType::from_digit(first).ok_or(PacketError::UnknownType(first))?;
    // The digit is ASCII, so index 1 is a char boundary; `get` keeps it
    // panic-free all the same.
    let data = text.get(1..).unwrap_or("");
    Ok(Packet { kind, data })
}

/// A packet on its way to the client, already encoded: what one WebSocket
/// message carries, and what a polling response joins with `\x1e`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// A text packet: type digit and data (`4hello`, `2`, `3probe`).
    Text(String),
    /// A binary message: raw on WebSocket, `b` + base64 on polling.
    Binary(bytes::Bytes),
}

impl Outgoing {
    /// A text packet of `kind` with `data`.
    pub fn packet(kind: PacketType, data: &str) -> Outgoing {
        Outgoing::Text(Packet::new(kind, data).encode())
    }

    /// A message packet carrying `text` (`4` + text).
    pub fn message(text: &str) -> Outgoing {
        Outgoing::packet(PacketType::Message, text)
    }

    /// The packet's length in a polling payload (binary grows by base64's
    /// 4/3 and its `b`): what the `maxPayload` bound of a response counts.
    pub fn polling_len(&self) -> usize {
        match self {
            Outgoing::Text(text) => text.len(),
            Outgoing::Binary(data) => 1 + data.len().div_ceil(3) * 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips() {
        for digit in b'0'..=b'6' {
            let kind = PacketType::from_digit(digit).unwrap();
            assert_eq!(kind.digit(), digit);
            let text = format!("{}data", char::from(digit));
            let packet = decode_text(&text).unwrap();
            assert_eq!(packet, Packet::new(kind, "data"));
            assert_eq!(packet.encode(), text);
        }
    }

    #[test]
    fn probe_and_message() {
        assert_eq!(
            decode_text("2probe").unwrap(),
            Packet::new(PacketType::Ping, "probe")
        );
        assert_eq!(
            decode_text("4héllo").unwrap(),
            Packet::new(PacketType::Message, "héllo")
        );
        assert_eq!(
            decode_text("4").unwrap(),
            Packet::new(PacketType::Message, "")
        );
    }

    #[test]
    fn bad_packets_are_errors() {
        assert_eq!(decode_text(""), Err(PacketError::Empty));
        assert_eq!(decode_text("abc"), Err(PacketError::UnknownType(b'a')));
        assert_eq!(decode_text("7"), Err(PacketError::UnknownType(b'7')));
        assert_eq!(decode_text("é"), Err(PacketError::UnknownType(0xc3)));
        assert!(!PacketError::UnknownType(b'x').to_string().is_empty());
    }

    #[test]
    fn every_prefix_and_bit_flip_decodes_or_errs() {
        let text = "4héllo wörld \u{1F600}";
        for end in 0..=text.len() {
            if let Some(prefix) = text.get(..end) {
                let _ = decode_text(prefix);
            }
        }
        let bytes = text.as_bytes();
        for index in 0..bytes.len() {
            for bit in 0..8 {
                let mut flipped = bytes.to_vec();
                flipped[index] ^= 1 << bit;
                if let Ok(flipped) = std::str::from_utf8(&flipped) {
                    match decode_text(flipped) {
                        Ok(packet) => assert_eq!(packet.encode(), flipped),
                        Err(_) => assert!(index == 0),
                    }
                }
            }
        }
    }
}
