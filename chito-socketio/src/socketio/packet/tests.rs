//! Unit tests of the packet grammar: the spec's examples both ways, the
//! protocol suite's packets, rejections, round trips and robustness.

use proptest::prelude::*;
use serde_json::value::RawValue;

use super::*;

fn decode(text: &str) -> Packet<'_> {
    match Packet::decode(text) {
        Ok(packet) => packet,
        Err(e) => panic!("{text:?} should decode: {e}"),
    }
}

fn reencode(text: &str) -> String {
    let mut buf = String::new();
    decode(text)
        .encode(&mut buf, Prefix::Bare)
        .expect("re-encodes");
    buf
}

fn raw_args(packet: &Packet<'_>) -> Vec<String> {
    packet
        .args()
        .iter()
        .map(|arg| arg.get().to_owned())
        .collect()
}

/// socket.io-protocol's "Packet encoding → Examples", decoded.
#[test]
fn spec_examples_decode() {
    let p = decode("0");
    assert_eq!(p.namespace, "/");
    assert!(matches!(p.data, PacketData::Connect(None)));

    let p = decode(r#"0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}"#);
    assert_eq!(p.namespace, "/admin");
    match p.data {
        PacketData::Connect(Some(raw)) => {
            assert_eq!(raw.get(), r#"{"sid":"oSO0OpakMV_3jnilAAAA"}"#)
        }
        other => panic!("{other:?}"),
    }

    let p = decode(r#"4{"message":"Not authorized"}"#);
    assert_eq!(p.packet_type(), PacketType::ConnectError);
    match p.data {
        PacketData::ConnectError(raw) => assert_eq!(raw.get(), r#"{"message":"Not authorized"}"#),
        other => panic!("{other:?}"),
    }

    let p = decode(r#"2["foo"]"#);
    match &p.data {
        PacketData::Event(e) => {
            assert_eq!(e.name.as_str(), "foo");
            assert!(e.args.is_empty());
            assert_eq!(e.ack_id, None);
            assert_eq!(e.attachments, None);
        }
        other => panic!("{other:?}"),
    }

    let p = decode(r#"2/admin,["bar"]"#);
    assert_eq!(p.namespace, "/admin");
    assert_eq!(p.packet_type(), PacketType::Event);

    let p = decode(r#"51-["baz",{"_placeholder":true,"num":0}]"#);
    assert_eq!(p.packet_type(), PacketType::BinaryEvent);
    assert_eq!(p.attachments(), Some(1));
    assert_eq!(raw_args(&p), [r#"{"_placeholder":true,"num":0}"#]);

    let p =
        decode(r#"52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#);
    assert_eq!(p.namespace, "/admin");
    assert_eq!(p.attachments(), Some(2));
    assert_eq!(p.args().len(), 2);

    let p = decode(r#"212["foo"]"#);
    match &p.data {
        PacketData::Event(e) => assert_eq!(e.ack_id, Some(12)),
        other => panic!("{other:?}"),
    }

    let p = decode(r#"3/admin,13["bar"]"#);
    assert_eq!(p.namespace, "/admin");
    match &p.data {
        PacketData::Ack(a) => {
            assert_eq!(a.ack_id, 13);
            assert_eq!(raw_args(&p), [r#""bar""#]);
        }
        other => panic!("{other:?}"),
    }

    let p = decode(r#"61-15["bar",{"_placeholder":true,"num":0}]"#);
    assert_eq!(p.packet_type(), PacketType::BinaryAck);
    match &p.data {
        PacketData::Ack(a) => {
            assert_eq!(a.ack_id, 15);
            assert_eq!(a.attachments, Some(1));
        }
        other => panic!("{other:?}"),
    }

    assert!(matches!(decode("1").data, PacketData::Disconnect));
    let p = decode("1/admin,");
    assert_eq!(p.namespace, "/admin");
    assert!(matches!(p.data, PacketData::Disconnect));

    // "Sample session": a binary ack in a custom namespace.
    let p = decode(r#"61-/admin,1[{"_placeholder":true,"num":0}]"#);
    assert_eq!(
        (p.namespace, p.packet_type()),
        ("/admin", PacketType::BinaryAck)
    );
}

/// The same examples, encoded by the typed encoders.
#[test]
fn spec_examples_encode() {
    #[derive(serde::Serialize)]
    struct Sid<'a> {
        sid: &'a str,
    }
    #[derive(serde::Serialize)]
    struct Message<'a> {
        message: &'a str,
    }
    let mut buf = String::new();
    let mut check = |expected: &str, encode: &dyn Fn(&mut String) -> Result<(), EncodeError>| {
        buf.clear();
        encode(&mut buf).expect("encodes");
        assert_eq!(buf, expected);
    };
    check("0", &|b| encode_connect::<()>(b, Prefix::Bare, "/", None));
    check(r#"0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}"#, &|b| {
        encode_connect(
            b,
            Prefix::Bare,
            "/admin",
            Some(&Sid {
                sid: "oSO0OpakMV_3jnilAAAA",
            }),
        )
    });
    check(r#"4{"message":"Not authorized"}"#, &|b| {
        encode_connect_error(
            b,
            Prefix::Bare,
            "/",
            &Message {
                message: "Not authorized",
            },
        )
    });
    check(r#"2["foo"]"#, &|b| {
        encode_event(b, Prefix::Bare, "/", "foo", &(), None)
    });
    check(r#"42["foo"]"#, &|b| {
        encode_event(b, Prefix::EngineIoMessage, "/", "foo", &(), None)
    });
    check(r#"2/admin,["bar"]"#, &|b| {
        encode_event(b, Prefix::Bare, "/admin", "bar", &(), None)
    });
    check(r#"212["foo"]"#, &|b| {
        encode_event(b, Prefix::Bare, "/", "foo", &(), Some(12))
    });
    check(r#"3/admin,13["bar"]"#, &|b| {
        encode_ack(b, Prefix::Bare, "/admin", 13, &("bar",))
    });
    check(r#"312[]"#, &|b| encode_ack(b, Prefix::Bare, "/", 12, &()));
    check("1", &|b| encode_disconnect(b, Prefix::Bare, "/"));
    check("1/admin,", &|b| {
        encode_disconnect(b, Prefix::Bare, "/admin")
    });
    check(r#"42["hey","Jude"]"#, &|b| {
        encode_event(b, Prefix::EngineIoMessage, "/", "hey", &("Jude",), None)
    });
    check(r#"42["a",1,"2",[3]]"#, &|b| {
        encode_event(b, Prefix::EngineIoMessage, "/", "a", &(1, "2", [3]), None)
    });
    check(r#"42["a",1,2]"#, &|b| {
        encode_event(b, Prefix::EngineIoMessage, "/", "a", &vec![1, 2], None)
    });
}

/// Every example round-trips byte for byte through decode and encode.
#[test]
fn spec_examples_round_trip() {
    for text in [
        "0",
        r#"0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}"#,
        r#"4{"message":"Not authorized"}"#,
        r#"2["foo"]"#,
        r#"2/admin,["bar"]"#,
        r#"51-["baz",{"_placeholder":true,"num":0}]"#,
        r#"52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
        r#"212["foo"]"#,
        r#"3/admin,13["bar"]"#,
        r#"61-15["bar",{"_placeholder":true,"num":0}]"#,
        "1",
        "1/admin,",
        r#"2[1,"numbers are names too"]"#,
        r#"2["cafe",{"k":[1.50,-0,1e3],"é":"\u00e9"}]"#,
    ] {
        assert_eq!(reencode(text), text);
    }
    // The forms the decoder accepts but the encoder normalises.
    assert_eq!(reencode("0/custom"), "0/custom,");
    assert_eq!(reencode(r#"2/,["a"]"#), r#"2["a"]"#);
    assert_eq!(reencode(r#"2007["a"]"#), r#"27["a"]"#);
}

/// The protocol suite's "should send a plain-text packet": the echo keeps
/// the client's bytes, key order and number forms.
#[test]
fn echo_is_byte_exact() {
    let incoming = decode(r#"2["message",1,"2",{"3":[true]}]"#);
    let mut buf = String::new();
    encode_event(
        &mut buf,
        Prefix::EngineIoMessage,
        "/",
        "message-back",
        incoming.args(),
        None,
    )
    .unwrap();
    assert_eq!(buf, r#"42["message-back",1,"2",{"3":[true]}]"#);

    let incoming = decode(r#"2456["message-with-ack",1,"2",{"3":[false]}]"#);
    let PacketData::Event(event) = &incoming.data else {
        panic!()
    };
    buf.clear();
    encode_ack(
        &mut buf,
        Prefix::EngineIoMessage,
        "/",
        event.ack_id.unwrap(),
        &event.args,
    )
    .unwrap();
    assert_eq!(buf, r#"43456[1,"2",{"3":[false]}]"#);

    // Whitespace inside arguments is theirs; around them it is not kept.
    let incoming = decode(r#"2[ "e" , {"a" : 1} ,[ ] ]"#);
    assert_eq!(raw_args(&incoming), [r#"{"a" : 1}"#, "[ ]"]);
}

#[test]
fn suite_packets() {
    assert!(matches!(
        decode(r#"0{"token":"123"}"#).data,
        PacketData::Connect(Some(_))
    ));
    let p = decode(r#"0/custom,{"token":"abc"}"#);
    assert_eq!(p.namespace, "/custom");
    assert_eq!(decode("0/random").namespace, "/random");
    assert_eq!(decode("1/custom").namespace, "/custom");
    // The suite's malformed packets (after the Engine.IO `4`).
    assert!(matches!(
        Packet::decode("abc"),
        Err(PacketError::UnknownType('a'))
    ));
    assert!(matches!(
        Packet::decode("2{}"),
        Err(PacketError::PayloadType {
            packet_type: PacketType::Event,
            ..
        })
    ));
    assert!(Packet::decode(r#"2abc["message-with-ack",1,"2",{"3":[false]}]"#).is_err());
}

#[test]
fn event_names() {
    let PacketData::Event(e) = decode(r#"2["caf\u00e9"]"#).data else {
        panic!()
    };
    assert_eq!(e.name, EventName::Text(Cow::Owned("café".to_owned())));
    let PacketData::Event(e) = decode(r#"2["plain"]"#).data else {
        panic!()
    };
    assert!(matches!(e.name, EventName::Text(Cow::Borrowed("plain"))));
    let PacketData::Event(e) = decode("2[-1.5]").data else {
        panic!()
    };
    assert_eq!(e.name, EventName::Number("-1.5"));
    for reserved in RESERVED_EVENT_NAMES {
        let text = format!(r#"2["{reserved}",1]"#);
        assert!(
            matches!(Packet::decode(&text), Err(PacketError::ReservedEventName(r)) if r == reserved)
        );
        let mut buf = String::from("x");
        assert!(matches!(
            encode_event(&mut buf, Prefix::Bare, "/", reserved, &(), None),
            Err(EncodeError::ReservedEventName(_))
        ));
        assert_eq!(buf, "x", "nothing appended on error");
    }
    // Escaped reserved names are still reserved.
    assert!(matches!(
        Packet::decode(r#"2["\u0063onnect"]"#),
        Err(PacketError::ReservedEventName("connect"))
    ));
    // Reserved only as exact names.
    assert!(Packet::decode(r#"2["Connect"]"#).is_ok());
}

/// Whether an error is the one a case expects.
type IsExpected = fn(&PacketError) -> bool;

#[test]
fn rejections() {
    use PacketError as E;
    let cases: &[(&str, IsExpected)] = &[
        ("", |e| matches!(e, E::Empty)),
        ("7", |e| matches!(e, E::UnknownType('7'))),
        ("é", |e| matches!(e, E::UnknownType('é'))),
        (r#"5["a"]"#, |e| matches!(e, E::AttachmentCount)),
        (r#"5-["a"]"#, |e| matches!(e, E::AttachmentCount)),
        (r#"51["a"]"#, |e| matches!(e, E::AttachmentCount)),
        ("599999999999999999999999-[\"a\"]", |e| {
            matches!(e, E::AttachmentCount)
        }),
        ("218446744073709551616[\"a\"]", |e| {
            matches!(e, E::AckIdOutOfRange)
        }),
        ("01{}", |e| {
            matches!(e, E::AckIdNotAllowed(PacketType::Connect))
        }),
        ("112", |e| {
            matches!(e, E::AckIdNotAllowed(PacketType::Disconnect))
        }),
        ("3[]", |e| matches!(e, E::MissingAckId)),
        ("61-[]", |e| matches!(e, E::MissingAckId)),
        ("2", |e| matches!(e, E::MissingPayload(PacketType::Event))),
        ("2/admin,", |e| {
            matches!(e, E::MissingPayload(PacketType::Event))
        }),
        ("31", |e| matches!(e, E::MissingPayload(PacketType::Ack))),
        ("4", |e| {
            matches!(e, E::MissingPayload(PacketType::ConnectError))
        }),
        ("1{}", |e| {
            matches!(e, E::UnexpectedPayload(PacketType::Disconnect))
        }),
        ("0[]", |e| matches!(e, E::PayloadType { .. })),
        ("0\"x\"", |e| matches!(e, E::PayloadType { .. })),
        ("31{}", |e| matches!(e, E::PayloadType { .. })),
        ("4[]", |e| matches!(e, E::PayloadType { .. })),
        ("2[]", |e| matches!(e, E::EmptyEvent)),
        ("2[{}]", |e| matches!(e, E::EventNameType)),
        ("2[null]", |e| matches!(e, E::EventNameType)),
        ("2[true,1]", |e| matches!(e, E::EventNameType)),
        ("2[\"a\"", |e| matches!(e, E::Json(_))),
        ("2[\"a\"] x", |e| matches!(e, E::Json(_))),
        ("0{\"a\":}", |e| matches!(e, E::Json(_))),
        ("2[\"a\",\"\\ud800\"]x", |e| matches!(e, E::Json(_))),
    ];
    for (text, expected) in cases {
        match Packet::decode(text) {
            Ok(p) => panic!("{text:?} decoded as {p:?}"),
            Err(e) => {
                assert!(expected(&e), "{text:?}: {e:?}");
                assert!(!e.to_string().is_empty());
            }
        }
    }
    // Deep nesting: a raw argument is skipped without recursion (serde_json's
    // `ignore_value` keeps its own stack), so no stack overflow here; the
    // recursion limit (128) applies when a handler deserializes it.
    let deep = format!("2[\"a\",{}{}]", "[".repeat(100_000), "]".repeat(100_000));
    let packet = Packet::decode(&deep).expect("raw arguments are not walked");
    assert!(serde_json::from_str::<serde_json::Value>(packet.args()[0].get()).is_err());
    // The largest ack id is fine.
    assert!(Packet::decode("218446744073709551615[\"a\"]").is_ok());
}

#[test]
fn encode_rejections() {
    let mut buf = String::from("kept");
    let check = |result: Result<(), EncodeError>, buf: &str| {
        assert!(result.is_err());
        assert_eq!(buf, "kept");
    };
    check(
        encode_event(&mut buf, Prefix::Bare, "admin", "a", &(), None),
        &buf,
    );
    check(
        encode_event(&mut buf, Prefix::Bare, "/a,b", "a", &(), None),
        &buf,
    );
    check(
        encode_event(&mut buf, Prefix::Bare, "/", "a", &1, None),
        &buf,
    );
    check(
        encode_event(&mut buf, Prefix::Bare, "/", "a", &"s", None),
        &buf,
    );
    check(encode_ack(&mut buf, Prefix::Bare, "/", 1, &"s"), &buf);
    check(
        encode_connect(&mut buf, Prefix::Bare, "/", Some(&[1])),
        &buf,
    );
    check(encode_connect_error(&mut buf, Prefix::Bare, "/", &1), &buf);
    let mut map = std::collections::HashMap::new();
    map.insert((1, 2), 3);
    check(
        encode_event(&mut buf, Prefix::Bare, "/", "a", &(map,), None),
        &buf,
    );
    let header = Header {
        packet_type: PacketType::Event,
        attachments: 1,
        namespace: "/",
        ack_id: None,
    };
    assert!(matches!(
        header.write(&mut buf, Prefix::Bare),
        Err(EncodeError::AttachmentsNotAllowed(_))
    ));
    let header = Header {
        packet_type: PacketType::Connect,
        attachments: 0,
        namespace: "/",
        ack_id: Some(1),
    };
    assert!(matches!(
        header.write(&mut buf, Prefix::Bare),
        Err(EncodeError::AckIdNotAllowed(_))
    ));
    assert_eq!(buf, "kept");
}

#[test]
fn encode_appends_and_handles_empty_args() {
    let mut buf = String::new();
    encode_event(&mut buf, Prefix::EngineIoMessage, "/", "a", &(), None).unwrap();
    encode_event(
        &mut buf,
        Prefix::EngineIoMessage,
        "/",
        "b",
        &Vec::<u8>::new(),
        None,
    )
    .unwrap();
    let spaced: &RawValue = serde_json::from_str("[ ]").unwrap();
    encode_event(&mut buf, Prefix::EngineIoMessage, "/", "c", spaced, None).unwrap();
    let one: &RawValue = serde_json::from_str("[ 1 ]").unwrap();
    encode_event(&mut buf, Prefix::EngineIoMessage, "/", "d", one, None).unwrap();
    encode_event(
        &mut buf,
        Prefix::EngineIoMessage,
        "/",
        "q\"é\n",
        &("ü\u{1F600}",),
        None,
    )
    .unwrap();
    assert_eq!(
        buf,
        "42[\"a\"]42[\"b\"]42[\"c\"]42[\"d\", 1 ]42[\"q\\\"é\\n\",\"ü\u{1F600}\"]"
    );
}

/// Every prefix of valid packets, and every single-bit flip of them,
/// decodes or fails without panicking.
#[test]
fn prefixes_and_bit_flips_never_panic() {
    let samples = [
        r#"0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}"#,
        r#"52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
        r#"61-15["bar",{"_placeholder":true,"num":0}]"#,
        r#"2/ns,123["caf\u00e9",{"k":[1.5e3,null,true]}]"#,
        r#"3/admin,13["bar"]"#,
        r#"4{"message":"Not authorized","data":{"a":1}}"#,
    ];
    for sample in samples {
        for end in 0..=sample.len() {
            if let Some(prefix) = sample.get(..end) {
                let _ = Packet::decode(prefix);
            }
        }
        let bytes = sample.as_bytes();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut flipped = bytes.to_vec();
                flipped[i] ^= 1 << bit;
                if let Ok(text) = std::str::from_utf8(&flipped) {
                    if let Ok(packet) = Packet::decode(text) {
                        // Whatever decodes also re-encodes and decodes again.
                        let mut buf = String::new();
                        if packet.encode(&mut buf, Prefix::Bare).is_ok() {
                            Packet::decode(&buf).expect("an encoding decodes");
                        }
                    }
                }
            }
        }
    }
}

fn arb_namespace() -> impl Strategy<Value = String> {
    prop_oneof![Just("/".to_owned()), "/[a-zA-Z0-9_/é-]{0,12}"]
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        // Quarters are exact in binary, so they survive serde_json's
        // default (not float_roundtrip) parsing.
        (-4000i32..4000).prop_map(|i| serde_json::Value::from(f64::from(i) / 4.0)),
        ".{0,8}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(".{0,4}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn event_round_trip(
        namespace in arb_namespace(),
        name in ".{0,10}".prop_filter("not reserved", |n| !RESERVED_EVENT_NAMES.contains(&n.as_str())),
        args in prop::collection::vec(arb_json(), 0..4),
        ack_id in proptest::option::of(any::<u64>()),
    ) {
        let mut buf = String::new();
        encode_event(&mut buf, Prefix::Bare, &namespace, &name, &args, ack_id).unwrap();
        let packet = Packet::decode(&buf).unwrap();
        prop_assert_eq!(packet.namespace, namespace.as_str());
        let PacketData::Event(event) = &packet.data else { panic!("not an event") };
        prop_assert_eq!(event.name.as_str(), name.as_str());
        prop_assert_eq!(event.ack_id, ack_id);
        let decoded: Vec<serde_json::Value> = event
            .args
            .iter()
            .map(|raw| serde_json::from_str(raw.get()).unwrap())
            .collect();
        prop_assert_eq!(&decoded, &args);
        // Re-encoding the decoded packet gives the same bytes.
        let mut again = String::new();
        packet.encode(&mut again, Prefix::Bare).unwrap();
        prop_assert_eq!(again, buf);
    }

    #[test]
    fn ack_round_trip(
        namespace in arb_namespace(),
        args in prop::collection::vec(arb_json(), 0..4),
        ack_id in any::<u64>(),
    ) {
        let mut buf = String::from("4");
        encode_ack(&mut buf, Prefix::Bare, &namespace, ack_id, &args).unwrap();
        let packet = Packet::decode(&buf[1..]).unwrap();
        let PacketData::Ack(ack) = &packet.data else { panic!("not an ack") };
        prop_assert_eq!(ack.ack_id, ack_id);
        prop_assert_eq!(ack.args.len(), args.len());
        let mut again = String::from("4");
        packet.encode(&mut again, Prefix::Bare).unwrap();
        prop_assert_eq!(again, buf);
    }

    #[test]
    fn random_text_never_panics(text in "[0-6/,\\-0-9\\[\\]{}\":a-z ]{0,40}") {
        if let Ok(packet) = Packet::decode(&text) {
            let mut buf = String::new();
            if packet.encode(&mut buf, Prefix::Bare).is_ok() {
                prop_assert!(Packet::decode(&buf).is_ok());
            }
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = Packet::decode(&text);
    }
}
