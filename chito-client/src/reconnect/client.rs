//! [`ReconnectingClient`] and its builder: the handle the user keeps, and
//! the tokio task that owns each connection in turn.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chito::close::MAX_CLOSE_REASON;
use chito::handshake::UpgradeResponse;
use chito::tokio::{Handle, QueueError, ReadHalf, WebSocket};
use chito::{CloseCode, Message, OwnedEvent, Timeout};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use super::backoff::{os_seeded_u64, Backoff, Series};
use super::events::{ClientEvent, ClientState, Disconnect, GiveUp, SendError};
use super::outbox::{Held, HoldQueue, Outbox};
use crate::{ClientStream, Connector, Hop};

/// Keepalive ping interval set when the connector's `Config` has none:
/// under the 30–60 s idle timeouts of common load balancers and NATs, so
/// the pings also keep the path open.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(20);
/// Pong timeout set with [`DEFAULT_PING_INTERVAL`]: a dead server (no FIN)
/// is found within 30 s; ten seconds is ample for a pong on a slow path.
pub const DEFAULT_PONG_TIMEOUT: Duration = Duration::from_secs(10);
/// The default `reset_after`: a connection that served ten seconds was a
/// real one, so the next outage starts again from short waits; one that
/// ends sooner (accepted, then dropped: a crash loop, a refused login)
/// counts as a failed attempt and the waits keep growing.
pub const DEFAULT_RESET_AFTER: Duration = Duration::from_secs(10);
/// Events buffered between the task and [`ReconnectingClient::recv`];
/// when they are not read, the task stops reading the socket.
const EVENT_BUFFER: usize = 64;

type ConnectedHook = Box<dyn FnMut(&Connected<'_>) + Send>;
type GiveUpHook = Box<dyn FnOnce(&GiveUp) + Send>;
type RandomSource = Box<dyn FnMut() -> u64 + Send>;

/// What the `on_connected` hook is given: the new connection, to send
/// through before anything held is sent.
#[derive(Debug)]
pub struct Connected<'a> {
    attempt: u32,
    reconnected: bool,
    response: &'a UpgradeResponse,
    handle: &'a Handle,
}

impl Connected<'_> {
    /// The attempt that succeeded (1-based, in its series).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// False for the client's first connection, true for every later one.
    pub fn reconnected(&self) -> bool {
        self.reconnected
    }

    /// The server's `101` answer.
    pub fn response(&self) -> &UpgradeResponse {
        self.response
    }

    /// Queues a message on this connection ahead of every held message
    /// (re-join, re-subscribe, re-authenticate). Does not wait: the
    /// connection's queue is empty when the hook runs, and it takes any
    /// message while empty.
    ///
    /// # Errors
    /// As [`Handle::try_send`]: [`QueueError::Full`] past chito's queue
    /// bound (4 MiB by default), [`QueueError::Closed`] if the connection
    /// already ended.
    pub fn send(&self, message: Message<'_>) -> Result<(), QueueError> {
        self.handle.try_send(message)
    }
}

/// Sets up a [`ReconnectingClient`]; [`ReconnectingClientBuilder::spawn`]
/// starts it.
pub struct ReconnectingClientBuilder {
    url: String,
    connector: Connector,
    backoff: Backoff,
    reset_after: Duration,
    final_close_codes: Vec<CloseCode>,
    outbox: Outbox,
    on_connected: Option<ConnectedHook>,
    on_give_up: Option<GiveUpHook>,
    random: Option<RandomSource>,
}

impl std::fmt::Debug for ReconnectingClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReconnectingClientBuilder")
            .field("url", &self.url)
            .field("backoff", &self.backoff)
            .field("reset_after", &self.reset_after)
            .field("final_close_codes", &self.final_close_codes)
            .field("outbox", &self.outbox)
            .finish_non_exhaustive()
    }
}

impl ReconnectingClientBuilder {
    /// The backoff between attempts and the attempt limit. Default:
    /// [`Backoff::default`].
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// A connection that stayed up this long starts a new series of
    /// attempts (short waits again, a fresh attempt count). Default:
    /// [`DEFAULT_RESET_AFTER`].
    pub fn reset_after(mut self, reset_after: Duration) -> Self {
        self.reset_after = reset_after;
        self
    }

    /// Close codes from the server that end reconnection
    /// ([`GiveUp::FinalCloseCode`]); replaces the default set, 1008
    /// (policy violation: a revoked token or a ban, which another attempt
    /// would only meet again). Any other close (1000, 1001 going away,
    /// 1011, 1012 service restart, 1013 try again later…) is retried.
    pub fn final_close_codes(mut self, codes: impl IntoIterator<Item = CloseCode>) -> Self {
        self.final_close_codes = codes.into_iter().collect();
        self
    }

