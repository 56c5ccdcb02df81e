//! [`Connector`]: from a URL to an open WebSocket — name lookup, TCP, and
//! chito's opening handshake, with the settings of the connection it
//! yields.

use std::sync::Arc;
use std::time::Duration;

use chito::handshake::{ClientRequest, RequestError, UpgradeResponse, WsUrl};
use chito::tokio::{Builder, WebSocket};
use chito::Config;
use tokio::net::TcpStream;

use crate::error::ConnectError;
use crate::stream::ClientStream;

/// How long a connection attempt may take, lookup to handshake, by default.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens client connections: resolves the host, opens TCP, runs the
/// WebSocket handshake. Cheap to clone; one `Connector` can open any number
/// of connections.
#[derive(Debug, Clone)]
pub struct Connector {
    config: Arc<Config>,
    headers: Vec<(String, String)>,
    protocols: Vec<String>,
    connect_timeout: Duration,
}

impl Default for Connector {
    fn default() -> Self {
        Connector::new()
    }
}

impl Connector {
    /// A connector with chito's default [`Config`], no proxy, and a 10 s
    /// bound on each step of opening a connection.
    pub fn new() -> Self {
        Connector {
            config: Arc::new(Config::default()),
            headers: Vec::new(),
            protocols: Vec::new(),
            connect_timeout: CONNECT_TIMEOUT,
        }
    }

    /// The protocol's limits and timers for the connections opened
    /// (keepalive pings among them).
    pub fn config(mut self, config: impl Into<Arc<Config>>) -> Self {
        self.config = config.into();
        self
    }

    /// Adds a header to every opening handshake request (`Authorization`,
    /// `Origin`, cookies).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Offers a subprotocol (RFC 6455 §4.1 item 10), in order of
    /// preference.
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocols.push(protocol.into());
        self
    }

    /// Bounds each step of opening a connection (lookup, TCP, handshake).
    /// Default: 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The settings the connections are opened with.
    pub fn connection_config(&self) -> &Arc<Config> {
        &self.config
    }

    /// Opens a WebSocket to `url` (`ws://`).
    ///
    /// # Errors
    /// A [`ConnectError`] naming the hop that failed.
    pub async fn connect(
        &self,
        url: &str,
    ) -> Result<(WebSocket<ClientStream>, UpgradeResponse), ConnectError> {
        let url = WsUrl::parse(url).map_err(RequestError::InvalidUrl)?;
        if url.secure {
            return Err(RequestError::TlsRequired.into());
        }
        let request = self.request(&url);
        let tcp = self.open_tcp(&url.host, url.port).await?;
        let stream = ClientStream::Plain(tcp);
        Builder::new(stream)
            .config(self.config.clone())
            .handshake_timeout(self.connect_timeout)
            .connect(&request)
            .await
            .map_err(ConnectError::Handshake)
    }

    /// The opening handshake request for `url`, with this connector's
    /// headers and subprotocols.
    fn request(&self, url: &WsUrl) -> ClientRequest {
        let mut request = ClientRequest::from_url(url);
        for protocol in &self.protocols {
            request = request.with_protocol(protocol.clone());
        }
        for (name, value) in &self.headers {
            request = request.with_header(name.clone(), value.clone());
        }
        request
    }

    /// Resolves `host` and connects to its addresses in turn, each within
    /// the connect timeout.
    async fn open_tcp(&self, host: &str, port: u16) -> Result<TcpStream, ConnectError> {
        let addr = socket_addr_string(host, port);
        let lookup = tokio::time::timeout(self.connect_timeout, tokio::net::lookup_host(&addr));
        let addrs: Vec<_> = match lookup.await {
            Ok(Ok(addrs)) => addrs.collect(),
            Ok(Err(source)) => {
                return Err(ConnectError::Resolve {
                    host: host.to_owned(),
                    source,
                })
            }
            Err(_) => {
                return Err(ConnectError::Resolve {
                    host: host.to_owned(),
                    source: timed_out("DNS lookup"),
                })
            }
        };
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
        for socket_addr in addrs {
            let attempt =
                tokio::time::timeout(self.connect_timeout, TcpStream::connect(socket_addr));
            match attempt.await {
                Ok(Ok(tcp)) => {
                    // Frames are written whole; Nagle would only delay them.
                    tcp.set_nodelay(true).map_err(|source| ConnectError::Tcp {
                        addr: addr.clone(),
                        source,
                    })?;
                    return Ok(tcp);
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = timed_out("TCP connect"),
            }
        }
        Err(ConnectError::Tcp { addr, source: last })
    }
}

/// `host:port`, an IPv6 address bracketed, for the resolver.
fn socket_addr_string(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn timed_out(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{what} timed out"))
}
