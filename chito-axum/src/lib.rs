//! chito's WebSockets in [axum]: the [`WebSocketUpgrade`] extractor, a
//! drop-in for `axum::extract::ws::WebSocketUpgrade`.
//!
//! Change the `use` line and a handler written for axum's own WebSockets
//! gets chito's connection: permessage-deflate (RFC 7692) negotiated from
//! the request, strict RFC 6455, about 1.7 KiB per idle connection, a
//! queue bounded in bytes, and a [`Handle`] that joins chito's rooms.
//! WebSockets over HTTP/2 (RFC 8441 extended `CONNECT`) come through the
//! same extractor: `axum::serve` enables them on its HTTP/2 connections,
//! and routing with `any` (not `get`) lets their `CONNECT` through.
//!
//! ```no_run
//! use axum::{response::Response, routing::any, Router};
//! use chito_axum::{Message, OwnedEvent, WebSocket, WebSocketUpgrade};
//!
//! async fn handler(ws: WebSocketUpgrade) -> Response {
//!     ws.on_upgrade(handle_socket)
//! }
//!
//! async fn handle_socket(mut socket: WebSocket) {
//!     while let Ok(event) = socket.recv().await {
//!         let sent = match &event {
//!             OwnedEvent::Text(text) => socket.send(Message::Text(text)).await,
//!             OwnedEvent::Binary(bytes) => socket.send(Message::Binary(bytes)).await,
//!             // Pings are answered and closes completed by chito itself.
//!             _ => Ok(()),
//!         };
//!         if sent.is_err() {
//!             return;
//!         }
//!     }
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let app: Router = Router::new().route("/ws", any(handler));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
//!
//! The request is validated by chito's handshake, the same code a chito
//! server that reads its own sockets runs ([`UpgradeRequest::from_parts`],
//! [`UpgradeRequest::from_extended_connect`]); a refused request gets
//! chito's answer (`400`, `426` with `Sec-WebSocket-Version: 13`, `431`) as
//! the extractor's rejection.
//!
//! [axum]: https://docs.rs/axum

#![deny(missing_docs)]
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::fmt;
use std::future::Future;
use std::sync::{Arc, OnceLock};

