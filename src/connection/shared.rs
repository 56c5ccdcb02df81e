//! Encode once, send to many: a [`SharedMessage`] holds one payload and
//! the frames built from it, each wire form built at most once however
//! many connections it goes to; a [`SharedBatch`] is several of them that
//! go to each connection together, in order.

use std::any::Any;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use super::error::SendError;
use super::event::Message;
use super::send::Sender;
use crate::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use crate::role::Role;

/// One message for many connections, encoded at most once per wire form.
///
/// The payload is stored once. A server connection sends the frame built
/// for its negotiation, cached here on first use: the plain frame, or —
/// when it compresses without context takeover (RFC 7692 §7.1.1) — the
/// frame compressed once for its window size. Only connections whose own
/// compression keeps context (a frame compressed elsewhere would not match
/// the peer's window), and clients (which mask every frame with a fresh
/// key, RFC 6455 §5.3), encode the message themselves, from the shared
/// payload. Cloning is a reference count.
#[derive(Debug, Clone)]
pub struct SharedMessage {
    inner: Arc<SharedInner>,
}

#[derive(Debug)]
struct SharedInner {
    payload: SharedPayload,
    plain: OnceLock<Box<[u8]>>,
    /// Frames compressed without context, by window bits 9..=15; `None`
    /// if compression failed (the plain frame is used then).
    #[cfg(feature = "deflate")]
    compressed: [OnceLock<Option<Box<[u8]>>>; 7],
    encodings: AtomicUsize,
    /// A value derived once from the message for every member of an emit
    /// (see `rooms::Payload::derived`).
    #[cfg(feature = "rooms")]
    derived: Derived,
}

#[derive(Debug)]
enum SharedPayload {
    Text(Box<str>),
    Binary(Box<[u8]>),
}

impl SharedMessage {
    /// Copies `message` once into a shareable message.
    pub fn new(message: Message<'_>) -> Self {
        match message {
            Message::Text(text) => SharedMessage::from_payload(SharedPayload::Text(text.into())),
            Message::Binary(data) => {
                SharedMessage::from_payload(SharedPayload::Binary(data.into()))
            }
        }
    }

    /// A shareable text message, taking the string without copying it.
    pub fn text(text: String) -> Self {
        SharedMessage::from_payload(SharedPayload::Text(text.into_boxed_str()))
    }

    /// A shareable binary message, taking the bytes without copying them.
    pub fn binary(data: Vec<u8>) -> Self {
        SharedMessage::from_payload(SharedPayload::Binary(data.into_boxed_slice()))
    }

    fn from_payload(payload: SharedPayload) -> Self {
        SharedMessage {
            inner: Arc::new(SharedInner {
                payload,
                plain: OnceLock::new(),
                #[cfg(feature = "deflate")]
                compressed: Default::default(),
                encodings: AtomicUsize::new(0),
                #[cfg(feature = "rooms")]
                derived: Derived::default(),
            }),
        }
    }

    /// The value cached in this message's slot, built by `build` on first
    /// use; `None` if a value of another type was cached first.
    #[cfg(feature = "rooms")]
    pub(crate) fn derived<T: Any + Send + Sync>(
        &self,
        build: impl FnOnce(&[SharedMessage]) -> T,
    ) -> Option<Arc<T>> {
        self.inner
            .derived
            .get_or_build(|| build(std::slice::from_ref(self)))
    }

    /// The message.
    pub fn message(&self) -> Message<'_> {
        match &self.inner.payload {
            SharedPayload::Text(text) => Message::Text(text),
            SharedPayload::Binary(data) => Message::Binary(data),
        }
    }

    /// The payload length in bytes.
    pub fn len(&self) -> usize {
        self.message().as_bytes().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many frames were encoded from this message so far (each wire
    /// form once, however many connections it went to).
    pub fn encodings(&self) -> usize {
        self.inner.encodings.load(Ordering::Relaxed)
    }

    fn opcode(&self) -> OpCode {
        match self.inner.payload {
            SharedPayload::Text(_) => OpCode::Text,
            SharedPayload::Binary(_) => OpCode::Binary,
        }
    }

    /// The unmasked, uncompressed server frame.
    fn plain_frame(&self) -> &[u8] {
        self.inner.plain.get_or_init(|| {
            self.inner.encodings.fetch_add(1, Ordering::Relaxed);
            server_frame(self.opcode(), false, self.message().as_bytes())
        })
    }

    /// The server frame compressed without context with `bits` of window.
    #[cfg(feature = "deflate")]
    fn compressed_frame(&self, bits: u8, level: u32) -> Option<&[u8]> {
        use crate::deflate::{Deflater, MIN_WINDOW_BITS};
        let slot = self
            .inner
            .compressed
            .get(usize::from(bits.checked_sub(MIN_WINDOW_BITS)?))?;
        slot.get_or_init(|| {
            self.inner.encodings.fetch_add(1, Ordering::Relaxed);
            let mut deflater = Deflater::new(bits, true, level).ok()?;
            let mut body = Vec::with_capacity(self.len() / 2 + 16);
            deflater
                .compress(self.message().as_bytes(), true, &mut body)
                .ok()?;
            Some(server_frame(self.opcode(), true, &body))
        })
        .as_deref()
    }
}

/// A slot holding one value derived from a shared payload, of a type
/// chosen by its first user, built at most once.
#[derive(Default)]
struct Derived(OnceLock<Arc<dyn Any + Send + Sync>>);

impl std::fmt::Debug for Derived {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Derived")
            .field(&self.0.get().is_some())
            .finish()
    }
}

