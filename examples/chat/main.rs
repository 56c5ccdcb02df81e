//! A browser chat with rooms:
//! `cargo run --example chat --features rooms -- 127.0.0.1:8080`, then open
//! http://127.0.0.1:8080/ in a few browser tabs.
//!
//! One listener serves both the page and the WebSocket: each connection's
//! HTTP request head is read here, then `GET /` gets the page (embedded
//! with `include_str!`) and `GET /ws` is validated and accepted with
//! chito's `UpgradeRequest` and handed to the tokio adapter. Browsers offer
//! permessage-deflate and chito accepts it by default.
//!
//! The page, the JSON protocol and the rooms are in `chat.rs`, which
//! `chito-axum/examples/axum_chat` serves through axum as well.
//!
//! Pass `127.0.0.1:0` to let the system choose a port; the first line
//! printed names the address in use.

mod chat;

use std::net::SocketAddr;

use chat::Member;
use chito::handshake::{Accept, Rejection, UpgradeRequest};
use chito::rooms::Rooms;
use chito::{Config, Connection, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Everything a connection task shares with the others.
#[derive(Clone)]
struct Chat {
    rooms: Rooms,
    config: Config,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let listener = TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;
    println!("chat server listening on http://{local}/");

    let chat = Chat {
        rooms: Rooms::new(),
        config: chat::config(),
    };
    chat::announce_members(&chat.rooms);

    loop {
        let (stream, peer) = listener.accept().await?;
        let chat = chat.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, peer, chat).await {
                eprintln!("{peer}: {e}");
            }
        });
    }
}

/// A client that has not sent its whole request head by then is dropped.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads one HTTP request head and answers it: the page, an upgrade, or
/// an error status.
///
/// The head is parsed here rather than by chito's `ServerHandshake`, which
/// refuses anything that is not a WebSocket upgrade: this listener also
/// serves the page, so it routes first and then hands `/ws` requests to
/// `UpgradeRequest::from_parts`, the path for servers that parse HTTP
/// themselves.
async fn connection(mut stream: TcpStream, peer: SocketAddr, chat: Chat) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let read_head = async {
        loop {
            match parse_head(&head, &chat.config) {
                Ok(Some(parsed)) => return Ok(Ok(parsed)),
                Ok(None) => {}
                Err(rejection) => return Ok(Err(rejection)),
            }
            let mut chunk = [0u8; 2048];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
            }
            head.extend_from_slice(&chunk[..n]);
        }
    };
    let parsed = match tokio::time::timeout(HANDSHAKE_TIMEOUT, read_head).await {
        Ok(result) => result?,
        Err(_) => return Ok(()), // a silent client: just hang up
    };
    let (request, consumed) = match parsed {
        Ok(parsed) => parsed,
        Err(rejection) => return refuse(&mut stream, &rejection).await,
    };

    if request.method != "GET" {
        let rejection = Rejection::new(405, "only GET is served").with_header("Allow", "GET");
        return refuse(&mut stream, &rejection).await;
    }
    let path = request.target.split('?').next().unwrap_or("/");
    match path {
        "/" | "/index.html" => serve_page(&mut stream).await,
        "/ws" => {
            if !chat::same_origin(request.header("Origin"), request.header("Host")) {
                let rejection = Rejection::new(403, "cross-origin WebSocket refused");
                return refuse(&mut stream, &rejection).await;
            }
            let upgrade = UpgradeRequest::from_parts(
                &request.method,
                &request.target,
                request.minor_version,
                request
                    .headers
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.as_slice())),
                &chat.config,
            );
            let accepted =
                match upgrade.and_then(|upgrade| upgrade.accept(Accept::default(), &chat.config)) {
                    Ok(accepted) => accepted,
                    Err(rejection) => return refuse(&mut stream, &rejection).await,
                };
            stream.write_all(&accepted.response()).await?;
            stream.flush().await?;
            // Bytes the browser sent right behind its request are frames.
            let leftover = &head[consumed..];
            let conn = Connection::with_negotiated(
                Role::Server,
                chat.config.clone(),
                accepted.negotiated().clone(),
                leftover,
            );
            let ws = chito::tokio::Builder::new(stream).upgraded(conn);
            let mut member = Member::new(&chat.rooms, ws.handle(), peer);
            ws.serve(&mut member).await;
            // `member` (and its membership) is dropped here: the member
            // leaves its room and the others get the new list.
            Ok(())
        }
        _ => refuse(&mut stream, &Rejection::new(404, "not found")).await,
    }
}

/// An HTTP request head, owned: what `UpgradeRequest::from_parts` takes.
struct Head {
    method: String,
    target: String,
    minor_version: u8,
    headers: Vec<(String, Vec<u8>)>,
}

impl Head {
    /// The first header called `name`, as text without surrounding
    /// whitespace.
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
            .map(|value| value.trim_matches([' ', '\t']))
    }
}

/// Parses the request head at the start of `buf` under the config's
/// handshake limits: `Ok(None)` to read more, or the head and its length,
/// or the refusal chito would send (431 too large, 400 malformed).
fn parse_head(buf: &[u8], config: &Config) -> Result<Option<(Head, usize)>, Rejection> {
    let mut slots = vec![httparse::EMPTY_HEADER; config.max_handshake_headers];
    let mut request = httparse::Request::new(&mut slots);
    let window = &buf[..buf.len().min(config.max_handshake_size)];
    match request.parse(window) {
        Ok(httparse::Status::Complete(consumed)) => Ok(Some((
            Head {
                method: request.method.unwrap_or_default().to_owned(),
                target: request.path.unwrap_or_default().to_owned(),
                minor_version: request.version.unwrap_or_default(),
                headers: request
                    .headers
                    .iter()
                    .map(|h| (h.name.to_owned(), h.value.to_vec()))
                    .collect(),
            },
            consumed,
        ))),
        Ok(httparse::Status::Partial) if buf.len() > config.max_handshake_size => {
            Err(Rejection::new(431, "request head too large"))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(Rejection::new(431, "too many header fields")),
        Err(e) => Err(Rejection::new(400, format!("malformed HTTP request: {e}"))),
    }
}

async fn serve_page(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut head = String::from("HTTP/1.1 200 OK\r\n");
    for (name, value) in chat::PAGE_HEADERS {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        chat::INDEX_HTML.len()
    ));
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(chat::INDEX_HTML.as_bytes()).await?;
    stream.shutdown().await
}

async fn refuse(stream: &mut TcpStream, rejection: &Rejection) -> std::io::Result<()> {
    stream.write_all(&rejection.to_response()).await?;
    stream.shutdown().await
}
