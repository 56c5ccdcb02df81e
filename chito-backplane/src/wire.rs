//! The wire format of what crosses the broker: a compact binary encoding of
//! its own, the same for Redis and NATS.
//!
//! Every message starts with a header of 10 bytes:
//!
//! ```text
//! version: u8 = 3 | kind: u8 | origin: u64 (the sending node's NodeId)
//! ```
//!
//! and goes on by kind (integers big-endian; `str16` is a u16 length and
//! that many UTF-8 bytes, `str32` the same with a u32 length; `opt` is a
//! byte 0 (absent) or 1 followed by the value):
//!
//! | kind | name     | body |
//! |------|----------|------|
//! | 1    | emit     | `seq: u64, target, payload` |
//! | 2    | joined   | `room: str16, number: u64, data: opt str32` |
//! | 3    | left     | `room: str16, number: u64` |
//! | 4    | (retired) | a snapshot without parts: refused as an unknown kind |
//! | 5    | goodbye  | (nothing) |
//! | 6    | query    | `id: u64, room: str16` |
//! | 7    | reply    | `id: u64, members: u32`, per member `number: u64, data: opt str32` |
//! | 8    | snapshot | `round: u64, rooms: u32`, per room `room: str16, part: u32, parts: u32, members: u32`, per member `number: u64, data: opt str32` |
//!
//! `target` is a [`Select`]: `rooms`, `members`, `except_rooms`,
//! `except_members`, each a `count: u16` then that many rooms (`str16`) or
//! members (`node: u64, number: u64`); empty `rooms` and `members` select
//! everyone. `payload` is a byte 0 (text) or 1 (binary) followed by one
//! message up to the end, or a byte 2 (batch) followed by `count: u16`
//! and per message `tag: u8` (0 text, 1 binary), `len: u32` and `len`
//! bytes. Member numbers in presence, snapshots and replies belong to the
//! origin node.
//!
//! A snapshot is one or more messages of the same `round` (increasing per
//! origin). A room fits in one message as `part` 0 of `parts` 1; a room
//! too large for one message is cut into `parts` messages, each holding
//! `part` (0, 1, …) of its member list, in order: the receiver applies the
//! room once it has every part of that origin's round. Decoding refuses a
//! zero `parts` and a `part` not below `parts`. An empty room list is a
//! heartbeat.
//!
//! Decoding reads broker-controlled bytes: it never panics, it returns
//! [`DecodeError`] for anything short, long, unknown or not UTF-8, and the
//! caller counts and drops it. An unknown version is an error too, so a
//! future format change is seen, not misread.

use std::sync::Arc;

use chito::rooms::{Envelope, MemberId, NodeId, Payload, PresenceUpdate, RemoteMembers, Select};
use chito::{Message, SharedBatch, SharedMessage};

/// The format version this crate writes and reads.
// 2: rooms targets carry except-rooms. 3: targets are selections (member
// lists), payloads may be batches.
pub(crate) const VERSION: u8 = 3;

const PAYLOAD_TEXT: u8 = 0;
const PAYLOAD_BINARY: u8 = 1;
const PAYLOAD_BATCH: u8 = 2;

const KIND_EMIT: u8 = 1;
const KIND_JOINED: u8 = 2;
const KIND_LEFT: u8 = 3;
const KIND_GOODBYE: u8 = 5;
const KIND_QUERY: u8 = 6;
const KIND_REPLY: u8 = 7;
const KIND_SNAPSHOT: u8 = 8;

/// A member in a snapshot: its number on the origin node and its presence
/// data.
pub(crate) type Member = (u64, Option<Arc<str>>);

/// One room in a snapshot message: the whole member list (`part` 0 of
/// `parts` 1) or one piece of it. `M` is a borrowed slice when encoding,
/// a vector when decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RoomPart<M> {
    pub(crate) room: Arc<str>,
    /// From 0, below `parts`.
    pub(crate) part: u32,
    /// At least 1.
    pub(crate) parts: u32,
    pub(crate) members: M,
}

