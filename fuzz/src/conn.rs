//! The driver behind the `server_connection` and `client_connection`
//! targets: peer bytes, fed in arbitrary pieces, into a [`Connection`].
//!
//! Input layout (see the README):
//!
//! ```text
//! [FuzzConfig::BYTES config bytes][n][n × (op, size)][wire bytes ...]
//! ```
//!
//! `n` is taken modulo 17. The script of ops runs once; then its feed ops
//! repeat (cycling) until every wire byte has been delivered. Without feed
//! ops, the rest of the wire goes in one piece at the end.

use std::collections::VecDeque;

use arbitrary::{Arbitrary, Unstructured};
use chito::frame::{OpCode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use chito::{CloseCode, Connection, ConnectionError, Event, Message, OwnedEvent, Role, State};

use crate::{FuzzConfig, OutFrame, OutputChecker};

/// Flag bits (of [`FuzzConfig::flags`]) this driver reads.
const FLAG_KEEP_OUTPUT: u8 = 0x1; // never consume output unless an op says so
const FLAG_EOF: u8 = 0x2; // end with handle_eof()
const FLAG_LEFTOVER: u8 = 0x4; // first wire piece goes through with_negotiated
const FLAG_ECHO: u8 = 0x8; // echo every message; fuzzing builds send those of 16 bytes
                           // or more from the input buffer

/// Close codes our own `close` op picks from.
const CLOSE_CODES: [u16; 6] = [1000, 1001, 1008, 1011, 3000, 4999];

struct Driver {
    conn: Connection,
    fc: FuzzConfig,
    checker: OutputChecker,
    /// Bytes of pending output already checked.
    checked: usize,
    /// An error or a close event was returned: nothing may follow.
    finished: bool,
    /// The largest piece handed to `feed` / `read_buf` so far.
    max_piece: usize,
    /// Bytes of frames we queued ourselves since the output was last
    /// drained, and the most that ever was.
    sent_since_drain: usize,
    max_sent_since_drain: usize,
    events: usize,
    /// The payload of the latest ping whose pong waits for the output to
    /// drain (RFC 6455 §5.5.3: only the most recent needs an answer).
    deferred_pong: Option<Vec<u8>>,
}

impl Driver {
    /// New output since the last check, as frames (asserted valid).
    fn new_output(&mut self) -> Vec<OutFrame> {
        let out = self.pending();
        assert!(out.len() >= self.checked, "output shrank without consume");
        let frames = self.checker.check(&out[self.checked..]);
        self.checked = out.len();
        frames
    }

    /// All pending output, joined from its vectored pieces (with FLAG_ECHO
    /// a large echo is written from the input buffer). The first piece must
    /// be what `pending_output` returns.
    fn pending(&self) -> Vec<u8> {
        let mut slices = [std::io::IoSlice::new(&[]); 3];
        let n = self.conn.pending_output_vectored(&mut slices);
        let first: &[u8] = slices.first().map_or(&[], |s| &s[..]);
        assert_eq!(first, self.conn.pending_output(), "first piece differs");
        let out: Vec<u8> = slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
        assert_eq!(
            out.len(),
            self.conn.buffered_amount(),
            "pieces vs buffered_amount"
        );
        out
    }

    fn drain_output(&mut self) {
        let n = self.conn.buffered_amount();
        self.conn.consume_output(n);
        // Draining releases a deferred pong, unless a close went out.
        self.checked = 0;
        let frames = self.new_output();
        match self.deferred_pong.take() {
            Some(payload) if self.conn.state() == State::Open => {
                assert_eq!(frames.len(), 1, "deferred pong: {frames:?}");
                assert_eq!(frames[0].opcode, OpCode::Pong);
                assert_eq!(frames[0].payload, payload, "deferred pong payload");
                let n = self.conn.buffered_amount();
                self.conn.consume_output(n);
            }
            _ => assert!(frames.is_empty(), "output after a drain: {frames:?}"),
        }
        assert_eq!(self.conn.buffered_amount(), 0);
        assert!(self.conn.pending_output().is_empty());
        self.checked = 0;
        self.sent_since_drain = 0;
    }

    /// Buffered memory never exceeds what the limits allow.
    ///
    /// The driver polls until `None` after every piece of input, so when a
    /// piece arrives the read buffer holds at most one incomplete frame:
    /// `U ≤ MAX_HEADER_LEN + max(max_frame_size, 125)` bytes (a header that
    /// announces more than `max_frame_size` is refused before its payload
    /// is buffered; control payloads are ≤ 125). `reserve_input(want)` first
    /// moves those `U` bytes to the front, and grows the vector only if its
    /// capacity is below `U + want`, through `Vec::resize`, whose amortised
    /// growth gives `max(2 × old capacity, U + want)` — less than
    /// `2 × (U + want)` since the old capacity was below `U + want` — and
    /// at least 8. `want` is the piece length for `feed`, and for `read_buf`
    /// `max(read_chunk_size.max(64), min(missing, U)) ≤ max(chunk, U)`.
    ///
    /// The assembly buffer holds one message: uncompressed, at most
    /// `max_message_size` bytes grown by `extend_from_slice` (capacity below
    /// `2 × max_message_size`, at least 8); inflated, `Inflater::inflate`
    /// caps its capacity at `max_message_size + 1` unless it was larger
    /// already. It is cleared, not shrunk, between messages.
    ///
    /// The output buffer (drained only by the consume op, or after each op
    /// unless FLAG_KEEP_OUTPUT) holds: auto-pongs, each queued only while at
    /// most `max_pending_pong_bytes` wait, so pongs end at most one pong
    /// (≤ 14 + 125 bytes) past that; the frames we queued ourselves since
    /// the last drain; and one close frame of the connection's own
    /// (≤ 14 + 125). Growth by `reserve` again stays below twice what is
    /// needed, and capacity is kept across drains, so the bound uses the
    /// largest amount we ever queued between two drains.
    fn check_memory(&self) {
        let c = &self.fc;
        let frame_max = c.max_frame_size.max(MAX_CONTROL_PAYLOAD);
        let unread = MAX_HEADER_LEN + frame_max;
        let chunk = c.read_chunk_size.max(64);
        let want = self.max_piece.max(chunk).max(unread);
        let rx = 2 * (unread + want) + 8;
        let assembled = (2 * c.max_message_size).max(c.max_message_size + 1) + 8;
        let control = MAX_HEADER_LEN + MAX_CONTROL_PAYLOAD;
        let out = 2 * (c.max_pending_pong_bytes + 2 * control + self.max_sent_since_drain) + 8;
        let bound = rx + assembled + out;
        let have = self.conn.buffer_capacity();
        assert!(
            have <= bound,
            "buffer_capacity {have} > bound {bound} (rx {rx}, assembled {assembled}, out {out}; \
             config {:?}, largest piece {})",
            self.fc,
            self.max_piece
        );
    }

    /// Polls until no event is ready, checking each event and the output
    /// it caused.
    fn poll_all(&mut self) {
        loop {
            let state_before = self.conn.state();
            let buffered_before = self.conn.buffered_amount();
            let echo = self.fc.flags & FLAG_ECHO != 0;
            // With FLAG_ECHO, each message is sent back inside the event's
            // borrow, as an echo server does: `Some(sent)`.
            let mut echoed = None;
            let polled = match self.conn.poll_event() {
                Ok(Some((event, mut sender))) => {
                    if echo {
                        echoed = match event {
                            Event::Text(text) => Some(sender.send(Message::Text(text)).is_ok()),
                            Event::Binary(data) => Some(sender.send(Message::Binary(data)).is_ok()),
                            _ => None,
                        };
                    }
                    Ok(Some(event.into_owned()))
                }
                Ok(None) => Ok(None),
                Err(error) => Err(error),
            };
            let frames = self.new_output();
            if self.finished {
                assert!(
                    matches!(polled, Ok(None)),
                    "event after an error or a close: {polled:?}"
                );
                assert!(frames.is_empty(), "output after an error or a close");
                return;
            }
            match polled {
                Ok(None) => {
                    assert!(frames.is_empty(), "output without an event: {frames:?}");
                    return;
                }
                Ok(Some(event)) => {
                    self.events += 1;
                    if echoed == Some(true) {
                        self.sent_since_drain += self.conn.buffered_amount() - buffered_before;
                        self.max_sent_since_drain =
                            self.max_sent_since_drain.max(self.sent_since_drain);
                    }
                    self.check_event(event, echoed, state_before, buffered_before, &frames);
                }
                Err(error) => {
                    self.finished = true;
                    assert!(
                        (self.conn.state() == State::Closed),
                        "not closed after {error}"
                    );
                    match &error {
                        ConnectionError::Protocol(e) => {
                            if state_before == State::Open {
                                // §7.1.7: fail with the violation's code.
                                assert_eq!(frames.len(), 1, "fail wrote {frames:?}");
                                assert_eq!(frames[0].opcode, OpCode::Close);
                                assert_eq!(
                                    self.checker.close_code,
                                    Some(e.close_code().as_u16()),
                                    "close code for {e}"
                                );
                            } else {
                                assert!(frames.is_empty(), "wrote {frames:?} after close");
                            }
                        }
                        ConnectionError::EndOfStream => assert!(frames.is_empty()),
                        other => panic!("unexpected error {other:?}"),
                    }
                }
            }
            self.check_memory();
        }
    }

    fn check_event(
        &mut self,
        event: OwnedEvent,
        echoed: Option<bool>,
        state_before: State,
        buffered_before: usize,
        frames: &[OutFrame],
    ) {
        let c = &self.fc;
        match event {
            OwnedEvent::Text(text) => {
                assert!(text.len() <= c.max_message_size, "text of {}", text.len());
                check_echo(echoed, state_before, frames, OpCode::Text, text.as_bytes());
            }
            OwnedEvent::Binary(data) => {
                assert!(data.len() <= c.max_message_size, "binary of {}", data.len());
                check_echo(echoed, state_before, frames, OpCode::Binary, &data);
            }
            OwnedEvent::Ping(payload) => {
                assert!(payload.len() <= MAX_CONTROL_PAYLOAD);
                let due = c.auto_pong
                    && state_before == State::Open
                    && buffered_before <= c.max_pending_pong_bytes;
                if due {
                    assert_eq!(frames.len(), 1, "ping answered with {frames:?}");
                    assert_eq!(frames[0].opcode, OpCode::Pong);
                    assert_eq!(frames[0].payload, payload, "pong payload differs");
                    self.deferred_pong = None;
                } else {
                    if c.auto_pong && state_before == State::Open {
                        // Too much output waits: answered once it drains.
                        self.deferred_pong = Some(payload);
                    }
                    assert!(frames.is_empty(), "unexpected {frames:?} after a ping");
                }
            }
            OwnedEvent::Pong(payload) => {
                assert!(payload.len() <= MAX_CONTROL_PAYLOAD);
                assert!(frames.is_empty());
            }
            OwnedEvent::Close(frame) => {
                self.finished = true;
                assert!(
                    (self.conn.state() == State::Closed),
                    "not closed after the peer's close"
                );
                if let Some(frame) = &frame {
                    assert!(frame.code.is_sendable(), "received close {:?}", frame.code);
                    assert!(frame.reason.len() <= 123);
                }
                if state_before == State::Open {
                    // The reply echoes the code (or is empty, like the
                    // peer's).
                    assert_eq!(frames.len(), 1, "close answered with {frames:?}");
                    assert_eq!(frames[0].opcode, OpCode::Close);
                    let echoed = frame.as_ref().map(|f| f.code.as_u16());
                    assert_eq!(self.checker.close_code, echoed, "close not echoed");
                    if echoed.is_none() {
                        assert!(frames[0].payload.is_empty());
                    }
                } else {
                    assert!(frames.is_empty(), "close reply while closing: {frames:?}");
                }
            }
        }
    }

    fn feed(&mut self, piece: &[u8], via_read_buf: bool) {
        self.max_piece = self.max_piece.max(piece.len());
        if via_read_buf {
            let mut rest = piece;
            while !rest.is_empty() {
                let space = self.conn.read_buf();
                assert!(!space.is_empty(), "read_buf offered no space");
                let n = space.len().min(rest.len());
                space[..n].copy_from_slice(&rest[..n]);
                self.conn.commit_read(n);
                rest = &rest[n..];
                self.check_memory();
                self.poll_all();
            }
        } else {
            self.conn.feed(piece);
            self.check_memory();
            self.poll_all();
        }
    }

    /// Our own sends: a ping or a close, valid while open, refused after.
    fn send(&mut self, op: u8, size: u8) {
        let open = self.conn.state() == State::Open;
        let before = self.conn.buffered_amount();
        let (result, expect) = if op == 5 {
            let payload: Vec<u8> = (0..size as usize % 126).map(|i| i as u8).collect();
            (
                self.conn.sender().send_ping(&payload),
                (OpCode::Ping, payload),
            )
        } else {
            let code = CLOSE_CODES[size as usize % CLOSE_CODES.len()];
            let reason = "r".repeat(size as usize % 20);
            let mut body = code.to_be_bytes().to_vec();
            body.extend_from_slice(reason.as_bytes());
            (
                self.conn.sender().close(CloseCode::from_u16(code), &reason),
                (OpCode::Close, body),
            )
        };
        let frames = self.new_output();
        assert_eq!(
            result.is_ok(),
            open,
            "send while {:?}: {result:?}",
            self.conn.state()
        );
        if open {
            assert_eq!(frames.len(), 1);
            assert_eq!(
                (frames[0].opcode, &frames[0].payload),
                (expect.0, &expect.1)
            );
            if expect.0 == OpCode::Close {
                assert_eq!(self.conn.state(), State::Closing);
            }
        } else {
            assert!(frames.is_empty());
        }
        self.sent_since_drain += self.conn.buffered_amount() - before;
        self.max_sent_since_drain = self.max_sent_since_drain.max(self.sent_since_drain);
        self.check_memory();
    }
}

/// The output after a data message: nothing, or with FLAG_ECHO the same
/// message in one frame (compressed or not), sent while open only.
fn check_echo(
    echoed: Option<bool>,
    state_before: State,
    frames: &[OutFrame],
    opcode: OpCode,
    payload: &[u8],
) {
    match echoed {
        None => assert!(frames.is_empty(), "output after a message: {frames:?}"),
        Some(sent) => {
            assert_eq!(
                sent,
                state_before == State::Open,
                "echo while {state_before:?}"
            );
            if !sent {
                assert!(frames.is_empty(), "refused echo wrote {frames:?}");
                return;
            }
            assert_eq!(frames.len(), 1, "echo wrote {frames:?}");
            let frame = &frames[0];
            assert_eq!(frame.opcode, opcode);
            assert!(frame.fin, "echo not in one frame");
            if !frame.rsv1 {
                assert_eq!(frame.payload, payload, "echo payload differs");
            }
        }
    }
}

/// Runs one input against a connection of `role`.
pub fn run(role: Role, data: &[u8]) {
    let (head, rest) = data.split_at(data.len().min(FuzzConfig::BYTES));
    let Ok(fc) = FuzzConfig::arbitrary(&mut Unstructured::new(head)) else {
        return;
    };
    let (n, rest) = match rest.split_first() {
        Some((&n, rest)) => ((n % 17) as usize, rest),
        None => (0, rest),
    };
    let (script, mut wire) = rest.split_at(rest.len().min(2 * n));
    let script: Vec<(u8, u8)> = script.chunks_exact(2).map(|c| (c[0] % 8, c[1])).collect();

    let mut leftover: &[u8] = &[];
    if fc.flags & FLAG_LEFTOVER != 0 {
        let take = script.first().map_or(wire.len(), |&(_, s)| s as usize + 1);
        (leftover, wire) = wire.split_at(take.min(wire.len()));
    }
    let conn = Connection::with_negotiated(role, fc.config(), fc.negotiated(), leftover);
    let mut d = Driver {
        conn,
        checker: OutputChecker::new(role, fc.deflate.is_some()),
        fc,
        checked: 0,
        finished: false,
        max_piece: leftover.len(),
        sent_since_drain: 0,
        max_sent_since_drain: 0,
        events: 0,
        deferred_pong: None,
    };
    d.check_memory();
    d.poll_all();

    let keep_output = d.fc.flags & FLAG_KEEP_OUTPUT != 0;
    let has_feed = script.iter().any(|&(op, _)| op <= 3);
    let mut queue: VecDeque<(u8, u8)> = script.iter().copied().collect();
    let mut first_pass = script.len();
    while let Some((op, size)) = queue.pop_front() {
        if first_pass > 0 {
            first_pass -= 1;
        } else if op > 3 {
            continue; // non-feed ops run only once
        }
        match op {
            0..=3 => {
                if wire.is_empty() {
                    continue;
                }
                let (piece, rest) = wire.split_at((size as usize + 1).min(wire.len()));
                wire = rest;
                d.feed(piece, op == 3);
                queue.push_back((op, size));
            }
            4 => d.drain_output(),
            5 | 6 => d.send(op, size),
            _ => {
                d.conn.release_idle_buffers();
                d.check_memory();
            }
        }
        if !keep_output {
            d.drain_output();
        }
    }
    if !has_feed || !wire.is_empty() {
        d.feed(wire, false);
    }
    let _ = d.new_output();
    d.check_memory();

    if d.fc.flags & FLAG_EOF != 0 {
        let was_finished = d.finished;
        d.conn.handle_eof();
        let polled = d.conn.poll_event().map(|e| e.map(|(e, _)| e.into_owned()));
        if was_finished {
            assert!(
                matches!(polled, Ok(None)),
                "event after the end: {polled:?}"
            );
        } else {
            match polled {
                Err(ConnectionError::EndOfStream) => {}
                other => panic!("EOF before the close handshake gave {other:?}"),
            }
            d.finished = true;
        }
        assert!((d.conn.state() == State::Closed));
        d.poll_all();
    }
    if d.finished {
        // No frame may follow our (or any) close: sends are refused.
        assert!(
            d.conn.sender().send_ping(b"x").is_err(),
            "ping accepted after the end"
        );
        assert!(
            d.conn.sender().send(Message::Text("x")).is_err(),
            "text accepted after the end"
        );
        let _ = d.new_output();
    }
}
