//! Channel (Redis) and subject (NATS) names: the same names on both
//! brokers, room names in unpadded base64url.

use base64::Engine as _;
use chito::rooms::NodeId;

/// Channel names of one namespace.
pub(crate) struct Channels {
    prefix: String,
}

impl Channels {
    pub(crate) fn new(namespace: &str) -> Self {
        Channels {
            prefix: format!("chito.{namespace}."),
        }
    }

    /// `chito.<ns>.room.<base64url(room)>`, `_` for the empty name (which
    /// base64 would make an empty, invalid, NATS token; every other name
    /// encodes to two characters or more).
    pub(crate) fn room(&self, room: &str) -> String {
        let token = if room.is_empty() {
            "_".to_owned()
        } else {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(room)
        };
        format!("{}room.{token}", self.prefix)
    }

    /// `chito.<ns>.room.>`: every room subject (NATS wildcard).
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn rooms_wildcard(&self) -> String {
        format!("{}room.>", self.prefix)
    }

    pub(crate) fn all(&self) -> String {
        format!("{}all", self.prefix)
    }

    pub(crate) fn node(&self, node: NodeId) -> String {
        format!("{}node.{node}", self.prefix)
    }

    pub(crate) fn presence(&self) -> String {
        format!("{}presence", self.prefix)
    }
}
