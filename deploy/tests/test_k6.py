"""The k6 scripts against the real service: the REST script's smoke profile (~10 s, a few
requests per second, loopback only) must run to the end with its thresholds met, requests
answered and none failed, and the server-side timing Trends filled; the gRPC script's smoke
profile likewise once the binary serves gRPC, and its init code (which parses
proto/rerank.proto) through `k6 inspect` in any case.
The same live server checks the image's HEALTHCHECK script and that the metrics the
dashboard and alerts use are exported.
Without the service (a stand-in on loopback): the REST script's routes (Cohere v1/v2, TEI's
/rerank, ROUTE=mixed) and `Authorization: Bearer $API_KEY` when API_KEY is set; the gRPC
script's key as call metadata."""
import json
import os
import re
import subprocess
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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
    # Every timing header is recorded; TEI's headers are whole milliseconds, so only the total
    # and inference times are sure to be above 0 (tokenizing a short pair takes well under 1 ms).
    for trend in TRENDS:
        assert trend in metrics, f"{trend} not recorded\n{output}"
    for trend in ("rerank_server_total_time", "rerank_server_inference_time"):
        assert metrics[trend]["max"] > 0, f"{trend} never above 0\n{output}"
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
    event_counters = {"te_request_failure", "rradistill_batch_failures_total", "rradistill_items_dropped_total",
                      # only once an experiment routes, a shadow compares, a reload happens
                      "rradistill_experiment_requests_total", "rradistill_shadow_comparisons_total",
                      "rradistill_shadow_kendall_tau", "rradistill_shadow_top1_agreements_total",
                      "rradistill_reloads_total"}
    for metric in sorted(used):
        base_name = metric_family(metric)
        if base_name in event_counters or base_name in pending_metrics_missing():
            continue
        assert base_name in names or metric in names, f"{metric} is not on /metrics"


# --- Without the service: the routes and the API key, against a stand-in on loopback. -----

class StandIn(BaseHTTPRequestHandler):
    """Answers /ready and the three re-rank routes in the service's shapes (results sorted,
    top_n of them, the timing headers), 401 when a key is expected and not sent, 422 for a
    body the route would refuse; records (path, authorization) of every re-rank request."""

    def do_GET(self):
        self.reply(200 if self.path == "/ready" else 404, {"status": "ready"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.server.calls.append((self.path, self.headers.get("authorization")))
        if self.server.key and self.headers.get("authorization") != f"Bearer {self.server.key}":
            return self.reply(401, {"message": "a valid API key is required"})
        if self.path in ("/v1/rerank", "/v2/rerank") and isinstance(body.get("documents"), list):
            texts = body["documents"]
        elif self.path == "/rerank" and isinstance(body.get("texts"), list) and body.get("truncate") is True:
            texts = body["texts"]
        else:
            return self.reply(422, {"error": f"not a {self.path} body", "error_type": "Validation"})
        ranked = [(i, 1.0 / (1 + i)) for i in range(len(texts))][: body.get("top_n", len(texts))]
        if self.path == "/rerank":
            return self.reply(200, [{"index": i, "score": s} for i, s in ranked])
        self.reply(200, {"id": "x", "results": [{"index": i, "relevance_score": s} for i, s in ranked]})

    def reply(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for header in ("x-total-time", "x-queue-time", "x-tokenization-time", "x-inference-time"):
            self.send_header(header, "1.5")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def stand_in():
    servers = []

    def start(key=None):
        server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
        server.calls, server.key = [], key
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def run_rest_script(server, tmp_path, **env):
    summary = tmp_path / "summary.json"
    result = subprocess.run(
        [tool("k6"), "run", "--quiet", "--no-color", "--summary-export", str(summary),
         str(DEPLOY / "k6/rerank-rest.js")],
        env=dict({k: v for k, v in K6_ENV.items() if k not in ("API_KEY", "ROUTE")},
                 BASE_URL=f"http://127.0.0.1:{server.server_address[1]}", **env),
        capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    metrics = json.loads(summary.read_text())["metrics"]
    assert metrics["http_req_failed"]["passes"] == 0 and metrics["checks"]["fails"] == 0, output
    return metrics


def test_rest_script_sends_the_api_key_on_every_route(stand_in, tmp_path):
    """ROUTE=mixed covers Cohere's /v1 and /v2 and TEI's /rerank (with truncate, as the
    workload has texts past the window), each with `Authorization: Bearer $API_KEY`."""
    key = "k6-test-key-0123456789"
    server = stand_in(key=key)
    run_rest_script(server, tmp_path, ROUTE="mixed", API_KEY=key)
    assert len(server.calls) >= 20
    assert {path for path, _ in server.calls} == {"/v1/rerank", "/v2/rerank", "/rerank"}
    assert {auth for _, auth in server.calls} == {f"Bearer {key}"}


def test_rest_script_tei_route_without_a_key(stand_in, tmp_path):
    server = stand_in()
    metrics = run_rest_script(server, tmp_path, ROUTE="tei")
    assert {path for path, _ in server.calls} == {"/rerank"}
    assert {auth for _, auth in server.calls} == {None}, "no API_KEY: no authorization header"
    assert metrics["rerank_server_total_time"]["max"] > 0


def test_rest_script_refuses_an_unknown_route():
    result = subprocess.run(
        [tool("k6"), "inspect", "-e", "K6_PROFILE=smoke", "-e", "ROUTE=nope", str(DEPLOY / "k6/rerank-rest.js")],
        env=K6_ENV, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "ROUTE=nope" in result.stdout + result.stderr


@pytest.mark.parametrize("key", ["", "k6-test-key-0123456789"])
def test_workload_authorization_follows_api_key(tmp_path, key):
    """workload.js's authorization() (REST headers, gRPC metadata): Bearer API_KEY, or
    nothing when API_KEY is unset or empty."""
    script = tmp_path / "auth.js"
    script.write_text(
        f"import {{ authorization }} from '{(DEPLOY / 'k6/workload.js').as_uri()}';\n"
        "export const options = { vus: 1, iterations: 1 };\n"
        "export function setup() {\n"
        "  const got = JSON.stringify(authorization());\n"
        "  if (got !== __ENV.EXPECT) throw new Error(`authorization() = ${got}, expected ${__ENV.EXPECT}`);\n"
        "}\n"
        "export default function () {}\n")
    expect = json.dumps({"authorization": f"Bearer {key}"} if key else {}, separators=(",", ":"))
    result = subprocess.run([tool("k6"), "run", "--quiet", "--no-color", str(script)],
                            env=dict(K6_ENV, API_KEY=key, EXPECT=expect), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_grpc_script_sends_the_key_as_metadata():
    """The gRPC script passes authorization() as the call's metadata (the service reads
    `authorization: Bearer KEY`, src/grpc); its init still loads with API_KEY set."""
    script = (DEPLOY / "k6/rerank-grpc.js").read_text()
    assert re.search(r"client\.invoke\([^)]*metadata: authorization\(\)", script)
    assert "authorization" in (ROOT / "src/grpc/mod.rs").read_text()
    result = subprocess.run(
        [tool("k6"), "inspect", "-e", "K6_PROFILE=smoke", "-e", "API_KEY=k6-test-key-0123456789",
         str(DEPLOY / "k6/rerank-grpc.js")], env=K6_ENV, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
