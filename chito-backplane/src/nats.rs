//! NATS core and JetStream through `async-nats`.
//!
//! Core: one subscription per channel, each read by its own task. The
//! client reconnects and restores its subscriptions by itself; the
//! backplane's resync after a reconnect only adds what is missing and
//! republishes presence.
//!
//! JetStream (room and broadcast emits only): a stream `CHITO_<ns>` and one
//! durable pull consumer per node whose filter subjects are the node's
//! rooms plus the broadcast subject, updated as rooms come and go.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, OnceLock, Weak};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream, AckKind};
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};

use crate::backplane::{lock, Shared};
use crate::channels::Channels;
use crate::receive::Received;
use crate::settings::{ConnectError, JetStreamSettings, Settings};
use crate::transport::{Outbound, Transport};

pub(crate) struct NatsTransport {
    client: async_nats::Client,
    js: Option<Js>,
    /// Core subscriptions: the signal that stops each one's task.
    subs: Mutex<HashMap<String, oneshot::Sender<()>>>,
    shared: OnceLock<Weak<Shared>>,
    events: Mutex<Option<mpsc::UnboundedReceiver<async_nats::Event>>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

struct Js {
    context: jetstream::Context,
    stream: stream::Stream,
    stream_config: stream::Config,
    settings: JetStreamSettings,
    all: String,
    /// The consumer's filter subjects: broadcast, rooms with local members,
    /// and (during the resume grace) the rooms of the previous run.
    filters: tokio::sync::Mutex<BTreeSet<String>>,
}

fn broker<E: std::fmt::Display>(e: E) -> ConnectError {
    ConnectError::Broker(e.to_string())
}

impl NatsTransport {
    pub(crate) async fn connect(url: &str, settings: &Settings) -> Result<Self, ConnectError> {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let base = settings.reconnect_delay;
        let max = settings.reconnect_max_delay;
        let options = async_nats::ConnectOptions::new()
            .event_callback(move |event| {
                let tx = events_tx.clone();
                async move {
                    let _ = tx.send(event);
                }
            })
            .max_reconnects(None)
            .reconnect_delay_callback(move |attempts| {
                let factor = 1u32 << attempts.min(16);
                base.saturating_mul(factor).min(max)
            })
            .connection_timeout(settings.connect_timeout);
        let client = tokio::time::timeout(settings.connect_timeout, options.connect(url))
            .await
            .map_err(|_| ConnectError::Timeout)?
            .map_err(broker)?;
        let js = match &settings.jetstream {
            None => None,
            Some(js) => Some(Js::setup(&client, settings, js).await?),
        };
        Ok(NatsTransport {
            client,
            js,
            subs: Mutex::new(HashMap::new()),
            shared: OnceLock::new(),
            events: Mutex::new(Some(events_rx)),
            tasks: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn name(&self) -> &'static str {
        if self.js.is_some() {
            "nats (jetstream)"
        } else {
            "nats"
        }
    }

    pub(crate) fn jetstream(&self) -> bool {
        self.js.is_some()
    }

    pub(crate) async fn publish(&self, out: &Outbound) -> Result<(), String> {
        match (&self.js, &out.msg_id) {
            (Some(js), Some(id)) => {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
                let ack = js
                    .context
                    .publish_with_headers(out.channel.clone(), headers, out.payload.clone())
                    .await
                    .map_err(|e| e.to_string())?;
                // The stream has it (or had it: a duplicate id is fine).
                ack.await.map(|_| ()).map_err(|e| e.to_string())
            }
            _ => self
                .client
                .publish(out.channel.clone(), out.payload.clone())
                .await
                .map_err(|e| e.to_string()),
        }
    }

    pub(crate) async fn subscribe(&self, channel: &str, durable: bool) -> Result<(), String> {
        if let (Some(js), true) = (&self.js, durable) {
            let mut filters = js.filters.lock().await;
            if filters.insert(channel.to_owned()) {
                js.update(&filters).await?;
            }
            return Ok(());
        }
        if lock(&self.subs).contains_key(channel) {
            // The client restores its subscriptions after a reconnect.
            return Ok(());
        }
        let mut sub = self
            .client
            .subscribe(channel.to_owned())
            .await
            .map_err(|e| e.to_string())?;
        let (stop_tx, mut stop) = oneshot::channel();
        lock(&self.subs).insert(channel.to_owned(), stop_tx);
        let weak = self.shared.get().cloned().unwrap_or_default();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    message = sub.next() => match message {
                        Some(m) => match weak.upgrade() {
                            Some(s) => { s.receive(&m.payload); }
                            None => break,
                        },
                        None => return,
                    },
                    _ = &mut stop => break,
                }
            }
            let _ = sub.unsubscribe().await;
        });
        lock(&self.tasks).push(task);
        // The server has the subscription once it answered a ping sent
        // after it: callers may rely on being subscribed.
        self.client.flush().await.map_err(|e| e.to_string())
    }

    pub(crate) async fn unsubscribe(&self, channel: &str, durable: bool) -> Result<(), String> {
        if let (Some(js), true) = (&self.js, durable) {
            let mut filters = js.filters.lock().await;
            if filters.remove(channel) {
                js.update(&filters).await?;
            }
            return Ok(());
        }
        if let Some(stop) = lock(&self.subs).remove(channel) {
            let _ = stop.send(());
        }
        Ok(())
    }

    pub(crate) async fn resync(&self) {
        if let Some(js) = &self.js {
            js.ensure().await;
        }
    }

    pub(crate) fn start(&self, shared: Weak<Shared>) {
        let _ = self.shared.set(shared.clone());
        let Some(s) = shared.upgrade() else { return };
        s.set_max_payload(self.client.server_info().max_payload);
        let mut tasks = lock(&self.tasks);
        if let Some(events) = lock(&self.events).take() {
            tasks.push(s.runtime.spawn(follow_events(shared.clone(), events)));
        }
        if let Some(js) = &self.js {
            let consumer_stream = js.stream.clone();
            let durable = js.settings.durable_name.clone();
            tasks.push(
                s.runtime
                    .spawn(consume(shared.clone(), consumer_stream, durable)),
            );
            // After the grace, the previous run's rooms leave the filter.
            let grace = js.settings.resume_grace;
            let weak = shared;
            tasks.push(s.runtime.spawn(async move {
                tokio::time::sleep(grace).await;
                let Some(s) = weak.upgrade() else { return };
                // Irrefutable without the redis feature.
                #[allow(irrefutable_let_patterns)]
                if let Transport::Nats(t) = &s.transport {
                    if let Some(js) = &t.js {
                        js.reset_to_wanted(&s).await;
                    }
                }
            }));
        }
    }

    pub(crate) fn abort(&self, runtime: &tokio::runtime::Handle) {
        for (_, stop) in lock(&self.subs).drain() {
            let _ = stop.send(());
        }
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
        // Close the connection (JetStream's pull machinery holds client
        // clones of its own): the server then stops handing this node's
        // consumer messages on the old connection's pull requests.
        let client = self.client.clone();
        runtime.spawn(async move {
            let _ = client.drain().await;
        });
    }

    pub(crate) async fn close(&self) {
        for (_, stop) in lock(&self.subs).drain() {
            let _ = stop.send(());
        }
        let _ = self.client.flush().await;
        let tasks: Vec<_> = lock(&self.tasks).drain(..).collect();
        for task in tasks {
            task.abort();
        }
        let _ = self.client.drain().await;
    }
}

