//! [`ConnectError`]: why a connection could not be opened, and at which
//! hop.

use std::fmt;
use std::io;

use chito::handshake::RequestError;

/// The steps of opening a connection, in order. A [`ConnectError`] names
/// the one that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Hop {
    /// Reading the URL and building the request.
    Request,
    /// Looking up the host's (or the proxy's) addresses.
    Resolve,
    /// Opening TCP to the server or to the proxy.
    Tcp,
    /// The WebSocket opening handshake (RFC 6455 §4).
    Handshake,
}

impl fmt::Display for Hop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hop::Request => "request",
            Hop::Resolve => "DNS lookup",
            Hop::Tcp => "TCP connect",
            Hop::Handshake => "WebSocket handshake",
        })
    }
}

/// Why a connection could not be opened.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL or the request cannot be sent; nothing was sent.
    Request(RequestError),
    /// The host name did not resolve (or resolved to no address).
    Resolve {
        /// The name looked up.
        host: String,
        /// What the resolver said.
        source: io::Error,
    },
    /// No TCP connection could be opened to any of the host's addresses.
    Tcp {
        /// `host:port` that was tried.
        addr: String,
        /// The last address's error.
        source: io::Error,
    },
    /// The transport was open but the WebSocket handshake failed: the
    /// server refused or answered wrongly, timed out, or the transport
    /// failed during it.
    Handshake(chito::Error),
}

impl ConnectError {
    /// The hop that failed.
    pub fn hop(&self) -> Hop {
        match self {
            ConnectError::Request(_) => Hop::Request,
            ConnectError::Resolve { .. } => Hop::Resolve,
            ConnectError::Tcp { .. } => Hop::Tcp,
            ConnectError::Handshake(_) => Hop::Handshake,
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Request(e) => write!(f, "{e}"),
            ConnectError::Resolve { host, source } => {
                write!(f, "DNS lookup of {host} failed: {source}")
            }
            ConnectError::Tcp { addr, source } => {
                write!(f, "TCP connect to {addr} failed: {source}")
            }
            ConnectError::Handshake(e) => write!(f, "WebSocket handshake: {e}"),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::Request(e) => Some(e),
            ConnectError::Resolve { source, .. } | ConnectError::Tcp { source, .. } => Some(source),
            ConnectError::Handshake(e) => Some(e),
        }
    }
}

impl From<RequestError> for ConnectError {
    fn from(e: RequestError) -> Self {
        ConnectError::Request(e)
    }
}
