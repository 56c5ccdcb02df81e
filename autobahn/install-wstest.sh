#!/usr/bin/env bash
# Install the Autobahn WebSocket testsuite (`wstest`) into autobahn/.venv.
#
# wstest only runs on Python 2.7. Debian bookworm no longer ships Python 2.7,
# so we take python2.7 from Debian bullseye, using a throw-away apt
# configuration (private source list, private package lists, private cache)
# that is deleted when this script exits. The system's apt sources and
# package lists are never modified.
#
# Then a Python 2.7 virtualenv is created (virtualenv 20.15.1 is run from
# Python 3, installed into a temporary directory only) and a pinned set of
# packages is installed into it.
#
# Idempotent: if autobahn/.venv/bin/wstest already works, nothing is done.
# Non-interactive; meant to run as root (uses sudo for apt-get otherwise).
#
# Environment overrides:
#   AUTOBAHN_VENV            venv location          (default: autobahn/.venv)
#   AUTOBAHN_PYTHON2         python2.7 interpreter  (default: /usr/bin/python2.7,
#                                                    installed from bullseye if missing)
#   AUTOBAHN_DEBIAN_MIRROR   Debian mirror URL      (default: taken from the
#                                                    system's apt sources)
#   AUTOBAHN_FORCE_INSTALL=1 rebuild the venv even if wstest already works
set -euo pipefail

AB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${AUTOBAHN_VENV:-$AB_DIR/.venv}"
PY2="${AUTOBAHN_PYTHON2:-/usr/bin/python2.7}"
WSTEST_VERSION="25.10.1"

# The pinned package set wstest is known to work with.
PINS=(
  "setuptools==44.0.0"
  "txaio==2.1.0"
  "incremental==16.10.1"
  "pyOpenSSL==19.1.0"
  "cryptography==3.3.2"
  "Twisted==19.10.0"
  "zope.interface==4.6.0"
  "jinja2==2.11.3"
  "markupsafe==1.1.1"
  "Werkzeug==1.0.1"
  "klein==17.10.0"
  "service_identity==18.1.0"
  "unittest2==1.1.0"
  "six==1.16.0"
  "autobahn[twisted]==0.10.9"
  "autobahntestsuite==${WSTEST_VERSION}"
)
# Compiled here, so installed on its own: if it cannot be built, wstest
# still works, only slower (see wsaccel_works).
WSACCEL="wsaccel==0.6.2"
# Versions of the transitive dependencies, fixed so that a new upstream
# release can never change what gets installed (these are constraints only:
# they do not add packages).
CONSTRAINTS=(
  "Automat==22.10.0"
  "PyHamcrest==1.10.1"
  "attrs==21.4.0"
  "cffi==1.15.1"
  "constantly==15.1.0"
  "enum34==1.1.10"
  "hyperlink==21.0.0"
  "idna==2.10"
  "ipaddress==1.0.23"
  "linecache2==1.0.0"
  "pyasn1==0.5.1"
  "pyasn1-modules==0.3.0"
  "pycparser==2.21"
  "traceback2==1.4.0"
  "typing==3.10.0.0"
)

log() { echo "[install-wstest] $*"; }
die() { echo "[install-wstest] ERROR: $*" >&2; exit 1; }

wstest_works() {
  [ -x "$VENV/bin/wstest" ] || return 1
  "$VENV/bin/wstest" --autobahnversion 2>/dev/null | grep -q "AutobahnTestSuite ${WSTEST_VERSION}" || return 1
  "$VENV/bin/python" -c 'import twisted, OpenSSL, autobahn, autobahntestsuite' >/dev/null 2>&1
}

# wsaccel is the C extension autobahn uses, when importable, for frame masking
# and UTF-8 validation. Without it wstest does both in pure Python, and the
# compression sections (12.*, 13.*) take several times longer: 12.1.10 went
# from 20.7 s to 3.3 s with it. It is compiled here, so it needs Python.h.
wsaccel_works() {
  "$VENV/bin/python" -c 'import wsaccel.utf8validator, wsaccel.xormask' >/dev/null 2>&1
}

python2_works() {
  [ -x "$PY2" ] && "$PY2" -c 'import sys, ssl, zlib, ctypes, hashlib; assert sys.version_info[:2] == (2, 7)' >/dev/null 2>&1 || return 1
  # python2.7-dev: the headers wsaccel is compiled against.
  [ -r "$("$PY2" -c 'from distutils import sysconfig; print(sysconfig.get_python_inc())')/Python.h" ]
}

SUDO=()
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=(sudo -n); else SUDO=(false); fi
fi

# Builds wsaccel into the venv (a C compiler from the system's own apt
# sources if there is none). Never fatal: without it wstest is slower.
install_wsaccel() {
  if ! command -v cc >/dev/null 2>&1 && ! command -v gcc >/dev/null 2>&1; then
    log "no C compiler; installing gcc (system apt sources)"
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get -q -y --no-install-recommends install gcc libc6-dev \
      || log "WARNING: could not install gcc"
  fi
  log "pip install (py2.7): $WSACCEL"
  if ! "$VENV/bin/pip" install -q --no-cache-dir "$WSACCEL" || ! wsaccel_works; then
    log "WARNING: wsaccel did not build; wstest works, but 12.*/13.* run several times slower"
  fi
}

if [ "${AUTOBAHN_FORCE_INSTALL:-0}" != "1" ] && wstest_works; then
  if wsaccel_works; then
    log "wstest already installed and working: $VENV/bin/wstest (nothing to do)"
  else
    install_wsaccel
  fi
  exit 0
