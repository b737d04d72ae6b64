#!/usr/bin/env bash
# The test command: starts what the tests need (PostgreSQL, Redis), then format check, clippy with
# -D warnings, and the whole test suite. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

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

# Kafka-compatible test broker (tansu): installed once, started per run on a free port, stopped on exit.
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v tansu >/dev/null 2>&1; then
  echo "installing tansu (the Kafka-compatible test broker; about 8 minutes, once)"
  cargo install tansu --locked --features dynostore,libsql
fi
KAFKA_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
tansu broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
  --storage-engine memory://tansu/ >"${TMPDIR:-/tmp}/smb-tansu-$KAFKA_PORT.log" 2>&1 &
TANSU_PID=$!
trap 'kill $TANSU_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do (echo >"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null && break; sleep 0.2; done
export SMB_TEST_KAFKA="127.0.0.1:$KAFKA_PORT"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The black-box tests start the real `smb` binary; test builds do not build binaries of other packages.
cargo build -p smb --bin smb
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
