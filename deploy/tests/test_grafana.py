"""The Grafana dashboard: valid JSON Grafana can import, panels laid out without overlap,
and every query valid PromQL (promtool parses each, with Grafana's variables substituted)
over metrics the service exports."""
import json
import re
import subprocess

import yaml

from deploytools import DEPLOY, ROOT, tool, unknown_metrics

DASHBOARD = DEPLOY / "grafana/rradistill.json"


def dashboard():
    return json.loads(DASHBOARD.read_text())


def queries(d):
    return [(p["title"], t["expr"]) for p in d["panels"] for t in p.get("targets", [])]


def test_dashboard_structure():
    d = dashboard()
    assert d["uid"] and d["title"] == "rradistill"
    variables = {v["name"] for v in d["templating"]["list"]}
    assert variables == {"datasource", "model"}
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells = {}
    for p in d["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, f'{p["title"]} is wider than the grid'
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f'{p["title"]} overlaps {cells[(x, y)]}'
                cells[(x, y)] = p["title"]
        if p["type"] != "row":
            assert p["targets"] and all(t["expr"] for t in p["targets"]), p["title"]
            assert p["datasource"]["uid"] == "${datasource}"


def test_every_query_is_valid_promql(tmp_path):
    rules = []
    for i, (title, expr) in enumerate(queries(dashboard())):
        concrete = expr.replace("$__rate_interval", "5m").replace("$model", ".*")
        assert "$" not in concrete, f"{title}: unknown variable in {expr}"
        rules.append({"record": f"dashboard:query_{i}", "expr": concrete})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([tool("promtool"), "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_queries_use_only_metrics_the_service_exports():
    for title, expr in queries(dashboard()):
        assert not unknown_metrics(expr), f"{title}: not metrics of src/metrics.rs: {unknown_metrics(expr)}"


def test_admission_panels():
    """In-flight requests, expected queue wait against its target, measured throughput
    against the tokens actually scored, and the wait correction each have a panel."""
    exprs = " ".join(expr for _, expr in queries(dashboard()))
    for metric in ["rradistill_in_flight_requests", "rradistill_expected_queue_wait_seconds",
                   "rradistill_max_queue_wait_seconds", "rradistill_throughput_tokens_per_second",
                   "rradistill_wait_estimate_correction"]:
        assert metric in exprs, f"no panel shows {metric}"


def test_cpu_and_memory_panels_read_the_service_process_metrics():
    """The dashboard charts CPU and resident memory from process_* metrics, which exist because
    src/metrics.rs registers the prometheus crate's process collector; each is joined on
    rradistill_build_info so other targets' process metrics (Prometheus' own) stay out."""
    assert "ProcessCollector" in (ROOT / "src/metrics.rs").read_text()
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for metric in ("process_cpu_seconds_total", "process_resident_memory_bytes"):
        uses = [e for e in exprs if metric in e]
        assert uses, f"no panel shows {metric}"
        assert all("on (instance) rradistill_build_info" in e for e in uses), uses
