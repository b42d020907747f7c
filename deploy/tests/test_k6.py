"""The k6 scripts against the real service: the REST script's smoke profile (~10 s, a few
requests per second, loopback only) must run to the end with its thresholds met, requests
answered and none failed, and the server-side timing Trends filled; the gRPC script's smoke
profile likewise once the binary serves gRPC, and its init code (which parses
proto/rerank.proto) through `k6 inspect` in any case.
The same live server checks the image's HEALTHCHECK script and that the metrics the
dashboard and alerts use are exported."""
import json
import os
import re
import subprocess
import urllib.request

import pytest

from deploytools import DEPLOY, ROOT, free_port, metric_family, pending_metrics_missing, tool

K6_ENV = dict(os.environ, K6_NO_USAGE_REPORT="true", K6_PROFILE="smoke")
TRENDS = ["rerank_server_total_time", "rerank_server_queue_time",
          "rerank_server_tokenization_time", "rerank_server_inference_time"]


def test_rest_script_smoke_run(service, tmp_path):
    base = service.url
    summary = tmp_path / "summary.json"
    result = subprocess.run(
        [tool("k6"), "run", "--quiet", "--no-color", "--summary-export", str(summary),
         str(DEPLOY / "k6/rerank-rest.js")],
        env=dict(K6_ENV, BASE_URL=base), capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    metrics = json.loads(summary.read_text())["metrics"]
    assert metrics["iterations"]["count"] >= 20, output
    assert metrics["http_req_failed"]["passes"] == 0, output  # a Rate's passes are failed requests
    assert metrics["checks"]["fails"] == 0, output
    assert metrics["rerank_documents"]["max"] <= 100 and metrics["rerank_documents"]["med"] >= 20
    for trend in TRENDS:
        assert trend in metrics and metrics[trend]["max"] > 0, f"{trend} not recorded\n{output}"
    print(output)


def test_grpc_script_smoke_run(service, tmp_path):
    summary = tmp_path / "summary.json"
    result = subprocess.run(
        [tool("k6"), "run", "--quiet", "--no-color", "--summary-export", str(summary),
         str(DEPLOY / "k6/rerank-grpc.js")],
        env=dict(K6_ENV, GRPC_ADDR=service.grpc_addr), capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    metrics = json.loads(summary.read_text())["metrics"]
    assert metrics["iterations"]["count"] >= 20, output
    assert metrics["rerank_grpc_failed"]["passes"] == 0, output
    assert metrics["checks"]["fails"] == 0, output
    for trend in TRENDS:
        assert trend in metrics and metrics[trend]["max"] > 0, f"{trend} not recorded\n{output}"
    print(output)


def test_grpc_script_loads_the_proto():
    proto = ROOT / "proto/rerank.proto"
    assert proto.exists(), "proto/rerank.proto is missing"
    result = subprocess.run(
        [tool("k6"), "inspect", "-e", "K6_PROFILE=smoke", str(DEPLOY / "k6/rerank-grpc.js")],
        env=K6_ENV, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "smoke" in json.loads(result.stdout)["scenarios"]


def test_healthcheck_script(service):
    base = service.url
    script = str(DEPLOY / "docker/healthcheck.sh")
    port = base.rsplit(":", 1)[1]
    ok = subprocess.run([script], env=dict(os.environ, PORT=port), capture_output=True, text=True, timeout=10)
    assert ok.returncode == 0, ok.stderr
    closed = subprocess.run([script], env=dict(os.environ, PORT=str(free_port())),
                            capture_output=True, text=True, timeout=10)
    assert closed.returncode == 1 and "nothing listening" in closed.stderr


def test_dashboard_and_alert_metrics_are_exported(service):
    """After requests were served, every per-request and per-batch metric the dashboard and
    the alerts read is on /metrics (counters of events that did not happen, such as
    failures, appear only once they do)."""
    base = service.url
    urllib.request.urlopen(urllib.request.Request(
        base + "/v1/rerank", data=json.dumps({"query": "q", "documents": ["a", "b"]}).encode(),
        headers={"content-type": "application/json"})).read()
    exported = urllib.request.urlopen(base + "/metrics").read().decode()
    names = set(re.findall(r"^([a-z0-9_]+?)(?:_bucket|_sum|_count)?\{", exported, re.M))
    names |= set(re.findall(r"^([a-z0-9_]+)\{", exported, re.M))
    used = set()
    for path in [DEPLOY / "prometheus/alerts.yml", DEPLOY / "grafana/rradistill.json"]:
        used |= set(re.findall(r"\b((?:te|rradistill)_[a-z0-9_]+)", path.read_text()))
    event_counters = {"te_request_failure", "rradistill_batch_failures", "rradistill_items_dropped",
                      # only once an experiment routes, a shadow compares, a reload happens
                      "rradistill_experiment_requests", "rradistill_shadow_comparisons",
                      "rradistill_shadow_kendall_tau", "rradistill_shadow_top1_agreements",
                      "rradistill_reloads"}
    for metric in sorted(used):
        base_name = metric_family(metric)
        if base_name in event_counters or base_name in pending_metrics_missing():
            continue
        assert base_name in names or metric in names, f"{metric} is not on /metrics"
