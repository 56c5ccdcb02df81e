//! A large message sent straight back from a received one is written from
//! the input buffer (a server connection does it by itself): the bytes on
//! the wire must be exactly what a copying connection would write, in the
//! same order, however the output is consumed and whatever arrives before
//! it is written.

use chito::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use chito::mask::apply_mask;
use chito::{Config, Connection, Event, Message, Role};
use std::io::IoSlice;

const KEY: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

/// A masked client frame (the header encoder is tested in `frame`).
fn client_frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut header = FrameHeader::new(opcode, payload.len() as u64);
    header.mask = Some(KEY);
    let mut head = [0u8; MAX_HEADER_LEN];
    let n = header.encode(&mut head);
    let mut out = head[..n].to_vec();
    out.extend_from_slice(payload);
    apply_mask(&mut out[n..], KEY, 0);
    out
}

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Echoes every data message and answers nothing else (pongs are queued by
/// the connection itself): the received message itself, or a copy of it.
fn echo_all(conn: &mut Connection, copy: bool) -> usize {
    let mut echoed = 0;
    while let Some((event, mut sender)) = conn.poll_event().unwrap() {
        // A copy lives at another address: it is not the lent payload.
        let copied: Vec<u8>;
        let message = match event {
            Event::Binary(data) if copy => {
                copied = data.to_vec();
                Message::Binary(&copied)
            }
            Event::Binary(data) => Message::Binary(data),
            Event::Text(text) if copy => {
                copied = text.as_bytes().to_vec();
                Message::Text(std::str::from_utf8(&copied).unwrap())
            }
            Event::Text(text) => Message::Text(text),
            _ => continue,
        };
        sender.send(message).unwrap();
        echoed += 1;
    }
    echoed
}

/// Whether pending output points into the input buffer: the output is
/// then in more than one piece.
fn borrows_input(conn: &Connection) -> bool {
    conn.pending_output().len() < conn.buffered_amount()
}

/// Takes all pending output, `step` bytes at a time, through the vectored
/// view (which must agree with `pending_output` on the first piece).
fn drain(conn: &mut Connection, step: usize) -> Vec<u8> {
    let mut wire = Vec::new();
    loop {
        let mut slices = [IoSlice::new(&[]); 3];
        let n = conn.pending_output_vectored(&mut slices);
        if n == 0 {
            assert!(conn.pending_output().is_empty());
            assert_eq!(conn.buffered_amount(), 0);
            return wire;
        }
        assert_eq!(&slices[0][..], conn.pending_output());
        let total: usize = slices[..n].iter().map(|s| s.len()).sum();
        assert_eq!(total, conn.buffered_amount());
        let mut take = step.min(total);
        let mut taken = 0;
        for slice in &slices[..n] {
            let k = take.min(slice.len());
            wire.extend_from_slice(&slice[..k]);
            take -= k;
            taken += k;
        }
        conn.consume_output(taken);
    }
}

/// Splits server output into (opcode, payload) frames.
fn frames(mut wire: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !wire.is_empty() {
        let (header, n) = FrameHeader::parse(wire).unwrap().unwrap();
        assert!(header.mask.is_none(), "a server never masks");
        let len = header.payload_len as usize;
        out.push((header.opcode.bits(), wire[n..n + len].to_vec()));
        wire = &wire[n + len..];
    }
    out
}

fn server() -> Connection {
    Connection::new(Role::Server, Config::default())
}

#[test]
fn large_echo_points_into_input_and_matches_a_copying_connection() {
    let big = payload(300_000, 7);
    let mut input = client_frame(OpCode::Binary, &big);
    input.extend(client_frame(OpCode::Ping, b"are you there"));
    input.extend(client_frame(OpCode::Text, b"small text"));

    for step in [1 << 20, 65_536, 4_093, 1] {
        let mut wires = Vec::new();
        for copy in [true, false] {
            let mut conn = server();
            conn.feed(&input);
            assert_eq!(echo_all(&mut conn, copy), 2);
            // Only the large echo is written from the input buffer.
            assert_eq!(borrows_input(&conn), !copy);
            wires.push(drain(&mut conn, step));
            assert!(!borrows_input(&conn));
        }
        assert_eq!(wires[0], wires[1], "step {step}");
        let got = frames(&wires[1]);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], (0x2, big.clone()));
        assert_eq!(got[1], (0x1, b"small text".to_vec()));
        // The pong waited for the large output to drain (RFC 6455 §5.5.3).
        assert_eq!(got[2], (0xA, b"are you there".to_vec()));
    }
}

