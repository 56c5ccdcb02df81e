//! Proxies: [`Proxy`] (which one, with what credentials), its URL form,
//! and the drivers that run the sans-IO handshakes of
//! [`http_connect`] and [`socks5`] over tokio's and std's TCP.

mod env;
mod http_connect;
mod socks5;

use std::fmt;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::connector::timed_out;
use crate::error::ProxyError;

pub(crate) use env::ProxyEnv;
use http_connect::HttpConnect;
pub(crate) use socks5::Destination;
use socks5::Socks5;
pub use socks5::SocksReply;

/// A username and password for a proxy. Its `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) username: String,
    pub(crate) password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// The kind of proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// HTTP CONNECT (RFC 9110 §9.3.6).
    Http,
    /// SOCKS5 (RFC 1928).
    Socks5,
}

/// A proxy to open connections through: an HTTP proxy that tunnels with
/// CONNECT, or a SOCKS5 proxy, with optional credentials.
///
/// ```
/// use chito_client::{Connector, Proxy};
///
/// let corporate = Proxy::http("proxy.example:3128").credentials("me", "secret");
/// let tor = Proxy::from_url("socks5h://127.0.0.1:9050")?;
/// let connector = Connector::new().proxy(corporate);
/// # let _ = (tor, connector);
/// # Ok::<(), chito_client::ProxyUrlError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    kind: Kind,
    /// `host:port`, an IPv6 host bracketed.
    addr: String,
    credentials: Option<Credentials>,
    /// SOCKS5: the proxy resolves the server's name (ATYP X'03').
    remote_dns: bool,
}

impl Proxy {
    /// An HTTP proxy at `addr` (`host:port`, e.g. `"proxy.example:3128"`
    /// or `"[::1]:8080"`), asked for a tunnel with CONNECT. The server's
    /// name is always resolved by the proxy.
    pub fn http(addr: impl Into<String>) -> Self {
        Proxy::new(Kind::Http, addr.into())
    }

    /// A SOCKS5 proxy at `addr` (`host:port`). The proxy resolves the
    /// server's name (remote DNS, as `socks5h://`) unless
    /// [`resolve_locally`](Self::resolve_locally) is set.
    pub fn socks5(addr: impl Into<String>) -> Self {
        Proxy::new(Kind::Socks5, addr.into())
    }

    fn new(kind: Kind, addr: String) -> Self {
        Proxy {
            kind,
            addr,
            credentials: None,
            remote_dns: true,
        }
    }

    /// Authenticates with a username and password: `Proxy-Authorization:
    /// Basic` for an HTTP proxy (RFC 7617), the username/password method
    /// for SOCKS5 (RFC 1929; each 1 to 255 bytes).
    pub fn credentials(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some(Credentials {
            username: username.into(),
            password: password.into(),
        });
        self
    }

    /// SOCKS5: resolve the server's name here and send the proxy an IP
    /// address (as `socks5://`), instead of letting the proxy resolve it.
    /// An HTTP proxy always resolves the name itself; there this does
    /// nothing.
    pub fn resolve_locally(mut self) -> Self {
        self.remote_dns = false;
        self
    }

    /// Parses a proxy URL as curl reads them: `http://[user:pass@]host[:port]`
    /// (port 80 if absent; a URL without a scheme is taken as `http://`),
    /// `socks5h://…` (SOCKS5, the proxy resolves names) and `socks5://…`
    /// (SOCKS5, names resolved here), both on port 1080 if absent. The
    /// username and password may be percent-encoded.
    ///
    /// # Errors
    /// [`ProxyUrlError`]: `https://` proxies (TLS to the proxy) and other
    /// schemes are not supported; a missing host, a bad port or escape.
    pub fn from_url(url: &str) -> Result<Proxy, ProxyUrlError> {
        let url = url.trim();
        let (scheme, rest) = match url.split_once("://") {
            Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
            None => ("http".to_owned(), url),
        };
        let (kind, remote_dns, default_port) = match scheme.as_str() {
            "http" => (Kind::Http, true, 80),
            "socks5h" => (Kind::Socks5, true, 1080),
            "socks5" => (Kind::Socks5, false, 1080),
            "https" => return Err(ProxyUrlError::HttpsProxy),
            _ => return Err(ProxyUrlError::UnsupportedScheme(scheme)),
        };
        // Only the authority counts; a trailing "/" is common in the
        // environment's values.
        let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority),
        };
        let (host, port) = split_host_port(hostport)?;
        let port = match port {
            None => default_port,
            Some(digits) => digits
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or(ProxyUrlError::InvalidPort)?,
        };
        let credentials = match userinfo {
            None => None,
            Some(userinfo) => {
                let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                Some(Credentials {
                    username: percent_decode(user)?,
                    password: percent_decode(pass)?,
                })
            }
        };
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(Proxy {
            kind,
            addr,
            credentials,
            remote_dns,
        })
    }

    /// The proxy's address, `host:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

