//! The `permessage-deflate` extension (RFC 7692): negotiation and
//! per-message compression.
//!
//! * Negotiation (RFC 7692 §5, §7.1): a server calls [`server_negotiate`]
//!   with the client's parsed `Sec-WebSocket-Extensions` offers and, if it
//!   gets `Some`, writes the returned
//!   [`ExtensionOffer`](crate::handshake::ExtensionOffer) into its response;
//!   a client sends [`client_offer`] and checks the server's answer with
//!   [`client_negotiate`]. Both yield the agreed [`DeflateParams`].
//! * Compression (RFC 7692 §6, §7.2): one [`Deflater`] compresses the
//!   messages an endpoint sends, one [`Inflater`] decompresses the messages
//!   it receives. A compressed message is marked by RSV1 on its first frame
//!   (RFC 7692 §6); that bit, the choice to compress a given message (see
//!   [`DeflateConfig::threshold`]) and the framing are the caller's job.
//!
//! # Memory
//!
//! A zlib compressor holds 245 KiB (9-bit window) to 371 KiB (15-bit
//! window), a decompressor 46 KiB (see [`Deflater::memory_estimate`] and
//! [`Inflater::memory_estimate`]). When no
//! context takeover applies to a direction (RFC 7692 §7.1.1), nothing needs
//! to survive between messages, so the state is borrowed from a small
//! per-thread pool when a message starts and given back, reset, when it
//! ends: an idle connection then holds no zlib state for that direction, and
//! a busy thread allocates none per message. With context takeover the
//! state must persist for the connection's lifetime; it is allocated on
//! first use and handed to the pool when the [`Deflater`] or [`Inflater`] is
//! dropped.
//!
//! # Decompression bombs
//!
//! A few KiB of DEFLATE data can expand to gigabytes. [`Inflater::inflate`]
//! takes a hard output limit and stops with [`DeflateError::TooBig`] as soon
//! as it would be passed, having grown the output buffer to at most one
//! byte past the limit.
//!
//! # Layout
//!
//! * `config.rs`: [`DeflateConfig`], what this endpoint asks for, accepts
//!   and compresses with.
//! * `negotiate.rs`: the offer/answer of RFC 7692 §5 and §7.1 —
//!   [`server_negotiate`], [`client_offer`], [`client_negotiate`], the
//!   parameter grammar, [`DeflateNegotiationError`], and the agreed
//!   [`DeflateParams`], whose methods map the wire's server/client
//!   parameters onto a [`Role`](crate::Role)'s send and receive directions
//!   and build that role's [`Deflater`] and [`Inflater`].
//! * `codec.rs`: compression and decompression (RFC 7692 §6, §7.2) —
//!   [`Deflater`], [`Inflater`], [`DeflateError`], the window limits
//!   ([`MIN_WINDOW_BITS`], [`MAX_WINDOW_BITS`]), memory estimates and the
//!   bounded output loop that stops decompression bombs.
//! * `pool.rs`: the per-thread pool of reset zlib states described under
//!   *Memory*.
//!
//! The folder imports only leaves: `crate::role` and the
//! `Sec-WebSocket-Extensions` grammar in `crate::handshake::extensions`;
//! never the connection, the adapters or `crate::config`.

// Beyond the crate's lints (no panicking index, unwrap or panic on peer
// data): no unchecked arithmetic either, since sizes here come from
// compressed input.
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects))]

mod codec;
mod config;
mod negotiate;
mod pool;

pub use codec::{DeflateError, Deflater, Inflater, MAX_WINDOW_BITS, MIN_WINDOW_BITS};
pub use config::DeflateConfig;
pub use negotiate::{
    client_negotiate, client_offer, server_negotiate, DeflateNegotiationError, DeflateParams,
    EXTENSION_NAME,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_can_move_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Deflater>();
        send_sync::<Inflater>();
        send_sync::<DeflateParams>();
        send_sync::<DeflateConfig>();
        send_sync::<DeflateError>();
        send_sync::<DeflateNegotiationError>();
    }
}
