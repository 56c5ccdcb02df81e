//! The layering of chito-socketio's `src/`, checked (docs/socketio.md §1;
//! modelled on chito's own `tests/import_rules.rs`):
//!
//! - `engineio/*` never refers to `socketio/*`: Engine.IO is the transport
//!   under Socket.IO and is served alone (the engine.io suite, `EngineIo`);
//! - the sans-IO modules (`engineio::{packet, payload, session, upgrade,
//!   sid, query, config}` and `socketio::{packet, binary}`) perform no I/O
//!   and read no clock: they name no runtime or HTTP server crate (`tokio`,
//!   `hyper`, `hyper_util`, `http_body_util`), no `std::net`, `std::fs`,
//!   `std::process`, no standard streams, no thread spawn or sleep, no
//!   `Instant::now`, `SystemTime::now` or `elapsed`, and of this crate
//!   only other sans-IO modules. They are the unit-tested and fuzzed core;
//!   time is passed in. (`std::io::Write` as a trait is fine: serde_json
//!   writes through it into a `String`; so is a `thread_local!` scratch.)
//!
//! Test modules (`#[cfg(test)] mod …`) and comments are not checked: a
//! test may use whatever it checks against, and a doc link is not a
//! dependency.

use std::fs;
use std::path::{Path, PathBuf};

/// The sans-IO modules, as paths below `src/` (a folder's files count as
/// the module: `session/tests.rs` is its test module).
const SANS_IO: &[&[&str]] = &[
    &["engineio", "packet"],
    &["engineio", "payload"],
    &["engineio", "session"],
    &["engineio", "upgrade"],
    &["engineio", "sid"],
    &["engineio", "query"],
    &["engineio", "config"],
    &["socketio", "packet"],
    &["socketio", "binary"],
    &["socketio", "recovery"],
];

/// Paths a sans-IO module must not name (matched on whole identifiers,
/// `a::b` as consecutive path segments).
const IO_PATHS: &[&str] = &[
    "tokio",
    "hyper",
    "hyper_util",
    "http_body_util",
    "mio",
    "std::net",
    "std::fs",
    "std::process",
    "stdin",
    "stdout",
    "stderr",
    "File",
    "thread::spawn",
    "thread::sleep",
    "Instant::now",
    "SystemTime::now",
    "elapsed",
    "TcpStream",
    "TcpListener",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/engineio/session/tests.rs` → `["engineio", "session", "tests"]`;
/// `mod.rs` names its folder.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

fn starts_with(path: &[String], prefix: &[&str]) -> bool {
    prefix.len() <= path.len() && prefix.iter().zip(path).all(|(a, b)| *a == b.as_str())
}

/// The sans-IO module `path` belongs to, if any.
fn sans_io_module(path: &[String]) -> Option<&'static [&'static str]> {
    SANS_IO
        .iter()
        .copied()
        .find(|module| starts_with(path, module))
}

/// Whether `path` is a test module file of its parent (`session/tests.rs`).
fn is_test_file(path: &[String]) -> bool {
    path.last().is_some_and(|last| last == "tests")
}

/// The file's code without its test module and without comments.
fn non_test_code(text: &str) -> String {
    let mut cut = text.len();
    for marker in [
        "#[cfg(test)]\nmod ",
        "#[cfg(test)]\npub(super) mod ",
        "#[cfg(test)]\npub(crate) mod ",
    ] {
        if let Some(at) = text.find(marker) {
            cut = cut.min(at);
        }
    }
    text[..cut]
        .lines()
        .map(|line| {
            // `//` starts a comment unless it sits inside a string literal
            // (an odd number of quotes before it).
            let mut end = line.len();
            for (at, _) in line.match_indices("//") {
                if line[..at].matches('"').count() % 2 == 0 {
                    end = at;
                    break;
                }
            }
            &line[..end]
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The code as a list of paths: runs of identifiers joined by `::`
/// (`std::time::Instant::now`, `super::packet`, `crate`), with `use`
/// groups expanded one level (`crate::{a, b::c}` gives `crate::a`,
/// `crate::b::c`).
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut at = 0;
    while at < bytes.len() {
        if !is_ident(bytes[at]) || (at > 0 && is_ident(bytes[at - 1])) {
            at += 1;
            continue;
        }
        let mut path = Vec::new();
        let mut end = at;
        loop {
            let start = end;
            while end < bytes.len() && is_ident(bytes[end]) {
                end += 1;
            }
            path.push(bytes[start..end].iter().collect::<String>());
            if bytes.get(end) == Some(&':') && bytes.get(end + 1) == Some(&':') {
                end += 2;
                if bytes.get(end) == Some(&'{') {
                    // A use group: each item continues this path.
                    let close = bytes[end..]
                        .iter()
                        .position(|c| *c == '}')
                        .map_or(bytes.len(), |p| end + p);
                    let group: String = bytes[end + 1..close].iter().collect();
                    for item in group.split(',') {
                        let item: Vec<String> = item
                            .trim()
                            .split("::")
                            .map(|s| s.chars().take_while(|c| is_ident(*c)).collect())
                            .filter(|s: &String| !s.is_empty())
                            .collect();
                        if !item.is_empty() {
                            found.push(path.iter().cloned().chain(item).collect());
                        }
                    }
                    end = close;
                    break;
                }
                if end < bytes.len() && is_ident(bytes[end]) {
                    continue;
                }
            }
            break;
        }
        found.push(path);
        at = end.max(at + 1);
    }
    found
}

/// Whether `path` contains `needle` (`a::b`) as consecutive segments.
fn names(path: &[String], needle: &str) -> bool {
    let needle: Vec<&str> = needle.split("::").collect();
    path.windows(needle.len())
        .any(|window| window.iter().zip(&needle).all(|(a, b)| a == b))
}

