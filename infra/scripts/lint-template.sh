#!/usr/bin/env bash
# Validates template.yaml with `sam validate --lint` (which runs cfn-lint), installing the pinned SAM CLI
# into infra/.local/venv when it is not there yet. No AWS account or network beyond PyPI is needed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/infra/.local/venv"
if [ ! -x "$venv/bin/sam" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet aws-sam-cli==1.170.0
fi
cd "$root"
AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_DEFAULT_REGION=us-east-1 SAM_CLI_TELEMETRY=0 \
  "$venv/bin/sam" validate --lint --region us-east-1
