#!/usr/bin/env bash
# Run the Autobahn WebSocket conformance suite against chito.
#
#   autobahn/run.sh server [--runtime blocking|tokio|uring|axum]  # wstest tests our server
#   autobahn/run.sh client [--runtime blocking|tokio]       # wstest tests our client
#
# Options (each also settable through the environment):
#   --runtime X        blocking or tokio: passed to the example as a trailing
#                      `--runtime X`, only when given (the example's default
#                      is blocking); uring (server only, Linux): the
#                      example's io_uring loop (built with --features
#                      uring); axum (server only): the server is
#                      chito-axum's example autobahn_axum, the same echo
#                      behind axum::serve and chito_axum::WebSocketUpgrade
#   --cases LIST       case patterns to run, comma/space separated
#                      (AUTOBAHN_CASES; default: the spec file's, i.e. "*")
#   --exclude LIST     case patterns to skip, comma/space separated; an empty
#                      string excludes nothing (AUTOBAHN_EXCLUDE; default: the
#                      spec file's, i.e. nothing)
#   --port N           port used on 127.0.0.1 (AUTOBAHN_PORT; default 9001)
#
# Other environment knobs:
#   AUTOBAHN_TIMEOUT          seconds allowed for wstest and for our client (1200)
#   AUTOBAHN_STARTUP_TIMEOUT  seconds to wait for the port to accept TCP (60)
#   AUTOBAHN_SKIP_BUILD=1     do not run cargo build
#   AUTOBAHN_REPORTS_DIR      reports root instead of autobahn/reports (for
#                             runs side by side; use another port too)
#   AUTOBAHN_SERVER_BIN / AUTOBAHN_CLIENT_BIN
#                             programs to test instead of the release examples
#
# Exit status is 0 only if everything ran and every case was OK/INFORMATIONAL.
set -euo pipefail

AB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$AB_DIR/.." && pwd)"
VENV="${AUTOBAHN_VENV:-$AB_DIR/.venv}"
AGENT="chito"

log() { echo "[autobahn] $*"; }
die() { echo "[autobahn] ERROR: $*" >&2; exit 2; }
usage() {
  sed -n '2,28p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit "${1:-2}"
}

# ---------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------
MODE=""
RUNTIME=""
PORT="${AUTOBAHN_PORT:-9001}"
CASES="${AUTOBAHN_CASES-}"
EXCLUDE_SET=0
EXCLUDE=""
if [ -n "${AUTOBAHN_EXCLUDE+x}" ]; then EXCLUDE_SET=1; EXCLUDE="$AUTOBAHN_EXCLUDE"; fi

while [ $# -gt 0 ]; do
  case "$1" in
    server|client) [ -z "$MODE" ] || die "mode given twice"; MODE="$1" ;;
    --runtime) [ $# -ge 2 ] || die "--runtime needs a value"; RUNTIME="$2"; shift ;;
    --runtime=*) RUNTIME="${1#*=}" ;;
    --cases) [ $# -ge 2 ] || die "--cases needs a value"; CASES="$2"; shift ;;
    --cases=*) CASES="${1#*=}" ;;
    --exclude) [ $# -ge 2 ] || die "--exclude needs a value"; EXCLUDE_SET=1; EXCLUDE="$2"; shift ;;
    --exclude=*) EXCLUDE_SET=1; EXCLUDE="${1#*=}" ;;
    --port) [ $# -ge 2 ] || die "--port needs a value"; PORT="$2"; shift ;;
    --port=*) PORT="${1#*=}" ;;
    -h|--help) usage 0 ;;
    *) echo "unknown argument: $1" >&2; usage 2 ;;
  esac
  shift
done
[ -n "$MODE" ] || usage 2
case "$RUNTIME" in
  ""|blocking|tokio) ;;
  axum) [ "$MODE" = server ] || die "--runtime axum is a server runtime (chito-axum has no client)" ;;
  uring) [ "$MODE" = server ] || die "--runtime uring is a server runtime (chito::uring has no client)" ;;
  *) die "--runtime must be blocking, tokio, uring or axum (got '$RUNTIME')" ;;
esac
case "$PORT" in
  ''|*[!0-9]*) die "invalid port '$PORT'" ;;
