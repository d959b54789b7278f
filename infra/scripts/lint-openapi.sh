#!/usr/bin/env bash
# Validates docs/openapi.yaml: against the OpenAPI 3.1 specification with openapi-spec-validator, then a few checks
# of this project's own (unique operationIds, every $ref resolves, every operation has tags, summary, description,
# security and a 500, and every request and success example validates against its JSON Schema). Installs the
# pinned validator into infra/.local/openapi-venv when it is not there yet. Needs PyPI only.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/infra/.local/openapi-venv"
version=0.9.0
if ! "$venv/bin/openapi-spec-validator" --version 2>/dev/null | grep -q "$version"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "openapi-spec-validator==$version"
fi
cd "$root"
"$venv/bin/openapi-spec-validator" --schema 3.1 docs/openapi.yaml

# PyYAML and jsonschema come with openapi-spec-validator.
"$venv/bin/python" - docs/openapi.yaml <<'PY'
import sys

import jsonschema
import referencing
import referencing.jsonschema
import yaml

path = sys.argv[1]
with open(path, encoding="utf-8") as f:
    doc = yaml.safe_load(f)
problems = []


def resolve(ref):
    if not ref.startswith("#/"):
        return None
    node = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def walk(node, where):
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(key, str):
                problems.append(f"{where}: key {key!r} is not a string (quote status codes)")
            if key == "$ref" and resolve(value) is None:
                problems.append(f"{where}: $ref {value} does not resolve")
            walk(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            walk(value, f"{where}[{i}]")


walk(doc, "#")

registry = referencing.Registry().with_resource(
    "urn:openapi", referencing.jsonschema.DRAFT202012.create_resource(doc)
)


def check_examples(media, where):
    schema = media.get("schema")
    examples = []
    if "example" in media:
        examples.append(("example", media["example"]))
    for name, ex in (media.get("examples") or {}).items():
        ex = resolve(ex["$ref"]) if "$ref" in ex else ex
        examples.append((name, ex.get("value")))
    if not examples:
        problems.append(f"{where}: no example")
    if schema is None:
        problems.append(f"{where}: no schema")
        return
    if "$ref" in schema:
        schema = {"$ref": "urn:openapi" + schema["$ref"]}
    validator = jsonschema.Draft202012Validator(schema, registry=registry)
    for name, value in examples:
        for error in validator.iter_errors(value):
            problems.append(f"{where} example {name}: {error.message} at {list(error.absolute_path)}")


operation_ids = {}
for route, item in doc.get("paths", {}).items():
    for method, op in item.items():
        if method not in {"get", "put", "post", "delete", "patch"}:
            continue
        where = f"{method.upper()} {route}"
        oid = op.get("operationId")
        if not oid:
            problems.append(f"{where}: no operationId")
        elif oid in operation_ids:
            problems.append(f"{where}: operationId {oid} also used by {operation_ids[oid]}")
        else:
            operation_ids[oid] = where
        for field in ("tags", "summary", "description", "security"):
            if field not in op:
                problems.append(f"{where}: no {field}")
        responses = op.get("responses", {})
        if "500" not in responses:
            problems.append(f"{where}: no 500 response")
        body = op.get("requestBody")
        if body:
            body = resolve(body["$ref"]) if "$ref" in body else body
            check_examples(body["content"]["application/json"], f"{where} request")
        for status, response in responses.items():
            response = resolve(response["$ref"]) if "$ref" in response else response
            content = (response or {}).get("content")
            if content is None:
                continue
            if "application/json" not in content:
                problems.append(f"{where} {status}: no application/json content")
                continue
            media = content["application/json"]
            if str(status).startswith("2") or "example" in media or "examples" in media:
                check_examples(media, f"{where} {status}")

for problem in problems:
    print(f"{path}: {problem}", file=sys.stderr)
if problems:
    sys.exit(1)
print(f"{path}: {len(operation_ids)} operations, unique operationIds, every $ref resolves, examples match their schemas")
PY
