//! chito-socketio's Socket.IO parsers on arbitrary client frames (issue
//! #13, docs/socketio.md §4, §9): `Packet::decode` on every text frame, and
//! the attachment `Reassembler` on a sequence of text and binary frames
//! under small limits. Never panics; a decoded packet re-encodes to text
//! that decodes and re-encodes to itself; the reassembler stays within its
//! limits and hands out packets with exactly the announced attachments.
#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use chito_socketio::socketio::binary::{BinaryLimits, Reassembler};
use chito_socketio::socketio::packet::{Packet, Prefix};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Frame {
    Text(String),
    Binary(Vec<u8>),
}

/// Re-encodes a decoded packet: the encoding decodes to a packet that
/// encodes the same again (arguments are kept byte for byte; whitespace
/// between them is the only thing the first encode may change).
fn check_reencodes(packet: &Packet<'_>) {
    let mut once = String::new();
    if packet.encode(&mut once, Prefix::Bare).is_err() {
        return;
    }
    let again = Packet::decode(&once).unwrap_or_else(|e| panic!("{once:?} does not decode: {e}"));
    let mut twice = String::new();
    again.encode(&mut twice, Prefix::Bare).expect("re-encode");
    assert_eq!(once, twice, "encoding is not stable");
    let mut prefixed = String::new();
    again
        .encode(&mut prefixed, Prefix::EngineIoMessage)
        .expect("prefixed encode");
    assert_eq!(prefixed.strip_prefix('4'), Some(once.as_str()));
}

fuzz_target!(|frames: Vec<Frame>| {
    let limits = BinaryLimits {
        max_attachments: 3,
        max_attachment_bytes: 64,
    };
    let mut reassembler = Reassembler::new(limits);
    for frame in frames {
        match frame {
            Frame::Text(text) => {
                if let Ok(packet) = Packet::decode(&text) {
                    check_reencodes(&packet);
                }
                if let Ok(Some(packet)) = reassembler.on_text(&text) {
                    // Complete at once: no attachments, or zero announced.
                    assert!(packet.attachments().unwrap_or(0) == 0);
                    assert!(!reassembler.is_waiting());
                }
            }
            Frame::Binary(data) => {
                let was_waiting = reassembler.is_waiting();
                match reassembler.on_binary(Bytes::from(data)) {
                    Ok(Some(complete)) => {
                        assert!(was_waiting);
                        let packet = complete.packet().expect("a reassembled packet decodes");
                        let announced = packet.attachments().unwrap_or(0);
                        assert_eq!(announced, complete.attachments().len());
                        assert!(announced <= limits.max_attachments);
                        let bytes: usize = complete.attachments().iter().map(Bytes::len).sum();
                        assert!(bytes <= limits.max_attachment_bytes);
                        for arg in packet.args() {
                            let _ = complete.deserialize_arg::<serde_json::Value>(arg);
                        }
                        check_reencodes(&packet);
                    }
                    Ok(None) => assert!(reassembler.is_waiting()),
                    Err(_) => assert!(!reassembler.is_waiting() || was_waiting),
                }
            }
        }
    }
});
