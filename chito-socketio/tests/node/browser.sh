#!/usr/bin/env bash
# The Socket.IO chat (chito-socketio/examples/socketio_chat) in headless
# Chromium: installs what it needs (Debian's chromium; socket.io-client and
# playwright-core from this directory's package-lock.json), builds and
# starts the example on a free loopback port, runs chat.browser.mjs
# against it and stops it. tests/browser/run.sh (CI's browser step) calls
# this; it also runs alone:
#
#   bash chito-socketio/tests/node/browser.sh
#
# Every step is time-bounded; the server listens on 127.0.0.1 only.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
log_dir="$root/target/browser"
mkdir -p "$log_dir"

step() { printf '== %s\n' "$*"; }
started=$(date +%s)

if [ ! -x /usr/bin/chromium ]; then
  step "installing chromium (apt)"
  export DEBIAN_FRONTEND=noninteractive
  timeout 300 apt-get update -qq </dev/null
  timeout 600 apt-get install -y -qq chromium </dev/null >"$log_dir/apt.log" 2>&1 \
    || { tail -20 "$log_dir/apt.log"; echo "FAIL: could not install chromium"; exit 1; }
fi

if [ ! -f "$here/node_modules/playwright-core/package.json" ] \
  || [ ! -f "$here/node_modules/socket.io-client/dist/socket.io.min.js" ]; then
  step "installing socket.io-client and playwright-core (npm ci)"
  export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
  (cd "$here" && timeout 300 npm ci --no-audit --no-fund --loglevel=error </dev/null)
fi

step "building the Socket.IO chat example"
(cd "$root" && timeout 900 cargo build --quiet -p chito-socketio --example socketio_chat)

log="$log_dir/socketio_chat.log"
timeout 300 "$root/target/debug/examples/socketio_chat" --listen 127.0.0.1:0 >"$log" 2>&1 </dev/null &
server=$!
cleanup() {
  if kill -0 "$server" 2>/dev/null; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

url=""
for _ in $(seq 1 100); do
  url="$(sed -n 's#^chat server listening on \(http://127\.0\.0\.1:[0-9]*/\)$#\1#p' "$log")"
  [ -n "$url" ] && break
  kill -0 "$server" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$url" ]; then
  cat "$log" >&2
  echo "FAIL: the socketio_chat server did not start"
  echo "socketio-browser: 0 passed, 1 failed"
  exit 1
fi
step "socketio_chat at $url"

status=0
timeout 180 node "$here/chat.browser.mjs" "$url" </dev/null || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- socketio_chat server log ($log)"
  tail -40 "$log"
  if [ "$status" -eq 124 ]; then
    echo "FAIL: the Socket.IO browser test timed out"
    echo "socketio-browser: 0 passed, 1 failed"
  fi
fi
step "Socket.IO browser test: $(( $(date +%s) - started )) s"
exit "$status"
