"""The `service` fixture: a real rradistill server on loopback ports. Helpers live in
deploytools.py (a module name of its own: models/tests has a conftest.py too)."""
import os
import subprocess
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from deploytools import ROOT, free_port, require


@pytest.fixture(scope="session")
def service():
    """The release binary serving the test fixture model on free loopback ports; yields its
    base URL, gRPC address, process and binary; stopped with SIGTERM (it drains and exits 0)
    at the end."""
    binary = require(ROOT / "target/release/rradistill", "cargo build --release --bin rradistill")
    ort = Path(os.environ.get("ORT_DYLIB_PATH", ROOT / ".runtime/onnxruntime/libonnxruntime.so.1.32.0"))
    require(ort, "make setup")
    fixtures = Path(os.environ.get("RRADISTILL_FIXTURES", ROOT / "target/fixtures"))
    model = require(fixtures / "encoder-mini", "make fixtures")
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
