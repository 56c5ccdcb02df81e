//! One Engine.IO v4 packet: its type digit (0–6) and data, decoded from a
//! WebSocket text message or one polling packet, and encoded back.
//!
//! Engine.IO v4 protocol, "Packet encoding": a text packet is the type as
//! one ASCII digit followed by its UTF-8 data; a binary message carries no
//! type at all (a WebSocket binary message is a message packet as it is;
//! on polling it is `b` + base64, see [`super::payload`]). Decoding borrows
//! from the input and never allocates.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use chito::SharedMessage;

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
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// A text packet: type digit and data (`4hello`, `2`, `3probe`).
    Text(String),
    /// A binary message: raw on WebSocket, `b` + base64 on polling.
    Binary(bytes::Bytes),
    /// A message encoded once for many sessions (a room emit,
    /// docs/socketio.md §6): queued by reference in each.
    Shared(SharedPacket),
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
            Outgoing::Binary(data) => base64_polling_len(data.len()),
            Outgoing::Shared(shared) => shared.polling_len(),
        }
    }

    /// The packet's length as one WebSocket message.
    pub fn websocket_len(&self) -> usize {
        match self {
            Outgoing::Text(text) => text.len(),
            Outgoing::Binary(data) => data.len(),
            Outgoing::Shared(shared) => shared.message().len(),
        }
    }
}

/// The Engine.IO messages of one emit, built once per emit (a room
/// registry caches them with the emit's payload) and queued by reference
/// in every member's session, whatever its transport.
#[derive(Debug)]
pub struct SharedPackets(Box<[Outgoing]>);

impl SharedPackets {
    /// `messages` as Engine.IO messages, in order.
    pub fn from_messages(messages: &[SharedMessage]) -> SharedPackets {
        SharedPackets(
            messages
                .iter()
                .map(|message| Outgoing::Shared(SharedPacket::from_message(message.clone())))
                .collect(),
        )
    }

    /// The packets, in order.
    pub fn packets(&self) -> &[Outgoing] {
        &self.0
    }
}

/// Text and binary packets compare by content, shared ones by identity
/// (the same encoding).
impl PartialEq for Outgoing {
    fn eq(&self, other: &Outgoing) -> bool {
        match (self, other) {
            (Outgoing::Text(a), Outgoing::Text(b)) => a == b,
            (Outgoing::Binary(a), Outgoing::Binary(b)) => a == b,
            (Outgoing::Shared(a), Outgoing::Shared(b)) => a.same_encoding(b),
            _ => false,
        }
    }
}

impl Eq for Outgoing {}

/// `b` + standard base64 with padding of `len` bytes (Engine.IO v4,
/// "Payload encoding").
fn base64_polling_len(len: usize) -> usize {
    1 + len.div_ceil(3) * 4
}

/// One Engine.IO message encoded once and sent to many sessions, whatever
/// their transport (docs/socketio.md §6): the chito [`SharedMessage`] the
/// WebSocket route queues by reference (chito builds its frame once per
/// wire form), and, for a binary message, its polling form `b` + base64,
/// built by the first polling session that sends it. A text message's
/// polling form is its text as it is. Cloning is a reference count.
#[derive(Debug, Clone)]
pub struct SharedPacket(Arc<SharedPacketInner>);

#[derive(Debug)]
struct SharedPacketInner {
    message: SharedMessage,
    /// A binary message's `b` + base64 (unused for text).
    polling: OnceLock<Bytes>,
    /// How many times `polling` was built (at most once; tests check it).
    polling_builds: AtomicUsize,
}

impl SharedPacket {
    /// A whole Engine.IO text packet, type digit included (`42["chat",1]`),
    /// taken without copying.
    pub fn text(packet: String) -> SharedPacket {
        SharedPacket::new(SharedMessage::text(packet))
    }

    /// A binary message (copied once into the shared message).
    pub fn binary(data: &[u8]) -> SharedPacket {
        SharedPacket::new(SharedMessage::new(chito::Message::Binary(data)))
    }

    /// The Engine.IO message `message` carries as it is: text is a whole
    /// Engine.IO text packet (type digit included), binary a binary
    /// message.
    pub fn from_message(message: SharedMessage) -> SharedPacket {
        SharedPacket::new(message)
    }

    fn new(message: SharedMessage) -> SharedPacket {
        SharedPacket(Arc::new(SharedPacketInner {
            message,
            polling: OnceLock::new(),
            polling_builds: AtomicUsize::new(0),
        }))
    }

    /// The message, as the WebSocket route sends it.
    pub fn message(&self) -> &SharedMessage {
        &self.0.message
    }

    /// Appends the polling form to `out`: the text as it is, or `b` +
    /// base64 built once for every session.
    pub fn write_polling(&self, out: &mut BytesMut) {
        match self.0.message.message() {
            chito::Message::Text(text) => out.put_slice(text.as_bytes()),
            chito::Message::Binary(data) => {
                let form = self.0.polling.get_or_init(|| {
                    self.0.polling_builds.fetch_add(1, Ordering::Relaxed);
                    let mut form = String::with_capacity(base64_polling_len(data.len()));
                    form.push('b');
                    STANDARD.encode_string(data, &mut form);
                    Bytes::from(form)
                });
                out.put_slice(form);
            }
        }
    }

    /// The polling form's length.
    pub fn polling_len(&self) -> usize {
        match self.0.message.message() {
            chito::Message::Text(text) => text.len(),
            chito::Message::Binary(data) => base64_polling_len(data.len()),
        }
    }

    /// How many times the polling form was built: at most once, however
    /// many polling sessions it went to.
    pub fn polling_builds(&self) -> usize {
        self.0.polling_builds.load(Ordering::Relaxed)
    }

    /// Whether two packets are the same shared encoding.
    pub fn same_encoding(&self, other: &SharedPacket) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
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
