#!/usr/bin/env bash
# Installs the pinned cargo-lambda, and the pinned Zig it cross-links with (its PyPI package depends on ziglang,
# so that is pinned too, as in docs/operations.md), into infra/.local/lambda-venv when they are not there yet
# (needs PyPI), and prints that venv's bin directory.
# Usage: bin=$(infra/scripts/cargo-lambda.sh); export PATH="$bin:$PATH"
# bench.sh builds the release bootstraps with it; invoke.sh runs one function with `cargo lambda watch` and
# `cargo lambda invoke`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/infra/.local/lambda-venv"
packages=(cargo-lambda==1.9.2 ziglang==0.14.1)

installed() {
  local package
  for package in "${packages[@]}"; do
    "$venv/bin/python" -c "import importlib.metadata as m, sys
sys.exit(m.version('${package%%==*}') != '${package##*==}')" 2>/dev/null || return 1
  done
}
if ! installed; then
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet "${packages[@]}" >&2
fi
echo "$venv/bin"