impl Js {
    async fn setup(
        client: &async_nats::Client,
        settings: &Settings,
        js: &JetStreamSettings,
    ) -> Result<Js, ConnectError> {
        let context = jetstream::new(client.clone());
        let channels = Channels::new(&settings.namespace);
        let all = channels.all();
        let stream_config = stream::Config {
            name: format!("CHITO_{}", settings.namespace),
            subjects: vec![channels.rooms_wildcard(), all.clone()],
            max_age: js.max_age,
            duplicate_window: js.duplicate_window.min(js.max_age),
            storage: if js.file_storage {
                stream::StorageType::File
            } else {
                stream::StorageType::Memory
            },
            ..Default::default()
        };
        let stream = context
            .get_or_create_stream(stream_config.clone())
            .await
            .map_err(broker)?;
        // A consumer left by this node's previous run: keep its rooms for
        // the resume grace (its members are expected back) and go on from
        // its acknowledgement floor.
        let mut filters = BTreeSet::from([all.clone()]);
        let existing = stream
            .consumer_info(&js.durable_name)
            .await
            .ok()
            .map(|info| info.config.filter_subjects.clone());
        let config = consumer_config(js, &filters);
        match existing {
            Some(previous) => {
                filters.extend(previous);
                stream
                    .update_consumer(consumer_config(js, &filters))
                    .await
                    .map_err(broker)?;
            }
            None => {
                stream.create_consumer(config).await.map_err(broker)?;
            }
        }
        Ok(Js {
            context,
            stream,
            stream_config,
            settings: js.clone(),
            all,
            filters: tokio::sync::Mutex::new(filters),
        })
    }

