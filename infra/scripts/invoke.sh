#!/usr/bin/env bash
# Runs one deployed function once, as Lambda would, on local stand-ins and without Docker
# (docs/local-api.md#invoke-one-function-locally):
#
#   infra/scripts/invoke.sh FUNCTION events/FIXTURE.json [--as +14155550123] [--env NAME=VALUE]...
#   infra/scripts/invoke.sh --stop        # stops the DynamoDB Local and moto it keeps running
#
# FUNCTION is a directory under functions/. The script
# 1. reuses the DynamoDB Local and moto it started before (instances `invoke-dynamodb-local` and `invoke-moto`,
#    state in infra/.local/), or starts them; under the test command (FACEMAKE_TEST_DYNAMODB_ENDPOINT and
#    FACEMAKE_TEST_S3_ENDPOINT set) it uses those instead;
# 2. builds the function and `local-stage` (infra/bench), debug, sharing the test command's build;
# 3. runs local-stage: the template's tables (named FACEMAKE_INVOKE_PREFIX, default `invoke-`, + the logical id,
#    seeded with the catalogue), the bucket and the stand-in secrets the function's environment names, that
#    environment (template.yaml's Globals and the function's own, references resolved to those names), and with
#    --as an access token of that number, signed in through the local API and put in the event's
#    `authorization` header; --env sets or overrides a variable;
# 4. starts cargo-lambda's Lambda emulator (`cargo lambda watch --only-lambda-apis`, cargo-lambda 1.9.2 from
#    infra/scripts/cargo-lambda.sh), starts the function's binary against it with exactly that environment (and
#    nothing of this shell's), and sends it the event with `cargo lambda invoke`.
# The response goes to stdout, the function's logs to stderr. Exits non-zero when the function does not answer:
# it fails at start, returns an error, or takes longer than FACEMAKE_INVOKE_TIMEOUT seconds (default: its
# Timeout in template.yaml plus 30 for the start). An HTTP error status in the response is an answer.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

usage() {
  echo "usage: $0 FUNCTION events/FIXTURE.json [--as PHONE] [--env NAME=VALUE]...   |   $0 --stop" >&2
  exit 2
}

if [ "${1:-}" = --stop ]; then
  infra/scripts/dynamodb-local.sh stop invoke-dynamodb-local
  infra/scripts/moto.sh stop invoke-moto
  exit 0
fi
[ "$#" -ge 2 ] || usage
function="$1"
fixture="$2"
shift 2
stage_args=()
while [ "$#" -gt 0 ]; do
  case "$1" in
  --as | --env)
    [ "$#" -ge 2 ] || usage
    stage_args+=("$1" "$2")
    shift 2
    ;;
  *) usage ;;
  esac
done
if [ ! -f "functions/$function/Cargo.toml" ]; then
  known=(functions/*/)
  known=("${known[@]#functions/}")
  echo "$function is not a function (one of: ${known[*]%/})" >&2
  exit 2
fi
[ -f "$fixture" ] || { echo "no fixture $fixture" >&2; exit 2; }

lambda_bin=$(infra/scripts/cargo-lambda.sh)
export PATH="$lambda_bin:$PATH"

if [ -z "${FACEMAKE_TEST_DYNAMODB_ENDPOINT:-}" ] || [ -z "${FACEMAKE_TEST_S3_ENDPOINT:-}" ]; then
  eval "$(infra/scripts/dynamodb-local.sh reuse invoke-dynamodb-local)"
  eval "$(infra/scripts/moto.sh reuse invoke-moto)"
fi

# `--test cold_start` (send-code's smallest test) makes this a build with a test target, so cargo resolves the
# dependencies' features as `cargo test` does and reuses the test command's build; a plain `cargo build` resolves
# them without the dev-dependencies and rebuilds hyper, the AWS SDK and everything on them (minutes).
cargo build --locked --bin local-stage --bin "$function" --test cold_start >&2
bin="${CARGO_TARGET_DIR:-$root/target}/debug"

work=$(mktemp -d)
watch_pid=""
function_pid=""
invoke_pid=""
cleanup() {
  for pid in "$invoke_pid" "$function_pid" "$watch_pid"; do
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  done
  rm -rf "$work"
}
trap cleanup EXIT

"$bin/local-stage" "$function" --event "$fixture" --out "$work" "${stage_args[@]+"${stage_args[@]}"}"
timeout="${FACEMAKE_INVOKE_TIMEOUT:-$(($(cat "$work/timeout") + 30))}"
env_vars=()
while IFS= read -r line; do env_vars+=("$line"); done <"$work/env"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
cargo lambda watch --only-lambda-apis --invoke-address 127.0.0.1 --invoke-port "$port" >"$work/watch.log" 2>&1 &
watch_pid=$!
for _ in $(seq 1 120); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  if ! kill -0 "$watch_pid" 2>/dev/null; then
    echo "cargo lambda watch exited:" >&2; cat "$work/watch.log" >&2; exit 1
  fi
  sleep 0.25
done

# The function sees only its environment, as in Lambda: nothing of this shell's (AWS_PROFILE and the like).
env -i "${env_vars[@]}" "AWS_LAMBDA_RUNTIME_API=http://127.0.0.1:$port/.rt/$function" "$bin/$function" >&2 &
function_pid=$!
cargo lambda invoke --invoke-address 127.0.0.1 --invoke-port "$port" --data-file "$work/event.json" "$function" \
  >"$work/response" 2>"$work/invoke.log" &
invoke_pid=$!

deadline=$((SECONDS + timeout))
while kill -0 "$invoke_pid" 2>/dev/null; do
  if ! kill -0 "$function_pid" 2>/dev/null; then
    status=0
    wait "$function_pid" || status=$?
    function_pid=""
    echo "invoke.sh: $function exited (status $status) before it answered; its log is above" >&2
    exit 1
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "invoke.sh: $function did not answer within ${timeout}s (FACEMAKE_INVOKE_TIMEOUT)" >&2
    exit 1
  fi
  sleep 0.1
done
status=0
wait "$invoke_pid" || status=$?
invoke_pid=""
if [ "$status" -ne 0 ]; then
  echo "invoke.sh: $function failed:" >&2
  cat "$work/invoke.log" >&2
  exit 1
fi
cat "$work/response"
