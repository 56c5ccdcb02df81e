//! The Socket.IO v5 packet grammar (socket.io-protocol, "Packet encoding";
//! docs/socketio.md §4):
//!
//! ```text
//! <type>[<attachments>-][<namespace>,][<ack id>][<JSON payload>]
//! ```
//!
//! Decoding borrows from the text of the Engine.IO message (the `4` already
//! removed): the namespace is a slice of it and every argument is kept as
//! its raw JSON ([`RawValue`]), so an echo re-emits the client's bytes
//! exactly and handlers deserialize only what they ask for. Encoding writes
//! into a caller's `String` (with or without the Engine.IO `4`), so a room
//! emit is serialised once and shared.
//!
//! This module knows nothing of binary attachments beyond their count:
//! placeholders and attachment frames are `socketio::binary`'s.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, SeqAccess, Visitor};
use serde_json::value::RawValue;

mod encode;

pub(crate) use encode::{append_json, check_event_name, mark_binary, rollback_on_error};
pub use encode::{
    encode_ack, encode_connect, encode_connect_error, encode_disconnect, encode_event, EncodeError,
    Header, Prefix,
};

/// The seven packet types of Socket.IO v5 (socket.io-protocol, "Exchange
/// protocol"); the discriminant is the digit on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// `0`: asks to join a namespace (client) or accepts it (server).
    Connect = 0,
    /// `1`: leaves a namespace; no answer is expected.
    Disconnect = 1,
    /// `2`: an event: a name and its arguments, optionally an ack id.
    Event = 2,
    /// `3`: the answer to an event that carried an ack id.
    Ack = 3,
    /// `4`: the server refuses a namespace connection.
    ConnectError = 4,
    /// `5`: an event whose arguments include binary attachments.
    BinaryEvent = 5,
    /// `6`: an ack whose arguments include binary attachments.
    BinaryAck = 6,
}

impl PacketType {
    /// The type whose wire digit is `digit`, if any.
    pub fn from_digit(digit: u8) -> Option<Self> {
        Some(match digit {
            b'0' => Self::Connect,
            b'1' => Self::Disconnect,
            b'2' => Self::Event,
            b'3' => Self::Ack,
            b'4' => Self::ConnectError,
            b'5' => Self::BinaryEvent,
            b'6' => Self::BinaryAck,
            _ => return None,
        })
    }

    /// The digit this type is written as.
    pub fn digit(self) -> char {
        match self {
            Self::Connect => '0',
            Self::Disconnect => '1',
            Self::Event => '2',
            Self::Ack => '3',
            Self::ConnectError => '4',
            Self::BinaryEvent => '5',
            Self::BinaryAck => '6',
        }
    }

    /// BINARY_EVENT and BINARY_ACK: the types that carry an attachment count.
    pub fn is_binary(self) -> bool {
        matches!(self, Self::BinaryEvent | Self::BinaryAck)
    }

    /// The types an ack id may follow (EVENT asks for an ack, ACK answers one).
    fn takes_ack_id(self) -> bool {
        matches!(
            self,
            Self::Event | Self::Ack | Self::BinaryEvent | Self::BinaryAck
        )
    }

    /// The spec's name (`CONNECT`, `BINARY_EVENT`, …), for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Connect => "CONNECT",
            Self::Disconnect => "DISCONNECT",
            Self::Event => "EVENT",
            Self::Ack => "ACK",
            Self::ConnectError => "CONNECT_ERROR",
            Self::BinaryEvent => "BINARY_EVENT",
            Self::BinaryAck => "BINARY_ACK",
        }
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Event names the JavaScript server reserves for its own events
/// (socket.io-parser's `RESERVED_EVENTS`): an EVENT carrying one is invalid.
pub const RESERVED_EVENT_NAMES: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// The main namespace, omitted on the wire.
pub const MAIN_NAMESPACE: &str = "/";

/// One decoded Socket.IO packet, borrowing from the text it was read from.
#[derive(Debug, Clone)]
pub struct Packet<'a> {
    /// The namespace, starting with `/`; `/` when the packet named none.
    pub namespace: &'a str,
    /// What the packet says, by type.
    pub data: PacketData<'a>,
}