fi

START=$(date +%s)
WORK="$(mktemp -d "${TMPDIR:-/tmp}/install-wstest.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# ---------------------------------------------------------------------------
# 1. Python 2.7 (from Debian bullseye, via a private apt configuration)
# ---------------------------------------------------------------------------
detect_mirror() {
  local files=() f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] && files+=("$f")
  done
  [ "${#files[@]}" -gt 0 ] || return 0
  # Active (uncommented) one-line "deb URL ..." or deb822 "URIs: URL" entries;
  # the first plain .../debian archive wins (not debian-security).
  grep -hE '^[[:space:]]*(URIs:|deb[[:space:]])' "${files[@]}" 2>/dev/null \
    | grep -oE '(https?|ftp)://[^[:space:]]+' \
    | grep -E '/debian/?$' | head -n1 || true
}

if python2_works; then
  log "python2.7 and its headers present: $PY2"
else
  [ "$PY2" = "/usr/bin/python2.7" ] || die "AUTOBAHN_PYTHON2=$PY2 is not a working Python 2.7"
  command -v apt-get >/dev/null 2>&1 || die "python2.7 is missing and apt-get is not available"
  MIRROR="${AUTOBAHN_DEBIAN_MIRROR:-$(detect_mirror)}"
  MIRROR="${MIRROR:-http://deb.debian.org/debian}"
  MIRROR="${MIRROR%/}"
  log "python2.7 or python2.7-dev not found; installing them from Debian bullseye ($MIRROR)"
  log "using a private apt config in $WORK/apt (system sources and lists untouched)"

  APTDIR="$WORK/apt"
  mkdir -p "$APTDIR/sources.list.d" "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial"
  {
    echo "Types: deb"
    echo "URIs: $MIRROR"
    echo "Suites: bullseye"
    echo "Components: main"
    if [ -r /usr/share/keyrings/debian-archive-keyring.gpg ]; then
      echo "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
    fi
  } > "$APTDIR/sources.list.d/autobahn-bullseye.sources"
  # The apt state dir has to be readable by apt's unprivileged download user.
  chmod -R a+rX "$WORK"

  APT_OPTS=(
    -o "Dir::Etc::SourceList=/dev/null"
    -o "Dir::Etc::SourceParts=$APTDIR/sources.list.d"
    -o "Dir::State::Lists=$APTDIR/lists"
    -o "Dir::Cache=$APTDIR/cache"
    -o "APT::Get::List-Cleanup=false"
    -o "Acquire::Languages=none"
    -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
    -o "Acquire::Retries=3"
  )
  export DEBIAN_FRONTEND=noninteractive
  log "apt-get update (private bullseye index only)"
  "${SUDO[@]}" apt-get "${APT_OPTS[@]}" -q update \
    || die "apt-get update for bullseye failed (need root or passwordless sudo)"
  log "apt-get install python2.7 python2.7-dev (bullseye)"
  "${SUDO[@]}" apt-get "${APT_OPTS[@]}" -q -y --no-install-recommends install python2.7 python2.7-dev \
    || die "installing python2.7 from bullseye failed"
  python2_works || die "python2.7 was installed but does not work"
  log "installed $("$PY2" -c 'import sys; print(sys.version.split()[0])' 2>&1)"
fi

# ---------------------------------------------------------------------------
# 2. virtualenv 20.15.1, run from Python 3 (installed into a temp dir only)
# ---------------------------------------------------------------------------
PY3="$(command -v python3 || true)"
[ -n "$PY3" ] || die "python3 is required to run virtualenv"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_ROOT_USER_ACTION=ignore
if ! "$PY3" -m pip --version >/dev/null 2>&1; then
  log "python3 has no pip; installing Debian's python3-pip"
  export DEBIAN_FRONTEND=noninteractive
  if ! "${SUDO[@]}" apt-get -q -y --no-install-recommends install python3-pip; then
    "${SUDO[@]}" apt-get -q update
    "${SUDO[@]}" apt-get -q -y --no-install-recommends install python3-pip
  fi
  PY3=/usr/bin/python3
fi

log "pip install virtualenv==20.15.1 (into $WORK/virtualenv only)"
"$PY3" -m pip install -q --no-cache-dir --target "$WORK/virtualenv" "virtualenv==20.15.1"

if [ -e "$VENV" ]; then
  log "removing broken/outdated venv $VENV"
  rm -rf "$VENV"
fi
log "creating Python 2.7 virtualenv $VENV"
PYTHONPATH="$WORK/virtualenv" VIRTUALENV_OVERRIDE_APP_DATA="$WORK/virtualenv-appdata" \
  "$PY3" -m virtualenv --no-periodic-update -p "$PY2" "$VENV"

# ---------------------------------------------------------------------------
# 3. The pinned wstest package set
# ---------------------------------------------------------------------------
printf '%s\n' "${CONSTRAINTS[@]}" > "$WORK/constraints.txt"
log "pip install (py2.7): ${PINS[*]}"
"$VENV/bin/pip" install -q --no-cache-dir -c "$WORK/constraints.txt" "${PINS[@]}"

wstest_works || die "wstest was installed but does not run"
install_wsaccel
log "$("$VENV/bin/wstest" --autobahnversion | tr '\n' ' ')"
log "done in $(( $(date +%s) - START ))s: $VENV/bin/wstest"
