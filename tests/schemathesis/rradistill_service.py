"""The real service for the schemathesis runs (tests/schemathesis), and the summary lines
the runs leave for conftest.py to print."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# One line per run: filled by the test, printed at the end of the session.
SUMMARY: list[str] = []


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def service(env_extra: dict[str, str]):
    """`target/release/rradistill` on the encoder fixture on free loopback ports; yields
    (base URL, process). On exit: SIGTERM, and the exit status must be 0."""
    fixtures = Path(os.environ.get("RRADISTILL_FIXTURES", ROOT / "target" / "fixtures"))
    ort = os.environ.get("ORT_DYLIB_PATH", str(ROOT / ".runtime/onnxruntime/libonnxruntime.so.1.32.0"))
    binary = ROOT / "target" / "release" / "rradistill"
    assert binary.exists(), f"{binary} is missing: cargo build --release --bin rradistill"
    port, grpc_port = _free_port(), _free_port()
    log = tempfile.NamedTemporaryFile(prefix="rradistill-schemathesis-", suffix=".log", delete=False)
    env = {k: v for k, v in os.environ.items() if k not in ("API_KEY", "ADMIN_API_KEY")}
    env.update(env_extra)
    proc = subprocess.Popen(
        [str(binary), "--model-dir", str(fixtures / "encoder-mini"), "--ort-dylib-path", ort,
         "--host", "127.0.0.1", "--port", str(port), "--grpc-port", str(grpc_port)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"service exited {proc.returncode}:\n{Path(log.name).read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(url + "/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except Exception:
                pass
            assert time.monotonic() < deadline, "service not ready within 60 s"
            time.sleep(0.1)
        yield url, proc
        assert proc.poll() is None, f"the service died during the run:\n{Path(log.name).read_text()[-3000:]}"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, f"service exited {proc.returncode} on SIGTERM"
    os.unlink(log.name)
