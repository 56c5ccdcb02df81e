//! The sans-IO Engine.IO v4 session (docs/socketio.md §2): packets in,
//! packets out, time passed in. No I/O and no clock read: the caller owns
//! the transports and the timer, and asks [`Session::poll_timeout`] when to
//! call [`Session::handle_timeout`].

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use super::config::{EngineConfig, QueueOverflow};
use super::packet::{decode_text, Outgoing, Packet, PacketType};
use super::payload::{decode_payload, take_response_body, PayloadError, PayloadPacket};
use super::query::{RequestError, TransportKind};
use super::sid::Sid;
use super::upgrade::{Probe, ProbeStatus, UpgradeRefusal, UpgradeSlot};

/// Why a session closed: the reference server's reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed (a `1` packet, or its WebSocket went away).
    TransportClose,
    /// The client broke a transport rule (overlapping GET or POST, a
    /// ping from the client, a body too large).
    TransportError,
    /// No pong within `pingTimeout` of a ping.
    PingTimeout,
    /// A packet did not decode.
    ParseError,
    /// The application closed the session.
    ForcedClose,
    /// The server is shutting down.
    ServerShutdown,
}

impl CloseReason {
    /// The reason's text, as the reference server names it.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::TransportClose => "transport close",
            CloseReason::TransportError => "transport error",
            CloseReason::PingTimeout => "ping timeout",
            CloseReason::ParseError => "parse error",
            CloseReason::ForcedClose => "forced close",
            CloseReason::ServerShutdown => "server shutting down",
        }
    }
}

/// What the application learns from a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineEvent {
    /// A text message (the data of a `4` packet).
    Text(String),
    /// A binary message.
    Binary(Bytes),
    /// The session moved from polling to WebSocket.
    Upgraded,
    /// The session closed; reported exactly once, last.
    Closed(CloseReason),
}

/// How to answer a polling GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetAction {
    /// Answer 200 with this body now.
    Respond(Bytes),
    /// Hold the request; [`Session::take_poll_body`] gives its body later.
    Park,
    /// Answer with this error (the session may have closed).
    Reject(RequestError),
}

/// Why a POST body was refused: the HTTP status to answer with. The
/// session is closed in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostError {
    /// 400 with this JSON error (unknown session, second POST, ...).
    Request(RequestError),
    /// 400: the body does not parse (`parse error`).
    BadPayload,
    /// 413: the body is larger than `maxPayload`.
    TooLarge,
}

/// Why a message was not queued for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The session is closed (or closing).
    Closed,
    /// The queue is full ([`QueueOverflow::Reject`]): this message was not
    /// queued; the session goes on.
    Full,
    /// The queue was full and the session is now closed as a slow
    /// consumer ([`QueueOverflow::CloseSession`]).
    ClosedSlowConsumer,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SendError::Closed => "session closed",
            SendError::Full => "session queue full",
            SendError::ClosedSlowConsumer => "session queue full: closed as a slow consumer",
        })
    }
}

impl std::error::Error for SendError {}

/// What one queued packet counts against `max_queued_bytes`: its size in
/// the form its transport writes (base64 on polling, raw on WebSocket).
fn queued_cost(transport: TransportKind, packet: &Outgoing) -> usize {
    match (transport, packet) {
        (TransportKind::Polling, packet) => packet.polling_len(),
        (TransportKind::WebSocket, packet) => packet.websocket_len(),
    }
}

