//! ws:// and wss:// through a real proxy, pproxy (PyPI, installed into
//! target/ on first use), serving HTTP CONNECT and SOCKS5 on one port,
//! with and without credentials; and, for the answers pproxy never gives
//! (403, 502, SOCKS5 replies X'02' and X'05'), a scripted fake proxy.
#![cfg(feature = "rustls")]

mod common;

use std::time::Duration;

use chito::{CloseCode, Message, OwnedEvent};
use chito_client::{ConnectError, Connector, Hop, Proxy, ProxyError, SocksReply};
use common::{closed_port, ws_server, wss_server, Ca, Pproxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const TIMEOUT: Duration = Duration::from_secs(5);

async fn echo(connector: &Connector, url: &str) {
    let (mut ws, response) = connector
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(response.status(), 101);
    ws.send(Message::Text(url)).await.unwrap();
    match ws.recv().await.unwrap() {
        OwnedEvent::Text(text) => assert_eq!(text, url),
        other => panic!("{other:?}"),
    }
    ws.close(CloseCode::Normal, "").await.unwrap();
}

fn proxy_error(err: &ConnectError) -> &ProxyError {
    assert_eq!(err.hop(), Hop::Proxy, "{err}");
    match err {
        ConnectError::Proxy { error, .. } => error,
        other => panic!("{other:?}"),
    }
}

/// Connects through `proxy`, expecting an error.
async fn connect_err(proxy: Proxy, url: &str) -> ConnectError {
    Connector::new()
        .proxy(proxy)
        .connect_timeout(TIMEOUT)
        .connect(url)
        .await
        .map(|_| ())
        .unwrap_err()
}

/// The four routes through pproxy: HTTP CONNECT, SOCKS5 with remote DNS
/// (by name), SOCKS5 with local DNS; ws and wss each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_and_wss_through_http_and_socks5_without_and_with_auth() {
    let ca = Ca::new("chito test CA");
    let ws = ws_server().await;
    let wss = wss_server(ca.leaf(&["localhost"], false)).await;
    let urls = [
        format!("ws://localhost:{}/plain", ws.addr.port()),
        format!("wss://localhost:{}/secure", wss.addr.port()),
    ];
    for credentials in [None, Some(("user", "p@ss:word"))] {
        let pproxy = Pproxy::start(credentials);
        let with_auth = |proxy: Proxy| match credentials {
            Some((user, pass)) => proxy.credentials(user, pass),
            None => proxy,
        };
        let proxies = [
            with_auth(Proxy::http(pproxy.addr())),
            with_auth(Proxy::socks5(pproxy.addr())),
            with_auth(Proxy::socks5(pproxy.addr()).resolve_locally()),
        ];
        for proxy in proxies {
            let connector = Connector::new()
                .proxy(proxy)
                .tls(ca.client_config())
                .connect_timeout(TIMEOUT);
            for url in &urls {
                echo(&connector, url).await;
            }
        }
    }
    // TLS ran end to end through the tunnels: the server negotiated
    // http/1.1 with each of the 6 wss clients.
    assert_eq!(wss.alpn.lock().unwrap().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_urls_in_curl_form_work_too() {
    let ws = ws_server().await;
    let pproxy = Pproxy::start(Some(("user", "p@ss")));
    let url = format!("ws://127.0.0.1:{}/", ws.addr.port());
    for scheme in ["http", "socks5", "socks5h"] {
        let proxy_url = format!("{scheme}://user:p%40ss@{}", pproxy.addr());
        let proxy = Proxy::from_url(&proxy_url).unwrap();
        echo(
            &Connector::new().proxy(proxy).connect_timeout(TIMEOUT),
            &url,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_credentials_are_proxy_auth_errors() {
    let ws = ws_server().await;
    let pproxy = Pproxy::start(Some(("user", "pass")));
    let url = format!("ws://127.0.0.1:{}/", ws.addr.port());
    // HTTP: 407, with and without wrong credentials.
    for proxy in [
        Proxy::http(pproxy.addr()).credentials("user", "wrong"),
        Proxy::http(pproxy.addr()),
    ] {
        let err = connect_err(proxy, &url).await;
        assert!(matches!(proxy_error(&err), ProxyError::Auth(_)), "{err}");
        assert!(err.to_string().contains("407"), "{err}");
    }
    // SOCKS5: pproxy drops the connection on wrong credentials instead of
    // answering status X'01'; that is still an auth failure.
    let err = connect_err(
        Proxy::socks5(pproxy.addr()).credentials("user", "wrong"),
        &url,
    )
    .await;
    assert!(matches!(proxy_error(&err), ProxyError::Auth(_)), "{err}");
    // SOCKS5 without credentials: pproxy closes without a method
    // selection (RFC 1928 would have it answer X'FF').
    let err = connect_err(Proxy::socks5(pproxy.addr()), &url).await;
    assert!(matches!(proxy_error(&err), ProxyError::Closed), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_proxy_is_a_tcp_error_naming_the_proxy() {
    let addr = format!("127.0.0.1:{}", closed_port());
    for proxy in [Proxy::http(addr.clone()), Proxy::socks5(addr.clone())] {
        let err = Connector::new()
            .proxy(proxy)
            .connect_timeout(TIMEOUT)
            .connect("ws://example.invalid/")
            .await
            .map(|_| ())
            .unwrap_err();
        assert_eq!(err.hop(), Hop::Tcp, "{err}");
        match &err {
            ConnectError::Tcp {
                addr: tried, proxy, ..
            } => assert_eq!((tried.as_str(), *proxy), (addr.as_str(), true)),
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains(&format!("proxy {addr}")), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_target_is_the_proxys_answer() {
    let pproxy = Pproxy::start(None);
    let url = format!("ws://127.0.0.1:{}/", closed_port());
    // HTTP: pproxy closes the connection without a status line when the
    // target refuses.
    let err = Connector::new()
        .proxy(Proxy::http(pproxy.addr()))
        .connect_timeout(TIMEOUT)
        .connect(&url)
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(proxy_error(&err), ProxyError::Closed), "{err}");
    assert!(err
        .to_string()
        .contains("closed the connection before answering"));
    // SOCKS5: pproxy answers "succeeded" before it connects onwards, then
    // closes: the tunnel ends during the WebSocket handshake.
    let err = Connector::new()
        .proxy(Proxy::socks5(pproxy.addr()))
        .connect_timeout(TIMEOUT)
        .connect(&url)
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.hop(), Hop::Handshake, "{err}");
}

/// A proxy that answers each message read with the next scripted reply,
/// then keeps the connection until the client goes. The task's result is
/// what it read, message by message.
async fn scripted_proxy(script: Vec<Vec<u8>>) -> (String, JoinHandle<Vec<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let mut received = Vec::new();
        for reply in script {
            let n = tcp.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return received;
            }
            received.push(buf[..n].to_vec());
            tcp.write_all(&reply).await.unwrap();
        }
        let _ = tcp.read(&mut buf).await;
        received
    });
    (addr, task)
}

/// socks5h (the default) sends the name for the proxy to resolve
/// (ATYP X'03'); `resolve_locally` (socks5://) resolves it here and sends
/// the address (X'01' 127.0.0.1 or X'04' ::1 for `localhost`).
#[tokio::test]
async fn socks5_sends_the_name_or_the_resolved_address() {
    let refused = vec![5, 5, 0, 1, 0, 0, 0, 0, 0, 0];
    for scheme in ["socks5h", "socks5"] {
        let (addr, task) = scripted_proxy(vec![vec![5, 0], refused.clone()]).await;
        let proxy = Proxy::from_url(&format!("{scheme}://{addr}")).unwrap();
        let err = connect_err(proxy, "ws://localhost:8080/").await;
        assert!(
            matches!(proxy_error(&err), ProxyError::SocksRefused(_)),
            "{err}"
        );
        let received = task.await.unwrap();
        assert_eq!(received[0], [5, 1, 0]);
        let request = &received[1];
        assert_eq!(request[..3], [5, 1, 0]);
        assert_eq!(request[request.len() - 2..], [0x1f, 0x90]);
        let address = &request[3..request.len() - 2];
        if scheme == "socks5h" {
            assert_eq!(address, [&[3u8, 9][..], b"localhost"].concat());
        } else {
            let mut v6_loopback = vec![4u8];
            v6_loopback.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
            assert!(
                address == [1, 127, 0, 0, 1] || address == v6_loopback,
                "{address:?}"
            );
        }
    }
}

#[tokio::test]
async fn http_refusals_carry_status_and_reason() {
    for (reply, status, reason) in [
        (&b"HTTP/1.1 403 Forbidden\r\n\r\n"[..], 403, "Forbidden"),
        (
            b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n",
            502,
            "Bad Gateway",
        ),
    ] {
        let (addr, _) = scripted_proxy(vec![reply.to_vec()]).await;
        let err = Connector::new()
            .proxy(Proxy::http(addr.clone()))
            .connect_timeout(TIMEOUT)
            .connect("ws://example.com/")
            .await
            .map(|_| ())
            .unwrap_err();
        match proxy_error(&err) {
            ProxyError::Refused {
                status: s,
                reason: r,
            } => assert_eq!((*s, r.as_str()), (status, reason)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            err.to_string(),
            format!("proxy {addr} refused CONNECT example.com:80: {status} {reason}")
        );
    }
}

#[tokio::test]
async fn socks5_failure_replies_are_named() {
    for (code, expected) in [
        (2, SocksReply::NotAllowed),
        (5, SocksReply::ConnectionRefused),
    ] {
        let reply = vec![5, code, 0, 1, 0, 0, 0, 0, 0, 0];
        let (addr, _) = scripted_proxy(vec![vec![5, 0], reply]).await;
        let err = Connector::new()
            .proxy(Proxy::socks5(addr.clone()))
            .connect_timeout(TIMEOUT)
            .connect("wss://example.com/")
            .await
            .map(|_| ())
            .unwrap_err();
        match proxy_error(&err) {
            ProxyError::SocksRefused(reply) => assert_eq!(*reply, expected),
            other => panic!("{other:?}"),
        }
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("proxy {addr} refused CONNECT example.com:443: ")),
            "{text}"
        );
        assert!(text.contains(&format!("{code:#04x}")), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_proxy_times_out_at_the_proxy_hop() {
    // Accepts, reads, never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let connector = Connector::new()
        .proxy(Proxy::http(addr))
        .connect_timeout(Duration::from_millis(200));
    let timed_out = |err: &ConnectError| match proxy_error(err) {
        ProxyError::Io(e) => assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{err}"),
        other => panic!("{other:?}"),
    };
    let started = std::time::Instant::now();
    let err = connector
        .connect("ws://example.com/")
        .await
        .map(|_| ())
        .unwrap_err();
    timed_out(&err);
    let blocking = connector.clone();
    let err = tokio::task::spawn_blocking(move || {
        blocking
            .connect_blocking("ws://example.com/")
            .map(|_| ())
            .unwrap_err()
    })
    .await
    .unwrap();
    timed_out(&err);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    holder.abort();
}

#[test]
fn blocking_through_http_and_socks5_proxies() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ca = Ca::new("chito test CA");
    let wss = runtime.block_on(wss_server(ca.leaf(&["localhost"], false)));
    let pproxy = Pproxy::start(Some(("user", "pass")));
    let url = format!("wss://localhost:{}/blocking", wss.addr.port());
    for proxy in [Proxy::http(pproxy.addr()), Proxy::socks5(pproxy.addr())] {
        let connector = Connector::new()
            .proxy(proxy.credentials("user", "pass"))
            .tls(ca.client_config())
            .connect_timeout(TIMEOUT);
        let (mut ws, _) = connector.connect_blocking(&url).unwrap();
        ws.send(Message::Text("through the proxy")).unwrap();
        match ws.recv().unwrap() {
            OwnedEvent::Text(text) => assert_eq!(text, "through the proxy"),
            other => panic!("{other:?}"),
        }
        ws.close(CloseCode::Normal, "").unwrap();
    }
    // The same errors as the async path: wrong credentials, dead proxy.
    let err = Connector::new()
        .proxy(Proxy::http(pproxy.addr()).credentials("user", "wrong"))
        .connect_blocking(&url)
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(proxy_error(&err), ProxyError::Auth(_)), "{err}");
    let dead = format!("127.0.0.1:{}", closed_port());
    let err = Connector::new()
        .proxy(Proxy::socks5(dead))
        .connect_blocking(&url)
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(err, ConnectError::Tcp { proxy: true, .. }),
        "{err}"
    );
}
