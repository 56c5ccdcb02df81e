//! The ring's safe API over real sockets: echo, buffer starvation, drop
//! with operations in flight, many connections with reused tags, sends
//! resumed from an offset.
#![cfg(target_os = "linux")]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use chito_ring::{EventFd, Op, Ring, RingConfig, Stage, Unavailable};

fn small(buffers: u16, size: u32) -> RingConfig {
    RingConfig {
        submission_entries: 64,
        completion_entries: 256,
        buffers,
        buffer_size: size,
    }
}

/// Echoes everything received on `socket` (tag 1) back on it until `want`
/// bytes went round; counts the `ENOBUFS` completions.
fn echo_loop(ring: &mut Ring, socket: &OwnedFd, want: usize) -> (usize, usize) {
    ring.recv_multi(socket.as_fd(), 1).unwrap();
    let (mut echoed, mut starved) = (0, 0);
    let mut pending: Vec<u8> = Vec::new();
    let mut sending = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    while echoed < want {
        assert!(Instant::now() < deadline, "echo stalled at {echoed}");
        ring.submit_and_wait(Some(Duration::from_millis(100)))
            .unwrap();
        let mut rearm = false;
        while let Some(c) = ring.next_completion() {
            match c.op {
                Op::Recv => {
                    if let Some(bytes) = &c.received {
                        pending.extend_from_slice(bytes);
                    } else if c.no_buffers() {
                        starved += 1;
                    } else {
                        assert!(c.result >= 0, "recv failed: {:?}", c.error());
                    }
                    if !c.more {
                        rearm = true;
                    }
                }
                Op::Send => {
                    assert!(c.result > 0, "send failed: {:?}", c.error());
                    assert!(c.sent.is_some(), "the send buffer comes back");
                    echoed += c.result as usize;
                    sending = false;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        if rearm {
            ring.recv_multi(socket.as_fd(), 1).unwrap();
        }
        if !sending && !pending.is_empty() {
            ring.send(socket.as_fd(), std::mem::take(&mut pending), 0, 1)
                .unwrap();
            sending = true;
        }
    }
    (echoed, starved)
}

#[test]
fn echoes_over_a_socketpair() {
    let mut ring = Ring::new(&RingConfig::default()).unwrap();
    let (server, mut client) = UnixStream::pair().unwrap();
    let server = OwnedFd::from(server);
    let message: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let sent = message.clone();
    let peer = std::thread::spawn(move || {
        client.write_all(&sent).unwrap();
        let mut back = vec![0; sent.len()];
        client.read_exact(&mut back).unwrap();
        back
    });
    let (echoed, _) = echo_loop(&mut ring, &server, message.len());
    assert_eq!(echoed, message.len());
    assert_eq!(peer.join().unwrap(), message);
}

#[test]
fn recovers_from_enobufs_with_a_tiny_buffer_ring() {
    // 2 buffers of 64 B for 64 KiB: the ring runs dry again and again.
    let mut ring = Ring::new(&small(2, 64)).unwrap();
    let (server, mut client) = UnixStream::pair().unwrap();
    let server = OwnedFd::from(server);
    let message: Vec<u8> = (0..65_536u32).map(|i| (i * 7 % 256) as u8).collect();
    let sent = message.clone();
    let peer = std::thread::spawn(move || {
        client.write_all(&sent).unwrap();
        let mut back = vec![0; sent.len()];
        client.read_exact(&mut back).unwrap();
        back
    });
    let (echoed, starved) = echo_loop(&mut ring, &server, message.len());
    assert_eq!(echoed, message.len());
    assert_eq!(peer.join().unwrap(), message, "every byte, in order");
    assert!(starved > 0, "the tiny ring never ran out of buffers");
    assert_eq!(ring.free_buffers(), 2, "every buffer came back");
}

#[test]
fn drop_waits_for_operations_in_flight() {
    let mut ring = Ring::new(&RingConfig::default()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut peers = Vec::new();
    let mut sockets = Vec::new();
    for i in 0..8 {
        let (a, b) = UnixStream::pair().unwrap();
        ring.recv_multi(b.as_fd(), i).unwrap();
        peers.push(a);
        sockets.push(b);
    }
    // A send to a peer that never reads: 8 MiB cannot all fit the socket
    // buffers, so it is still in flight at the drop.
    let (stuck, _never_read) = UnixStream::pair().unwrap();
    ring.send(stuck.as_fd(), vec![7; 8 << 20], 0, 100).unwrap();
    ring.accept_multi(listener.as_fd(), 200).unwrap();
    ring.submit_and_wait(Some(Duration::from_millis(10)))
        .unwrap();
    assert!(ring.in_flight() >= 10, "{} in flight", ring.in_flight());
    let started = Instant::now();
    drop(ring);
    assert!(started.elapsed() < Duration::from_secs(5));
    // The sockets are still usable: nothing was closed behind our back.
    peers[0].write_all(b"x").unwrap();
}

#[test]
fn many_connections_opened_and_closed_with_generation_tags() {
    let mut ring = Ring::new(&RingConfig::default()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    ring.accept_multi(listener.as_fd(), 0).unwrap();
    // Slots reused with a generation in the tag's high bits: a completion
    // for an earlier generation must never be taken for the current one.
    let mut slots: Vec<(u32, Option<OwnedFd>)> = (0..4).map(|_| (0, None)).collect();
    let tag = |index: usize, generation: u32| (u64::from(generation) << 32) | (index as u64 + 1);
    let (mut opened, mut closed, mut stale) = (0, 0, 0);
    let rounds = 500;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut client: Option<TcpStream> = None;
    while closed < rounds {
        assert!(Instant::now() < deadline, "stalled at {closed}");
        if client.is_none() && opened < rounds {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(b"hello").unwrap();
            c.shutdown(Shutdown::Write).unwrap();
            client = Some(c);
        }
        ring.submit_and_wait(Some(Duration::from_millis(100)))
            .unwrap();
        let mut to_arm = Vec::new();
        while let Some(c) = ring.next_completion() {
            match c.op {
                Op::Accept => {
                    let fd = c.accepted.unwrap();
                    let index = opened % slots.len();
                    let slot = &mut slots[index];
                    assert!(slot.1.is_none());
                    slot.0 += 1;
                    to_arm.push(tag(index, slot.0));
                    slot.1 = Some(fd);
                    opened += 1;
                }
                Op::Recv => {
                    let index = ((c.tag & 0xffff_ffff) - 1) as usize;
                    let generation = (c.tag >> 32) as u32;
                    if slots[index].0 != generation || slots[index].1.is_none() {
                        stale += 1;
                        continue;
                    }
                    if c.result == 0 {
                        // End of stream: close, the slot's next user gets
                        // a new generation.
                        slots[index].1 = None;
                        closed += 1;
                        client = None;
                    } else if let Some(bytes) = &c.received {
                        assert_eq!(&bytes[..], b"hello");
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        for t in to_arm {
            let index = ((t & 0xffff_ffff) - 1) as usize;
            let fd = slots[index].1.as_ref().unwrap();
            ring.recv_multi(fd.as_fd(), t).unwrap();
        }
    }
    assert_eq!((opened, closed), (rounds, rounds));
    assert_eq!(stale, 0, "no completion outlived its connection here");
    assert!(ring.in_flight() >= 1, "the multishot accept stays armed");
}

#[test]
fn a_send_resumed_from_an_offset_sends_the_rest() {
    let mut ring = Ring::new(&RingConfig::default()).unwrap();
    let (server, mut client) = UnixStream::pair().unwrap();
    // 4 MiB, more than a socket buffer holds: the peer reads meanwhile.
    let data: Vec<u8> = (0..(4u32 << 20)).map(|i| (i % 253) as u8).collect();
    let expected = data.clone();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        got
    });
    // Sent in two parts: the first send's buffer comes back and is sent
    // again from where it stopped, as a driver does after a short count.
    let half = data.len() / 2;
    let mut first = data;
    let second_part = first.split_off(half);
    let mut offset = 0;
    let mut buffer = Some(first);
    let mut round = 0;
    let server = OwnedFd::from(server);
    loop {
        if let Some(b) = buffer.take() {
            ring.send(server.as_fd(), b, offset, 9).unwrap();
        }
        ring.submit_and_wait(None).unwrap();
        let mut done = false;
        while let Some(c) = ring.next_completion() {
            assert_eq!(c.op, Op::Send);
            assert!(c.result > 0);
            let b = c.sent.unwrap();
            offset += c.result as usize;
            if offset < b.len() {
                buffer = Some(b);
            } else if round == 0 {
                round = 1;
                offset = 0;
                buffer = Some(second_part.clone());
            } else {
                done = true;
            }
        }
        if done {
            break;
        }
    }
    drop(server);
    assert_eq!(reader.join().unwrap(), expected);
}

#[test]
fn a_second_send_with_the_same_tag_is_refused() {
    let mut ring = Ring::new(&RingConfig::default()).unwrap();
    let (a, _b) = UnixStream::pair().unwrap();
    ring.send(a.as_fd(), vec![1; 8 << 20], 0, 5).unwrap();
    let err = ring.send(a.as_fd(), vec![2; 10], 0, 5).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(
        ring.send(a.as_fd(), vec![3; 1], 2, 6).is_err(),
        "offset past the end"
    );
}

#[test]
fn eventfd_wakes_a_waiting_ring() {
    let mut ring = Ring::new(&RingConfig::default()).unwrap();
    let event = std::sync::Arc::new(EventFd::new().unwrap());
    ring.poll_readable(event.as_fd(), 42).unwrap();
    let notifier = event.clone();
    let started = Instant::now();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        notifier.notify();
    });
    let mut woke = false;
    while !woke {
        ring.submit_and_wait(Some(Duration::from_secs(5))).unwrap();
        while let Some(c) = ring.next_completion() {
            assert_eq!((c.op, c.tag), (Op::Poll, 42));
            assert!(c.more, "the multishot poll stays armed");
            woke = true;
        }
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    event.drain();
    assert!(started.elapsed() >= Duration::from_millis(40));
}

#[test]
fn unavailable_says_why() {
    let e = Unavailable::new(
        Stage::Setup,
        std::io::Error::from_raw_os_error(libc_eperm()),
    );
    let text = e.to_string();
    assert!(text.contains("io_uring_disabled"), "{text}");
    assert!(text.contains("seccomp"), "{text}");
    let e = Unavailable::new(Stage::Setup, std::io::Error::from_raw_os_error(38));
    assert!(e.to_string().contains("no io_uring"), "{e}");
}

fn libc_eperm() -> i32 {
    1
}

#[test]
fn reuse_port_listeners_share_a_port() {
    let first = chito_ring::reuse_port_listener("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = first.local_addr().unwrap();
    let second = chito_ring::reuse_port_listener(addr).unwrap();
    assert_eq!(second.local_addr().unwrap(), addr);
    // A plain listener (without SO_REUSEPORT) cannot join them.
    assert!(TcpListener::bind(addr).is_err());
    let v6 = chito_ring::reuse_port_listener("[::1]:0".parse().unwrap());
    if let Ok(v6) = v6 {
        assert!(v6.local_addr().unwrap().is_ipv6());
    }
}
