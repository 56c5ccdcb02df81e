//! [`Builder`]: the opening handshake over an async stream, for either
//! role, and the adapter's own settings.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ::tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{Shutdown, WebSocket};
use crate::adapter::{self, HANDSHAKE_TIMEOUT, HEAD_CHUNK};
use crate::config::Config;
use crate::connection::Connection;
use crate::error::{Error, Timeout};
use crate::handle::{Overflow, QueueLimit};
use crate::handshake::{
    Accept, ClientHandshake, ClientRequest, Rejection, ServerHandshake, UpgradeRequest,
    UpgradeResponse,
};

/// Opening handshake over an async stream, for either role, and the
/// settings of the [`WebSocket`] it yields.
#[derive(Debug)]
pub struct Builder<S> {
    stream: S,
    config: Arc<Config>,
    shutdown: Option<Shutdown>,
    handshake_timeout: Duration,
    queue: QueueLimit,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Builder<S> {
    /// A builder with the default [`Config`], a 10 s handshake timeout and
    /// a 4 MiB queue that refuses what does not fit.
    pub fn new(stream: S) -> Self {
        Builder {
            stream,
            config: Config::shared_default(),
            shutdown: None,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            queue: QueueLimit::default(),
        }
    }

    /// Sets the protocol's limits and timers. Pass an `Arc<Config>` to
    /// share one copy among many connections.
    pub fn config(mut self, config: impl Into<Arc<Config>>) -> Self {
        self.config = config.into();
        self
    }

    /// Abandons an opening handshake that takes longer ([`Timeout::Handshake`]):
    /// a slow or silent peer cannot hold the connection.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The most bytes other tasks may have queued for the connection
    /// (through its [`crate::tokio::Handle`]s) plus encoded bytes not yet written.
    /// Past it, the [`Overflow`] policy applies; the queue never grows
    /// beyond it. Default: 4 MiB.
    pub fn max_queued_bytes(mut self, bytes: usize) -> Self {
        self.queue.max_bytes = bytes;
        self
    }

    /// What a full queue does with one more message. Default:
    /// [`Overflow::Reject`].
    pub fn queue_overflow(mut self, overflow: Overflow) -> Self {
        self.queue.overflow = overflow;
        self
    }

    /// Counts the connection in `shutdown`, which then refuses it (503) if
    /// shutdown has started and can close it later.
    pub fn shutdown(mut self, shutdown: &Shutdown) -> Self {
        self.shutdown = Some(shutdown.clone());
        self
    }

    /// Wraps a stream whose opening handshake was done elsewhere (hyper's
    /// upgraded connection, say), with the connection built for it
    /// ([`Connection::with_negotiated`]).
    pub fn upgraded(self, conn: Connection) -> WebSocket<S> {
        let mut ws = WebSocket::new(self.stream, conn, self.queue);
        if let Some(shutdown) = &self.shutdown {
            ws.register(shutdown);
        }
        ws
    }

    /// Server side: accepts any valid upgrade without a subprotocol.
    ///
    /// # Errors
    /// [`Error::Rejected`] (the HTTP refusal was sent), [`Error::Timeout`]
    /// after the handshake timeout, [`Error::Io`].
    pub fn accept(self) -> impl Future<Output = Result<WebSocket<S>, Error>> {
        self.accept_with(|_| Ok(Accept::default()))
    }

    /// Server side with a hook that inspects the request (path, origin,
    /// cookies, authorization) and chooses a subprotocol and extra headers,
    /// or refuses with an HTTP status.
    ///
    /// # Errors
    /// As [`Builder::accept`].
    pub fn accept_with<F>(self, inspect: F) -> impl Future<Output = Result<WebSocket<S>, Error>>
    where
        F: FnOnce(&UpgradeRequest) -> Result<Accept, Rejection>,
    {
        // Boxed, and returned rather than awaited: the handshake's state is
        // large and short-lived, so every connection's task holds only a
        // pointer to it (an `async fn` here would also keep the builder).
        Box::pin(self.accept_inner(inspect))
    }

    async fn accept_inner<F>(mut self, inspect: F) -> Result<WebSocket<S>, Error>
    where
        F: FnOnce(&UpgradeRequest) -> Result<Accept, Rejection>,
    {
        let mut handshake = ServerHandshake::new(&self.config);
        let stream = &mut self.stream;
        let read = read_head(stream, |chunk| handshake.feed(chunk));
        let request = match within(self.handshake_timeout, read).await? {
            Ok(request) => request,
            Err(rejection) => return Err(self.refuse(rejection).await),
        };
        if self.shutdown.as_ref().is_some_and(Shutdown::is_triggered) {
            let rejection = Rejection::new(503, "server shutting down");
            return Err(self.refuse(rejection).await);
        }
        let accepted = match adapter::answer(request, inspect, &self.config) {
            Ok(accepted) => accepted,
            Err(rejection) => return Err(self.refuse(rejection).await),
        };
        self.stream.write_all(&accepted.response()).await?;
        self.stream.flush().await?;
        let conn = adapter::server_connection(self.config.clone(), &accepted);
        Ok(self.upgraded(conn))
    }

    /// Client side: sends the request and verifies the response.
    ///
    /// # Errors
    /// [`Error::Request`] for a request that cannot be sent,
    /// [`Error::Handshake`] if the server refused or answered wrongly,
    /// [`Error::Timeout`], [`Error::Io`].
    pub fn connect<'r>(
        self,
        request: &'r ClientRequest,
    ) -> impl Future<Output = Result<(WebSocket<S>, UpgradeResponse), Error>> + 'r
    where
        S: 'r,
    {
        Box::pin(self.connect_inner(request))
    }

    async fn connect_inner(
        mut self,
        request: &ClientRequest,
    ) -> Result<(WebSocket<S>, UpgradeResponse), Error> {
        let (mut handshake, bytes) = ClientHandshake::new(request, &self.config)?;
        let stream = &mut self.stream;
        let exchange = async {
            stream.write_all(&bytes).await?;
            stream.flush().await?;
            read_head(stream, |chunk| handshake.feed(chunk).map_err(Error::from)).await
        };
        let connected = within(self.handshake_timeout, exchange).await??;
        let conn = adapter::client_connection(self.config.clone(), &connected);
        Ok((self.upgraded(conn), connected.into_response()))
    }

    async fn refuse(&mut self, rejection: Rejection) -> Error {
        let _ = self.stream.write_all(&rejection.to_response()).await;
        let _ = self.stream.shutdown().await;
        Error::Rejected(rejection)
    }
}

/// Runs `io` within the handshake timeout.
async fn within<T>(
    timeout: Duration,
    io: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    ::tokio::time::timeout(timeout, io)
        .await
        .map_err(|_| Error::Timeout(Timeout::Handshake))?
}

/// Reads an HTTP head chunk by chunk into a handshake machine until it
/// completes (`Ok(Ok(done))`) or stops (`Ok(Err(stop))`).
async fn read_head<S, T, E>(
    stream: &mut S,
    mut feed: impl FnMut(&[u8]) -> Result<Option<T>, E>,
) -> Result<Result<T, E>, Error>
where
    S: AsyncRead + Unpin,
{
    let mut chunk = [0u8; HEAD_CHUNK];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(adapter::eof_during_handshake());
        }
        match feed(chunk.get(..n).unwrap_or_default()) {
            Ok(Some(done)) => return Ok(Ok(done)),
            Ok(None) => {}
            Err(stop) => return Ok(Err(stop)),
        }
    }
}