/// A packet's content by type, validated as the reference parser does
/// (socket.io-parser `isPayloadValid`).
#[derive(Debug, Clone)]
pub enum PacketData<'a> {
    /// CONNECT with its payload: the client's `auth` object (or, from a
    /// server, `{"sid":…}`), absent when the client sent none.
    Connect(Option<&'a RawValue>),
    /// DISCONNECT (never has a payload).
    Disconnect,
    /// EVENT or BINARY_EVENT.
    Event(Event<'a>),
    /// ACK or BINARY_ACK.
    Ack(Ack<'a>),
    /// CONNECT_ERROR with its payload (an object such as
    /// `{"message":"Not authorized"}`, or a string). Only a server sends it;
    /// refusing it from a client is the session's business, not the grammar's.
    ConnectError(&'a RawValue),
}

/// An EVENT or BINARY_EVENT.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    /// The event's name: the payload's first element.
    pub name: EventName<'a>,
    /// The arguments after the name, each the exact JSON text received.
    pub args: Vec<&'a RawValue>,
    /// The id the sender waits for an ACK with, if any.
    pub ack_id: Option<u64>,
    /// `Some(n)` for a BINARY_EVENT announcing `n` attachment frames.
    pub attachments: Option<usize>,
}

/// An ACK or BINARY_ACK.
#[derive(Debug, Clone)]
pub struct Ack<'a> {
    /// The id of the EVENT this answers (mandatory: socket.io-protocol,
    /// "Acknowledgement").
    pub ack_id: u64,
    /// The answer's arguments (possibly none), each the exact JSON received.
    pub args: Vec<&'a RawValue>,
    /// `Some(n)` for a BINARY_ACK announcing `n` attachment frames.
    pub attachments: Option<usize>,
}

/// An event's name. The reference parser accepts a number as well as a
/// string (`typeof payload[0] === "number"`); JavaScript then uses it as
/// an object key, i.e. as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventName<'a> {
    /// A JSON string, unescaped (borrowed unless it held escapes).
    Text(Cow<'a, str>),
    /// A JSON number, as its text (`1`, `2.5`).
    Number(&'a str),
}

impl EventName<'_> {
    /// The name as text (a number's JSON text).
    pub fn as_str(&self) -> &str {
        match self {
            Self::Text(text) => text,
            Self::Number(number) => number,
        }
    }
}

impl<'a> Packet<'a> {
    /// Decodes one Socket.IO packet from the text of an Engine.IO message
    /// (without its `4`). Every violation of the grammar is an error (the
    /// session then closes with `parse error`); nothing here panics.
    pub fn decode(text: &'a str) -> Result<Self, PacketError> {
        let bytes = text.as_bytes();
        let first = *bytes.first().ok_or(PacketError::Empty)?;
        let packet_type = PacketType::from_digit(first)
            .ok_or_else(|| PacketError::UnknownType(text.chars().next().unwrap_or('\0')))?;
        let mut pos = 1;

        // `<n>-`: mandatory for the binary types, absent otherwise.
        let attachments = if packet_type.is_binary() {
            let end = digits_end(bytes, pos);
            if end == pos || bytes.get(end) != Some(&b'-') {
                return Err(PacketError::AttachmentCount);
            }
            let count = text
                .get(pos..end)
                .and_then(|digits| digits.parse::<usize>().ok())
                .ok_or(PacketError::AttachmentCount)?;
            pos = end + 1;
            Some(count)
        } else {
            None
        };

        // A namespace starts with `/` and runs to the first `,` or the end
        // (`40/custom` and `40/custom,` are the same: socket.io-parser).
        let namespace = if bytes.get(pos) == Some(&b'/') {
            let rest = text.get(pos..).unwrap_or("");
            match rest.find(',') {
                Some(comma) => {
                    pos += comma + 1;
                    rest.get(..comma).unwrap_or(MAIN_NAMESPACE)
                }
                None => {
                    pos = bytes.len();
                    rest
                }
            }
        } else {
            MAIN_NAMESPACE
        };

        // Ack id: every digit that follows; it must fit u64.
        let ack_end = digits_end(bytes, pos);
        let ack_id = if ack_end > pos {
            if !packet_type.takes_ack_id() {
                return Err(PacketError::AckIdNotAllowed(packet_type));
            }
            let id = text
                .get(pos..ack_end)
                .and_then(|digits| digits.parse::<u64>().ok())
                .ok_or(PacketError::AckIdOutOfRange)?;
            pos = ack_end;
            Some(id)
        } else {
            None
        };

        let payload = text.get(pos..).filter(|rest| !rest.is_empty());
        let data = match packet_type {
            PacketType::Connect => PacketData::Connect(match payload {
                Some(json) => Some(object_payload(packet_type, json)?),
                None => None,
            }),
            PacketType::Disconnect => match payload {
                None => PacketData::Disconnect,
                Some(_) => return Err(PacketError::UnexpectedPayload(packet_type)),
            },
            PacketType::ConnectError => {
                let json = payload.ok_or(PacketError::MissingPayload(packet_type))?;
                match first_char(json) {
                    Some('{') | Some('"') => PacketData::ConnectError(serde_json::from_str(json)?),
                    _ => {
                        return Err(PacketError::PayloadType {
                            packet_type,
                            expected: "an object or a string",
                        })
                    }
                }
            }
            PacketType::Event | PacketType::BinaryEvent => {
                let json = payload.ok_or(PacketError::MissingPayload(packet_type))?;
                expect_array(packet_type, json)?;
                let EventArray { name, args } = serde_json::from_str(json)?;
                PacketData::Event(Event {
                    name: event_name(name.ok_or(PacketError::EmptyEvent)?)?,
                    args,
                    ack_id,
                    attachments,
                })
            }
            PacketType::Ack | PacketType::BinaryAck => {
                let json = payload.ok_or(PacketError::MissingPayload(packet_type))?;
                expect_array(packet_type, json)?;
                PacketData::Ack(Ack {
                    ack_id: ack_id.ok_or(PacketError::MissingAckId)?,
                    args: serde_json::from_str(json)?,
                    attachments,
                })
            }
        };
        Ok(Packet { namespace, data })
    }

    /// The packet's type (BINARY_EVENT/BINARY_ACK when it announces attachments).
    pub fn packet_type(&self) -> PacketType {
        match &self.data {
            PacketData::Connect(_) => PacketType::Connect,
            PacketData::Disconnect => PacketType::Disconnect,
            PacketData::Event(Event {
                attachments: None, ..
            }) => PacketType::Event,
            PacketData::Event(_) => PacketType::BinaryEvent,
            PacketData::Ack(Ack {
                attachments: None, ..
            }) => PacketType::Ack,
            PacketData::Ack(_) => PacketType::BinaryAck,
            PacketData::ConnectError(_) => PacketType::ConnectError,
        }
    }

    /// The number of attachment frames that follow (`Some` for the binary types).
    pub fn attachments(&self) -> Option<usize> {
        match &self.data {
            PacketData::Event(event) => event.attachments,
            PacketData::Ack(ack) => ack.attachments,
            _ => None,
        }
    }

    /// The arguments of an EVENT (after its name) or an ACK; empty otherwise.
    pub fn args(&self) -> &[&'a RawValue] {
        match &self.data {
            PacketData::Event(event) => &event.args,
            PacketData::Ack(ack) => &ack.args,
            _ => &[],
        }
    }

    /// Appends this packet's encoding to `buf`, arguments byte for byte as
    /// decoded. On error `buf` is left as it was.
    pub fn encode(&self, buf: &mut String, prefix: Prefix) -> Result<(), EncodeError> {
        rollback_on_error(buf, |buf| self.write_unchecked(buf, prefix))
    }

    /// `encode` without the rollback.
    fn write_unchecked(&self, buf: &mut String, prefix: Prefix) -> Result<(), EncodeError> {
        let header = Header {
            packet_type: self.packet_type(),
            attachments: self.attachments().unwrap_or(0),
            namespace: self.namespace,
            ack_id: match &self.data {
                PacketData::Event(event) => event.ack_id,
                PacketData::Ack(ack) => Some(ack.ack_id),
                _ => None,
            },
        };
        header.write(buf, prefix)?;
        match &self.data {
            PacketData::Connect(None) | PacketData::Disconnect => Ok(()),
            PacketData::Connect(Some(raw)) | PacketData::ConnectError(raw) => {
                buf.push_str(raw.get());
                Ok(())
            }
            PacketData::Event(event) => {
                if let EventName::Text(name) = &event.name {
                    check_event_name(name)?;
                }
                buf.push('[');
                match &event.name {
                    EventName::Text(name) => append_json(buf, name.as_ref())?,
                    EventName::Number(number) => buf.push_str(number),
                }
                for arg in &event.args {
                    buf.push(',');
                    buf.push_str(arg.get());
                }
                buf.push(']');
                Ok(())
            }
            PacketData::Ack(ack) => append_json(buf, &ack.args),
        }
    }
}

/// Why a packet could not be decoded. Any of these closes the Engine.IO
/// session with `parse error` (docs/socketio.md §4).
#[derive(Debug)]
pub enum PacketError {
    /// The message was empty.
    Empty,
    /// The first character is not a type digit 0–6.
    UnknownType(char),
    /// A binary type without a decimal attachment count ending in `-`, or
    /// a count beyond `usize`.
    AttachmentCount,
    /// The ack id does not fit u64.
    AckIdOutOfRange,
    /// An ack id after a type that cannot carry one.
    AckIdNotAllowed(PacketType),
    /// An ACK without the id it answers.
    MissingAckId,
    /// A type whose payload is mandatory came without one.
    MissingPayload(PacketType),
    /// A payload after a type that has none (DISCONNECT).
    UnexpectedPayload(PacketType),
    /// The payload is JSON of the wrong kind for the type.
    PayloadType {
        /// The packet's type.
        packet_type: PacketType,
        /// What the type requires.
        expected: &'static str,
    },
    /// An EVENT whose array is empty (the name is mandatory).
    EmptyEvent,
    /// An event name that is neither a string nor a number.
    EventNameType,
    /// An event name the protocol reserves.
    ReservedEventName(&'static str),
    /// The payload is not valid JSON (or nests deeper than serde_json's
    /// limit of 128).
    Json(serde_json::Error),
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty packet"),
            Self::UnknownType(c) => write!(f, "unknown packet type {c:?}"),
            Self::AttachmentCount => {
                f.write_str("binary packet without a valid attachment count and '-'")
            }
            Self::AckIdOutOfRange => f.write_str("ack id does not fit u64"),
            Self::AckIdNotAllowed(t) => write!(f, "{t} cannot carry an ack id"),
            Self::MissingAckId => f.write_str("ACK without an ack id"),
            Self::MissingPayload(t) => write!(f, "{t} without its payload"),
            Self::UnexpectedPayload(t) => write!(f, "{t} cannot carry a payload"),
            Self::PayloadType {
                packet_type,
                expected,
            } => {
                write!(f, "{packet_type} payload must be {expected}")
            }
            Self::EmptyEvent => f.write_str("EVENT payload is an empty array"),
            Self::EventNameType => f.write_str("event name is neither a string nor a number"),
            Self::ReservedEventName(name) => write!(f, "event name {name:?} is reserved"),
            Self::Json(e) => write!(f, "invalid JSON payload: {e}"),
        }
    }
}

