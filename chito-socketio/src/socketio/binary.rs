//! Binary attachments (socket.io-protocol, "Packet encoding";
//! docs/socketio.md §4): a BINARY_EVENT/BINARY_ACK is a text packet whose
//! JSON holds placeholders `{"_placeholder":true,"num":n}`, followed by
//! `n` binary Engine.IO messages, the attachments, in order.
//!
//! - Outgoing: every [`Binary`] met while serializing becomes the next
//!   placeholder and its bytes are collected ([`encode_event`],
//!   [`encode_ack`]); the packet is written once, whatever the number of
//!   recipients.
//! - Incoming: [`Reassembler`] (socket.io-parser's `Decoder` with its
//!   `BinaryReconstructor`) holds a binary packet until its attachments have
//!   arrived, bounded in count and bytes, and yields a [`BinaryPacket`]
//!   whose arguments deserialize with the attachments in place of their
//!   placeholders.

use std::cell::RefCell;
use std::fmt;

use bytes::Bytes;
use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Error as _, Serialize, Serializer};
use serde_json::value::RawValue;

use super::packet::{self, EncodeError, Packet, PacketError, Prefix};

/// Binary data as one argument (or inside one) of an event or ack: sent as
/// an attachment frame, received from one. A `Bytes` newtype, so one
/// attachment is shared, not copied, by every recipient of a room emit.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Binary(pub Bytes);

impl From<Bytes> for Binary {
    fn from(bytes: Bytes) -> Self {
        Self(bytes)
    }
}

impl From<Vec<u8>> for Binary {
    fn from(bytes: Vec<u8>) -> Self {
        Self(Bytes::from(bytes))
    }
}

/// The placeholder object, in the field order the reference encoder writes.
#[derive(serde::Serialize)]
struct Placeholder {
    #[serde(rename = "_placeholder")]
    placeholder: bool,
    num: usize,
}

thread_local! {
    /// The attachments collected by the encode running on this thread
    /// (`None`: no binary-aware encode is running). Serialization is
    /// synchronous, so a thread-local scoped to one encode is exact, and it
    /// spares wrapping every serde `Serializer` method.
    static OUTGOING: RefCell<Option<Vec<Bytes>>> = const { RefCell::new(None) };
    /// The attachments of the packet whose argument is being deserialized.
    static INCOMING: RefCell<Option<Vec<Bytes>>> = const { RefCell::new(None) };
}

/// Installs a value in one of the thread-locals and puts the previous one
/// back when dropped (also on unwinding), so nested use stays correct.
struct Scope {
    slot: &'static std::thread::LocalKey<RefCell<Option<Vec<Bytes>>>>,
    previous: Option<Vec<Bytes>>,
    restored: bool,
}

impl Scope {
    fn enter(
        slot: &'static std::thread::LocalKey<RefCell<Option<Vec<Bytes>>>>,
        value: Vec<Bytes>,
    ) -> Self {
        let previous = slot.with(|cell| cell.replace(Some(value)));
        Self {
            slot,
            previous,
            restored: false,
        }
    }

    /// Restores the previous value and returns what the scope collected.
    fn exit(mut self) -> Vec<Bytes> {
        self.restored = true;
        let previous = self.previous.take();
        self.slot
            .with(|cell| cell.replace(previous))
            .unwrap_or_default()
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        if !self.restored {
            let previous = self.previous.take();
            self.slot.with(|cell| cell.replace(previous));
        }
    }
}

