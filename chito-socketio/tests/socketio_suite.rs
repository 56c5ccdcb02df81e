//! The official Socket.IO v5 protocol test suite (socket.io-protocol's
//! `test-suite/`, 32 mocha tests: the Engine.IO checks on `/socket.io/`
//! and the Socket.IO ones) against `examples/socketio_protocol_server.rs`
//! (docs/socketio.md §11). Without `npm` this fails: the suite is
//! mandatory (issue #13).
//!
//! Port 3000 is the suite's, as for tests/engineio_suite.rs: cargo runs
//! test binaries one after another, and `support::wait_port_free` waits
//! for a suite still running elsewhere (another checkout's CI) to end.

mod support;

#[test]
fn official_socketio_suite_passes() {
    let (output, stdout) = support::run_suite("socket.io", "socketio_protocol_server");
    assert!(
        output.status.success() && stdout.contains("32 passing") && !stdout.contains("failing"),
        "the socket.io suite did not pass:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
