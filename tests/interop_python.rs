//! Interoperability with an independent implementation: Python's
//! `websockets` package (installed from PyPI into `target/` on first use),
//! exchanging permessage-deflate messages both ways over loopback.
#![cfg(feature = "deflate")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::Duration;

use chito::blocking::{Builder, StreamControl};
use chito::handshake::ClientRequest;
use chito::{Handler, Message, OwnedEvent, Sender};

#[path = "pypi/mod.rs"]
mod pypi;

const WEBSOCKETS_VERSION: &str = "17.4";

/// A directory holding the `websockets` package, for PYTHONPATH.
fn websockets_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| pypi::install("websockets", WEBSOCKETS_VERSION, "websockets"))
}

/// A stream that counts the bytes it moves, to see compression on the wire.
struct Counting {
    inner: TcpStream,
    read: Arc<AtomicUsize>,
    written: Arc<AtomicUsize>,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written.fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn counting_control() -> StreamControl<Counting> {
    StreamControl::new(
        |s, t| s.inner.set_read_timeout(t),
        |s, t| s.inner.set_write_timeout(t),
        |s| s.inner.shutdown(std::net::Shutdown::Write),
    )
}

/// Messages both sides send: compressible JSON-ish text and binary.
fn messages() -> Vec<(bool, Vec<u8>)> {
    (0..100)
        .flat_map(|i| {
            let text = format!(
                r#"{{"seq":{i},"body":"{}"}}"#,
                "hello websocket ".repeat(1 + i % 40)
            );
            let binary = [b"chito".as_slice(), &[(i % 7) as u8; 64]]
                .concat()
                .repeat(1 + i % 20);
            [(true, text.into_bytes()), (false, binary)]
        })
        .collect()
}

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, sender: &mut Sender<'_>, message: Message<'_>) {
        sender.send(message).unwrap();
    }
}

const PY_CLIENT: &str = r#"
import asyncio, sys
from websockets.asyncio.client import connect

async def main(url):
    async with connect(url, max_size=None) as ws:
        names = [e.name for e in ws.protocol.extensions]
        assert "permessage-deflate" in names, names
        total = 0
        for i in range(100):
            text = '{"seq":%d,"body":"%s"}' % (i, "hello websocket " * (1 + i % 40))
            binary = (b"chito" + bytes([i % 7]) * 64) * (1 + i % 20)
            for m in (text, binary):
                await ws.send(m)
                echo = await ws.recv()
                assert echo == m, (i, len(echo), len(m))
                total += len(m.encode() if isinstance(m, str) else m)
    print("OK", total)

asyncio.run(main(sys.argv[1]))
"#;

#[test]
fn python_client_against_chito_server() {
    let path = websockets_path();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let read = Arc::new(AtomicUsize::new(0));
    let written = Arc::new(AtomicUsize::new(0));
    let (r, w) = (read.clone(), written.clone());
    let server = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let stream = Counting {
            inner: stream,
            read: r,
            written: w,
        };
        let ws = Builder::new(stream)
            .control(counting_control())
            .accept()
            .unwrap();
        let negotiated = ws.connection().negotiated().deflate;
        ws.serve(&mut Echo);
        negotiated
    });
    let output = Command::new("python3")
        .env("PYTHONPATH", path)
        .args(["-c", PY_CLIENT, &format!("ws://{addr}/")])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.starts_with("OK"),
        "python client: {stdout}"
    );
    let payload: usize = stdout.trim().trim_start_matches("OK ").parse().unwrap();
    assert!(
        server.join().unwrap().is_some(),
        "deflate was not negotiated"
    );
    // Both directions travelled compressed: far fewer bytes than payload.
    let (read, written) = (
        read.load(Ordering::Relaxed),
        written.load(Ordering::Relaxed),
    );
    assert!(
        read * 4 < payload,
        "client→server {read} bytes for {payload} of payload"
    );
    assert!(
        written * 4 < payload,
        "server→client {written} bytes for {payload} of payload"
    );
}

const PY_SERVER: &str = r#"
import asyncio
from websockets.asyncio.server import serve

async def echo(ws):
    async for m in ws:
        await ws.send(m)

async def main():
    async with serve(echo, "127.0.0.1", 0, max_size=None) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.sleep(60)

asyncio.run(main())
"#;

#[test]
fn chito_client_against_python_server() {
    let path = websockets_path();
    let mut child = Command::new("python3")
        .env("PYTHONPATH", path)
        .args(["-c", PY_SERVER])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().parse().expect("python server port");
    let read = Arc::new(AtomicUsize::new(0));
    let written = Arc::new(AtomicUsize::new(0));
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let stream = Counting {
        inner: stream,
        read: read.clone(),
        written: written.clone(),
    };
    let (mut ws, response) = Builder::new(stream)
        .control(counting_control())
        .connect(&ClientRequest::new(format!("127.0.0.1:{port}"), "/"))
        .unwrap();
    assert!(
        response
            .extensions()
            .iter()
            .any(|e| e.name == "permessage-deflate"),
        "server did not accept permessage-deflate"
    );
    assert!(ws.connection().negotiated().deflate.is_some());
    let mut payload = 0;
    for (is_text, bytes) in messages() {
        payload += bytes.len();
        if is_text {
            let text = String::from_utf8(bytes).unwrap();
            ws.send(Message::Text(&text)).unwrap();
            assert_eq!(ws.recv().unwrap(), OwnedEvent::Text(text));
        } else {
            ws.send(Message::Binary(&bytes)).unwrap();
            assert_eq!(ws.recv().unwrap(), OwnedEvent::Binary(bytes));
        }
    }
    ws.close(chito::CloseCode::Normal, "done").unwrap();
    assert!(matches!(ws.recv().unwrap(), OwnedEvent::Close(Some(_))));
    let _ = child.kill();
    let _ = child.wait();
    let (read, written) = (
        read.load(Ordering::Relaxed),
        written.load(Ordering::Relaxed),
    );
    assert!(
        written * 4 < payload,
        "client→server {written} bytes for {payload} of payload"
    );
    assert!(
        read * 4 < payload,
        "server→client {read} bytes for {payload} of payload"
    );
}
