//! Helpers shared by the fuzz targets: an independent parser for what a
//! `Connection` writes, and `arbitrary`-driven configuration.
//!
//! The output parser deliberately re-checks RFC 6455 rules itself instead of
//! trusting chito's own receive path, so a bug that is symmetric in sender
//! and receiver still shows up.

use arbitrary::{Arbitrary, Unstructured};
use chito::close::MAX_CLOSE_REASON;
use chito::deflate::DeflateParams;
use chito::frame::{FrameHeader, OpCode, MAX_CONTROL_PAYLOAD};
use chito::handshake::Negotiated;
use chito::{CloseCode, Config, Role};

/// One frame found in a connection's output, payload unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutFrame {
    pub opcode: OpCode,
    pub fin: bool,
    pub rsv1: bool,
    pub payload: Vec<u8>,
}

/// Tracks the frames one endpoint has written so far, across calls, and
/// asserts that they form a valid stream from an endpoint of `role`.
#[derive(Debug)]
pub struct OutputChecker {
    role: Role,
    compression: bool,
    /// The kind of the fragmented data message in progress, if any.
    in_message: Option<OpCode>,
    /// A close frame was written: nothing may follow it.
    pub closed: bool,
    /// The code of the close frame written, if it had one.
    pub close_code: Option<u16>,
    pub frames: usize,
}

impl OutputChecker {
    pub fn new(role: Role, compression: bool) -> Self {
        OutputChecker {
            role,
            compression,
            in_message: None,
            closed: false,
            close_code: None,
            frames: 0,
        }
    }

    /// Parses `bytes` (all of it: a connection only ever queues whole
    /// frames) and checks every frame. Returns the frames.
    pub fn check(&mut self, mut bytes: &[u8]) -> Vec<OutFrame> {
        let mut frames = Vec::new();
        while !bytes.is_empty() {
            let (header, n) = match FrameHeader::parse(bytes) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => panic!("output ends with a partial frame header: {bytes:02x?}"),
                Err(e) => panic!("output holds an invalid frame header ({e}): {bytes:02x?}"),
            };
            let len = usize::try_from(header.payload_len).expect("length fits usize");
            assert!(
                bytes.len() - n >= len,
                "output ends inside a frame payload ({header:?}, {} bytes left)",
                bytes.len() - n
            );
            // §5.1 / §5.3: a client masks every frame, a server none.
            match self.role {
                Role::Client => assert!(header.mask.is_some(), "client frame not masked"),
                Role::Server => assert!(header.mask.is_none(), "server frame masked"),
            }
            assert!(!header.rsv2 && !header.rsv3, "RSV2/RSV3 set: {header:?}");
            let mut payload = bytes[n..n + len].to_vec();
            if let Some(key) = header.mask {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= key[i % 4];
                }
            }
            bytes = &bytes[n + len..];
            // §5.5.1: nothing after a close frame.
            assert!(!self.closed, "frame {header:?} written after a close frame");
            if header.opcode.is_control() {
                assert!(header.fin, "fragmented control frame");
                assert!(!header.rsv1, "RSV1 on a control frame");
                assert!(len <= MAX_CONTROL_PAYLOAD, "control frame of {len} bytes");
                if header.opcode == OpCode::Close {
                    self.closed = true;
                    check_close_body(&payload);
                    if payload.len() >= 2 {
                        self.close_code = Some(u16::from_be_bytes([payload[0], payload[1]]));
                    }
                }
            } else {
                match (header.opcode, self.in_message) {
                    (OpCode::Continuation, None) => panic!("continuation without a message"),
                    (OpCode::Continuation, Some(_)) => {
                        assert!(!header.rsv1, "RSV1 on a continuation frame");
                    }
                    (_, Some(kind)) => panic!("new {:?} inside a {kind:?} message", header.opcode),
                    (_, None) => {
                        assert!(
                            !header.rsv1 || self.compression,
                            "RSV1 without permessage-deflate"
                        );
                    }
                }
                self.in_message = if header.fin {
                    None
                } else {
                    Some(self.in_message.unwrap_or(header.opcode))
                };
            }
            self.frames += 1;
            frames.push(OutFrame {
                opcode: header.opcode,
                fin: header.fin,
                rsv1: header.rsv1,
                payload,
            });
        }
        frames
    }
}

