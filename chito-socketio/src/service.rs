//! [`SocketIoService`]: a [`SocketIo`](crate::socketio::SocketIo) as a
//! tower [`Service`], to mount it in a hyper 1 server or an axum router
//! beside the application's own routes (docs/socketio.md §8, §10).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use tower_service::Service;

use crate::engineio::server::RequestBody;
use crate::engineio::EngineIo;

/// A Socket.IO (or Engine.IO) server as a tower [`Service`] of
/// `Request<B>` for any body `B` of bytes (hyper's `Incoming`, axum's
/// `Body`), from [`SocketIo::service`](crate::socketio::SocketIo::service).
/// It answers requests under the server's path (`/socket.io/`) and 404
/// elsewhere; WebSocket upgrades take hyper's `OnUpgrade` from the
/// request's extensions, where hyper (with `with_upgrades`) and axum's
/// `serve` put it. Always ready; cheap to clone.
///
/// With axum (this crate's feature `axum` only builds this example and
/// `tests/axum_service.rs`; the service itself needs no axum type):
///
#[cfg_attr(feature = "axum", doc = "```no_run")]
#[cfg_attr(not(feature = "axum"), doc = "```ignore")]
/// use chito_socketio::socketio::{Socket, SocketIo};
///
/// # async fn run() -> std::io::Result<()> {
/// let io = SocketIo::builder().build();
/// io.ns("/", |socket: Socket| { let _ = socket.emit("hello", "world"); });
/// let app = axum::Router::new()
///     .route("/health", axum::routing::get(|| async { "ok" }))
///     .route_service("/socket.io/", io.service());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// axum::serve(listener, app).await
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SocketIoService {
    engine: EngineIo,
}

impl SocketIoService {
    pub(crate) fn new(engine: EngineIo) -> Self {
        Self { engine }
    }
}

impl<B: RequestBody> Service<Request<B>> for SocketIoService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Nothing to wait for: the limits (max_sessions, maxPayload) are
        // answered per request, as the reference server does.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let engine = self.engine.clone();
        Box::pin(async move { engine.handle(request).await })
    }
}
