//! [`Connector`]: from a URL to an open WebSocket — name lookup, TCP,
//! the proxy's tunnel, TLS, and chito's opening handshake, with the
//! settings of the connection it yields.

use std::sync::Arc;
use std::time::Duration;

use chito::handshake::{ClientRequest, RequestError, UpgradeResponse, WsUrl};
use chito::tokio::{Builder, WebSocket};
use chito::Config;
use tokio::net::TcpStream;

use crate::error::{ConnectError, ProxyError};
use crate::proxy::{self, Destination, Proxy, ProxyEnv};
use crate::stream::ClientStream;
use crate::tls::TlsSetup;

/// How long a connection attempt may take, lookup to handshake, by default.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens client connections: resolves the host, opens TCP (to the server,
/// or to a proxy that tunnels to it), runs TLS for `wss://`, then the
/// WebSocket handshake. Cheap to clone; one `Connector` can open any
/// number of connections.
#[derive(Debug, Clone)]
pub struct Connector {
    config: Arc<Config>,
    headers: Vec<(String, String)>,
    protocols: Vec<String>,
    connect_timeout: Duration,
    proxy: ProxyChoice,
    pub(crate) tls: TlsSetup,
}

/// Which proxy, if any, a connection goes through.
#[derive(Debug, Clone)]
pub(crate) enum ProxyChoice {
    /// Straight to the server.
    Direct,
    /// Always this one.
    Fixed(Proxy),
    /// As the environment says, per URL.
    Env(Arc<ProxyEnv>),
}