    /// What sends do while not connected. Default: [`Outbox::default`].
    pub fn while_disconnected(mut self, outbox: Outbox) -> Self {
        self.outbox = outbox;
        self
    }

    /// Runs after every successful handshake, the first and each later
    /// one, before held messages are sent: what it sends goes first.
    /// It runs on the client's task: keep it short.
    pub fn on_connected(mut self, hook: impl FnMut(&Connected<'_>) + Send + 'static) -> Self {
        self.on_connected = Some(Box::new(hook));
        self
    }

    /// Runs once when reconnection stops for good, before the
    /// [`ClientEvent::GaveUp`] event.
    pub fn on_give_up(mut self, hook: impl FnOnce(&GiveUp) + Send + 'static) -> Self {
        self.on_give_up = Some(Box::new(hook));
        self
    }

    /// The source of the backoff's jitter, one uniformly distributed `u64`
    /// per wait. Default: SipHash over a counter, keyed from std's
    /// OS-seeded `RandomState`. For tests and simulations.
    pub fn random_source(mut self, source: impl FnMut() -> u64 + Send + 'static) -> Self {
        self.random = Some(Box::new(source));
        self
    }

    /// Starts the client's task on the current tokio runtime; the first
    /// attempt starts at once.
    ///
    /// If the connector's [`Config`](chito::Config) has no keepalive
    /// (`ping_interval` is `None`), the client's connections ping every
    /// [`DEFAULT_PING_INTERVAL`] and fail after [`DEFAULT_PONG_TIMEOUT`]
    /// without an answer, so a server that vanished without a FIN is
    /// noticed and reconnected to.
    ///
    /// # Panics
    /// Outside a tokio runtime, as `tokio::spawn`.
    pub fn spawn(self) -> ReconnectingClient {
        let connector = with_keepalive(self.connector);
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                state: ClientState::Connecting,
                handle: None,
                direct: false,
                hold: HoldQueue::new(self.outbox),
                close: None,
                ended: false,
            }),
            close_requested: Notify::new(),
        });
        let (events_tx, events_rx) = mpsc::channel(EVENT_BUFFER);
        let random = self.random.unwrap_or_else(|| Box::new(os_seeded_u64));
        let task = Task {
            url: self.url,
            connector,
            backoff: self.backoff,
            reset_after: self.reset_after,
            final_close_codes: self.final_close_codes,
            on_connected: self.on_connected,
            on_give_up: self.on_give_up,
            random,
            link: Link {
                shared: shared.clone(),
                events: events_tx,
            },
        };
        tokio::spawn(task.run());
        ReconnectingClient {
            shared,
            events: events_rx,
        }
    }
}

/// `connector` with keepalive turned on if its configuration has none.
fn with_keepalive(connector: Connector) -> Connector {
    if connector.connection_config().ping_interval.is_some() {
        return connector;
    }
    let mut config = (**connector.connection_config()).clone();
    config.ping_interval = Some(DEFAULT_PING_INTERVAL);
    config.pong_timeout = DEFAULT_PONG_TIMEOUT;
    connector.config(config)
}

/// A WebSocket client that reconnects: one logical connection over any
/// number of real ones. See the [module documentation](super) for the
/// rules.
#[derive(Debug)]
pub struct ReconnectingClient {
    shared: Arc<Shared>,
    events: mpsc::Receiver<ClientEvent>,
}

impl ReconnectingClient {
    /// A builder for a client of `url` (`ws://` or, with the connector's
    /// TLS, `wss://`), opening each connection with `connector`.
    pub fn builder(url: impl Into<String>, connector: Connector) -> ReconnectingClientBuilder {
        ReconnectingClientBuilder {
            url: url.into(),
            connector,
            backoff: Backoff::default(),
            reset_after: DEFAULT_RESET_AFTER,
            final_close_codes: vec![CloseCode::PolicyViolation],
            outbox: Outbox::default(),
            on_connected: None,
            on_give_up: None,
            random: None,
        }
    }

