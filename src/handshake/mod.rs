//! TEMPORARY stub, replaced by the real handshake module.
#![allow(missing_docs)]
#[derive(Debug, Clone, Default)]
pub struct Limits {
    pub max_head_size: usize,
    pub max_headers: usize,
}
#[derive(Debug)]
pub struct HandshakeError;
impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("x")
    }
}
impl std::error::Error for HandshakeError {}
#[derive(Debug)]
pub struct Rejection;
impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("x")
    }
}
impl std::error::Error for Rejection {}
