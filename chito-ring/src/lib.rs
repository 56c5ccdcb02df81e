//! # chito-ring — the `unsafe` boundary of chito's io_uring driver
//!
//! A small, safe API over one io_uring instance (Linux ≥ 6.0), made for a
//! single-threaded event loop that drives many sockets:
//!
//! - [`Ring::new`] sets the ring up and runs a start-up self-test (a
//!   multishot receive from a provided buffer over a `socketpair`), so a
//!   kernel or a sandbox that refuses io_uring is reported at once, with
//!   why ([`Unavailable`]).
//! - Received bytes come from a *provided-buffer ring* owned by the
//!   [`Ring`]: a buffer is taken only when bytes arrive, lent out as a
//!   [`Received`] borrow, and given back to the kernel when that borrow is
//!   dropped (the ring's tail is published once per
//!   [`Ring::submit_and_wait`]). An idle socket holds no buffer.
//! - Sends take an *owned* `Vec<u8>`; the ring keeps it until the
//!   operation's completion and hands it back in the [`Completion`].
//! - Dropping the ring cancels every operation in flight and waits for
//!   their completions before any memory the kernel may write is freed.
//!
//! Operations carry a caller-chosen 56-bit tag; the [`Completion`] says
//! which operation ([`Op`]) and tag it belongs to. Tags are plain integers:
//! a stale tag can confuse the caller's bookkeeping, never memory.
//!
//! Nothing here knows about WebSockets; chito's `uring` feature builds its
//! server loop on this crate, and chito itself stays
//! `#![forbid(unsafe_code)]`.
#![cfg(target_os = "linux")]
#![deny(unsafe_op_in_unsafe_fn, missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

mod buf_ring;
mod fd;

use buf_ring::BufRing;
pub use buf_ring::Received;
pub use fd::{reuse_port_listener, EventFd};

/// Bits of `user_data` that hold the caller's tag; the top 8 hold the [`Op`].
const TAG_BITS: u32 = 56;
/// The largest tag an operation may carry.
pub const MAX_TAG: u64 = (1 << TAG_BITS) - 2;
/// The tag of the ring's own operations (self-test, cancel on drop); their
/// completions are never handed out.
const INTERNAL: u64 = MAX_TAG + 1;
/// The one buffer group this ring registers.
const BUFFER_GROUP: u16 = 0;
/// Buffers start this far into a page: a copy whose source and
/// destination share their page offset runs at half speed on x86 (4K
/// aliasing; chito's tokio adapter measured it, `src/tokio/read.rs`).
const BUFFER_OFFSET: usize = 2048;

/// Which operation a [`Completion`] belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// [`Ring::accept_multi`]: `result` is the new socket's fd (see
    /// [`Completion::accepted`]) or `-errno`.
    Accept,
    /// [`Ring::recv_multi`]: `result` is the byte count (0: end of
    /// stream) or `-errno` (`-ENOBUFS`: no buffer was free).
    Recv,
    /// [`Ring::send`]: `result` is the byte count sent or `-errno`.
    Send,
    /// [`Ring::shutdown`].
    Shutdown,
    /// [`Ring::cancel`] / [`Ring::cancel_fd`]: how many were cancelled, or
    /// `-ENOENT`.
    Cancel,
    /// [`Ring::close`].
    Close,
    /// [`Ring::poll_readable`]: the ready mask.
    Poll,
}

impl Op {
    fn code(self) -> u64 {
        match self {
            Op::Accept => 1,
            Op::Recv => 2,
            Op::Send => 3,
            Op::Shutdown => 4,
            Op::Cancel => 5,
            Op::Close => 6,
            Op::Poll => 7,
        }
    }

    fn from_code(code: u64) -> Option<Op> {
        Some(match code {
            1 => Op::Accept,
            2 => Op::Recv,
            3 => Op::Send,
            4 => Op::Shutdown,
            5 => Op::Cancel,
            6 => Op::Close,
            7 => Op::Poll,
            _ => return None,
        })
    }

