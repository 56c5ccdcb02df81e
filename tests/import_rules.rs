//! The layering of `src/`, checked: every module may refer only to modules
//! of its own layer or below (ARCHITECTURE.md draws the layers), and the
//! rules that keep the core independent of its users hold:
//!
//! - the core (leaves, deflate, config, handshake, connection) never
//!   refers to an adapter, the adapters' glue, or rooms;
//! - the leaves (`frame`, `mask`, `utf8`, `close`, `rand`, `role`, and
//!   the handshake's HTTP, `extensions` and `url` grammars) refer to
//!   nothing above them, the handshake in particular;
//! - the handshake never refers to the connection;
//! - `blocking`, `tokio` and `uring` never refer to each other;
//! - `rooms` never refers to `blocking`.
//!
//! Test modules (`#[cfg(test)] mod …`, at the end of a file) are not
//! checked: a test may use whatever it checks against.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Each module's layer; a file may refer to modules of its layer or below.
/// A module missing here fails the test: place it when adding it.
const LAYERS: &[(&str, u8)] = &[
    ("lib", 9),
    ("frame", 0),
    ("mask", 0),
    ("utf8", 0),
    ("close", 0),
    ("rand", 0),
    ("role", 0),
    ("handshake::extensions", 0),
    ("handshake::url", 0),
    ("handshake::http", 0),
    ("deflate", 1),
    ("config", 2),
    ("handshake", 3),
    ("connection", 4),
    ("handler", 5),
    ("error", 5),
    ("adapter", 6),
    ("handle", 6),
    ("shutdown", 6),
    ("blocking", 7),
    ("tokio", 7),
    ("uring", 7),
    ("rooms", 8),
];

/// Pairs that must never refer to each other in the given direction, even
/// where layers would allow it.
const FORBIDDEN: &[(&str, &str)] = &[
    ("blocking", "tokio"),
    ("tokio", "blocking"),
    ("blocking", "uring"),
    ("uring", "blocking"),
    ("tokio", "uring"),
    ("uring", "tokio"),
    ("rooms", "blocking"),
    ("handshake", "connection"),
];

/// The modules that make up the sans-IO core.
const CORE: &[&str] = &[
    "frame",
    "mask",
    "utf8",
    "close",
    "rand",
    "role",
    "deflate",
    "config",
    "handshake",
    "connection",
];

/// What the core must never refer to.
const ABOVE_CORE: &[&str] = &[
    "blocking", "tokio", "uring", "rooms", "adapter", "outbox", "handler", "error",
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

/// `src/connection/send.rs` → `["connection", "send"]`; `mod.rs` names its
/// folder.
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

/// The layer entry that names `path` most specifically.
fn classify(path: &[String]) -> Option<(&'static str, u8)> {
    let mut best: Option<(&'static str, u8)> = None;
    for &(name, layer) in LAYERS {
        let segments: Vec<&str> = name.split("::").collect();
        let matches = segments.len() <= path.len()
            && segments.iter().zip(path).all(|(a, b)| *a == b.as_str());
        if matches && best.map_or(true, |(b, _)| b.split("::").count() < segments.len()) {
            best = Some((name, layer));
        }
    }
    best
}

/// The file's code without its test module and without comments (a doc
/// link to a module above is not a dependency on it).
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

/// Every module the code refers to through `crate::a::b` paths (in `use`
/// lines and in expressions), and through `super::x` from a submodule.
fn references(code: &str, own: &[String]) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let first = ident(rest);
        if first.is_empty() {
            continue;
        }
        let mut path = vec![first.clone()];
        if let Some(second) = rest[first.len()..].strip_prefix("::") {
            let second = ident(second);
            if !second.is_empty() {
                path.push(second);
            }
        }
        found.push(path);
    }
    // `super::x` in a file below a folder's mod.rs refers to `x` in that
    // folder (or to the folder itself: `super::{a, b}`, `super::Type`).
    if own.len() >= 2 {
        let parent = &own[..own.len() - 1];
        for (at, _) in code.match_indices("super::") {
            let mut path = parent.to_vec();
            let next = ident(&code[at + "super::".len()..]);
            if next.chars().next().is_some_and(|c| c.is_ascii_lowercase()) {
                path.push(next);
            }
            found.push(path);
        }
    }
    for block in code.split("use crate::{").skip(1) {
        // `use crate::{a, b::c}`: the first segment of every item.
        let inner = block.split("};").next().unwrap_or("");
        for item in inner.split(',') {
            let name = ident(item.trim());
            if !name.is_empty() {
                found.push(vec![name]);
            }
        }
    }
    found
}

