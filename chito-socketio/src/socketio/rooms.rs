//! Socket.IO rooms on `chito::rooms` (docs/socketio.md §5): one registry
//! per server, each socket a member. This module names things in it: the
//! registry key of a namespace's room, and the socket id a member id gives.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chito::rooms::{MemberId, NodeId};

/// Between a namespace and a room name in a registry key. Namespace names
/// never contain control characters (refused at CONNECT,
/// `Namespaces::resolve`), so the first one ends the namespace and keys of
/// different namespaces never collide.
const KEY_SEPARATOR: char = '\u{1f}';

/// The key of the room every socket of `namespace` is in (`io.of(nsp).emit`,
/// `socket.broadcast()` target it): the namespace's name alone, which no
/// room key equals (they all contain the separator).
pub(crate) fn namespace_key(namespace: &str) -> Arc<str> {
    Arc::from(namespace)
}

/// The key of `room` of `namespace`: `<nsp>\u{1f}<room>`.
pub(crate) fn room_key(namespace: &str, room: &str) -> Arc<str> {
    let mut key = String::with_capacity(namespace.len() + 1 + room.len());
    key.push_str(namespace);
    key.push(KEY_SEPARATOR);
    key.push_str(room);
    Arc::from(key)
}

/// The room name in `key` if it is a room of `namespace`.
pub(crate) fn room_of_key<'a>(namespace: &str, key: &'a str) -> Option<&'a str> {
    key.strip_prefix(namespace)?.strip_prefix(KEY_SEPARATOR)
}

/// A socket id's bytes: node (8) ‖ member number (8) ‖ random tail (4).
const ID_BYTES: usize = 20;

/// A socket id's length: 20 bytes in unpadded base64url.
const ID_LEN: usize = 27;

/// The socket id of `member`: unpadded base64url of its node id, its
/// number and `tail` (docs/socketio.md §5). The member id makes `to(id)`
/// a member target, with no room per socket; the random tail makes ids
/// unguessable from one another.
pub(crate) fn socket_id(member: MemberId, tail: u32) -> String {
    let mut bytes = [0u8; ID_BYTES];
    let (node, rest) = bytes.split_at_mut(8);
    let (number, random) = rest.split_at_mut(8);
    node.copy_from_slice(&member.node().as_u64().to_be_bytes());
    number.copy_from_slice(&member.number().to_be_bytes());
    random.copy_from_slice(&tail.to_be_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The member a socket id names, if `text` has a socket id's shape (the
/// tail is not checked: it makes ids hard to guess, and whoever calls
/// `to(id)` on the server holds the id already).
pub(crate) fn parse_socket_id(text: &str) -> Option<MemberId> {
    if text.len() != ID_LEN {
        return None;
    }
    let bytes: [u8; ID_BYTES] = URL_SAFE_NO_PAD.decode(text).ok()?.try_into().ok()?;
    let (node, rest) = bytes.split_at(8);
    let number = rest.get(..8)?;
    Some(MemberId::new(
        NodeId::from_u64(u64::from_be_bytes(node.try_into().ok()?)),
        u64::from_be_bytes(number.try_into().ok()?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_keys_keep_namespaces_apart() {
        assert_eq!(&*room_key("/", "general"), "/\u{1f}general");
        assert_eq!(room_of_key("/", "/\u{1f}general"), Some("general"));
        assert_eq!(room_of_key("/a", "/\u{1f}general"), None);
        assert_eq!(room_of_key("/", "/a\u{1f}general"), None);
        // The namespace room is no room of the namespace.
        assert_eq!(room_of_key("/", &namespace_key("/")), None);
        // A room name may hold the separator: only the first one splits.
        assert_eq!(
            room_of_key("/", &room_key("/", "x\u{1f}y")),
            Some("x\u{1f}y")
        );
    }

    #[test]
    fn socket_ids_round_trip_to_member_ids() {
        let member = MemberId::new(NodeId::from_u64(0x0123_4567_89ab_cdef), 42);
        let id = socket_id(member, 0xdead_beef);
        assert_eq!(id.len(), ID_LEN);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(parse_socket_id(&id), Some(member));
        // Another tail, another id, the same member.
        let other = socket_id(member, 7);
        assert_ne!(other, id);
        assert_eq!(parse_socket_id(&other), Some(member));
        // Room names are not ids.
        assert_eq!(parse_socket_id("general"), None);
        assert_eq!(parse_socket_id(&"!".repeat(ID_LEN)), None);
        for end in 0..id.len() {
            assert_eq!(parse_socket_id(&id[..end]), None);
        }
    }
}
