#!/usr/bin/env bash
# The chat in headless Chromium, served three times: by examples/chat
# (chito reading its own sockets), by chito-axum/examples/axum_chat (axum
# with chito_axum::WebSocketUpgrade), and by two nodes of a cluster
# (chito-backplane/examples/chat_node over a redis-server started here).
# Installs what it needs (Debian's chromium and redis-server, playwright-core
# from npm), builds the examples, starts each server on a free loopback port,
# runs chat.test.mjs against them (one browser, one target after the other),
# and stops the servers. Then the Socket.IO chat
# (chito-socketio/examples/socketio_chat) through its own script,
# chito-socketio/tests/node/browser.sh.
#
#   bash tests/browser/run.sh
#
# Needs root (or chromium already at /usr/bin/chromium and redis-server on
# the PATH), node >= 18 and npm. Every step is time-bounded; everything
# listens on 127.0.0.1 only.
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

# ---- redis-server (Debian's package), for the cluster's nodes -------------
if ! command -v redis-server >/dev/null; then
  step "installing redis-server (apt)"
  export DEBIAN_FRONTEND=noninteractive
  timeout 300 apt-get update -qq </dev/null
  timeout 600 apt-get install -y -qq redis-server </dev/null >"$log_dir/apt-redis.log" 2>&1 \
    || { tail -20 "$log_dir/apt-redis.log"; echo "FAIL: could not install redis-server"; exit 1; }
fi

# ---- playwright-core (pinned in package.json / package-lock.json) ---------
if [ ! -f "$here/node_modules/playwright-core/package.json" ]; then
  step "installing playwright-core (npm)"
  # No browser download: playwright-core has no install script, and this
  # makes sure nothing else tries.
  export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
  (cd "$here" && timeout 300 npm ci --no-audit --no-fund --loglevel=error </dev/null)
fi

# ---- the chat servers ----------------------------------------------------
step "building the chat examples (chito's own HTTP, axum, and the cluster node)"
# One cargo run for all, so chito is built once, with one set of features.
(cd "$root" && timeout 900 cargo build --quiet -p chito -p chito-axum -p chito-backplane \
  --example chat --example axum_chat --example chat_node --features chito/rooms,chito-axum/rooms)

declare -A server_pid=()
# Names in start order: stopped in reverse, so the cluster's nodes say
# goodbye through a broker that is still there.
started=()
cleanup() {
  local i pid
  for ((i = ${#started[@]} - 1; i >= 0; i--)); do
    pid="${server_pid[${started[i]}]}"
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME [EXAMPLE ARGS...]: runs target/debug/examples/EXAMPLE (NAME
# by default) with ARGS (127.0.0.1:0 by default: the system picks a free
# port, the server prints the address) with its output in
# $log_dir/NAME.log.
start() {
  local name="$1" example="${2:-$1}"
  local args=("${@:3}")
  [ "${#args[@]}" -gt 0 ] || args=(127.0.0.1:0)
  timeout 300 "$root/target/debug/examples/$example" "${args[@]}" \
    >"$log_dir/$name.log" 2>&1 </dev/null &
  server_pid[$name]=$!
  started+=("$name")
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

# A free loopback port (the system's choice, released at once).
free_port() {
  node -e "const s = require('net').createServer().listen(0, '127.0.0.1',
    () => { console.log(s.address().port); s.close(); })"
}

# The cluster's broker: no persistence, loopback only; waited for with
# redis-cli (Debian's redis-tools, which redis-server depends on).
redis_port="$(free_port)"
timeout 300 redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$log_dir" >"$log_dir/redis.log" 2>&1 </dev/null &
server_pid[redis]=$!
started+=(redis)
for _ in $(seq 1 100); do
  [ "$(redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null)" = PONG ] && break
  sleep 0.1
done
backplane="redis://127.0.0.1:$redis_port"

# All start at once; each is waited for in turn.
start chat
start axum_chat
start node1 chat_node --listen 127.0.0.1:0 --backplane "$backplane"
start node2 chat_node --listen 127.0.0.1:0 --backplane "$backplane"
chat_url="$(url_of chat)"
axum_url="$(url_of axum_chat)"
node1_url="$(url_of node1)"
node2_url="$(url_of node2)"
step "chat servers at $chat_url (chat) and $axum_url (axum_chat)"
step "cluster nodes at $node1_url and $node2_url over $backplane"

# ---- the test ----------------------------------------------------------------
status=0
timeout 300 node "$here/chat.test.mjs" "chat=$chat_url" "axum_chat=$axum_url" \
  "cluster=$node1_url,$node2_url" </dev/null || status=$?
if [ "$status" -ne 0 ]; then
  for name in chat axum_chat node1 node2 redis; do
    echo "--- $name server log ($log_dir/$name.log)"
    tail -40 "$log_dir/$name.log"
  done
  if [ "$status" -eq 124 ]; then
    echo "FAIL: the browser test timed out"
    echo "browser: 0 passed, 1 failed"
  fi
fi

# ---- the Socket.IO chat ----------------------------------------------------
# Its own packages (socket.io-client's bundle, playwright-core) and server.
step "the Socket.IO chat (chito-socketio/examples/socketio_chat)"
timeout 600 bash "$root/chito-socketio/tests/node/browser.sh" </dev/null || status=1
exit "$status"
