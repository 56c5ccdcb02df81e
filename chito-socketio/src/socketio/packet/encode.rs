//! Encoding Socket.IO packets into a caller's `String` (with or without
//! the Engine.IO `4`), rolled back on error, so a room emit is serialised
//! once and shared.

use std::fmt::{self, Write as _};
use std::io;

use serde::Serialize;

use super::*;

/// Whether an encoding starts with the Engine.IO `message` type `4`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefix {
    /// The Socket.IO packet alone (`2["foo"]`).
    Bare,
    /// As an Engine.IO message (`42["foo"]`): what goes into a WebSocket
    /// frame or a polling payload (socket.io-protocol, "Packet encoding").
    EngineIoMessage,
}

impl Prefix {
    /// The prefix's text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bare => "",
            Self::EngineIoMessage => "4",
        }
    }
}

/// Everything of an outgoing packet before its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    /// The type.
    pub packet_type: PacketType,
    /// The attachment count; must be 0 unless the type is binary.
    pub attachments: usize,
    /// The namespace (`/` is omitted on the wire).
    pub namespace: &'a str,
    /// The ack id: optional for events, mandatory for acks, else absent.
    pub ack_id: Option<u64>,
}

impl Header<'_> {
    /// Appends `[4]<type>[<n>-][<nsp>,][<id>]` to `buf`, after checking
    /// that a decoder would read the same header back.
    pub fn write(&self, buf: &mut String, prefix: Prefix) -> Result<(), EncodeError> {
        // A namespace must start with `/`, and a `,` in it would end it early
        // on the other side.
        if !self.namespace.starts_with('/') || self.namespace.contains(',') {
            return Err(EncodeError::InvalidNamespace);
        }
        if self.attachments > 0 && !self.packet_type.is_binary() {
            return Err(EncodeError::AttachmentsNotAllowed(self.packet_type));
        }
        match (self.packet_type, self.ack_id) {
            (PacketType::Ack | PacketType::BinaryAck, None) => {
                return Err(EncodeError::MissingAckId);
            }
            (packet_type, Some(_)) if !packet_type.takes_ack_id() => {
                return Err(EncodeError::AckIdNotAllowed(packet_type));
            }
            _ => {}
        }
        buf.push_str(prefix.as_str());
        buf.push(self.packet_type.digit());
        if self.packet_type.is_binary() {
            // Writing into a String cannot fail.
            let _ = write!(buf, "{}-", self.attachments);
        }
        if self.namespace != MAIN_NAMESPACE {
            buf.push_str(self.namespace);
            buf.push(',');
        }
        if let Some(id) = self.ack_id {
            let _ = write!(buf, "{id}");
        }
        Ok(())
    }
}

/// Appends an EVENT: `["<event>", …args]`. `args` must serialize as a JSON
/// array (a tuple, slice, `Vec`, …), whose elements follow the name, or as
/// `null` (`&()`) for none: `&(&msg,)` sends one argument.
pub fn encode_event<A: Serialize + ?Sized>(
    buf: &mut String,
    prefix: Prefix,
    namespace: &str,
    event: &str,
    args: &A,
    ack_id: Option<u64>,
) -> Result<(), EncodeError> {
    rollback_on_error(buf, |buf| {
        check_event_name(event)?;
        Header {
            packet_type: PacketType::Event,
            attachments: 0,
            namespace,
            ack_id,
        }
        .write(buf, prefix)?;
        buf.push('[');
        append_json(buf, event)?;
        let args_at = buf.len();
        append_json(buf, args)?;
        let serialized = buf.get(args_at..).unwrap_or("");
        // `()` (serde's unit, JSON `null`) means no arguments.
        if serialized == "null" {
            buf.truncate(args_at);
            buf.push(']');
            return Ok(());
        }
        if !serialized.starts_with('[') {
            return Err(EncodeError::NotAnArray);
        }
        // `[a,b]` becomes `,a,b]` after the name; `[]` leaves only `]`.
        if serialized
            .get(1..)
            .unwrap_or("")
            .trim_start()
            .starts_with(']')
        {
            buf.truncate(args_at);
            buf.push(']');
        } else {
            buf.replace_range(args_at..args_at + 1, ",");
        }
        Ok(())
    })
}

/// Appends an ACK answering `ack_id`; `args` must serialize as a JSON array,
/// or as `null` (`&()`) for none.
pub fn encode_ack<A: Serialize + ?Sized>(
    buf: &mut String,
    prefix: Prefix,
    namespace: &str,
    ack_id: u64,
    args: &A,
) -> Result<(), EncodeError> {
    rollback_on_error(buf, |buf| {
        Header {
            packet_type: PacketType::Ack,
            attachments: 0,
            namespace,
            ack_id: Some(ack_id),
        }
        .write(buf, prefix)?;
        let args_at = buf.len();
        append_json(buf, args)?;
        let serialized = buf.get(args_at..).unwrap_or("");
        // `()` (serde's unit, JSON `null`) means no arguments.
        if serialized == "null" {
            buf.truncate(args_at);
            buf.push_str("[]");
        } else if !serialized.starts_with('[') {
            return Err(EncodeError::NotAnArray);
        }
        Ok(())
    })
}

/// Appends a CONNECT; `payload` (the server's `{"sid":…}`, a client's auth)
/// must serialize as a JSON object.
pub fn encode_connect<P: Serialize + ?Sized>(
    buf: &mut String,
    prefix: Prefix,
    namespace: &str,
    payload: Option<&P>,
) -> Result<(), EncodeError> {
    encode_object(buf, prefix, PacketType::Connect, namespace, payload)
}