    /// Sends a message. While connected it is copied into the
    /// connection's queue, waiting while that queue is full; while not
    /// connected it is held or refused as the [`Outbox`] policy says.
    ///
    /// At most once: a message handed to a connection that then drops may
    /// be lost (the server may or may not have read it). Held messages are
    /// sent once, in order, after the `on_connected` hook's.
    ///
    /// # Errors
    /// [`SendError::Disconnected`] or [`SendError::HoldFull`] while not
    /// connected, per the policy; [`SendError::Closed`] after
    /// [`close`](Self::close) or once the client gave up.
    pub async fn send(&self, message: Message<'_>) -> Result<(), SendError> {
        loop {
            let handle = {
                let mut inner = self.shared.lock();
                if inner.ended || inner.close.is_some() {
                    return Err(SendError::Closed);
                }
                match &inner.handle {
                    Some(handle) if inner.direct && !handle.is_closed() => handle.clone(),
                    _ => return inner.hold.push(message),
                }
            };
            if handle.send(message).await.is_ok() {
                return Ok(());
            }
            // The connection ended while this send waited for room, so the
            // message was not queued: from now on it is "not connected"
            // for this connection (the task says so too, a moment later).
            let mut inner = self.shared.lock();
            if inner
                .handle
                .as_ref()
                .is_some_and(|current| current.same_connection(&handle))
            {
                inner.direct = false;
            }
        }
    }

    /// The next event; `None` after the last one ([`ClientEvent::Closed`]
    /// or [`ClientEvent::GaveUp`]). Events wait in a small bounded buffer:
    /// while it is full, the client stops reading from the server, so keep
    /// calling this.
    pub async fn recv(&mut self) -> Option<ClientEvent> {
        self.events.recv().await
    }

    /// Closes for good: sends a close frame with `code` and `reason` if a
    /// connection is up (after what is queued on it), drops held messages,
    /// and stops reconnecting. Keep calling [`recv`](Self::recv): it ends
    /// with [`ClientEvent::Closed`].
    ///
    /// # Errors
    /// [`SendError::InvalidClose`] for a code or reason that may not be
    /// sent (nothing changes); [`SendError::Closed`] if already closing or
    /// ended.
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        // RFC 6455 §7.4.1 (codes that must not be sent), §5.5 (125-byte
        // control payload: a 2-byte code and 123 bytes of reason).
        if !code.is_sendable() || reason.len() > MAX_CLOSE_REASON {
            return Err(SendError::InvalidClose);
        }
        let mut inner = self.shared.lock();
        if inner.ended || inner.close.is_some() {
            return Err(SendError::Closed);
        }
        inner.close = Some((code, reason.to_owned()));
        inner.hold.clear();
        if let Some(handle) = &inner.handle {
            // Closed already: the connection is ending, the task sees it.
            let _ = handle.close(code, reason);
        }
        drop(inner);
        self.shared.close_requested.notify_one();
        Ok(())
    }

    /// Where the client is now.
    pub fn state(&self) -> ClientState {
        self.shared.lock().state
    }
}

impl Drop for ReconnectingClient {
    /// Dropping the client closes it (1000), as [`close`](Self::close)
    /// would; the task ends once the close is done.
    fn drop(&mut self) {
        let _ = self.close(CloseCode::Normal, "");
    }
}

