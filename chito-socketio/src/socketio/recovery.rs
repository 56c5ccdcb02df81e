//! Connection state recovery (docs/socketio.md §7; the semantics of
//! socket.io ≥ 4.6 with its in-memory `SessionAwareAdapter`): a client
//! whose connection broke comes back within a bounded time with its
//! private session id (`pid`) and the offset of the last event it got; it
//! gets its socket id and rooms back and every event it missed, in order.
//!
//! Sans-IO: every operation takes the time as an argument (the callers
//! pass `Instant::now()`), so the rules are tested with stepped time.
//! The interface is narrow so the emit paths can change around it:
//!
//! - [`NamespaceRecovery::log`]: one emit's encoded text and attachments,
//!   and its [`Selection`] (target rooms and sockets, except rooms and
//!   sockets): the offset is spliced in once and the entry is kept;
//! - [`NamespaceRecovery::persist`] / [`NamespaceRecovery::take_session`]:
//!   a session's id and rooms, by its `pid`;
//! - [`NamespaceRecovery::missed`]: the logged packets after an offset
//!   that a session's selection matches.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::engineio::SidGenerator;

/// Connection state recovery's settings (off unless given to
/// [`SocketIoBuilder::connection_state_recovery`](super::SocketIoBuilder::connection_state_recovery)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryConfig {
    /// How long a disconnected session and the logged events are kept
    /// (`maxDisconnectionDuration`, 120 000 ms).
    pub max_disconnection_duration: Duration,
    /// Whether a recovered socket skips the connect middlewares
    /// (`skipMiddlewares`, true).
    pub skip_middlewares: bool,
    /// The most bytes of logged events kept per namespace, oldest dropped
    /// first (ours, 16 MiB; JS bounds the log by time only).
    pub max_log_bytes: usize,
    /// The most disconnected sessions kept per namespace, oldest dropped
    /// first (ours, 100 000; JS keeps every one for the duration).
    pub max_sessions: usize,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        Self {
            max_disconnection_duration: Duration::from_millis(120_000),
            skip_middlewares: true,
            max_log_bytes: 16 * 1024 * 1024,
            max_sessions: 100_000,
        }
    }
}

/// What every namespace of one server shares: the settings, the offset
/// epoch and sequence, the `pid` generator.
pub(crate) struct Recovery {
    config: RecoveryConfig,
    /// Random per server: offsets of an earlier process (or another server
    /// in this one) never name an entry of this log.
    epoch: u32,
    /// The last sequence number given out (the first is 1).
    seq: AtomicU64,
    /// `pid`s: 16 random bytes, base64url, like Engine.IO sids (secret:
    /// whoever shows one takes the session over).
    pids: SidGenerator,
}

impl fmt::Debug for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recovery")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Recovery {
    pub(crate) fn new(config: RecoveryConfig) -> Arc<Self> {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u8(0);
        Arc::new(Self {
            config,
            // 32 random bits: 8 hex digits.
            epoch: hasher.finish() as u32,
            seq: AtomicU64::new(0),
            pids: SidGenerator::new(),
        })
    }

    pub(crate) fn config(&self) -> &RecoveryConfig {
        &self.config
    }

    /// A new private session id.
    pub(crate) fn next_pid(&self) -> Arc<str> {
        Arc::from(self.pids.next_sid().as_str())
    }
}

/// An offset: `<epoch>-<seq>`, the epoch as 8 lowercase hex digits, the
/// sequence in base 36 (short: the client sends it back on every
/// reconnection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Offset {
    epoch: u32,
    seq: u64,
}

/// u64::MAX in base 36 has 13 digits.
const MAX_SEQ_DIGITS: usize = 13;

impl Offset {
    fn parse(text: &str) -> Option<Self> {
        let (epoch, seq) = text.split_once('-')?;
        let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if epoch.len() != 8 || !epoch.bytes().all(hex) {
            return None;
        }
        let base36 = |b: u8| b.is_ascii_digit() || b.is_ascii_lowercase();
        if seq.is_empty() || seq.len() > MAX_SEQ_DIGITS || !seq.bytes().all(base36) {
            return None;
        }
        Some(Self {
            epoch: u32::from_str_radix(epoch, 16).ok()?,
            seq: u64::from_str_radix(seq, 36).ok()?,
        })
    }