/// One Engine.IO session.
#[derive(Debug)]
pub struct Session {
    sid: Sid,
    config: EngineConfig,
    transport: TransportKind,
    closed: Option<CloseReason>,
    /// Set once the session left polling through an upgrade: polling
    /// requests then get `Session ID unknown` (docs/socketio.md §3).
    upgraded_from_polling: bool,
    next_ping: Option<Instant>,
    pong_deadline: Option<Instant>,
    /// Packets for the next GET (polling, and polling while upgrading).
    polling_queue: VecDeque<Outgoing>,
    /// A GET is parked, waiting for [`Session::take_poll_body`].
    get_parked: bool,
    /// What the parked GET must answer regardless of the queue (`1` on a
    /// server close, `6` on a client close or an upgrade).
    parked_answer: Option<Bytes>,
    /// A GET that came after the probe waits until then for the upgrade
    /// (see [`Session::get_arrived`]).
    probed_get_until: Option<Instant>,
    /// The parked GET is answered with this error (the upgrade it waited
    /// for completed).
    parked_refusal: Option<RequestError>,
    post_in_flight: bool,
    /// Packets for the WebSocket transport.
    websocket_queue: VecDeque<Outgoing>,
    /// What the packets in `polling_queue` and `websocket_queue`, and those
    /// of the WebSocket write in flight, count against `max_queued_bytes`
    /// ([`queued_cost`]).
    queued_bytes: usize,
    /// A WebSocket write is in flight ([`Session::begin_websocket_write`]):
    /// engine.io's transport is not `writable` until it completes.
    websocket_writing: bool,
    /// What the packets of the write in flight count, freed when it
    /// completes ([`Session::websocket_write_done`]).
    in_flight_bytes: usize,
    /// Packets ever queued for, and taken by, the WebSocket (their
    /// sequence numbers, for the marks in `apart`).
    websocket_queued: u64,
    websocket_taken: u64,
    /// The sequence numbers of packets to be written apart
    /// ([`Session::try_send_apart`]), in order.
    apart: VecDeque<u64>,
    /// The write in flight ended at a packet sent apart: the transport
    /// pauses before the next.
    write_ended_apart: bool,
    /// The session was closed because its queue overflowed
    /// ([`QueueOverflow::CloseSession`]): its WebSocket closes with 1008.
    slow_consumer: bool,
    upgrade: UpgradeSlot,
    events: VecDeque<EngineEvent>,
    /// After the client's own `1` on polling with no GET parked: until
    /// then, one GET racing that POST still gets the `6` it would have
    /// got had it arrived first (clients send the two concurrently).
    close_noop_until: Option<Instant>,
}

/// How long a closed polling session still answers a GET racing the
/// client's close POST with `6` (the reference server, single-threaded,
/// sees them in arrival order; two requests on two connections may be
/// handled in either order here).
const CLOSE_NOOP_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a GET that came after the probe waits for the upgrade before
/// its noop (the reference server checks every 100 ms).
const PROBED_GET_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

const CLOSE_BODY: &[u8] = b"1";
const NOOP_BODY: &[u8] = b"6";

impl Session {
    /// A new session on `transport`, its open packet queued: the body of
    /// the handshake GET (answer it with [`Session::get_arrived`]) or the
    /// first WebSocket message ([`Session::poll_transmit`]).
    pub fn open(
        sid: Sid,
        transport: TransportKind,
        config: &EngineConfig,
        now: Instant,
    ) -> Session {
        let mut session = Session {
            sid,
            config: config.clone(),
            transport,
            closed: None,
            upgraded_from_polling: false,
            next_ping: Some(now + config.ping_interval),
            pong_deadline: None,
            polling_queue: VecDeque::new(),
            get_parked: false,
            parked_answer: None,
            probed_get_until: None,
            parked_refusal: None,
            post_in_flight: false,
            websocket_queue: VecDeque::new(),
            queued_bytes: 0,
            websocket_writing: false,
            in_flight_bytes: 0,
            websocket_queued: 0,
            websocket_taken: 0,
            apart: VecDeque::new(),
            write_ended_apart: false,
            slow_consumer: false,
            upgrade: UpgradeSlot::Idle,
            events: VecDeque::new(),
            close_noop_until: None,
        };
        let open = Outgoing::Text(session.open_packet());
        session.queue(open);
        session
    }