use axum_core::body::Body;
use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use chito::handshake::{Accept, Rejection, UpgradeRequest};
use chito::tokio::{Builder, Overflow, Shutdown};
use chito::{Config, Connection, Handler, Role};
use http::header::{HeaderName, HeaderValue};
use http::request::Parts;
use http::{StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

pub use chito::tokio::Handle;
pub use chito::{CloseCode, Error, Message, OwnedEvent};

/// The socket an upgrade hands to the callback: chito's tokio
/// [`WebSocket`](chito::tokio::WebSocket) over hyper's upgraded stream (an
/// HTTP/1.1 connection or an HTTP/2 stream).
pub type WebSocket = chito::tokio::WebSocket<TokioIo<hyper::upgrade::Upgraded>>;

/// Extractor of a WebSocket opening handshake, HTTP/1.1 (RFC 6455 §4) or
/// HTTP/2 (RFC 8441). Answer it with [`on_upgrade`](Self::on_upgrade) or
/// [`serve`](Self::serve), whose response completes the handshake.
///
/// Extraction fails with a [`WebSocketUpgradeRejection`] when the request is
/// not a valid handshake, or when the connection cannot be upgraded.
pub struct WebSocketUpgrade<F = DefaultOnFailedUpgrade> {
    request: UpgradeRequest,
    on_upgrade: OnUpgrade,
    protocol: Option<String>,
    config: Arc<Config>,
    queue_bytes: Option<usize>,
    overflow: Option<Overflow>,
    shutdown: Option<Shutdown>,
    on_failed_upgrade: F,
}

impl<F> fmt::Debug for WebSocketUpgrade<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketUpgrade")
            .field("request", &self.request)
            .field("protocol", &self.protocol)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<F> WebSocketUpgrade<F> {
    /// The subprotocols this server speaks, in any order. The first
    /// protocol the client lists (RFC 6455 §4.1: in its order of
    /// preference) that is among them is selected and answered in
    /// `Sec-WebSocket-Protocol`; if none is, the answer names none and the
    /// client decides whether to go on.
    #[must_use]
    pub fn protocols<I>(mut self, protocols: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<std::borrow::Cow<'static, str>>,
    {
        let ours: Vec<std::borrow::Cow<'static, str>> =
            protocols.into_iter().map(Into::into).collect();
        self.protocol = self
            .request
            .protocols()
            .find(|offered| ours.iter().any(|p| p == offered))
            .map(str::to_owned);
        self
    }

    /// The subprotocol [`protocols`](Self::protocols) selected.
    pub fn selected_protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The validated request: path, query, headers (`Origin`, cookies),
    /// offered protocols and extensions.
    pub fn request(&self) -> &UpgradeRequest {
        &self.request
    }

    /// The connection's limits, timers and permessage-deflate settings.
    /// Pass one `Arc<Config>` to share it among many connections. Default:
    /// [`Config::default`].
    #[must_use]
    pub fn config(mut self, config: impl Into<Arc<Config>>) -> Self {
        self.config = config.into();
        self
    }

    /// The most bytes other tasks may queue for this connection through
    /// its [`Handle`]s (see `chito::tokio::Builder::max_queued_bytes`).
    /// Default: 4 MiB.
    #[must_use]
    pub fn max_queued_bytes(mut self, bytes: usize) -> Self {
        self.queue_bytes = Some(bytes);
        self
    }

    /// What a full queue does with one more message. Default:
    /// [`Overflow::Reject`].
    #[must_use]
    pub fn queue_overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = Some(overflow);
        self
    }

    /// Counts the connection in `shutdown`, which can close it later; once
    /// shutdown has started, the upgrade is refused with `503`.
    #[must_use]
    pub fn shutdown(mut self, shutdown: &Shutdown) -> Self {
        self.shutdown = Some(shutdown.clone());
        self
    }

    /// Calls `callback` with the error if the upgrade fails after the
    /// response was sent (the client went away before the stream was
    /// handed over). By default such failures are dropped.
    pub fn on_failed_upgrade<C>(self, callback: C) -> WebSocketUpgrade<C>
    where
        C: OnFailedUpgrade,
    {
        WebSocketUpgrade {
            request: self.request,
            on_upgrade: self.on_upgrade,
            protocol: self.protocol,
            config: self.config,
            queue_bytes: self.queue_bytes,
            overflow: self.overflow,
            shutdown: self.shutdown,
            on_failed_upgrade: callback,
        }
    }
}

impl<F: OnFailedUpgrade> WebSocketUpgrade<F> {
    /// Completes the handshake: returns the response (`101`, or `200` for
    /// HTTP/2) and, once hyper hands over the stream, runs `callback` with
    /// the socket in a task of its own.
    pub fn on_upgrade<C, Fut>(self, callback: C) -> Response
    where
        C: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.finish(|socket| async move { callback(socket).await })
    }

    /// Completes the handshake and runs `handler` on the socket (chito's
    /// one event interface: `on_open`, `on_message`, ..., `on_close`).
    pub fn serve<H>(self, mut handler: H) -> Response
    where
        H: Handler + Send + 'static,
    {
        self.finish(|socket| async move { socket.serve(&mut handler).await })
    }

    fn finish<C, Fut>(self, run: C) -> Response
    where
        C: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let WebSocketUpgrade {
            request,
            on_upgrade,
            protocol,
            config,
            queue_bytes,
            overflow,
            shutdown,
            on_failed_upgrade,
        } = self;
        if shutdown.as_ref().is_some_and(Shutdown::is_triggered) {
            return rejection_response(&Rejection::new(503, "server is shutting down"));
        }
        let mut accept = Accept::default();
        if let Some(protocol) = protocol {
            accept = accept.with_protocol(protocol);
        }
        let accepted = match request.accept(accept, &config) {
            Ok(accepted) => accepted,
            Err(rejection) => return rejection_response(&rejection),
        };
        let status = StatusCode::from_u16(accepted.status()).unwrap_or(StatusCode::OK);
        let mut response = Response::new(Body::empty());
        *response.status_mut() = status;
        append_headers(&mut response, accepted.headers());
        let negotiated = accepted.negotiated().clone();
        tokio::spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(error) => {
                    on_failed_upgrade.call(Error::Io(std::io::Error::other(error)));
                    return;
                }
            };
            // hyper has already read and kept nothing of the stream: the
            // WebSocket bytes start here.
            let conn = Connection::with_negotiated(Role::Server, config.clone(), negotiated, &[]);
            let mut builder = Builder::new(TokioIo::new(upgraded)).config(config);
            if let Some(bytes) = queue_bytes {
                builder = builder.max_queued_bytes(bytes);
            }
            if let Some(overflow) = overflow {
                builder = builder.queue_overflow(overflow);
            }
            if let Some(shutdown) = &shutdown {
                builder = builder.shutdown(shutdown);
            }
            run(builder.upgraded(conn)).await;
        });
        response
    }
}

