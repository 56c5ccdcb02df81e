//! The turn's second step: what each completion means for its slot —
//! an accepted socket gets a slot, received bytes go into the handshake
//! or the `Connection` (the buffer goes straight back to the ring), a
//! finished send frees its buffer or sends the rest.

use std::io;
use std::net::TcpStream;
use std::panic::{catch_unwind, AssertUnwindSafe};

use chito_ring::{Completion, Op};

use super::{Core, Follow, ACCEPT_RETRY, INPUT_HIGH_WATER};
use crate::adapter;
use crate::error::Error;
use crate::handler::{end_with_error, Handler};
use crate::handshake::{Rejection, UpgradeRequest};
use crate::uring::handshake::{decide, Handshaking};
use crate::uring::slab::{Open as OpenConn, Phase, Slot};
use crate::uring::wake::RUNNING;
use crate::uring::Open;

impl<F, H> Core<F, H>
where
    F: FnMut(&mut Open<'_>) -> H,
    H: Handler,
{
    /// Handles one completion; what needs the ring is returned.
    pub(super) fn complete(&mut self, completion: Completion<'_>) -> Follow {
        match completion.op {
            Op::Accept => {
                self.accepted(completion);
                Follow::Nothing
            }
            Op::Poll => {
                self.shared.event().drain();
                if !completion.more {
                    self.rearm_wake = true;
                }
                Follow::Nothing
            }
            Op::Recv => self.received(completion),
            Op::Send => self.sent(completion),
            Op::Shutdown | Op::Cancel | Op::Close => {
                if let Some((index, slot)) = self.slab.get_mut(completion.tag) {
                    slot.ops -= 1;
                    if completion.op == Op::Cancel {
                        slot.cancelling = false;
                    }
                    Self::mark_ready(&mut self.ready, index, slot);
                }
                Follow::Nothing
            }
        }
    }

    fn accepted(&mut self, completion: Completion<'_>) {
        if !completion.more {
            self.accepting = false;
            self.rearm_accept = true;
        }
        let Some(fd) = completion.accepted else {
            if !completion.cancelled() && !completion.more {
                // EMFILE and the like: the server goes on, and tries again
                // a little later rather than at once.
                let now = self.now();
                self.accept_retry = Some(now + ACCEPT_RETRY);
            }
            return;
        };
        if self.shutdown_seen != RUNNING {
            return;
        }
        let stream = TcpStream::from(fd);
        // Small frames leave at once (the tokio adapter does the same).
        let _ = stream.set_nodelay(true);
        let deadline = self.now() + self.settings.handshake_timeout;
        let handshake = Handshaking::new(&self.settings.config);
        let Some(index) = self
            .slab
            .insert(stream, Phase::Handshake(Box::new(handshake)))
        else {
            return;
        };
        if let Some(slot) = self.slab.at_mut(index) {
            slot.deadline = Some(deadline);
            self.timers.push(deadline, slot.tag(index));
            Self::mark_ready(&mut self.ready, index, slot);
        }
    }

    fn received(&mut self, completion: Completion<'_>) -> Follow {
        let Some((index, slot)) = self.slab.get_mut(completion.tag) else {
            return Follow::Nothing;
        };
        if !completion.more {
            slot.receiving = false;
            slot.ops -= 1;
        }
        Self::mark_ready(&mut self.ready, index, slot);
        let result = completion.result;
        if result == 0 {
            slot.input_ended = true;
            match &mut slot.phase {
                Phase::Open(open) => open.conn.handle_eof(),
                _ => slot.closing = true,
            }
            return Follow::Nothing;
        }
        if result < 0 {
            if completion.no_buffers() || completion.cancelled() {
                // Re-armed when served (after the buffers went back), or
                // cancelled on purpose.
                return Follow::Nothing;
            }
            slot.input_ended = true;
            let error = completion
                .error()
                .unwrap_or_else(|| io::ErrorKind::Other.into());
            Self::fail(slot, error);
            return Follow::Nothing;
        }
        let Some(bytes) = completion.received.as_deref() else {
            return Follow::Nothing;
        };
        match &mut slot.phase {
            Phase::Open(open) => {
                open.conn.feed(bytes);
                if open.conn.input_buffered() >= INPUT_HIGH_WATER {
                    Follow::Serve(index)
                } else {
                    Follow::Nothing
                }
            }
            Phase::Handshake(handshake) => match handshake.machine.feed(bytes) {
                Ok(None) => Follow::Nothing,
                Ok(Some(request)) => {
                    drop(completion);
                    self.answer(index, request)
                }
                Err(rejection) => Self::refuse(slot, index, &rejection),
            },
            Phase::Refusing | Phase::Free => Follow::Nothing,
        }
    }

    /// A complete upgrade request: refused, or accepted with a handler.
    fn answer(&mut self, index: u32, request: UpgradeRequest) -> Follow {
        let shutting_down = self.shutdown_seen != RUNNING;
        let Some(slot) = self.slab.at_mut(index) else {
            return Follow::Nothing;
        };
        let accept = match decide(&request, shutting_down, self.settings.inspect.as_ref()) {
            Ok(accept) => accept,
            Err(rejection) => return Self::refuse(slot, index, &rejection),
        };
        let Some(stream) = slot.stream.as_ref() else {
            return Follow::Nothing;
        };
        let tag = slot.tag(index);
        let new_handler = &mut self.new_handler;
        let made = catch_unwind(AssertUnwindSafe(|| {
            let mut open = Open {
                request: &request,
                stream,
                extras: &mut slot.extras,
                shared: &self.shared,
                tag,
                queue: self.settings.queue,
            };
            new_handler(&mut open)
        }));
        let Ok(handler) = made else {
            // The application's factory panicked: this connection only.
            let rejection = Rejection::new(500, "internal error");
            return Self::refuse(slot, index, &rejection);
        };
        let accepted = match request.accept(accept, &self.settings.config) {
            Ok(accepted) => accepted,
            Err(rejection) => return Self::refuse(slot, index, &rejection),
        };
        let mut conn = adapter::server_connection(self.settings.config.clone(), &accepted);
        // Connections share this thread: their buffers circulate through
        // its pool.
        conn.use_buffer_pool();
        slot.phase = Phase::Open(OpenConn {
            conn,
            handler,
            opened: false,
            ended: false,
        });
        // The handshake's deadline no longer applies.
        slot.deadline = None;
        self.open += 1;
        Follow::Send(index, accepted.response(), 0)
    }

    /// Sends the HTTP refusal, then the socket closes.
    fn refuse(slot: &mut Slot<H>, index: u32, rejection: &Rejection) -> Follow {
        slot.phase = Phase::Refusing;
        slot.deadline = None;
        Follow::Send(index, rejection.to_response(), 0)
    }

    /// An I/O error on the slot's socket.
    pub(super) fn fail(slot: &mut Slot<H>, error: io::Error) {
        match &mut slot.phase {
            Phase::Open(open) => {
                if !open.ended {
                    open.ended = true;
                    let handler = &mut open.handler;
                    let _ = catch_unwind(AssertUnwindSafe(|| {
                        end_with_error(handler, &Error::Io(error));
                    }));
                }
                open.conn.abort();
            }
            _ => slot.closing = true,
        }
    }

    fn sent(&mut self, mut completion: Completion<'_>) -> Follow {
        let buffer = completion.sent.take();
        let Some((index, slot)) = self.slab.get_mut(completion.tag) else {
            if let Some(buffer) = buffer {
                self.send_buffers.recycle(buffer);
            }
            return Follow::Nothing;
        };
        slot.ops -= 1;
        slot.sending = false;
        slot.send_len = 0;
        Self::mark_ready(&mut self.ready, index, slot);
        let Some(buffer) = buffer else {
            return Follow::Nothing;
        };
        let result = completion.result;
        if result <= 0 {
            if !completion.cancelled() {
                let error = completion
                    .error()
                    .unwrap_or_else(|| io::ErrorKind::WriteZero.into());
                Self::fail(slot, error);
            }
            self.send_buffers.recycle(buffer);
            // What waited behind this send cannot go either.
            self.send_buffers.forget(index);
            return Follow::Nothing;
        }
        let done = slot.send_from + result as usize;
        if done < buffer.len() {
            // A short send (a signal, or more than one send takes): the
            // rest from the same buffer.
            return Follow::Send(index, buffer, done);
        }
        self.send_buffers.recycle(buffer);
        Follow::Nothing
    }
}
