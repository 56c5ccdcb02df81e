//! The `futures` feature: the tokio adapter's `WebSocket` and `ReadHalf` as
//! `Stream`s, `WebSocket` and `Handle` as `Sink`s, driven through
//! `StreamExt`/`SinkExt` against real chito peers (loopback TCP, or an
//! in-memory duplex pipe where the test needs to hold the peer still).
#![cfg(feature = "futures")]

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use chito::tokio::{Builder, WebSocket};
use chito::{
    CloseCode, CloseFrame, Config, Connection, Error, Handler, Message, OwnedEvent, ProtocolError,
    Role, Sender,
};
use futures_core::FusedStream;
use futures_sink::Sink;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::net::TcpListener;

/// Every test ends within this, whatever goes wrong.
async fn bounded<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), test)
        .await
        .expect("the test took too long")
}

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, sender: &mut Sender<'_>, message: Message<'_>) {
        let _ = sender.send(message);
    }
}

/// A chito echo server for one connection on 127.0.0.1; its URL.
async fn echo_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let ws = Builder::new(stream).accept().await.unwrap();
        ws.serve(&mut Echo).await;
    });
    format!("ws://{addr}/")
}

/// A server and a client over two ends of a transport, past the opening
/// handshake.
fn pair<S>(server: Builder<S>, client: Builder<S>) -> (WebSocket<S>, WebSocket<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    (
        server.upgraded(Connection::new(Role::Server, Config::default())),
        client.upgraded(Connection::new(Role::Client, Config::default())),
    )
}

/// [`pair`] over an in-memory pipe of `pipe` bytes each way.
fn duplex_pair(pipe: usize) -> (WebSocket<DuplexStream>, WebSocket<DuplexStream>) {
    let (a, b) = tokio::io::duplex(pipe);
    pair(Builder::new(a), Builder::new(b))
}

fn is_close(event: &OwnedEvent, code: CloseCode) -> bool {
    matches!(event, OwnedEvent::Close(Some(frame)) if frame.code == code)
}

#[tokio::test]
async fn echo_through_stream_next_and_sink_send() {
    bounded(async {
        let (mut ws, _) = chito::tokio::connect(&echo_server().await).await.unwrap();
        SinkExt::send(&mut ws, Message::Text("hello"))
            .await
            .unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            OwnedEvent::Text("hello".into())
        );
        // Borrowed from a local that is gone before the echo comes back:
        // the sink copies at `start_send`.
        {
            let big = vec![7u8; 300 << 10];
            SinkExt::send(&mut ws, Message::Binary(&big)).await.unwrap();
        }
        match ws.next().await.unwrap().unwrap() {
            OwnedEvent::Binary(data) => assert!(data.len() == 300 << 10 && data[0] == 7),
            other => panic!("{other:?}"),
        }
        // Many without flushing in between, then one flush.
        for i in 0..100 {
            ws.feed(Message::Text(&i.to_string())).await.unwrap();
        }
        SinkExt::flush(&mut ws).await.unwrap();
        for i in 0..100 {
            assert_eq!(
                ws.next().await.unwrap().unwrap(),
                OwnedEvent::Text(i.to_string())
            );
        }
        assert!(!ws.is_terminated());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_sender_in_a_task_while_the_receiver_reads() {
    bounded(async {
        let (ws, _) = chito::tokio::connect(&echo_server().await).await.unwrap();
        let (mut sender, mut receiver) = ws.split();
        let writer = tokio::spawn(async move {
            for i in 0..1000 {
                SinkExt::send(&mut sender, Message::Text(&format!("m{i}")))
                    .await
                    .unwrap();
                // Flushed means handed to the reading task, not written.
                assert!(!sender.is_closed());
            }
            SinkExt::close(&mut sender).await.unwrap();
            assert!(sender.is_closed());
        });
        for i in 0..1000 {
            assert_eq!(
                receiver.next().await.unwrap().unwrap(),
                OwnedEvent::Text(format!("m{i}"))
            );
        }
        // Our close, echoed by the server, then the end.
        assert!(is_close(
            &receiver.next().await.unwrap().unwrap(),
            CloseCode::Normal
        ));
        assert!(receiver.next().await.is_none());
        assert!(receiver.is_terminated());
        writer.await.unwrap();
    })
    .await;
}

/// The split echo of axum's examples, both halves in one task: sending
/// through the sink while the same task reads must not wait for itself.
#[tokio::test]
async fn split_halves_used_in_one_task_echo() {
    bounded(async {
        let (server, mut client) = duplex_pair(64 << 10);
        let echo = tokio::spawn(async move {
            let (mut sender, mut receiver) = server.split();
            let mut echoed = 0;
            while let Some(Ok(event)) = receiver.next().await {
                if let OwnedEvent::Text(text) = event {
                    SinkExt::send(&mut sender, Message::Text(&text))
                        .await
                        .unwrap();
                    echoed += 1;
                }
            }
            echoed
        });
        for i in 0..100 {
            client.send(Message::Text(&format!("m{i}"))).await.unwrap();
            let event = client.next().await.unwrap().unwrap();
            assert_eq!(event, OwnedEvent::Text(format!("m{i}")));
        }
        SinkExt::close(&mut client).await.unwrap();
        assert!(matches!(
            client.next().await,
            Some(Ok(OwnedEvent::Close(_)))
        ));
        assert!(client.next().await.is_none());
        assert_eq!(echo.await.unwrap(), 100);
    })
    .await;
}

#[tokio::test]
async fn the_stream_ends_after_a_close_the_peer_started() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut ws = Builder::new(stream).accept().await.unwrap();
            ws.close(CloseCode::GoingAway, "bye").await.unwrap();
            // Its reply, then the end.
            assert!(is_close(
                &ws.next().await.unwrap().unwrap(),
                CloseCode::GoingAway
            ));
            assert!(ws.next().await.is_none());
        });
        let (mut ws, _) = chito::tokio::connect(&format!("ws://{addr}/"))
            .await
            .unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            OwnedEvent::Close(Some(
                CloseFrame::new(CloseCode::GoingAway, "bye").into_owned()
            ))
        );
        assert!(ws.is_terminated(), "the transport ended before the close");
        assert!(ws.next().await.is_none());
        assert!(ws.next().await.is_none(), "and stays ended");
        // The inherent API says the same thing its own way.
        assert!(matches!(
            ws.recv().await,
            Err(Error::Usage(chito::UsageError::Closed))
        ));
        server.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn the_stream_ends_after_a_close_we_started_through_the_sink() {
    bounded(async {
        let (mut ws, _) = chito::tokio::connect(&echo_server().await).await.unwrap();
        SinkExt::send(&mut ws, Message::Text("last")).await.unwrap();
        SinkExt::close(&mut ws).await.unwrap();
        // Closing a closed sink again is fine.
        SinkExt::close(&mut ws).await.unwrap();
        // Sending after it is not.
        assert!(SinkExt::send(&mut ws, Message::Text("late")).await.is_err());
        // What was in flight still arrives, then the peer's close.
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            OwnedEvent::Text("last".into())
        );
        assert!(is_close(
            &ws.next().await.unwrap().unwrap(),
            CloseCode::Normal
        ));
        assert!(ws.next().await.is_none());
        assert!(ws.is_terminated());
    })
    .await;
}