/// `host` and the optional port of `host[:port]` or `[v6][:port]`.
fn split_host_port(hostport: &str) -> Result<(&str, Option<&str>), ProxyUrlError> {
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or(ProxyUrlError::MissingHost)?;
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(after.strip_prefix(':').ok_or(ProxyUrlError::InvalidPort)?),
            ),
        }
    } else {
        match hostport.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(ProxyUrlError::MissingHost);
    }
    Ok((host, port))
}

/// RFC 3986 §2.1 percent-decoding of a userinfo part.
fn percent_decode(s: &str) -> Result<String, ProxyUrlError> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = |b: Option<u8>| b.and_then(|b| (b as char).to_digit(16));
            let (Some(hi), Some(lo)) = (hex(bytes.next()), hex(bytes.next())) else {
                return Err(ProxyUrlError::InvalidEscape);
            };
            out.push(u8::try_from(hi * 16 + lo).unwrap_or(0));
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).map_err(|_| ProxyUrlError::InvalidEscape)
}

/// Why a proxy URL cannot be used ([`Proxy::from_url`]). It never holds
/// the URL, which may carry a password.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyUrlError {
    /// `https://`: TLS to the proxy itself is not supported (the tunnel
    /// to a `wss://` server is still TLS end to end through an `http://`
    /// proxy).
    HttpsProxy,
    /// A scheme other than `http`, `socks5`, `socks5h`.
    UnsupportedScheme(String),
    /// No host.
    MissingHost,
    /// A port that is not 1–65535.
    InvalidPort,
    /// A `%` not followed by two hex digits, or a username/password that
    /// is not UTF-8 once decoded.
    InvalidEscape,
}

impl fmt::Display for ProxyUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyUrlError::HttpsProxy => f.write_str(
                "https:// proxies (TLS to the proxy) are not supported; use http://, socks5:// or socks5h://",
            ),
            ProxyUrlError::UnsupportedScheme(s) => write!(
                f,
                "proxy scheme {s:?} is not supported; use http://, socks5:// or socks5h://"
            ),
            ProxyUrlError::MissingHost => f.write_str("no proxy host"),
            ProxyUrlError::InvalidPort => f.write_str("proxy port is not 1-65535"),
            ProxyUrlError::InvalidEscape => f.write_str("bad %-escape in the proxy's credentials"),
        }
    }
}

impl std::error::Error for ProxyUrlError {}

/// A proxy handshake in progress, either kind. It lives on the stack for
/// one handshake; SOCKS5's fixed reply buffer makes it the larger, which
/// is cheaper than boxing it.
#[allow(clippy::large_enum_variant)]
enum Machine {
    Http(HttpConnect),
    Socks5(Socks5),
}

/// How much the proxy's answer may be read.
enum Want {
    /// Peek up to the buffer's size; then consume what `feed` took (HTTP:
    /// the head's end is only known once it is seen).
    Peek,
    /// Read at most this many bytes (SOCKS5: lengths are known).
    Read(usize),
}

/// Buffer for peeking at an HTTP proxy's head.
const PEEK_CHUNK: usize = 1024;

impl Machine {
    /// The machine for `proxy` and the first bytes to send.
    fn start(
        proxy: &Proxy,
        destination: &Destination,
        port: u16,
        authority: &str,
    ) -> Result<(Machine, Vec<u8>), ProxyError> {
        match proxy.kind {
            Kind::Http => {
                let (m, out) = HttpConnect::new(authority, proxy.credentials.as_ref());
                Ok((Machine::Http(m), out))
            }
            Kind::Socks5 => {
                let (m, out) = Socks5::new(destination, port, proxy.credentials.as_ref())?;
                Ok((Machine::Socks5(m), out))
            }
        }
    }

