//! The official Engine.IO v4 protocol test suite (engine.io-protocol's
//! `test-suite/`, 24 mocha tests) against `examples/engineio_echo.rs`,
//! as docs/socketio.md §11 describes: the suite is copied from
//! `../shared/protocol-suites/engine.io` to a temporary directory (never
//! into the project), `npm ci && npm test` runs there, bounded in time.
//! The suite connects to `http://localhost:3000` (hard-coded), so the
//! server takes port 3000. Without `npm` this test fails: the suite is
//! mandatory (issue #13).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Where the suite is read from: `$CHITO_PROTOCOL_SUITES/engine.io` if
/// set, else `shared/` beside the checkout, else the workplace's
/// `/work/shared` (a CI clone elsewhere, e.g. under /tmp). Missing
/// everywhere is a failure naming every place looked at, never a skip.
fn suite_source() -> PathBuf {
    let mut places: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("CHITO_PROTOCOL_SUITES") {
        places.push(PathBuf::from(dir).join("engine.io"));
    }
    places
        .push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/protocol-suites/engine.io"));
    places.push(PathBuf::from("/work/shared/protocol-suites/engine.io"));
    match places
        .iter()
        .find(|p| p.join("test-suite/package.json").is_file())
    {
        Some(found) => found.clone(),
        None => panic!("the engine.io protocol suite is not at any of {places:?}"),
    }
}

/// The example binary cargo built next to this test
/// (`target/<profile>/examples/`, this test is in `target/<profile>/deps/`).
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile> directory");
    profile_dir.join("examples").join("engineio_echo")
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            if entry.file_name() != "node_modules" {
                copy_dir(&entry.path(), &target)?;
            }
        } else {
            std::fs::copy(entry.path(), &target)?;
            // shared/ is read-only; the copy must be removable.
            let mut permissions = std::fs::metadata(&target)?.permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            permissions.set_readonly(false);
            std::fs::set_permissions(&target, permissions)?;
        }
    }
    Ok(())
}

/// Kills the server when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `command` to its end or until `limit`, killing it then.
fn run_bounded(mut command: Command, limit: Duration) -> (Output, bool) {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {command:?} (is npm installed? it is required): {e}")
        });
    let id = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchdog = {
        let done = std::sync::Arc::clone(&done);
        std::thread::spawn(move || {
            let start = Instant::now();
            while start.elapsed() < limit {
                if done.load(std::sync::atomic::Ordering::SeqCst) {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            // Our own child, by its id.
            let _ = Command::new("kill").arg("-9").arg(id.to_string()).status();
            true
        })
    };
    let output = child.wait_with_output().expect("wait for npm");
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let timed_out = watchdog.join().unwrap_or(true);
    (output, timed_out)
}

#[test]
fn official_engineio_suite_passes() {
    let source = suite_source();
    assert!(
        source.is_dir(),
        "the suite is missing: {}",
        source.display()
    );
    let work = std::env::temp_dir().join(format!("chito-engineio-suite-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    copy_dir(&source, &work).expect("copy the suite to a temporary directory");
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

    let binary = example_binary();
    assert!(binary.is_file(), "example not built: {}", binary.display());
    let server = Command::new(&binary)
        .arg("3000")
        .stdout(Stdio::null())
        .spawn()
        .expect("start examples/engineio_echo");
    let _server = KillOnDrop(server);
    // Ready when port 3000 accepts.
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", 3000)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the example never listened on port 3000 (is the port taken?)"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let mut npm_test = Command::new("npm");
    npm_test.arg("test").current_dir(&suite_dir);
    let (output, timed_out) = run_bounded(npm_test, Duration::from_secs(180));
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    let _ = std::fs::remove_dir_all(&work);
    assert!(!timed_out, "npm test timed out:\n{stdout}");
    assert!(
        output.status.success() && stdout.contains("24 passing") && !stdout.contains("failing"),
        "the engine.io suite did not pass:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
