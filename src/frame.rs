//! The frame header (RFC 6455 §5.2): parsing and encoding.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! ```
//!
//! This module knows only the wire layout. Which headers are acceptable in
//! a given connection state (masking by role, RSV bits by extension,
//! fragmentation rules, size limits) is decided in [`crate::connection`].
//! Every frame chito writes gets its header from [`FrameHeader::write_to`].

use std::fmt;

/// A header that breaks the wire format of RFC 6455 §5.2, whatever the
/// connection's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// A reserved opcode (3–7, 0xB–0xF).
    ReservedOpcode(u8),
    /// A 64-bit payload length with the most significant bit set.
    LengthTopBit,
    /// A payload length not in its minimal encoding.
    NonMinimalLength,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            HeaderError::LengthTopBit => f.write_str("64-bit length with top bit set"),
            HeaderError::NonMinimalLength => f.write_str("length not minimally encoded"),
        }
    }
}

impl std::error::Error for HeaderError {}

/// The longest possible header: 2 fixed bytes, an 8-byte length and a
/// 4-byte masking key.
pub const MAX_HEADER_LEN: usize = 14;

/// The largest payload a control frame may carry (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame's opcode (RFC 6455 §5.2, §11.8). Reserved opcodes (3–7, 0xB–0xF)
/// have no variant: a header carrying one fails to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0: a later fragment of a fragmented message.
    Continuation,
    /// 0x1: the first (or only) frame of a UTF-8 text message.
    Text,
    /// 0x2: the first (or only) frame of a binary message.
    Binary,
    /// 0x8: the close frame (§5.5.1).
    Close,
    /// 0x9: a ping (§5.5.2).
    Ping,
    /// 0xA: a pong (§5.5.3).
    Pong,
}

impl OpCode {
    /// The opcode for the 4-bit value, or `None` if the value is reserved.
    pub fn from_bits(bits: u8) -> Option<OpCode> {
        match bits {
            0x0 => Some(OpCode::Continuation),
            0x1 => Some(OpCode::Text),
            0x2 => Some(OpCode::Binary),
            0x8 => Some(OpCode::Close),
            0x9 => Some(OpCode::Ping),
            0xA => Some(OpCode::Pong),
            _ => None,
        }
    }

    /// The 4-bit wire value.
    pub fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Control opcodes have the high bit set (RFC 6455 §5.5).
    pub fn is_control(self) -> bool {
        self.bits() & 0x8 != 0
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this is the final fragment of its message.
    pub fin: bool,
    /// RSV1, used by permessage-deflate (RFC 7692 §6).
    pub rsv1: bool,
    /// RSV2, unused by any extension chito supports.
    pub rsv2: bool,
    /// RSV3, unused by any extension chito supports.
    pub rsv3: bool,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, if the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// The payload length in bytes.
    pub payload_len: u64,
}

impl FrameHeader {
    /// A header with FIN set, no RSV bits and no mask.
    #[inline]
    pub fn new(opcode: OpCode, payload_len: u64) -> FrameHeader {
        FrameHeader {
            fin: true,
            rsv1: false,
            rsv2: false,
            rsv3: false,
            opcode,
            mask: None,
            payload_len,
        }
    }

