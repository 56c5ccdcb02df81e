#!/usr/bin/env bash
# The chat in headless Chromium, served twice: by examples/chat (chito
# reading its own sockets) and by chito-axum/examples/axum_chat (axum with
# chito_axum::WebSocketUpgrade). Installs what it needs (Debian's chromium,
# playwright-core from npm), builds both examples, starts each on a free
# loopback port, runs chat.test.mjs against both (one browser, one server
# after the other), and stops the servers.
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

# ---- the chat servers ----------------------------------------------------
step "building the chat examples (chito's own HTTP, and axum)"
# One cargo run for both, so chito is built once, with one set of features.
(cd "$root" && timeout 900 cargo build --quiet -p chito -p chito-axum \
  --example chat --example axum_chat --features chito/rooms,chito-axum/rooms)

declare -A server_pid=()
cleanup() {
  for pid in "${server_pid[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME: runs target/debug/examples/NAME on 127.0.0.1:0 (the system
# picks a free port, the server prints the address) with its output in
# $log_dir/NAME.log.
start() {
  timeout 300 "$root/target/debug/examples/$1" 127.0.0.1:0 >"$log_dir/$1.log" 2>&1 </dev/null &
  server_pid[$1]=$!
}

# url_of NAME: waits up to 10 s for the address NAME prints; fails the run
# if it never comes.
url_of() {
  local url="" pid="${server_pid[$1]}"
  for _ in $(seq 1 100); do
    url="$(sed -n 's#^chat server listening on \(http://127\.0\.0\.1:[0-9]*/\)$#\1#p' "$log_dir/$1.log")"
    [ -n "$url" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$url" ]; then
    cat "$log_dir/$1.log" >&2
    echo "FAIL: the $1 server did not start" >&2
    echo "browser: 0 passed, 1 failed" >&2
    exit 1
  fi
  printf '%s\n' "$url"
}

# Both start at once; each is waited for in turn.
start chat
start axum_chat
chat_url="$(url_of chat)"
axum_url="$(url_of axum_chat)"
step "chat servers at $chat_url (chat) and $axum_url (axum_chat)"

# ---- the test ----------------------------------------------------------------
status=0
timeout 300 node "$here/chat.test.mjs" "chat=$chat_url" "axum_chat=$axum_url" </dev/null \
  || status=$?
if [ "$status" -ne 0 ]; then
  for name in chat axum_chat; do
    echo "--- $name server log ($log_dir/$name.log)"
    tail -40 "$log_dir/$name.log"
  done
  if [ "$status" -eq 124 ]; then
    echo "FAIL: the browser test timed out"
    echo "browser: 0 passed, 1 failed"
  fi
fi
exit "$status"
