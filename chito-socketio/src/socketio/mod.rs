//! Socket.IO v5: packets, binary attachments, namespaces, acknowledgements.