#[test]
fn input_arriving_before_the_write_is_copied_out_first() {
    let first = payload(200_000, 1);
    let second = payload(150_000, 2);
    let mut conn = server();
    conn.feed(&client_frame(OpCode::Binary, &first));
    assert_eq!(echo_all(&mut conn, false), 1);
    assert!(borrows_input(&conn));
    // Part of the output goes, then more input arrives: the rest of the
    // loaned bytes must be moved out before the buffer is reused.
    let mut wire = Vec::new();
    let mut slices = [IoSlice::new(&[]); 3];
    let n = conn.pending_output_vectored(&mut slices);
    let head: Vec<u8> = slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
    wire.extend_from_slice(&head[..1000]);
    conn.consume_output(1000);
    conn.feed(&client_frame(OpCode::Binary, &second));
    assert!(!borrows_input(&conn));
    assert_eq!(echo_all(&mut conn, false), 1);
    wire.extend(drain(&mut conn, 10_000));
    let got = frames(&wire);
    assert_eq!(got, vec![(0x2, first), (0x2, second)]);
}

#[test]
fn small_or_copied_sends_do_not_borrow_input() {
    let data = payload(100_000, 3);
    let mut conn = server();
    conn.feed(&client_frame(OpCode::Binary, &data));
    let (event, mut sender) = conn.poll_event().unwrap().unwrap();
    let Event::Binary(bytes) = event else {
        panic!("expected binary")
    };
    // A sub-slice, or a copy, of the received payload is not the message
    // itself: it is copied as usual.
    sender.send(Message::Binary(&bytes[1..])).unwrap();
    let copy = bytes.to_vec();
    sender.send(Message::Binary(&copy)).unwrap();
    assert!(!borrows_input(&conn));
    let got = frames(&drain(&mut conn, 1 << 20));
    assert_eq!(got, vec![(0x2, data[1..].to_vec()), (0x2, data.clone())]);

    // Below 64 KiB the copy is cheaper than a second write piece.
    let small = payload(60_000, 4);
    conn.feed(&client_frame(OpCode::Binary, &small));
    assert_eq!(echo_all(&mut conn, false), 1);
    assert!(!borrows_input(&conn));
    assert_eq!(frames(&drain(&mut conn, 1 << 20)), vec![(0x2, small)]);
}

#[test]
fn idle_buffer_release_keeps_loaned_output() {
    let data = payload(120_000, 9);
    let mut conn = server();
    conn.feed(&client_frame(OpCode::Binary, &data));
    assert_eq!(echo_all(&mut conn, false), 1);
    conn.release_idle_buffers();
    // The input buffer could only be freed after its bytes were copied
    // into the output.
    assert!(!borrows_input(&conn));
    let got = frames(&drain(&mut conn, 7_777));
    assert_eq!(got, vec![(0x2, data)]);
}

#[test]
fn client_echo_is_masked_and_copied() {
    // A client masks each frame with a fresh key: it never points into its
    // input.
    let data = payload(100_000, 5);
    let mut conn = Connection::new(Role::Client, Config::default());
    let mut input = vec![0x82, 127];
    input.extend_from_slice(&(data.len() as u64).to_be_bytes());
    input.extend_from_slice(&data);
    conn.feed(&input);
    assert_eq!(echo_all(&mut conn, false), 1);
    assert!(!borrows_input(&conn));
    let wire = conn.pending_output().to_vec();
    let (header, n) = FrameHeader::parse(&wire).unwrap().unwrap();
    let key = header.mask.expect("client frames are masked");
    let mut body = wire[n..].to_vec();
    apply_mask(&mut body, key, 0);
    assert_eq!(body, data);
}
