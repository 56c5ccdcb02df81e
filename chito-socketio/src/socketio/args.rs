//! [`Args`]: the arguments of a received event or ack, kept as the
//! client's JSON text with the packet's attachments beside them
//! (docs/socketio.md §4: no JSON tree is built at decode; handlers
//! deserialize what they ask for).

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::ser::{Error as _, SerializeSeq, Serializer};
use serde::Serialize;
use serde_json::value::RawValue;

use super::binary;

/// The arguments of an event or an ack, as received.
///
/// Serializing an `Args` (as `emit_args`'s or `Ack::send`'s arguments)
/// sends them on exactly as they came, placeholders and attachments
/// included, so an echo is byte-exact (the suite's `message-back`).
#[derive(Debug, Clone, Default)]
pub struct Args {
    raw: Vec<Box<RawValue>>,
    attachments: Vec<Bytes>,
}

impl Args {
    pub(crate) fn new(raw: &[&RawValue], attachments: &[Bytes]) -> Self {
        Self {
            raw: raw.iter().map(|arg| (*arg).to_owned()).collect(),
            attachments: attachments.to_vec(),
        }
    }

    /// How many arguments there are.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Each argument's JSON text, as received.
    pub fn raw(&self) -> &[Box<RawValue>] {
        &self.raw
    }

    /// The binary attachments, `num` 0 first.
    pub fn attachments(&self) -> &[Bytes] {
        &self.attachments
    }

    /// Argument `index` as a `T`; a [`Binary`](super::binary::Binary)
    /// anywhere in `T` receives its attachment.
    pub fn get<T: DeserializeOwned>(&self, index: usize) -> Result<T, ArgsError> {
        let arg = self.raw.get(index).ok_or(ArgsError::Missing(index))?;
        binary::deserialize_with_attachments(&self.attachments, arg.get()).map_err(ArgsError::Json)
    }

    /// The first argument as a `T` (the usual one-argument event).
    pub fn first<T: DeserializeOwned>(&self) -> Result<T, ArgsError> {
        self.get(0)
    }

    /// All the arguments as one `T` read from their array (a tuple, a
    /// `Vec`, …).
    pub fn all<T: DeserializeOwned>(&self) -> Result<T, ArgsError> {
        let mut array = String::from("[");
        for (i, arg) in self.raw.iter().enumerate() {
            if i > 0 {
                array.push(',');
            }
            array.push_str(arg.get());
        }
        array.push(']');
        binary::deserialize_with_attachments(&self.attachments, &array).map_err(ArgsError::Json)
    }
}

impl Serialize for Args {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if !self.attachments.is_empty() {
            // The placeholders in the text are numbered from 0 by the
            // sender; they stay right only if these attachments are the
            // packet's first ones.
            match binary::forward_attachments(&self.attachments) {
                Some(0) => {}
                Some(_) => {
                    return Err(S::Error::custom(
                        "received binary arguments must be a packet's only attachments",
                    ))
                }
                None => {
                    return Err(S::Error::custom(
                        "binary arguments are sent only through socketio::binary's encoders",
                    ))
                }
            }
        }
        let mut seq = serializer.serialize_seq(Some(self.raw.len()))?;
        for arg in &self.raw {
            seq.serialize_element(arg)?;
        }
        seq.end()
    }
}

/// Why an argument could not be read.
#[derive(Debug)]
pub enum ArgsError {
    /// There is no argument at this index.
    Missing(usize),
    /// The argument is not a `T`.
    Json(serde_json::Error),
}

impl std::fmt::Display for ArgsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing(index) => write!(f, "no argument {index}"),
            Self::Json(e) => write!(f, "argument does not deserialize: {e}"),
        }
    }
}

impl std::error::Error for ArgsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Missing(_) => None,
            Self::Json(e) => Some(e),
        }
    }
}
