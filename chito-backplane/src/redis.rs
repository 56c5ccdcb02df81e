//! Redis pub/sub (PUBLISH/SUBSCRIBE) and sharded pub/sub
//! (SPUBLISH/SSUBSCRIBE) through `fred`.
//!
//! Two clients: one publishes, one subscribes (a RESP2 connection in
//! subscribe mode takes no other command). `fred` reconnects both; a
//! supervisor task watches them and, when the connection comes back,
//! the backplane subscribes again to everything it holds (SUBSCRIBE of a
//! channel already held is a no-op for Redis, so this is safe whether or
//! not the client library resubscribed by itself).

use std::sync::{Mutex, Weak};
use std::time::Duration;

use fred::prelude::*;
use tokio::sync::broadcast::error::RecvError;

use crate::backplane::Shared;
use crate::settings::{ConnectError, Settings};
use crate::transport::Outbound;

pub(crate) struct RedisTransport {
    publisher: Client,
    subscriber: Client,
    sharded: bool,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

fn client(url: &str, settings: &Settings) -> Result<Client, ConnectError> {
    let config = Config::from_url(url).map_err(|e| ConnectError::Broker(e.to_string()))?;
    let millis = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1);
    Builder::from_config(config)
        .with_connection_config(|c| {
            c.connection_timeout = settings.connect_timeout;
            // Commands sent while the connection is down wait in fred's
            // buffer; ours waits in our queue instead (the drain task
            // pauses while disconnected), so keep fred's short.
            c.max_command_attempts = 1;
        })
        .with_performance_config(|p| {
            // Received messages wait here until our task takes them; it
            // only decodes and hands them to the registry.
            p.broadcast_channel_capacity = 16 * 1024;
        })
        .set_policy(ReconnectPolicy::new_exponential(
            0, // forever
            millis(settings.reconnect_delay),
            millis(settings.reconnect_max_delay),
            2,
        ))
        .build()
        .map_err(|e| ConnectError::Broker(e.to_string()))
}

async fn init(c: &Client, timeout: Duration) -> Result<(), ConnectError> {
    match tokio::time::timeout(timeout, c.init()).await {
        Ok(Ok(_handle)) => Ok(()),
        Ok(Err(e)) => Err(ConnectError::Broker(e.to_string())),
        Err(_) => Err(ConnectError::Timeout),
    }
}

impl RedisTransport {
    pub(crate) async fn connect(url: &str, settings: &Settings) -> Result<Self, ConnectError> {
        let publisher = client(url, settings)?;
        let subscriber = client(url, settings)?;
        init(&publisher, settings.connect_timeout).await?;
        init(&subscriber, settings.connect_timeout).await?;
        Ok(RedisTransport {
            publisher,
            subscriber,
            sharded: settings.redis_sharded,
            tasks: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn name(&self) -> &'static str {
        if self.sharded {
            "redis (sharded pub/sub)"
        } else {
            "redis"
        }
    }

    pub(crate) async fn publish(&self, out: &Outbound) -> Result<(), String> {
        let payload = out.payload.clone();
        let result: Result<i64, Error> = if self.sharded {
            self.publisher.spublish(out.channel.as_str(), payload).await
        } else {
            self.publisher.publish(out.channel.as_str(), payload).await
        };
        result.map(|_| ()).map_err(|e| e.to_string())
    }

    /// Redis has no stream: every channel is plain pub/sub.
    pub(crate) fn jetstream(&self) -> bool {
        false
    }

    /// Nothing to restore beyond the subscriptions.
    pub(crate) async fn resync(&self) {}

    pub(crate) async fn subscribe(&self, channel: &str, _durable: bool) -> Result<(), String> {
        let result = if self.sharded {
            self.subscriber.ssubscribe(channel).await
        } else {
            self.subscriber.subscribe(channel).await
        };
        result.map_err(|e| e.to_string())
    }

    pub(crate) async fn unsubscribe(&self, channel: &str, _durable: bool) -> Result<(), String> {
        let result = if self.sharded {
            self.subscriber.sunsubscribe(channel).await
        } else {
            self.subscriber.unsubscribe(channel).await
        };
        result.map_err(|e| e.to_string())
    }

    pub(crate) fn start(&self, shared: Weak<Shared>) {
        let Some(s) = shared.upgrade() else { return };
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.push(
            s.runtime
                .spawn(receive(shared.clone(), self.subscriber.message_rx())),
        );
        tasks.push(s.runtime.spawn(supervise(
            shared,
            self.publisher.clone(),
            self.subscriber.clone(),
        )));
    }

    pub(crate) fn abort(&self, runtime: &tokio::runtime::Handle) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
        let (publisher, subscriber) = (self.publisher.clone(), self.subscriber.clone());
        runtime.spawn(async move {
            let _ = subscriber.quit().await;
            let _ = publisher.quit().await;
        });
    }

    pub(crate) async fn close(&self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
        let _ = self.subscriber.quit().await;
        let _ = self.publisher.quit().await;
    }
}

/// Hands every received message to the backplane, in order.
async fn receive(
    shared: Weak<Shared>,
    mut rx: tokio::sync::broadcast::Receiver<fred::types::Message>,
) {
    loop {
        match rx.recv().await {
            Ok(message) => {
                let Some(s) = shared.upgrade() else { return };
                match message.value.as_bytes() {
                    Some(bytes) => {
                        s.receive(bytes);
                    }
                    None => {
                        s.receive(&[]); // counted as a bad envelope
                    }
                }
            }
            Err(RecvError::Lagged(_)) => {
                // fred's buffer overflowed: messages were lost here.
                if let Some(s) = shared.upgrade() {
                    s.on_slow_consumer();
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Follows both clients' connection state: reports losses and, on return,
/// has the backplane resubscribe and republish its presence.
async fn supervise(shared: Weak<Shared>, publisher: Client, subscriber: Client) {
    let mut reconnects = subscriber.reconnect_rx();
    let mut errors = subscriber.error_rx();
    let mut publisher_errors = publisher.error_rx();
    let mut last_error = String::from("connection lost");
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        let mut resubscribe = false;
        tokio::select! {
            r = reconnects.recv() => match r {
                Ok(_) => resubscribe = true,
                Err(RecvError::Lagged(_)) => resubscribe = true,
                Err(RecvError::Closed) => return,
            },
            e = errors.recv() => if let Ok((e, _)) = e { last_error = e.to_string() },
            e = publisher_errors.recv() => if let Ok((e, _)) = e { last_error = e.to_string() },
            _ = tick.tick() => {}
        }
        let Some(s) = shared.upgrade() else { return };
        let up = publisher.is_connected() && subscriber.is_connected();
        let was_up = s.is_up();
        if resubscribe && up && was_up {
            // Lost and regained between two looks: still a reconnect.
            s.on_disconnected(last_error.clone());
        }
        if up {
            s.on_connected();
        } else {
            s.on_disconnected(last_error.clone());
        }
    }
}