/// Appends a CONNECT_ERROR; `payload` (`{"message":…[,"data":…]}`) must
/// serialize as a JSON object.
pub fn encode_connect_error<P: Serialize + ?Sized>(
    buf: &mut String,
    prefix: Prefix,
    namespace: &str,
    payload: &P,
) -> Result<(), EncodeError> {
    encode_object(
        buf,
        prefix,
        PacketType::ConnectError,
        namespace,
        Some(payload),
    )
}

/// Appends a DISCONNECT (`1`, `1/admin,`).
pub fn encode_disconnect(
    buf: &mut String,
    prefix: Prefix,
    namespace: &str,
) -> Result<(), EncodeError> {
    rollback_on_error(buf, |buf| {
        Header {
            packet_type: PacketType::Disconnect,
            attachments: 0,
            namespace,
            ack_id: None,
        }
        .write(buf, prefix)
    })
}

fn encode_object<P: Serialize + ?Sized>(
    buf: &mut String,
    prefix: Prefix,
    packet_type: PacketType,
    namespace: &str,
    payload: Option<&P>,
) -> Result<(), EncodeError> {
    rollback_on_error(buf, |buf| {
        Header {
            packet_type,
            attachments: 0,
            namespace,
            ack_id: None,
        }
        .write(buf, prefix)?;
        if let Some(payload) = payload {
            let at = buf.len();
            append_json(buf, payload)?;
            if !buf.get(at..).unwrap_or("").starts_with('{') {
                return Err(EncodeError::NotAnObject);
            }
        }
        Ok(())
    })
}

/// Turns the EVENT/ACK whose type digit is at `type_at` in `buf` into a
/// BINARY_EVENT/BINARY_ACK announcing `attachments` frames (`2…` → `5<n>-…`).
/// For `socketio::binary`, which learns the count only once the payload has
/// been serialized (placeholders are numbered as they are met).
pub(crate) fn mark_binary(
    buf: &mut String,
    type_at: usize,
    attachments: usize,
) -> Result<(), EncodeError> {
    let binary = match buf
        .as_bytes()
        .get(type_at)
        .copied()
        .and_then(PacketType::from_digit)
    {
        Some(PacketType::Event) => PacketType::BinaryEvent,
        Some(PacketType::Ack) => PacketType::BinaryAck,
        // Only events and acks carry attachments; reached only by a caller's bug.
        other => {
            return Err(EncodeError::AttachmentsNotAllowed(
                other.unwrap_or(PacketType::Connect),
            ))
        }
    };
    let replacement = format!("{}{attachments}-", binary.digit());
    buf.replace_range(type_at..type_at + 1, &replacement);
    Ok(())
}

/// Why a packet could not be encoded (the caller's mistake; nothing was
/// appended).
#[derive(Debug)]
pub enum EncodeError {
    /// A namespace not starting with `/`, or containing `,`.
    InvalidNamespace,
    /// An event name the protocol reserves (the JS server throws too).
    ReservedEventName(&'static str),
    /// An attachment count on a type that has none.
    AttachmentsNotAllowed(PacketType),
    /// An ack id on a type that has none.
    AckIdNotAllowed(PacketType),
    /// An ACK without its id.
    MissingAckId,
    /// Arguments that did not serialize as a JSON array.
    NotAnArray,
    /// A CONNECT/CONNECT_ERROR payload that did not serialize as an object.
    NotAnObject,
    /// The payload's `Serialize` failed (e.g. a map with non-string keys,
    /// or a `Binary` outside `socketio::binary`'s encoders).
    Json(serde_json::Error),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidNamespace => {
                f.write_str("a namespace starts with '/' and contains no ','")
            }
            Self::ReservedEventName(name) => write!(f, "event name {name:?} is reserved"),
            Self::AttachmentsNotAllowed(t) => write!(f, "{t} cannot carry attachments"),
            Self::AckIdNotAllowed(t) => write!(f, "{t} cannot carry an ack id"),
            Self::MissingAckId => f.write_str("an ACK needs the id it answers"),
            Self::NotAnArray => f.write_str("arguments must serialize as a JSON array"),
            Self::NotAnObject => f.write_str("payload must serialize as a JSON object"),
            Self::Json(e) => write!(f, "payload serialization failed: {e}"),
        }
    }
}

impl std::error::Error for EncodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Json(e) => Some(e),
            _ => None,
        }
    }
}

/// Runs an encoder, leaving `buf` as it was if it fails (so a shared
/// buffer never holds half a packet).
pub(crate) fn rollback_on_error(
    buf: &mut String,
    encode: impl FnOnce(&mut String) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let start = buf.len();
    let result = encode(buf);
    if result.is_err() {
        buf.truncate(start);
    }
    result
}

/// Serializes `value` as compact JSON at the end of `buf`, without an
/// intermediate `String`.
pub(crate) fn append_json<T: Serialize + ?Sized>(
    buf: &mut String,
    value: &T,
) -> Result<(), EncodeError> {
    serde_json::to_writer(StringWriter(buf), value).map_err(EncodeError::Json)
}

/// `io::Write` into a `String`. serde_json writes whole UTF-8 pieces
/// (escapes are ASCII, so its string pieces end on character boundaries);
/// a piece that is not UTF-8 is refused rather than assumed.
struct StringWriter<'b>(&'b mut String);

impl io::Write for StringWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let text = std::str::from_utf8(bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.0.push_str(text);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub(crate) fn check_event_name(name: &str) -> Result<(), EncodeError> {
    match RESERVED_EVENT_NAMES
        .iter()
        .find(|reserved| **reserved == name)
    {
        Some(reserved) => Err(EncodeError::ReservedEventName(reserved)),
        None => Ok(()),
    }
}
