"""The rationale stage (RRA-GPT's L_reason targets): bad LLM output is counted and dropped.

The parser is checked on hand-written bad answers; the stage runs against a loopback stub
of an OpenAI-compatible endpoint that answers badly on purpose, then resumes.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rradistill_toolkit.common import read_jsonl, write_jsonl
from rradistill_toolkit.rationales import build_parser, clean_rationale, run

QUERY = "how do I install a package offline"
DOC = "Use dpkg -i with the .deb file you copied onto the machine to install the package."


@pytest.mark.parametrize("raw, verdict", [
    (None, "empty"),
    ("", "empty"),
    ("   \n\t ", "empty"),
    ('"  "', "empty"),
    ("Rationale:", "empty"),
    ("As an AI language model, I cannot judge documents.", "refusal"),
    ("I'm sorry, but I can't help with that.", "refusal"),
    ("The weather in Paris is lovely in spring.", "off_topic"),
    ("dpkg " + "installs " * 80 + "packages.", "too_long"),
])
def test_bad_rationales_are_dropped(raw, verdict):
    text, got = clean_rationale(raw, QUERY, DOC)
    assert text is None and got == verdict


def test_good_rationales_are_cleaned_and_kept():
    text, verdict = clean_rationale("Rationale: It explains how to install a package with dpkg.", QUERY, DOC)
    assert verdict == "ok" and text == "It explains how to install a package with dpkg."
    text, verdict = clean_rationale("  **Explanation:**  The document   names\n dpkg -i.  ", QUERY, DOC)
    assert verdict == "ok" and text == "The document names dpkg -i."
    long = "It uses dpkg to install. The file is copied offline. A third sentence. A fourth one."
    text, verdict = clean_rationale(long, QUERY, DOC)
    assert verdict == "trimmed" and text == "It uses dpkg to install. The file is copied offline."


ANSWERS = [
    "It shows how to install the package offline with dpkg.",   # ok
    "",                                                          # empty
    "As an AI, I cannot say.",                                   # refusal
    "Bananas are yellow and rich in potassium.",                 # off_topic
    "It mentions install. " * 40,                                # trimmed (two sentences kept)
]


class Stub(BaseHTTPRequestHandler):
    calls = 0

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert body["messages"][-1]["content"].startswith("Query: ")
        answer = ANSWERS[Stub.calls % len(ANSWERS)]
        Stub.calls += 1
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def tiny_data(tmp_path):
    docs = [{"doc_id": f"d{i}", "text": f"Document {i}: install a package offline with dpkg, part {i}."}
            for i in range(20)]
    write_jsonl(tmp_path / "data" / "corpus.jsonl", docs)
    write_jsonl(tmp_path / "data" / "queries.jsonl",
                [{"qid": "q1", "text": QUERY, "split": "train", "lang": "en", "relevant": {"d0": 1}}])
    label = {"qid": "q1", "teacher": "stub", "order": ["d3", "d0"],
             "docs": [{"doc_id": f"d{i}", "group": "top" if i < 10 else "bottom",
                       "bucket": "ranked" if i in (0, 3) else ("missing_hard" if i < 10 else "missing_easy"),
                       "rank": {3: 1, 0: 2}.get(i)} for i in range(20)]}
    write_jsonl(tmp_path / "labels.jsonl", [label])


def test_stage_counts_drops_and_resumes(tmp_path):
    tiny_data(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Stub.calls = 0
    try:
        argv = ["--data", str(tmp_path / "data"), "--labels", str(tmp_path / "labels.jsonl"), "--teacher", "openai",
                "--base-url", f"http://127.0.0.1:{server.server_address[1]}/v1", "--negatives", "3", "--retries", "0"]
        stats = run(build_parser().parse_args(argv))
        assert Stub.calls == 5  # 2 ranked + 3 hard negatives
        rec = read_jsonl(tmp_path / "labels.rationales.jsonl")[0]
        assert rec["qid"] == "q1" and rec["labels"] == "labels.jsonl" and rec["teacher"] == "stub"
        assert list(rec["raw"]) == ["d3", "d0", "d1", "d2", "d4"]  # ranked by rank, then hard negatives
        assert set(rec["rationales"]) == {"d3", "d4"}
        assert rec["issues"] == {"empty": 1, "refusal": 1, "off_topic": 1, "trimmed": 1}
        assert stats["kept"] == 2 and stats["asked"] == 5
        saved = json.loads((tmp_path / "labels.rationales.stats.json").read_text())
        assert saved["issues"] == rec["issues"]
        run(build_parser().parse_args(argv))  # resume: nothing asked again
        assert Stub.calls == 5 and len(read_jsonl(tmp_path / "labels.rationales.jsonl")) == 1
    finally:
        server.shutdown()


def test_endpoint_failure_is_counted_not_fatal(tmp_path):
    tiny_data(tmp_path)
    argv = ["--data", str(tmp_path / "data"), "--labels", str(tmp_path / "labels.jsonl"), "--teacher", "openai",
            "--base-url", "http://127.0.0.1:9/v1", "--retries", "0", "--timeout", "2", "--out", str(tmp_path / "r.jsonl")]
    stats = run(build_parser().parse_args(argv))
    assert stats["kept"] == 0 and stats["issues"] == {"error": 2}