/// A server fed frames it must refuse: the error comes once, the close
/// frame with its code goes to the peer, then the stream ends.
#[tokio::test]
async fn a_protocol_error_is_yielded_once_then_none() {
    bounded(async {
        let cases: [(&[u8], ProtocolError, u16); 2] = [
            // Unmasked text "hi" to a server (RFC 6455 §5.1).
            (
                &[0x81, 0x02, b'h', b'i'],
                ProtocolError::UnmaskedFrame,
                1002,
            ),
            // Reserved opcode 0x3, masked, empty.
            (
                &[0x83, 0x80, 1, 2, 3, 4],
                ProtocolError::ReservedOpcode(3),
                1002,
            ),
        ];
        for (frame, expected, code) in cases {
            let (a, mut peer) = tokio::io::duplex(4096);
            let mut ws = Builder::new(a).upgraded(Connection::new(Role::Server, Config::default()));
            peer.write_all(frame).await.unwrap();
            // The peer reads the close frame, then ends its side once the
            // server ended its own.
            let peer_task = tokio::spawn(async move {
                let mut seen = Vec::new();
                peer.read_to_end(&mut seen).await.unwrap();
                seen
            });
            match ws.next().await {
                Some(Err(Error::Protocol(error))) => assert_eq!(error, expected),
                other => panic!("{other:?}"),
            }
            assert!(ws.next().await.is_none());
            assert!(ws.is_terminated());
            let seen = peer_task.await.unwrap();
            // A close frame (with a reason), carrying the violation's code.
            assert_eq!(seen.first(), Some(&0x88), "{seen:?}");
            assert_eq!(seen.get(2..4), Some(&code.to_be_bytes()[..]));
        }
    })
    .await;
}

/// The peer vanishes without a close: an error, once, then the end.
#[tokio::test]
async fn an_abrupt_end_of_stream_is_yielded_once_then_none() {
    bounded(async {
        let (mut ws, peer) = duplex_pair(4096);
        drop(peer);
        match ws.next().await {
            Some(Err(error)) => assert_eq!(error.close_code(), CloseCode::Abnormal),
            other => panic!("{other:?}"),
        }
        assert!(ws.next().await.is_none());
        assert!(ws.is_terminated());
    })
    .await;
}

/// Polls the `Handle` sink's `poll_ready` once.
fn ready_now(sender: &mut chito::tokio::Handle, cx: &mut Context<'_>) -> bool {
    matches!(Pin::new(sender).poll_ready(cx), Poll::Ready(Ok(())))
}

