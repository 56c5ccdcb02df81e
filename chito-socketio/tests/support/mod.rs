//! Running an official protocol suite (docs/socketio.md §11): find it,
//! copy it to a temporary directory (never into the project), `npm ci`,
//! start the example server on the suite's port, `npm test`, all bounded
//! in time. Shared by the suite tests that use it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The suite's port, hard-coded in both suites (`http://localhost:3000`).
pub const SUITE_PORT: u16 = 3000;

/// `$CHITO_PROTOCOL_SUITES/<name>`, else `shared/` beside the checkout,
/// else `/work/shared`; missing everywhere fails, naming every place.
pub fn suite_source(name: &str) -> PathBuf {
    let mut places: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("CHITO_PROTOCOL_SUITES") {
        places.push(PathBuf::from(dir).join(name));
    }
    places.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/protocol-suites")
            .join(name),
    );
    places.push(Path::new("/work/shared/protocol-suites").join(name));
    places
        .iter()
        .find(|place| place.join("test-suite/package.json").is_file())
        .cloned()
        .unwrap_or_else(|| panic!("the {name} protocol suite is not at any of {places:?}"))
}

/// `target/<profile>/examples/<name>` (tests run from `target/<profile>/deps/`).
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile> directory")
        .join("examples")
        .join(name)
}

/// Copies `from` into `to` without `node_modules`, writable (shared/ is
/// read-only).
pub fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            if entry.file_name() != "node_modules" {
                copy_tree(&entry.path(), &target)?;
            }
            continue;
        }
        std::fs::copy(entry.path(), &target)?;
        let mut permissions = std::fs::metadata(&target)?.permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        permissions.set_readonly(false);
        std::fs::set_permissions(&target, permissions)?;
    }
    Ok(())
}

/// A child process killed when dropped, however the test ends.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until nothing listens on the suite's port (another suite test,
/// of this or another checkout, may still hold it), at most `limit`.
pub fn wait_port_free(limit: Duration) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", SUITE_PORT)).is_ok() {
        assert!(
            start.elapsed() < limit,
            "port {SUITE_PORT} stayed taken for {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Starts `binary` on the suite's port and waits until it accepts.
pub fn start_server(binary: &Path) -> Server {
    assert!(binary.is_file(), "example not built: {}", binary.display());
    let child = Command::new(binary)
        .arg(SUITE_PORT.to_string())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
    let mut server = Server(child);
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", SUITE_PORT)).is_err() {
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!("the server exited ({status}) before listening on {SUITE_PORT}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the server never listened on port {SUITE_PORT}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // What accepted may be another suite's server if ours lost the race
    // for the port (its bind failed and it exited): make sure ours lives.
    std::thread::sleep(Duration::from_millis(300));
    if let Ok(Some(status)) = server.0.try_wait() {
        panic!("the server exited ({status}): port {SUITE_PORT} is taken by another process");
    }
    server
}

/// Runs `command` until it ends or `limit` passes (then kills it, by its
/// id). Returns its output and whether it timed out.
pub fn run_bounded(mut command: Command, limit: Duration) -> (Output, bool) {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?} (npm is required): {e}"));
    let id = child.id();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(limit).is_err() {
            let _ = Command::new("kill").arg("-9").arg(id.to_string()).status();
            return true;
        }
        false
    });
    let output = child.wait_with_output().expect("wait for the command");
    let _ = done_tx.send(());
    let timed_out = watchdog.join().unwrap_or(true);
    (output, timed_out)
}

/// Copies the suite `name`, runs `npm ci`, starts `example`, runs `npm
/// test`; returns mocha's output (stdout) after checking it ran to its end.
pub fn run_suite(name: &str, example: &str) -> (Output, String) {
    let source = suite_source(name);
    let work = std::env::temp_dir().join(format!("chito-{name}-suite-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    copy_tree(&source, &work).expect("copy the suite to a temporary directory");
    let suite_dir = work.join("test-suite");

    let mut npm_ci = Command::new("npm");
    npm_ci
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&suite_dir);
    let (output, timed_out) = run_bounded(npm_ci, Duration::from_secs(300));
    assert!(
        !timed_out && output.status.success(),
        "npm ci failed (timed out: {timed_out}):\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    wait_port_free(Duration::from_secs(300));
    let server = start_server(&example_binary(example));
    let mut npm_test = Command::new("npm");
    npm_test.arg("test").current_dir(&suite_dir);
    let (output, timed_out) = run_bounded(npm_test, Duration::from_secs(180));
    drop(server);
    let _ = std::fs::remove_dir_all(&work);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("{stdout}");
    assert!(!timed_out, "npm test timed out:\n{stdout}");
    (output, stdout)
}
