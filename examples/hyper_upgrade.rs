//! Embedding chito in a hyper 1.x server: hyper parses and answers the HTTP
//! request; chito validates the upgrade and builds the 101 response from
//! the request's method, target and header pairs (the core never depends on
//! the `http` crate); the upgraded connection becomes a chito WebSocket.
//!
//! `cargo run --example hyper_upgrade --features tokio -- 127.0.0.1:9002`
//! then connect to ws://127.0.0.1:9002/ws (any other path gets plain HTTP).

use std::convert::Infallible;

use bytes::Bytes;
use chito::handshake::{Accept, Rejection, UpgradeRequest};
use chito::{Config, Connection, Handler, Message, Role, Sender};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, sender: &mut Sender<'_>, message: Message<'_>) {
        let _ = sender.send(message);
    }
}

/// hyper's request handler: upgrades `/ws`, answers everything else.
async fn handle(mut request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() != "/ws" {
        return Ok(Response::new(Full::new(Bytes::from_static(
            b"hello from hyper\n",
        ))));
    }
    let config = Config::default();
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let minor = if request.version() == hyper::Version::HTTP_10 {
        0
    } else {
        1
    };
    let accepted = UpgradeRequest::from_parts(
        request.method().as_str(),
        &target,
        minor,
        request
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes())),
        &config,
    )
    .and_then(|ws_request| ws_request.accept(Accept::default(), &config));
    let accepted = match accepted {
        Ok(accepted) => accepted,
        Err(rejection) => return Ok(refusal(&rejection)),
    };
    let upgrade = hyper::upgrade::on(&mut request);
    let negotiated = accepted.negotiated().clone();
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                let conn = Connection::with_negotiated(Role::Server, config, negotiated, &[]);
                chito::tokio::Builder::new(TokioIo::new(upgraded))
                    .upgraded(conn)
                    .serve(&mut Echo)
                    .await;
            }
            Err(e) => eprintln!("upgrade failed: {e}"),
        }
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for (name, value) in accepted.headers() {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            hyper::header::HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    Ok(response)
}

/// chito's refusal as a hyper response: status, headers, reason as body.
fn refusal(rejection: &Rejection) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(rejection.reason().to_owned())));
    *response.status_mut() =
        StatusCode::from_u16(rejection.status()).unwrap_or(StatusCode::BAD_REQUEST);
    for (name, value) in rejection.headers() {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            hyper::header::HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

/// Serves HTTP (with WebSocket upgrades on `/ws`) on `listener` forever.
pub async fn run(listener: TcpListener) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let served = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(handle))
                .with_upgrades()
                .await;
            if let Err(e) = served {
                eprintln!("http connection error: {e}");
            }
        });
    }
}

#[allow(dead_code)]
fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9002".into());
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let listener = TcpListener::bind(&addr).await?;
            println!("hyper + chito on http://{addr}/ (WebSocket at ws://{addr}/ws)");
            run(listener).await
        })
}
