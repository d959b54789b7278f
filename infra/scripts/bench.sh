#!/usr/bin/env bash
# The benchmarks of docs/benchmarks.md, all in one run on this machine:
#
#   infra/scripts/bench.sh            # writes target/bench/results.md (and the raw samples beside it)
#
# 1. builds every function's release bootstrap the way `sam build` does (`cargo lambda build --release`, here
#    for x86_64, the machine's own architecture), plus the hello-world lambda_http function, the benchmark tools
#    and the local API, with the same profile in the same build;
# 2. package size: each bootstrap zipped (`zip -9`, as SAM uploads it);
# 3. cold starts against the Lambda Runtime API emulator (`infra/bench/src/bin/coldstart.rs`), AWS endpoints at
#    DynamoDB Local and moto, beside the hello-world function;
# 4. the worker's own cost on a 12-megapixel photo (`worker_overhead.rs`);
# 5. load on the local API (`load.rs`): its embedded store, then DynamoDB Local for POST /v1/generations;
# 6. the criterion hot paths (`shared/benches/hot_paths.rs`).
# The round-trip counts are a test (`infra/bench/tests/round_trips.rs`) and run with the test command.
#
# Needs what the test command needs, plus PyPI for cargo-lambda and Zig (pinned as in docs/operations.md, "Deploy"). About 45 minutes
# on a cold 2-core machine (the release build dominates), a few minutes once target/ is warm.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
out="$root/target/bench"
mkdir -p "$out"
target="${CARGO_TARGET_DIR:-$root/target}"
lambda="$target/lambda"

lambda_bin=$(infra/scripts/cargo-lambda.sh)
export PATH="$lambda_bin:$PATH"

functions=(send-code verify-code account templates credits app-store-notifications generate characters replicate-webhooks openai-webhooks generation-worker
  generation-reconciler)
packages=()
for f in "${functions[@]}"; do packages+=(-p "$f"); done
echo "== cargo lambda build --release --x86-64 (functions, hello-lambda, benchmark tools, local API)" >&2
cargo lambda build --release --x86-64 --locked "${packages[@]}" -p bench -p local-api >&2

eval "$(infra/scripts/dynamodb-local.sh start)"
trap 'infra/scripts/dynamodb-local.sh stop' EXIT
eval "$(infra/scripts/moto.sh start)"
trap 'infra/scripts/dynamodb-local.sh stop; infra/scripts/moto.sh stop' EXIT

{
  echo "| function | bootstrap (bytes) | zip -9 (bytes) | zip (MB) |"
  echo "|---|---:|---:|---:|"
  for f in hello-lambda "${functions[@]}"; do
    bin="$lambda/$f/bootstrap"
    rm -f "$out/$f.zip"
    (cd "$(dirname "$bin")" && zip -9 -q -j "$out/$f.zip" bootstrap)
    size=$(stat -c %s "$bin")
    zipped=$(stat -c %s "$out/$f.zip")
    printf '| %s | %s | %s | %.2f |\n' "$f" "$size" "$zipped" "$(echo "$zipped / 1000000" | bc -l)"
  done
} >"$out/sizes.md"

echo "== cold starts" >&2
"$lambda/coldstart/bootstrap" --bin-dir "$lambda" --runs 15 --out "$out/coldstart.json" >"$out/coldstart.md"

echo "== worker overhead" >&2
# The deployed worker writes its EMF metric lines to stdout; the table row is the result.
"$lambda/worker-overhead/bootstrap" --jobs 20 | grep '^|' >"$out/worker.md"

echo "== cost per 1,000 generations" >&2
# The functions' EMF metric lines go to stdout too (each starts with `{`); the rest is the report.
"$lambda/cost/bootstrap" --jobs 20 | grep -v '^{' >"$out/cost.md"

echo "== load: local API, embedded store" >&2
"$lambda/load/bootstrap" --local-api "$lambda/local-api/bootstrap" --requests 20000 --seconds 20 \
  --concurrency 16 >"$out/load-memory.md"
echo "== load: local API on DynamoDB Local, POST /v1/generations" >&2
FACEMAKE_BACKEND=dynamodb FACEMAKE_TABLE_PREFIX="bench-load-$$-" AWS_ENDPOINT_URL_DYNAMODB="$FACEMAKE_TEST_DYNAMODB_ENDPOINT" \
  AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench \
  "$lambda/load/bootstrap" --local-api "$lambda/local-api/bootstrap" --routes generations --requests 3000 \
  --seconds 20 --concurrency 16 >"$out/load-dynamodb.md"

echo "== criterion hot paths" >&2
rm -rf "$target/criterion"
cargo bench --locked -p facemake --bench hot_paths >&2
python3 - "$target/criterion" >"$out/hot-paths.md" <<'EOF'
import json, pathlib, sys
root = pathlib.Path(sys.argv[1])
print("| benchmark | median | 95% interval of the median |")
print("|---|---:|---:|")
def fmt(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"
for est in sorted(root.glob("*/*/new/estimates.json")):
    group, name = est.parts[-4], est.parts[-3]
    m = json.loads(est.read_text())["median"]
    ci = m["confidence_interval"]
    print(f"| {group}/{name} | {fmt(m['point_estimate'])} | {fmt(ci['lower_bound'])} – {fmt(ci['upper_bound'])} |")
EOF

{
  echo "Run: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -m), $(rustc --version)"
  for part in sizes coldstart worker load-memory load-dynamodb hot-paths; do
    echo
    echo "### $part"
    echo
    cat "$out/$part.md"
  done
} >"$out/results.md"
cat "$out/results.md"
