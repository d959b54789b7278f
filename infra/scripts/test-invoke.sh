#!/usr/bin/env bash
# The test of infra/scripts/invoke.sh: runs functions once on a few fixtures and checks what they answer.
#
#   infra/scripts/test-invoke.sh
#
# The test command (infra/scripts/test.sh) runs it after `cargo test` on a full run, with its DynamoDB Local and
# moto; run alone it starts its own (instances `test-invoke-*`) and stops them at the end. Every run uses tables,
# a bucket and secrets of its own (FACEMAKE_INVOKE_PREFIX), so no earlier invoke can change an answer.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
started=$SECONDS

work=$(mktemp -d)
own_services=""
cleanup() {
  rm -rf "$work"
  if [ -n "$own_services" ]; then
    infra/scripts/dynamodb-local.sh stop test-invoke-dynamodb-local
    infra/scripts/moto.sh stop test-invoke-moto
  fi
}
trap cleanup EXIT
if [ -z "${FACEMAKE_TEST_DYNAMODB_ENDPOINT:-}" ] || [ -z "${FACEMAKE_TEST_S3_ENDPOINT:-}" ]; then
  own_services=yes
  eval "$(infra/scripts/dynamodb-local.sh start test-invoke-dynamodb-local)"
  eval "$(infra/scripts/moto.sh start test-invoke-moto)"
fi
FACEMAKE_INVOKE_PREFIX="ti$(date +%s)-$$-"
export FACEMAKE_INVOKE_PREFIX
failures=0

# check WHAT CONDITION -- INVOKE-ARGS...: runs invoke.sh and evaluates CONDITION, a Python expression over `r`
# (the response, parsed) and `b` (an API response's body, parsed; None for other responses).
check() {
  local what="$1" condition="$2"
  shift 3
  local response
  if ! response=$(infra/scripts/invoke.sh "$@" 2>"$work/log"); then
    echo "FAIL $what: invoke.sh $* exited non-zero:" >&2; cat "$work/log" >&2
    failures=$((failures + 1))
    return
  fi
  if ! python3 - "$what" "$condition" "$response" <<'PY'; then
import json, sys
what, condition, text = sys.argv[1:]
try:
    r = json.loads(text)
except ValueError:
    sys.exit(f"FAIL {what}: the response is not JSON: {text!r}")
body = r.get("body") if isinstance(r, dict) else None
b = json.loads(body) if isinstance(body, str) and body else None
if not eval(condition):
    sys.exit(f"FAIL {what}: not {condition}\n  response: {text[:1500]}")
print(f"ok   {what}")
PY
    cat "$work/log" >&2
    failures=$((failures + 1))
  fi
}

# Build once for all the cases (what invoke.sh builds, for each of the functions below).
cargo build --locked --bin local-stage --bin templates --bin account --bin verify-code --bin characters \
  --bin generation-reconciler --test cold_start >&2

phone=$(printf '+14155550%03d' $((100 + RANDOM % 100)))
check "templates: a page of the portrait category" \
  'r["statusCode"] == 200 and 1 <= len(b["items"]) <= 5 and all(t["category"] == "portrait" for t in b["items"])' \
  -- templates events/list-templates.json
check "account, --as $phone: that number's profile" \
  "r['statusCode'] == 200 and b['phone'].startswith('+1') and b['phone'].endswith('$phone'[-4:]) and b['id']" \
  -- account events/get-me.json --as "$phone"
check "characters, --as $phone: none yet (a page of nothing, no cursor)" \
  'r["statusCode"] == 200 and b == {"items": [], "nextCursor": None}' \
  -- characters events/list-characters.json --as "$phone"
check "account, without --as: the placeholder token is refused" \
  'r["statusCode"] == 401 and b["error"]["code"] == "INVALID_TOKEN"' \
  -- account events/get-me.json
check "verify-code: no code was sent" \
  'r["statusCode"] == 400 and b["error"]["code"] == "INVALID_CODE"' \
  -- verify-code events/verify-code.json
check "generation-reconciler: nothing overdue" \
  'r == {"refunded": 0, "deletionsFinished": 0}' \
  -- generation-reconciler events/reconciler-schedule.json

# A function that fails at its cold start (a required variable emptied) is a failed invoke, with no response.
if response=$(infra/scripts/invoke.sh templates events/list-templates.json --env STAGE= 2>"$work/log"); then
  echo "FAIL a function that cannot start: invoke.sh exited 0 and printed: $response" >&2
  failures=$((failures + 1))
elif ! grep -q "STAGE is not set" "$work/log" || [ -n "$response" ]; then
  echo "FAIL a function that cannot start: no cold-start error in the log, or a response: $response" >&2
  cat "$work/log" >&2
  failures=$((failures + 1))
else
  echo "ok   a function that cannot start fails the invoke"
fi

echo "test-invoke.sh: $failures failed, $((SECONDS - started))s" >&2
[ "$failures" -eq 0 ]
