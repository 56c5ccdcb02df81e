//! Handlers (docs/socketio.md §8): functions and closures whose arguments
//! are extractors ([`super::extract`]), sync or async, told apart by the
//! marker type parameter `M` of [`EventHandler`], [`ConnectHandler`],
//! [`ConnectMiddleware`] and [`DisconnectHandler`], which the compiler
//! infers (nobody writes it).
//!
//! A sync handler runs inline on the task that received the packet: no
//! spawn, no allocation beyond the arguments' decode; it should not block.
//! An async handler (a closure returning a future) has its extractors run
//! inline, then its future spawned on the tokio runtime.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};

use super::extract::{
    ConnectParts, DisconnectParts, EventParts, FromConnect, FromDisconnect, FromEvent, Rejection,
};
use super::namespace::ConnectError;
use super::socket::{DisconnectReason, Socket};

/// Counts of what handlers did not do, since the server started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandlerStats {
    /// Events dropped because an extractor refused them (a [`Data<T>`]
    /// whose payload is not a `T`, a missing extension or state), and
    /// disconnect handlers not run for the same reason.
    ///
    /// [`Data<T>`]: super::Data
    pub refused_events: u64,
    /// Connections refused because the connect handler's extractors
    /// refused them (answered with a CONNECT_ERROR).
    pub refused_connects: u64,
    /// Handlers that returned an `Err`.
    pub failed_handlers: u64,
}

/// The server's [`HandlerStats`] as they are counted.
#[derive(Debug, Default)]
pub(crate) struct HandlerCounters {
    refused_events: AtomicU64,
    refused_connects: AtomicU64,
    failed_handlers: AtomicU64,
}

impl HandlerCounters {
    pub(crate) fn snapshot(&self) -> HandlerStats {
        HandlerStats {
            refused_events: self.refused_events.load(Ordering::Relaxed),
            refused_connects: self.refused_connects.load(Ordering::Relaxed),
            failed_handlers: self.failed_handlers.load(Ordering::Relaxed),
        }
    }