esac
[ "$PORT" -ge 1 ] && [ "$PORT" -le 65535 ] || die "invalid port '$PORT'"
TIMEOUT="${AUTOBAHN_TIMEOUT:-1200}"
STARTUP_TIMEOUT="${AUTOBAHN_STARTUP_TIMEOUT:-60}"

RUNTIME_ARGS=()
# The axum server is a program of its own, which takes just the address.
[ -z "$RUNTIME" ] || [ "$RUNTIME" = axum ] || RUNTIME_ARGS=(--runtime "$RUNTIME")

if [ "$MODE" = server ]; then
  SPEC_SRC="$AB_DIR/fuzzingclient.json"; WSTEST_MODE=fuzzingclient
else
  SPEC_SRC="$AB_DIR/fuzzingserver.json"; WSTEST_MODE=fuzzingserver
fi

command -v python3 >/dev/null 2>&1 || die "python3 is required"
command -v timeout >/dev/null 2>&1 || die "timeout (coreutils) is required"

# ---------------------------------------------------------------------------
# Process bookkeeping: everything we start is stopped on exit.
# ---------------------------------------------------------------------------
BG_PIDS=()
TMP="$(mktemp -d "${TMPDIR:-/tmp}/chito-autobahn.XXXXXX")"
stop_pid() {
  # TERM, then KILL after 5s. A process that leads its own process group
  # (timeout does) is stopped together with its group.
  local pid="$1" target="$1" _
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  if [ "$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ')" = "$pid" ]; then target="-$pid"; fi
  kill -TERM -- "$target" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "$target" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local pid
  for pid in "${BG_PIDS[@]}"; do stop_pid "$pid"; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_open() {
  # Plain TCP connect through bash's /dev/tcp (loopback only).
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null
}

wait_for_port() {
  # wait_for_port PID WHAT: until 127.0.0.1:$PORT accepts, PID dies, or timeout.
  local pid="$1" what="$2" deadline=$(( $(date +%s) + STARTUP_TIMEOUT ))
  while ! port_open; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$what exited before listening on 127.0.0.1:$PORT"
      return 1
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "$what did not listen on 127.0.0.1:$PORT within ${STARTUP_TIMEOUT}s"
      return 1
    fi
    sleep 0.2
  done
  log "$what is listening on 127.0.0.1:$PORT"
}

show_log_tail() {
  if [ -s "$1" ]; then
    log "last lines of $1:"
    tail -n 40 "$1" | sed 's/^/    /'
  fi
}

# ---------------------------------------------------------------------------
# wstest, the spec, the build
# ---------------------------------------------------------------------------
cd "$REPO"
if ! { [ -x "$VENV/bin/wstest" ] && "$VENV/bin/wstest" --autobahnversion >/dev/null 2>&1; }; then
  log "wstest not installed; running install-wstest.sh"
  AUTOBAHN_VENV="$VENV" bash "$AB_DIR/install-wstest.sh"
fi

# Effective spec: a temp copy of the checked-in one with port, cases and
# exclusions applied. wstest resolves "outdir" against its working
# directory (not the spec's location); we run it from autobahn/ and also pin
# the outdir to an absolute path so the reports always land in autobahn/.
SPEC="$TMP/$WSTEST_MODE.json"
OUTDIR="$(python3 - "$SPEC_SRC" "$SPEC" "$WSTEST_MODE" "$PORT" "$AB_DIR" \
          "$CASES" "$EXCLUDE_SET" "$EXCLUDE" "$AGENT" "${AUTOBAHN_REPORTS_DIR-}" <<'PY'
import json, os, re, sys
src, dst, mode, port, ab_dir, cases, exclude_set, exclude, agent, reports_root = sys.argv[1:]
with open(src) as f:
    spec = json.load(f)
url = "ws://127.0.0.1:%s" % port
if mode == "fuzzingclient":
    servers = spec.get("servers") or [{"agent": agent}]
    for s in servers:
        s["url"] = url
        s.setdefault("agent", agent)
    spec["servers"] = servers
    default_out = "./reports/servers"
else:
    spec["url"] = url
    default_out = "./reports/clients"
split = lambda s: [p for p in re.split(r"[,\s]+", s) if p]
if cases.strip():
    spec["cases"] = split(cases)
if exclude_set == "1":
    spec["exclude-cases"] = split(exclude)
if reports_root:
    outdir = os.path.join(os.path.abspath(reports_root), os.path.basename(default_out))
else:
    outdir = os.path.normpath(os.path.join(ab_dir, spec.get("outdir") or default_out))
spec["outdir"] = outdir
with open(dst, "w") as f:
    json.dump(spec, f, indent=2)
    f.write("\n")
print(outdir)
PY
)"
INDEX="$OUTDIR/index.json"
# How many cases wstest will run for this spec (so a peer that stops early
# cannot pass on a partial report).
count_cases() {
  (cd "$AB_DIR" && "$VENV/bin/python" - "$SPEC" <<'PY'
import json, sys
from autobahntestsuite.case import Cases, CaseCategories, CaseSubCategories, CaseSetname, CaseBasename
from autobahntestsuite.caseset import CaseSet
spec = json.load(open(sys.argv[1]))
cs = CaseSet(CaseSetname, CaseBasename, Cases, CaseCategories, CaseSubCategories)
print(len(cs.parseSpecCases(spec)))
PY
  )
}
EXPECTED="$(count_cases 2>/dev/null)" || EXPECTED=""

