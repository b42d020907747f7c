"""Bucketing, resume, and the HTTP teacher client's retries (against a loopback stub)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from rradistill_toolkit.common import ResumableWriter, read_jsonl
from rradistill_toolkit.labels import bucket_documents, run_labels
from rradistill_toolkit.teachers import OpenAIChatTeacher


def candidates():
    return [{"doc_id": f"t{i}", "group": "top"} for i in range(10)] + \
           [{"doc_id": f"b{i}", "group": "bottom"} for i in range(10)]


def test_bucketing():
    out = {d["doc_id"]: d for d in bucket_documents(candidates(), ["t3", "b7", "t0"])}
    assert out["t3"] == {"doc_id": "t3", "group": "top", "bucket": "ranked", "rank": 1}
    assert out["b7"]["bucket"] == "ranked" and out["b7"]["rank"] == 2
    assert out["t0"]["rank"] == 3
    assert out["t1"]["bucket"] == "missing_hard" and out["t1"]["rank"] is None
    assert out["b0"]["bucket"] == "missing_easy"
    counts = {}
    for d in out.values():
        counts[d["bucket"]] = counts.get(d["bucket"], 0) + 1
    assert counts == {"ranked": 3, "missing_hard": 8, "missing_easy": 9}


def test_resumable_writer_repairs_a_torn_line(tmp_path):
    p = tmp_path / "l.jsonl"
    with ResumableWriter(p, "qid") as w:
        w.append({"qid": "a"})
        w.append({"qid": "b"})
    with open(p, "a") as f:
        f.write('{"qid": "c", "trunc')  # killed mid-write
    w = ResumableWriter(p, "qid")
    assert w.done == {"a", "b"}
    w.append({"qid": "c"})
    w.close()
    assert [r["qid"] for r in read_jsonl(p)] == ["a", "b", "c"]


class CountingTeacher:
    kind = "llm"
    name = "fake"

    def __init__(self):
        self.calls = 0

    def answer(self, query, docs):
        self.calls += 1
        return "[2] > [1]"


def test_label_stage_resumes(tmp_path):
    corpus = {c["doc_id"]: {"doc_id": c["doc_id"], "text": "x"} for c in candidates()}
    queries = [{"qid": f"q{i}", "text": f"query {i}"} for i in range(5)]
    prerank = {q["qid"]: {"qid": q["qid"], "candidates": candidates()} for q in queries}
    out = tmp_path / "labels.jsonl"
    t = CountingTeacher()
    run_labels(t, queries[:3], prerank, corpus, out, progress=False)
    assert t.calls == 3
    run_labels(t, queries, prerank, corpus, out, workers=2, progress=False)
    assert t.calls == 5  # only the two new queries
    recs = read_jsonl(out)
    assert sorted(r["qid"] for r in recs) == [f"q{i}" for i in range(5)]
    stats = json.load(open(tmp_path / "labels.stats.json"))
    assert stats["queries"] == 5 and stats["buckets"]["ranked"] == 10


def test_openai_client_retries_then_succeeds():
    calls = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            calls.append((self.path, self.headers.get("Authorization"), body["model"]))
            if len(calls) == 1:
                self.send_response(503)
                self.end_headers()
                return
            data = json.dumps({"choices": [{"message": {"role": "assistant", "content": "[1]"}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        t = OpenAIChatTeacher(f"http://127.0.0.1:{srv.server_address[1]}/v1", "m", api_key="k", retries=2, rate=50)
        assert t.answer("q", [{"text": "d"}]) == "[1]"
    finally:
        srv.shutdown()
    assert len(calls) == 2
    assert calls[1] == ("/v1/chat/completions", "Bearer k", "m")
