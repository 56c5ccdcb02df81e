//! Extractors: the arguments of event, connect and disconnect handlers
//! (docs/socketio.md §8). A handler is any function whose arguments each
//! implement [`FromEvent`] (event handlers), [`FromConnect`] (connect
//! handlers and middlewares) or [`FromDisconnect`] (disconnect handlers),
//! in any order.
//!
//! | extractor | event | connect | disconnect | what it gives |
//! |---|---|---|---|---|
//! | [`Socket`] | ✓ | ✓ | ✓ | the socket |
//! | [`Data<T>`] | ✓ | ✓ | | the payload as a `T` |
//! | [`TryData<T>`] | ✓ | ✓ | | the payload as a `T`, or why not |
//! | [`Args`] | ✓ | | | the arguments as received |
//! | [`Bin`] | ✓ | | | the binary attachments |
//! | [`Ack`] | ✓ | | | the answer to the event |
//! | [`Event`] | ✓ | | | the event's name |
//! | [`Extension<T>`] | ✓ | ✓ | ✓ | a value of the socket's [`Extensions`] |
//! | [`State<T>`] | ✓ | ✓ | ✓ | a value given to the builder |
//! | [`DisconnectReason`] | | | ✓ | why the socket went |
//!
//! An extractor that cannot give its value refuses: the event is dropped
//! and counted ([`HandlerStats::refused_events`](super::HandlerStats::refused_events)), a connection is
//! refused with a CONNECT_ERROR. `Option<E>` never refuses.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::args::{Args, ArgsError};
use super::binary;
use super::namespace::ConnectError;
use super::socket::{Ack, DisconnectReason, Socket};

/// Why an extractor could not give its value.
#[derive(Debug)]
pub enum Rejection {
    /// The payload is not the `T` of a [`Data<T>`].
    Data(serde_json::Error),
    /// The socket has no [`Extension<T>`] of this type (its name).
    MissingExtension(&'static str),
    /// The server was built without a [`State<T>`] of this type (its name).
    MissingState(&'static str),
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Data(e) => write!(f, "the payload does not deserialize: {e}"),
            Self::MissingExtension(name) => write!(f, "the socket has no extension {name}"),
            Self::MissingState(name) => write!(f, "the server has no state {name}"),
        }
    }
}

impl std::error::Error for Rejection {}

impl Rejection {
    /// The CONNECT_ERROR a refused connection gets: the client learns its
    /// auth was refused, never the server's types or serde's text.
    pub(crate) fn connect_error(&self) -> ConnectError {
        match self {
            Self::Data(_) => ConnectError::new("invalid auth payload"),
            Self::MissingExtension(_) | Self::MissingState(_) => ConnectError::new("server error"),
        }
    }
}

/// One received event, as its handler's extractors read it.
pub struct EventParts<'a> {
    pub(crate) socket: &'a Socket,
    pub(crate) event: &'a str,
    pub(crate) args: Args,
    pub(crate) ack_id: Option<u64>,
    /// How many extractors after the running one read the arguments: an
    /// [`Args`] extractor takes them when none does, a clone otherwise (no
    /// copy in the usual handler, whose `Args` is its only reader).
    pub(crate) readers_after: usize,
}

impl<'a> EventParts<'a> {
    pub(crate) fn new(socket: &'a Socket, event: &'a str, args: Args, ack_id: Option<u64>) -> Self {
        Self {
            socket,
            event,
            args,
            ack_id,
            readers_after: 0,
        }
    }

    /// The socket the event came on.
    pub fn socket(&self) -> &Socket {
        self.socket
    }

    /// The event's name.
    pub fn event(&self) -> &str {
        self.event
    }

    /// The event's arguments.
    pub fn args(&self) -> &Args {
        &self.args
    }
}

/// One connecting socket, as its connect handler's and middlewares'
/// extractors read it (the CONNECT's auth is [`Socket::auth`]).
pub struct ConnectParts<'a> {
    pub(crate) socket: &'a Socket,
}

