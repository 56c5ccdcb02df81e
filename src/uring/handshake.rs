//! The opening handshake inside the loop (RFC 6455 §4.2): request bytes
//! from the provided buffers go into a [`ServerHandshake`]; a complete
//! request is refused (503 while shutting down, or by `accept_with`) or
//! accepted, and the answer is sent as an owned buffer (docs/uring.md §6.5).

use std::sync::Arc;

use crate::config::Config;
use crate::handshake::{Accept, Rejection, ServerHandshake, UpgradeRequest};

/// The application's hook on upgrade requests (`Server::accept_with`).
pub(super) type Inspect = dyn Fn(&UpgradeRequest) -> Result<Accept, Rejection> + Send + Sync;

/// A connection still reading its upgrade request.
/// (Its deadline, the handshake timeout, is the slot's.)
pub(super) struct Handshaking {
    pub(super) machine: ServerHandshake,
}

impl Handshaking {
    pub(super) fn new(config: &Config) -> Handshaking {
        Handshaking {
            machine: ServerHandshake::new(config),
        }
    }
}

/// What the server answers to a complete request: refused while shutting
/// down (503), else what the application's hook says (any valid upgrade
/// without a hook).
pub(super) fn decide(
    request: &UpgradeRequest,
    shutting_down: bool,
    inspect: Option<&Arc<Inspect>>,
) -> Result<Accept, Rejection> {
    if shutting_down {
        return Err(Rejection::new(503, "server shutting down"));
    }
    match inspect {
        Some(inspect) => inspect(request),
        None => Ok(Accept::default()),
    }
}