    /// The stream and the consumer exist (again, after a server restart
    /// that lost them); the consumer task picks the new one up.
    async fn ensure(&self) {
        if self
            .context
            .get_or_create_stream(self.stream_config.clone())
            .await
            .is_err()
        {
            return;
        }
        if self
            .stream
            .consumer_info(&self.settings.durable_name)
            .await
            .is_err()
        {
            let filters = self.filters.lock().await;
            let _ = self
                .stream
                .create_consumer(consumer_config(&self.settings, &filters))
                .await;
        }
    }

    async fn update(&self, filters: &BTreeSet<String>) -> Result<(), String> {
        self.stream
            .update_consumer(consumer_config(&self.settings, filters))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Filters = broadcast + the rooms the node has now.
    async fn reset_to_wanted(&self, s: &Shared) {
        let mut wanted = BTreeSet::from([self.all.clone()]);
        if let Some(sink) = s.sink.get() {
            wanted.extend(sink.local_rooms().iter().map(|r| s.channels.room(r)));
        }
        wanted.extend(lock(&s.rooms).keys().map(|r| s.channels.room(r)));
        let mut filters = self.filters.lock().await;
        if *filters != wanted {
            *filters = wanted;
            let _ = self.update(&filters).await;
        }
    }
}

fn consumer_config(js: &JetStreamSettings, filters: &BTreeSet<String>) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(js.durable_name.clone()),
        // A new node starts at the present; a known one resumes.
        deliver_policy: consumer::DeliverPolicy::New,
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: js.ack_wait,
        filter_subjects: filters.iter().cloned().collect(),
        // An abandoned node's consumer goes away once nothing it could
        // resume is left in the stream.
        inactive_threshold: js.max_age.saturating_mul(2),
        ..Default::default()
    }
}

/// Reads the node's consumer, acknowledging after local delivery.
async fn consume(shared: Weak<Shared>, stream: stream::Stream, durable: String) {
    loop {
        let messages = match stream
            .get_consumer::<consumer::pull::Config>(&durable)
            .await
        {
            Ok(consumer) => consumer.messages().await.ok(),
            Err(_) => None,
        };
        if let Some(mut messages) = messages {
            while let Some(message) = messages.next().await {
                let Ok(message) = message else {
                    // Heartbeats missed, reconnect…: the stream goes on
                    // or ends; on end we build it again.
                    continue;
                };
                // In order: a message for a room whose members are not
                // back yet (resume grace) is held here, its ack deadline
                // extended, and tried again; the ones after it wait.
                loop {
                    let Some(s) = shared.upgrade() else { return };
                    let outcome = s.receive(&message.payload);
                    drop(s);
                    match outcome {
                        Received::Done => {
                            let _ = message.ack().await;
                            break;
                        }
                        Received::NotYet => {
                            let _ = message.ack_with(AckKind::Progress).await;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }
        }
        if shared.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Connection events from the client.
async fn follow_events(
    shared: Weak<Shared>,
    mut events: mpsc::UnboundedReceiver<async_nats::Event>,
) {
    while let Some(event) = events.recv().await {
        let Some(s) = shared.upgrade() else { return };
        match event {
            async_nats::Event::Connected => s.on_connected(),
            async_nats::Event::Disconnected => s.on_disconnected("disconnected".into()),
            async_nats::Event::SlowConsumer(_) => s.on_slow_consumer(),
            _ => {}
        }
    }
}