    /// The open packet: exactly the five keys of Engine.IO v4 "Handshake".
    /// `upgrades` lists `websocket` only on polling (nothing to upgrade to
    /// from a WebSocket).
    fn open_packet(&self) -> String {
        let upgrades = if self.transport == TransportKind::Polling && self.config.allow_upgrades {
            r#"["websocket"]"#
        } else {
            "[]"
        };
        format!(
            r#"0{{"sid":"{}","upgrades":{},"pingInterval":{},"pingTimeout":{},"maxPayload":{}}}"#,
            self.sid,
            upgrades,
            self.config.ping_interval.as_millis(),
            self.config.ping_timeout.as_millis(),
            self.config.max_payload
        )
    }

    /// The session's id.
    pub fn sid(&self) -> Sid {
        self.sid
    }

    /// The transport the session is on now.
    pub fn transport(&self) -> TransportKind {
        self.transport
    }

    /// Why the session closed, `None` while it is open.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.closed
    }

    /// Whether the session was closed as a slow consumer (its queue
    /// overflowed under [`QueueOverflow::CloseSession`]): the WebSocket
    /// close code is then 1008 (policy violation), as chito's own
    /// slow-consumer close.
    pub fn closed_as_slow_consumer(&self) -> bool {
        self.slow_consumer
    }

    /// The bytes of packets waiting for the client (what
    /// `max_queued_bytes` bounds).
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Whether the session is closed.
    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    /// Whether the session is closed and has nothing left to answer: its
    /// owner may forget it (requests naming it then get `Session ID
    /// unknown`).
    pub fn is_finished(&self) -> bool {
        self.closed.is_some() && self.close_noop_until.is_none()
    }

    // ---------------------------------------------------------------- input

    /// A WebSocket text message, or one packet of a polling body, on the
    /// session's own transport.
    pub fn recv_text(&mut self, text: &str, now: Instant) {
        match decode_text(text) {
            Ok(packet) => self.recv_packet(packet, now),
            Err(_) => self.close(CloseReason::ParseError),
        }
    }

    /// A binary message on the session's own transport.
    pub fn recv_binary(&mut self, data: Bytes) {
        if self.closed.is_none() {
            self.events.push_back(EngineEvent::Binary(data));
        }
    }

    fn recv_packet(&mut self, packet: Packet<'_>, now: Instant) {
        if self.closed.is_some() {
            return;
        }
        match packet.kind {
            PacketType::Message => self
                .events
                .push_back(EngineEvent::Text(packet.data.to_owned())),
            PacketType::Pong => {
                // Engine.IO v4 heartbeat: the pong ends the wait and the
                // next ping comes pingInterval later. A pong nobody asked
                // for changes nothing (it must not delay the next ping).
                if self.pong_deadline.take().is_some() {
                    self.next_ping = Some(now + self.config.ping_interval);
                }
            }
            PacketType::Close => {
                if self.transport == TransportKind::Polling && !self.get_parked {
                    self.close_noop_until = Some(now + CLOSE_NOOP_GRACE);
                }
                self.close(CloseReason::TransportClose);
            }
            PacketType::Noop => {}
            // Since v4 the server pings: a client ping outside the probe
            // is "invalid heartbeat direction" in the reference server.
            PacketType::Ping => self.close(CloseReason::TransportError),
            // The open packet is the server's; `5` belongs on the probing
            // WebSocket only.
            PacketType::Open | PacketType::Upgrade => self.close(CloseReason::ParseError),
        }
    }

    /// A polling GET arrived for this session. Runs due timers first, so
    /// a GET that comes after the pong deadline sees the session closed.
    pub fn get_arrived(&mut self, now: Instant) -> GetAction {
        self.handle_timeout(now);
        if self.close_noop_until.take().is_some() {
            return GetAction::Respond(Bytes::from_static(NOOP_BODY));
        }
        if let Some(error) = self.polling_refusal() {
            return GetAction::Reject(error);
        }
        if self.get_parked {
            // Engine.IO v4 polling: one GET at a time. The parked one is
            // answered `1` (close), the newcomer refused.
            self.close(CloseReason::TransportError);
            return GetAction::Reject(RequestError::BadRequest);
        }
        if self.upgrade.probed() {
            // The probe succeeded and the client's `5` may be on its way on
            // the WebSocket. The reference server, on one thread, sees the
            // two in the order they arrived; here they race on two
            // connections. So the GET waits up to PROBED_GET_WAIT (the
            // reference server's noop check interval) for the upgrade: if
            // it completes, this is a request after the upgrade (`Session
            // ID unknown`); if not, a noop ends it so the client can pause
            // polling and send `5`.
            self.get_parked = true;
            self.probed_get_until = Some(now + PROBED_GET_WAIT);
            return GetAction::Park;
        }
        match self.take_polling_body() {
            Some(body) => GetAction::Respond(body),
            None => {
                self.get_parked = true;
                GetAction::Park
            }
        }
    }

    /// The parked GET went away (the client disconnected; hyper dropped
    /// its response): the next GET is not an overlap.
    pub fn get_abandoned(&mut self) {
        self.get_parked = false;
        self.probed_get_until = None;
        self.parked_refusal = None;
    }

    /// The error the parked GET answers now, if it is refused: the
    /// upgrade it waited for after the probe completed (a request after the
    /// upgrade).
    pub fn take_poll_refusal(&mut self) -> Option<RequestError> {
        if !self.get_parked {
            return None;
        }
        let refusal = self.parked_refusal.take()?;
        self.get_parked = false;
        Some(refusal)
    }

    /// The body the parked GET answers now, if it has one: queued
    /// packets, or the `1`/`6` that ends it.
    pub fn take_poll_body(&mut self) -> Option<Bytes> {
        if !self.get_parked {
            return None;
        }
        if self.parked_refusal.is_some() {
            return None;
        }
        let body = if let Some(answer) = self.parked_answer.take() {
            answer
        } else if self.probed_get_until.is_some() && self.upgrade.probed() {
            // Waiting for the upgrade, or for its noop.
            return None;
        } else if self.upgrade.probed() {
            Bytes::from_static(NOOP_BODY)
        } else {
            self.probed_get_until = None;
            self.take_polling_body()?
        };
        self.get_parked = false;
        Some(body)
    }

    /// One GET response's worth of the polling queue, its bytes no longer
    /// counted.
    fn take_polling_body(&mut self) -> Option<Bytes> {
        let before = self.polling_queue.len();
        let body = take_response_body(&mut self.polling_queue, self.config.max_payload)?;
        // The body is the taken packets' polling forms joined by one
        // separator byte each: what they counted is the rest.
        let separators = before
            .saturating_sub(self.polling_queue.len())
            .saturating_sub(1);
        let taken = body.len().saturating_sub(separators);
        self.queued_bytes = self.queued_bytes.saturating_sub(taken);
        Some(body)
    }

    /// Counts the queues again (after packets moved between them).
    fn recount_queued(&mut self) {
        let polling: usize = self
            .polling_queue
            .iter()
            .map(|packet| queued_cost(TransportKind::Polling, packet))
            .sum();
        let websocket: usize = self
            .websocket_queue
            .iter()
            .map(|packet| queued_cost(TransportKind::WebSocket, packet))
            .sum();
        self.queued_bytes = polling
            .saturating_add(websocket)
            .saturating_add(self.in_flight_bytes);
    }

    /// A polling POST arrived (before its body is read): only one may be
    /// in flight (Engine.IO v4 polling).
    pub fn post_begin(&mut self) -> Result<(), PostError> {
        if let Some(error) = self.polling_refusal() {
            return Err(PostError::Request(error));
        }
        if self.post_in_flight {
            self.close(CloseReason::TransportError);
            return Err(PostError::Request(RequestError::BadRequest));
        }
        self.post_in_flight = true;
        Ok(())
    }

    /// The POST's whole body. Answer 200 `ok` on success.
    pub fn post_body(&mut self, body: &[u8], now: Instant) -> Result<(), PostError> {
        self.post_in_flight = false;
        if self.closed.is_some() {
            return Err(PostError::Request(RequestError::UnknownSid));
        }
        let packets = match decode_payload(body, self.config.max_payload) {
            Ok(packets) => packets,
            Err(PayloadError::TooLarge) => {
                self.close(CloseReason::TransportError);
                return Err(PostError::TooLarge);
            }
            Err(PayloadError::Packet(_)) => {
                self.close(CloseReason::ParseError);
                return Err(PostError::BadPayload);
            }
        };
        for packet in packets {
            match packet {
                PayloadPacket::Text(packet) => self.recv_packet(packet, now),
                PayloadPacket::Binary(data) => self.recv_binary(data),
            }
        }
        Ok(())
    }

    /// The POST failed before its body was whole: too large for
    /// `maxPayload` (413), binary content (v4 polling is text), or a read
    /// error. The session closes (`transport error`).
    pub fn post_failed(&mut self) {
        self.post_in_flight = false;
        self.close(CloseReason::TransportError);
    }

    /// Why a polling request cannot be served, if it cannot.
    fn polling_refusal(&self) -> Option<RequestError> {
        if self.closed.is_some() || self.upgraded_from_polling {
            Some(RequestError::UnknownSid)
        } else if self.transport == TransportKind::WebSocket {
            Some(RequestError::BadRequest)
        } else {
            None
        }
    }

    // -------------------------------------------------------------- upgrade

    /// A WebSocket with this session's sid arrived: start probing.
    pub fn begin_upgrade(&mut self, now: Instant) -> Result<(), UpgradeRefusal> {
        if self.closed.is_some() {
            return Err(UpgradeRefusal::SessionClosed);
        }
        if self.transport == TransportKind::WebSocket
            || matches!(self.upgrade, UpgradeSlot::Probing(_))
        {
            return Err(UpgradeRefusal::AlreadyUpgraded);
        }
        if !self.config.allow_upgrades {
            return Err(UpgradeRefusal::NotAllowed);
        }
        self.upgrade = UpgradeSlot::Probing(Probe::new(now + self.config.upgrade_timeout));
        Ok(())
    }

    /// Where the upgrade stands (the probing WebSocket's driver reads it
    /// after every call).
    pub fn probe_status(&self) -> ProbeStatus {
        if self.closed.is_some() && matches!(self.upgrade, UpgradeSlot::Probing(_)) {
            return ProbeStatus::Failed;
        }
        self.upgrade.status()
    }

    /// A text message on the probing WebSocket.
    pub fn recv_probe_text(&mut self, text: &str, now: Instant) {
        if self.closed.is_some() {
            return;
        }
        let UpgradeSlot::Probing(probe) = &mut self.upgrade else {
            return;
        };
        match decode_text(text) {
            Ok(Packet {
                kind: PacketType::Ping,
                data: "probe",
            }) if !probe.probed => {
                probe.probed = true;
                probe
                    .outbox
                    .push_back(Outgoing::packet(PacketType::Pong, "probe"));
                if self.get_parked && self.parked_answer.is_none() {
                    // The reference server ends a pending GET with a noop at
                    // its next check (every 100 ms), so the client can pause
                    // polling and send `5`; the GET may also be one that
                    // raced the probe on another connection, sent after `5`
                    // (see `get_arrived`): it waits for the upgrade as a GET
                    // after the probe does.
                    self.probed_get_until = Some(now + PROBED_GET_WAIT);
                }
            }
            // The reference server completes on `5` whether or not the
            // probe came first.
            Ok(Packet {
                kind: PacketType::Upgrade,
                ..
            }) => self.complete_upgrade(),
            _ => self.upgrade = UpgradeSlot::Failed,
        }
    }

    /// A binary message on the probing WebSocket: not part of the probe.
    pub fn recv_probe_binary(&mut self) {
        if matches!(self.upgrade, UpgradeSlot::Probing(_)) {
            self.upgrade = UpgradeSlot::Failed;
        }
    }

    /// The probing WebSocket closed: the session stays on polling.
    pub fn probe_closed(&mut self) {
        if matches!(self.upgrade, UpgradeSlot::Probing(_)) {
            self.upgrade = UpgradeSlot::Failed;
        }
    }

    /// The next packet for the probing WebSocket (`3probe`).
    pub fn poll_probe_transmit(&mut self) -> Option<Outgoing> {
        match &mut self.upgrade {
            UpgradeSlot::Probing(probe) => probe.outbox.pop_front(),
            _ => None,
        }
    }

    fn complete_upgrade(&mut self) {
        let previous = std::mem::replace(&mut self.upgrade, UpgradeSlot::Completed);
        if let UpgradeSlot::Probing(probe) = previous {
            self.websocket_queued = self
                .websocket_queued
                .wrapping_add(probe.outbox.len() as u64);
            self.websocket_queue.extend(probe.outbox);
        }
        // What was queued for polling goes out first, in order, on the
        // WebSocket (docs/socketio.md §3, upgrade step 3).
        let moved = self.polling_queue.len() as u64;
        self.websocket_queue.extend(self.polling_queue.drain(..));
        self.websocket_queued = self.websocket_queued.wrapping_add(moved);
        self.recount_queued();
        self.transport = TransportKind::WebSocket;
        self.upgraded_from_polling = true;
        if self.get_parked {
            self.parked_answer = Some(Bytes::from_static(NOOP_BODY));
        }
        if self.get_parked && self.probed_get_until.take().is_some() {
            // A GET that came after the probe: it was a request after the
            // upgrade.
            self.parked_refusal = Some(RequestError::UnknownSid);
        }
        self.events.push_back(EngineEvent::Upgraded);
    }

    // --------------------------------------------------------------- output

    /// Queues a text message (`4` + text) for the client. Returns false
    /// when the session is closed.
    pub fn send_text(&mut self, text: &str) -> bool {
        self.send(Outgoing::message(text))
    }

    /// Queues a binary message for the client. Returns false when the
    /// session is closed.
    pub fn send_binary(&mut self, data: Bytes) -> bool {
        self.send(Outgoing::Binary(data))
    }

    /// Queues an encoded packet. Returns false when it was not queued
    /// ([`Session::try_send`] says why).
    pub fn send(&mut self, packet: Outgoing) -> bool {
        self.try_send(packet).is_ok()
    }

    /// Queues an encoded packet unless the session is closed or its queue
    /// would pass `max_queued_bytes`; then the `queue_overflow` policy
    /// applies (docs/socketio.md §9). A packet larger than the whole bound
    /// still goes into an empty queue, as in chito's `Handle`: the bound
    /// limits what piles up, not what may be sent (`maxPayload` does that).
    pub fn try_send(&mut self, packet: Outgoing) -> Result<(), SendError> {
        if self.closed.is_some() {
            return Err(SendError::Closed);
        }
        self.admit(queued_cost(self.transport, &packet))?;
        self.queue(packet);
        Ok(())
    }

    /// Queues `packets` together, in order, nothing between them (a
    /// Socket.IO packet and its attachments: the receiver takes the next N
    /// binary messages as the attachments), or none of them: the bound is
    /// checked against their sum, as [`Session::try_send`] does for one.
    pub fn try_send_all(&mut self, packets: &[Outgoing]) -> Result<(), SendError> {
        if self.closed.is_some() {
            return Err(SendError::Closed);
        }
        let cost = packets
            .iter()
            .map(|packet| queued_cost(self.transport, packet))
            .fold(0usize, usize::saturating_add);
        self.admit(cost)?;
        for packet in packets {
            self.queue(packet.clone());
        }
        Ok(())
    }

    /// Whether `cost` more bytes may be queued; if not, applies the
    /// `queue_overflow` policy.
    fn admit(&mut self, cost: usize) -> Result<(), SendError> {
        let fits = self.queued_bytes == 0
            || self.queued_bytes.saturating_add(cost) <= self.config.max_queued_bytes;
        if fits {
            return Ok(());
        }
        match self.config.queue_overflow {
            QueueOverflow::Reject => Err(SendError::Full),
            QueueOverflow::CloseSession => {
                self.slow_consumer = true;
                // What is queued would reach the client after a gap:
                // dropped, the client reconnects instead.
                self.websocket_queue.clear();
                self.apart.clear();
                self.close(CloseReason::TransportError);
                Err(SendError::ClosedSlowConsumer)
            }
        }
    }

    fn queue(&mut self, packet: Outgoing) {
        self.queued_bytes = self
            .queued_bytes
            .saturating_add(queued_cost(self.transport, &packet));
        match self.transport {
            TransportKind::Polling => self.polling_queue.push_back(packet),
            TransportKind::WebSocket => {
                self.websocket_queued = self.websocket_queued.wrapping_add(1);
                self.websocket_queue.push_back(packet);
            }
        }
    }

    /// Queues `packet` (as [`Session::try_send`]) to be written apart on a
    /// WebSocket: last in its write, and the transport pauses before the
    /// next ([`Session::websocket_pause_after_write`]). For the CONNECT
    /// answer: clients may change their listeners on it, and a client that
    /// reads it together with what follows (`ws` 8.5, the protocol suite's,
    /// emits every message of one read at once) would miss the rest.
    pub fn try_send_apart(&mut self, packet: Outgoing) -> Result<(), SendError> {
        self.try_send(packet)?;
        if self.transport == TransportKind::WebSocket {
            self.apart.push_back(self.websocket_queued);
        }
        Ok(())
    }

    /// Starts one WebSocket write of everything queued, if the transport
    /// is writable: engine.io writes a packet batch only once the previous
    /// write has completed (its WebSocket transport is not `writable` until
    /// the `ws` send callback; then `drain` flushes what piled up), so a
    /// packet queued while a write is in flight waits for the next one.
    /// Clients rely on it: the CONNECT answer and the connect handler's
    /// first emit reach the client in separate reads (`ws` 8.5, the
    /// protocol suite's, emits every message of one read at once, and a
    /// listener added after the first misses the second).
    ///
    /// True: take the packets with [`Session::poll_transmit`], hand them
    /// to the transport, and call [`Session::websocket_write_done`] once it
    /// has written them.
    pub fn begin_websocket_write(&mut self) -> bool {
        if self.transport != TransportKind::WebSocket
            || self.websocket_writing
            || self.websocket_queue.is_empty()
        {
            return false;
        }
        self.websocket_writing = true;
        true
    }

    /// Whether a WebSocket write is in flight.
    pub fn websocket_writing(&self) -> bool {
        self.websocket_writing
    }

    /// Whether the write in flight ended at a packet sent apart
    /// ([`Session::try_send_apart`]): the transport pauses after it.
    pub fn websocket_pause_after_write(&self) -> bool {
        self.websocket_writing && self.write_ended_apart
    }

    /// The WebSocket write in flight completed: its packets no longer
    /// count, and the next write may start.
    pub fn websocket_write_done(&mut self) {
        self.websocket_writing = false;
        self.write_ended_apart = false;
        self.queued_bytes = self.queued_bytes.saturating_sub(self.in_flight_bytes);
        self.in_flight_bytes = 0;
    }

    /// The next packet to write on the session's WebSocket. During a write
    /// ([`Session::begin_websocket_write`]) its bytes count until the write
    /// completes; otherwise they are freed at once.
    pub fn poll_transmit(&mut self) -> Option<Outgoing> {
        if self.transport != TransportKind::WebSocket {
            return None;
        }
        if self.websocket_writing && self.write_ended_apart {
            // The write ends at the packet sent apart.
            return None;
        }
        let packet = self.websocket_queue.pop_front()?;
        self.websocket_taken = self.websocket_taken.wrapping_add(1);
        if self.apart.front() == Some(&self.websocket_taken) {
            self.apart.pop_front();
            self.write_ended_apart = self.websocket_writing;
        }
        let cost = queued_cost(TransportKind::WebSocket, &packet);
        if self.websocket_writing {
            self.in_flight_bytes = self.in_flight_bytes.saturating_add(cost);
        } else {
            self.queued_bytes = self.queued_bytes.saturating_sub(cost);
        }
        Some(packet)
    }

    /// A packet [`Session::poll_transmit`] gave that the transport could
    /// not take now: first in line again for the next write.
    pub fn requeue_front(&mut self, packet: Outgoing) {
        if self.write_ended_apart {
            // It was the packet sent apart (the last one taken).
            self.write_ended_apart = false;
            self.apart.push_front(self.websocket_taken);
        }
        self.websocket_taken = self.websocket_taken.wrapping_sub(1);
        let cost = queued_cost(TransportKind::WebSocket, &packet);
        if self.websocket_writing {
            self.in_flight_bytes = self.in_flight_bytes.saturating_sub(cost);
        } else {
            self.queued_bytes = self.queued_bytes.saturating_add(cost);
        }
        self.websocket_queue.push_front(packet);
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<EngineEvent> {
        self.events.pop_front()
    }

    /// Closes the session. The first reason wins; a parked GET is answered
    /// `6` when the client closed and `1` otherwise (the reference
    /// server's polling transport does the same).
    pub fn close(&mut self, reason: CloseReason) {
        if self.closed.is_some() {
            return;
        }
        self.closed = Some(reason);
        self.next_ping = None;
        self.probed_get_until = None;
        self.pong_deadline = None;
        if self.get_parked && self.parked_answer.is_none() {
            self.parked_answer = Some(Bytes::from_static(
                if reason == CloseReason::TransportClose {
                    NOOP_BODY
                } else {
                    CLOSE_BODY
                },
            ));
        }
        if matches!(self.upgrade, UpgradeSlot::Probing(_)) {
            self.upgrade = UpgradeSlot::Failed;
        }
        self.polling_queue.clear();
        self.recount_queued();
        self.events.push_back(EngineEvent::Closed(reason));
    }

    // ----------------------------------------------------------------- time

    /// When [`Session::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed.is_some() {
            return self.close_noop_until;
        }
        [
            self.next_ping,
            self.pong_deadline,
            self.upgrade.deadline(),
            self.probed_get_until,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs whatever is due at `now`: the pong deadline (close with
    /// `ping timeout`), the next ping, the upgrade deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed.is_some() {
            if self.close_noop_until.is_some_and(|until| until <= now) {
                self.close_noop_until = None;
            }
            return;
        }
        if let Some(at) = self.next_ping.filter(|at| *at <= now) {
            // The pong deadline counts from when the ping was due, not
            // from when this call came: a late timer (or a GET arriving
            // before it) sees the session exactly as if the timer had run
            // on time — the client gets pingInterval + pingTimeout.
            self.next_ping = None;
            self.pong_deadline = Some(at + self.config.ping_timeout);
            self.queue(Outgoing::packet(PacketType::Ping, ""));
        }
        if self.pong_deadline.is_some_and(|deadline| deadline <= now) {
            self.close(CloseReason::PingTimeout);
            return;
        }
        if self.probed_get_until.is_some_and(|until| until <= now) {
            // No upgrade came: the noop ends the GET.
            self.probed_get_until = None;
        }
        if self
            .upgrade
            .deadline()
            .is_some_and(|deadline| deadline <= now)
        {
            self.upgrade = UpgradeSlot::Failed;
        }
    }
}

#[cfg(test)]
mod tests;
