//! Headless Chromium speaks WebSocket over HTTP/2 (RFC 8441) to axum.
//!
//! Chromium uses HTTP/2 only over TLS (ALPN `h2`), and opens a WebSocket
//! over HTTP/2 only on an HTTP/2 connection it already has whose server
//! announced `SETTINGS_ENABLE_CONNECT_PROTOCOL`; so axum serves behind
//! rustls with ALPN `h2` (a certificate made at start by rcgen, which
//! Chromium is told to trust by its SPKI hash), the page is loaded first,
//! and the page then opens `wss://` to the same origin. On the server's
//! side the test asserts that the page came over HTTP/2 and the WebSocket
//! as an HTTP/2 extended CONNECT with permessage-deflate (the socket of
//! `common::echo` reports what it saw); on the browser's side, the
//! protocol, the extensions, the echoes and a clean close.
//!
//! Chromium is Debian's (`/usr/bin/chromium`, or `$CHROMIUM`), installed
//! with apt-get if missing, as tests/browser/run.sh does; playwright-core
//! drives it and is installed from npm into the target directory on first
//! use (as the Python peer of tests/http1.rs is from PyPI). The test runs
//! within `common::BOUND`; every step of the driver within its own limit.
#![cfg(all(feature = "deflate", feature = "http2"))]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::Html;
use axum::routing::{any, get};
use axum::Router;
use chito::handshake::UpgradeForm;
use http::{Method, Version};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use common::{bounded, echo};

const PLAYWRIGHT_VERSION: &str = "1.65.1";

/// The HTTP versions the page was loaded with.
type Pages = mpsc::UnboundedSender<Version>;

/// A certificate for 127.0.0.1 and the server's TLS config offering `h2`
/// first, then `http/1.1`; the certificate's PEM.
fn tls() -> (Arc<rustls::ServerConfig>, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (Arc::new(config), certified.cert.pem())
}

/// TLS connections for `axum::serve`: the handshake runs in `accept`
/// (a failed one is dropped), so axum sees the decrypted stream, on which
/// hyper's auto builder finds the HTTP/2 preface.
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            let handshake = self.acceptor.accept(tcp);
            if let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), handshake).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

const PAGE: &str = r#"<!doctype html>
<title>chito-axum over HTTP/2</title>
<p>WebSocket over HTTP/2</p>
"#;

/// The page, and the version it was asked for with.
async fn page(State(pages): State<Pages>, version: Version) -> Html<&'static str> {
    let _ = pages.send(version);
    Html(PAGE)
}

/// The driver: loads the page over HTTP/2, opens a WebSocket from it,
/// echoes text and binary, closes, and prints what it saw as `key value`
/// lines.
const DRIVER: &str = r#"
import { chromium } from 'playwright-core';
import { X509Certificate, createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

const [url, certPath] = process.argv.slice(2);
setTimeout(() => { console.log('FAIL: the driver took longer than 60 s'); process.exit(1); }, 60_000);
// Chromium trusts this certificate by the SHA-256 of its public key.
const spki = createHash('sha256')
  .update(new X509Certificate(readFileSync(certPath)).publicKey.export({ type: 'spki', format: 'der' }))
  .digest('base64');
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  timeout: 30_000,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    `--ignore-certificate-errors-spki-list=${spki}`,
  ],
});
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(10_000);
  page.on('console', (m) => console.error(`console ${m.type()}: ${m.text()}`));
  await page.goto(url, { timeout: 10_000 });
  const result = await page.evaluate(async (wsUrl) => {
    const ws = new WebSocket(wsUrl, ['chat']);
    ws.binaryType = 'arraybuffer';
    const events = [];
    let wake = null;
    const next = () => new Promise((resolve, reject) => {
      if (events.length) return resolve(events.shift());
      wake = resolve;
      setTimeout(() => reject(new Error('no event within 10 s')), 10_000);
    });
    const push = (e) => { if (wake) { const w = wake; wake = null; w(e); } else events.push(e); };
    ws.onopen = () => push({ open: true });
    ws.onmessage = (m) => push({ data: m.data });
    ws.onerror = () => push({ error: true });
    ws.onclose = (c) => push({ close: c.code, clean: c.wasClean });
    const opened = await next();
    if (!opened.open) return { failed: JSON.stringify(opened) };
    const text = 'over http/2 '.repeat(100);
    ws.send(text);
    const textEcho = (await next()).data;
    ws.send(new Uint8Array([1, 2, 3, 4, 5]));
    const binaryEcho = Array.from(new Uint8Array((await next()).data));
    ws.close(1000, 'done');
    const closed = await next();
    return {
      'ws-protocol': ws.protocol,
      'ws-extensions': ws.extensions,
      'text-echoed': textEcho === text,
      'binary-echo': binaryEcho.join(','),
      closed: `${closed.close} clean=${closed.clean}`,
    };
  }, url.replace('https://', 'wss://') + 'ws');
  const navigation = await page.evaluate(
    () => performance.getEntriesByType('navigation')[0].nextHopProtocol);
  // One `key value` line each, for the test to check.
  console.log(`page-protocol ${navigation}`);
  for (const [key, value] of Object.entries(result)) {
    console.log(`${key} ${typeof value === 'object' ? JSON.stringify(value) : value}`);
  }
} finally {
  await browser.close();
}
process.exit(0);
"#;