impl<S: Send + Sync> FromRequestParts<S> for WebSocketUpgrade<DefaultOnFailedUpgrade> {
    type Rejection = WebSocketUpgradeRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // The handshake's head limits: those of a `Config` the application
        // put into the request's extensions (an `Extension(Arc<Config>)`
        // layer), else chito's defaults.
        let limits = parts.extensions.get::<Arc<Config>>().cloned();
        let limits = limits.as_deref().unwrap_or(default_config());
        let headers = parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes()));
        let request = if parts.version == Version::HTTP_2 {
            // RFC 8441: the :protocol pseudo-header, which hyper keeps as
            // a request extension.
            #[cfg(feature = "http2")]
            let protocol = parts
                .extensions
                .get::<hyper::ext::Protocol>()
                .map(hyper::ext::Protocol::as_str);
            // Without the feature every HTTP/2 request is refused as a
            // CONNECT without :protocol.
            #[cfg(not(feature = "http2"))]
            let protocol = None;
            let authority = parts.uri.authority().map_or("", |a| a.as_str());
            let path = parts.uri.path_and_query().map_or("", |p| p.as_str());
            UpgradeRequest::from_extended_connect(
                parts.method.as_str(),
                protocol,
                authority,
                path,
                headers,
                limits,
            )
        } else {
            let minor = match parts.version {
                Version::HTTP_09 | Version::HTTP_10 => 0,
                _ => 1,
            };
            // Origin-form as sent; hyper keeps an absolute-form target whole.
            let target = if parts.uri.scheme().is_some() {
                parts.uri.to_string()
            } else {
                parts
                    .uri
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_owned()
            };
            UpgradeRequest::from_parts(parts.method.as_str(), &target, minor, headers, limits)
        };
        let request = request.map_err(WebSocketUpgradeRejection)?;
        // Present only when hyper serves the connection with upgrades on
        // (axum::serve does); a request on any other stack cannot become a
        // WebSocket.
        let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            return Err(WebSocketUpgradeRejection(Rejection::new(
                500,
                "this connection cannot be upgraded (serve it with upgrades enabled)",
            )));
        };
        Ok(WebSocketUpgrade {
            request,
            on_upgrade,
            protocol: None,
            config: Arc::clone(default_config()),
            queue_bytes: None,
            overflow: None,
            shutdown: None,
            on_failed_upgrade: DefaultOnFailedUpgrade,
        })
    }
}

/// One `Config` shared by every connection that does not set its own, and
/// the limits a request is checked against unless the application put a
/// `Config` into the request's extensions.
fn default_config() -> &'static Arc<Config> {
    static DEFAULT: OnceLock<Arc<Config>> = OnceLock::new();
    DEFAULT.get_or_init(|| Arc::new(Config::default()))
}

/// The handshake was refused: chito's answer (status, headers such as
/// `Sec-WebSocket-Version: 13`, and the reason as a plain-text body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSocketUpgradeRejection(pub Rejection);

impl fmt::Display for WebSocketUpgradeRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0.status(), self.0.reason())
    }
}

impl std::error::Error for WebSocketUpgradeRejection {}

impl IntoResponse for WebSocketUpgradeRejection {
    fn into_response(self) -> Response {
        rejection_response(&self.0)
    }
}

/// chito's refusal as an axum response.
fn rejection_response(rejection: &Rejection) -> Response {
    let mut response = Response::new(Body::from(rejection.reason().to_owned()));
    *response.status_mut() =
        StatusCode::from_u16(rejection.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    append_headers(&mut response, rejection.headers());
    response
}

/// Copies `(name, value)` pairs into `response`; the core has checked them
/// to be tokens and CR/LF-free, so none is skipped in practice.
fn append_headers<'a>(response: &mut Response, headers: impl Iterator<Item = (&'a str, &'a str)>) {
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
}

/// What to do when the stream cannot be taken over after the response was
/// sent; see [`WebSocketUpgrade::on_failed_upgrade`].
pub trait OnFailedUpgrade: Send + 'static {
    /// Called with the failure.
    fn call(self, error: Error);
}

impl<F: FnOnce(Error) + Send + 'static> OnFailedUpgrade for F {
    fn call(self, error: Error) {
        self(error);
    }
}

/// The default [`OnFailedUpgrade`]: the failure is dropped.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct DefaultOnFailedUpgrade;

impl OnFailedUpgrade for DefaultOnFailedUpgrade {
    fn call(self, _error: Error) {}
}
