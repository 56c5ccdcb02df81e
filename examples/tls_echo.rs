//! wss:// with tokio-rustls: a TLS echo server and a client, with a
//! self-signed certificate generated at start (rcgen). chito runs over the
//! TLS stream like over any other `AsyncRead + AsyncWrite`.
//!
//! `cargo run --example tls_echo --features tokio` runs both ends and
//! exchanges a few messages.

use std::sync::Arc;

use chito::handshake::ClientRequest;
use chito::{CloseCode, Handler, Message, OwnedEvent, Sender};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, sender: &mut Sender<'_>, message: Message<'_>) {
        let _ = sender.send(message);
    }
}

/// A certificate for `localhost` and the TLS configs of both ends.
pub fn tls_configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("server config");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("root");
    let client = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

/// Accepts TLS connections on `listener` and echoes over WebSocket.
pub async fn serve(listener: TcpListener, config: Arc<rustls::ServerConfig>) {
    let acceptor = TlsAcceptor::from(config);
    while let Ok((stream, _)) = listener.accept().await {
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            if let Ok(ws) = chito::tokio::Builder::new(tls).accept().await {
                ws.serve(&mut Echo).await;
            }
        });
    }
}

/// Connects with wss:// to `port` on localhost, echoes `messages`, closes;
/// returns what came back.
pub async fn client(
    port: u16,
    config: Arc<rustls::ClientConfig>,
    messages: &[&str],
) -> Result<Vec<String>, chito::Error> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::try_from("localhost").expect("server name");
    let tls = TlsConnector::from(config).connect(name, tcp).await?;
    let request = ClientRequest::new(format!("localhost:{port}"), "/");
    let (mut ws, _) = chito::tokio::Builder::new(tls).connect(&request).await?;
    let mut replies = Vec::new();
    for m in messages {
        ws.send(Message::Text(m)).await?;
        if let OwnedEvent::Text(reply) = ws.recv().await? {
            replies.push(reply);
        }
    }
    ws.close(CloseCode::Normal, "done").await?;
    while !matches!(ws.recv().await?, OwnedEvent::Close(_)) {}
    Ok(replies)
}

#[allow(dead_code)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let (server_config, client_config) = tls_configs();
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let port = listener.local_addr()?.port();
            tokio::spawn(serve(listener, server_config));
            let replies = client(port, client_config, &["hello", "over", "wss"]).await?;
            println!("wss echo on port {port}: {replies:?}");
            Ok(())
        })
}
