"""Compares two SAM templates as CloudFormation would receive them: both are run through SAM's translator
(offline, with a fake managed-policy map), then every resource, parameter, condition and output must be equal,
with two allowances:

- a dashboard body is compared as parsed JSON (layout and key order do not matter);
- an IAM role is compared by what it grants: its inline statements and those of the template's own
  AWS::IAM::ManagedPolicy resources it attaches (a Ref in ManagedPolicyArns), each expanded into
  (effect, action, resource, condition) and compared as sets, so moving statements into a shared managed policy
  is equal when every role ends up with the same permissions. The rest of the role must be equal; a managed
  policy is equal if every role still gets the same grants.

Usage: python compare-templates.py BEFORE.yaml AFTER.yaml  (exit 0 when equal, 1 with the differences)
"""

import json
import os
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

AWS_POLICIES = {
    "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
    "AWSLambdaDynamoDBExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaDynamoDBExecutionRole",
}


class Policies:
    """SAM's managed-policy loader without an AWS call."""

    def load(self):
        return AWS_POLICIES


def translate(path):
    with open(path) as f:
        template = yaml_parse(f.read())
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") == "AWS::Serverless::Function":
            # sam validate does the same: the translator wants an S3 location, not a local path.
            resource["Properties"]["CodeUri"] = "s3://bucket/code.zip"
    return transform(template, {}, Policies())


def as_list(v):
    return v if isinstance(v, list) else [v]


def canonical(v):
    return json.dumps(v, sort_keys=True)


def grants(statements):
    out = set()
    for st in statements:
        for action in as_list(st.get("Action", [])):
            for resource in as_list(st.get("Resource", [])):
                out.add((st["Effect"], action, canonical(resource), canonical(st.get("Condition"))))
    return out


def role_grants(resources, role):
    props = role["Properties"]
    out = set()
    for policy in props.get("Policies", []):
        out |= grants(policy["PolicyDocument"]["Statement"])
    others = []
    for arn in props.get("ManagedPolicyArns", []):
        ref = arn.get("Ref") if isinstance(arn, dict) else None
        if ref and resources.get(ref, {}).get("Type") == "AWS::IAM::ManagedPolicy":
            out |= grants(resources[ref]["Properties"]["PolicyDocument"]["Statement"])
        else:
            others.append(arn)
    rest = {k: v for k, v in props.items() if k not in ("Policies", "ManagedPolicyArns")}
    rest["ManagedPolicyArns"] = others
    return out, rest


def dashboard(resource):
    body = resource["Properties"]["DashboardBody"]
    text = body["Fn::Sub"] if isinstance(body, dict) else body
    rest = {k: v for k, v in resource["Properties"].items() if k != "DashboardBody"}
    return json.loads(text), rest


def compare(before, after):
    problems, notes = [], []
    for section in ("Parameters", "Conditions", "Outputs", "Globals", "Mappings"):
        if before.get(section) != after.get(section):
            problems.append(f"{section} differ")
    rb, ra = before["Resources"], after["Resources"]
    for rid in sorted(set(rb) | set(ra)):
        b, a = rb.get(rid), ra.get(rid)
        kind = (a or b)["Type"]
        if b is None or a is None:
            if kind == "AWS::IAM::ManagedPolicy":
                notes.append(f"{rid}: a managed policy only {'after' if b is None else 'before'} (its grants are compared in the roles)")
            else:
                problems.append(f"{rid} ({kind}) exists only {'after' if b is None else 'before'}")
            continue
        if kind == "AWS::IAM::ManagedPolicy":
            if b != a:
                notes.append(f"{rid}: the managed policy changed (its grants are compared in the roles)")
            continue
        if kind == "AWS::IAM::Role":
            (gb, restb), (ga, resta) = role_grants(rb, b), role_grants(ra, a)
            outer = {k: v for k, v in b.items() if k != "Properties"} != {k: v for k, v in a.items() if k != "Properties"}
            if gb != ga:
                for g in sorted(gb - ga):
                    problems.append(f"{rid}: no longer grants {g}")
                for g in sorted(ga - gb):
                    problems.append(f"{rid}: now grants {g}")
            if restb != resta or outer:
                problems.append(f"{rid}: the role differs beyond its policies")
            if b != a and gb == ga:
                notes.append(f"{rid}: the same {len(ga)} grants, arranged differently")
            continue
        if kind == "AWS::CloudWatch::Dashboard":
            if dashboard(b) != dashboard(a):
                problems.append(f"{rid}: the dashboard differs (compared as parsed JSON)")
            elif b != a:
                notes.append(f"{rid}: the same dashboard body as parsed JSON, written differently")
            continue
        if b != a:
            problems.append(f"{rid} ({kind}) differs")
    return problems, notes


def main():
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    before, after = translate(sys.argv[1]), translate(sys.argv[2])
    problems, notes = compare(before, after)
    for n in notes:
        print(f"  same: {n}")
    for p in problems:
        print(f"  DIFFERENT: {p}")
    count = len(after["Resources"])
    if problems:
        print(f"{len(problems)} difference(s) after SAM's translation")
        sys.exit(1)
    print(f"equal after SAM's translation: {count} resources (and parameters, conditions, outputs)")


if __name__ == "__main__":
    main()