    fn want(&self) -> Want {
        match self {
            Machine::Http(_) => Want::Peek,
            Machine::Socks5(m) => Want::Read(m.need()),
        }
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<Option<usize>, ProxyError> {
        match self {
            Machine::Http(m) => m.feed(bytes),
            Machine::Socks5(m) => m.feed(bytes),
        }
    }

    fn take_output(&mut self) -> Vec<u8> {
        match self {
            Machine::Http(_) => Vec::new(),
            Machine::Socks5(m) => m.take_output(),
        }
    }

    fn closed(&self) -> ProxyError {
        match self {
            Machine::Http(_) => ProxyError::Closed,
            Machine::Socks5(m) => m.closed(),
        }
    }
}

impl Proxy {
    /// Whether the proxy resolves the server's name.
    pub(crate) fn remote_dns(&self) -> bool {
        self.kind == Kind::Http || self.remote_dns
    }
}

/// Asks the proxy at the other end of `tcp` for a tunnel to
/// `destination:port` (`authority` is its `host:port` text). On success
/// `tcp` carries the tunnel, positioned at its first byte.
pub(crate) async fn tunnel(
    tcp: &mut tokio::net::TcpStream,
    proxy: &Proxy,
    destination: &Destination,
    port: u16,
    authority: &str,
) -> Result<(), ProxyError> {
    let (mut machine, first) = Machine::start(proxy, destination, port, authority)?;
    tcp.write_all(&first).await.map_err(ProxyError::Io)?;
    let mut buf = [0u8; PEEK_CHUNK];
    loop {
        let (n, peeked) = match machine.want() {
            Want::Peek => (tcp.peek(&mut buf).await.map_err(ProxyError::Io)?, true),
            Want::Read(need) => {
                let window = buf.get_mut(..need.min(PEEK_CHUNK)).unwrap_or_default();
                (tcp.read(window).await.map_err(ProxyError::Io)?, false)
            }
        };
        if n == 0 {
            return Err(machine.closed());
        }
        let input = buf.get(..n).unwrap_or_default();
        let done = machine.feed(input)?;
        if peeked {
            // Consume exactly what was the proxy's: all of it while the
            // head goes on, up to its end once complete.
            let used = done.unwrap_or(n);
            let mut sink = [0u8; PEEK_CHUNK];
            let discard = sink.get_mut(..used).unwrap_or_default();
            tcp.read_exact(discard).await.map_err(ProxyError::Io)?;
        }
        if done.is_some() {
            return Ok(());
        }
        let out = machine.take_output();
        if !out.is_empty() {
            tcp.write_all(&out).await.map_err(ProxyError::Io)?;
        }
    }
}

/// [`tunnel`] over std's blocking TCP, within `timeout` in all (each
/// read and write is bounded by what is left of it; the socket's timeouts
/// are left set).
pub(crate) fn tunnel_blocking(
    tcp: &mut std::net::TcpStream,
    proxy: &Proxy,
    destination: &Destination,
    port: u16,
    authority: &str,
    timeout: Duration,
) -> Result<(), ProxyError> {
    let deadline = Instant::now() + timeout;
    let (mut machine, first) = Machine::start(proxy, destination, port, authority)?;
    arm(tcp, deadline)?;
    tcp.write_all(&first).map_err(blocking_error)?;
    let mut buf = [0u8; PEEK_CHUNK];
    loop {
        arm(tcp, deadline)?;
        let (n, peeked) = match machine.want() {
            Want::Peek => (retry(|| tcp.peek(&mut buf))?, true),
            Want::Read(need) => {
                let window = buf.get_mut(..need.min(PEEK_CHUNK)).unwrap_or_default();
                (retry(|| tcp.read(window))?, false)
            }
        };
        if n == 0 {
            return Err(machine.closed());
        }
        let input = buf.get(..n).unwrap_or_default();
        let done = machine.feed(input)?;
        if peeked {
            // The peeked bytes are in the socket's buffer: this read does
            // not wait.
            let used = done.unwrap_or(n);
            let mut sink = [0u8; PEEK_CHUNK];
            let discard = sink.get_mut(..used).unwrap_or_default();
            tcp.read_exact(discard).map_err(blocking_error)?;
        }
        if done.is_some() {
            return Ok(());
        }
        let out = machine.take_output();
        if !out.is_empty() {
            arm(tcp, deadline)?;
            tcp.write_all(&out).map_err(blocking_error)?;
        }
    }
}

/// Bounds the next blocking read or write by what is left until
/// `deadline`.
fn arm(tcp: &std::net::TcpStream, deadline: Instant) -> Result<(), ProxyError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(ProxyError::Io(timed_out("proxy handshake")));
    }
    tcp.set_read_timeout(Some(left))
        .and_then(|()| tcp.set_write_timeout(Some(left)))
        .map_err(ProxyError::Io)
}