/// What the user's side and the task share.
#[derive(Debug)]
struct Shared {
    inner: Mutex<Inner>,
    /// Wakes the task out of a connect or a wait when the user closes.
    close_requested: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update under this lock is a few assignments: a panic while
        // holding it cannot leave a half-done state worth refusing.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(Debug)]
struct Inner {
    state: ClientState,
    /// The connection that is up, for the user's close.
    handle: Option<Handle>,
    /// Held messages are all handed over: sends go straight to `handle`.
    direct: bool,
    hold: HoldQueue,
    /// The user's close, once asked for.
    close: Option<(CloseCode, String)>,
    /// The task is done (closed or gave up).
    ended: bool,
}

/// How one connection ended.
enum Ended {
    /// The user's close is done.
    Closed,
    /// Nobody reads events any more (the client was dropped).
    Abandoned,
    /// The connection dropped.
    Dropped(Disconnect),
}

/// The task that owns the connections.
struct Task {
    url: String,
    connector: Connector,
    backoff: Backoff,
    reset_after: Duration,
    final_close_codes: Vec<CloseCode>,
    on_connected: Option<ConnectedHook>,
    on_give_up: Option<GiveUpHook>,
    random: RandomSource,
    link: Link,
}

/// The task's side of what it shares with the user: kept apart from the
/// hooks (which need not be `Sync`) so it can be borrowed across awaits.
struct Link {
    shared: Arc<Shared>,
    events: mpsc::Sender<ClientEvent>,
}

impl Task {
    async fn run(mut self) {
        let mut series = Series::default();
        let mut reconnected = false;
        loop {
            let attempt = series.begin_attempt();
            self.link.set_state(ClientState::Connecting);
            if !self.link.emit(ClientEvent::Connecting { attempt }).await {
                return;
            }
            let connected = tokio::select! {
                result = self.connector.connect(&self.url) => result,
                () = wait_for_close(&self.link.shared) => {
                    self.link.end(ClientEvent::Closed).await;
                    return;
                }
            };
            let cause = match connected {
                Ok((ws, response)) => {
                    let up_since = Instant::now();
                    let ended = self
                        .run_connection(ws, response, attempt, reconnected)
                        .await;
                    reconnected = true;
                    series.connection_lasted(up_since.elapsed(), self.reset_after);
                    match ended {
                        Ended::Dropped(cause) => cause,
                        Ended::Closed => {
                            self.link.end(ClientEvent::Closed).await;
                            return;
                        }
                        Ended::Abandoned => {
                            self.link.end_quietly();
                            return;
                        }
                    }
                }
                Err(error) => Disconnect::Connect(error),
            };
            let give_up = self.gives_up_on(&cause);
            self.link.set_state(ClientState::WaitingToRetry);
            if !self.link.emit(ClientEvent::Disconnected { cause }).await {
                self.link.end_quietly();
                return;
            }
            if self.link.shared.lock().close.is_some() {
                self.link.end(ClientEvent::Closed).await;
                return;
            }
            let wait = match give_up {
                Some(cause) => Err(cause),
                None => series
                    .next_wait(&self.backoff, (self.random)())
                    .ok_or(GiveUp::MaxAttempts(series.attempts())),
            };
            let (next, delay) = match wait {
                Ok(wait) => wait,
                Err(cause) => {
                    self.give_up(cause).await;
                    return;
                }
            };
            if !self
                .link
                .emit(ClientEvent::RetryIn {
                    attempt: next,
                    delay,
                })
                .await
            {
                self.link.end_quietly();
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = wait_for_close(&self.link.shared) => {
                    self.link.end(ClientEvent::Closed).await;
                    return;
                }
            }
        }
    }

    /// Whether `cause` ends reconnection by itself.
    fn gives_up_on(&self, cause: &Disconnect) -> Option<GiveUp> {
        match cause {
            Disconnect::Closed(Some(frame)) if self.final_close_codes.contains(&frame.code) => {
                Some(GiveUp::FinalCloseCode(frame.code))
            }
            Disconnect::Connect(error) if error.hop() == Hop::Request => {
                Some(GiveUp::InvalidRequest)
            }
            _ => None,
        }
    }

    /// Runs one connection: the hook, then held messages handed over
    /// while events are read, until it ends.
    async fn run_connection(
        &mut self,
        ws: WebSocket<ClientStream>,
        response: UpgradeResponse,
        attempt: u32,
        reconnected: bool,
    ) -> Ended {
        let (handle, mut reader) = ws.split();
        {
            let mut inner = self.link.shared.lock();
            inner.state = ClientState::Connected;
            inner.direct = false;
            if let Some((code, reason)) = &inner.close {
                // The user closed while this connection was opening.
                let _ = handle.close(*code, reason);
            }
            inner.handle = Some(handle.clone());
        }
        if let Some(hook) = self.on_connected.as_mut() {
            hook(&Connected {
                attempt,
                reconnected,
                response: &response,
                handle: &handle,
            });
        }
        {
            let mut inner = self.link.shared.lock();
            if inner.hold.is_empty() {
                // Nothing held: sends may go straight to the connection
                // now, behind the hook's messages, without waiting for the
                // Connected event to be read.
                inner.direct = true;
            }
        }
        let connected = ClientEvent::Connected {
            attempt,
            response,
            reconnected,
        };
        let ended = if self.link.emit(connected).await {
            self.link.serve(&handle, &mut reader).await
        } else {
            Ended::Abandoned
        };
        {
            let mut inner = self.link.shared.lock();
            inner.handle = None;
            inner.direct = false;
        }
        if matches!(ended, Ended::Abandoned) {
            // Nobody listens: close politely, within chito's close timeout.
            let _ = handle.close(CloseCode::GoingAway, "");
            while reader.recv().await.is_ok() {}
        }
        ended
    }

