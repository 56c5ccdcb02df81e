//! The loop's connections: slots in fixed-size chunks (growth never
//! copies a slot, and no large buffer is reallocated and left behind in
//! the allocator as the slab grows), reused through a free list, each named by an index and a generation so that a completion that
//! arrives after its connection ended (and the slot was reused) is
//! recognised as stale (docs/uring.md §6.2).

use std::net::TcpStream;
use std::time::Instant;

use super::handshake::Handshaking;
use super::wake::Extras;
use crate::connection::Connection;

/// Generations wrap at this many bits, so that a tag (generation above
/// the 32-bit index) stays below the ring's reserved tags
/// (`chito_ring::MAX_TAG`, 56 bits). A stale completion would have to
/// survive 8 M reuses of its slot to be mistaken.
const GENERATION_BITS: u32 = 23;

/// A connection's name in ring tags: generation (high) and slot index (low
/// 32 bits).
pub(super) fn tag(index: u32, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(index)
}

/// The slot index and generation a tag names.
pub(super) fn untag(tag: u64) -> (u32, u32) {
    ((tag & 0xffff_ffff) as u32, (tag >> 32) as u32)
}

/// Where a connection is in its life.
// The open connection is inline on purpose: it is what almost every slot
// holds for its whole life (a box would add a pointer and an allocation
// per connection); the short-lived handshake is the boxed one.
#[allow(clippy::large_enum_variant)]
pub(super) enum Phase<H> {
    /// Not in use.
    Free,
    /// Reading the HTTP upgrade request (boxed: large and short-lived).
    Handshake(Box<Handshaking>),
    /// An HTTP refusal is being sent; the socket closes after it.
    Refusing,
    /// The WebSocket connection and its handler.
    Open(Open<H>),
}

/// An open connection.
pub(super) struct Open<H> {
    pub(super) conn: Connection,
    pub(super) handler: H,
    /// `on_open` was called.
    pub(super) opened: bool,
    /// `on_close` was called (or the handler panicked): the handler is not
    /// called again; what is left is the transport's end.
    pub(super) ended: bool,
}

/// One connection's state in the loop.
pub(super) struct Slot<H> {
    pub(super) generation: u32,
    /// The socket; `None` while the slot is free.
    pub(super) stream: Option<TcpStream>,
    pub(super) phase: Phase<H>,
    /// Operations of this slot in flight in the ring (receive, send,
    /// shutdown, cancel): the slot is freed only at 0, so its index and
    /// generation are not reused while completions may still come.
    pub(super) ops: u16,
    /// The multishot receive is armed.
    pub(super) receiving: bool,
    /// The peer ended its stream (or the receive failed): do not re-arm.
    pub(super) input_ended: bool,
    /// The receive was cancelled on purpose (output backlog or the end).
    pub(super) receive_paused: bool,
    /// A cancel of the receive is in flight.
    pub(super) cancelling: bool,
    /// A send is in flight; `send_from` is where it started in its buffer.
    pub(super) sending: bool,
    pub(super) send_from: usize,
    /// Bytes of the send in flight (what `Handle`s count as unwritten).
    pub(super) send_len: usize,
    /// A shutdown(SHUT_WR) was submitted.
    pub(super) write_shut: bool,
    /// The transport is being released: nothing is armed again.
    pub(super) closing: bool,
    /// Already in this turn's ready list.
    pub(super) ready: bool,
    /// The deadline this slot has in the timer heap.
    pub(super) deadline: Option<Instant>,
    /// Created by `Open::handle`: a queue other threads send into.
    pub(super) extras: Option<Box<Extras>>,
}

impl<H> Slot<H> {
    fn free(generation: u32) -> Slot<H> {
        Slot {
            generation,
            stream: None,
            phase: Phase::Free,
            ops: 0,
            receiving: false,
            input_ended: false,
            receive_paused: false,
            cancelling: false,
            sending: false,
            send_from: 0,
            send_len: 0,
            write_shut: false,
            closing: false,
            ready: false,
            deadline: None,
            extras: None,
        }
    }

