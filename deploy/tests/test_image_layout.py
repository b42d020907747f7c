"""The image without Docker: its runtime stage rebuilt in a temporary folder from the same
pieces (the ONNX Runtime library taken out of the same wheel by docker/extract-libs.py, the
`libonnxruntime.so` link, the binary) and started the way the image starts it: no arguments,
only the Dockerfile's ENV (paths moved into the folder, ports made free loopback ones). It
must become ready as the HEALTHCHECK script sees it, log JSON, and on SIGTERM (docker stop,
Kubernetes) drain and exit 0."""
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from deploytools import DEPLOY, ROOT, free_port

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def dockerfile_env():
    """The runtime stage's ENV, as the image sets it."""
    block = re.search(r"^ENV ((?:.*\\\n)*.*)$", DOCKERFILE.split("AS runtime", 1)[1], re.M).group(1)
    return dict(pair.split("=", 1) for pair in block.replace("\\\n", " ").split())


def test_runtime_stage_starts_from_its_environment(tmp_path):
    wheels = glob.glob(str(ROOT / ".runtime/wheels/onnxruntime-1.32.0-*.whl"))
    assert wheels, "the onnxruntime 1.32.0 wheel is not in .runtime/wheels: make setup"
    binary = ROOT / "target/release/rradistill"
    assert binary.exists(), "cargo build --release --bin rradistill"
    fixture = ROOT / "target/fixtures/encoder-mini"
    assert fixture.exists(), "make fixtures"

    lib = tmp_path / "opt/onnxruntime/lib"
    subprocess.run([sys.executable, str(DEPLOY / "docker/extract-libs.py"), str(lib), *wheels],
                   check=True, capture_output=True)
    version = re.search(r"^ARG ORT_VERSION=(\S+)", DOCKERFILE, re.M).group(1)
    (lib / "libonnxruntime.so").symlink_to(f"libonnxruntime.so.{version}")

    env = dockerfile_env()
    assert env["ORT_DYLIB_PATH"] == "/opt/onnxruntime/lib/libonnxruntime.so"
    assert env["LD_LIBRARY_PATH"] == "/opt/onnxruntime/lib"
    assert env["LOG_FORMAT"] == "json"
    port, grpc_port = free_port(), free_port()
    env.update(
        ORT_DYLIB_PATH=str(tmp_path) + env["ORT_DYLIB_PATH"],
        LD_LIBRARY_PATH=str(tmp_path) + env["LD_LIBRARY_PATH"],
        MODEL_DIR=str(fixture),  # a small fixture stands in for the image's /app/models folder (faster)
        HOST="127.0.0.1", PORT=str(port), GRPC_PORT=str(grpc_port),
        PATH=os.environ["PATH"])
    proc = subprocess.Popen([str(binary)], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while subprocess.run([str(DEPLOY / "docker/healthcheck.sh")], env=env,
                             capture_output=True).returncode != 0:
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "not ready in 60 s"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out.decode()
    lines = [line for line in out.decode().splitlines() if line.strip()]
    assert lines and all(json.loads(line) for line in lines), "LOG_FORMAT=json: every log line is JSON"
    messages = " ".join(json.loads(line).get("fields", {}).get("message", "") for line in lines)
    assert "ready" in messages, messages
    print("\n".join(lines))