impl Serialize for Binary {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let num = OUTGOING.with(|cell| {
            cell.borrow_mut().as_mut().map(|collected| {
                collected.push(self.0.clone());
                collected.len() - 1
            })
        });
        match num {
            Some(num) => Placeholder {
                placeholder: true,
                num,
            }
            .serialize(serializer),
            None => Err(S::Error::custom(
                "a Binary is sent only through socketio::binary's encoders",
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Binary {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        struct IncomingPlaceholder {
            #[serde(rename = "_placeholder")]
            placeholder: bool,
            num: usize,
        }
        let IncomingPlaceholder { placeholder, num } =
            IncomingPlaceholder::deserialize(deserializer)?;
        if !placeholder {
            return Err(de::Error::custom("not an attachment placeholder"));
        }
        INCOMING
            .with(|cell| {
                cell.borrow()
                    .as_ref()
                    .map(|attachments| attachments.get(num).cloned())
            })
            .ok_or_else(|| {
                de::Error::custom("a Binary is read only from a binary packet's arguments")
            })?
            .map(Binary)
            .ok_or_else(|| de::Error::custom(format_args!("no attachment {num}")))
    }
}

/// Appends an EVENT whose arguments may hold [`Binary`] values (see
/// [`packet::encode_event`]). With attachments it is written as a
/// BINARY_EVENT (`51-["file",{"_placeholder":true,"num":0}]`); the
/// attachments are returned in placeholder order, to be sent after it.
pub fn encode_event<A: Serialize + ?Sized>(
    buf: &mut String,
    prefix: Prefix,
    namespace: &str,
    event: &str,
    args: &A,
    ack_id: Option<u64>,
) -> Result<Vec<Bytes>, EncodeError> {
    collecting(buf, prefix, |buf| {
        packet::encode_event(buf, prefix, namespace, event, args, ack_id)
    })
}

/// Appends an ACK whose arguments may hold [`Binary`] values (see
/// [`packet::encode_ack`]); with attachments it is written as a BINARY_ACK.
pub fn encode_ack<A: Serialize + ?Sized>(
    buf: &mut String,
    prefix: Prefix,
    namespace: &str,
    ack_id: u64,
    args: &A,
) -> Result<Vec<Bytes>, EncodeError> {
    collecting(buf, prefix, |buf| {
        packet::encode_ack(buf, prefix, namespace, ack_id, args)
    })
}

/// Runs a text encoder with placeholders collected, then, if any were,
/// rewrites its type as the binary one with the count (which precedes the
/// payload on the wire but is known only after it).
fn collecting(
    buf: &mut String,
    prefix: Prefix,
    encode: impl FnOnce(&mut String) -> Result<(), EncodeError>,
) -> Result<Vec<Bytes>, EncodeError> {
    let start = buf.len();
    let scope = Scope::enter(&OUTGOING, Vec::new());
    let result = encode(buf);
    let attachments = scope.exit();
    result?;
    if !attachments.is_empty() {
        let type_at = start + prefix.as_str().len();
        if let Err(e) = packet::mark_binary(buf, type_at, attachments.len()) {
            buf.truncate(start);
            return Err(e);
        }
    }
    Ok(attachments)
}

#[cfg(feature = "server")]
/// Deserializes one received argument with `attachments` in place of its
/// placeholders (what [`BinaryPacket::deserialize_arg`] does, for callers
/// that keep the attachments apart from the packet's text).
pub(crate) fn deserialize_with_attachments<'de, T: Deserialize<'de>>(
    attachments: &[Bytes],
    arg: &'de str,
) -> Result<T, serde_json::Error> {
    let scope = Scope::enter(&INCOMING, attachments.to_vec());
    let result = serde_json::from_str(arg);
    scope.exit();
    result
}

#[cfg(feature = "server")]
/// Appends received attachments to the ones the running encode collects,
/// so arguments forwarded as received (placeholders and all) keep their
/// attachments. Returns the number of the first one: the forwarded
/// placeholders are right only if it is 0 (they were numbered from 0 by
/// the sender). `None` when no binary-aware encode is running.
pub(crate) fn forward_attachments(attachments: &[Bytes]) -> Option<usize> {
    OUTGOING.with(|cell| {
        cell.borrow_mut().as_mut().map(|collected| {
            let first = collected.len();
            collected.extend(attachments.iter().cloned());
            first
        })
    })
}

/// Bounds on incoming attachments (docs/socketio.md §9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BinaryLimits {
    /// Most attachments one packet may announce (socket.io-parser's
    /// `maxAttachments`, 10).
    pub max_attachments: usize,
    /// Most bytes of attachments one packet may bring in total
    /// (`max_attachments × max_payload` by default).
    pub max_attachment_bytes: usize,
}

impl Default for BinaryLimits {
    fn default() -> Self {
        Self {
            max_attachments: 10,
            max_attachment_bytes: 10 * 1_000_000,
        }
    }
}

/// A binary packet with all its attachments: the packet's text (owned:
/// the frame it came in is gone by the time the attachments arrive) and
/// the attachments in placeholder order.
#[derive(Clone, Debug)]
pub struct BinaryPacket {
    text: String,
    attachments: Vec<Bytes>,
}

impl BinaryPacket {
    /// The packet, decoded from the owned text. It was validated when it
    /// arrived, so this only repeats a cheap parse; the `Result` is there
    /// because nothing here may panic.
    pub fn packet(&self) -> Result<Packet<'_>, PacketError> {
        Packet::decode(&self.text)
    }

    /// The packet's text (without the Engine.IO `4`).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The attachments, `num` 0 first.
    pub fn attachments(&self) -> &[Bytes] {
        &self.attachments
    }

    /// Deserializes one argument of this packet with its placeholders
    /// resolved: a [`Binary`] anywhere in `T` receives its attachment.
    pub fn deserialize_arg<'de, T: Deserialize<'de>>(
        &self,
        arg: &'de RawValue,
    ) -> Result<T, serde_json::Error> {
        let scope = Scope::enter(&INCOMING, self.attachments.clone());
        let result = serde_json::from_str(arg.get());
        scope.exit();
        result
    }

    /// The text and the attachments.
    pub fn into_parts(self) -> (String, Vec<Bytes>) {
        (self.text, self.attachments)
    }
}

/// The receiving side of one Engine.IO session: text packets pass through
/// decoded; a binary packet waits here for its attachment frames.
#[derive(Debug, Default)]
pub struct Reassembler {
    limits: BinaryLimits,
    waiting: Option<Waiting>,
}

#[derive(Debug)]
struct Waiting {
    text: String,
    expected: usize,
    attachments: Vec<Bytes>,
    bytes: usize,
}

impl Reassembler {
    /// A reassembler with these limits.
    pub fn new(limits: BinaryLimits) -> Self {
        Self {
            limits,
            waiting: None,
        }
    }