    fn user_data(self, tag: u64) -> u64 {
        (self.code() << TAG_BITS) | (tag & ((1 << TAG_BITS) - 1))
    }
}

/// Sizes of a [`Ring`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingConfig {
    /// Submission queue entries (a full queue is submitted early).
    pub submission_entries: u32,
    /// Completion queue entries; more completions than this are kept by
    /// the kernel (`IORING_FEAT_NODROP`) until reaped.
    pub completion_entries: u32,
    /// Provided buffers: a power of two, at most 32 768
    /// (`io_uring_register_buf_ring(3)`).
    pub buffers: u16,
    /// Bytes per provided buffer.
    pub buffer_size: u32,
}

impl Default for RingConfig {
    /// 1 024 submissions, 8 192 completions, 64 buffers of 64 KiB (4 MiB,
    /// docs/uring.md §6.2). Large buffers let one receive take what a big
    /// message has in the socket (a 1 MiB echo cost 1.6× the CPU with
    /// 4 KiB buffers: sixteen times the receives, copies and window
    /// updates); buffers go back as soon as their bytes are fed, so 64
    /// cover the completions of one turn.
    fn default() -> Self {
        RingConfig {
            submission_entries: 1024,
            completion_entries: 8192,
            buffers: 64,
            buffer_size: 64 * 1024,
        }
    }
}

/// Which step of [`Ring::new`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `io_uring_setup(2)`.
    Setup,
    /// Registering the provided-buffer ring (kernel ≥ 5.19).
    BufferRing,
    /// The self-test: a multishot receive with a provided buffer over a
    /// `socketpair` (kernel ≥ 6.0), and waiting with a timeout
    /// (`IORING_FEAT_EXT_ARG`, 5.11).
    SelfTest,
}

/// io_uring cannot be used here, and why.
#[derive(Debug)]
pub struct Unavailable {
    stage: Stage,
    error: io::Error,
}

impl Unavailable {
    /// The failure of `stage` with `error` (also what tests inject).
    pub fn new(stage: Stage, error: io::Error) -> Unavailable {
        Unavailable { stage, error }
    }

    /// The step that failed.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// The system's error.
    pub fn error(&self) -> &io::Error {
        &self.error
    }

    /// Why, in words, from the step and the errno.
    fn cause(&self) -> &'static str {
        match (self.stage, self.error.raw_os_error()) {
            // io_uring_setup(2): ENOSYS — the kernel was built without it.
            (Stage::Setup, Some(libc::ENOSYS)) => "the kernel has no io_uring",
            // kernel.io_uring_disabled (6.6+) = 2, or = 1 without
            // io_uring_group; seccomp profiles (Docker's default since
            // moby#46762) deny io_uring_setup with EPERM.
            (Stage::Setup, Some(libc::EPERM | libc::EACCES)) => {
                "io_uring is refused: kernel.io_uring_disabled is set, or a seccomp policy \
                 (such as Docker's default profile) denies it"
            }
            (Stage::Setup, Some(libc::ENOMEM)) => {
                "io_uring could not get locked memory (RLIMIT_MEMLOCK)"
            }
            (Stage::Setup, _) => "io_uring_setup failed",
            (Stage::BufferRing, _) => {
                "provided-buffer rings are not supported (kernel older than 5.19)"
            }
            (Stage::SelfTest, _) => {
                "multishot receive with provided buffers does not work (kernel older than 6.0)"
            }
        }
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "io_uring unavailable: {} ({})", self.cause(), self.error)
    }
}

impl std::error::Error for Unavailable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// One completion: which operation and tag, its result, and what it hands
/// back.
#[derive(Debug)]
pub struct Completion<'r> {
    /// The operation.
    pub op: Op,
    /// The tag it was submitted with.
    pub tag: u64,
    /// The kernel's result: a count or fd (≥ 0) or `-errno`.
    pub result: i32,
    /// A multishot operation stays armed (`IORING_CQE_F_MORE`); false: it
    /// has ended and must be submitted again if still wanted.
    pub more: bool,
    /// [`Op::Recv`]: the bytes, lent until dropped.
    pub received: Option<Received<'r>>,
    /// [`Op::Accept`]: the accepted socket.
    pub accepted: Option<OwnedFd>,
    /// [`Op::Send`]: the buffer given to [`Ring::send`], back.
    pub sent: Option<Vec<u8>>,
}

