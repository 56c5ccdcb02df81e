//! Peer bytes, in arbitrary pieces and under arbitrary small limits (with
//! or without permessage-deflate), into a client-side `Connection`: no
//! panic; its output is always a valid frame stream from a client (see
//! `chito_fuzz::conn` for every check); buffered memory stays within the
//! configured limits; nothing follows an error or a close.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    chito_fuzz::conn::run(chito::Role::Client, data);
});