    /// Appends the offset as a JSON string.
    fn write_json(&self, buf: &mut String) {
        use std::fmt::Write as _;
        let _ = write!(buf, "\"{:08x}-", self.epoch);
        let mut digits = [0u8; MAX_SEQ_DIGITS];
        let mut at = digits.len();
        let mut rest = self.seq;
        loop {
            at -= 1;
            let digit = (rest % 36) as u8;
            digits[at] = if digit < 10 {
                b'0' + digit
            } else {
                b'a' + digit - 10
            };
            rest /= 36;
            if rest == 0 {
                break;
            }
        }
        for &digit in &digits[at..] {
            buf.push(char::from(digit));
        }
        buf.push('"');
    }
}

/// Whom one emit went to: socket.io's `BroadcastOptions` (`rooms`,
/// `except`) with the socket ids apart, as our socket ids are not rooms.
/// No target room and no target socket: the whole namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Selection {
    pub(crate) rooms: Vec<String>,
    pub(crate) sockets: Vec<Arc<str>>,
    pub(crate) except_rooms: Vec<String>,
    pub(crate) except_sockets: Vec<Arc<str>>,
}

impl Selection {
    /// One socket (`socket.emit`).
    pub(crate) fn socket(id: Arc<str>) -> Self {
        Self {
            sockets: vec![id],
            ..Self::default()
        }
    }

    /// Whether the session `id`, in `rooms`, was among the recipients:
    /// socket.io-adapter's `shouldIncludePacket`, with socket ids apart.
    fn matches(&self, id: &str, rooms: &[String]) -> bool {
        let in_room = |names: &[String]| rooms.iter().any(|room| names.contains(room));
        let included = (self.rooms.is_empty() && self.sockets.is_empty())
            || in_room(&self.rooms)
            || self.sockets.iter().any(|socket| &**socket == id);
        let excluded =
            in_room(&self.except_rooms) || self.except_sockets.iter().any(|socket| &**socket == id);
        included && !excluded
    }

    fn bytes(&self) -> usize {
        let rooms: usize = self
            .rooms
            .iter()
            .chain(&self.except_rooms)
            .map(String::len)
            .sum();
        let sockets: usize = self
            .sockets
            .iter()
            .chain(&self.except_sockets)
            .map(|id| id.len())
            .sum();
        rooms + sockets
    }
}

/// One emit's packet as sent: the text (without the Engine.IO `4`), its
/// attachments and, when logged, its sequence number. Shared by the log
/// and every delivery (clones are reference counts).
#[derive(Debug, Clone)]
pub(crate) struct LoggedPacket {
    /// `None`: not logged (the text did not end in its argument array).
    /// Read by the tests; delivery needs no sequence number, as emits and
    /// resumes are ordered by `NamespaceRecovery::ordered`.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) seq: Option<u64>,
    pub(crate) text: Arc<str>,
    pub(crate) attachments: Arc<[Bytes]>,
}

/// A log entry.
struct Entry {
    seq: u64,
    at: Instant,
    selection: Selection,
    packet: LoggedPacket,
    /// What the entry counts against `max_log_bytes`.
    cost: usize,
}

/// A disconnected socket kept for recovery.
#[derive(Debug)]
struct Session {
    sid: Arc<str>,
    rooms: Vec<String>,
    disconnected_at: Instant,
}

/// A session handed back by [`NamespaceRecovery::take_session`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Resumed {
    pub(crate) sid: Arc<str>,
    pub(crate) pid: Arc<str>,
    pub(crate) rooms: Vec<String>,
    /// The sequence number of the client's offset: what follows it is
    /// missed.
    pub(crate) after: u64,
}

/// The packets a resumed session missed.
#[derive(Debug)]
pub(crate) struct Missed {
    pub(crate) packets: Vec<LoggedPacket>,
}