/// A directory with playwright-core in its node_modules, installed from
/// npm on first use (no browser download: playwright-core has none).
async fn playwright_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("playwright-core-{PLAYWRIGHT_VERSION}"));
    if !dir
        .join("node_modules/playwright-core/package.json")
        .is_file()
    {
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
            .arg("--prefix")
            .arg(&dir)
            .arg(format!("playwright-core@{PLAYWRIGHT_VERSION}"))
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .status()
            .await
            .expect("node and npm must be installed to run the browser test");
        assert!(status.success(), "npm install playwright-core failed");
    }
    dir
}

/// Chromium's path: `$CHROMIUM`, or Debian's, installed if missing.
async fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return path.into();
    }
    let path = Path::new("/usr/bin/chromium");
    if !path.exists() {
        for args in [
            &["update", "-qq"][..],
            &["install", "-y", "-qq", "chromium"],
        ] {
            let status = Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .status()
                .await
                .expect("apt-get must be available to install chromium");
            assert!(status.success(), "apt-get {args:?} failed (root is needed)");
        }
    }
    path.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_opens_a_websocket_over_http2() {
    // Installing Chromium or playwright-core on a fresh machine may take
    // longer than a test's usual bound.
    let (dir, chromium) = tokio::time::timeout(Duration::from_secs(600), async {
        (playwright_dir().await, chromium().await)
    })
    .await
    .expect("installing playwright-core and chromium took over 10 minutes");

    bounded(async {
        let (pages, mut loaded) = mpsc::unbounded_channel();
        let (reports, mut seen) = mpsc::unbounded_channel();
        let app = Router::new()
            .route("/", get(page).with_state(pages))
            .route("/ws", any(echo))
            .with_state(reports);
        let (config, pem) = tls();
        let listener = TlsListener {
            tcp: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            acceptor: TlsAcceptor::from(config),
        };
        let addr = listener.tcp.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let script = dir.join("h2.test.mjs");
        std::fs::write(&script, DRIVER).unwrap();
        let cert = dir.join(format!("cert-{}.pem", addr.port()));
        std::fs::write(&cert, pem).unwrap();
        let output = Command::new("node")
            .arg(&script)
            .arg(format!("https://{addr}/"))
            .arg(&cert)
            .env("CHROMIUM", &chromium)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        let _ = std::fs::remove_file(&cert);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "driver failed: {stdout}");
        let said = |key: &str| {
            stdout
                .lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix(' '))
                .unwrap_or_else(|| panic!("no {key} in the driver's output: {stdout}"))
                .to_owned()
        };

        // The server's view: the page and the WebSocket on HTTP/2, the
        // WebSocket as an extended CONNECT, with deflate.
        assert_eq!(loaded.recv().await, Some(Version::HTTP_2));
        let report = seen.recv().await.unwrap();
        assert_eq!(report.version, Version::HTTP_2);
        assert_eq!(report.method, Method::CONNECT);
        assert_eq!(report.form, UpgradeForm::ExtendedConnect);
        assert_eq!(report.path, "/ws");
        assert_eq!(report.selected.as_deref(), Some("chat"));
        assert!(report.negotiated.deflate.is_some());
        assert_eq!(report.close, Some((1000, "done".to_owned())));
        // The browser's view.
        assert_eq!(said("page-protocol"), "h2");
        assert_eq!(said("ws-protocol"), "chat");
        assert!(
            said("ws-extensions").starts_with("permessage-deflate"),
            "{stdout}"
        );
        assert_eq!(said("text-echoed"), "true");
        assert_eq!(said("binary-echo"), "1,2,3,4,5");
        assert_eq!(said("closed"), "1000 clean=true");
    })
    .await;
}
