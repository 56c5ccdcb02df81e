//! Built without feature `rustls`: `wss://` is refused before anything is
//! sent, with an error that names the feature.
#![cfg(not(feature = "rustls"))]

use chito_client::{ConnectError, Connector, Hop, TlsError};

#[tokio::test]
async fn wss_names_the_missing_feature() {
    // A closed port: had TCP been tried first, this would be Hop::Tcp.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("wss://127.0.0.1:{port}/");
    let err = Connector::new()
        .connect(&url)
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.hop(), Hop::Tls);
    assert!(matches!(
        err,
        ConnectError::Tls {
            error: TlsError::NotEnabled,
            ..
        }
    ));
    assert!(err.to_string().contains("feature `rustls`"), "{err}");
    let err = Connector::new()
        .connect_blocking(&url)
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.hop(), Hop::Tls, "{err}");
}
