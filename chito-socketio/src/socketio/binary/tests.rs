//! Unit tests of binary attachments: placeholders out, reassembly in, the
//! bounds and the rejections.

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::socketio::packet::{PacketData, PacketType};

fn bin(bytes: &[u8]) -> Binary {
    Binary(Bytes::copy_from_slice(bytes))
}

/// socket.io-protocol's binary examples, encoded.
#[test]
fn spec_examples_encode() {
    let mut buf = String::new();
    let attachments = encode_event(
        &mut buf,
        Prefix::Bare,
        "/",
        "baz",
        &(bin(&[1, 2, 3, 4]),),
        None,
    )
    .unwrap();
    assert_eq!(buf, r#"51-["baz",{"_placeholder":true,"num":0}]"#);
    assert_eq!(attachments, [Bytes::from_static(&[1, 2, 3, 4])]);

    buf.clear();
    let attachments = encode_event(
        &mut buf,
        Prefix::Bare,
        "/admin",
        "baz",
        &(bin(&[1, 2]), bin(&[3, 4])),
        None,
    )
    .unwrap();
    assert_eq!(
        buf,
        r#"52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
    );
    assert_eq!(attachments.len(), 2);

    buf.clear();
    let attachments = encode_ack(
        &mut buf,
        Prefix::Bare,
        "/",
        15,
        &("bar", bin(&[1, 2, 3, 4])),
    )
    .unwrap();
    assert_eq!(buf, r#"61-15["bar",{"_placeholder":true,"num":0}]"#);
    assert_eq!(attachments.len(), 1);

    // The suite's echoes, with the Engine.IO prefix.
    buf.clear();
    encode_event(
        &mut buf,
        Prefix::EngineIoMessage,
        "/",
        "message-back",
        &(bin(&[1, 2, 3]), bin(&[4, 5, 6])),
        None,
    )
    .unwrap();
    assert_eq!(
        buf,
        r#"452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
    );
    buf.clear();
    encode_ack(
        &mut buf,
        Prefix::EngineIoMessage,
        "/",
        789,
        &(bin(&[1, 2, 3]), bin(&[4, 5, 6])),
    )
    .unwrap();
    assert_eq!(
        buf,
        r#"462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
    );

    // Nested binaries, and no binaries at all (a plain EVENT).
    #[derive(serde::Serialize)]
    struct File {
        name: &'static str,
        data: Binary,
    }
    buf.clear();
    let attachments = encode_event(
        &mut buf,
        Prefix::EngineIoMessage,
        "/",
        "f",
        &(File {
            name: "a",
            data: bin(&[9]),
        },),
        Some(3),
    )
    .unwrap();
    assert_eq!(
        buf,
        r#"451-3["f",{"name":"a","data":{"_placeholder":true,"num":0}}]"#
    );
    assert_eq!(attachments.len(), 1);
    buf.clear();
    let attachments =
        encode_event(&mut buf, Prefix::EngineIoMessage, "/", "p", &(1,), None).unwrap();
    assert_eq!(buf, r#"42["p",1]"#);
    assert!(attachments.is_empty());
}

#[test]
fn binary_outside_its_encoders_is_an_error() {
    assert!(serde_json::to_string(&bin(&[1])).is_err());
    let mut buf = String::from("kept");
    let result = crate::socketio::packet::encode_event(
        &mut buf,
        Prefix::Bare,
        "/",
        "a",
        &(bin(&[1]),),
        None,
    );
    assert!(result.is_err());
    assert_eq!(buf, "kept");
    // A failed binary encode leaves nothing either, and the collector is reset.
    let result = encode_event(&mut buf, Prefix::Bare, "/", "connect", &(bin(&[1]),), None);
    assert!(result.is_err());
    assert_eq!(buf, "kept");
    assert!(serde_json::to_string(&bin(&[1])).is_err());
}

/// The suite's "should send a packet with binary attachments": the text,
/// then two binary frames; the arguments deserialize with the bytes in place.
#[test]
fn reassembles_the_suite_packet() {
    let mut reassembler = Reassembler::default();
    let text = r#"52-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#;
    assert!(reassembler.on_text(text).unwrap().is_none());
    assert!(reassembler.is_waiting());
    assert!(reassembler
        .on_binary(Bytes::from_static(&[1, 2, 3]))
        .unwrap()
        .is_none());
    let complete = reassembler
        .on_binary(Bytes::from_static(&[4, 5, 6]))
        .unwrap()
        .unwrap();
    assert!(!reassembler.is_waiting());
    let packet = complete.packet().unwrap();
    let PacketData::Event(event) = &packet.data else {
        panic!()
    };
    assert_eq!(event.name.as_str(), "message");
    let first: Binary = complete.deserialize_arg(event.args[0]).unwrap();
    let second: Binary = complete.deserialize_arg(event.args[1]).unwrap();
    assert_eq!(
        (&first.0[..], &second.0[..]),
        (&[1, 2, 3][..], &[4, 5, 6][..])
    );

    // Echo: the same arguments re-encoded give the suite's expected answer.
    let mut buf = String::new();
    let out = encode_event(
        &mut buf,
        Prefix::EngineIoMessage,
        "/",
        "message-back",
        &(first, second),
        None,
    )
    .unwrap();
    assert_eq!(
        buf,
        r#"452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
    );
    assert_eq!(out, complete.attachments());

    // Outside deserialize_arg a placeholder is not an attachment.
    assert!(serde_json::from_str::<Binary>(event.args[0].get()).is_err());
}

#[test]
fn nested_placeholders_and_binary_ack() {
    #[derive(serde::Deserialize)]
    struct File {
        name: String,
        data: Binary,
    }
    let mut reassembler = Reassembler::default();
    assert!(reassembler
        .on_text(r#"61-/up,7[{"name":"x","data":{"num":0,"_placeholder":true}}]"#)
        .unwrap()
        .is_none());
    let complete = reassembler
        .on_binary(Bytes::from_static(b"hello"))
        .unwrap()
        .unwrap();
    let packet = complete.packet().unwrap();
    assert_eq!(
        (packet.namespace, packet.packet_type()),
        ("/up", PacketType::BinaryAck)
    );
    let file: File = complete.deserialize_arg(packet.args()[0]).unwrap();
    assert_eq!((file.name.as_str(), &file.data.0[..]), ("x", &b"hello"[..]));
}

#[test]
fn text_packets_pass_through() {
    let mut reassembler = Reassembler::default();
    let packet = reassembler
        .on_text(r#"2["a",{"_placeholder":true,"num":5}]"#)
        .unwrap()
        .unwrap();
    assert_eq!(packet.packet_type(), PacketType::Event);
    // A binary type announcing zero attachments is complete at once.
    let packet = reassembler.on_text(r#"50-["a",1]"#).unwrap().unwrap();
    assert_eq!(packet.attachments(), Some(0));
    assert!(!reassembler.is_waiting());
}

/// Whether an error is the one a case expects.
type IsExpected = fn(&BinaryError) -> bool;

#[test]
fn rejections() {
    let limits = BinaryLimits {
        max_attachments: 3,
        max_attachment_bytes: 8,
    };
    let ph = |n: &str| format!(r#"{{"_placeholder":true,"num":{n}}}"#);
    let cases: Vec<(String, IsExpected)> = vec![
        (format!(r#"54-["a",{}]"#, ph("0")), |e| {
            matches!(e, BinaryError::TooManyAttachments(4))
        }),
        (format!(r#"51-["a",{}]"#, ph("1")), |e| {
            matches!(e, BinaryError::PlaceholderOutOfRange)
        }),
        (format!(r#"51-["a",{}]"#, ph("-1")), |e| {
            matches!(e, BinaryError::PlaceholderOutOfRange)
        }),
        (format!(r#"51-["a",{}]"#, ph("0.5")), |e| {
            matches!(e, BinaryError::PlaceholderOutOfRange)
        }),
        (format!(r#"51-["a",{}]"#, ph("\"0\"")), |e| {
            matches!(e, BinaryError::PlaceholderOutOfRange)
        }),
        (r#"51-["a",{"_placeholder":true}]"#.to_owned(), |e| {
            matches!(e, BinaryError::PlaceholderOutOfRange)
        }),
        (format!(r#"50-["a",{}]"#, ph("0")), |e| {
            matches!(e, BinaryError::PlaceholderOutOfRange)
        }),
        (format!(r#"52-["a",{},[{}]]"#, ph("1"), ph("1")), |e| {
            matches!(e, BinaryError::RepeatedPlaceholder(1))
        }),
        (r#"5x-["a"]"#.to_owned(), |e| {
            matches!(e, BinaryError::Packet(_))
        }),
    ];
    for (text, expected) in cases {
        let mut reassembler = Reassembler::new(limits);
        match reassembler.on_text(&text) {
            Ok(p) => panic!("{text} accepted: {p:?}"),
            Err(e) => {
                assert!(expected(&e), "{text}: {e:?}");
                assert!(!e.to_string().is_empty());
            }
        }
        assert!(!reassembler.is_waiting());
    }

    // The placeholder scan walks the JSON: nesting past serde_json's limit
    // (128) is refused, not a stack overflow.
    let deep = format!("51-[\"a\",{}{}]", "[".repeat(100_000), "]".repeat(100_000));
    assert!(matches!(
        Reassembler::new(limits).on_text(&deep),
        Err(BinaryError::Packet(_))
    ));

    // A binary frame with nothing waiting.
    let mut reassembler = Reassembler::new(limits);
    assert!(matches!(
        reassembler.on_binary(Bytes::new()),
        Err(BinaryError::UnexpectedAttachment)
    ));

    // A text packet while waiting: an error, and the state is reset.
    let text = format!(r#"52-["a",{},{}]"#, ph("0"), ph("1"));
    assert!(reassembler.on_text(&text).unwrap().is_none());
    reassembler.on_binary(Bytes::from_static(b"x")).unwrap();
    assert!(matches!(
        reassembler.on_text(r#"2["b"]"#),
        Err(BinaryError::TextWhileWaiting)
    ));
    assert!(!reassembler.is_waiting());
    assert!(reassembler.on_text(r#"2["b"]"#).unwrap().is_some());

    // Too many bytes in total.
    assert!(reassembler.on_text(&text).unwrap().is_none());
    reassembler.on_binary(Bytes::from_static(b"12345")).unwrap();
    assert!(matches!(
        reassembler.on_binary(Bytes::from_static(b"6789")),
        Err(BinaryError::TooManyBytes)
    ));
    assert!(!reassembler.is_waiting());
}

#[test]
fn deserializing_a_missing_attachment_is_an_error() {
    // Placeholders are validated on arrival; this checks the lookup itself.
    let packet = BinaryPacket {
        text: String::new(),
        attachments: vec![Bytes::from_static(b"a")],
    };
    let raw: &RawValue = serde_json::from_str(r#"{"_placeholder":true,"num":1}"#).unwrap();
    assert!(packet.deserialize_arg::<Binary>(raw).is_err());
    let raw: &RawValue = serde_json::from_str(r#"{"_placeholder":false,"num":0}"#).unwrap();
    assert!(packet.deserialize_arg::<Binary>(raw).is_err());
}

/// Every prefix and bit flip of binary packets is handled without panic.
#[test]
fn prefixes_and_bit_flips_never_panic() {
    let samples = [
        r#"52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
        r#"61-15[{"a":[{"_placeholder":true,"num":0}]}]"#,
    ];
    for sample in samples {
        for end in 0..=sample.len() {
            let mut reassembler = Reassembler::default();
            if let Some(prefix) = sample.get(..end) {
                let _ = reassembler.on_text(prefix);
                let _ = reassembler.on_binary(Bytes::from_static(b"x"));
                let _ = reassembler.on_binary(Bytes::from_static(b"y"));
            }
        }
        for i in 0..sample.len() {
            for bit in 0..8 {
                let mut flipped = sample.as_bytes().to_vec();
                flipped[i] ^= 1 << bit;
                if let Ok(text) = std::str::from_utf8(&flipped) {
                    let mut reassembler = Reassembler::default();
                    let _ = reassembler.on_text(text);
                    for _ in 0..3 {
                        if let Ok(Some(complete)) = reassembler.on_binary(Bytes::from_static(b"z"))
                        {
                            let packet = complete.packet().expect("validated on arrival");
                            for arg in packet.args() {
                                let _ = complete.deserialize_arg::<serde_json::Value>(arg);
                            }
                        }
                    }
                }
            }
        }
    }
}

proptest! {
    #[test]
    fn binary_round_trip(
        blobs in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..16), 1..5),
        ack_id in proptest::option::of(any::<u64>()),
    ) {
        let args: Vec<Binary> = blobs.iter().cloned().map(Binary::from).collect();
        let mut buf = String::new();
        let attachments = encode_event(&mut buf, Prefix::Bare, "/n", "blobs", &args, ack_id).unwrap();
        prop_assert_eq!(attachments.len(), blobs.len());
        let mut reassembler = Reassembler::default();
        prop_assert!(reassembler.on_text(&buf).unwrap().is_none());
        let mut complete = None;
        for attachment in attachments {
            complete = reassembler.on_binary(attachment).unwrap();
        }
        let complete = complete.expect("complete after the last attachment");
        let packet = complete.packet().unwrap();
        let decoded: Vec<Vec<u8>> = packet
            .args()
            .iter()
            .map(|arg| complete.deserialize_arg::<Binary>(arg).unwrap().0.to_vec())
            .collect();
        prop_assert_eq!(decoded, blobs);
    }

    #[test]
    fn random_frames_never_panic(
        frames in prop::collection::vec(
            prop_oneof![
                "[0-6/,\\-0-9\\[\\]{}\":a-z_ ]{0,40}".prop_map(Ok),
                prop::collection::vec(any::<u8>(), 0..8).prop_map(Err),
            ],
            0..8,
        )
    ) {
        let mut reassembler = Reassembler::new(BinaryLimits { max_attachments: 3, max_attachment_bytes: 16 });
        for frame in frames {
            match frame {
                Ok(text) => { let _ = reassembler.on_text(&text); }
                Err(bytes) => { let _ = reassembler.on_binary(Bytes::from(bytes)); }
            }
        }
    }
}