#[derive(Default)]
struct State {
    log: VecDeque<Entry>,
    log_bytes: usize,
    /// The sequence number of the last entry logged (even if evicted).
    last_seq: u64,
    sessions: HashMap<Arc<str>, Session>,
    /// pids by disconnection time, oldest first; an entry whose session
    /// was taken (or replaced) is skipped when met.
    by_age: VecDeque<(Instant, Arc<str>)>,
}

/// One namespace's log and disconnected sessions (JS keeps them per
/// namespace adapter).
pub(crate) struct NamespaceRecovery {
    shared: Arc<Recovery>,
    state: Mutex<State>,
    /// Held across "log, then deliver" of each emit and across a resume's
    /// "join, take the missed packets, queue them": so a resumed socket
    /// gets each logged emit once, either replayed (logged before) or live
    /// (delivered after), never both and never neither.
    order: Mutex<()>,
}

impl fmt::Debug for NamespaceRecovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamespaceRecovery").finish_non_exhaustive()
    }
}

/// What an entry costs beyond its payload and selection.
const ENTRY_OVERHEAD: usize = std::mem::size_of::<Entry>();

impl NamespaceRecovery {
    pub(crate) fn new(shared: Arc<Recovery>) -> Self {
        Self {
            shared,
            state: Mutex::new(State::default()),
            order: Mutex::new(()),
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Recovery> {
        &self.shared
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Each change is a push or a pop; a panic elsewhere leaves it usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Holds back logged emits and resumes of this namespace while the
    /// guard lives (see `order`). Delivery does not call back into
    /// handlers (sessions report closes from their own tasks), so nothing
    /// under it takes it again.
    pub(crate) fn ordered(&self) -> MutexGuard<'_, ()> {
        self.order
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// [`log`](Self::log)s an emit and hands the packet to `send` before
    /// any other logged emit or resume of the namespace runs.
    pub(crate) fn log_and_send<R>(
        &self,
        text: String,
        attachments: Vec<Bytes>,
        selection: Selection,
        now: Instant,
        send: impl FnOnce(&LoggedPacket) -> R,
    ) -> R {
        let _ordered = self.ordered();
        let packet = self.log(text, attachments, selection, now);
        send(&packet)
    }

    /// Logs one emit of an EVENT without ack id: `text` is the encoded
    /// packet (without the Engine.IO `4`), ending in its argument array;
    /// its offset is appended as the last argument (`…]` → `…,"<off>"]`,
    /// which is how the client learns it: socket.io-client keeps the last
    /// string argument of each event as its offset). The returned packet
    /// is what every recipient gets.
    pub(crate) fn log(
        &self,
        mut text: String,
        attachments: Vec<Bytes>,
        selection: Selection,
        now: Instant,
    ) -> LoggedPacket {
        if !text.ends_with(']') {
            return LoggedPacket {
                seq: None,
                text: Arc::from(text),
                attachments: Arc::from(attachments),
            };
        }
        let attachment_bytes: usize = attachments.iter().map(Bytes::len).sum();
        let mut state = self.state();
        // Taken under the lock, so the log is in sequence order.
        let seq = self.shared.seq.fetch_add(1, Ordering::Relaxed) + 1;
        text.pop();
        // An empty array gets no comma (never from encode_event, whose
        // array starts with the event name).
        if !text.ends_with('[') {
            text.push(',');
        }
        Offset {
            epoch: self.shared.epoch,
            seq,
        }
        .write_json(&mut text);
        text.push(']');
        let packet = LoggedPacket {
            seq: Some(seq),
            text: Arc::from(text),
            attachments: Arc::from(attachments),
        };
        let cost = packet.text.len() + attachment_bytes + selection.bytes() + ENTRY_OVERHEAD;
        state.last_seq = seq;
        state.log_bytes += cost;
        state.log.push_back(Entry {
            seq,
            at: now,
            selection,
            packet: packet.clone(),
            cost,
        });
        self.evict_log(&mut state, now);
        packet
    }

    /// Drops entries older than the duration, then the oldest while the
    /// log is over its byte bound.
    fn evict_log(&self, state: &mut State, now: Instant) {
        let duration = self.shared.config.max_disconnection_duration;
        while let Some(front) = state.log.front() {
            let expired = now.saturating_duration_since(front.at) > duration;
            if !expired && state.log_bytes <= self.shared.config.max_log_bytes {
                break;
            }
            state.log_bytes -= front.cost;
            state.log.pop_front();
        }
    }

    /// Drops sessions older than the duration.
    fn evict_sessions(&self, state: &mut State, now: Instant) {
        let duration = self.shared.config.max_disconnection_duration;
        while let Some((at, _)) = state.by_age.front() {
            if now.saturating_duration_since(*at) <= duration {
                break;
            }
            self.drop_oldest_session(state);
        }
    }

    fn drop_oldest_session(&self, state: &mut State) {
        if let Some((at, pid)) = state.by_age.pop_front() {
            // Only if it is that session (not one taken and persisted
            // again since, which has its own later entry).
            if state
                .sessions
                .get(&pid)
                .is_some_and(|session| session.disconnected_at == at)
            {
                state.sessions.remove(&pid);
            }
        }
    }

    /// Keeps a socket gone for a recoverable reason: its `pid`, id and
    /// rooms (socket.io-adapter's `persistSession`).
    pub(crate) fn persist(&self, pid: Arc<str>, sid: Arc<str>, rooms: Vec<String>, now: Instant) {
        let max = self.shared.config.max_sessions;
        if max == 0 {
            return;
        }
        let mut state = self.state();
        self.evict_sessions(&mut state, now);
        // A namespace that stopped emitting still lets its old entries go.
        self.evict_log(&mut state, now);
        while state.sessions.len() >= max && !state.by_age.is_empty() {
            self.drop_oldest_session(&mut state);
        }
        state.by_age.push_back((now, Arc::clone(&pid)));
        state.sessions.insert(
            pid,
            Session {
                sid,
                rooms,
                disconnected_at: now,
            },
        );
        // by_age also holds the entries of sessions taken since; past
        // twice the bound they are swept out (amortized: at least `max`
        // stale entries go each time), so it stays within that.
        if state.by_age.len() > max.saturating_mul(2) {
            let State {
                by_age, sessions, ..
            } = &mut *state;
            by_age.retain(|(at, pid)| {
                sessions
                    .get(pid)
                    .is_some_and(|session| session.disconnected_at == *at)
            });
        }
    }

    /// The session `pid`, if it is kept, no older than the duration, and
    /// `offset` names an entry still in this namespace's log
    /// (socket.io-adapter's `restoreSession`). The session is taken: a
    /// `pid` resumes once (JS keeps it until it expires; a second use
    /// could only be a copy of the secret).
    pub(crate) fn take_session(&self, pid: &str, offset: &str, now: Instant) -> Option<Resumed> {
        let offset = Offset::parse(offset)?;
        if offset.epoch != self.shared.epoch {
            return None;
        }
        let mut state = self.state();
        self.evict_sessions(&mut state, now);
        self.evict_log(&mut state, now);
        let (pid, session) = state.sessions.remove_entry(pid)?;
        let logged = state
            .log
            .binary_search_by_key(&offset.seq, |entry| entry.seq)
            .is_ok();
        if !logged {
            // The session stays: an offset that was never ours does not
            // consume it (a later, valid offset may still come). A wrong
            // pid never reaches here.
            state.sessions.insert(pid, session);
            return None;
        }
        Some(Resumed {
            sid: session.sid,
            pid,
            rooms: session.rooms,
            after: offset.seq,
        })
    }

    /// The logged packets after `after` that the session `sid` in `rooms`
    /// was selected for, in order.
    pub(crate) fn missed(&self, sid: &str, rooms: &[String], after: u64) -> Missed {
        let state = self.state();
        let start = state.log.partition_point(|entry| entry.seq <= after);
        let packets = state
            .log
            .range(start..)
            .filter(|entry| entry.selection.matches(sid, rooms))
            .map(|entry| entry.packet.clone())
            .collect();
        Missed { packets }
    }

    #[cfg(test)]
    fn log_len(&self) -> (usize, usize) {
        let state = self.state();
        (state.log.len(), state.log_bytes)
    }

    #[cfg(test)]
    fn session_count(&self) -> usize {
        self.state().sessions.len()
    }
}

/// A CONNECT's `pid` and `offset` (socket.io-client adds them to the auth
/// once it has a session and has received an event).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) pid: String,
    pub(crate) offset: String,
}

/// Splits a CONNECT's auth into the credentials (when both `pid` and
/// `offset` are strings) and the auth the application sees, without them:
/// they are the client library's, and `pid` is a secret that
/// `handshake().auth` must not hand to application code (JS leaves them
/// in). An auth that is not an object, or has neither key, is returned as
/// it came.
pub(crate) fn split_auth(auth: Box<RawValue>) -> (Box<RawValue>, Option<Credentials>) {
    let text = auth.get();
    // Most CONNECTs have neither key: no parse.
    if !text.contains("pid") && !text.contains("offset") {
        return (auth, None);
    }
    let Ok(Members(members)) = serde_json::from_str::<Members>(text) else {
        return (auth, None);
    };
    let is_credential = |key: &str| key == "pid" || key == "offset";
    if !members.iter().any(|(key, _)| is_credential(key)) {
        return (auth, None);
    }
    // The last of a repeated key wins, as with JSON.parse.
    let string_of = |name: &str| {
        members
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| serde_json::from_str::<String>(value.get()).ok())
    };
    let credentials = match (string_of("pid"), string_of("offset")) {
        (Some(pid), Some(offset)) => Some(Credentials { pid, offset }),
        _ => None,
    };
    let mut rest = String::with_capacity(text.len());
    rest.push('{');
    for (key, value) in members.iter().filter(|(key, _)| !is_credential(key)) {
        if rest.len() > 1 {
            rest.push(',');
        }
        // A key serializes (it came from JSON as a string).
        if let Ok(key) = serde_json::to_string(key) {
            rest.push_str(&key);
        }
        rest.push(':');
        rest.push_str(value.get());
    }
    rest.push('}');
    match RawValue::from_string(rest) {
        Ok(rest) => (rest, credentials),
        Err(_) => (auth, credentials),
    }
}

/// A JSON object's members in their order, values as raw JSON.
struct Members(Vec<(String, Box<RawValue>)>);

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, Box<RawValue>>()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RecoveryConfig {
        RecoveryConfig {
            max_disconnection_duration: Duration::from_secs(120),
            skip_middlewares: true,
            max_log_bytes: 1 << 20,
            max_sessions: 100,
        }
    }

