#!/usr/bin/env python3
"""Replays the kept API contract cases against a live revaerd.

Every file in the cases directory (``*.json``, in name order) is one case:
a list of requests, each validated with the same schemathesis checks as the
generated run in ``scripts/api-contract.sh``, and, when the step says so,
answered with exactly the expected status. The format is described in
``scripts/api-contract-cases/README.md``.

Usage: api-contract-replay.py SCHEMA URL KEY CASES_DIR CHECKS
  CHECKS is the comma-separated list given to ``st run --checks``.
Runs with the Python of the schemathesis venv (it imports schemathesis).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import schemathesis
from schemathesis import checks as core_checks
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi import checks as openapi_checks

STEP_KEYS = {
    "operation",
    "path_parameters",
    "query",
    "headers",
    "body",
    "media_type",
    "status",
}


def load_checks(names: str) -> list:
    found = []
    for name in filter(None, (n.strip() for n in names.split(","))):
        check = getattr(openapi_checks, name, None) or getattr(core_checks, name, None)
        if not callable(check):
            raise SystemExit(f"api-contract-replay: unknown check `{name}`")
        found.append(check)
    return found


def run_step(schema, url: str, key: str, checks: list, where: str, step: dict) -> None:
    unknown = set(step) - STEP_KEYS
    if unknown:
        raise SystemExit(f"{where}: unknown keys {sorted(unknown)}")
    method, _, path = step["operation"].partition(" ")
    operation = schema[path][method.upper()]
    body = step.get("body")
    case = operation.Case(
        path_parameters=step.get("path_parameters"),
        query=step.get("query"),
        headers=step.get("headers"),
        **(
            {"body": body, "media_type": step.get("media_type", "application/json")}
            if body is not None
            else {}
        ),
    )
    auth = {"Authorization": f"Bearer {key}"}
    response = case.call(base_url=url, headers=auth)
    case.validate_response(response, checks=checks, headers=auth)
    expected = step.get("status")
    if expected is not None and response.status_code != expected:
        raise AssertionError(
            f"{where}: {step['operation']} answered {response.status_code}, "
            f"the case expects {expected}\n{response.text[:2000]}"
        )


def main(argv: list[str]) -> int:
    if len(argv) != 6:
        print(__doc__, file=sys.stderr)
        return 2
    schema_path, url, key, cases_dir, check_names = argv[1:]
    schema = schemathesis.openapi.from_path(schema_path)
    checks = load_checks(check_names)
    files = sorted(Path(cases_dir).glob("*.json"))
    failed = 0
    requests = 0
    for file in files:
        case = json.loads(file.read_text(encoding="utf-8"))
        for number, step in enumerate(case["steps"], start=1):
            where = f"{file.name} step {number}"
            requests += 1
            try:
                run_step(schema, url, key, checks, where, step)
            except (FailureGroup, AssertionError) as e:
                failed += 1
                print(f"FAILED {where}: {case.get('description', '')}\n{e}", file=sys.stderr)
                break
    print(
        f"api-contract-replay: {len(files)} kept cases, {requests} requests, "
        f"{'all passed' if not failed else f'{failed} failed'}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