impl ConnectParts<'_> {
    /// The connecting socket.
    pub fn socket(&self) -> &Socket {
        self.socket
    }
}

/// One disconnected socket, as its disconnect handlers' extractors read it.
pub struct DisconnectParts<'a> {
    pub(crate) socket: &'a Socket,
    pub(crate) reason: DisconnectReason,
}

impl DisconnectParts<'_> {
    /// The socket that disconnected.
    pub fn socket(&self) -> &Socket {
        self.socket
    }

    /// Why it disconnected.
    pub fn reason(&self) -> DisconnectReason {
        self.reason
    }
}

/// An argument of an event handler.
pub trait FromEvent: Sized {
    /// Whether this extractor reads the event's arguments
    /// ([`EventParts::args`]): an [`Args`] before it then leaves them in
    /// place (a clone) instead of taking them.
    const READS_ARGS: bool = false;

    /// The value, or why there is none.
    fn from_event(parts: &mut EventParts<'_>) -> Result<Self, Rejection>;
}

/// An argument of a connect handler or middleware.
pub trait FromConnect: Sized {
    /// The value, or why there is none.
    fn from_connect(parts: &ConnectParts<'_>) -> Result<Self, Rejection>;
}

/// An argument of a disconnect handler.
pub trait FromDisconnect: Sized {
    /// The value, or why there is none.
    fn from_disconnect(parts: &DisconnectParts<'_>) -> Result<Self, Rejection>;
}

impl FromEvent for Socket {
    fn from_event(parts: &mut EventParts<'_>) -> Result<Self, Rejection> {
        Ok(parts.socket.clone())
    }
}

impl FromConnect for Socket {
    fn from_connect(parts: &ConnectParts<'_>) -> Result<Self, Rejection> {
        Ok(parts.socket.clone())
    }
}

impl FromDisconnect for Socket {
    fn from_disconnect(parts: &DisconnectParts<'_>) -> Result<Self, Rejection> {
        Ok(parts.socket.clone())
    }
}

impl FromDisconnect for DisconnectReason {
    fn from_disconnect(parts: &DisconnectParts<'_>) -> Result<Self, Rejection> {
        Ok(parts.reason)
    }
}

impl FromEvent for Args {
    const READS_ARGS: bool = true;

    fn from_event(parts: &mut EventParts<'_>) -> Result<Self, Rejection> {
        Ok(if parts.readers_after == 0 {
            std::mem::take(&mut parts.args)
        } else {
            parts.args.clone()
        })
    }
}

impl FromEvent for Ack {
    fn from_event(parts: &mut EventParts<'_>) -> Result<Self, Rejection> {
        // A second `Ack` in one handler finds the id taken: it answers
        // nothing, so the client gets one ACK at most.
        Ok(Ack::new(parts.socket.clone(), parts.ack_id.take()))
    }
}

/// The event's name (for a handler shared by several events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event(pub String);

impl FromEvent for Event {
    fn from_event(parts: &mut EventParts<'_>) -> Result<Self, Rejection> {
        Ok(Event(parts.event.to_owned()))
    }
}

/// The event's binary attachments, in order (the same `Bytes` as
/// received, no copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bin(pub Vec<Bytes>);

impl FromEvent for Bin {
    const READS_ARGS: bool = true;

