//! HTTP long-polling payloads (Engine.IO v4, "Payload encoding"): several
//! packets in one body, separated by the record separator `\x1e`; a packet
//! starting with `b` is a binary message in standard base64 (with padding);
//! any other packet is a text packet (type digit + UTF-8 data).
//!
//! `\x1e` can never occur inside a packet: text data may not contain it
//! (the clients never send it) and base64 has no such character, so the
//! body is split without any escaping.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};

use super::packet::{decode_text, Outgoing, Packet, PacketError};

/// The separator between packets of a polling payload.
pub const SEPARATOR: u8 = 0x1e;

/// One packet of a decoded polling payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadPacket<'a> {
    /// A text packet, borrowed from the body.
    Text(Packet<'a>),
    /// A binary message (`b` + base64), decoded.
    Binary(Bytes),
}

/// Why a polling body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadError {
    /// The body is longer than `maxPayload` (answered 413).
    TooLarge,
    /// A packet in it does not decode (answered 400, `parse error`).
    Packet(PacketError),
}

impl std::fmt::Display for PayloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PayloadError::TooLarge => f.write_str("polling payload larger than maxPayload"),
            PayloadError::Packet(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for PayloadError {}

/// Decodes a whole POST body into its packets. Every packet is checked
/// before any is returned, so a bad body delivers nothing (the reference
/// server drops the whole payload on a parse error too).
pub fn decode_payload(
    body: &[u8],
    max_payload: usize,
) -> Result<Vec<PayloadPacket<'_>>, PayloadError> {
    if body.len() > max_payload {
        return Err(PayloadError::TooLarge);
    }
    // Engine.IO v4 polling bodies are text (binary travels as base64).
    let text = std::str::from_utf8(body).map_err(|_| PayloadError::Packet(PacketError::NotUtf8))?;
    text.split(char::from(SEPARATOR))
        .map(|packet| decode_polling_packet(packet).map_err(PayloadError::Packet))
        .collect()
}

/// Decodes one packet of a polling payload.
pub fn decode_polling_packet(packet: &str) -> Result<PayloadPacket<'_>, PacketError> {
    match packet.strip_prefix('b') {
        Some(base64) => STANDARD
            .decode(base64)
            .map(|data| PayloadPacket::Binary(Bytes::from(data)))
            .map_err(|_| PacketError::BadBase64),
        None => decode_text(packet).map(PayloadPacket::Text),
    }
}

/// Appends `packet`'s polling form to `out` (no separator).
pub fn encode_polling_packet(packet: &Outgoing, out: &mut BytesMut) {
    match packet {
        Outgoing::Text(text) => out.put_slice(text.as_bytes()),
        Outgoing::Binary(data) => {
            out.put_u8(b'b');
            out.put_slice(STANDARD.encode(data).as_bytes());
        }
        Outgoing::Shared(shared) => shared.write_polling(out),
    }
}

