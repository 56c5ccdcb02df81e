#!/usr/bin/env bash
# The chat example in headless Chromium: installs what it needs (Debian's
# chromium, playwright-core from npm), builds and starts the example on a
# free loopback port, runs chat.test.mjs against it, and stops the server.
#
#   bash tests/browser/run.sh
#
# Needs root (or chromium already at /usr/bin/chromium), node >= 18 and npm.
# Every step is time-bounded; the server listens on 127.0.0.1 only.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
log_dir="$root/target/browser"
mkdir -p "$log_dir"

step() { printf '== %s\n' "$*"; }

# ---- Chromium (Debian's package; never a downloaded browser build) --------
if [ ! -x /usr/bin/chromium ]; then
  step "installing chromium (apt)"
  export DEBIAN_FRONTEND=noninteractive
  timeout 300 apt-get update -qq </dev/null
  timeout 600 apt-get install -y -qq chromium </dev/null >"$log_dir/apt.log" 2>&1 \
    || { tail -20 "$log_dir/apt.log"; echo "FAIL: could not install chromium"; exit 1; }
fi
/usr/bin/chromium --version 2>/dev/null || true

# ---- playwright-core (pinned in package.json / package-lock.json) ---------
if [ ! -f "$here/node_modules/playwright-core/package.json" ]; then
  step "installing playwright-core (npm)"
  # No browser download: playwright-core has no install script, and this
  # makes sure nothing else tries.
  export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
  (cd "$here" && timeout 300 npm ci --no-audit --no-fund --loglevel=error </dev/null)
fi

# ---- the chat server -------------------------------------------------------
step "building the chat example"
(cd "$root" && timeout 900 cargo build --quiet --example chat --features rooms)
server_bin="$root/target/debug/examples/chat"

server_log="$log_dir/server.log"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Port 0: the system picks a free port, the server prints the address.
timeout 300 "$server_bin" 127.0.0.1:0 >"$server_log" 2>&1 </dev/null &
server_pid=$!

url=""
for _ in $(seq 1 100); do   # up to 10 s
  url="$(sed -n 's#^chat server listening on \(http://127\.0\.0\.1:[0-9]*/\)$#\1#p' "$server_log")"
  [ -n "$url" ] && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$url" ]; then
  cat "$server_log"
  echo "FAIL: the chat server did not start"
  echo "browser: 0 passed, 1 failed"
  exit 1
fi
step "chat server at $url"

# ---- the test ----------------------------------------------------------------
status=0
timeout 180 node "$here/chat.test.mjs" "$url" </dev/null || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- server log ($server_log)"
  tail -40 "$server_log"
  if [ "$status" -eq 124 ]; then
    echo "FAIL: the browser test timed out"
    echo "browser: 0 passed, 1 failed"
  fi
fi
exit "$status"
