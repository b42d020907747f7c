"""The alert rules: promtool's syntax and semantics check, its unit tests
(deploy/prometheus/alerts.test.yml: each alert fires on the series it is meant for and stays
quiet on the others), and every metric they use is one the service exports."""
import subprocess

import yaml

from deploytools import DEPLOY, tool, unknown_metrics

PROMETHEUS = DEPLOY / "prometheus"


def promtool(*args):
    result = subprocess.run([tool("promtool"), *args], cwd=PROMETHEUS, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_rules_pass_promtool_check():
    out = promtool("check", "rules", "alerts.yml")
    assert "SUCCESS" in out


def test_alert_unit_tests_pass():
    promtool("test", "rules", "alerts.test.yml")


def test_every_alert_has_a_unit_test_that_fires_it():
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    tests = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())
    fired = {c["alertname"] for t in tests["tests"] for c in t["alert_rule_test"] if c["exp_alerts"]}
    assert alerts == fired, f"alerts never shown firing: {alerts - fired}"


def test_alerts_use_only_metrics_the_service_exports():
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    exprs = " ".join(r["expr"] for g in rules["groups"] for r in g["rules"])
    assert not unknown_metrics(exprs), f"not metrics of src/metrics.rs: {unknown_metrics(exprs)}"