/// One decoded broker message.
pub(crate) enum Wire {
    Emit(Envelope),
    Presence(NodeId, PresenceUpdate),
    Snapshot {
        origin: NodeId,
        round: u64,
        rooms: Vec<RoomPart<Vec<Member>>>,
    },
    Goodbye(NodeId),
    Query {
        origin: NodeId,
        id: u64,
        room: String,
    },
    Reply {
        origin: NodeId,
        id: u64,
        members: RemoteMembers,
    },
}

/// Why bytes from the broker were not a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// Ended before a field did.
    Short,
    /// A version this crate does not read.
    Version(u8),
    /// An unknown kind, target or message tag.
    Tag(u8),
    /// A string that is not UTF-8.
    Utf8,
    /// Bytes left after a complete message.
    Trailing,
    /// A snapshot part numbered `part` of `parts` with `parts` 0 or `part`
    /// not below it.
    Parts,
}

/// A string longer than its length field allows (room names: 65 535
/// bytes; data: 4 GiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooLong;

fn header(kind: u8, origin: NodeId, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + capacity);
    out.push(VERSION);
    out.push(kind);
    out.extend_from_slice(&origin.as_u64().to_be_bytes());
    out
}

fn put_str16(out: &mut Vec<u8>, s: &str) -> Result<(), TooLong> {
    let len = u16::try_from(s.len()).map_err(|_| TooLong)?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn put_opt_str32(out: &mut Vec<u8>, s: Option<&str>) -> Result<(), TooLong> {
    match s {
        None => out.push(0),
        Some(s) => {
            let len = u32::try_from(s.len()).map_err(|_| TooLong)?;
            out.push(1);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
    Ok(())
}

/// A list of room names: `count: u16`, then each as `str16`.
fn put_rooms(out: &mut Vec<u8>, rooms: &[Arc<str>]) -> Result<(), TooLong> {
    let count = u16::try_from(rooms.len()).map_err(|_| TooLong)?;
    out.extend_from_slice(&count.to_be_bytes());
    for room in rooms {
        put_str16(out, room)?;
    }
    Ok(())
}

/// A list of members: `count: u16`, then each as `node: u64, number: u64`.
fn put_members(out: &mut Vec<u8>, members: &[MemberId]) -> Result<(), TooLong> {
    let count = u16::try_from(members.len()).map_err(|_| TooLong)?;
    out.extend_from_slice(&count.to_be_bytes());
    for m in members {
        out.extend_from_slice(&m.node().as_u64().to_be_bytes());
        out.extend_from_slice(&m.number().to_be_bytes());
    }
    Ok(())
}

/// A message's tag and bytes.
fn tagged(message: &SharedMessage) -> (u8, &[u8]) {
    match message.message() {
        Message::Text(t) => (PAYLOAD_TEXT, t.as_bytes()),
        Message::Binary(b) => (PAYLOAD_BINARY, b),
    }
}

/// Encodes an emit: one buffer, published unchanged on every channel the
/// target needs.
pub(crate) fn encode_emit(e: &Envelope) -> Result<Vec<u8>, TooLong> {
    let target = &e.target;
    let names = |rooms: &[std::sync::Arc<str>]| rooms.iter().map(|r| 2 + r.len()).sum::<usize>();
    let size = 8
        + 4 * 2
        + names(&target.rooms)
        + names(&target.except_rooms)
        + 16 * (target.members.len() + target.except_members.len())
        + 3
        + e.payload.len()
        + 5 * e.payload.messages().len();
    let mut out = header(KIND_EMIT, e.origin, size);
    out.extend_from_slice(&e.seq.to_be_bytes());
    put_rooms(&mut out, &target.rooms)?;
    put_members(&mut out, &target.members)?;
    put_rooms(&mut out, &target.except_rooms)?;
    put_members(&mut out, &target.except_members)?;
    match &e.payload {
        Payload::Single(message) => {
            let (tag, bytes) = tagged(message);
            out.push(tag);
            out.extend_from_slice(bytes);
        }
        Payload::Batch(batch) => {
            out.push(PAYLOAD_BATCH);
            let count = u16::try_from(batch.messages().len()).map_err(|_| TooLong)?;
            out.extend_from_slice(&count.to_be_bytes());
            for message in batch.messages() {
                let (tag, bytes) = tagged(message);
                let len = u32::try_from(bytes.len()).map_err(|_| TooLong)?;
                out.push(tag);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(bytes);
            }
        }
    }
    Ok(out)
}

/// Encodes a presence delta of `origin`'s member.
pub(crate) fn encode_presence(origin: NodeId, update: &PresenceUpdate) -> Result<Vec<u8>, TooLong> {
    match update {
        PresenceUpdate::Joined { room, member, data } => {
            let mut out = header(KIND_JOINED, origin, room.len() + 16);
            put_str16(&mut out, room)?;
            out.extend_from_slice(&member.number().to_be_bytes());
            put_opt_str32(&mut out, data.as_deref())?;
            Ok(out)
        }
        PresenceUpdate::Left { room, member } => {
            let mut out = header(KIND_LEFT, origin, room.len() + 10);
            put_str16(&mut out, room)?;
            out.extend_from_slice(&member.number().to_be_bytes());
            Ok(out)
        }
    }
}

fn encode_members<'a>(
    out: &mut Vec<u8>,
    members: impl ExactSizeIterator<Item = (u64, Option<&'a str>)>,
) -> Result<(), TooLong> {
    let count = u32::try_from(members.len()).map_err(|_| TooLong)?;
    out.extend_from_slice(&count.to_be_bytes());
    for (number, data) in members {
        out.extend_from_slice(&number.to_be_bytes());
        put_opt_str32(out, data)?;
    }
    Ok(())
}

/// The encoded size of a snapshot message's header and room count.
pub(crate) const SNAPSHOT_HEADER: usize = 10 + 8 + 4;

/// The encoded size of a room's header in a snapshot message (name, part,
/// parts, member count).
pub(crate) fn room_part_header(room: &str) -> usize {
    2 + room.len() + 4 + 4 + 4
}

/// The encoded size of one member in a snapshot message.
pub(crate) fn member_size((_, data): &Member) -> usize {
    8 + 1 + data.as_ref().map_or(0, |d| 4 + d.len())
}

/// Encodes one message of `origin`'s snapshot `round` (an empty one is a
/// heartbeat).
pub(crate) fn encode_snapshot(
    origin: NodeId,
    round: u64,
    rooms: &[RoomPart<&[Member]>],
) -> Result<Vec<u8>, TooLong> {
    let size: usize = rooms
        .iter()
        .map(|r| room_part_header(&r.room) + r.members.iter().map(member_size).sum::<usize>())
        .sum();
    let mut out = header(KIND_SNAPSHOT, origin, 8 + 4 + size);
    out.extend_from_slice(&round.to_be_bytes());
    let count = u32::try_from(rooms.len()).map_err(|_| TooLong)?;
    out.extend_from_slice(&count.to_be_bytes());
    for room in rooms {
        put_str16(&mut out, &room.room)?;
        out.extend_from_slice(&room.part.to_be_bytes());
        out.extend_from_slice(&room.parts.to_be_bytes());
        encode_members(
            &mut out,
            room.members.iter().map(|(n, d)| (*n, d.as_deref())),
        )?;
    }
    Ok(out)
}

/// Encodes `origin`'s goodbye.
pub(crate) fn encode_goodbye(origin: NodeId) -> Vec<u8> {
    header(KIND_GOODBYE, origin, 0)
}

/// Encodes a member query for `room`.
pub(crate) fn encode_query(origin: NodeId, id: u64, room: &str) -> Result<Vec<u8>, TooLong> {
    let mut out = header(KIND_QUERY, origin, 10 + room.len());
    out.extend_from_slice(&id.to_be_bytes());
    put_str16(&mut out, room)?;
    Ok(out)
}

/// Encodes the answer to query `id`: `origin`'s members of the room.
pub(crate) fn encode_reply(
    origin: NodeId,
    id: u64,
    members: &[(MemberId, Option<Arc<str>>)],
) -> Result<Vec<u8>, TooLong> {
    let mut out = header(KIND_REPLY, origin, 12 + members.len() * 9);
    out.extend_from_slice(&id.to_be_bytes());
    encode_members(
        &mut out,
        members.iter().map(|(m, d)| (m.number(), d.as_deref())),
    )?;
    Ok(out)
}

/// A cursor over untrusted bytes: every read checks the length first.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let (head, tail) = self.rest.split_at_checked(n).ok_or(DecodeError::Short)?;
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        let (&b, tail) = self.rest.split_first().ok_or(DecodeError::Short)?;
        self.rest = tail;
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.take(N)?.try_into().map_err(|_| DecodeError::Short)
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_be_bytes)
    }

    fn str_of(&mut self, len: usize) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.take(len)?).map_err(|_| DecodeError::Utf8)
    }

    fn str16(&mut self) -> Result<&'a str, DecodeError> {
        let len = self.u16()?;
        self.str_of(usize::from(len))
    }

    fn opt_str32(&mut self) -> Result<Option<Arc<str>>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => {
                let len = usize::try_from(self.u32()?).map_err(|_| DecodeError::Short)?;
                Ok(Some(Arc::from(self.str_of(len)?)))
            }
            tag => Err(DecodeError::Tag(tag)),
        }
    }

    /// What `put_rooms` wrote.
    fn rooms(&mut self) -> Result<Vec<Arc<str>>, DecodeError> {
        let raw = usize::from(self.u16()?);
        let count = self.count(raw, 2)?;
        let mut rooms = Vec::with_capacity(count);
        for _ in 0..count {
            rooms.push(Arc::from(self.str16()?));
        }
        Ok(rooms)
    }

    fn member(&mut self) -> Result<MemberId, DecodeError> {
        let node = NodeId::from_u64(self.u64()?);
        Ok(MemberId::new(node, self.u64()?))
    }

    /// What `put_members` wrote.
    fn member_list(&mut self) -> Result<Vec<MemberId>, DecodeError> {
        let raw = usize::from(self.u16()?);
        let count = self.count(raw, 16)?;
        let mut members = Vec::with_capacity(count);
        for _ in 0..count {
            members.push(self.member()?);
        }
        Ok(members)
    }

    /// One message of `tag` made of `bytes`.
    fn message(tag: u8, bytes: &[u8]) -> Result<SharedMessage, DecodeError> {
        match tag {
            PAYLOAD_TEXT => Ok(SharedMessage::text(
                std::str::from_utf8(bytes)
                    .map_err(|_| DecodeError::Utf8)?
                    .to_owned(),
            )),
            PAYLOAD_BINARY => Ok(SharedMessage::binary(bytes.to_vec())),
            tag => Err(DecodeError::Tag(tag)),
        }
    }

    /// What `encode_emit` wrote after the target: the rest of the bytes.
    fn payload(&mut self) -> Result<Payload, DecodeError> {
        match self.u8()? {
            PAYLOAD_BATCH => {
                let raw = usize::from(self.u16()?);
                let count = self.count(raw, 5)?;
                let mut messages = Vec::with_capacity(count);
                for _ in 0..count {
                    let tag = self.u8()?;
                    let len = usize::try_from(self.u32()?).map_err(|_| DecodeError::Short)?;
                    messages.push(Reader::message(tag, self.take(len)?)?);
                }
                Ok(Payload::Batch(SharedBatch::new(messages)))
            }
            tag => {
                let message = Reader::message(tag, self.rest)?;
                self.rest = &[];
                Ok(Payload::Single(message))
            }
        }
    }

    /// A count of items each at least `min` bytes long, checked against
    /// what is left, so a forged count cannot make us reserve memory.
    fn count(&mut self, count: usize, min: usize) -> Result<usize, DecodeError> {
        if count.saturating_mul(min) > self.rest.len() {
            return Err(DecodeError::Short);
        }
        Ok(count)
    }

    fn members(&mut self, node: NodeId) -> Result<RemoteMembers, DecodeError> {
        let raw = usize::try_from(self.u32()?).map_err(|_| DecodeError::Short)?;
        let count = self.count(raw, 9)?;
        let mut members = Vec::with_capacity(count);
        for _ in 0..count {
            let number = self.u64()?;
            members.push((MemberId::new(node, number), self.opt_str32()?));
        }
        Ok(members)
    }

    fn end(&self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing)
        }
    }
}

