//! The event trait: one callback per kind of event, in the spirit of gws.
//!
//! An adapter (blocking or tokio) owns the I/O loop and calls a
//! [`Handler`] for each event the [`Connection`] produces. Every callback
//! that can answer gets a [`Sender`], so replies are queued while the
//! incoming payload is still borrowed (no copy). Control-frame duties
//! (answering pings, echoing close) stay in the core, so a handler that
//! ignores them is still correct.

use crate::close::{CloseCode, CloseFrame};
use crate::connection::{Connection, Event, Message, Sender};
use crate::error::Error;

/// Callbacks for one connection. Every method has a default, so implement
/// only what you need.
///
/// ```
/// use chito::{Handler, Message, Sender};
///
/// struct Echo;
/// impl Handler for Echo {
///     fn on_message(&mut self, sender: &mut Sender<'_>, message: Message<'_>) {
///         let _ = sender.send(message);
///     }
/// }
/// ```
pub trait Handler {
    /// The connection is open; messages may be sent.
    fn on_open(&mut self, sender: &mut Sender<'_>) {
        let _ = sender;
    }

    /// A complete text or binary message arrived.
    fn on_message(&mut self, sender: &mut Sender<'_>, message: Message<'_>) {
        let _ = (sender, message);
    }

    /// A ping arrived. With [`crate::Config::auto_pong`] (the default) the
    /// pong is already queued.
    fn on_ping(&mut self, sender: &mut Sender<'_>, payload: &[u8]) {
        let _ = (sender, payload);
    }

    /// A pong arrived.
    fn on_pong(&mut self, sender: &mut Sender<'_>, payload: &[u8]) {
        let _ = (sender, payload);
    }

    /// The connection ended. Called exactly once, last: with the peer's
    /// close frame after a closing handshake (code 1005 if it carried
    /// none), or with the failure's code after an error (1006 for a lost
    /// transport or a timeout).
    fn on_close(&mut self, frame: &CloseFrame<'_>) {
        let _ = frame;
    }

    /// Something went wrong; [`Handler::on_close`] follows.
    fn on_error(&mut self, error: &Error) {
        let _ = error;
    }
}

/// Whether the connection goes on after a [`dispatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// More events may come: write the output and read more input.
    Continue,
    /// [`Handler::on_close`] was called: flush the output and close the
    /// transport.
    Ended,
}

/// Hands every event that is ready to `handler`, and reports whether the
/// connection ended. Adapters call it after each read; a custom I/O loop
/// can too.
pub fn dispatch<H: Handler + ?Sized>(conn: &mut Connection, handler: &mut H) -> Flow {
    dispatch_while(conn, handler, |_| true)
}

/// [`dispatch`], stopping early (with [`Flow::Continue`]) once `more`
/// says no after an event: a driver that has read ahead (the uring loop
/// feeds whole bursts) stops producing output while too much waits, and
/// the unparsed input waits in the connection.
pub(crate) fn dispatch_while<H: Handler + ?Sized>(
    conn: &mut Connection,
    handler: &mut H,
    mut more: impl FnMut(&Connection) -> bool,
) -> Flow {
    loop {
        if !more(conn) {
            return Flow::Continue;
        }
        match conn.poll_event() {
            Ok(None) => return Flow::Continue,
            Ok(Some((event, mut sender))) => match event {
                Event::Text(text) => handler.on_message(&mut sender, Message::Text(text)),
                Event::Binary(bytes) => handler.on_message(&mut sender, Message::Binary(bytes)),
                Event::Ping(payload) => handler.on_ping(&mut sender, payload),
                Event::Pong(payload) => handler.on_pong(&mut sender, payload),
                Event::Close(frame) => {
                    let frame = frame.unwrap_or(CloseFrame::new(CloseCode::NoStatusReceived, ""));
                    handler.on_close(&frame);
                    return Flow::Ended;
                }
            },
            Err(error) => {
                end_with_error(handler, &error.into());
                return Flow::Ended;
            }
        }
    }
}

/// Reports a fatal error: [`Handler::on_error`], then [`Handler::on_close`]
/// with the error's close code.
pub fn end_with_error<H: Handler + ?Sized>(handler: &mut H, error: &Error) {
    handler.on_error(error);
    let reason = match error {
        Error::Protocol(e) => e.reason(),
        _ => "",
    };
    handler.on_close(&CloseFrame::new(error.close_code(), reason));
}