    fn namespace(config: RecoveryConfig) -> NamespaceRecovery {
        NamespaceRecovery::new(Recovery::new(config))
    }

    fn to_room(room: &str) -> Selection {
        Selection {
            rooms: vec![room.to_owned()],
            ..Selection::default()
        }
    }

    fn event(name: &str) -> String {
        format!("2[\"{name}\",1]")
    }

    /// The offset a logged packet ends with, as the client reads it.
    fn offset_of(packet: &LoggedPacket) -> String {
        let args: Vec<serde_json::Value> =
            serde_json::from_str(packet.text.get(1..).unwrap()).unwrap();
        args.last().unwrap().as_str().unwrap().to_owned()
    }

    fn names(missed: &Missed) -> Vec<String> {
        missed
            .packets
            .iter()
            .map(|packet| {
                let args: Vec<serde_json::Value> =
                    serde_json::from_str(packet.text.get(1..).unwrap()).unwrap();
                args[0].as_str().unwrap().to_owned()
            })
            .collect()
    }

    #[test]
    fn offsets_are_spliced_as_the_last_argument_once_per_emit() {
        let ns = namespace(config());
        let now = Instant::now();
        let first = ns.log(event("a"), vec![], to_room("r"), now);
        let second = ns.log("2/chat,[\"b\"]".to_owned(), vec![], to_room("r"), now);
        let epoch = format!("{:08x}", ns.shared.epoch);
        assert_eq!(offset_of(&first), format!("{epoch}-1"));
        assert_eq!(&*second.text, format!("2/chat,[\"b\",\"{epoch}-2\"]"));
        assert_eq!(first.seq, Some(1));
        assert_eq!(ns.log_len().0, 2);
        // Not an argument array: sent as is, not logged.
        let odd = ns.log("2x".to_owned(), vec![], to_room("r"), now);
        assert_eq!((odd.seq, &*odd.text), (None, "2x"));
        assert_eq!(ns.log_len().0, 2);
    }

