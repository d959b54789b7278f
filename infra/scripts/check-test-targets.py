#!/usr/bin/env python3
"""Fails where `cargo test` would skip tests without a word:

- a target that Cargo.toml marks `test = false` has unit tests;
- a package with `autotests = false` has a file in tests/ that no test target's root declares as a module.

Targets without unit tests are marked `test = false` so `cargo test` links no empty harness for them, and a
package's integration tests are one binary (tests/integration.rs): each harness links the AWS SDK (tens of MB
and seconds of linking apiece, on a machine whose disk once filled).
"""
import json
import os
import re
import subprocess
import sys

TEST = re.compile(r"#\[(cfg\(test\)|test\]|tokio::test)")


def sources(target):
    src = target["src_path"]
    if target["kind"][0] != "lib":
        return [src]
    top = os.path.dirname(src)
    found = []
    for root, dirs, files in os.walk(top):
        if "bin" in dirs:
            dirs.remove("bin")
        found += [os.path.join(root, f) for f in files if f.endswith(".rs") and not (root == top and f == "main.rs")]
    return found


meta = json.loads(subprocess.check_output(["cargo", "metadata", "--format-version", "1", "--no-deps", "--locked"]))
bad = []
for package in meta["packages"]:
    for target in package["targets"]:
        if target["kind"][0] in ("lib", "bin") and not target["test"]:
            bad += [f"{package['name']} {target['name']}: {f}" for f in sources(target) if TEST.search(open(f).read())]
for package in meta["packages"]:
    tests = os.path.join(os.path.dirname(package["manifest_path"]), "tests")
    roots = [t["src_path"] for t in package["targets"] if t["kind"][0] == "test"]
    if not os.path.isdir(tests):
        continue
    declared = set()
    for root in roots:
        declared |= set(re.findall(r"^\s*(?:pub\s+)?mod\s+(\w+)\s*;", open(root).read(), re.M))
    for f in sorted(os.listdir(tests)):
        path = os.path.join(tests, f)
        name = f[:-3] if f.endswith(".rs") else f
        if path in roots or name in declared or not (f.endswith(".rs") or os.path.isdir(path)):
            continue
        if os.path.isdir(path) and not os.path.exists(os.path.join(path, "mod.rs")):
            continue
        bad.append(f"{package['name']}: {path} is not a test target nor a module of one")
if bad:
    print("tests that `cargo test` would never run:", *bad, sep="\n  ")
    sys.exit(1)
print("check-test-targets: every unit test and every file in tests/ is in a test target")