    pub(super) fn tag(&self, index: u32) -> u64 {
        tag(index, self.generation)
    }
}

/// Slots per chunk: 256 × ~450 B stays under glibc's default mmap
/// threshold (128 KiB), so chunks come from the loop thread's arena.
const CHUNK: usize = 256;

/// The slots, a free list, and how many are in use.
pub(super) struct Slab<H> {
    chunks: Vec<Box<[Slot<H>]>>,
    free: Vec<u32>,
    used: usize,
}

impl<H> Slab<H> {
    pub(super) fn new() -> Slab<H> {
        Slab {
            chunks: Vec::new(),
            free: Vec::new(),
            used: 0,
        }
    }

    fn slot(&self, index: u32) -> Option<&Slot<H>> {
        let index = index as usize;
        self.chunks.get(index / CHUNK)?.get(index % CHUNK)
    }

    fn slot_mut(&mut self, index: u32) -> Option<&mut Slot<H>> {
        let index = index as usize;
        self.chunks.get_mut(index / CHUNK)?.get_mut(index % CHUNK)
    }

    /// Slots in use.
    pub(super) fn used(&self) -> usize {
        self.used
    }

    /// Takes a free slot for `stream`; its index.
    pub(super) fn insert(&mut self, stream: TcpStream, phase: Phase<H>) -> Option<u32> {
        if self.free.is_empty() {
            // A new chunk; its slots go on the free list, lowest index
            // last (taken first).
            let first = u32::try_from(self.chunks.len() * CHUNK).ok()?;
            let last = first.checked_add(CHUNK as u32 - 1)?;
            self.chunks
                .push((0..CHUNK).map(|_| Slot::free(0)).collect());
            self.free.extend((first..=last).rev());
        }
        let index = self.free.pop()?;
        let slot = self.slot_mut(index)?;
        slot.stream = Some(stream);
        slot.phase = phase;
        self.used += 1;
        Some(index)
    }

    /// The slot `tag` names, if it is in use by the same generation.
    pub(super) fn get_mut(&mut self, tag: u64) -> Option<(u32, &mut Slot<H>)> {
        let (index, generation) = untag(tag);
        let slot = self.slot_mut(index)?;
        (slot.generation == generation && slot.stream.is_some()).then_some((index, slot))
    }

    /// The slot at `index`, if in use.
    pub(super) fn at_mut(&mut self, index: u32) -> Option<&mut Slot<H>> {
        self.slot_mut(index).filter(|slot| slot.stream.is_some())
    }

    /// Frees the slot at `index`: closes its socket, bumps its
    /// generation. The caller checked that nothing is in flight.
    pub(super) fn remove(&mut self, index: u32) {
        let Some(slot) = self.slot_mut(index) else {
            return;
        };
        debug_assert_eq!(slot.ops, 0, "a slot is freed with operations in flight");
        if let Some(extras) = slot.extras.take() {
            extras.end();
        }
        let generation = (slot.generation + 1) & ((1 << GENERATION_BITS) - 1);
        *slot = Slot::free(generation);
        self.free.push(index);
        self.used -= 1;
    }

    /// Indices of the slots in use.
    pub(super) fn indices(&self) -> Vec<u32> {
        (0..self.chunks.len() * CHUNK)
            .filter_map(|i| u32::try_from(i).ok())
            .filter(|&i| self.slot(i).is_some_and(|s| s.stream.is_some()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Zero;
    impl crate::Handler for Zero {}

    #[test]
    fn a_slot_is_a_connection_and_little_more() {
        let slot = std::mem::size_of::<Slot<Zero>>();
        let conn = std::mem::size_of::<Connection>();
        eprintln!("slot {slot} B, connection {conn} B");
        // docs/uring.md §6.2: the slot adds at most ~72 B to the
        // connection (generation, socket, flags, send state, deadline,
        // the optional queue).
        assert!(slot <= conn + 72, "slot {slot} B for a {conn} B connection");
    }
}