    fn from_event(parts: &mut EventParts<'_>) -> Result<Self, Rejection> {
        Ok(Bin(parts.args.attachments().to_vec()))
    }
}

/// The payload as a `T`: for an event, `T` is read from its only argument
/// when it has exactly one, else from the array of its arguments (a tuple,
/// a `Vec`); for a connect handler, from the CONNECT's auth. A
/// [`Binary`](super::binary::Binary) anywhere in `T` receives its
/// attachment without a copy.
///
/// A payload that is not a `T` refuses the event (dropped, counted in
/// [`HandlerStats::refused_events`](super::HandlerStats::refused_events)) or the connection (CONNECT_ERROR
/// `invalid auth payload`); [`TryData`] gives the error instead.
///
/// ```no_run
/// use chito_socketio::socketio::{Ack, Data, Socket, SocketIo};
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// struct Move { x: i32, y: i32 }
///
/// let io = SocketIo::builder().build();
/// io.ns("/", |socket: Socket| {
///     // `socket.emit("move", {x: 1, y: 2})` from the client.
///     socket.on("move", |Data(step): Data<Move>, ack: Ack| {
///         let _ = ack.send(&(step.x + step.y));
///     });
///     // `socket.emit("pair", 1, "a")`: two arguments, read as a tuple.
///     socket.on("pair", |Data((n, s)): Data<(u32, String)>| {
///         let _ = (n, s);
///     });
/// });
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Data<T>(pub T);

/// The payload as a `T`, or serde's error: as [`Data`], but a mismatch is
/// the handler's to answer.
#[derive(Debug)]
pub struct TryData<T>(pub Result<T, serde_json::Error>);

fn event_payload<T: DeserializeOwned>(args: &Args) -> Result<T, serde_json::Error> {
    if args.len() == 1 {
        match args.raw().first() {
            Some(arg) => binary::deserialize_with_attachments(args.attachments(), arg.get()),
            None => Err(serde::de::Error::custom("no argument")),
        }
    } else {
        args.all().map_err(|e| match e {
            ArgsError::Json(e) => e,
            other => serde::de::Error::custom(other),
        })
    }
}

fn auth_payload<T: DeserializeOwned>(auth: &RawValue) -> Result<T, serde_json::Error> {
    serde_json::from_str(auth.get())
}

impl<T: DeserializeOwned> FromEvent for Data<T> {
    const READS_ARGS: bool = true;

    fn from_event(parts: &mut EventParts<'_>) -> Result<Self, Rejection> {
        event_payload(&parts.args)
            .map(Data)
            .map_err(Rejection::Data)
    }
}

impl<T: DeserializeOwned> FromConnect for Data<T> {
    fn from_connect(parts: &ConnectParts<'_>) -> Result<Self, Rejection> {
        auth_payload(parts.socket.auth())
            .map(Data)
            .map_err(Rejection::Data)
    }
}

impl<T: DeserializeOwned> FromEvent for TryData<T> {
    const READS_ARGS: bool = true;

    fn from_event(parts: &mut EventParts<'_>) -> Result<Self, Rejection> {
        Ok(TryData(event_payload(&parts.args)))
    }
}

impl<T: DeserializeOwned> FromConnect for TryData<T> {
    fn from_connect(parts: &ConnectParts<'_>) -> Result<Self, Rejection> {
        Ok(TryData(auth_payload(parts.socket.auth())))
    }
}

/// A copy of the socket's [`Extensions`] value of type `T` (put there by a
/// middleware or the connect handler). Without one the extractor refuses;
/// `Option<Extension<T>>` does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension<T>(pub T);

fn extension<T: Clone + Send + Sync + 'static>(socket: &Socket) -> Result<Extension<T>, Rejection> {
    socket
        .extensions()
        .get::<T>()
        .map(Extension)
        .ok_or(Rejection::MissingExtension(std::any::type_name::<T>()))
}

impl<T: Clone + Send + Sync + 'static> FromEvent for Extension<T> {
    fn from_event(parts: &mut EventParts<'_>) -> Result<Self, Rejection> {
        extension(parts.socket)
    }
}

impl<T: Clone + Send + Sync + 'static> FromConnect for Extension<T> {
    fn from_connect(parts: &ConnectParts<'_>) -> Result<Self, Rejection> {
        extension(parts.socket)
    }
}

impl<T: Clone + Send + Sync + 'static> FromDisconnect for Extension<T> {
    fn from_disconnect(parts: &DisconnectParts<'_>) -> Result<Self, Rejection> {
        extension(parts.socket)
    }
}