/// A blocking socket's error; its timeout (`WouldBlock` on Unix) said as
/// one.
fn blocking_error(e: std::io::Error) -> ProxyError {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            ProxyError::Io(timed_out("proxy handshake"))
        }
        _ => ProxyError::Io(e),
    }
}

/// Repeats a read interrupted by a signal.
fn retry(mut read: impl FnMut() -> std::io::Result<usize>) -> Result<usize, ProxyError> {
    loop {
        match read() {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            other => return other.map_err(blocking_error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_as_curl_reads_them() {
        let p = Proxy::from_url("http://user:p%40ss@proxy.example:3128/").unwrap();
        assert_eq!(p.kind, Kind::Http);
        assert_eq!(p.addr(), "proxy.example:3128");
        assert_eq!(
            p.credentials,
            Some(Credentials {
                username: "user".into(),
                password: "p@ss".into()
            })
        );
        let p = Proxy::from_url("proxy.example").unwrap();
        assert_eq!((p.kind, p.addr()), (Kind::Http, "proxy.example:80"));
        let p = Proxy::from_url("socks5://[::1]").unwrap();
        assert_eq!(
            (p.kind, p.addr(), p.remote_dns()),
            (Kind::Socks5, "[::1]:1080", false)
        );
        let p = Proxy::from_url("SOCKS5H://127.0.0.1:9050").unwrap();
        assert_eq!((p.addr(), p.remote_dns()), ("127.0.0.1:9050", true));
        assert_eq!(
            Proxy::from_url("https://proxy:443"),
            Err(ProxyUrlError::HttpsProxy)
        );
        assert_eq!(
            Proxy::from_url("socks4://proxy:1080"),
            Err(ProxyUrlError::UnsupportedScheme("socks4".into()))
        );
        assert_eq!(
            Proxy::from_url("http://:80"),
            Err(ProxyUrlError::MissingHost)
        );
        assert_eq!(
            Proxy::from_url("http://h:0"),
            Err(ProxyUrlError::InvalidPort)
        );
        assert_eq!(
            Proxy::from_url("http://h:99999"),
            Err(ProxyUrlError::InvalidPort)
        );
        assert_eq!(
            Proxy::from_url("http://u:%zz@h"),
            Err(ProxyUrlError::InvalidEscape)
        );
    }

    #[test]
    fn debug_hides_the_password() {
        let p = Proxy::http("h:1").credentials("me", "hunter2");
        let text = format!("{p:?}");
        assert!(text.contains("me") && !text.contains("hunter2"), "{text}");
    }

    /// A proxy whose 2xx head and the server's first bytes arrive in one
    /// segment: the tunnel must start at the server's first byte.
    const HEAD_AND_SERVER_BYTES: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\nSERVER-FIRST";

    fn one_shot_proxy() -> std::net::SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut tcp, _) = listener.accept().unwrap();
            let mut buf = [0u8; 512];
            let _ = tcp.read(&mut buf).unwrap();
            tcp.write_all(HEAD_AND_SERVER_BYTES).unwrap();
            let _ = tcp.read(&mut buf);
        });
        addr
    }

    #[tokio::test]
    async fn bytes_after_the_head_stay_in_the_tunnel() {
        let addr = one_shot_proxy();
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let proxy = Proxy::http(addr.to_string());
        let destination = Destination::Domain("example.com".into());
        tunnel(&mut tcp, &proxy, &destination, 80, "example.com:80")
            .await
            .unwrap();
        let mut first = [0u8; 12];
        tcp.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"SERVER-FIRST");
    }

    #[test]
    fn bytes_after_the_head_stay_in_the_tunnel_blocking() {
        let addr = one_shot_proxy();
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        let proxy = Proxy::http(addr.to_string());
        let destination = Destination::Domain("example.com".into());
        tunnel_blocking(
            &mut tcp,
            &proxy,
            &destination,
            80,
            "example.com:80",
            Duration::from_secs(5),
        )
        .unwrap();
        let mut first = [0u8; 12];
        tcp.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"SERVER-FIRST");
    }

    #[test]
    fn http_proxies_always_resolve_remotely() {
        assert!(Proxy::http("h:1").resolve_locally().remote_dns());
        assert!(!Proxy::socks5("h:1").resolve_locally().remote_dns());
        assert!(Proxy::socks5("h:1").remote_dns());
    }
}