/// §5.5.1 / §7.4: a close body is empty, or a sendable code plus at most
/// 123 bytes of UTF-8.
pub fn check_close_body(payload: &[u8]) {
    match payload {
        [] => {}
        [_] => panic!("one-byte close body"),
        [hi, lo, reason @ ..] => {
            let code = CloseCode::from_u16(u16::from_be_bytes([*hi, *lo]));
            assert!(code.is_sendable(), "close frame with code {code}");
            assert!(reason.len() <= MAX_CLOSE_REASON, "close reason too long");
            assert!(
                std::str::from_utf8(reason).is_ok(),
                "close reason not UTF-8: {reason:02x?}"
            );
        }
    }
}

/// permessage-deflate parameters as negotiation could produce them:
/// windows of 9..=15 bits, either takeover flag.
#[derive(Debug, Clone, Copy)]
pub struct FuzzDeflateParams(pub DeflateParams);

impl<'a> Arbitrary<'a> for FuzzDeflateParams {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let mut params = DeflateParams::default();
        params.server_no_context_takeover = u.arbitrary()?;
        params.client_no_context_takeover = u.arbitrary()?;
        params.server_max_window_bits = u.int_in_range(9..=15)?;
        params.client_max_window_bits = u.int_in_range(9..=15)?;
        Ok(FuzzDeflateParams(params))
    }
}

/// The connection knobs the fuzzers vary, kept small so limits are hit.
///
/// Decoded from exactly [`FuzzConfig::BYTES`] bytes, one byte per knob, so
/// hand-written seeds can choose them (see the README for the layout).
#[derive(Debug, Clone)]
pub struct FuzzConfig {
    pub max_frame_size: usize,
    pub max_message_size: usize,
    pub max_fragments: usize,
    pub auto_pong: bool,
    pub max_pending_pong_bytes: usize,
    pub read_chunk_size: usize,
    pub compression_level: u32,
    pub threshold: usize,
    pub deflate: Option<DeflateParams>,
    /// Driver flags (bits 4..8 of the flags byte), for the target's own use.
    pub flags: u8,
}

/// 0..=127 as is, then steps of `step` (so both tiny limits and a few KiB).
fn scale(b: u8, step: usize) -> usize {
    if b < 128 {
        b as usize
    } else {
        (b as usize - 127) * step
    }
}

impl<'a> Arbitrary<'a> for FuzzConfig {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let b: [u8; FuzzConfig::BYTES] = u.arbitrary()?;
        let flags = b[3];
        let mut params = DeflateParams::default();
        params.server_no_context_takeover = flags & 0x04 != 0;
        params.client_no_context_takeover = flags & 0x08 != 0;
        params.server_max_window_bits = 9 + b[4] % 7;
        params.client_max_window_bits = 9 + b[5] % 7;
        Ok(FuzzConfig {
            max_frame_size: scale(b[0], 32),
            max_message_size: scale(b[1], 64),
            max_fragments: (b[2] % 65) as usize,
            auto_pong: flags & 0x01 != 0,
            max_pending_pong_bytes: b[6] as usize * 4,
            read_chunk_size: b[7] as usize * 8,
            compression_level: (b[8] % 10) as u32,
            threshold: (b[9] % 65) as usize,
            deflate: (flags & 0x02 != 0).then_some(params),
            flags: flags >> 4,
        })
    }

    fn size_hint(_depth: usize) -> (usize, Option<usize>) {
        (FuzzConfig::BYTES, Some(FuzzConfig::BYTES))
    }
}

impl FuzzConfig {
    /// Bytes consumed by [`Arbitrary::arbitrary`].
    pub const BYTES: usize = 10;

    pub fn config(&self) -> Config {
        let mut config = Config::default();
        config.max_frame_size = self.max_frame_size;
        config.max_message_size = self.max_message_size;
        config.max_fragments = self.max_fragments;
        config.auto_pong = self.auto_pong;
        config.max_pending_pong_bytes = self.max_pending_pong_bytes;
        config.read_chunk_size = self.read_chunk_size;
        if let Some(settings) = config.deflate.as_mut() {
            settings.compression_level = self.compression_level;
            settings.threshold = self.threshold;
        }
        config
    }

    pub fn negotiated(&self) -> Negotiated {
        let mut negotiated = Negotiated::default();
        negotiated.deflate = self.deflate;
        negotiated
    }
}

pub mod conn;
