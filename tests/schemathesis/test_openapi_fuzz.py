"""Schemathesis against the live service's own OpenAPI document (issue 7): zero 5xx, zero
schema violations.

For each key configuration below, the real binary serves the encoder fixture on loopback
(rradistill_service.py), the document is fetched from its `GET /openapi.json`, and
`schemathesis run` runs its phases on every documented operation: examples, coverage
(boundary values, wrong types, missing fields, undocumented methods) and fuzzing (Hypothesis; valid and invalid data,
at most MAX_EXAMPLES cases per operation and mode), deterministically (derandomized, no
example database), one worker. Every response must pass these checks:

- not_a_server_error: no 5xx;
- status_code_conformance: the status is documented for the operation;
- content_type_conformance: the Content-Type is documented for that status;
- response_schema_conformance: the body matches the documented schema.

Nothing is marked as expected to fail. The cases sent per operation and status (from the HAR
report) are printed at the end of the session.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import urllib.request
from urllib.parse import urlsplit

import pytest

from rradistill_service import SUMMARY, service

MAX_EXAMPLES = 50
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
CLIENT_KEY = "client-key-0123456789abcdef"
ADMIN_KEY = "admin-key-0123456789abcdef"

# (name, service environment, Authorization header schemathesis sends)
CONFIGURATIONS = [
    # Open service: no keys; /admin/* does not exist (404).
    ("open", {}, None),
    # Keys required; the admin key may call everything, so /admin/cache/clear answers 200.
    ("admin-key", {"API_KEY": CLIENT_KEY, "ADMIN_API_KEY": ADMIN_KEY}, f"Bearer {ADMIN_KEY}"),
    # A client key: re-rank works, /admin/cache/clear is 403.
    ("client-key", {"API_KEY": CLIENT_KEY, "ADMIN_API_KEY": ADMIN_KEY}, f"Bearer {CLIENT_KEY}"),
    # Keys required and none sent: 401 everywhere but the probes.
    ("no-key", {"API_KEY": CLIENT_KEY, "ADMIN_API_KEY": ADMIN_KEY}, None),
]


@pytest.mark.parametrize("name,env,authorization", CONFIGURATIONS, ids=[c[0] for c in CONFIGURATIONS])
def test_openapi_fuzz(name, env, authorization, tmp_path):
    with service(env) as (url, proc):
        # The document, from the live service (with a key where API_KEY is set: it needs one
        # too). Given to schemathesis as a file with the base URL, because loaded from a URL
        # schemathesis leaves that URL's own operation (GET /openapi.json) out of the run.
        headers = {"Authorization": f"Bearer {CLIENT_KEY}"} if env else {}
        request = urllib.request.Request(f"{url}/openapi.json", headers=headers)
        with urllib.request.urlopen(request, timeout=10) as r:
            (tmp_path / "openapi.json").write_bytes(r.read())
        location = str(tmp_path / "openapi.json")
        cmd = [
            sys.executable, "-m", "schemathesis.cli", "run", location, "--url", url,
            "--checks", CHECKS,
            "--phases", "examples,coverage,fuzzing",
            "--mode", "all",
            "--max-examples", str(MAX_EXAMPLES),
            "--generation-deterministic",
            "--workers", "1",
            "--request-timeout", "30",
            "--report", "json,har",
            "--report-dir", str(tmp_path),
            "--report-json-path", str(tmp_path / "run.json"),
            "--report-har-path", str(tmp_path / "run.har"),
            "--no-color",
        ]
        if authorization:
            cmd += ["--header", f"Authorization: {authorization}"]
        # Run in the test's own folder: schemathesis keeps a cache (.schemathesis/) in its
        # working directory, and no stray schemathesis.toml can change the run.
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        alive = proc.poll() is None
    output = run.stdout + run.stderr
    assert alive, f"the service died during the schemathesis run\n{output[-6000:]}"

    report = json.loads((tmp_path / "run.json").read_text())
    har = json.loads((tmp_path / "run.har").read_text())
    per_operation: collections.Counter = collections.Counter()
    per_status: collections.Counter = collections.Counter()
    server_errors = []
    for entry in har["log"]["entries"]:
        method, path = entry["request"]["method"], urlsplit(entry["request"]["url"]).path
        status = entry["response"]["status"]
        per_operation[f"{method} {path}"] += 1
        per_status[status] += 1
        if status >= 500:
            server_errors.append(f"{method} {path} -> {status}: {entry['response']['content'].get('text', '')[:300]}")
    cases = report["test_cases"]
    SUMMARY.append(
        f"{name}: {cases['generated']} cases generated, {sum(per_status.values())} requests sent "
        f"(statuses: {', '.join(f'{s}: {n}' for s, n in sorted(per_status.items()))}); "
        f"failures {cases['with_failures']}, errors {cases['errored']}"
    )
    top = ", ".join(f"{op} {n}" for op, n in per_operation.most_common(10))
    SUMMARY.append(f"    busiest: {top}")

    assert run.returncode == 0 and report["exit_code"] == 0, f"schemathesis failed:\n{output[-12000:]}"
    assert report["operations"]["tested"] == report["operations"]["total"] > 0, output[-6000:]
    assert cases["with_failures"] == 0 and cases["errored"] == 0, output[-12000:]
    assert not report["failures"] and not report["errors"], output[-12000:]
    assert not server_errors, "\n".join(server_errors)