    /// Whether a binary packet is waiting for attachments.
    pub fn is_waiting(&self) -> bool {
        self.waiting.is_some()
    }

    /// A text message (without the Engine.IO `4`). `Ok(Some)`: a complete
    /// packet, borrowing from `text`; `Ok(None)`: a binary packet now waits
    /// for its attachments. Any error should close the session (`parse
    /// error`); the reassembler is then empty.
    pub fn on_text<'t>(&mut self, text: &'t str) -> Result<Option<Packet<'t>>, BinaryError> {
        // socket.io-parser: "got plaintext data when reconstructing a packet".
        if self.waiting.take().is_some() {
            return Err(BinaryError::TextWhileWaiting);
        }
        let packet = Packet::decode(text)?;
        let Some(expected) = packet.attachments() else {
            return Ok(Some(packet));
        };
        if expected > self.limits.max_attachments {
            return Err(BinaryError::TooManyAttachments(expected));
        }
        check_placeholders(packet.args(), expected)?;
        if expected == 0 {
            return Ok(Some(packet));
        }
        self.waiting = Some(Waiting {
            text: text.to_owned(),
            expected,
            attachments: Vec::with_capacity(expected),
            bytes: 0,
        });
        Ok(None)
    }

    /// A binary message. `Ok(Some)`: it was the last attachment of the
    /// waiting packet. A binary message when nothing waits is an error.
    pub fn on_binary(&mut self, data: Bytes) -> Result<Option<BinaryPacket>, BinaryError> {
        let Some(waiting) = self.waiting.as_mut() else {
            return Err(BinaryError::UnexpectedAttachment);
        };
        waiting.bytes = waiting.bytes.saturating_add(data.len());
        if waiting.bytes > self.limits.max_attachment_bytes {
            self.waiting = None;
            return Err(BinaryError::TooManyBytes);
        }
        waiting.attachments.push(data);
        if waiting.attachments.len() < waiting.expected {
            return Ok(None);
        }
        Ok(self.waiting.take().map(|waiting| BinaryPacket {
            text: waiting.text,
            attachments: waiting.attachments,
        }))
    }
}

/// Why incoming binary data was refused; each closes the session with
/// `parse error` (docs/socketio.md §4, §9).
#[derive(Debug)]
pub enum BinaryError {
    /// The text packet itself is invalid.
    Packet(PacketError),
    /// More attachments announced than `max_attachments`.
    TooManyAttachments(usize),
    /// The attachments' total exceeds `max_attachment_bytes`.
    TooManyBytes,
    /// A text packet arrived while attachments were awaited.
    TextWhileWaiting,
    /// A binary message arrived when no binary packet was waiting.
    UnexpectedAttachment,
    /// A placeholder whose `num` is not an integer below the count.
    PlaceholderOutOfRange,
    /// Two placeholders with the same `num`.
    RepeatedPlaceholder(usize),
}