/// A copy of the value of type `T` the server was built with
/// ([`SocketIoBuilder::with_state`](super::SocketIoBuilder::with_state)):
/// a database pool, a configuration (wrap what must not be copied in an
/// `Arc`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State<T>(pub T);

fn state<T: Clone + Send + Sync + 'static>(socket: &Socket) -> Result<State<T>, Rejection> {
    socket
        .io()
        .state
        .get::<T>()
        .map(State)
        .ok_or(Rejection::MissingState(std::any::type_name::<T>()))
}

impl<T: Clone + Send + Sync + 'static> FromEvent for State<T> {
    fn from_event(parts: &mut EventParts<'_>) -> Result<Self, Rejection> {
        state(parts.socket)
    }
}

impl<T: Clone + Send + Sync + 'static> FromConnect for State<T> {
    fn from_connect(parts: &ConnectParts<'_>) -> Result<Self, Rejection> {
        state(parts.socket)
    }
}

impl<T: Clone + Send + Sync + 'static> FromDisconnect for State<T> {
    fn from_disconnect(parts: &DisconnectParts<'_>) -> Result<Self, Rejection> {
        state(parts.socket)
    }
}

impl<E: FromEvent> FromEvent for Option<E> {
    const READS_ARGS: bool = E::READS_ARGS;

    fn from_event(parts: &mut EventParts<'_>) -> Result<Self, Rejection> {
        Ok(E::from_event(parts).ok())
    }
}

impl<E: FromConnect> FromConnect for Option<E> {
    fn from_connect(parts: &ConnectParts<'_>) -> Result<Self, Rejection> {
        Ok(E::from_connect(parts).ok())
    }
}

impl<E: FromDisconnect> FromDisconnect for Option<E> {
    fn from_disconnect(parts: &DisconnectParts<'_>) -> Result<Self, Rejection> {
        Ok(E::from_disconnect(parts).ok())
    }
}

/// Values by type: a socket's [`Extensions`] and the server's states.
type TypeMap = HashMap<TypeId, Box<dyn Any + Send + Sync>>;

/// Typed values attached to one socket, local to this process (JS
/// `socket.data` for values that are not serializable: a user record, a
/// rate limiter). One value per type; [`Extension<T>`] reads a copy.
#[derive(Default)]
pub struct Extensions(Mutex<TypeMap>);

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extensions")
            .field("len", &self.lock().len())
            .finish()
    }
}

impl Extensions {
    fn lock(&self) -> MutexGuard<'_, TypeMap> {
        // Each change is one map operation: a panic elsewhere leaves the
        // map consistent.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Stores `value`, returning the value of its type stored before.
    pub fn insert<T: Send + Sync + 'static>(&self, value: T) -> Option<T> {
        self.lock()
            .insert(TypeId::of::<T>(), Box::new(value))
            .and_then(|old| old.downcast::<T>().ok())
            .map(|old| *old)
    }

    /// A copy of the value of type `T`.
    pub fn get<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.lock()
            .get(&TypeId::of::<T>())
            .and_then(|value| value.downcast_ref::<T>())
            .cloned()
    }

    /// Whether there is a value of type `T`.
    pub fn contains<T: Send + Sync + 'static>(&self) -> bool {
        self.lock().contains_key(&TypeId::of::<T>())
    }

    /// Removes and returns the value of type `T`.
    pub fn remove<T: Send + Sync + 'static>(&self) -> Option<T> {
        self.lock()
            .remove(&TypeId::of::<T>())
            .and_then(|old| old.downcast::<T>().ok())
            .map(|old| *old)
    }

    /// Drops every value (the socket disconnected: values holding clones
    /// of their socket would otherwise keep it alive).
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }
}

/// The server's states, fixed at build time.
#[derive(Clone, Default)]
pub(crate) struct StateMap(HashMap<TypeId, Arc<dyn Any + Send + Sync>>);

impl fmt::Debug for StateMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateMap")
            .field("len", &self.0.len())
            .finish()
    }
}