    /// Parses a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` holds only part of a header (more bytes
    /// are needed; that is not an error), and `Ok(Some((header, len)))` with
    /// the header's encoded length otherwise.
    ///
    /// # Errors
    /// - [`HeaderError::ReservedOpcode`]: opcode 3–7 or 0xB–0xF (§5.2).
    /// - [`HeaderError::LengthTopBit`]: a 64-bit length with its most
    ///   significant bit set (§5.2).
    /// - [`HeaderError::NonMinimalLength`]: a length encoded in more bytes
    ///   than needed (§5.2: "the minimal number of bytes MUST be used").
    pub fn parse(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, HeaderError> {
        let (first, second) = match buf {
            [a, b, ..] => (*a, *b),
            _ => return Ok(None),
        };
        let opcode =
            OpCode::from_bits(first & 0x0F).ok_or(HeaderError::ReservedOpcode(first & 0x0F))?;
        let masked = second & 0x80 != 0;
        let (payload_len, mut at) = match second & 0x7F {
            126 => {
                let Some(bytes) = buf.get(2..4).and_then(|b| <[u8; 2]>::try_from(b).ok()) else {
                    return Ok(None);
                };
                let len = u64::from(u16::from_be_bytes(bytes));
                if len < 126 {
                    return Err(HeaderError::NonMinimalLength);
                }
                (len, 4)
            }
            127 => {
                let Some(bytes) = buf.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) else {
                    return Ok(None);
                };
                let len = u64::from_be_bytes(bytes);
                // RFC 6455 §5.2: "the most significant bit MUST be 0".
                if len >> 63 != 0 {
                    return Err(HeaderError::LengthTopBit);
                }
                if len <= u64::from(u16::MAX) {
                    return Err(HeaderError::NonMinimalLength);
                }
                (len, 10)
            }
            short => (u64::from(short), 2),
        };
        let mask = if masked {
            let Some(key) = buf
                .get(at..at + 4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
            else {
                return Ok(None);
            };
            at += 4;
            Some(key)
        } else {
            None
        };
        let header = FrameHeader {
            fin: first & 0x80 != 0,
            rsv1: first & 0x40 != 0,
            rsv2: first & 0x20 != 0,
            rsv3: first & 0x10 != 0,
            opcode,
            mask,
            payload_len,
        };
        Ok(Some((header, at)))
    }

    /// The number of bytes [`FrameHeader::encode`] writes.
    #[inline]
    pub fn encoded_len(&self) -> usize {
        let len_bytes = match self.payload_len {
            0..=125 => 0,
            126..=0xFFFF => 2,
            _ => 8,
        };
        2 + len_bytes + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Writes the header in its minimal encoding and returns its length.
    ///
    /// Lengths of 2^63 or more cannot be represented; they are clamped to
    /// 2^63 - 1 (no payload that large can exist in memory).
    #[inline]
    pub fn encode(&self, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
        let mut first = self.opcode.bits();
        for (set, bit) in [
            (self.fin, 0x80),
            (self.rsv1, 0x40),
            (self.rsv2, 0x20),
            (self.rsv3, 0x10),
        ] {
            if set {
                first |= bit;
            }
        }
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let len = self.payload_len.min(u64::MAX >> 1);
        out[0] = first;
        // §5.2: 7 bits up to 125, else 126 + 16 bits, else 127 + 64 bits.
        // Every index below is a constant within the 14-byte array.
        let at = match len {
            0..=125 => {
                out[1] = mask_bit | len as u8;
                2
            }
            126..=0xFFFF => {
                out[1] = mask_bit | 126;
                out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                4
            }
            _ => {
                out[1] = mask_bit | 127;
                out[2..10].copy_from_slice(&len.to_be_bytes());
                10
            }
        };
        match (self.mask, at) {
            (None, _) => at,
            (Some(key), 2) => {
                out[2..6].copy_from_slice(&key);
                6
            }
            (Some(key), 4) => {
                out[4..8].copy_from_slice(&key);
                8
            }
            (Some(key), _) => {
                out[10..14].copy_from_slice(&key);
                14
            }
        }
    }

    /// Appends the encoded header to `out`: the one place every frame
    /// chito sends gets its header from.
    #[inline]
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let mut head = [0u8; MAX_HEADER_LEN];
        let len = self.encode(&mut head);
        out.extend_from_slice(head.split_at(len.min(MAX_HEADER_LEN)).0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(header: FrameHeader) {
        let mut buf = [0u8; MAX_HEADER_LEN];
        let n = header.encode(&mut buf);
        assert_eq!(n, header.encoded_len());
        let (parsed, used) = FrameHeader::parse(&buf[..n]).unwrap().unwrap();
        assert_eq!(parsed, header);
        assert_eq!(used, n);
        for cut in 0..n {
            assert_eq!(FrameHeader::parse(&buf[..cut]).unwrap(), None, "cut {cut}");
        }
    }

    #[test]
    fn every_length_form_roundtrips() {
        for len in [
            0,
            1,
            125,
            126,
            127,
            0xFFFF,
            0x1_0000,
            u32::MAX as u64 + 7,
            (1 << 63) - 1,
        ] {
            roundtrip(FrameHeader::new(OpCode::Binary, len));
            let mut masked = FrameHeader::new(OpCode::Text, len);
            masked.mask = Some([1, 2, 3, 4]);
            masked.fin = false;
            masked.rsv1 = true;
            roundtrip(masked);
        }
    }

    #[test]
    fn rfc_examples_parse() {
        // RFC 6455 §5.7: unmasked "Hello".
        let (h, n) = FrameHeader::parse(&[0x81, 0x05, 0x48]).unwrap().unwrap();
        assert_eq!(
            (h.opcode, h.fin, h.payload_len, h.mask, n),
            (OpCode::Text, true, 5, None, 2)
        );
        // First fragment of an unmasked text message.
        let (h, _) = FrameHeader::parse(&[0x01, 0x03]).unwrap().unwrap();
        assert!(!h.fin);
        // 256 bytes binary in one unmasked frame.
        let (h, n) = FrameHeader::parse(&[0x82, 0x7E, 0x01, 0x00])
            .unwrap()
            .unwrap();
        assert_eq!((h.payload_len, n), (256, 4));
        // 64 KiB binary in one unmasked frame.
        let bytes = [0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0];
        let (h, n) = FrameHeader::parse(&bytes).unwrap().unwrap();
        assert_eq!((h.payload_len, n), (65536, 10));
    }

    #[test]
    fn reserved_opcodes_are_rejected() {
        for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(
                FrameHeader::parse(&[0x80 | op, 0]),
                Err(HeaderError::ReservedOpcode(op))
            );
        }
    }

    #[test]
    fn top_bit_of_64_bit_length_is_rejected() {
        let bytes = [0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(FrameHeader::parse(&bytes), Err(HeaderError::LengthTopBit));
    }

    #[test]
    fn non_minimal_lengths_are_rejected() {
        assert_eq!(
            FrameHeader::parse(&[0x82, 0x7E, 0x00, 0x7D]),
            Err(HeaderError::NonMinimalLength)
        );
        assert_eq!(
            FrameHeader::parse(&[0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF]),
            Err(HeaderError::NonMinimalLength)
        );
    }

    #[test]
    fn control_bit_identifies_control_opcodes() {
        assert!(
            OpCode::Close.is_control() && OpCode::Ping.is_control() && OpCode::Pong.is_control()
        );
        assert!(!OpCode::Text.is_control() && !OpCode::Binary.is_control());
        assert!(!OpCode::Continuation.is_control());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_reencode(bytes in proptest::collection::vec(any::<u8>(), 0..20)) {
            if let Ok(Some((header, n))) = FrameHeader::parse(&bytes) {
                let mut out = [0u8; MAX_HEADER_LEN];
                let m = header.encode(&mut out);
                prop_assert_eq!(&out[..m], &bytes[..n]);
            }
        }
    }
}
