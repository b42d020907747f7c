"""deploy/kubernetes/reload-fleet.sh against a stand-in cluster: a fake `kubectl` (pods, the
Secret, port-forward) and one loopback HTTP server per pod standing for its service. Every
pod gets POST /admin/reload (the service's route, src/api/admin.rs) with the admin key as a
Bearer token, one at a time; the key comes from ADMIN_API_KEY or the Secret; the first 409
stops the run with a non-zero exit naming the pod; the key never appears on a command line."""
import base64
import json
import os
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deploytools import DEPLOY, ROOT

SCRIPT = DEPLOY / "kubernetes/reload-fleet.sh"
KEY = "admin-key-0123456789abcdef"

FAKE_KUBECTL = r'''#!PYTHON
import base64, json, os, sys, time
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(args) + "\n")
if args[:1] == ["--namespace"]:
    args = args[2:]
pods = json.loads(os.environ["FAKE_PODS"])
if args[:2] == ["get", "secret"]:
    key = os.environ.get("FAKE_SECRET_KEY")
    if key is None:
        sys.exit("Error from server (NotFound): secrets not found")
    print(base64.b64encode(key.encode()).decode(), end="")
elif args[:2] == ["get", "pods"]:
    print("".join(name + "\n" for name in pods), end="")
elif args[0] == "port-forward":
    with open(os.environ["FAKE_LOG"] + ".pids", "a") as pids:
        pids.write(f"{os.getpid()}\n")
    pod = args[1].split("/", 1)[1]
    assert args[2] == ":8080", args
    print(f"Forwarding from 127.0.0.1:{pods[pod]} -> 8080", flush=True)
    print(f"Forwarding from [::1]:{pods[pod]} -> 8080", flush=True)
    time.sleep(60)
else:
    sys.exit(f"fake kubectl: unexpected {args}")
'''


class Pod(BaseHTTPRequestHandler):
    def do_POST(self):
        self.server.calls.append((self.path, self.headers.get("authorization")))
        status = self.server.status
        body = (json.dumps({"kept": [], "loaded": ["rra-bert-m"], "removed": []}) if status == 200
                else json.dumps({"error": "reload failed; the previous models keep serving"}))
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def cluster(tmp_path):
    servers = {}

    def start(statuses, secret_key=None):
        for name, status in statuses.items():
            server = ThreadingHTTPServer(("127.0.0.1", 0), Pod)
            server.calls, server.status = [], status
            threading.Thread(target=server.serve_forever, daemon=True).start()
            servers[name] = server
        kubectl = tmp_path / "kubectl"
        kubectl.write_text(FAKE_KUBECTL.replace("PYTHON", sys.executable))
        kubectl.chmod(0o755)
        env = dict(os.environ, KUBECTL=str(kubectl), FAKE_LOG=str(tmp_path / "kubectl.log"),
                   FAKE_PODS=json.dumps({n: s.server_address[1] for n, s in servers.items()}))
        env.pop("ADMIN_API_KEY", None)
        if secret_key is not None:
            env["FAKE_SECRET_KEY"] = secret_key
        return env, servers

    yield start
    for server in servers.values():
        server.shutdown()
        server.server_close()


def run(env, **extra):
    result = subprocess.run([str(SCRIPT)], env=dict(env, **extra), capture_output=True, text=True, timeout=60)
    # Every port-forward the script started is gone when it exits.
    if os.path.exists(env["FAKE_LOG"] + ".pids"):
        for pid in map(int, open(env["FAKE_LOG"] + ".pids").read().split()):
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            for _ in range(50):
                if not os.path.exists(f"/proc/{pid}") or " Z " in open(f"/proc/{pid}/stat").read():
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, 9)
                pytest.fail(f"port-forward {pid} outlived the script")
    return result


def kubectl_calls(env):
    return [json.loads(line) for line in open(env["FAKE_LOG"])]


def test_the_script_calls_the_services_reload_route():
    admin = (ROOT / "src/api/admin.rs").read_text()
    assert 'post, path = "/admin/reload"' in admin
    assert "/admin/reload" in SCRIPT.read_text() and "Bearer" in SCRIPT.read_text()


def test_every_pod_reloaded_with_the_admin_key(cluster):
    env, servers = cluster({"rradistill-a": 200, "rradistill-b": 200, "rradistill-c": 200})
    result = run(env, ADMIN_API_KEY=KEY, NAMESPACE="search")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reloaded 3 pod(s)" in result.stdout
    calls = kubectl_calls(env)
    assert all(c[:2] == ["--namespace", "search"] for c in calls)
    assert not any(KEY in " ".join(c) for c in calls), "the key must not be on a command line"
    assert not any(c[2:4] == ["get", "secret"] for c in calls), "ADMIN_API_KEY given: no Secret read"
    get_pods = [c for c in calls if c[2:4] == ["get", "pods"]]
    assert get_pods and "app.kubernetes.io/name=rradistill" in get_pods[0]
    assert "--field-selector=status.phase=Running" in get_pods[0]


def test_key_read_from_the_secret(cluster):
    env, servers = cluster({"rradistill-a": 200, "rradistill-b": 200}, secret_key=KEY)
    result = run(env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert any(c[:2] == ["get", "secret"] and "rradistill-api-keys" in c for c in kubectl_calls(env))


def test_requests_reach_each_pod_with_bearer_auth(cluster):
    env, servers = cluster({"rradistill-a": 200, "rradistill-b": 200}, secret_key=KEY)
    result = run(env)
    assert result.returncode == 0, result.stdout + result.stderr
    for name, server in servers.items():
        assert server.calls == [("/admin/reload", f"Bearer {KEY}")], name
    assert "rradistill-a: reloaded" in result.stdout and "rradistill-b: reloaded" in result.stdout


def test_first_failure_stops_the_run(cluster):
    env, servers = cluster({"rradistill-a": 200, "rradistill-b": 409, "rradistill-c": 200})
    result = run(env, ADMIN_API_KEY=KEY)
    assert result.returncode == 1
    assert "rradistill-b: reload failed with HTTP 409" in result.stderr
    assert "reloaded 1 pod(s) before rradistill-b" in result.stderr
    forwarded = [c[1] for c in kubectl_calls(env) if c[0] == "port-forward"]
    assert forwarded == ["pod/rradistill-a", "pod/rradistill-b"]
    assert servers["rradistill-c"].calls == []


def test_no_key_is_an_error(cluster):
    env, servers = cluster({"rradistill-a": 200})
    result = run(env)
    assert result.returncode == 2 and "no admin key" in result.stderr
    assert not [c for c in kubectl_calls(env) if c[0] == "port-forward"]


def test_script_is_executable_bash():
    assert os.access(SCRIPT, os.X_OK)
    assert re.match(r"#!/usr/bin/env bash\n", SCRIPT.read_text())
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