impl Derived {
    fn get_or_build<T: Any + Send + Sync>(&self, build: impl FnOnce() -> T) -> Option<Arc<T>> {
        // A reference count per caller; the value is built once however
        // many members ask, and a racing builder's value is dropped.
        let value = self.0.get_or_init(|| Arc::new(build())).clone();
        value.downcast::<T>().ok()
    }
}

/// Several [`SharedMessage`]s that must reach a connection together and in
/// order (a Socket.IO packet and its binary attachments): queued all or
/// none, as one entry, by the tokio adapter's `Handle::try_send_batch`.
/// Cloning is a reference count.
#[derive(Debug, Clone)]
pub struct SharedBatch {
    inner: Arc<BatchInner>,
}

#[derive(Debug)]
struct BatchInner {
    messages: Box<[SharedMessage]>,
    /// Their payload bytes, summed once.
    len: usize,
    derived: Derived,
}

impl SharedBatch {
    /// A batch of `messages`, sent in this order.
    pub fn new(messages: Vec<SharedMessage>) -> Self {
        let len = messages.iter().map(SharedMessage::len).sum();
        SharedBatch {
            inner: Arc::new(BatchInner {
                messages: messages.into_boxed_slice(),
                len,
                derived: Derived::default(),
            }),
        }
    }

    /// The messages, in order.
    pub fn messages(&self) -> &[SharedMessage] {
        &self.inner.messages
    }

    /// The sum of the messages' payload lengths, in bytes.
    pub fn len(&self) -> usize {
        self.inner.len
    }

    /// Whether every message is empty (or there is none).
    pub fn is_empty(&self) -> bool {
        self.inner.len == 0
    }

    /// A value derived from the batch once and cached in it — e.g. a
    /// transport's own encoding of the whole batch, built by the first
    /// member that needs it, then shared by reference with the others.
    /// `None` if a value of another type was cached first.
    pub fn derived<T: Any + Send + Sync>(
        &self,
        build: impl FnOnce(&[SharedMessage]) -> T,
    ) -> Option<Arc<T>> {
        self.inner
            .derived
            .get_or_build(|| build(&self.inner.messages))
    }
}

/// A complete unmasked frame with FIN set (RSV1 for a compressed one).
fn server_frame(opcode: OpCode, rsv1: bool, payload: &[u8]) -> Box<[u8]> {
    let mut header = FrameHeader::new(opcode, payload.len() as u64);
    header.rsv1 = rsv1;
    let mut frame = Vec::with_capacity(MAX_HEADER_LEN + payload.len());
    header.write_to(&mut frame);
    frame.extend_from_slice(payload);
    frame.into_boxed_slice()
}

impl Sender<'_> {
    /// Queues `message` in the wire form this connection's negotiation
    /// allows, encoding it only if no other connection built that form yet.
    ///
    /// # Errors
    /// As [`Sender::send`].
    pub fn send_shared(&mut self, message: &SharedMessage) -> Result<(), SendError> {
        if self.tx.role == Role::Client {
            // A client masks every frame with a fresh key: nothing to share.
            return self.send(message.message());
        }
        #[cfg(feature = "deflate")]
        if let Some(deflater) = self.tx.deflater.as_deref() {
            if message.len() >= self.tx.compress_threshold {
                if !deflater.resets_context() {
                    // Our compressor keeps context: a frame compressed
                    // elsewhere would desynchronise the peer's window.
                    return self.send(message.message());
                }
                let (bits, level) = (deflater.window_bits(), deflater.level());
                if let Some(frame) = message.compressed_frame(bits, level) {
                    return Ok(self.tx.write_encoded(frame)?);
                }
            }
        }
        Ok(self.tx.write_encoded(message.plain_frame())?)
    }
}
