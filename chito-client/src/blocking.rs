//! The blocking client: [`Connector::connect_blocking`] opens the same
//! routes as [`Connector::connect`] (proxy, TLS, the same errors) with
//! std's TCP and rustls' blocking stream, and hands the stream to chito's
//! blocking adapter.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use chito::blocking::{Builder, StreamControl, WebSocket};
use chito::handshake::{RequestError, UpgradeResponse, WsUrl};

use crate::connector::{host_of, no_address, socket_addr_string, Route};
use crate::error::ConnectError;
use crate::proxy::{self, Destination, Proxy};
use crate::Connector;

/// The transport under a blocking client's WebSocket: TCP to the server
/// (or to the proxy that tunnels to it), with or without TLS on top.
#[derive(Debug)]
#[non_exhaustive]
pub enum BlockingStream {
    /// `ws://`: the TCP stream (to the server, or a proxy's tunnel).
    Plain(TcpStream),
    /// `wss://`: TLS over the TCP stream (boxed: a TLS session is over a
    /// kilobyte).
    #[cfg(feature = "rustls")]
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl BlockingStream {
    /// The TCP stream underneath (to the proxy when there is one).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            BlockingStream::Plain(tcp) => tcp,
            #[cfg(feature = "rustls")]
            BlockingStream::Tls(tls) => tls.get_ref(),
        }
    }

    /// chito's hooks, acting on the TCP stream underneath: its read and
    /// write timeouts wake the adapter for its timers; half-closing it
    /// ends the connection.
    fn control() -> StreamControl<BlockingStream> {
        StreamControl::new(
            |s, t| s.tcp().set_read_timeout(t),
            |s, t| s.tcp().set_write_timeout(t),
            |s| s.tcp().shutdown(Shutdown::Write),
        )
    }
}

impl Read for BlockingStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            BlockingStream::Plain(tcp) => tcp.read(buf),
            #[cfg(feature = "rustls")]
            BlockingStream::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for BlockingStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            BlockingStream::Plain(tcp) => tcp.write(buf),
            #[cfg(feature = "rustls")]
            BlockingStream::Tls(tls) => tls.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            BlockingStream::Plain(tcp) => tcp.write_vectored(bufs),
            #[cfg(feature = "rustls")]
            BlockingStream::Tls(tls) => tls.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            BlockingStream::Plain(tcp) => tcp.flush(),
            #[cfg(feature = "rustls")]
            BlockingStream::Tls(tls) => tls.flush(),
        }
    }
}

impl Connector {
    /// [`connect`](Self::connect) for blocking code: the same proxy, TLS
    /// and errors, over std's TCP. Each step is bounded by the connect
    /// timeout, except the DNS lookup, which std cannot bound (the
    /// system resolver's own timeout applies).
    ///
    /// # Errors
    /// A [`ConnectError`] naming the hop that failed.
    pub fn connect_blocking(
        &self,
        url: &str,
    ) -> Result<(WebSocket<BlockingStream>, UpgradeResponse), ConnectError> {
        let url = WsUrl::parse(url).map_err(RequestError::InvalidUrl)?;
        let request = self.request(&url);
        let route = self.route(&url)?;
        let tcp = match &route.proxy {
            None => open_tcp(
                &socket_addr_string(&url.host, url.port),
                false,
                self.step_timeout(),
            )?,
            Some(proxy) => self.open_tunnel_blocking(proxy, &route)?,
        };
        let stream = self.secure_blocking(&url, tcp)?;
        Builder::new(stream)
            .control(BlockingStream::control())
            .config(self.connection_config().clone())
            .handshake_timeout(self.step_timeout())
            .connect(&request)
            .map_err(ConnectError::Handshake)
    }

    /// TLS over `tcp` for `wss://`.
    fn secure_blocking(&self, url: &WsUrl, tcp: TcpStream) -> Result<BlockingStream, ConnectError> {
        if !url.secure {
            return Ok(BlockingStream::Plain(tcp));
        }
        let tls_error = |error| ConnectError::Tls {
            host: url.host.clone(),
            error,
        };
        #[cfg(feature = "rustls")]
        {
            let tls = self
                .tls
                .connect_blocking(&url.host, tcp, self.step_timeout())
                .map_err(tls_error)?;
            // The adapter sets its own timeouts from here on.
            set_timeouts(tls.get_ref(), None).map_err(|e| tls_error(crate::TlsError::Io(e)))?;
            Ok(BlockingStream::Tls(Box::new(tls)))
        }
        // Unreachable without rustls: `route` refused wss:// already.
        #[cfg(not(feature = "rustls"))]
        {
            drop(tcp);
            Err(tls_error(self.tls.unavailable()))
        }
    }

    /// TCP to the proxy, then its tunnel to the route's server.
    fn open_tunnel_blocking(
        &self,
        proxy: &Proxy,
        route: &Route<'_>,
    ) -> Result<TcpStream, ConnectError> {
        let timeout = self.step_timeout();
        let destination = if proxy.remote_dns() {
            Destination::Domain(route.host.to_owned())
        } else {
            // socks5://: the server's name is resolved here.
            let addr = socket_addr_string(route.host, route.port);
            let first = lookup(&addr, false)?.into_iter().next();
            let first = first.ok_or_else(|| ConnectError::Resolve {
                host: route.host.to_owned(),
                proxy: false,
                source: no_address(),
            })?;
            Destination::Ip(first.ip())
        };
        let mut tcp = open_tcp(proxy.addr(), true, timeout)?;
        let authority = socket_addr_string(route.host, route.port);
        let proxy_error = |error| ConnectError::Proxy {
            proxy: proxy.addr().to_owned(),
            target: authority.clone(),
            error,
        };
        proxy::tunnel_blocking(
            &mut tcp,
            proxy,
            &destination,
            route.port,
            &authority,
            timeout,
        )
        .map_err(proxy_error)?;
        // chito's adapter sets its own timeouts from here on.
        set_timeouts(&tcp, None).map_err(|e| proxy_error(crate::ProxyError::Io(e)))?;
        Ok(tcp)
    }
}

fn set_timeouts(tcp: &TcpStream, timeout: Option<Duration>) -> io::Result<()> {
    tcp.set_read_timeout(timeout)?;
    tcp.set_write_timeout(timeout)
}

/// The addresses of `addr` (`host:port`).
fn lookup(addr: &str, proxy: bool) -> Result<Vec<SocketAddr>, ConnectError> {
    addr.to_socket_addrs()
        .map(Iterator::collect)
        .map_err(|source| ConnectError::Resolve {
            host: host_of(addr).to_owned(),
            proxy,
            source,
        })
}

/// Resolves `addr` and connects to its addresses in turn, each within
/// `timeout`.
fn open_tcp(addr: &str, proxy: bool, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let mut last = no_address();
    for socket_addr in lookup(addr, proxy)? {
        match TcpStream::connect_timeout(&socket_addr, timeout) {
            Ok(tcp) => {
                // Frames are written whole; Nagle would only delay them.
                tcp.set_nodelay(true).map_err(|source| ConnectError::Tcp {
                    addr: addr.to_owned(),
                    proxy,
                    source,
                })?;
                return Ok(tcp);
            }
            Err(e) => last = e,
        }
    }
    Err(ConnectError::Tcp {
        addr: addr.to_owned(),
        proxy,
        source: last,
    })
}
