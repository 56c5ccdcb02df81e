//! Python peers from PyPI for the tests that talk to one: a package is
//! installed with pip into the target directory on first use (never into
//! the system), so a fresh machine needs only `python3` with pip and the
//! registry. Shared by `tests/interop_python.rs` (`websockets`) and
//! `chito-client/tests/common` (`pproxy`) through `#[path]`.

use std::path::PathBuf;
use std::process::Command;

/// A directory holding `package` at `version`, for PYTHONPATH; `module`
/// is the directory the package installs (its presence means installed).
pub fn install(package: &str, version: &str, module: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("py-{package}-{version}"));
    if !dir.join(module).is_dir() {
        let status = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
            ])
            .arg(&dir)
            .arg(format!("{package}=={version}"))
            .status()
            .unwrap_or_else(|e| panic!("python3 with pip is needed to install {package}: {e}"));
        assert!(status.success(), "pip install {package}=={version} failed");
    }
    dir
}
