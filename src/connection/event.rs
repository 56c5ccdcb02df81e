//! What flows through a connection: messages the application sends, and
//! events the peer's frames produce.

use crate::close::CloseFrame;

/// The kind of a data message (RFC 6455 §5.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// UTF-8 text (opcode 0x1).
    Text,
    /// Binary data (opcode 0x2).
    Binary,
}

/// A data message, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl Message<'_> {
    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(text) => text.as_bytes(),
            Message::Binary(bytes) => bytes,
        }
    }

    /// Text or binary.
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Text(_) => MessageKind::Text,
            Message::Binary(_) => MessageKind::Binary,
        }
    }
}

/// Something the peer sent, borrowed from the connection's buffers until the
/// next call that takes `&mut self`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete text message (validated UTF-8).
    Text(&'a str),
    /// A complete binary message.
    Binary(&'a [u8]),
    /// A ping. With [`crate::Config::auto_pong`] the pong is already queued.
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// The peer's close frame (`None`: it carried no code, which the RFC
    /// reports as 1005). The reply, if one was due, is already queued and
    /// the connection is now [`crate::State::Closed`].
    Close(Option<CloseFrame<'a>>),
}

impl Event<'_> {
    /// The event with its payload copied out of the connection.
    pub fn into_owned(self) -> OwnedEvent {
        match self {
            Event::Text(text) => OwnedEvent::Text(text.to_owned()),
            Event::Binary(bytes) => OwnedEvent::Binary(bytes.to_vec()),
            Event::Ping(bytes) => OwnedEvent::Ping(bytes.to_vec()),
            Event::Pong(bytes) => OwnedEvent::Pong(bytes.to_vec()),
            Event::Close(frame) => OwnedEvent::Close(frame.map(CloseFrame::into_owned)),
        }
    }
}

/// An [`Event`] that owns its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedEvent {
    /// A complete text message.
    Text(String),
    /// A complete binary message.
    Binary(Vec<u8>),
    /// A ping.
    Ping(Vec<u8>),
    /// A pong.
    Pong(Vec<u8>),
    /// The peer's close frame.
    Close(Option<CloseFrame<'static>>),
}