/// Root re-exports (`crate::Connection`) name their defining module.
fn resolve_root_item(path: Vec<String>) -> Vec<String> {
    let first = path[0].as_str();
    let module = match first {
        "CloseCode" | "CloseFrame" => "close",
        "Config" => "config",
        "Connection" | "ConnectionError" | "Event" | "InternalError" | "Message"
        | "MessageKind" | "OwnedEvent" | "ProtocolError" | "SendError" | "Sender"
        | "SharedMessage" | "State" | "UsageError" | "CloseStep" => "connection",
        "Error" | "Timeout" => "error",
        "Handler" => "handler",
        "Role" => "role",
        _ => return path,
    };
    vec![module.to_owned()]
}

#[test]
fn modules_refer_only_to_their_layer_or_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut violations = BTreeMap::new();
    let mut checked = 0;
    for file in &files {
        let own = module_path(&src, file);
        let own = if own.is_empty() {
            vec!["lib".to_owned()]
        } else {
            own
        };
        let (own_name, own_layer) =
            classify(&own).unwrap_or_else(|| panic!("{} has no layer in LAYERS", file.display()));
        let text = fs::read_to_string(file).unwrap();
        for target in references(&non_test_code(&text), &own) {
            let target = resolve_root_item(target);
            let Some((target_name, target_layer)) = classify(&target) else {
                // A root item or a dependency's path (`crate::` is ours
                // only); every module of ours is in LAYERS.
                continue;
            };
            checked += 1;
            let top = |name: &str| name.split("::").next().unwrap_or("").to_owned();
            let mut why = Vec::new();
            if target_layer > own_layer {
                why.push(format!("layer {own_layer} refers to layer {target_layer}"));
            }
            if FORBIDDEN
                .iter()
                .any(|(from, to)| top(own_name) == *from && top(target_name) == *to)
            {
                why.push("a forbidden pair".to_owned());
            }
            if CORE.contains(&top(own_name).as_str())
                && ABOVE_CORE.contains(&top(target_name).as_str())
            {
                why.push("the core refers to what is built on it".to_owned());
            }
            if !why.is_empty() {
                violations
                    .entry(format!("{} → {}", own.join("::"), target.join("::")))
                    .or_insert_with(|| why.join(", "));
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} references found: is the scan broken?"
    );
    assert!(
        violations.is_empty(),
        "import rules broken:\n{}",
        violations
            .iter()
            .map(|(edge, why)| format!("  {edge}: {why}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The checker itself: a file that breaks each rule is caught.
#[test]
fn the_checker_catches_each_kind_of_violation() {
    let cases: &[(&[&str], &str)] = &[
        (&["frame"], "use crate::handshake::UpgradeRequest;"),
        (
            &["connection", "receive"],
            "let x = crate::tokio::Handle::clone;",
        ),
        (
            &["handshake", "server"],
            "use crate::connection::Connection;",
        ),
        (&["blocking"], "use crate::tokio::WebSocket;"),
        (&["rooms"], "use crate::blocking::WebSocket;"),
        (&["deflate", "codec"], "use crate::{Config, Error};"),
    ];
    for (own, code) in cases {
        let own: Vec<String> = own.iter().map(|s| s.to_string()).collect();
        let (own_name, own_layer) = classify(&own).unwrap();
        let broken = references(code, &own).into_iter().any(|target| {
            let target = resolve_root_item(target);
            classify(&target).is_some_and(|(name, layer)| {
                layer > own_layer
                    || FORBIDDEN
                        .iter()
                        .any(|(f, t)| own_name.starts_with(f) && name.starts_with(t))
            })
        });
        assert!(broken, "{own:?}: {code} went unnoticed");
    }
}