/// With a small queue and a peer that does not read, the handle sink's
/// `poll_ready` stays pending; it resumes once the peer reads, a flush
/// hands over without waiting, and the driver then writes every byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handle_sink_waits_for_room_and_its_flush_hands_over() {
    bounded(async {
        let (a, b) = tokio::io::duplex(16 << 10);
        let (server, mut client) =
            pair(Builder::new(a).max_queued_bytes(64 << 10), Builder::new(b));
        let (mut sender, mut receiver) = server.split();
        let driver = tokio::spawn(async move {
            while let Some(event) = receiver.next().await {
                event.unwrap();
            }
        });
        let chunk = vec![1u8; 8 << 10];
        let mut sent = 0;
        // Send until `poll_ready` has stayed pending for a while: the pipe,
        // the connection's output and the queue are then full.
        loop {
            let waited = tokio::time::timeout(
                Duration::from_millis(200),
                poll_fn(|cx| Pin::new(&mut sender).poll_ready(cx)),
            )
            .await;
            match waited {
                Ok(ready) => ready.unwrap(),
                Err(_) => break,
            }
            Pin::new(&mut sender)
                .start_send(Message::Binary(&chunk))
                .unwrap();
            sent += 1;
            assert!(sent < 1000, "the queue never filled");
        }
        assert!(sent >= 8, "{sent} messages fill a 64 KiB queue");
        assert!(sender.buffered_amount() >= 64 << 10);
        assert!(!poll_fn(|cx| Poll::Ready(ready_now(&mut sender, cx))).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !poll_fn(|cx| Poll::Ready(ready_now(&mut sender, cx))).await,
            "still full while the peer does not read"
        );

        // The peer starts reading.
        let reader = tokio::spawn(async move {
            let mut messages = 0;
            loop {
                match client.next().await {
                    Some(Ok(OwnedEvent::Binary(data))) => {
                        assert_eq!(data.len(), 8 << 10);
                        messages += 1;
                    }
                    Some(Ok(OwnedEvent::Close(_))) => {}
                    None => return messages,
                    other => panic!("{other:?}"),
                }
            }
        });
        poll_fn(|cx| Pin::new(&mut sender).poll_ready(cx))
            .await
            .unwrap();
        Pin::new(&mut sender)
            .start_send(Message::Binary(&chunk))
            .unwrap();
        sent += 1;
        SinkExt::flush(&mut sender).await.unwrap();
        // The driver writes it all while the peer reads.
        while sender.buffered_amount() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        SinkExt::close(&mut sender).await.unwrap();
        assert_eq!(reader.await.unwrap(), sent);
        driver.await.unwrap();
        // The connection is gone: nothing more can be queued.
        assert!(SinkExt::send(&mut sender, Message::Text("late"))
            .await
            .is_err());
    })
    .await;
}

/// A transport whose write-side shutdown is pending at first (as TLS's
/// `close_notify` can be while the socket is full), or for ever.
struct SlowShutdown {
    inner: DuplexStream,
    /// Pending polls left before the shutdown goes through; `None`: never.
    pending: Option<u32>,
    polls: u32,
}

impl AsyncRead for SlowShutdown {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SlowShutdown {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.polls += 1;
        match self.pending {
            None => Poll::Pending,
            Some(0) => Pin::new(&mut self.inner).poll_shutdown(cx),
            Some(n) => {
                self.pending = Some(n - 1);
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }
}

/// A server over a [`SlowShutdown`] transport with `pending`, and its
/// client.
fn slow_shutdown_pair(
    pending: Option<u32>,
    server_config: Config,
) -> (WebSocket<SlowShutdown>, WebSocket<DuplexStream>) {
    let (a, b) = tokio::io::duplex(4096);
    let slow = SlowShutdown {
        inner: a,
        pending,
        polls: 0,
    };
    (
        Builder::new(slow).upgraded(Connection::new(Role::Server, server_config)),
        Builder::new(b).upgraded(Connection::new(Role::Client, Config::default())),
    )
}

/// The server's half-close is pending three times: the driver asks again
/// until it completes, and the peer sees the end of stream.
#[tokio::test]
async fn a_pending_half_close_is_retried_until_it_completes() {
    bounded(async {
        let (mut server, mut client) = slow_shutdown_pair(Some(3), Config::default());
        let peer = tokio::spawn(async move {
            client.close(CloseCode::Normal, "").await.unwrap();
            assert!(is_close(
                &client.next().await.unwrap().unwrap(),
                CloseCode::Normal
            ));
            assert!(client.next().await.is_none());
        });
        assert!(is_close(
            &server.next().await.unwrap().unwrap(),
            CloseCode::Normal
        ));
        assert_eq!(server.get_ref().polls, 4, "three pending, one done");
        assert!(server.next().await.is_none());
        peer.await.unwrap();
    })
    .await;
}

/// A half-close that never completes holds the connection only until the
/// close timeout.
#[tokio::test]
async fn a_half_close_that_never_completes_is_given_up_at_the_close_timeout() {
    bounded(async {
        let mut config = Config::default();
        config.close_timeout = Duration::from_millis(300);
        let (mut server, mut client) = slow_shutdown_pair(None, config);
        client.close(CloseCode::Normal, "").await.unwrap();
        let started = Instant::now();
        assert!(is_close(
            &server.next().await.unwrap().unwrap(),
            CloseCode::Normal
        ));
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(5),
            "{took:?}"
        );
        assert!(server.get_ref().polls >= 1);
        assert!(server.next().await.is_none());
        assert!(server.is_terminated());
    })
    .await;
}
