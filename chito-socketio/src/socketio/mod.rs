//! Socket.IO v5: packets, binary attachments, namespaces, acknowledgements.

pub mod binary;
pub mod packet;