impl std::error::Error for PacketError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Json(e) => Some(e),
            _ => None,
        }
    }
}

impl From<serde_json::Error> for PacketError {
    fn from(e: serde_json::Error) -> Self {
        Self::Json(e)
    }
}

/// The index after the run of ASCII digits starting at `from`.
fn digits_end(bytes: &[u8], from: usize) -> usize {
    let run = bytes
        .get(from..)
        .unwrap_or(&[])
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    from + run
}

/// The first non-whitespace character of a JSON text (JSON.parse, which
/// the reference parser uses, skips leading whitespace too).
fn first_char(json: &str) -> Option<char> {
    json.trim_start_matches([' ', '\t', '\n', '\r'])
        .chars()
        .next()
}

fn expect_array(packet_type: PacketType, json: &str) -> Result<(), PacketError> {
    if first_char(json) == Some('[') {
        Ok(())
    } else {
        Err(PacketError::PayloadType {
            packet_type,
            expected: "an array",
        })
    }
}

fn object_payload(packet_type: PacketType, json: &str) -> Result<&RawValue, PacketError> {
    if first_char(json) != Some('{') {
        return Err(PacketError::PayloadType {
            packet_type,
            expected: "an object",
        });
    }
    Ok(serde_json::from_str(json)?)
}

fn event_name(raw: &RawValue) -> Result<EventName<'_>, PacketError> {
    let text = raw.get();
    let name = match text.as_bytes().first() {
        Some(b'"') => EventName::Text(match serde_json::from_str::<&str>(text) {
            Ok(borrowed) => Cow::Borrowed(borrowed),
            // Escapes (`"a\u0062"`) cannot be borrowed.
            Err(_) => Cow::Owned(serde_json::from_str::<String>(text)?),
        }),
        Some(b'-' | b'0'..=b'9') => EventName::Number(text),
        _ => return Err(PacketError::EventNameType),
    };
    if let EventName::Text(name) = &name {
        if let Some(reserved) = RESERVED_EVENT_NAMES.iter().find(|r| **r == name.as_ref()) {
            return Err(PacketError::ReservedEventName(reserved));
        }
    }
    Ok(name)
}

/// An EVENT's array read in one pass: the first element (the name) apart
/// from the arguments, each a raw slice.
struct EventArray<'a> {
    name: Option<&'a RawValue>,
    args: Vec<&'a RawValue>,
}

impl<'de> Deserialize<'de> for EventArray<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ArrayVisitor;
        impl<'de> Visitor<'de> for ArrayVisitor {
            type Value = EventArray<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
                let name = seq.next_element::<&'de RawValue>()?;
                let mut args = Vec::new();
                while let Some(arg) = seq.next_element::<&'de RawValue>()? {
                    args.push(arg);
                }
                Ok(EventArray { name, args })
            }
        }
        deserializer.deserialize_seq(ArrayVisitor)
    }
}

#[cfg(test)]
mod tests;
