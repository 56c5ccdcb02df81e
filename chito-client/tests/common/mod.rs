//! What the client tests share: a certificate authority made with rcgen,
//! ws and wss echo servers on loopback (chito's server over tokio-rustls),
//! and a real proxy (pproxy from PyPI) started as a child process.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chito::{Handler, Message, Sender};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;

fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A test certificate authority.
pub struct Ca {
    pub root: CertificateDer<'static>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// A server's certificate chain and key.
pub struct Leaf {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let root = params.self_signed(&key).unwrap().der().clone();
        Ca {
            root,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A leaf for `names` (DNS names or IP addresses), valid now, or
    /// expired since 2020 when `expired`.
    pub fn leaf(&self, names: &[&str], expired: bool) -> Leaf {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2019, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }

    /// A client configuration trusting only this CA, offering ALPN
    /// `http/1.1`.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.root.clone()).unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(ring())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, sender: &mut Sender<'_>, message: Message<'_>) {
        let _ = sender.send(message);
    }
}

/// A running echo server.
pub struct Server {
    pub addr: SocketAddr,
    /// wss: the ALPN protocol each accepted TLS session negotiated.
    pub alpn: Arc<Mutex<Vec<Option<Vec<u8>>>>>,
}

/// A `ws://` echo server on 127.0.0.1 (a tokio task).
pub async fn ws_server() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(ws) = chito::tokio::Builder::new(tcp).accept().await {
                    ws.serve(&mut Echo).await;
                }
            });
        }
    });
    Server {
        addr,
        alpn: Arc::default(),
    }
}

/// A `wss://` echo server on 127.0.0.1 presenting `leaf`, offering ALPN
/// `http/1.1`.
pub async fn wss_server(leaf: Leaf) -> Server {
    let mut config = rustls::ServerConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(leaf.chain, leaf.key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let alpn: Arc<Mutex<Vec<Option<Vec<u8>>>>> = Arc::default();
    let seen = alpn.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let chosen = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                seen.lock().unwrap().push(chosen);
                if let Ok(ws) = chito::tokio::Builder::new(tls).accept().await {
                    ws.serve(&mut Echo).await;
                }
            });
        }
    });
    Server { addr, alpn }
}

/// A port nothing listens on (bound, then closed).
pub fn closed_port() -> u16 {
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[path = "../../../tests/pypi/mod.rs"]
mod pypi;

const PPROXY_VERSION: &str = "2.7.9";

/// A directory holding the `pproxy` package, for PYTHONPATH; installed
/// from PyPI on first use.
fn pproxy_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| pypi::install("pproxy", PPROXY_VERSION, "pproxy"))
}

/// A pproxy process serving HTTP CONNECT and SOCKS5 on one port; killed
/// when dropped.
pub struct Pproxy {
    pub port: u16,
    child: Child,
}

impl Pproxy {
    /// Starts `python3 -m pproxy -l 'http+socks5://127.0.0.1:PORT[#user:pass]'`
    /// and waits until it accepts connections. `--auth 0`: pproxy would
    /// otherwise let an address that authenticated once in for 30 days.
    pub fn start(credentials: Option<(&str, &str)>) -> Pproxy {
        let path = pproxy_path();
        let port = closed_port();
        let mut listen = format!("http+socks5://127.0.0.1:{port}");
        if let Some((user, pass)) = credentials {
            listen.push_str(&format!("#{user}:{pass}"));
        }
        let child = Command::new("python3")
            .args(["-m", "pproxy", "--auth", "0", "-l", &listen])
            .env("PYTHONPATH", path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pproxy");
        let proxy = Pproxy { port, child };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "pproxy did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        proxy
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Pproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
