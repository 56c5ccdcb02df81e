//! Client ↔ server over real loopback TCP with the blocking adapter.

use std::net::TcpListener;
use std::thread;

use chito::blocking::{self, Builder};
use chito::handshake::{Accept, ClientRequest, Rejection};
use chito::{
    CloseCode, CloseFrame, Error, Handler, Message, OwnedEvent, Sender, State, UsageError,
};

struct Echo {
    closed_with: Option<u16>,
}

impl Handler for Echo {
    fn on_message(&mut self, sender: &mut Sender<'_>, message: Message<'_>) {
        sender.send(message).unwrap();
    }
    fn on_close(&mut self, frame: &CloseFrame<'_>) {
        self.closed_with = Some(frame.code.as_u16());
    }
}

fn echo_server() -> (String, thread::JoinHandle<Option<u16>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handle = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let ws = Builder::tcp(stream).accept().unwrap();
        let mut echo = Echo { closed_with: None };
        ws.serve(&mut echo);
        echo.closed_with
    });
    (addr, handle)
}

#[test]
fn echo_roundtrip_and_clean_close() {
    let (addr, server) = echo_server();
    let (mut ws, response) = blocking::connect(&format!("ws://{addr}/chat?room=1")).unwrap();
    assert_eq!(response.status(), 101);
    ws.send(Message::Text("hello")).unwrap();
    assert_eq!(ws.recv().unwrap(), OwnedEvent::Text("hello".into()));
    let big = vec![7u8; 3 << 20];
    ws.send(Message::Binary(&big)).unwrap();
    assert_eq!(ws.recv().unwrap(), OwnedEvent::Binary(big));
    ws.send_ping(b"p").unwrap();
    assert_eq!(ws.recv().unwrap(), OwnedEvent::Pong(b"p".to_vec()));
    ws.close(CloseCode::Normal, "done").unwrap();
    match ws.recv().unwrap() {
        OwnedEvent::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("{other:?}"),
    }
    assert!(matches!(ws.recv(), Err(Error::Usage(_))));
    assert_eq!(server.join().unwrap(), Some(1000));
}

#[test]
fn peer_vanishing_mid_frame_is_an_error_not_a_panic() {
    let (addr, server) = echo_server();
    let (ws, _) = blocking::connect(&format!("ws://{addr}/")).unwrap();
    let (mut stream, _) = ws.into_parts();
    // Half a frame header-and-payload, then gone.
    std::io::Write::write_all(&mut stream, &[0x82, 0x85, 1, 2, 3, 4, 9]).unwrap();
    drop(stream);
    assert_eq!(server.join().unwrap(), Some(1006));
}

#[test]
fn inspect_hook_chooses_subprotocol_and_can_refuse() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = thread::spawn(move || {
        let mut results = Vec::new();
        for _ in 0..2 {
            let (stream, _) = listener.accept().unwrap();
            let result = Builder::tcp(stream).accept_with(|request| {
                if request.path() != "/ok" {
                    return Err(Rejection::new(403, "forbidden path"));
                }
                let chosen = request
                    .protocols()
                    .find(|p| *p == "chat.v2")
                    .map(str::to_owned);
                Ok(Accept {
                    protocol: chosen,
                    ..Accept::default()
                })
            });
            results.push(result.map(|ws| ws.connection().negotiated().protocol.clone()));
        }
        results
    });
    let request = ClientRequest::new(addr.clone(), "/ok")
        .with_protocol("chat.v1")
        .with_protocol("chat.v2");
    let stream = std::net::TcpStream::connect(&addr).unwrap();
    let (_ws, response) = Builder::tcp(stream).connect(&request).unwrap();
    assert_eq!(response.protocol(), Some("chat.v2"));

    let stream = std::net::TcpStream::connect(&addr).unwrap();
    let refused = Builder::tcp(stream).connect(&ClientRequest::new(addr.clone(), "/nope"));
    match refused {
        Err(Error::Handshake(chito::handshake::HandshakeError::UnexpectedStatus {
            status,
            ..
        })) => assert_eq!(status, 403),
        other => panic!("{other:?}"),
    }
    let results = server.join().unwrap();
    assert_eq!(results[0].as_ref().unwrap(), &Some("chat.v2".to_string()));
    assert!(matches!(results[1], Err(Error::Rejected(_))));
}

#[test]
fn wrong_version_gets_426_over_the_wire() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        Builder::tcp(stream).accept().err()
    });
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let request = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n";
    std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
    let mut response = String::new();
    std::io::Read::read_to_string(&mut stream, &mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 426"), "{response}");
    assert!(response.contains("Sec-WebSocket-Version: 13"), "{response}");
    assert!(matches!(server.join().unwrap(), Some(Error::Rejected(_))));
}

/// Issue 10's bug, on this adapter: a close code that cannot be sent
/// (RFC 6455 §7.4.1) is refused by the core before anything is queued;
/// the connection goes on, and a sendable close still closes it.
#[test]
fn unsendable_close_codes_are_refused_and_the_connection_goes_on() {
    let (addr, server) = echo_server();
    let (mut ws, _) = blocking::connect(&format!("ws://{addr}/")).unwrap();
    for code in [
        CloseCode::Abnormal,
        CloseCode::NoStatusReceived,
        CloseCode::TlsHandshake,
        CloseCode::Reserved(1004),
        CloseCode::Reserved(999),
    ] {
        match ws.close(code, "") {
            Err(Error::Usage(UsageError::UnsendableCloseCode(n))) => assert_eq!(n, code.as_u16()),
            other => panic!("{code}: {other:?}"),
        }
        assert_eq!(ws.connection().state(), State::Open);
    }
    assert!(matches!(
        ws.close(CloseCode::Normal, &"x".repeat(124)),
        Err(Error::Usage(UsageError::CloseReasonTooLong))
    ));
    ws.send(Message::Text("still open")).unwrap();
    assert_eq!(ws.recv().unwrap(), OwnedEvent::Text("still open".into()));
    ws.close(CloseCode::PolicyViolation, "done").unwrap();
    match ws.recv().unwrap() {
        OwnedEvent::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::PolicyViolation),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.join().unwrap(), Some(1008));
}