/// The module of this crate a path refers to, resolved from `own` (the
/// referring file's module): `crate::a::b`, `super::x`, `self::x`.
fn crate_target(path: &[String], own: &[String]) -> Option<Vec<String>> {
    let first = path.first()?;
    let (mut base, rest): (Vec<String>, &[String]) = match first.as_str() {
        "crate" => (Vec::new(), &path[1..]),
        "super" => {
            let mut base = own.to_vec();
            let mut rest = path;
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
            (base, rest)
        }
        _ => return None,
    };
    // Module names are lower case; a type or function ends the module part.
    for segment in rest {
        if segment
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase())
            && segment != "self"
        {
            base.push(segment.clone());
        } else {
            break;
        }
    }
    Some(base)
}

/// Every rule `code` of module `own` breaks.
fn violations(own: &[String], code: &str) -> Vec<String> {
    let mut broken = Vec::new();
    let sans_io = sans_io_module(own);
    for path in paths(code) {
        let target = crate_target(&path, own);
        if own.first().is_some_and(|m| m == "engineio") {
            let to_socketio = target
                .as_ref()
                .is_some_and(|t| t.first().is_some_and(|m| m == "socketio"));
            if to_socketio {
                broken.push(format!("engineio refers to {}", path.join("::")));
            }
        }
        let Some(module) = sans_io else { continue };
        if let Some(io) = IO_PATHS.iter().find(|io| names(&path, io)) {
            broken.push(format!("sans-IO module names {io} ({})", path.join("::")));
        }
        if let Some(target) = &target {
            // Its own submodules, another sans-IO module, or the crate's
            // module folders themselves (`super::Type` re-exports).
            let allowed = starts_with(target, module)
                || sans_io_module(target).is_some()
                || target.len() <= 1;
            if !allowed {
                broken.push(format!(
                    "sans-IO module refers to {} (not sans-IO)",
                    target.join("::")
                ));
            }
        }
    }
    broken
}

#[test]
fn engineio_never_refers_to_socketio_and_the_sans_io_core_does_no_io() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut found = Vec::new();
    let mut sans_io_files = 0;
    let mut paths_checked = 0;
    for file in &files {
        let own = module_path(&src, file);
        if is_test_file(&own) {
            continue;
        }
        if sans_io_module(&own).is_some() {
            sans_io_files += 1;
        }
        let code = non_test_code(&fs::read_to_string(file).unwrap());
        paths_checked += paths(&code).len();
        for why in violations(&own, &code) {
            found.push(format!("  {}: {why}", own.join("::")));
        }
    }
    // Every listed module exists: a rename must update the list, not
    // silently leave a module unchecked.
    for module in SANS_IO {
        let file = src.join(module.join("/")).with_extension("rs");
        assert!(file.is_file(), "{} is gone: update SANS_IO", file.display());
    }
    assert!(sans_io_files >= SANS_IO.len());
    assert!(
        paths_checked > 1000,
        "only {paths_checked} paths found: is the scan broken?"
    );
    found.dedup();
    assert!(
        found.is_empty(),
        "import rules broken:\n{}",
        found.join("\n")
    );
}

/// The checker itself: a file that breaks each rule is caught, and the
/// forms a clean file uses are not.
#[test]
fn the_checker_catches_each_kind_of_violation() {
    let own = |path: &[&str]| -> Vec<String> { path.iter().map(|s| s.to_string()).collect() };
    let broken: &[(&[&str], &str)] = &[
        (
            &["engineio", "server"],
            "use crate::socketio::packet::Packet;",
        ),
        (&["engineio", "server"], "use crate::{engineio, socketio};"),
        (
            &["engineio", "session"],
            "use super::super::socketio::Binary;",
        ),
        (&["engineio", "session"], "let now = Instant::now();"),
        (
            &["engineio", "session"],
            "let now = std::time::Instant::now();",
        ),
        (&["engineio", "payload"], "use tokio::sync::Mutex;"),
        (&["engineio", "query"], "fn f(r: hyper::Request<()>) {}"),
        (&["engineio", "sid"], "use std::{fs, io::Read};"),
        (&["engineio", "sid"], "std::io::stdout().write_all(b\"x\");"),
        (&["engineio", "session"], "std::thread::sleep(d);"),
        (&["engineio", "upgrade"], "use super::websocket::run;"),
        (
            &["engineio", "upgrade"],
            "use crate::engineio::server::Inner;",
        ),
        (
            &["socketio", "packet"],
            "use crate::socketio::socket::Socket;",
        ),
        (&["socketio", "binary"], "let t = start.elapsed();"),
        (&["socketio", "binary"], "use std::net::TcpStream;"),
    ];
    for (path, code) in broken {
        assert!(
            !violations(&own(path), code).is_empty(),
            "{path:?}: {code} went unnoticed"
        );
    }
    let clean: &[(&[&str], &str)] = &[
        (
            &["engineio", "session"],
            "use super::packet::{decode_text, Outgoing};",
        ),
        (
            &["engineio", "session"],
            "use std::time::Instant; fn f(now: Instant) {}",
        ),
        (
            &["engineio", "server"],
            "use tokio::sync::watch; let t = Instant::now();",
        ),
        (
            &["socketio", "packet"],
            "use std::io; impl io::Write for W {}",
        ),
        (
            &["socketio", "binary"],
            "use super::packet::Packet; use crate::engineio::packet::Outgoing;",
        ),
        (&["socketio", "io"], "use crate::engineio::EngineIo;"),
    ];
    for (path, code) in clean {
        let found = violations(&own(path), code);
        assert!(found.is_empty(), "{path:?}: {code} flagged: {found:?}");
    }
}