/// Takes packets from the front of `queue` for one GET response: at least
/// one, then as many as fit in `max_payload` bytes with their separators
/// (Engine.IO v4: a response never passes the client's `maxPayload` unless
/// a single packet does). Returns `None` when the queue is empty.
pub fn take_response_body(
    queue: &mut std::collections::VecDeque<Outgoing>,
    max_payload: usize,
) -> Option<Bytes> {
    let first = queue.pop_front()?;
    let mut body = BytesMut::with_capacity(first.polling_len());
    encode_polling_packet(&first, &mut body);
    while let Some(next) = queue.front() {
        if body.len() + 1 + next.polling_len() > max_payload {
            break;
        }
        body.put_u8(SEPARATOR);
        encode_polling_packet(next, &mut body);
        queue.pop_front();
    }
    Some(body.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engineio::packet::PacketType;
    use std::collections::VecDeque;

    #[test]
    fn decodes_the_suites_bodies() {
        let packets = decode_payload(b"4test1\x1e4test2\x1e4test3", 1000).unwrap();
        let texts: Vec<_> = packets
            .iter()
            .map(|p| match p {
                PayloadPacket::Text(p) => p.data,
                PayloadPacket::Binary(_) => "binary",
            })
            .collect();
        assert_eq!(texts, ["test1", "test2", "test3"]);
        let packets = decode_payload(b"4hello\x1ebAQIDBA==", 1000).unwrap();
        assert_eq!(
            packets,
            [
                PayloadPacket::Text(Packet::new(PacketType::Message, "hello")),
                PayloadPacket::Binary(Bytes::from_static(&[1, 2, 3, 4])),
            ]
        );
    }

    #[test]
    fn refuses_bad_bodies() {
        assert_eq!(
            decode_payload(b"abc", 1000),
            Err(PayloadError::Packet(PacketError::UnknownType(b'a')))
        );
        assert_eq!(
            decode_payload(b"", 1000),
            Err(PayloadError::Packet(PacketError::Empty))
        );
        assert_eq!(
            decode_payload(b"4a\x1e", 1000),
            Err(PayloadError::Packet(PacketError::Empty))
        );
        assert_eq!(
            decode_payload(b"b!!", 1000),
            Err(PayloadError::Packet(PacketError::BadBase64))
        );
        assert_eq!(
            decode_payload(b"4\xff", 1000),
            Err(PayloadError::Packet(PacketError::NotUtf8))
        );
        assert_eq!(decode_payload(b"4hello", 5), Err(PayloadError::TooLarge));
        assert!(decode_payload(b"4hello", 6).is_ok());
    }

    #[test]
    fn encodes_a_response_within_max_payload() {
        let mut queue: VecDeque<Outgoing> = VecDeque::from(vec![
            Outgoing::message("hello"),
            Outgoing::Binary(Bytes::from_static(&[1, 2, 3, 4])),
            Outgoing::message("x"),
        ]);
        let body = take_response_body(&mut queue, 1000).unwrap();
        assert_eq!(&body[..], b"4hello\x1ebAQIDBA==\x1e4x");
        assert!(take_response_body(&mut queue, 1000).is_none());

        // "4hello" (6) + sep + "bAQIDBA==" (9) = 16 > 10: one per response,
        // and a packet bigger than the bound still goes alone.
        let mut queue: VecDeque<Outgoing> = VecDeque::from(vec![
            Outgoing::message("hello"),
            Outgoing::Binary(Bytes::from_static(&[1, 2, 3, 4])),
        ]);
        assert_eq!(&take_response_body(&mut queue, 3).unwrap()[..], b"4hello");
        assert_eq!(
            &take_response_body(&mut queue, 3).unwrap()[..],
            b"bAQIDBA=="
        );
    }

    #[test]
    fn polling_len_matches_the_encoding() {
        for len in 0..10 {
            let packet = Outgoing::Binary(Bytes::from(vec![7u8; len]));
            let mut out = BytesMut::new();
            encode_polling_packet(&packet, &mut out);
            assert_eq!(out.len(), packet.polling_len());
        }
    }

    #[test]
    fn every_prefix_and_bit_flip_decodes_or_errs() {
        let body: &[u8] = b"4hello\x1ebAQIDBA==\x1e2probe\x1e3\x1e4w\xc3\xb6rld";
        for end in 0..=body.len() {
            let _ = decode_payload(&body[..end], 1000);
        }
        for index in 0..body.len() {
            for bit in 0..8 {
                let mut flipped = body.to_vec();
                flipped[index] ^= 1 << bit;
                if let Ok(packets) = decode_payload(&flipped, 1000) {
                    // Whatever decodes re-encodes to a body of packets.
                    let mut queue: VecDeque<Outgoing> = packets
                        .into_iter()
                        .map(|p| match p {
                            PayloadPacket::Text(p) => Outgoing::Text(p.encode()),
                            PayloadPacket::Binary(b) => Outgoing::Binary(b),
                        })
                        .collect();
                    while take_response_body(&mut queue, 1000).is_some() {}
                }
            }
        }
    }
}