    #[test]
    fn offsets_round_trip_and_bad_ones_are_refused() {
        for seq in [0, 1, 35, 36, 1_295, 1_296, u64::MAX] {
            let offset = Offset {
                epoch: 0xdead_beef,
                seq,
            };
            let mut json = String::new();
            offset.write_json(&mut json);
            let text: String = serde_json::from_str(&json).unwrap();
            assert_eq!(Offset::parse(&text), Some(offset), "{text}");
        }
        let mut json = String::new();
        Offset { epoch: 7, seq: 36 }.write_json(&mut json);
        assert_eq!(json, "\"00000007-10\"");
        for bad in [
            "",
            "-",
            "deadbeef",
            "deadbeef-",
            "deadbee-1",
            "deadbeeff-1",
            "DEADBEEF-1",
            "deadbeef-A",
            "deadbeef-+1",
            "deadbeef-1-2",
            "deadbeef-3w5e11264sgsg",
            "deadbeef-zzzzzzzzzzzzzz",
            "gggggggg-1",
        ] {
            assert_eq!(Offset::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_session_resumes_with_what_its_selection_missed_in_order() {
        let ns = namespace(config());
        let t0 = Instant::now();
        let seen = ns.log(event("seen"), vec![], to_room("r"), t0);
        let pid = ns.shared.next_pid();
        let sid: Arc<str> = Arc::from("sid-1");
        ns.persist(Arc::clone(&pid), Arc::clone(&sid), vec!["r".into()], t0);
        let t1 = t0 + Duration::from_secs(1);
        ns.log(event("one"), vec![], to_room("r"), t1);
        ns.log(event("other-room"), vec![], to_room("s"), t1);
        ns.log(event("two"), vec![], Selection::default(), t1);
        ns.log(
            event("excluded"),
            vec![],
            Selection {
                except_rooms: vec!["r".into()],
                ..Selection::default()
            },
            t1,
        );
        ns.log(
            event("not-me"),
            vec![],
            Selection {
                except_sockets: vec![Arc::clone(&sid)],
                ..Selection::default()
            },
            t1,
        );
        ns.log(
            event("three"),
            vec![],
            Selection::socket(Arc::clone(&sid)),
            t1,
        );
        ns.log(event("someone"), vec![], Selection::socket("x".into()), t1);

        let t2 = t0 + Duration::from_secs(60);
        let resumed = ns.take_session(&pid, &offset_of(&seen), t2).unwrap();
        assert_eq!(resumed.sid, sid);
        assert_eq!(resumed.pid, pid);
        assert_eq!(resumed.rooms, vec!["r".to_owned()]);
        let missed = ns.missed(&resumed.sid, &resumed.rooms, resumed.after);
        assert_eq!(names(&missed), ["one", "two", "three"]);
        // Taken: the same pid does not resume twice.
        assert_eq!(ns.take_session(&pid, &offset_of(&seen), t2), None);
    }

    #[test]
    fn the_missed_packets_share_the_logged_payload() {
        let ns = namespace(config());
        let now = Instant::now();
        let seen = ns.log(event("seen"), vec![], to_room("r"), now);
        let sent = ns.log(
            "51-[\"bin\",{\"_placeholder\":true,\"num\":0}]".to_owned(),
            vec![Bytes::from_static(b"\x01\x02")],
            to_room("r"),
            now,
        );
        let missed = ns.missed("s", &["r".into()], seen.seq.unwrap());
        assert_eq!(missed.packets.len(), 1);
        assert!(Arc::ptr_eq(&missed.packets[0].text, &sent.text));
        assert!(Arc::ptr_eq(
            &missed.packets[0].attachments,
            &sent.attachments
        ));
        assert!(sent.text.starts_with("51-[\"bin\",{\"_placeholder\""));
    }

    #[test]
    fn a_session_expires_after_the_duration() {
        let ns = namespace(config());
        let t0 = Instant::now();
        let seen = ns.log(event("seen"), vec![], to_room("r"), t0);
        let pid = ns.shared.next_pid();
        ns.persist(Arc::clone(&pid), "sid".into(), vec![], t0);
        let late = t0 + Duration::from_secs(121);
        assert_eq!(ns.take_session(&pid, &offset_of(&seen), late), None);
        assert_eq!(ns.session_count(), 0);
        // Exactly at the limit it still resumes.
        let ns = namespace(config());
        let seen = ns.log(event("seen"), vec![], to_room("r"), t0);
        ns.persist(Arc::clone(&pid), "sid".into(), vec![], t0);
        let edge = t0 + Duration::from_secs(120);
        assert!(ns.take_session(&pid, &offset_of(&seen), edge).is_some());
    }

    #[test]
    fn the_log_is_bounded_by_time_and_bytes() {
        let t0 = Instant::now();
        let ns = namespace(config());
        ns.log(event("old"), vec![], to_room("r"), t0);
        let t1 = t0 + Duration::from_secs(121);
        ns.log(event("new"), vec![], to_room("r"), t1);
        assert_eq!(ns.log_len().0, 1);
        // A disconnection alone sweeps the log too.
        let t2 = t1 + Duration::from_secs(121);
        ns.persist(ns.shared.next_pid(), "other".into(), vec![], t2);
        assert_eq!(ns.log_len(), (0, 0));

        let small = RecoveryConfig {
            max_log_bytes: 3 * (ENTRY_OVERHEAD + 20),
            ..config()
        };
        let ns = namespace(small.clone());
        let old = ns.log(event("old"), vec![], to_room("r"), t0);
        let pid = ns.shared.next_pid();
        ns.persist(Arc::clone(&pid), "sid".into(), vec!["r".into()], t0);
        for _ in 0..10 {
            ns.log(event("e"), vec![], to_room("r"), t0);
        }
        let (entries, bytes) = ns.log_len();
        assert!(bytes <= small.max_log_bytes, "{bytes}");
        assert!((1..10).contains(&entries), "{entries}");
        // The session is young, but the entry its offset names is gone:
        // what it missed cannot be known, so it does not resume.
        assert_eq!(ns.take_session(&pid, &offset_of(&old), t0), None);
        // An entry larger than the bound alone is not kept at all.
        ns.log(
            event("big"),
            vec![Bytes::from(vec![0u8; small.max_log_bytes])],
            to_room("r"),
            t0,
        );
        assert_eq!(ns.log_len(), (0, 0));
    }

    #[test]
    fn an_offset_out_of_the_log_or_of_another_epoch_does_not_resume() {
        let ns = namespace(config());
        let now = Instant::now();
        let seen = ns.log(event("seen"), vec![], to_room("r"), now);
        let pid = ns.shared.next_pid();
        ns.persist(Arc::clone(&pid), "sid".into(), vec![], now);
        let epoch = ns.shared.epoch;
        let other_epoch = format!("{:08x}-1", epoch.wrapping_add(1));
        let not_logged = format!("{epoch:08x}-2");
        for offset in [other_epoch.as_str(), &not_logged, "garbage", "", "\u{0}"] {
            assert_eq!(ns.take_session(&pid, offset, now), None, "{offset:?}");
        }
        // A bad offset did not consume the session; a wrong pid finds none.
        assert_eq!(ns.take_session("nope", &offset_of(&seen), now), None);
        assert!(ns.take_session(&pid, &offset_of(&seen), now).is_some());
        // Another server's offsets (another epoch) never match.
        let other = namespace(config());
        other.persist(Arc::clone(&pid), "sid".into(), vec![], now);
        other.log(event("x"), vec![], to_room("r"), now);
        if other.shared.epoch != epoch {
            assert_eq!(other.take_session(&pid, &offset_of(&seen), now), None);
        }
    }

    #[test]
    fn sessions_are_bounded_oldest_first() {
        let ns = namespace(RecoveryConfig {
            max_sessions: 3,
            ..config()
        });
        let t0 = Instant::now();
        let seen = ns.log(event("seen"), vec![], to_room("r"), t0);
        let pids: Vec<Arc<str>> = (0..5).map(|_| ns.shared.next_pid()).collect();
        for (i, pid) in pids.iter().enumerate() {
            let at = t0 + Duration::from_millis(i as u64);
            ns.persist(Arc::clone(pid), format!("sid{i}").into(), vec![], at);
        }
        assert_eq!(ns.session_count(), 3);
        let now = t0 + Duration::from_secs(1);
        let offset = offset_of(&seen);
        assert_eq!(ns.take_session(&pids[0], &offset, now), None);
        assert_eq!(ns.take_session(&pids[1], &offset, now), None);
        let kept = ns.take_session(&pids[4], &offset, now).unwrap();
        assert_eq!(&*kept.sid, "sid4");
        // Taking and persisting again many times keeps the age queue bounded.
        for i in 0..100 {
            let at = now + Duration::from_millis(i);
            ns.persist(Arc::clone(&pids[4]), "sid4".into(), vec![], at);
            ns.take_session(&pids[4], &offset, at).unwrap();
        }
        assert!(ns.state().by_age.len() <= 6);
        assert!(ns.take_session(&pids[2], &offset, now).is_some());
    }

    #[test]
    fn no_sessions_are_kept_when_the_bound_is_zero() {
        let ns = namespace(RecoveryConfig {
            max_sessions: 0,
            ..config()
        });
        ns.persist(ns.shared.next_pid(), "sid".into(), vec![], Instant::now());
        assert_eq!(ns.session_count(), 0);
    }

    #[test]
    fn pids_are_22_url_safe_chars_and_distinct() {
        let shared = Recovery::new(config());
        let a = shared.next_pid();
        let b = shared.next_pid();
        assert_ne!(a, b);
        assert_eq!(a.len(), 22);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn the_auth_loses_the_credentials_and_keeps_the_rest_in_order() {
        let (rest, credentials) = split_auth(raw(
            r#"{"token":"t","pid":"p","z":[1,{"a":2}],"offset":"o"}"#,
        ));
        assert_eq!(rest.get(), r#"{"token":"t","z":[1,{"a":2}]}"#);
        assert_eq!(
            credentials,
            Some(Credentials {
                pid: "p".into(),
                offset: "o".into()
            })
        );
        // Only a pid, or not strings: stripped, no credentials.
        let (rest, credentials) = split_auth(raw(r#"{"pid":"p"}"#));
        assert_eq!((rest.get(), credentials), ("{}", None));
        let (rest, credentials) = split_auth(raw(r#"{"pid":1,"offset":null,"k":"v"}"#));
        assert_eq!((rest.get(), credentials), (r#"{"k":"v"}"#, None));
        // The last of a repeated key wins.
        let (_, credentials) = split_auth(raw(r#"{"pid":"a","offset":"o","pid":"b"}"#));
        assert_eq!(credentials.unwrap().pid, "b");
        // Escaped keys are written back escaped.
        let (rest, _) = split_auth(raw(r#"{"q\"uote":1,"pid":"p"}"#));
        assert_eq!(rest.get(), r#"{"q\"uote":1}"#);
    }

    #[test]
    fn other_auths_are_returned_as_they_came() {
        for text in [
            r#"{"token":"pid"}"#,
            r#"{"a":1}"#,
            r#"["pid","offset"]"#,
            r#""pid""#,
            "null",
            r#"{ "spaced" : "pidx" }"#,
        ] {
            let (rest, credentials) = split_auth(raw(text));
            assert_eq!(rest.get(), text);
            assert_eq!(credentials, None);
        }
    }

    #[test]
    fn garbage_credentials_never_panic() {
        let ns = namespace(config());
        let now = Instant::now();
        ns.log(event("seen"), vec![], to_room("r"), now);
        ns.persist(ns.shared.next_pid(), "sid".into(), vec![], now);
        let huge = "x".repeat(1 << 16);
        for (pid, offset) in [
            ("", ""),
            (huge.as_str(), huge.as_str()),
            ("\u{ffff}", "ffffffff-zzzzzzzzzzzzz"),
            ("p", "00000000-0"),
            ("p", "-"),
        ] {
            assert_eq!(ns.take_session(pid, offset, now), None);
        }
        assert_eq!(ns.session_count(), 1);
    }
}
