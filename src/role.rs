//! Which end of a connection this is (RFC 6455 §5.1).

/// Which end of the connection this is. It decides masking (RFC 6455 §5.1):
/// a client masks every frame it sends and rejects masked frames; a server
/// requires masked frames and sends unmasked ones. permessage-deflate's
/// parameters (RFC 7692 §7.1) are also named by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The end that sent the opening handshake request.
    Client,
    /// The end that accepted it.
    Server,
}