/// The route to a server: through which proxy, if any, to what.
pub(crate) struct Route<'a> {
    pub(crate) proxy: Option<Proxy>,
    pub(crate) host: &'a str,
    pub(crate) port: u16,
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
            proxy: ProxyChoice::Direct,
            tls: TlsSetup::default(),
        }
    }

    /// Opens every connection through `proxy` (HTTP CONNECT or SOCKS5),
    /// whatever the host; `wss://` runs TLS through the tunnel, with the
    /// server's name. Replaces [`proxy_from_env`](Self::proxy_from_env).
    pub fn proxy(mut self, proxy: Proxy) -> Self {
        self.proxy = ProxyChoice::Fixed(proxy);
        self
    }

    /// Chooses the proxy from the environment, read now, as curl does:
    /// `https_proxy` for `wss://`, `http_proxy` for `ws://`, else
    /// `all_proxy` (lowercase names win over uppercase; the uppercase
    /// `HTTP_PROXY` is ignored under CGI, where `REQUEST_METHOD` is set and
    /// a request header can set it), values as [`Proxy::from_url`] reads
    /// them; no proxy for a host `no_proxy` lists (comma-separated: `*`,
    /// a domain and the names under it, with or without a leading dot,
    /// an IP address, a CIDR block, each with an optional `:port`). A
    /// variable whose URL cannot be used fails the connection
    /// ([`ConnectError::InvalidProxy`]) rather than going direct.
    /// Replaces [`proxy`](Self::proxy).
    pub fn proxy_from_env(mut self) -> Self {
        self.proxy = ProxyChoice::Env(Arc::new(ProxyEnv::from_process()));
        self
    }

    /// Uses `config` for `wss://` instead of the default (custom roots,
    /// client certificates). It is used as given: its ALPN list is not
    /// changed, so include `http/1.1` in it (RFC 6455's handshake is an
    /// HTTP/1.1 upgrade); with an empty list no protocol is offered,
    /// which servers accept; a server choosing another protocol fails the
    /// connection ([`TlsError::UnexpectedAlpn`](crate::TlsError::UnexpectedAlpn)).
    ///
    /// Without it, a configuration is built on the first `wss://`
    /// connection and shared by this connector and its clones: the
    /// compiled-in Mozilla roots (feature `webpki-roots`, default) and/or
    /// the platform's (`native-roots`), TLS 1.3 and 1.2, ALPN `http/1.1`,
    /// the `ring` provider.
    #[cfg(feature = "rustls")]
    pub fn tls(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls.set_user(config);
        self
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

    /// Opens a WebSocket to `url` (`ws://` or `wss://`), through the
    /// proxy if one is set.
    ///
    /// # Errors
    /// A [`ConnectError`] naming the hop that failed.
    pub async fn connect(
        &self,
        url: &str,
    ) -> Result<(WebSocket<ClientStream>, UpgradeResponse), ConnectError> {
        let url = WsUrl::parse(url).map_err(RequestError::InvalidUrl)?;
        let request = self.request(&url);
        let route = self.route(&url)?;
        let tcp = match &route.proxy {
            None => self.open_tcp(&url.host, url.port, false).await?,
            Some(proxy) => self.open_tunnel(proxy, &route).await?,
        };
        let stream = self.secure(&url, tcp).await?;
        Builder::new(stream)
            .config(self.config.clone())
            .handshake_timeout(self.connect_timeout)
            .connect(&request)
            .await
            .map_err(ConnectError::Handshake)
    }

    /// TLS over `tcp` for `wss://`.
    #[cfg(feature = "rustls")]
    async fn secure(&self, url: &WsUrl, tcp: TcpStream) -> Result<ClientStream, ConnectError> {
        if !url.secure {
            return Ok(ClientStream::Plain(tcp));
        }
        let tls_error = |error| ConnectError::Tls {
            host: url.host.clone(),
            error,
        };
        let handshake =
            tokio::time::timeout(self.connect_timeout, self.tls.connect(&url.host, tcp));
        match handshake.await {
            Ok(Ok(tls)) => Ok(ClientStream::Tls(Box::new(tls))),
            Ok(Err(error)) => Err(tls_error(error)),
            Err(_) => Err(tls_error(crate::TlsError::Io(timed_out("TLS handshake")))),
        }
    }

    /// Without rustls, only `ws://` reaches here ([`route`](Self::route)
    /// refused `wss://`).
    #[cfg(not(feature = "rustls"))]
    async fn secure(&self, _url: &WsUrl, tcp: TcpStream) -> Result<ClientStream, ConnectError> {
        Ok(ClientStream::Plain(tcp))
    }

    /// Which proxy to go through for `url`. Without rustls, `wss://` is
    /// refused here, before anything is looked up or sent.
    pub(crate) fn route<'u>(&self, url: &'u WsUrl) -> Result<Route<'u>, ConnectError> {
        #[cfg(not(feature = "rustls"))]
        if url.secure {
            return Err(ConnectError::Tls {
                host: url.host.clone(),
                error: self.tls.unavailable(),
            });
        }
        let proxy = match &self.proxy {
            ProxyChoice::Direct => None,
            ProxyChoice::Fixed(proxy) => Some(proxy.clone()),
            ProxyChoice::Env(env) => env
                .proxy_for(url.secure, &url.host, url.port)
                .map_err(ConnectError::InvalidProxy)?,
        };
        Ok(Route {
            proxy,
            host: &url.host,
            port: url.port,
        })
    }

    /// TCP to the proxy, then its tunnel to the route's server.
    async fn open_tunnel(
        &self,
        proxy: &Proxy,
        route: &Route<'_>,
    ) -> Result<TcpStream, ConnectError> {
        let destination = if proxy.remote_dns() {
            Destination::Domain(route.host.to_owned())
        } else {
            // socks5://: the server's name is resolved here.
            let addr = self.lookup(route.host, route.port, false).await?;
            Destination::Ip(addr.ip())
        };
        let mut tcp = self.open_tcp_addr(proxy.addr(), true).await?;
        let authority = socket_addr_string(route.host, route.port);
        let exchange = proxy::tunnel(&mut tcp, proxy, &destination, route.port, &authority);
        let result = match tokio::time::timeout(self.connect_timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(ProxyError::Io(timed_out("proxy handshake"))),
        };
        result.map_err(|error| ConnectError::Proxy {
            proxy: proxy.addr().to_owned(),
            target: authority,
            error,
        })?;
        Ok(tcp)
    }

    /// The opening handshake request for `url`, with this connector's
    /// headers and subprotocols.
    pub(crate) fn request(&self, url: &WsUrl) -> ClientRequest {
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
    /// the connect timeout. `proxy`: whether it is the proxy's.
    async fn open_tcp(
        &self,
        host: &str,
        port: u16,
        proxy: bool,
    ) -> Result<TcpStream, ConnectError> {
        self.open_tcp_addr(&socket_addr_string(host, port), proxy)
            .await
    }

    /// The first address of `host:port`.
    async fn lookup(
        &self,
        host: &str,
        port: u16,
        proxy: bool,
    ) -> Result<std::net::SocketAddr, ConnectError> {
        let addrs = self
            .lookup_all(&socket_addr_string(host, port), host, proxy)
            .await?;
        addrs
            .into_iter()
            .next()
            .ok_or_else(|| ConnectError::Resolve {
                host: host.to_owned(),
                proxy,
                source: no_address(),
            })
    }

    /// All addresses of `addr` (`host:port`); errors name `host`.
    async fn lookup_all(
        &self,
        addr: &str,
        host: &str,
        proxy: bool,
    ) -> Result<Vec<std::net::SocketAddr>, ConnectError> {
        let lookup = tokio::time::timeout(self.connect_timeout, tokio::net::lookup_host(addr));
        let source = match lookup.await {
            Ok(Ok(addrs)) => return Ok(addrs.collect()),
            Ok(Err(source)) => source,
            Err(_) => timed_out("DNS lookup"),
        };
        Err(ConnectError::Resolve {
            host: host.to_owned(),
            proxy,
            source,
        })
    }

    /// [`open_tcp`](Self::open_tcp) for a `host:port` text.
    async fn open_tcp_addr(&self, addr: &str, proxy: bool) -> Result<TcpStream, ConnectError> {
        let host = host_of(addr);
        let addrs = self.lookup_all(addr, host, proxy).await?;
        let mut last = no_address();
        for socket_addr in addrs {
            let attempt =
                tokio::time::timeout(self.connect_timeout, TcpStream::connect(socket_addr));
            match attempt.await {
                Ok(Ok(tcp)) => {
                    // Frames are written whole; Nagle would only delay them.
                    tcp.set_nodelay(true).map_err(|source| ConnectError::Tcp {
                        addr: addr.to_owned(),
                        proxy,
                        source,
                    })?;
                    return Ok(tcp);
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = timed_out("TCP connect"),
            }
        }
        Err(ConnectError::Tcp {
            addr: addr.to_owned(),
            proxy,
            source: last,
        })
    }

    /// How long each step may take.
    pub(crate) fn step_timeout(&self) -> Duration {
        self.connect_timeout
    }
}

/// The host part of `host:port` or `[v6]:port`.
pub(crate) fn host_of(addr: &str) -> &str {
    let host = match addr.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => addr,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

pub(crate) fn no_address() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::NotFound, "no address")
}

