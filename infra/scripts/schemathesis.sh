#!/usr/bin/env bash
# Fuzzes the local API against docs/openapi.yaml with schemathesis, as a signed-in user, on memory and (when
# FACEMAKE_TEST_DYNAMODB_ENDPOINT is set, as the test command sets it) on DynamoDB Local. Fails on any server
# error, any response that does not match its documented schema, an undeclared method answered with anything
# but 405, and a 405 whose Allow header does not list the path's methods.
#
#   infra/scripts/schemathesis.sh            # SCHEMATHESIS_SECONDS (default 60) per backend
#
# Installs the pinned schemathesis into infra/.local/schemathesis-venv when it is not there (needs PyPI).
# DELETE /v1/me is left out: it would end the signed-in user and with it the rest of the run (its inputs are
# fuzzed by infra/local-api/tests/bad_input.rs). All four phases run (examples, coverage — where the
# undeclared-method and Allow checks happen —, fuzzing, stateful; SCHEMATHESIS_PHASES narrows them) with one
# worker: with two, hypothesis parses lambdas' source from two threads and this machine's Python 3.11.7
# stops with CPython's "AST constructor recursion depth mismatch", which is not a finding.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
state="$root/infra/.local"
venv="$state/schemathesis-venv"
version=4.32.5
seconds="${SCHEMATHESIS_SECONDS:-60}"
mkdir -p "$state"

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -qx "schemathesis, version $version"; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet "schemathesis==$version" >&2
fi
cargo build -p local-api --locked --quiet

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }

pid=""
stop() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""; fi; }
trap stop EXIT

# run NAME [ENV=VALUE...]: starts the local API with the environment given, signs a user in, fuzzes it.
run() {
  local name="$1"; shift
  local port; port=$(free_port)
  local base="http://127.0.0.1:$port"
  env "$@" PORT="$port" "${CARGO_TARGET_DIR:-$root/target}/debug/local-api" >"$state/schemathesis-$name.log" 2>&1 &
  pid=$!
  # Waits for the API, then signs a user in (send-code, the local outbox, verify-code): the access token.
  local token
  token=$(python3 - "$base" "$pid" <<'PY'
import json, os, re, sys, time, urllib.request
base, pid = sys.argv[1], int(sys.argv[2])
def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)
for _ in range(240):
    try:
        call("GET", "/v1/templates/categories")
        break
    except OSError:
        os.kill(pid, 0)  # raises when the API exited
        time.sleep(0.25)
phone = "+14155550199"
call("POST", "/v1/auth/send-code", {"phone": phone})
text = call("GET", "/_local/messages?phone=%2B" + phone[1:])["items"][0]["body"]
code = re.search(r"\b(\d{6})\b", text).group(1)
print(call("POST", "/v1/auth/verify-code", {"phone": phone, "code": code})["accessToken"])
PY
  ) || { echo "the local API ($name) did not start or sign in:" >&2; cat "$state/schemathesis-$name.log" >&2; exit 1; }
  echo "== schemathesis on the local API ($name), ${seconds}s" >&2
  "$venv/bin/schemathesis" run docs/openapi.yaml --url "$base" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,response_schema_conformance,unsupported_method,allow_header_conformance \
    --exclude-operation-id deleteMe \
    --phases ${SCHEMATHESIS_PHASES:-examples,coverage,fuzzing,stateful} \
    --max-time "$seconds" --workers 1 --no-color \
    --seed "${SCHEMATHESIS_SEED:-$RANDOM}"
  stop
}

run memory FACEMAKE_BACKEND=memory
if [ -n "${FACEMAKE_TEST_DYNAMODB_ENDPOINT:-}" ]; then
  run dynamodb FACEMAKE_BACKEND=dynamodb FACEMAKE_TABLE_PREFIX="st$(date +%s)-" \
    AWS_ENDPOINT_URL_DYNAMODB="$FACEMAKE_TEST_DYNAMODB_ENDPOINT" AWS_REGION=us-east-1 \
    AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local
fi
