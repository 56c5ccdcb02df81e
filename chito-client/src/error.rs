//! [`ConnectError`]: why a connection could not be opened, and at which
//! hop.

use std::fmt;
use std::io;

use chito::handshake::RequestError;

use crate::proxy::{ProxyUrlError, SocksReply};
use crate::tls::TlsError;

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
    /// Asking the proxy for a tunnel to the server (HTTP CONNECT or
    /// SOCKS5).
    Proxy,
    /// The TLS handshake with the server (`wss://`).
    Tls,
    /// The WebSocket opening handshake (RFC 6455 §4).
    Handshake,
}

impl fmt::Display for Hop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hop::Request => "request",
            Hop::Resolve => "DNS lookup",
            Hop::Tcp => "TCP connect",
            Hop::Proxy => "proxy",
            Hop::Tls => "TLS handshake",
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
    /// The proxy URL (given, or read from the environment by
    /// [`Connector::proxy_from_env`](crate::Connector::proxy_from_env)) is
    /// not one this crate can use; nothing was sent.
    InvalidProxy(ProxyUrlError),
    /// The host name did not resolve (or resolved to no address).
    Resolve {
        /// The name looked up.
        host: String,
        /// `true` if it was the proxy's name, `false` for the server's.
        proxy: bool,
        /// What the resolver said.
        source: io::Error,
    },
    /// No TCP connection could be opened to any of the host's addresses.
    Tcp {
        /// `host:port` that was tried.
        addr: String,
        /// `true` if it was the proxy's address, `false` for the server's.
        proxy: bool,
        /// The last address's error.
        source: io::Error,
    },
    /// The proxy did not open a tunnel to the server.
    Proxy {
        /// The proxy's address, as configured (`host:port`).
        proxy: String,
        /// The server's `host:port` the tunnel was asked for.
        target: String,
        /// What went wrong.
        error: ProxyError,
    },
    /// The TLS handshake with the server failed (`wss://`).
    Tls {
        /// The server's name (the SNI and the name the certificate must
        /// be valid for).
        host: String,
        /// What went wrong; the rustls error is reachable through it.
        error: TlsError,
    },
    /// The transport was open but the WebSocket handshake failed: the
    /// server refused or answered wrongly, timed out, or the transport
    /// failed during it.
    Handshake(chito::Error),
}

/// How a proxy failed to open a tunnel ([`ConnectError::Proxy`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum ProxyError {
    /// An HTTP proxy answered CONNECT with a status other than 2xx or 407
    /// (RFC 9110 §9.3.6: any 2xx opens the tunnel).
    Refused {
        /// The status code, e.g. 403 or 502.
        status: u16,
        /// The reason phrase as sent (may be empty).
        reason: String,
    },
    /// A SOCKS5 proxy answered CONNECT with a failure reply (RFC 1928 §6).
    SocksRefused(SocksReply),
    /// The proxy wants credentials, or refused the ones given: HTTP 407,
    /// a SOCKS5 method selection of X'FF' (RFC 1928 §3), or a failed
    /// RFC 1929 username/password check.
    Auth(&'static str),
    /// The proxy's reply is not HTTP/1.x or SOCKS5 as the RFCs define it
    /// (or an HTTP head over 8 KiB).
    Protocol(&'static str),
    /// The proxy closed the connection before answering.
    Closed,
    /// Reading from or writing to the proxy failed, or it did not answer
    /// within the connect timeout.
    Io(io::Error),
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::Refused { status, reason } => write!(f, "refused: {status} {reason}"),
            ProxyError::SocksRefused(reply) => write!(f, "refused: {reply}"),
            ProxyError::Auth(why) => write!(f, "authentication failed: {why}"),
            ProxyError::Protocol(why) => write!(f, "malformed reply: {why}"),
            ProxyError::Closed => f.write_str("closed the connection before answering"),
            ProxyError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ProxyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProxyError::Io(e) => Some(e),
            ProxyError::SocksRefused(reply) => Some(reply),
            _ => None,
        }
    }
}

impl ConnectError {
    /// The hop that failed.
    pub fn hop(&self) -> Hop {
        match self {
            ConnectError::Request(_) | ConnectError::InvalidProxy(_) => Hop::Request,
            ConnectError::Resolve { .. } => Hop::Resolve,
            ConnectError::Tcp { .. } => Hop::Tcp,
            ConnectError::Proxy { .. } => Hop::Proxy,
            ConnectError::Tls { .. } => Hop::Tls,
            ConnectError::Handshake(_) => Hop::Handshake,
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Request(e) => write!(f, "{e}"),
            ConnectError::InvalidProxy(e) => write!(f, "invalid proxy URL: {e}"),
            ConnectError::Resolve {
                host,
                proxy,
                source,
            } => {
                let whose = if *proxy { "proxy " } else { "" };
                write!(f, "DNS lookup of {whose}{host} failed: {source}")
            }
            ConnectError::Tcp {
                addr,
                proxy,
                source,
            } => {
                let whose = if *proxy { "proxy " } else { "" };
                write!(f, "TCP connect to {whose}{addr} failed: {source}")
            }
            ConnectError::Proxy {
                proxy,
                target,
                error,
            } => match error {
                ProxyError::Refused { status, reason } => {
                    write!(
                        f,
                        "proxy {proxy} refused CONNECT {target}: {status} {reason}"
                    )
                }
                ProxyError::SocksRefused(reply) => {
                    write!(f, "proxy {proxy} refused CONNECT {target}: {reply}")
                }
                ProxyError::Auth(why) => write!(
                    f,
                    "proxy {proxy} refused to authenticate us for CONNECT {target}: {why}"
                ),
                ProxyError::Protocol(why) => write!(
                    f,
                    "proxy {proxy} answered CONNECT {target} with a malformed reply: {why}"
                ),
                ProxyError::Closed => write!(
                    f,
                    "proxy {proxy} closed the connection before answering CONNECT {target}"
                ),
                ProxyError::Io(e) => write!(f, "proxy {proxy}, CONNECT {target}: {e}"),
            },
            ConnectError::Tls { host, error } => write!(f, "TLS with {host} failed: {error}"),
            ConnectError::Handshake(e) => write!(f, "WebSocket handshake: {e}"),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::Request(e) => Some(e),
            ConnectError::InvalidProxy(e) => Some(e),
            ConnectError::Resolve { source, .. } | ConnectError::Tcp { source, .. } => Some(source),
            ConnectError::Proxy { error, .. } => match error {
                ProxyError::Io(e) => Some(e),
                ProxyError::SocksRefused(reply) => Some(reply),
                _ => None,
            },
            ConnectError::Tls { error, .. } => Some(error),
            ConnectError::Handshake(e) => Some(e),
        }
    }
}

impl From<RequestError> for ConnectError {
    fn from(e: RequestError) -> Self {
        ConnectError::Request(e)
    }
}