/// `host:port`, an IPv6 address bracketed, for the resolver.
pub(crate) fn socket_addr_string(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

pub(crate) fn timed_out(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{what} timed out"))
}

// wss:// is refused before routing without rustls.
#[cfg(all(test, feature = "rustls"))]
mod tests {
    use super::*;
    use crate::Hop;

    /// A connector whose environment is `vars`, not the process's.
    fn with_env(vars: &'static [(&'static str, &'static str)]) -> Connector {
        let env = ProxyEnv::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        });
        let mut connector = Connector::new();
        connector.proxy = ProxyChoice::Env(Arc::new(env));
        connector
    }

    fn proxy_addr(connector: &Connector, url: &str) -> Result<Option<String>, ConnectError> {
        let url = WsUrl::parse(url).unwrap();
        let route = connector.route(&url)?;
        Ok(route.proxy.map(|p| p.addr().to_owned()))
    }

    #[test]
    fn the_environment_routes_each_url() {
        let connector = with_env(&[
            ("https_proxy", "http://secure-proxy:3128"),
            ("HTTP_PROXY", "socks5h://plain-proxy:1080"),
            ("no_proxy", "localhost,.corp.example,10.0.0.0/8"),
        ]);
        let addr = |url| proxy_addr(&connector, url).unwrap();
        assert_eq!(
            addr("wss://feed.example/").as_deref(),
            Some("secure-proxy:3128")
        );
        assert_eq!(
            addr("ws://feed.example/").as_deref(),
            Some("plain-proxy:1080")
        );
        assert_eq!(addr("wss://localhost:9001/"), None);
        assert_eq!(addr("ws://build.corp.example/"), None);
        assert_eq!(addr("ws://10.2.3.4/"), None);
        // An explicit proxy replaces the environment, for every host.
        let fixed = connector.clone().proxy(Proxy::http("fixed:8080"));
        assert_eq!(
            proxy_addr(&fixed, "wss://localhost/").unwrap().as_deref(),
            Some("fixed:8080")
        );
    }

    #[test]
    fn an_unusable_proxy_variable_fails_the_request_hop() {
        let connector = with_env(&[("all_proxy", "https://proxy:443")]);
        let err = proxy_addr(&connector, "wss://feed.example/").unwrap_err();
        assert_eq!(err.hop(), Hop::Request);
        assert!(err.to_string().contains("https:// proxies"), "{err}");
    }
}
