"""End-to-end smoke run of every stage on a tiny slice of the real text.

data -> BM25 -> pre-rank -> teacher labels (a local scoring committee) -> RRA-BERT with TCL
(a few steps) -> ONNX export (int8, parity and agreement checks) -> evaluation. The exported
folder goes to target/fixtures/smoke-student/ with reference.jsonl, which the Rust tests
load and score with, checking the service against Python's scores.
"""

import json
import os
import pathlib

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[2]
SMOKE_OUT = REPO / "target" / "fixtures" / "smoke-student"
WINDOW = 128


def test_every_stage_on_a_tiny_slice(tiny_pipeline, tmp_path):
    from rradistill_toolkit import evaluate, export, labels, train
    from rradistill_toolkit.common import read_jsonl

    work = tiny_pipeline
    data = str(work / "data")
    queries = read_jsonl(work / "data" / "queries.jsonl")
    assert {q["split"] for q in queries} == {"train", "test"}
    assert any(q["lang"] == "ko" for q in queries)
    cands = read_jsonl(work / "candidates.jsonl")
    assert all(len(r["candidates"]) == 50 for r in cands)
    pre = read_jsonl(work / "prerank.jsonl")
    assert all(len(r["candidates"]) == 20 for r in pre)
    assert all([c["group"] for c in r["candidates"]] == ["top"] * 10 + ["bottom"] * 10 for r in pre)

    for split in ("train", "test"):
        labels.main(["--data", data, "--prerank", str(work / "prerank.jsonl"), "--split", split,
                     "--teacher", "scorer:committee:minilm+bm25", "--cache-dir", str(work / "cache"),
                     "--out", str(work / f"labels.{split}.jsonl")])
    labs = read_jsonl(work / "labels.train.jsonl")
    assert labs and all(sum(d["bucket"] == "ranked" for d in r["docs"]) == 5 for r in labs)

    student = work / "student"
    cfg = train.train(train.build_parser().parse_args(
        ["--data", data, "--labels", str(work / "labels.train.jsonl"), "--out", str(student),
         "--max-steps", "3", "--max-length", str(WINDOW), "--save-every", "2"]))
    assert cfg["tcl"] and cfg["steps"] == 3
    assert os.path.exists(student / "tcl.pt") and os.path.exists(student / "checkpoint.pt")
    losses = [r["loss"] for r in read_jsonl(student / "train_log.jsonl")]
    assert len(losses) == 3 and all(np.isfinite(losses))

    report = export.export(str(student), str(SMOKE_OUT), "int8", data, str(work / "prerank.jsonl"), None,
                           "smoke-student", "smoke-1")
    assert report["parity"]["ok"] and report["parity"]["max_abs_diff_fp32_vs_pytorch"] < 1e-4
    # simplify's first-position pass: the last layer, read only at [CLS], computes that row
    # alone (the parity above holds with it).
    import onnx

    sliced = [n.name for n in onnx.load(str(SMOKE_OUT / "model.onnx")).graph.node if n.name.endswith("first_position/Slice")]
    assert len(sliced) == 1 and "/layer." in sliced[0], sliced
    assert report["int8"]["spearman_all_pairs"] > 0.8
    manifest = json.loads((SMOKE_OUT / "manifest.json").read_text())
    assert manifest["kind"] == "encoder" and manifest["max_sequence_length"] == WINDOW
    assert manifest["output"] == "logits" and manifest["score_activation"] == "sigmoid"
    tok = json.loads((SMOKE_OUT / "tokenizer.json").read_text())
    assert tok["padding"] is None and tok["truncation"] is None
    refs = read_jsonl(SMOKE_OUT / "reference.jsonl")
    assert len(refs) >= 5 and all(np.isfinite(r["logit"]) for r in refs)
    assert max(r["tokens"] for r in refs) == WINDOW  # the long pair was truncated to the window

    res = evaluate.run(evaluate.build_parser().parse_args(
        ["--data", data, "--prerank", str(work / "prerank.jsonl"),
         "--labels", f"committee={work / 'labels.test.jsonl'}", "--reference", "committee",
         "--student", f"smoke={SMOKE_OUT}", "--out", str(tmp_path / "eval")]))
    methods = res["methods"]
    assert set(methods) == {"BM25", "pre-ranker", "teacher:committee", "smoke"}
    for m in methods.values():
        assert 0.0 <= m["ground_truth/all"]["NDCG@10"] <= 1.0 and m["ms_per_pair"] >= 0
    assert methods["teacher:committee"]["teacher/all"]["NDCG@10"] == 1.0  # the teacher agrees with itself
    assert (tmp_path / "eval" / "eval.png").stat().st_size > 1000


def test_a_teacher_labels_only_the_queries_a_run_reads(tiny_pipeline, tmp_path):
    """``--list-queries`` (evaluate, train) names the queries a run reads, ``labels --qids``
    labels those alone, and the pipeline keeps the list (``pipeline.listed``) for its reruns."""
    from rradistill_toolkit import labels, pipeline
    from rradistill_toolkit.common import read_jsonl

    work = tiny_pipeline
    data, pre = str(work / "data"), str(work / "prerank.jsonl")
    split = {q["qid"]: q["split"] for q in read_jsonl(work / "data" / "queries.jsonl")}
    held_out = pipeline.listed(["evaluate", "--data", data, "--prerank", pre, "--max-queries", "3"],
                               str(tmp_path / "eval_qids.txt"))
    qids = pathlib.Path(held_out).read_text().split()
    assert len(qids) == 3 and {split[q] for q in qids} == {"test"}
    before = os.stat(held_out).st_mtime_ns
    assert pipeline.listed(["evaluate", "--never-run"], held_out) == held_out  # kept: not run again
    assert os.stat(held_out).st_mtime_ns == before

    out = tmp_path / "labels.jsonl"
    labels.main(["--data", data, "--prerank", pre, "--split", "all", "--qids", held_out, "--teacher", "scorer:bm25",
                 "--cache-dir", str(work / "cache"), "--out", str(out)])
    assert sorted(r["qid"] for r in read_jsonl(out)) == sorted(qids)

    trained = pipeline.listed(["train", "--data", data, "--labels", str(out), "--out", str(tmp_path / "s")],
                              str(tmp_path / "train_qids.txt"))
    assert pathlib.Path(trained).read_text().split() == []  # the held-out queries are no training queries
