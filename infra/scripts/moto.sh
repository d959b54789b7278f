#!/usr/bin/env bash
# Starts moto's server (an S3 stand-in for the images-bucket adapter tests) on a free loopback port, and prints
# `export FACEMAKE_TEST_S3_ENDPOINT=...` once it answers. Installs the pinned moto into infra/.local/moto-venv
# when it is not there yet (needs PyPI). moto serves S3 only here: DynamoDB tests use DynamoDB Local, whose
# conditional writes are atomic under concurrency.
# Usage: eval "$(infra/scripts/moto.sh start)"   ...   infra/scripts/moto.sh stop
#        infra/scripts/moto.sh start|reuse|stop NAME   (an instance of its own, see service.sh)
# `reuse` prints the endpoint of the instance NAME when it is still running, and starts it otherwise.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/infra/.local/moto-venv"
version=5.2.5
# shellcheck source=infra/scripts/service.sh
. "$root/infra/scripts/service.sh"

launch() {  # launch PORT LOG: starts it in the background
  if ! "$venv/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$version')" 2>/dev/null; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet "moto[server]==$version" >&2
  fi
  nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$1" >"$2" 2>&1 &
}

service_main moto moto FACEMAKE_TEST_S3_ENDPOINT "$@"