/// Decodes one broker message.
pub(crate) fn decode(bytes: &[u8]) -> Result<Wire, DecodeError> {
    let mut r = Reader { rest: bytes };
    let version = r.u8()?;
    if version != VERSION {
        return Err(DecodeError::Version(version));
    }
    let kind = r.u8()?;
    let origin = NodeId::from_u64(r.u64()?);
    let wire = match kind {
        KIND_EMIT => {
            let seq = r.u64()?;
            let target = Select {
                rooms: r.rooms()?,
                members: r.member_list()?,
                except_rooms: r.rooms()?,
                except_members: r.member_list()?,
            };
            let payload = r.payload()?;
            Wire::Emit(Envelope {
                origin,
                seq,
                target,
                payload,
            })
        }
        KIND_JOINED => {
            let room = Arc::from(r.str16()?);
            let member = MemberId::new(origin, r.u64()?);
            let data = r.opt_str32()?;
            Wire::Presence(origin, PresenceUpdate::Joined { room, member, data })
        }
        KIND_LEFT => {
            let room = Arc::from(r.str16()?);
            let member = MemberId::new(origin, r.u64()?);
            Wire::Presence(origin, PresenceUpdate::Left { room, member })
        }
        KIND_SNAPSHOT => {
            let round = r.u64()?;
            let raw = usize::try_from(r.u32()?).map_err(|_| DecodeError::Short)?;
            let count = r.count(raw, room_part_header(""))?;
            let mut rooms = Vec::with_capacity(count);
            for _ in 0..count {
                let room = Arc::from(r.str16()?);
                let part = r.u32()?;
                let parts = r.u32()?;
                if part >= parts {
                    return Err(DecodeError::Parts);
                }
                let members = r
                    .members(origin)?
                    .into_iter()
                    .map(|(m, d)| (m.number(), d))
                    .collect();
                rooms.push(RoomPart {
                    room,
                    part,
                    parts,
                    members,
                });
            }
            Wire::Snapshot {
                origin,
                round,
                rooms,
            }
        }
        KIND_GOODBYE => Wire::Goodbye(origin),
        KIND_QUERY => {
            let id = r.u64()?;
            let room = r.str16()?.to_owned();
            Wire::Query { origin, id, room }
        }
        KIND_REPLY => {
            let id = r.u64()?;
            let members = r.members(origin)?;
            Wire::Reply {
                origin,
                id,
                members,
            }
        }
        other => return Err(DecodeError::Tag(other)),
    };
    r.end()?;
    Ok(wire)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: u64) -> NodeId {
        NodeId::from_u64(n)
    }

    /// A batch of a text and two binary messages (one empty).
    fn batch() -> Payload {
        Payload::Batch(SharedBatch::new(vec![
            SharedMessage::text("451-[\"f\",{}]".into()),
            SharedMessage::binary(vec![0, 1, 2]),
            SharedMessage::binary(Vec::new()),
        ]))
    }

    fn messages(p: &Payload) -> Vec<(bool, Vec<u8>)> {
        p.messages()
            .iter()
            .map(|m| match m.message() {
                Message::Text(t) => (true, t.as_bytes().to_vec()),
                Message::Binary(b) => (false, b.to_vec()),
            })
            .collect()
    }

    #[test]
    fn emit_round_trips() {
        let full = Select {
            rooms: vec![Arc::from("a.b c"), Arc::from("ü>*")],
            members: vec![MemberId::new(node(2), 7), MemberId::new(node(3), 1)],
            except_rooms: vec![Arc::from("muted")],
            except_members: vec![MemberId::new(node(1), 9)],
        };
        let cases = [
            (full, Payload::Single(SharedMessage::text("héllo".into()))),
            (Select::default(), batch()),
            (
                Select {
                    members: vec![MemberId::new(node(3), 4)],
                    ..Select::default()
                },
                Payload::Single(SharedMessage::binary(vec![0, 1, 2])),
            ),
            (Select::room(""), Payload::Batch(SharedBatch::new(vec![]))),
        ];
        for (target, payload) in cases {
            let e = Envelope {
                origin: node(0xabcdef),
                seq: 42,
                target: target.clone(),
                payload: payload.clone(),
            };
            let Ok(Wire::Emit(d)) = decode(&encode_emit(&e).unwrap()) else {
                panic!("{target:?}")
            };
            assert_eq!((d.origin, d.seq), (e.origin, 42));
            assert_eq!(d.target, target);
            assert_eq!(
                matches!(d.payload, Payload::Batch(_)),
                matches!(payload, Payload::Batch(_))
            );
            assert_eq!(messages(&d.payload), messages(&payload));
        }
    }

    #[test]
    fn a_batch_too_long_for_its_count_is_refused_when_encoding() {
        let e = Envelope {
            origin: node(1),
            seq: 1,
            target: Select::default(),
            payload: Payload::Batch(SharedBatch::new(vec![
                SharedMessage::binary(Vec::new());
                usize::from(u16::MAX) + 1
            ])),
        };
        assert_eq!(encode_emit(&e).err(), Some(TooLong));
    }

    #[test]
    fn presence_snapshot_query_reply_round_trip() {
        let o = node(77);
        let j = PresenceUpdate::Joined {
            room: "r".into(),
            member: MemberId::new(o, 3),
            data: Some("Ann".into()),
        };
        assert!(matches!(
            decode(&encode_presence(o, &j).unwrap()),
            Ok(Wire::Presence(n, PresenceUpdate::Joined { member, data: Some(d), .. }))
                if n == o && member == MemberId::new(o, 3) && &*d == "Ann"
        ));
        let members: Vec<Member> = vec![(1, None), (2, Some("x".into()))];
        let snap = [
            RoomPart {
                room: "r".into(),
                part: 0,
                parts: 1,
                members: &members[..],
            },
            RoomPart {
                room: "big".into(),
                part: 2,
                parts: 3,
                members: &members[1..],
            },
        ];
        let bytes = encode_snapshot(o, 9, &snap).unwrap();
        assert_eq!(
            bytes.len(),
            SNAPSHOT_HEADER
                + room_part_header("r")
                + room_part_header("big")
                + members.iter().map(member_size).sum::<usize>()
                + member_size(&members[1])
        );
        let Ok(Wire::Snapshot {
            origin,
            round: 9,
            rooms,
        }) = decode(&bytes)
        else {
            panic!()
        };
        assert_eq!(origin, o);
        let back: Vec<_> = rooms
            .iter()
            .map(|r| RoomPart {
                room: r.room.clone(),
                part: r.part,
                parts: r.parts,
                members: &r.members[..],
            })
            .collect();
        assert_eq!(back, snap);
        assert!(matches!(
            decode(&encode_snapshot(o, 1, &[]).unwrap()),
            Ok(Wire::Snapshot { rooms, .. }) if rooms.is_empty()
        ));
        assert!(matches!(decode(&encode_goodbye(o)), Ok(Wire::Goodbye(n)) if n == o));
        assert!(
            matches!(decode(&encode_query(o, 5, "q").unwrap()), Ok(Wire::Query { id: 5, room, .. }) if room == "q")
        );
        let reply = encode_reply(o, 5, &[(MemberId::new(o, 8), None)]).unwrap();
        assert!(
            matches!(decode(&reply), Ok(Wire::Reply { id: 5, members, .. }) if members == vec![(MemberId::new(o, 8), None)])
        );
    }

    #[test]
    fn garbage_never_panics() {
        // Every prefix of valid messages, every byte flipped, and random
        // bytes: decode returns, never panics.
        let o = node(1);
        let samples = [
            encode_emit(&Envelope {
                origin: o,
                seq: 1,
                target: Select {
                    rooms: vec!["room".into()],
                    members: vec![MemberId::new(node(2), 3)],
                    except_rooms: vec!["other".into()],
                    except_members: vec![MemberId::new(o, 4)],
                },
                payload: Payload::Single(SharedMessage::text("hi".into())),
            })
            .unwrap(),
            encode_emit(&Envelope {
                origin: o,
                seq: 2,
                target: Select::room("r"),
                payload: batch(),
            })
            .unwrap(),
            encode_snapshot(
                o,
                3,
                &[RoomPart {
                    room: "r".into(),
                    part: 1,
                    parts: 2,
                    members: &[(1, Some("d".into()))][..],
                }],
            )
            .unwrap(),
            encode_reply(o, 1, &[(MemberId::new(o, 1), Some("z".into()))]).unwrap(),
        ];
        for s in &samples {
            for n in 0..s.len() {
                let _ = decode(&s[..n]);
                for bit in 0..8 {
                    let mut m = s.clone();
                    m[n] ^= 1 << bit;
                    let _ = decode(&m);
                }
            }
        }
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for len in 0..2000 {
            let bytes: Vec<u8> = (0..len % 64)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = decode(&bytes);
        }
        // A forged count larger than the message is refused without
        // allocating for it.
        let mut forged = vec![VERSION, KIND_SNAPSHOT];
        forged.extend_from_slice(&1u64.to_be_bytes());
        forged.extend_from_slice(&1u64.to_be_bytes());
        forged.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(decode(&forged), Err(DecodeError::Short)));
        // A part not below its count, or a zero count, is refused.
        for (part, parts) in [(0, 0), (1, 1), (5, 2), (u32::MAX, u32::MAX)] {
            let mut forged = vec![VERSION, KIND_SNAPSHOT];
            forged.extend_from_slice(&1u64.to_be_bytes());
            forged.extend_from_slice(&1u64.to_be_bytes());
            forged.extend_from_slice(&1u32.to_be_bytes());
            forged.extend_from_slice(&1u16.to_be_bytes());
            forged.push(b'r');
            forged.extend_from_slice(&part.to_be_bytes());
            forged.extend_from_slice(&parts.to_be_bytes());
            forged.extend_from_slice(&0u32.to_be_bytes());
            assert_eq!(
                decode(&forged).err(),
                Some(DecodeError::Parts),
                "{part}/{parts}"
            );
        }
        // The retired snapshot kind is an unknown kind.
        let mut old = vec![VERSION, 4];
        old.extend_from_slice(&1u64.to_be_bytes());
        old.extend_from_slice(&0u32.to_be_bytes());
        assert_eq!(decode(&old).err(), Some(DecodeError::Tag(4)));
        assert!(matches!(decode(&[2, 1]), Err(DecodeError::Version(2))));
        // A batch whose count or a message length exceeds what is left is
        // refused before anything is allocated for it.
        let mut forged = vec![VERSION, KIND_EMIT];
        forged.extend_from_slice(&1u64.to_be_bytes());
        forged.extend_from_slice(&1u64.to_be_bytes());
        forged.extend_from_slice(&[0; 8]);
        let mut count = forged.clone();
        count.push(PAYLOAD_BATCH);
        count.extend_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(decode(&count).err(), Some(DecodeError::Short));
        let mut len = forged.clone();
        len.push(PAYLOAD_BATCH);
        len.extend_from_slice(&1u16.to_be_bytes());
        len.push(PAYLOAD_BINARY);
        len.extend_from_slice(&u32::MAX.to_be_bytes());
        len.extend_from_slice(&[0; 8]);
        assert_eq!(decode(&len).err(), Some(DecodeError::Short));
        // A batch message with an unknown tag, or text that is not UTF-8.
        let mut tag = forged.clone();
        tag.extend_from_slice(&[PAYLOAD_BATCH, 0, 1, 9, 0, 0, 0, 0]);
        assert_eq!(decode(&tag).err(), Some(DecodeError::Tag(9)));
        let mut utf8 = forged;
        utf8.extend_from_slice(&[PAYLOAD_BATCH, 0, 1, PAYLOAD_TEXT, 0, 0, 0, 1, 0xff]);
        assert_eq!(decode(&utf8).err(), Some(DecodeError::Utf8));
    }
}
