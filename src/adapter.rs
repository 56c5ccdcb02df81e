//! What the blocking and tokio adapters share: the parts of their loops
//! that do not depend on how they wait. Each adapter only moves bytes,
//! runs the timer the core asks for and calls the handler; the decisions
//! are here or in the core.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::connection::{Connection, ConnectionError, State};
use crate::error::Error;
use crate::handshake::{
    Accept, Accepted, ClientRequest, Connected, Rejection, RequestError, UpgradeRequest, WsUrl,
};
use crate::role::Role;

/// How long an adapter waits for the opening handshake by default
/// (a slowloris defence).
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads of an HTTP head go through a buffer of this size.
pub(crate) const HEAD_CHUNK: usize = 1024;

/// The end of stream arrived before the opening handshake completed.
pub(crate) fn eof_during_handshake() -> Error {
    Error::Io(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "connection closed during the opening handshake",
    ))
}

/// The TCP address and the request for a `ws://` URL; `wss://` needs a
/// TLS stream the caller opens.
pub(crate) fn tcp_target(url: &str) -> Result<(String, ClientRequest), Error> {
    let url = WsUrl::parse(url).map_err(RequestError::InvalidUrl)?;
    if url.secure {
        return Err(RequestError::TlsRequired.into());
    }
    Ok((url.socket_addr_string(), ClientRequest::from_url(&url)))
}

/// The server's answer to a complete request: the application's choice
/// (or refusal), then the `101`.
pub(crate) fn answer<F>(
    request: UpgradeRequest,
    inspect: F,
    config: &Config,
) -> Result<Accepted, Rejection>
where
    F: FnOnce(&UpgradeRequest) -> Result<Accept, Rejection>,
{
    let accept = inspect(&request)?;
    request.accept(accept, config)
}

/// The connection a server starts after sending `accepted`'s response.
pub(crate) fn server_connection(config: Arc<Config>, accepted: &Accepted) -> Connection {
    let negotiated = accepted.negotiated().clone();
    Connection::with_negotiated(Role::Server, config, negotiated, accepted.leftover())
}

/// The connection a client starts once the server accepted.
pub(crate) fn client_connection(config: Arc<Config>, connected: &Connected) -> Connection {
    let negotiated = connected.negotiated().clone();
    Connection::with_negotiated(Role::Client, config, negotiated, connected.leftover())
}

/// What a loop waiting for the next event does next.
pub(crate) enum Next {
    /// An event is ready: hand it out.
    Deliver,
    /// The connection failed: end the transport, report this.
    Failed(ConnectionError),
    /// The connection ended earlier: end the transport, report
    /// [`crate::UsageError::Closed`].
    Ended,
    /// Write what is pending, then read (or wait for a timer).
    Io,
}

pub(crate) fn next(conn: &mut Connection) -> Next {
    match conn.prepare_event() {
        Ok(true) => Next::Deliver,
        Err(error) => Next::Failed(error),
        Ok(false) if conn.state() == State::Closed => Next::Ended,
        Ok(false) => Next::Io,
    }
}
