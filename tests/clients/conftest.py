"""The release binary serving the shipped models file (models/models.toml) on loopback, with
an API key, for the client libraries to talk to as they would to Cohere or Infinity."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "clients-test-key-0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    def __init__(self, extra: list[str]):
        binary = ROOT / "target" / "release" / "rradistill"
        if not binary.is_file():
            pytest.fail(f"{binary} is missing: build it with `cargo build --release` (make test does)")
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="rradistill-clients-", suffix=".log", delete=False)
        env = dict(os.environ, API_KEY=API_KEY)
        env.setdefault("ORT_DYLIB_PATH", str(ROOT / ".runtime/onnxruntime/libonnxruntime.so.1.32.0"))
        self.proc = subprocess.Popen(
            [str(binary), "--models-file", str(ROOT / "models/models.toml"), "--host", "127.0.0.1",
             "--port", str(self.port), "--grpc-port", str(_free_port()), *extra],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                pytest.fail("the service exited at start-up:\n" + Path(self.log.name).read_text()[-3000:])
            try:
                with urllib.request.urlopen(self.url + "/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail("the service was not ready within 120 s")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            assert self.proc.wait(timeout=40) == 0, "the service did not exit 0 on SIGTERM"
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


@pytest.fixture(scope="session")
def service():
    # Documents over the window may be read in up to 4 chunks (the clients' short ones fit one).
    s = Service(["--max-chunks-per-document", "4"])
    yield s
    s.stop()
