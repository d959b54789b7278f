#!/usr/bin/env bash
# Whether template.yaml still means what it meant at a commit: both are run through SAM's translator offline
# and compared resource by resource (infra/scripts/compare-templates.py says what counts as equal: a dashboard
# body as parsed JSON, an IAM role by the permissions it ends up with).
#
#   infra/scripts/compare-templates.sh [REV]   # REV's template.yaml (default HEAD) against the working tree's
#
# For refactors of the template meant to change nothing. Uses the SAM CLI venv of lint-template.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/infra/.local/venv"
if [ ! -x "$venv/bin/sam" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet aws-sam-cli==1.170.0
fi
rev="${1:-HEAD}"
before="$(mktemp)"
trap 'rm -f "$before"' EXIT
git -C "$root" show "$rev:template.yaml" >"$before"
echo "template.yaml at $rev against the working tree's:"
"$venv/bin/python" "$root/infra/scripts/compare-templates.py" "$before" "$root/template.yaml"
