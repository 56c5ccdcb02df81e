//! TLS for `wss://` (feature `rustls`): the default client configuration,
//! built once per [`Connector`](crate::Connector), the handshake over TCP
//! (or a proxy's tunnel), and [`TlsError`].
//!
//! The crypto provider is always `ring`, given explicitly
//! (`ClientConfig::builder_with_provider`): rustls' process-wide default
//! panics when no provider, or more than one, is compiled in and none was
//! installed, and a client library must not depend on what else the
//! program links.

use std::fmt;
use std::io;

#[cfg(feature = "rustls")]
use std::sync::{Arc, OnceLock};

#[cfg(feature = "rustls")]
use rustls::pki_types::ServerName;
#[cfg(feature = "rustls")]
use rustls::ClientConfig;

/// RFC 6455 §4.1: the opening handshake is an HTTP/1.1 upgrade, so the
/// one application protocol to offer (RFC 7301) is `http/1.1`.
#[cfg(feature = "rustls")]
const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// Why the TLS handshake with the server failed ([`ConnectError::Tls`](crate::ConnectError::Tls)).
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// rustls refused: the certificate (see
    /// [`certificate_error`](Self::certificate_error)), an alert from the
    /// server, no common protocol version or cipher suite.
    #[cfg(feature = "rustls")]
    Rustls(rustls::Error),
    /// The transport failed during the TLS handshake, or it took longer
    /// than the connect timeout.
    Io(io::Error),
    /// The URL's host is not a name a certificate can be checked against.
    InvalidServerName,
    /// The default configuration has no root certificate to trust: the
    /// crate was built without `webpki-roots`, and `native-roots` found
    /// none. Enable one, or pass a configuration with
    /// [`Connector::tls`](crate::Connector::tls).
    NoRootCertificates,
    /// The server chose an application protocol other than `http/1.1`
    /// (possible only with a user configuration offering others).
    UnexpectedAlpn(Vec<u8>),
    /// A `wss://` URL, but the crate was built without feature `rustls`.
    NotEnabled,
}

impl TlsError {
    /// The certificate problem, if the server's certificate was refused:
    /// `NotValidForName`, `Expired`, `UnknownIssuer`, ….
    #[cfg(feature = "rustls")]
    pub fn certificate_error(&self) -> Option<&rustls::CertificateError> {
        match self {
            TlsError::Rustls(rustls::Error::InvalidCertificate(e)) => Some(e),
            _ => None,
        }
    }

    /// The error of a failed handshake, from tokio-rustls' or rustls'
    /// `io::Error` (which carries the rustls error inside).
    #[cfg(feature = "rustls")]
    fn from_io(e: io::Error) -> TlsError {
        if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
            if let Some(inner) = e.into_inner() {
                if let Ok(rustls_error) = inner.downcast::<rustls::Error>() {
                    return TlsError::Rustls(*rustls_error);
                }
            }
            // Unreachable: `is` said it was one.
            return TlsError::Io(io::Error::other("TLS handshake failed"));
        }
        TlsError::Io(e)
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            #[cfg(feature = "rustls")]
            TlsError::Rustls(e) => write!(f, "{e}"),
            TlsError::Io(e) => write!(f, "{e}"),
            TlsError::InvalidServerName => f.write_str("the host is not a valid TLS server name"),
            TlsError::NoRootCertificates => f.write_str(
                "no root certificates to trust (enable feature `webpki-roots` or `native-roots`, or pass a config to Connector::tls)",
            ),
            TlsError::UnexpectedAlpn(p) => write!(
                f,
                "the server chose ALPN {:?}, not http/1.1",
                String::from_utf8_lossy(p)
            ),
            TlsError::NotEnabled => {
                f.write_str("wss:// needs chito-client's feature `rustls` (on by default)")
            }
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            #[cfg(feature = "rustls")]
            TlsError::Rustls(e) => Some(e),
            TlsError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// A connector's TLS settings: the user's configuration, or the default
/// one, built on first use and shared by the connector's clones.
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsSetup {
    #[cfg(feature = "rustls")]
    user: Option<Arc<ClientConfig>>,
    /// `Err(None)`: no root certificates.
    #[cfg(feature = "rustls")]
    default: Arc<OnceLock<Result<Arc<ClientConfig>, Option<rustls::Error>>>>,
}

#[cfg(feature = "rustls")]
impl TlsSetup {
    pub(crate) fn set_user(&mut self, config: Arc<ClientConfig>) {
        self.user = Some(config);
    }

    /// The configuration to connect with.
    fn config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        if let Some(user) = &self.user {
            return Ok(user.clone());
        }
        match self.default.get_or_init(default_config) {
            Ok(config) => Ok(config.clone()),
            Err(Some(e)) => Err(TlsError::Rustls(e.clone())),
            Err(None) => Err(TlsError::NoRootCertificates),
        }
    }

