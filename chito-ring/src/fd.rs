//! Descriptors the loop needs beside the ring: the [`EventFd`] other
//! threads wake it with, and [`reuse_port_listener`].

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// An `eventfd(2)`: other threads [`EventFd::notify`], the ring's loop
/// waits for it with [`Ring::poll_readable`](crate::Ring::poll_readable) and [`EventFd::drain`]s it.
#[derive(Debug)]
pub struct EventFd {
    file: File,
}

impl EventFd {
    /// A non-blocking, close-on-exec eventfd at 0.
    ///
    /// # Errors
    /// `eventfd(2)`'s (`EMFILE`, `ENOMEM`).
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: a plain system call with no pointer arguments.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(EventFd {
            file: File::from(owned),
        })
    }

    /// Adds 1: the fd becomes readable. From any thread.
    pub fn notify(&self) {
        // eventfd(2): a write fails only with EAGAIN when the counter
        // would overflow, and then the fd is readable already.
        let _ = (&self.file).write(&1u64.to_ne_bytes());
    }

    /// Resets the counter to 0 (`read(2)` of 8 bytes); a no-op at 0.
    pub fn drain(&self) {
        let mut count = [0u8; 8];
        let _ = (&self.file).read(&mut count);
    }

    /// The descriptor, for [`Ring::poll_readable`](crate::Ring::poll_readable).
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.file)
    }
}

/// A listening TCP socket with `SO_REUSEADDR` and `SO_REUSEPORT` set
/// before `bind(2)`, so that several loops can each bind `addr` and the
/// kernel spreads connections among them (`socket(7)`, `SO_REUSEPORT`).
///
/// # Errors
/// `socket(2)`, `setsockopt(2)`, `bind(2)` or `listen(2)`'s.
pub fn reuse_port_listener(addr: std::net::SocketAddr) -> io::Result<std::net::TcpListener> {
    let family = match addr {
        std::net::SocketAddr::V4(_) => libc::AF_INET,
        std::net::SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: a plain system call with no pointer arguments.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    for option in [libc::SO_REUSEADDR, libc::SO_REUSEPORT] {
        // SAFETY: `one` is a live c_int and its size is passed with it.
        let set = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                std::ptr::addr_of!(one).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if set < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let bound = match addr {
        std::net::SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: `sin` is a live sockaddr_in and its size is passed.
            unsafe {
                libc::bind(
                    socket.as_raw_fd(),
                    std::ptr::addr_of!(sin).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            }
        }
        std::net::SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: `sin6` is a live sockaddr_in6 and its size is passed.
            unsafe {
                libc::bind(
                    socket.as_raw_fd(),
                    std::ptr::addr_of!(sin6).cast(),
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            }
        }
    };
    if bound < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a plain system call with no pointer arguments.
    if unsafe { libc::listen(socket.as_raw_fd(), 1024) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(std::net::TcpListener::from(socket))
}