    async fn give_up(&mut self, cause: GiveUp) {
        self.link.end_quietly();
        if let Some(hook) = self.on_give_up.take() {
            hook(&cause);
        }
        let _ = self.link.emit(ClientEvent::GaveUp { cause }).await;
    }
}

impl Drop for Link {
    /// However the task ends (a hook that panicked included), sends fail
    /// from then on instead of being held for a connection that will not
    /// come.
    fn drop(&mut self) {
        self.end_quietly();
    }
}

impl Link {
    /// Reads events (one at a time, only while the event buffer has room)
    /// and, meanwhile, hands held messages over in order.
    async fn serve(&self, handle: &Handle, reader: &mut ReadHalf<ClientStream>) -> Ended {
        let shared = &self.shared;
        let events = &self.events;
        let mut in_flight: Option<Held> = None;
        let ended = {
            let flush = hand_over_held(shared, handle, &mut in_flight);
            tokio::pin!(flush);
            let mut flushing = true;
            loop {
                let step = async {
                    let permit = events.reserve().await;
                    (permit, reader.recv().await)
                };
                let (permit, event) = tokio::select! {
                    () = &mut flush, if flushing => {
                        flushing = false;
                        continue;
                    }
                    step = step => step,
                };
                let Ok(permit) = permit else {
                    break Ended::Abandoned;
                };
                let user_closed = shared.lock().close.is_some();
                match event {
                    Ok(OwnedEvent::Text(text)) => permit.send(ClientEvent::Text(text)),
                    Ok(OwnedEvent::Binary(data)) => permit.send(ClientEvent::Binary(data)),
                    // chito answers pings itself (RFC 6455 §5.5.2); pongs
                    // only feed the keepalive.
                    Ok(OwnedEvent::Ping(_) | OwnedEvent::Pong(_)) => {}
                    Ok(OwnedEvent::Close(_)) | Err(_) if user_closed => break Ended::Closed,
                    Ok(OwnedEvent::Close(frame)) => {
                        break Ended::Dropped(Disconnect::Closed(frame))
                    }
                    Err(chito::Error::Timeout(Timeout::Keepalive)) => {
                        break Ended::Dropped(Disconnect::KeepaliveTimeout)
                    }
                    Err(error) => break Ended::Dropped(Disconnect::Transport(error)),
                }
            }
        };
        if let Some(held) = in_flight {
            // Not handed over: it goes first on the next connection.
            self.shared.lock().hold.put_back(held);
        }
        ended
    }

    fn set_state(&self, state: ClientState) {
        self.shared.lock().state = state;
    }

    /// Sends an event, waiting for room; false if nobody reads any more.
    async fn emit(&self, event: ClientEvent) -> bool {
        self.events.send(event).await.is_ok()
    }

    /// Marks the client ended (sends fail from now on, held messages are
    /// dropped) and sends the last event.
    async fn end(&self, last: ClientEvent) {
        self.end_quietly();
        let _ = self.emit(last).await;
    }

    fn end_quietly(&self) {
        let mut inner = self.shared.lock();
        inner.ended = true;
        inner.state = ClientState::Closed;
        inner.handle = None;
        inner.hold.clear();
    }
}

/// Resolves once the user has asked to close.
async fn wait_for_close(shared: &Shared) {
    loop {
        if shared.lock().close.is_some() {
            return;
        }
        // `notify_one` keeps a permit if nobody waits yet: a close between
        // the check above and this wait is not missed.
        shared.close_requested.notified().await;
    }
}

/// Hands held messages to `handle` in order, then lets sends go straight
/// to it. The message being handed over waits in `in_flight`, so a
/// connection that ends meanwhile loses none: the caller puts it back.
async fn hand_over_held(shared: &Shared, handle: &Handle, in_flight: &mut Option<Held>) {
    loop {
        if in_flight.is_none() {
            let mut inner = shared.lock();
            match inner.hold.take_front() {
                Some(held) => *in_flight = Some(held),
                None => {
                    // Under the lock that found the hold queue empty: no
                    // send can slip in between the last held message and
                    // this switch.
                    inner.direct = true;
                    return;
                }
            }
        }
        let Some(held) = in_flight.as_ref() else {
            return;
        };
        if handle.send(held.as_message()).await.is_err() {
            // The connection is ending; the reading side reports why.
            std::future::pending::<()>().await;
        }
        let mut inner = shared.lock();
        inner.hold.handed_over(held);
        *in_flight = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_is_turned_on_only_where_the_config_has_none() {
        let connector = with_keepalive(Connector::new());
        let config = connector.connection_config();
        assert_eq!(config.ping_interval, Some(DEFAULT_PING_INTERVAL));
        assert_eq!(config.pong_timeout, DEFAULT_PONG_TIMEOUT);

        let mut own = chito::Config::default();
        own.ping_interval = Some(Duration::from_secs(3));
        own.pong_timeout = Duration::from_secs(4);
        let connector = with_keepalive(Connector::new().config(own));
        let config = connector.connection_config();
        assert_eq!(config.ping_interval, Some(Duration::from_secs(3)));
        assert_eq!(config.pong_timeout, Duration::from_secs(4));
    }
}
