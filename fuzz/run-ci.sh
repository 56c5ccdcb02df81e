#!/usr/bin/env bash
# Runs every cargo-fuzz target for a short while (CI smoke fuzzing).
#
#   bash fuzz/run-ci.sh                 # 30 s per target
#   FUZZ_SECONDS=600 bash fuzz/run-ci.sh             # 10 min per target
#   FUZZ_SECONDS=600 bash fuzz/run-ci.sh roundtrip   # chosen targets only
#
# Works on a fresh machine with only a stable Rust toolchain: installs
# cargo-fuzz if missing and uses RUSTC_BOOTSTRAP=1 for the nightly-only
# flags (sanitizers) it passes to rustc. Each target runs on a copy of its
# seed corpus in a temporary directory, so nothing is left behind. A crash,
# leak, timeout or out-of-memory in any target makes the script exit
# non-zero after all targets ran; the failing input is printed (hex) so it
# can be recreated from the CI log.
set -euo pipefail
cd "$(dirname "$0")"

SECONDS_PER_TARGET="${FUZZ_SECONDS:-30}"
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

# -max_len per target: a frame header is at most 14 bytes; the others need
# room for a handful of frames or an HTTP head.
declare -A MAX_LEN=(
    [frame_header]=32
    [server_connection]=4096
    [client_connection]=4096
    [handshake_request]=4096
    [handshake_response]=4096
    [inflate]=4096
    [roundtrip]=4096
    [engineio_packet_payload]=4096
    [socketio_packet]=4096
)
ALL_TARGETS=(frame_header server_connection client_connection handshake_request
             handshake_response inflate roundtrip
             engineio_packet_payload socketio_packet)
if [ "$#" -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL_TARGETS[@]}"); fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
cargo fuzz --version

# Release build with debug assertions (and so overflow checks) on.
FUZZ_FLAGS=(-O -a)
echo "building fuzz targets"
cargo fuzz build "${FUZZ_FLAGS[@]}"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/chito-fuzz.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

failed=()
summary=()
for target in "${TARGETS[@]}"; do
    max_len="${MAX_LEN[$target]:-4096}"
    corpus="$WORK/corpus/$target"
    artifacts="$WORK/artifacts/$target/"
    log="$WORK/$target.log"
    mkdir -p "$corpus" "$artifacts"
    cp corpus/"$target"/seed-* "$corpus"/
    echo
    echo "=== $target: ${SECONDS_PER_TARGET}s, -max_len=$max_len"
    status=0
    # The outer timeout is a safety net for a stuck build or process.
    timeout "$((SECONDS_PER_TARGET + 600))" \
        cargo fuzz run "${FUZZ_FLAGS[@]}" "$target" "$corpus" -- \
        -max_total_time="$SECONDS_PER_TARGET" -max_len="$max_len" \
        -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$artifacts" >"$log" 2>&1 || status=$?
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)"
    done_line="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n1 || true)"
    cov="$(sed -n 's/.*cov: \([0-9]*\) ft: \([0-9]*\).*/cov \1 ft \2/p' <<<"$done_line")"
    if [ "$status" -ne 0 ]; then
        failed+=("$target")
        summary+=("$target: FAILED (exit $status) after ${execs:-?} executions")
        echo "--- $target FAILED (exit $status); panic message and end of log:"
        grep -A3 -m1 "panicked at" "$log" || true
        echo "..."
        tail -n 30 "$log"
        for crash in "$artifacts"*; do
            [ -f "$crash" ] || continue
            echo "--- failing input $(basename "$crash") ($(wc -c <"$crash") bytes), hex:"
            od -An -tx1 -v "$crash" | head -n 200
        done
    else
        summary+=("$target: ok, ${execs:-?} executions in ${SECONDS_PER_TARGET}s, ${cov:-cov ?}")
        echo "$done_line"
    fi
done

echo
echo "=== fuzz summary"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}"
    exit 1
fi
echo "fuzz: all ${#TARGETS[@]} targets ran clean"
