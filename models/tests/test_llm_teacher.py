"""The label stage against a real local LLM over the OpenAI-compatible protocol on loopback.

SmolLM2-135M-Instruct (GGUF, llama.cpp) is served by rradistill_toolkit.llm_server on
127.0.0.1; the label stage's own HTTP client talks to it. The model is a weak judge: this
checks the plumbing (prompt, HTTP, parsing, issue counting, resume), not label quality.
"""

import json

from rradistill_toolkit.common import read_jsonl


def test_label_stage_with_a_local_llm_over_http(tiny_pipeline, tmp_path):
    from rradistill_toolkit import labels
    from rradistill_toolkit.llm_server import running_server
    from rradistill_toolkit.teachers import OpenAIChatTeacher

    work = tiny_pipeline
    out = tmp_path / "llm.jsonl"
    argv = ["--data", str(work / "data"), "--prerank", str(work / "prerank.jsonl"), "--split", "test",
            "--limit", "2", "--teacher", "local-llm", "--workers", "2", "--max-tokens", "32",
            "--doc-chars", "120", "--out", str(out)]
    labels.main(argv)
    recs = read_jsonl(out)
    assert len(recs) == 2
    for r in recs:
        assert r["teacher"].startswith("local-llm:SmolLM2")
        assert isinstance(r["raw"], str) and r["ms"] > 0
        assert len(r["docs"]) == 20
        assert {d["bucket"] for d in r["docs"]} <= {"ranked", "missing_hard", "missing_easy"}
        assert sum(d["bucket"] == "ranked" for d in r["docs"]) == len(r["order"])
    stats = json.loads((tmp_path / "llm.stats.json").read_text())
    assert stats["queries"] == 2 and stats["failures_this_run"] == 0, stats

    # resume: a rerun asks nothing new
    labels.main(argv)
    assert len(read_jsonl(out)) == 2

    # the server speaks the protocol to any client
    with running_server() as base:
        t = OpenAIChatTeacher(base, "smollm2", max_tokens=8)
        assert isinstance(t.answer("debian", [{"text": "Debian is an operating system."}]), str)
