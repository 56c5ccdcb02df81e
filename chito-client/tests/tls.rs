//! wss:// against a local TLS server (tokio-rustls + chito's server) with
//! certificates from a test CA: echo and ALPN, and the certificate
//! failures, each at `Hop::Tls` with rustls' own reason.
#![cfg(feature = "rustls")]

mod common;

use std::time::Duration;

use chito::{CloseCode, Message, OwnedEvent};
use chito_client::{ConnectError, Connector, Hop};
use common::{wss_server, Ca};
use rustls::CertificateError;

async fn echo_once(connector: &Connector, url: &str) -> Result<String, ConnectError> {
    let (mut ws, response) = connector.connect(url).await?;
    assert_eq!(response.status(), 101);
    ws.send(Message::Text("over tls")).await.unwrap();
    let reply = match ws.recv().await.unwrap() {
        OwnedEvent::Text(text) => text,
        other => panic!("{other:?}"),
    };
    ws.close(CloseCode::Normal, "").await.unwrap();
    Ok(reply)
}

fn certificate_error(err: &ConnectError) -> CertificateError {
    assert_eq!(err.hop(), Hop::Tls, "{err}");
    match err {
        ConnectError::Tls { error, .. } => error
            .certificate_error()
            .cloned()
            .unwrap_or_else(|| panic!("not a certificate error: {err}")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn echo_by_name_and_by_ip_with_alpn_http_1_1() {
    let ca = Ca::new("chito test CA");
    let server = wss_server(ca.leaf(&["localhost", "127.0.0.1"], false)).await;
    let connector = Connector::new()
        .tls(ca.client_config())
        .connect_timeout(Duration::from_secs(5));
    let port = server.addr.port();
    for url in [
        format!("wss://localhost:{port}/a"),
        format!("wss://127.0.0.1:{port}/b"),
    ] {
        assert_eq!(echo_once(&connector, &url).await.unwrap(), "over tls");
    }
    let alpn = server.alpn.lock().unwrap().clone();
    assert_eq!(alpn, vec![Some(b"http/1.1".to_vec()); 2]);
}

#[tokio::test]
async fn wrong_name_expired_and_unknown_root_fail_at_tls() {
    let ca = Ca::new("chito test CA");
    let connector = Connector::new()
        .tls(ca.client_config())
        .connect_timeout(Duration::from_secs(5));

    let other_name = wss_server(ca.leaf(&["example.com"], false)).await;
    let url = format!("wss://localhost:{}/", other_name.addr.port());
    let err = connector.connect(&url).await.unwrap_err();
    assert!(
        matches!(
            certificate_error(&err),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.starts_with("TLS with localhost failed: "), "{text}");
    assert!(text.contains("not valid for name"), "{text}");

    let expired = wss_server(ca.leaf(&["localhost"], true)).await;
    let url = format!("wss://localhost:{}/", expired.addr.port());
    let err = connector.connect(&url).await.unwrap_err();
    assert!(
        matches!(
            certificate_error(&err),
            CertificateError::Expired | CertificateError::ExpiredContext { .. }
        ),
        "{err}"
    );

    let stranger = Ca::new("someone else's CA");
    let unknown = wss_server(stranger.leaf(&["localhost"], false)).await;
    let url = format!("wss://localhost:{}/", unknown.addr.port());
    let err = connector.connect(&url).await.unwrap_err();
    assert_eq!(certificate_error(&err), CertificateError::UnknownIssuer);
}

#[cfg(feature = "webpki-roots")]
#[tokio::test]
async fn the_default_roots_refuse_a_private_ca() {
    let ca = Ca::new("chito test CA");
    let server = wss_server(ca.leaf(&["localhost"], false)).await;
    let url = format!("wss://localhost:{}/", server.addr.port());
    let connector = Connector::new().connect_timeout(Duration::from_secs(5));
    let err = connector.connect(&url).await.unwrap_err();
    assert_eq!(certificate_error(&err), CertificateError::UnknownIssuer);
}

#[tokio::test]
async fn a_plain_server_behind_wss_is_a_tls_error_not_a_hang() {
    // A ws:// server answers the ClientHello with nothing TLS can read.
    let server = common::ws_server().await;
    let ca = Ca::new("chito test CA");
    let connector = Connector::new()
        .tls(ca.client_config())
        .connect_timeout(Duration::from_secs(2));
    let url = format!("wss://localhost:{}/", server.addr.port());
    let err = connector.connect(&url).await.unwrap_err();
    assert_eq!(err.hop(), Hop::Tls, "{err}");
}

#[test]
fn blocking_echo_over_tls_and_refusal() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ca = Ca::new("chito test CA");
    let server = runtime.block_on(wss_server(ca.leaf(&["localhost"], false)));
    let connector = Connector::new()
        .tls(ca.client_config())
        .connect_timeout(Duration::from_secs(5));
    let url = format!("wss://localhost:{}/blocking", server.addr.port());
    let (mut ws, response) = connector.connect_blocking(&url).unwrap();
    assert_eq!(response.status(), 101);
    assert!(matches!(ws.get_ref(), chito_client::BlockingStream::Tls(_)));
    ws.send(Message::Binary(b"blocking tls")).unwrap();
    match ws.recv().unwrap() {
        OwnedEvent::Binary(bytes) => assert_eq!(bytes, b"blocking tls"),
        other => panic!("{other:?}"),
    }
    ws.close(CloseCode::Normal, "").unwrap();
    assert_eq!(
        server.alpn.lock().unwrap().clone(),
        vec![Some(b"http/1.1".to_vec())]
    );

    let stranger = Ca::new("someone else's CA");
    let url = format!("wss://127.0.0.1:{}/", server.addr.port());
    let err = Connector::new()
        .tls(stranger.client_config())
        .connect_blocking(&url)
        .unwrap_err();
    assert_eq!(certificate_error(&err), CertificateError::UnknownIssuer);
}