    /// The configuration and the server name for `host`.
    fn prepare(&self, host: &str) -> Result<(Arc<ClientConfig>, ServerName<'static>), TlsError> {
        let config = self.config()?;
        // An IP address is checked against the certificate's IP SANs and
        // sent without SNI (RFC 6066 §3: "Literal IPv4 and IPv6 addresses
        // are not permitted in HostName"); rustls does both.
        let name =
            ServerName::try_from(host.to_owned()).map_err(|_| TlsError::InvalidServerName)?;
        Ok((config, name))
    }

    /// The TLS handshake over `tcp` (to the server, or a proxy's tunnel
    /// to it), with SNI and certificate name `host`.
    pub(crate) async fn connect(
        &self,
        host: &str,
        tcp: tokio::net::TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, TlsError> {
        let (config, name) = self.prepare(host)?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(TlsError::from_io)?;
        check_alpn(tls.get_ref().1.alpn_protocol())?;
        Ok(tls)
    }

    /// [`connect`](Self::connect) over std's blocking TCP, within
    /// `timeout` in all: the handshake is completed here, so that its
    /// failures are TLS errors, not the WebSocket handshake's. The
    /// socket's timeouts are left set.
    pub(crate) fn connect_blocking(
        &self,
        host: &str,
        mut tcp: std::net::TcpStream,
        timeout: std::time::Duration,
    ) -> Result<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>, TlsError> {
        let (config, name) = self.prepare(host)?;
        let mut conn = rustls::ClientConnection::new(config, name).map_err(TlsError::Rustls)?;
        let deadline = std::time::Instant::now() + timeout;
        let timed_out = || TlsError::Io(crate::connector::timed_out("TLS handshake"));
        while conn.is_handshaking() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(timed_out());
            }
            tcp.set_read_timeout(Some(left))
                .and_then(|()| tcp.set_write_timeout(Some(left)))
                .map_err(TlsError::Io)?;
            match conn.complete_io(&mut tcp) {
                Ok((0, 0)) if conn.is_handshaking() => {
                    return Err(TlsError::Io(io::ErrorKind::UnexpectedEof.into()))
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(timed_out())
                }
                Err(e) => return Err(TlsError::from_io(e)),
            }
        }
        check_alpn(conn.alpn_protocol())?;
        Ok(rustls::StreamOwned::new(conn, tcp))
    }
}

#[cfg(not(feature = "rustls"))]
impl TlsSetup {
    /// Without rustls, `wss://` cannot be opened.
    pub(crate) fn unavailable(&self) -> TlsError {
        TlsError::NotEnabled
    }
}

/// Refuses an application protocol other than HTTP/1.1 (none negotiated
/// is fine: the server simply does not do ALPN).
#[cfg(feature = "rustls")]
fn check_alpn(chosen: Option<&[u8]>) -> Result<(), TlsError> {
    match chosen {
        None | Some(ALPN_HTTP_1_1) => Ok(()),
        Some(other) => Err(TlsError::UnexpectedAlpn(other.to_vec())),
    }
}

/// The default configuration: the compiled-in roots (`webpki-roots`)
/// and/or the platform's (`native-roots`; both: their union), TLS 1.3 and
/// 1.2, ALPN `http/1.1`, ring.
#[cfg(feature = "rustls")]
fn default_config() -> Result<Arc<ClientConfig>, Option<rustls::Error>> {
    #[allow(unused_mut)]
    let mut roots = rustls::RootCertStore::empty();
    #[cfg(feature = "webpki-roots")]
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    #[cfg(feature = "native-roots")]
    {
        // Unreadable or unparsable platform certificates are skipped: one
        // bad file in /etc/ssl/certs must not make every wss:// fail.
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
    }
    if roots.is_empty() {
        return Err(None);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(Some)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    Ok(Arc::new(config))
}

#[cfg(all(test, feature = "rustls"))]
mod tests {
    use super::*;

    #[test]
    fn alpn_other_than_http_1_1_is_refused() {
        assert!(check_alpn(None).is_ok());
        assert!(check_alpn(Some(b"http/1.1")).is_ok());
        assert!(matches!(
            check_alpn(Some(b"h2")),
            Err(TlsError::UnexpectedAlpn(p)) if p == b"h2"
        ));
    }

    #[test]
    fn rustls_errors_are_found_inside_io_errors() {
        let inner = rustls::Error::InvalidCertificate(rustls::CertificateError::Expired);
        let e = TlsError::from_io(io::Error::new(io::ErrorKind::InvalidData, inner));
        assert_eq!(
            e.certificate_error(),
            Some(&rustls::CertificateError::Expired)
        );
        let e = TlsError::from_io(io::ErrorKind::ConnectionReset.into());
        assert!(matches!(e, TlsError::Io(_)));
        assert!(e.certificate_error().is_none());
    }

    #[cfg(feature = "webpki-roots")]
    #[test]
    fn the_default_config_is_built_once_and_shared() {
        let setup = TlsSetup::default();
        let a = setup.config().unwrap();
        let b = setup.clone().config().unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }
}