impl fmt::Display for BinaryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Packet(e) => e.fmt(f),
            Self::TooManyAttachments(n) => {
                write!(f, "{n} attachments announced, more than allowed")
            }
            Self::TooManyBytes => f.write_str("attachments larger than allowed"),
            Self::TextWhileWaiting => f.write_str("text packet while awaiting attachments"),
            Self::UnexpectedAttachment => f.write_str("binary message without a binary packet"),
            Self::PlaceholderOutOfRange => f.write_str("placeholder num out of range"),
            Self::RepeatedPlaceholder(n) => write!(f, "placeholder num {n} used twice"),
        }
    }
}

impl std::error::Error for BinaryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Packet(e) => Some(e),
            _ => None,
        }
    }
}

impl From<PacketError> for BinaryError {
    fn from(e: PacketError) -> Self {
        Self::Packet(e)
    }
}

/// Checks every placeholder in `args`: an object with `"_placeholder":
/// true` (socket.io-parser's test) must have an integer `num` below
/// `attachments`, each `num` at most once. Walks the JSON without building
/// it; depth is bounded by serde_json's recursion limit.
fn check_placeholders(args: &[&RawValue], attachments: usize) -> Result<(), BinaryError> {
    let mut state = ScanState {
        attachments,
        seen: vec![false; attachments],
        error: None,
    };
    for arg in args {
        let mut deserializer = serde_json::Deserializer::from_str(arg.get());
        if let Err(e) = (ScanSeed { state: &mut state }).deserialize(&mut deserializer) {
            return Err(state
                .error
                .take()
                .unwrap_or(BinaryError::Packet(PacketError::Json(e))));
        }
    }
    Ok(())
}

struct ScanState {
    attachments: usize,
    seen: Vec<bool>,
    error: Option<BinaryError>,
}

/// What a scanned value was, as far as a placeholder's fields care.
enum Scanned {
    True,
    Integer(u64),
    Other,
}

struct ScanSeed<'s> {
    state: &'s mut ScanState,
}

impl<'de> DeserializeSeed<'de> for ScanSeed<'_> {
    type Value = Scanned;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Scanned, D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// A key of a scanned object, read without allocating.
enum Key {
    Placeholder,
    Num,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
                Ok(match key {
                    "_placeholder" => Key::Placeholder,
                    "num" => Key::Num,
                    _ => Key::Other,
                })
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl<'de> Visitor<'de> for ScanSeed<'_> {
    type Value = Scanned;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scanned, E> {
        Ok(if v { Scanned::True } else { Scanned::Other })
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scanned, E> {
        Ok(Scanned::Integer(v))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Scanned, E> {
        Ok(Scanned::Other)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Scanned, E> {
        Ok(Scanned::Other)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Scanned, E> {
        Ok(Scanned::Other)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Scanned, E> {
        Ok(Scanned::Other)
    }
    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Scanned, S::Error> {
        while seq
            .next_element_seed(ScanSeed {
                state: &mut *self.state,
            })?
            .is_some()
        {}
        Ok(Scanned::Other)
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Scanned, M::Error> {
        let mut is_placeholder = false;
        let mut num = None;
        while let Some(key) = map.next_key::<Key>()? {
            let value = map.next_value_seed(ScanSeed {
                state: &mut *self.state,
            })?;
            match (key, value) {
                (Key::Placeholder, Scanned::True) => is_placeholder = true,
                (Key::Num, value) => num = Some(value),
                _ => {}
            }
        }
        if is_placeholder {
            let index = match num {
                Some(Scanned::Integer(n)) => usize::try_from(n)
                    .ok()
                    .filter(|n| *n < self.state.attachments),
                _ => None,
            };
            let Some(index) = index else {
                self.state.error = Some(BinaryError::PlaceholderOutOfRange);
                return Err(de::Error::custom("placeholder out of range"));
            };
            match self.state.seen.get_mut(index) {
                Some(seen) if !*seen => *seen = true,
                _ => {
                    self.state.error = Some(BinaryError::RepeatedPlaceholder(index));
                    return Err(de::Error::custom("repeated placeholder"));
                }
            }
        }
        Ok(Scanned::Other)
    }
}

#[cfg(test)]
mod tests;
