#!/usr/bin/env bash
# Starts moto's server (an S3 stand-in for the images-bucket adapter tests) on a free loopback port, and prints
# `export FACEMAKE_TEST_S3_ENDPOINT=...` once it answers. Installs the pinned moto into infra/.local/moto-venv
# when it is not there yet (needs PyPI). moto serves S3 only here: DynamoDB tests use DynamoDB Local, whose
# conditional writes are atomic under concurrency.
# Usage: eval "$(infra/scripts/moto.sh start)"   ...   infra/scripts/moto.sh stop
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
state="$root/infra/.local"
venv="$state/moto-venv"
version=5.2.5
mkdir -p "$state"

case "${1:-start}" in
start)
  if ! "$venv/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$version')" 2>/dev/null; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet "moto[server]==$version" >&2
  fi
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
  nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$state/moto.log" 2>&1 &
  echo $! >"$state/moto.pid"
  for _ in $(seq 1 120); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "export FACEMAKE_TEST_S3_ENDPOINT=http://127.0.0.1:$port"
      exit 0
    fi
    if ! kill -0 "$(cat "$state/moto.pid")" 2>/dev/null; then
      echo "moto exited:" >&2; cat "$state/moto.log" >&2; exit 1
    fi
    sleep 0.25
  done
  echo "moto did not start within 30 s" >&2; exit 1
  ;;
stop)
  if [ -f "$state/moto.pid" ]; then
    kill "$(cat "$state/moto.pid")" 2>/dev/null || true
    rm -f "$state/moto.pid"
  fi
  ;;
*)
  echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
