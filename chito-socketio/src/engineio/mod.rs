//! Engine.IO v4: the transport layer under Socket.IO (packets, polling
//! payloads, the session state machine, the upgrade to WebSocket).
