//! Socket.IO v5 over Engine.IO v4 on chito: the server the official
//! Socket.IO clients (browser, Node, Swift, Java/Kotlin, Python, C++)
//! connect to unchanged.
//!
//! In progress (issue #13); docs/socketio.md is the design. What exists:
//! the sans-IO protocol layers, each in its module.
#![deny(missing_docs)]

pub mod engineio;
pub mod socketio;