mkdir -p "$OUTDIR"
# Never summarize a stale report from an earlier run.
rm -f "$INDEX" "$OUTDIR/index.html" "$OUTDIR"/*_case_*.json "$OUTDIR"/*_case_*.html
LOGDIR="$(dirname "$OUTDIR")"
mkdir -p "$LOGDIR"
log "mode=$MODE wstest=$WSTEST_MODE port=$PORT runtime=${RUNTIME:-default} cases=${EXPECTED:-?} timeout=${TIMEOUT}s"
log "effective spec ($SPEC):"
sed 's/^/    /' "$SPEC"

TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$REPO/$TARGET_DIR" ;; esac
if [ "$RUNTIME" = axum ]; then
  SERVER_NAME=autobahn_axum
  BUILD=(cargo build --release -p chito-axum --example autobahn_axum)
elif [ "$RUNTIME" = uring ]; then
  SERVER_NAME=autobahn_server
  BUILD=(cargo build --release --features tokio,uring --example autobahn_server --example autobahn_client)
else
  SERVER_NAME=autobahn_server
  BUILD=(cargo build --release --features tokio --example autobahn_server --example autobahn_client)
fi
SERVER_BIN="${AUTOBAHN_SERVER_BIN:-$TARGET_DIR/release/examples/$SERVER_NAME}"
CLIENT_BIN="${AUTOBAHN_CLIENT_BIN:-$TARGET_DIR/release/examples/autobahn_client}"
if [ "${AUTOBAHN_SKIP_BUILD:-0}" != "1" ]; then
  log "${BUILD[*]}"
  "${BUILD[@]}"
fi

if port_open; then
  die "something is already listening on 127.0.0.1:$PORT; stop it or set AUTOBAHN_PORT"
fi

# wstest, with its listening sockets bound to loopback only (it binds all
# interfaces by default). -u 0 disables the fuzzingserver's extra web UI on
# port 8080. Always started as `(cd "$AB_DIR" && exec "${WSTEST[@]}" ...)` so
# that, in the background, $! is the timeout process itself (which forwards
# SIGTERM to wstest) and reports land relative to autobahn/.
WSTEST=(timeout --kill-after=10 "$TIMEOUT" "$VENV/bin/python" -c '
import sys
from autobahn.twisted import websocket
import autobahntestsuite.fuzzing as fuzzing
_listen = websocket.listenWS
def listen_loopback(factory, contextFactory=None, backlog=50, interface=""):
    return _listen(factory, contextFactory, backlog, interface or "127.0.0.1")
fuzzing.listenWS = listen_loopback
from autobahntestsuite import wstest
sys.argv[0] = "wstest"
wstest.run()
')

FAILED=0
START=$(date +%s)
if [ "$MODE" = server ]; then
  [ -x "$SERVER_BIN" ] || die "$SERVER_BIN not found (cargo build failed?)"
  SERVER_LOG="$LOGDIR/$SERVER_NAME.log"
  log "starting $SERVER_BIN 127.0.0.1:$PORT ${RUNTIME_ARGS[*]} (log: $SERVER_LOG)"
  "$SERVER_BIN" "127.0.0.1:$PORT" "${RUNTIME_ARGS[@]}" >"$SERVER_LOG" 2>&1 &
  SERVER_PID=$!
  BG_PIDS+=("$SERVER_PID")
  if ! wait_for_port "$SERVER_PID" "$SERVER_NAME"; then
    show_log_tail "$SERVER_LOG"
    exit 1
  fi

  log "wstest -m fuzzingclient (testing our server)"
  set +e
  (cd "$AB_DIR" && exec "${WSTEST[@]}" -m fuzzingclient -s "$SPEC")
  rc=$?
  set -e
  if [ "$rc" -ne 0 ]; then
    if [ "$rc" -eq 124 ]; then log "wstest timed out (limit ${TIMEOUT}s)"
    else log "wstest exited with status $rc"; fi
    FAILED=1
  fi
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    set +e; wait "$SERVER_PID"; src=$?; set -e
    log "$SERVER_NAME died during the run (exit status $src)"
    show_log_tail "$SERVER_LOG"
    FAILED=1
  fi
  stop_pid "$SERVER_PID"
else
  [ -x "$CLIENT_BIN" ] || die "$CLIENT_BIN not found (cargo build failed?)"
  WSTEST_LOG="$LOGDIR/wstest_fuzzingserver.log"
  log "starting wstest -m fuzzingserver (log: $WSTEST_LOG)"
  (cd "$AB_DIR" && exec "${WSTEST[@]}" -m fuzzingserver -u 0 -s "$SPEC") >"$WSTEST_LOG" 2>&1 &
  WSTEST_PID=$!
  BG_PIDS+=("$WSTEST_PID")
  if ! wait_for_port "$WSTEST_PID" "wstest fuzzingserver"; then
    show_log_tail "$WSTEST_LOG"
    exit 1
  fi

  log "running $CLIENT_BIN ws://127.0.0.1:$PORT $AGENT ${RUNTIME_ARGS[*]}"
  set +e
  timeout --kill-after=10 "$TIMEOUT" "$CLIENT_BIN" "ws://127.0.0.1:$PORT" "$AGENT" "${RUNTIME_ARGS[@]}"
  rc=$?
  set -e
  if [ "$rc" -ne 0 ]; then
    if [ "$rc" -eq 124 ]; then log "autobahn_client exited with status 124 (timed out? limit ${TIMEOUT}s)"
    else log "autobahn_client exited with status $rc"; fi
    FAILED=1
  fi
  if [ ! -f "$INDEX" ] && kill -0 "$WSTEST_PID" 2>/dev/null; then
    # The client did not get as far as /updateReports: ask for the reports
    # ourselves so whatever cases did run can be inspected. Still a failure.
    log "no report written by the client; requesting /updateReports?agent=$AGENT"
    FAILED=1
    python3 - "$PORT" "$AGENT" <<'PY' || log "could not request the report"
import base64, os, socket, sys
port, agent = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port), timeout=30)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(("GET /updateReports?agent=%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
           "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
           "Sec-WebSocket-Version: 13\r\n\r\n" % (agent, port, key)).encode())
data = b""
while b"\x88" not in data.partition(b"\r\n\r\n")[2]:   # wait for the close frame
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
s.close()
PY
  fi
  stop_pid "$WSTEST_PID"
  [ "$FAILED" -eq 0 ] || show_log_tail "$WSTEST_LOG"
fi
log "test run took $(( $(date +%s) - START ))s; reports in $OUTDIR (open index.html)"

# ---------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------
set +e
EXPECT_ARGS=()
case "$EXPECTED" in ''|*[!0-9]*) ;; *) EXPECT_ARGS=(--expect-cases "$EXPECTED") ;; esac
python3 "$AB_DIR/summarize.py" --agent "$AGENT" "${EXPECT_ARGS[@]}" "$INDEX"
rc=$?
set -e
[ "$rc" -eq 0 ] || FAILED=1
if [ "$FAILED" -ne 0 ]; then
  log "FAILED"
  exit 1
fi
log "PASSED"
