//! The probe sub-machine of the upgrade from polling to WebSocket
//! (Engine.IO v4, "Upgrade"; docs/socketio.md §3): the client opens a
//! WebSocket with the session's sid, sends `2probe`, the server answers
//! `3probe` on it and `6` (noop) to the pending GET, the client sends `5`
//! and the session moves to the WebSocket. Anything else on the probing
//! WebSocket, its close, or `upgradeTimeout` abandons the upgrade and the
//! session stays on polling.

use std::collections::VecDeque;
use std::time::Instant;

use super::packet::Outgoing;

/// Where an upgrade stands, for the task driving the probing WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeStatus {
    /// No upgrade was begun.
    Idle,
    /// Waiting for `2probe` or `5`; keep reading the probing WebSocket.
    Probing,
    /// The upgrade was abandoned (bad packet, timeout, session closed):
    /// close the probing WebSocket.
    Failed,
    /// `5` arrived: the probing WebSocket is now the session's transport.
    Completed,
}

/// Why a WebSocket carrying a session's sid cannot start an upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeRefusal {
    /// The session is closed: answer 400 `Session ID unknown`.
    SessionClosed,
    /// Upgrades are disabled: answer 400 `Bad request`.
    NotAllowed,
    /// The session is on WebSocket already, or another WebSocket is
    /// probing: accept the WebSocket and close it at once (the suites
    /// check that the first WebSocket keeps working).
    AlreadyUpgraded,
}

/// The probing WebSocket's state while an upgrade is under way.
#[derive(Debug)]
pub(crate) struct Probe {
    /// `2probe` was answered: every GET is now answered `6` at once.
    pub(crate) probed: bool,
    /// `upgradeTimeout` after the WebSocket arrived.
    pub(crate) deadline: Instant,
    /// Packets for the probing WebSocket (`3probe`).
    pub(crate) outbox: VecDeque<Outgoing>,
}

impl Probe {
    pub(crate) fn new(deadline: Instant) -> Probe {
        Probe {
            probed: false,
            deadline,
            outbox: VecDeque::new(),
        }
    }
}

/// The upgrade slot of a session.
#[derive(Debug)]
pub(crate) enum UpgradeSlot {
    Idle,
    Probing(Probe),
    Failed,
    Completed,
}

impl UpgradeSlot {
    pub(crate) fn status(&self) -> ProbeStatus {
        match self {
            UpgradeSlot::Idle => ProbeStatus::Idle,
            UpgradeSlot::Probing(_) => ProbeStatus::Probing,
            UpgradeSlot::Failed => ProbeStatus::Failed,
            UpgradeSlot::Completed => ProbeStatus::Completed,
        }
    }

    pub(crate) fn probed(&self) -> bool {
        matches!(self, UpgradeSlot::Probing(Probe { probed: true, .. }))
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self {
            UpgradeSlot::Probing(probe) => Some(probe.deadline),
            _ => None,
        }
    }
}