    fn refused_event(&self) {
        self.refused_events.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn refused_connect(&self) {
        self.refused_connects.fetch_add(1, Ordering::Relaxed);
    }

    fn record<R: HandlerResult>(&self, result: &R) {
        if result.failed() {
            self.failed_handlers.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What a handler may return: `()`, or a `Result` whose `Err` is counted
/// in [`HandlerStats::failed_handlers`] (so `?` works in handlers).
pub trait HandlerResult {
    /// Whether the handler failed.
    fn failed(&self) -> bool;
}

impl HandlerResult for () {
    fn failed(&self) -> bool {
        false
    }
}

impl<T, E> HandlerResult for Result<T, E> {
    fn failed(&self) -> bool {
        self.is_err()
    }
}

/// The marker types telling sync handlers from async ones (never named by
/// users: `M` is inferred).
mod marker {
    /// A sync handler: runs inline.
    pub struct Inline;
    /// An async handler: its future is spawned.
    pub struct Spawned;
    /// The middleware form taking the socket by reference.
    pub struct BySocketRef;
}

/// A future a handler returned, boxed to be stored or awaited later.
#[doc(hidden)]
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// An event handler: `Fn(E1, …, En)` of [`FromEvent`] extractors
/// (none to eight), returning a [`HandlerResult`] or a future of one.
pub trait EventHandler<M>: Send + Sync + 'static {
    /// Runs the extractors, then the handler (the future spawned).
    #[doc(hidden)]
    fn call(&self, parts: EventParts<'_>);
}

/// A connect handler: `Fn(E1, …, En)` of [`FromConnect`] extractors (none
/// to six), returning a [`HandlerResult`] or a future of one.
pub trait ConnectHandler<M>: Send + Sync + 'static {
    /// Runs the extractors; if they all give a value and `connect()` says
    /// the socket is connected (its CONNECT answered), runs the handler.
    #[doc(hidden)]
    fn call(&self, socket: &Socket, connect: &mut dyn FnMut() -> bool) -> Result<(), Rejection>;
}

/// A connect middleware: `Fn(E1, …, En)` of [`FromConnect`] extractors
/// (none to six) returning `Result<(), ConnectError>` or a future of one;
/// or `Fn(&Socket) -> Result<(), ConnectError>`.
pub trait ConnectMiddleware<M>: Send + Sync + 'static {
    /// Runs the middleware.
    #[doc(hidden)]
    fn call(&self, socket: &Socket) -> MiddlewareVerdict;
}

/// What a connect middleware said: now, or once its future completes.
#[doc(hidden)]
pub enum MiddlewareVerdict {
    /// The answer of a sync middleware (or of refusing extractors).
    Ready(Result<(), ConnectError>),
    /// The future of an async middleware.
    Pending(BoxFuture<Result<(), ConnectError>>),
}

/// A disconnect handler: `Fn(E1, …, En)` of [`FromDisconnect`] extractors
/// (none to six), returning a [`HandlerResult`] or a future of one.
pub trait DisconnectHandler<M>: Send + Sync + 'static {
    /// Runs the extractors, then the handler (the future spawned).
    #[doc(hidden)]
    fn call(&self, socket: &Socket, reason: DisconnectReason);
}

/// Event handlers' impls (events take up to eight extractors, the others six).
macro_rules! event_handlers {
    ($($T:ident),*) => {
        impl<F, R, $($T,)*> EventHandler<(marker::Inline, R, $($T,)*)> for F
        where
            F: Fn($($T),*) -> R + Send + Sync + 'static,
            R: HandlerResult,
            $($T: FromEvent,)*
        {
            #[allow(non_snake_case, unused_mut)]
            fn call(&self, mut parts: EventParts<'_>) {
                parts.readers_after = 0 $(+ usize::from($T::READS_ARGS))*;
                $(
                    parts.readers_after -= usize::from($T::READS_ARGS);
                    let $T = match $T::from_event(&mut parts) {
                        Ok(value) => value,
                        Err(_) => return parts.socket.io().handler_counters.refused_event(),
                    };
                )*
                let result = self($($T),*);
                parts.socket.io().handler_counters.record(&result);
            }
        }

        impl<F, Fut, $($T,)*> EventHandler<(marker::Spawned, $($T,)*)> for F
        where
            F: Fn($($T),*) -> Fut + Send + Sync + 'static,
            Fut: Future + Send + 'static,
            Fut::Output: HandlerResult,
            $($T: FromEvent,)*
        {
            #[allow(non_snake_case, unused_mut)]
            fn call(&self, mut parts: EventParts<'_>) {
                parts.readers_after = 0 $(+ usize::from($T::READS_ARGS))*;
                $(
                    parts.readers_after -= usize::from($T::READS_ARGS);
                    let $T = match $T::from_event(&mut parts) {
                        Ok(value) => value,
                        Err(_) => return parts.socket.io().handler_counters.refused_event(),
                    };
                )*
                spawn_counted(parts.socket, self($($T),*));
            }
        }
    };
}

/// Every handler kind's impls for one arity.
macro_rules! handlers {
    ($($T:ident),*) => {
        event_handlers!($($T),*);

        impl<F, R, $($T,)*> DisconnectHandler<(marker::Inline, R, $($T,)*)> for F
        where
            F: Fn($($T),*) -> R + Send + Sync + 'static,
            R: HandlerResult,
            $($T: FromDisconnect,)*
        {
            #[allow(non_snake_case, unused_variables)]
            fn call(&self, socket: &Socket, reason: DisconnectReason) {
                let parts = DisconnectParts { socket, reason };
                $(
                    let Ok($T) = $T::from_disconnect(&parts) else {
                        return socket.io().handler_counters.refused_event();
                    };
                )*
                let result = self($($T),*);
                socket.io().handler_counters.record(&result);
            }
        }

        impl<F, Fut, $($T,)*> DisconnectHandler<(marker::Spawned, $($T,)*)> for F
        where
            F: Fn($($T),*) -> Fut + Send + Sync + 'static,
            Fut: Future + Send + 'static,
            Fut::Output: HandlerResult,
            $($T: FromDisconnect,)*
        {
            #[allow(non_snake_case, unused_variables)]
            fn call(&self, socket: &Socket, reason: DisconnectReason) {
                let parts = DisconnectParts { socket, reason };
                $(
                    let Ok($T) = $T::from_disconnect(&parts) else {
                        return socket.io().handler_counters.refused_event();
                    };
                )*
                spawn_counted(socket, self($($T),*));
            }
        }

        impl<F, R, $($T,)*> ConnectHandler<(marker::Inline, R, $($T,)*)> for F
        where
            F: Fn($($T),*) -> R + Send + Sync + 'static,
            R: HandlerResult,
            $($T: FromConnect,)*
        {
            #[allow(non_snake_case, unused_variables)]
            fn call(
                &self,
                socket: &Socket,
                connect: &mut dyn FnMut() -> bool,
            ) -> Result<(), Rejection> {
                let parts = ConnectParts { socket };
                $( let $T = $T::from_connect(&parts)?; )*
                if connect() {
                    let result = self($($T),*);
                    socket.io().handler_counters.record(&result);
                }
                Ok(())
            }
        }

        impl<F, Fut, $($T,)*> ConnectHandler<(marker::Spawned, $($T,)*)> for F
        where
            F: Fn($($T),*) -> Fut + Send + Sync + 'static,
            Fut: Future + Send + 'static,
            Fut::Output: HandlerResult,
            $($T: FromConnect,)*
        {
            #[allow(non_snake_case, unused_variables)]
            fn call(
                &self,
                socket: &Socket,
                connect: &mut dyn FnMut() -> bool,
            ) -> Result<(), Rejection> {
                let parts = ConnectParts { socket };
                $( let $T = $T::from_connect(&parts)?; )*
                if connect() {
                    spawn_counted(socket, self($($T),*));
                }
                Ok(())
            }
        }

        impl<F, $($T,)*> ConnectMiddleware<(marker::Inline, $($T,)*)> for F
        where
            F: Fn($($T),*) -> Result<(), ConnectError> + Send + Sync + 'static,
            $($T: FromConnect,)*
        {
            #[allow(non_snake_case, unused_variables)]
            fn call(&self, socket: &Socket) -> MiddlewareVerdict {
                let parts = ConnectParts { socket };
                $(
                    let $T = match $T::from_connect(&parts) {
                        Ok(value) => value,
                        Err(refusal) => {
                            return MiddlewareVerdict::Ready(Err(refusal.connect_error()))
                        }
                    };
                )*
                MiddlewareVerdict::Ready(self($($T),*))
            }
        }

        impl<F, Fut, $($T,)*> ConnectMiddleware<(marker::Spawned, $($T,)*)> for F
        where
            F: Fn($($T),*) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = Result<(), ConnectError>> + Send + 'static,
            $($T: FromConnect,)*
        {
            #[allow(non_snake_case, unused_variables)]
            fn call(&self, socket: &Socket) -> MiddlewareVerdict {
                let parts = ConnectParts { socket };
                $(
                    let $T = match $T::from_connect(&parts) {
                        Ok(value) => value,
                        Err(refusal) => {
                            return MiddlewareVerdict::Ready(Err(refusal.connect_error()))
                        }
                    };
                )*
                MiddlewareVerdict::Pending(Box::pin(self($($T),*)))
            }
        }
    };
}

handlers!();
handlers!(T1);
handlers!(T1, T2);
handlers!(T1, T2, T3);
handlers!(T1, T2, T3, T4);
handlers!(T1, T2, T3, T4, T5);
handlers!(T1, T2, T3, T4, T5, T6);

event_handlers!(T1, T2, T3, T4, T5, T6, T7);
event_handlers!(T1, T2, T3, T4, T5, T6, T7, T8);

/// The middleware form of before extractors, kept: the socket by reference.
impl<F> ConnectMiddleware<(marker::BySocketRef, ())> for F
where
    F: Fn(&Socket) -> Result<(), ConnectError> + Send + Sync + 'static,
{
    fn call(&self, socket: &Socket) -> MiddlewareVerdict {
        MiddlewareVerdict::Ready(self(socket))
    }
}

/// Spawns an async handler's future; an `Err` it ends with is counted.
fn spawn_counted<Fut>(socket: &Socket, future: Fut)
where
    Fut: Future + Send + 'static,
    Fut::Output: HandlerResult,
{
    let io = std::sync::Arc::clone(socket.io());
    tokio::spawn(async move {
        let result = future.await;
        io.handler_counters.record(&result);
    });
}
