//! Helpers the benches share (each bench is its own crate and includes this
//! module with `mod common;`; not every bench uses every item).
#![allow(dead_code)]

use std::path::Path;
use std::sync::OnceLock;

/// Nearest-rank percentile (sorts `values`); NaN for none.
pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// The median of the values that are not NaN; NaN for none.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The 1, 5 and 15 minute load averages, from /proc.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// User plus system CPU time in a /proc `stat` file (a process's or a
/// thread's), in clock ticks.
pub fn stat_ticks(path: &Path) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the parenthesised command: state is field 3, utime 14,
    // stime 15.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `getconf CLK_TCK`; 100 on Linux unless told otherwise.
pub fn clock_ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Writes a bench's JSON results to the repository's `target/<name>` and
/// says where.
pub fn write_results(name: &str, json: &str) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../target");
    let _ = std::fs::create_dir_all(dir);
    let path = format!("{dir}/{name}");
    match std::fs::write(&path, json) {
        Ok(()) => println!("results written to {path}"),
        Err(e) => eprintln!("could not write {path}: {e}"),
    }
}