impl StateMap {
    pub(crate) fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        self.0.insert(TypeId::of::<T>(), Arc::new(value));
    }

    pub(crate) fn get<T: Clone + 'static>(&self) -> Option<T> {
        self.0
            .get(&TypeId::of::<T>())
            .and_then(|value| value.downcast_ref::<T>())
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socketio::Binary;

    fn args(raw: &[&str], attachments: &[Bytes]) -> Args {
        let owned: Vec<Box<RawValue>> = raw
            .iter()
            .map(|text| RawValue::from_string((*text).to_owned()).unwrap())
            .collect();
        let borrowed: Vec<&RawValue> = owned.iter().map(|raw| raw.as_ref()).collect();
        Args::new(&borrowed, attachments)
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Point {
        x: i32,
        y: i32,
    }

    #[test]
    fn one_argument_is_the_payload_itself() {
        let point: Point = event_payload(&args(&[r#"{"x":1,"y":2}"#], &[])).unwrap();
        assert_eq!(point, Point { x: 1, y: 2 });
        // A one-element tuple is not the single argument's shape.
        assert!(event_payload::<(Point,)>(&args(&[r#"{"x":1,"y":2}"#], &[])).is_err());
    }

    #[test]
    fn several_or_no_arguments_are_read_from_their_array() {
        let pair: (u8, String) = event_payload(&args(&["1", r#""a""#], &[])).unwrap();
        assert_eq!(pair, (1, "a".to_owned()));
        let all: Vec<u8> = event_payload(&args(&["1", "2", "3"], &[])).unwrap();
        assert_eq!(all, [1, 2, 3]);
        let none: Vec<u8> = event_payload(&args(&[], &[])).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn a_mismatch_is_serdes_error() {
        let error = event_payload::<Point>(&args(&[r#"{"x":1}"#], &[])).unwrap_err();
        assert!(error.to_string().contains("missing field `y`"), "{error}");
        assert!(event_payload::<(u8, u8)>(&args(&["1", r#""b""#], &[])).is_err());
        assert!(event_payload::<u8>(&args(&["300"], &[])).is_err());
    }

    #[test]
    fn binary_fields_receive_their_attachment_without_a_copy() {
        #[derive(serde::Deserialize)]
        struct Upload {
            name: String,
            file: Binary,
        }
        let attachment = Bytes::from(vec![7u8; 64]);
        let received = args(
            &[r#"{"name":"a.bin","file":{"_placeholder":true,"num":0}}"#],
            std::slice::from_ref(&attachment),
        );
        let upload: Upload = event_payload(&received).unwrap();
        assert_eq!(upload.name, "a.bin");
        assert_eq!(upload.file.0, attachment);
        // The same buffer: the extractor shares the received bytes.
        assert_eq!(upload.file.0.as_ptr(), attachment.as_ptr());
        // A placeholder naming a missing attachment is a mismatch.
        let missing = args(
            &[r#"{"name":"b","file":{"_placeholder":true,"num":1}}"#],
            &[],
        );
        assert!(event_payload::<Upload>(&missing).is_err());
    }

    #[test]
    fn auth_is_read_from_the_connect_payload() {
        #[derive(serde::Deserialize)]
        struct Auth {
            token: String,
        }
        let raw = RawValue::from_string(r#"{"token":"t"}"#.to_owned()).unwrap();
        let auth: Auth = auth_payload(&raw).unwrap();
        assert_eq!(auth.token, "t");
        let empty = RawValue::from_string("{}".to_owned()).unwrap();
        assert!(auth_payload::<Auth>(&empty).is_err());
    }

    #[test]
    fn state_map_gives_a_copy_by_type() {
        let mut states = StateMap::default();
        states.insert(5u32);
        states.insert("name");
        states.insert(6u32);
        assert_eq!(states.get::<u32>(), Some(6));
        assert_eq!(states.get::<&str>(), Some("name"));
        assert_eq!(states.get::<u64>(), None);
    }
}
