//! Who is who across nodes: [`NodeId`] names a registry (one per process
//! start), [`MemberId`] a member anywhere in the cluster.

use std::fmt;
use std::str::FromStr;

use crate::rand::Rng;

/// Identifies one [`Rooms`](super::Rooms) registry — one node of a
/// cluster. Drawn at random when the registry is made, so a restarted
/// process is a new node: its members and sequence numbers never mix with
/// those of its previous life.
///
/// Shown (and parsed) as 16 lowercase hexadecimal digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct NodeId(u64);

impl NodeId {
    /// A fresh random node id.
    pub fn random() -> NodeId {
        NodeId(Rng::new().next_u64())
    }

    /// The node id with this numeric value (as read from a broker message).
    pub fn from_u64(value: u64) -> NodeId {
        NodeId(value)
    }

    /// The numeric value.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The text was not an id in the form [`NodeId`] or [`MemberId`] print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseIdError;

impl fmt::Display for ParseIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a chito node or member id")
    }
}

impl std::error::Error for ParseIdError {}

impl FromStr for NodeId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 16 {
            return Err(ParseIdError);
        }
        u64::from_str_radix(s, 16)
            .map(NodeId)
            .map_err(|_| ParseIdError)
    }
}

/// Identifies a member anywhere in a cluster: the node that holds its
/// connection and a number unique on that node.
///
/// Shown (and parsed) as `<node>-<number>`, e.g. `00c0ffee00c0ffee-42`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId {
    node: NodeId,
    number: u64,
}

impl MemberId {
    /// The member numbered `number` on `node` (as read from a broker
    /// message).
    pub fn new(node: NodeId, number: u64) -> MemberId {
        MemberId { node, number }
    }

    /// The node that holds the member's connection.
    pub fn node(self) -> NodeId {
        self.node
    }

    /// The member's number on its node.
    pub fn number(self) -> u64 {
        self.number
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.node, self.number)
    }
}

impl FromStr for MemberId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (node, number) = s.split_once('-').ok_or(ParseIdError)?;
        let number = number.parse().map_err(|_| ParseIdError)?;
        Ok(MemberId::new(node.parse()?, number))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_and_parse_back() {
        let node = NodeId::from_u64(0x00c0_ffee_0000_0001);
        assert_eq!(node.to_string(), "00c0ffee00000001");
        assert_eq!("00c0ffee00000001".parse(), Ok(node));
        let member = MemberId::new(node, 42);
        assert_eq!(member.to_string(), "00c0ffee00000001-42");
        assert_eq!("00c0ffee00000001-42".parse(), Ok(member));
        for bad in [
            "",
            "xyz",
            "00c0ffee00000001",
            "00c0ffee00000001-",
            "1-2",
            "00c0ffee0000000g-1",
        ] {
            assert_eq!(bad.parse::<MemberId>(), Err(ParseIdError), "{bad}");
        }
        assert_ne!(NodeId::random(), NodeId::random());
    }
}