impl Completion<'_> {
    /// The error, if `result` is one.
    pub fn error(&self) -> Option<io::Error> {
        (self.result < 0).then(|| io::Error::from_raw_os_error(-self.result))
    }

    /// A receive found no provided buffer free (`-ENOBUFS`) and ended.
    pub fn no_buffers(&self) -> bool {
        self.result == -libc::ENOBUFS
    }

    /// The operation was cancelled (`-ECANCELED`).
    pub fn cancelled(&self) -> bool {
        self.result == -libc::ECANCELED
    }
}

/// An io_uring instance with its provided-buffer ring and the send buffers
/// in flight. Not `Send`: with `IORING_SETUP_SINGLE_ISSUER` only the thread
/// that made it may submit.
pub struct Ring {
    ring: IoUring,
    bufs: BufRing,
    /// Send buffers the kernel may be reading, by tag.
    sends: HashMap<u64, Vec<u8>>,
    /// Operations submitted whose final completion has not been reaped.
    in_flight: usize,
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("in_flight", &self.in_flight)
            .field("sends", &self.sends.len())
            .finish()
    }
}

/// Builds the ring with the cheapest flags the kernel takes.
fn setup(config: &RingConfig) -> io::Result<IoUring> {
    // SINGLE_ISSUER (6.0): one thread submits, cheaper locking;
    // DEFER_TASKRUN (6.1): completion work runs only when we wait, so a
    // turn sees a batch. COOP_TASKRUN (5.19) is the fallback, then none.
    let attempts: [fn(&mut io_uring::Builder); 3] = [
        |b| {
            b.setup_single_issuer().setup_defer_taskrun();
        },
        |b| {
            b.setup_coop_taskrun();
        },
        |_| {},
    ];
    let mut last = io::Error::from_raw_os_error(libc::EINVAL);
    for flags in attempts {
        let mut builder = IoUring::builder();
        builder.setup_cqsize(config.completion_entries);
        flags(&mut builder);
        match builder.build(config.submission_entries) {
            Ok(ring) => return Ok(ring),
            // io_uring_setup(2): EINVAL for flags this kernel does not know.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

impl Ring {
    /// Sets up a ring and its provided buffers, then checks that a
    /// multishot receive with a provided buffer works.
    ///
    /// # Errors
    /// [`Unavailable`], saying which step failed and why.
    pub fn new(config: &RingConfig) -> Result<Ring, Unavailable> {
        let ring = setup(config).map_err(|e| Unavailable::new(Stage::Setup, e))?;
        if !ring.params().is_feature_ext_arg() {
            return Err(Unavailable::new(
                Stage::SelfTest,
                io::Error::new(io::ErrorKind::Unsupported, "no IORING_FEAT_EXT_ARG"),
            ));
        }
        let bufs = BufRing::new(config.buffers, config.buffer_size)
            .map_err(|e| Unavailable::new(Stage::BufferRing, e))?;
        // SAFETY: the ring memory is a page-aligned allocation of
        // `entries` entries owned by `bufs`, which the returned `Ring` owns
        // and frees only after unregistering it (or leaks), so it stays
        // valid while registered.
        let registered = unsafe {
            ring.submitter().register_buf_ring_with_flags(
                bufs.ring_addr(),
                bufs.entries,
                BUFFER_GROUP,
                0,
            )
        };
        registered.map_err(|e| Unavailable::new(Stage::BufferRing, e))?;
        let mut ring = Ring {
            ring,
            bufs,
            sends: HashMap::new(),
            in_flight: 0,
        };
        ring.bufs.publish();
        ring.self_test()
            .map_err(|e| Unavailable::new(Stage::SelfTest, e))?;
        Ok(ring)
    }

    /// A multishot receive with a provided buffer over a `socketpair`: one
    /// byte must come back with `F_MORE` and a buffer id.
    fn self_test(&mut self) -> io::Result<()> {
        let (mut a, b) = UnixStream::pair()?;
        let recv = opcode::RecvMulti::new(types::Fd(b.as_raw_fd()), BUFFER_GROUP)
            .build()
            .user_data(Op::Recv.user_data(INTERNAL));
        self.push(recv)?;
        a.write_all(b"?")?;
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut seen = None;
        while seen.is_none() && Instant::now() < deadline {
            self.submit_and_wait(Some(Duration::from_millis(100)))?;
            while let Some(cqe) = self.ring.completion().next() {
                let (result, flags) = (cqe.result(), cqe.flags());
                if let Some(bid) = cqueue::buffer_select(flags) {
                    self.bufs.give(bid);
                }
                if !cqueue::more(flags) {
                    self.in_flight -= 1;
                }
                seen = Some((result, cqueue::more(flags), cqueue::buffer_select(flags)));
            }
        }
        let outcome = match seen {
            Some((1, true, Some(_))) => Ok(()),
            Some((result, _, _)) if result < 0 => Err(io::Error::from_raw_os_error(-result)),
            Some(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the receive completed without a provided buffer or F_MORE",
            )),
            None => Err(io::ErrorKind::TimedOut.into()),
        };
        drop(a);
        // The peer's end closes the receive (EOF ends a multishot one).
        drop(b);
        self.wait_idle();
        outcome
    }

    /// Queues `entry`, submitting early if the submission queue is full.
    fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        // SAFETY: every entry pushed here refers only to memory that
        // outlives the operation: provided buffers and the buffer ring
        // (owned by `self`, freed after every operation completed), send
        // buffers (kept in `self.sends` until their completion), and no
        // other pointer; fds are plain numbers the kernel resolves itself.
        if unsafe { self.ring.submission().push(&entry) }.is_err() {
            self.ring.submit()?;
            // SAFETY: as above, the same entry.
            unsafe { self.ring.submission().push(&entry) }
                .map_err(|_| io::Error::other("submission queue full"))?;
        }
        self.in_flight += 1;
        Ok(())
    }

    /// Accepts connections on `listener` until cancelled or an error ends
    /// it (a completion with `more == false`): kernel ≥ 5.19.
    ///
    /// # Errors
    /// When the submission queue cannot take it.
    pub fn accept_multi(&mut self, listener: BorrowedFd<'_>, tag: u64) -> io::Result<()> {
        let entry = opcode::AcceptMulti::new(types::Fd(listener.as_raw_fd()))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(Op::Accept.user_data(tag));
        self.push(entry)
    }

    /// Receives on `socket` into provided buffers until the stream ends, an
    /// error, no buffer was free (`-ENOBUFS`) or a cancel: each ends it
    /// (`more == false`).
    ///
    /// # Errors
    /// As [`Ring::accept_multi`].
    pub fn recv_multi(&mut self, socket: BorrowedFd<'_>, tag: u64) -> io::Result<()> {
        let entry = opcode::RecvMulti::new(types::Fd(socket.as_raw_fd()), BUFFER_GROUP)
            .build()
            .user_data(Op::Recv.user_data(tag));
        self.push(entry)
    }

    /// Sends `buffer[from..]` on `socket` (`MSG_WAITALL`: the kernel keeps
    /// sending until all is sent or an error; `MSG_NOSIGNAL`). The ring
    /// owns `buffer` until the completion, which hands it back: a short
    /// count means send the rest again. One send per tag at a time.
    ///
    /// # Errors
    /// `InvalidInput` if `from` is past the end or a send with this tag is
    /// in flight (the buffer is dropped); as [`Ring::accept_multi`].
    pub fn send(
        &mut self,
        socket: BorrowedFd<'_>,
        buffer: Vec<u8>,
        from: usize,
        tag: u64,
    ) -> io::Result<()> {
        let Some(rest) = buffer.get(from..) else {
            return Err(io::ErrorKind::InvalidInput.into());
        };
        if self.sends.contains_key(&tag) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a send with this tag is in flight",
            ));
        }
        // A longer buffer is sent in several sends (a short count).
        let len = u32::try_from(rest.len()).unwrap_or(u32::MAX);
        let entry = opcode::Send::new(types::Fd(socket.as_raw_fd()), rest.as_ptr(), len)
            .flags(libc::MSG_WAITALL | libc::MSG_NOSIGNAL)
            .build()
            .user_data(Op::Send.user_data(tag));
        // Moving the `Vec` into the map does not move its heap bytes.
        self.sends.insert(tag, buffer);
        let pushed = self.push(entry);
        if pushed.is_err() {
            self.sends.remove(&tag);
        }
        pushed
    }

    /// Shuts down `how` of `socket` (`shutdown(2)`).
    ///
    /// # Errors
    /// As [`Ring::accept_multi`].
    pub fn shutdown(
        &mut self,
        socket: BorrowedFd<'_>,
        how: std::net::Shutdown,
        tag: u64,
    ) -> io::Result<()> {
        let how = match how {
            std::net::Shutdown::Read => libc::SHUT_RD,
            std::net::Shutdown::Write => libc::SHUT_WR,
            std::net::Shutdown::Both => libc::SHUT_RDWR,
        };
        let entry = opcode::Shutdown::new(types::Fd(socket.as_raw_fd()), how)
            .build()
            .user_data(Op::Shutdown.user_data(tag));
        self.push(entry)
    }

    /// Cancels the operation `op` submitted with `target` (its completion,
    /// usually `-ECANCELED`, still comes).
    ///
    /// # Errors
    /// As [`Ring::accept_multi`].
    pub fn cancel(&mut self, op: Op, target: u64, tag: u64) -> io::Result<()> {
        let entry =
            opcode::AsyncCancel2::new(types::CancelBuilder::user_data(op.user_data(target)))
                .build()
                .user_data(Op::Cancel.user_data(tag));
        self.push(entry)
    }

    /// Cancels every operation on `fd`.
    ///
    /// # Errors
    /// As [`Ring::accept_multi`].
    pub fn cancel_fd(&mut self, fd: BorrowedFd<'_>, tag: u64) -> io::Result<()> {
        let entry =
            opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(fd.as_raw_fd())).all())
                .build()
                .user_data(Op::Cancel.user_data(tag));
        self.push(entry)
    }

    /// Closes `fd` (operations still holding the file keep it open until
    /// they complete).
    ///
    /// # Errors
    /// As [`Ring::accept_multi`]; `fd` is closed by dropping it then.
    pub fn close(&mut self, fd: OwnedFd, tag: u64) -> io::Result<()> {
        let raw: RawFd = fd.as_raw_fd();
        let entry = opcode::Close::new(types::Fd(raw))
            .build()
            .user_data(Op::Close.user_data(tag));
        self.push(entry)?;
        // The kernel closes it now.
        std::mem::forget(fd);
        Ok(())
    }

    /// Reports each time `fd` becomes readable (multishot `POLL_ADD`,
    /// kernel ≥ 5.13), until cancelled.
    ///
    /// # Errors
    /// As [`Ring::accept_multi`].
    pub fn poll_readable(&mut self, fd: BorrowedFd<'_>, tag: u64) -> io::Result<()> {
        let entry = opcode::PollAdd::new(types::Fd(fd.as_raw_fd()), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(Op::Poll.user_data(tag));
        self.push(entry)
    }

    /// Gives back the buffers of the turn, submits everything queued and
    /// waits for at least one completion, or until `timeout` (one
    /// `io_uring_enter`, `IORING_ENTER_EXT_ARG`). A signal or the timeout
    /// just return.
    ///
    /// # Errors
    /// The system call's other errors.
    pub fn submit_and_wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.bufs.publish();
        let waited = match timeout {
            None => self.ring.submit_and_wait(1),
            Some(timeout) => {
                let ts = types::Timespec::new()
                    .sec(timeout.as_secs())
                    .nsec(timeout.subsec_nanos());
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
        };
        match waited {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => Ok(()),
            // A full completion queue (with NODROP): reap, then submit.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The next completion, if one is ready. Its [`Received`] borrows the
    /// ring: drop the completion before submitting more.
    pub fn next_completion(&mut self) -> Option<Completion<'_>> {
        loop {
            let cqe = self.ring.completion().next()?;
            let (user_data, result, flags) = (cqe.user_data(), cqe.result(), cqe.flags());
            let more = cqueue::more(flags);
            if !more {
                self.in_flight -= 1;
            }
            let tag = user_data & ((1 << TAG_BITS) - 1);
            let op = Op::from_code(user_data >> TAG_BITS);
            let bid = cqueue::buffer_select(flags).filter(|&bid| bid < self.bufs.entries);
            let (Some(op), false) = (op, tag == INTERNAL) else {
                // The ring's own operations: nothing to hand out.
                if let Some(bid) = bid {
                    self.bufs.give(bid);
                }
                continue;
            };
            let mut completion = Completion {
                op,
                tag,
                result,
                more,
                received: None,
                accepted: None,
                sent: None,
            };
            match op {
                Op::Accept if result >= 0 => {
                    // SAFETY: a successful accept's result is a new file
                    // descriptor that nothing else owns.
                    completion.accepted = Some(unsafe { OwnedFd::from_raw_fd(result) });
                }
                Op::Send if !more => completion.sent = self.sends.remove(&tag),
                _ => {}
            }
            if let Some(bid) = bid {
                let len = usize::try_from(result).unwrap_or(0);
                if len > self.bufs.size as usize {
                    // Cannot happen (the kernel fills at most the buffer);
                    // refuse to lend more than the buffer.
                    self.bufs.give(bid);
                    completion.result = -libc::EIO;
                } else {
                    completion.received = Some(self.bufs.lend(bid, len));
                }
            }
            return Some(completion);
        }
    }

    /// Operations submitted whose last completion has not been reaped.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Provided buffers the kernel can fill now (after the next publish).
    pub fn free_buffers(&self) -> usize {
        usize::from(self.bufs.entries) - self.bufs.lent
    }

    /// Cancels everything in flight and reaps until nothing is; false if
    /// the kernel did not finish within a bound (the caller must then leak
    /// what the kernel may still use).
    fn wait_idle(&mut self) -> bool {
        let mut attempts = 0;
        while self.in_flight > 0 && attempts < 200 {
            attempts += 1;
            let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
                .build()
                .user_data(Op::Cancel.user_data(INTERNAL));
            if self.push(cancel).is_err() {
                return false;
            }
            if self
                .submit_and_wait(Some(Duration::from_millis(50)))
                .is_err()
            {
                return false;
            }
            while let Some(cqe) = self.ring.completion().next() {
                let (user_data, flags) = (cqe.user_data(), cqe.flags());
                if user_data >> TAG_BITS == Op::Accept.code() && cqe.result() >= 0 {
                    // SAFETY: a successful accept's result is a new file
                    // descriptor that nothing else owns; dropping it
                    // closes the connection nobody will serve.
                    drop(unsafe { OwnedFd::from_raw_fd(cqe.result()) });
                }
                if !cqueue::more(flags) {
                    self.in_flight -= 1;
                    if user_data >> TAG_BITS == Op::Send.code() {
                        self.sends.remove(&(user_data & ((1 << TAG_BITS) - 1)));
                    }
                }
                if let Some(bid) = cqueue::buffer_select(flags) {
                    if bid < self.bufs.entries {
                        self.bufs.give(bid);
                    }
                }
            }
        }
        self.in_flight == 0
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if self.wait_idle()
            && self
                .ring
                .submitter()
                .unregister_buf_ring(BUFFER_GROUP)
                .is_ok()
        {
            return;
        }
        // The kernel may still write into the buffers or read the sends:
        // leak them rather than free memory it uses.
        self.bufs.leak();
        std::mem::forget(std::mem::take(&mut self.sends));
    }
}
