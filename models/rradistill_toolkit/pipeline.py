"""The whole chain, as run for the reference models ``models/rra-bert-mini`` and (``--student
gpt``) ``models/rra-gpt-mini``.

Runs each stage's own command in order; a stage whose output already exists is skipped
(and the label and train stages resume inside), so an interrupted run is continued by
running the same command again. Heavy stages run under ``nice``.

Reference configuration (the one the committed model card reports):
  data       all sources; at most 900 man-page and 400 library-reference queries; 10% of
             queries held out per source (30% of the Korean FAQ)
  firststage BM25, 50 candidates;  prerank all-MiniLM-L6-v2 bi-encoder, top 10 + bottom 10
  labels     held-out queries: every candidate teacher (all-mpnet-base-v2, all-MiniLM-L6-v2,
             multilingual-e5-small, committees of them with BM25, and SmolLM2-135M-Instruct
             served on loopback on a 30-query sample), to compare them against ground truth;
             training queries: ``--teacher`` (default ``scorer:e5``, multilingual-e5-small, the
             best teacher measured: NDCG@10 0.558 on held-out ground truth) on every training
             query (1199)
  train      RRA-BERT with TCL, and the ablation without, same settings: two passes over
             the training queries (one query a step), each step on 10 of its 20 candidates (the
             5 the teacher ranked + 5 random others), learning rate 1e-4 (encoder) / 1e-3 (heads
             and the re-initialised [CLS] pooler), window 256 pieces (it holds the whole pair for
             a third of the English training pairs, 13% at 128); about 70 minutes per student
             one after the other with 2 threads on 2 shared CPU cores (the committed run trained
             both at once, one thread each: about 100 minutes, 1.35x the pairs per second)
  export     int8 ONNX model folder (the TCL student) + the ablation to the work folder
  evaluate   ground truth and teacher fidelity, per language, ms/pair; card and plot

``--student gpt`` (RRA-GPT) shares the stages up to the training labels (its default teacher is
the mpnet+minilm+bm25 committee, the one its CPU runs learned from), then:
  rationales the extractive explainer (``--explainer``; an LLM endpoint with ``openai``), one
             rationale per ranked document and one hard negative a query
  train_gpt  SmolLM2-135M-Instruct cut to 6 blocks, L_rank + 0.5 L_cls + 0.25 L_reason, and the
             ablation with alpha = beta = 0, same settings: one pass (one query a step, 8 of its
             candidates), window 160, learning rate 3e-4 (decoder) / 1e-3 (ranking layer)
  export     int8 ONNX folder + the ablation to the work folder
  evaluate   the reference teacher's held-out labels; RRA-GPT beside the committed RRA-BERT, BM25
             and the ablation; card

Usage: python -m rradistill_toolkit.pipeline [--student bert|gpt] [--work models/work] [--out FOLDER]
       [--teacher scorer:e5] [--train-queries 0 (all)] [--epochs N] [--train-steps 0 (no cap)]
       [--skip-llm]
Set RRADISTILL_TEACHER_BASE_URL/_MODEL/_API_KEY and pass ``--teacher openai`` to label the
training queries with a strong LLM behind an endpoint instead.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from .common import MODELS_DIR, WORK_DIR

TEST_TEACHERS = ["scorer:mpnet", "scorer:minilm", "scorer:e5", "scorer:committee:mpnet+e5",
                 "scorer:committee:mpnet+bm25", "scorer:committee:minilm+bm25", "scorer:committee:mpnet+minilm+bm25",
                 "scorer:committee:mpnet+e5+bm25", "scorer:committee:mpnet+minilm+e5+bm25"]


def slug(teacher: str) -> str:
    return teacher.split(":", 1)[1].replace(":", "_").replace("+", "-") if teacher.startswith("scorer:") else \
        {"local-llm": "smollm2", "openai": "openai"}.get(teacher, teacher)


def run(args: list[str], skip_if: str | None = None) -> None:
    if skip_if and os.path.exists(skip_if):
        print(f"pipeline: {skip_if} exists, skipping {args[0]}", file=sys.stderr)
        return
    cmd = ["nice", "-n", "10", sys.executable, "-m", f"rradistill_toolkit.{args[0]}", *args[1:]]
    print("pipeline: " + " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, cwd=MODELS_DIR, env=dict(os.environ, HF_HUB_OFFLINE="1"))


DEFAULTS = {  # per student: the committed run's settings
    "bert": {"out": "rra-bert-mini", "teacher": "scorer:e5", "epochs": 2, "max_length": 256, "candidates": 10,
             "lr": 1e-4, "version": "0.5.0"},
    "gpt": {"out": "rra-gpt-mini", "teacher": "scorer:committee:mpnet+minilm+bm25", "epochs": 1, "max_length": 160,
            "candidates": 8, "lr": 3e-4, "version": "0.2.0"},
}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Run the whole distillation pipeline.")
    ap.add_argument("--student", default="bert", choices=sorted(DEFAULTS),
                    help="bert: RRA-BERT (rra-bert-mini); gpt: RRA-GPT (rra-gpt-mini), evaluated beside --bert-model")
    ap.add_argument("--work", default=str(WORK_DIR))
    ap.add_argument("--out", default=None, help="the model folder to write (default: models/rra-bert-mini or rra-gpt-mini)")
    ap.add_argument("--teacher", default=None,
                    help="the teacher that labels the training queries (default: bert scorer:e5, "
                         "gpt scorer:committee:mpnet+minilm+bm25)")
    ap.add_argument("--train-queries", type=int, default=0, help="label a sample of N training queries (0: all)")
    ap.add_argument("--max-length", type=int, default=None, help="training window (default: bert 256, gpt 160)")
    ap.add_argument("--epochs", type=int, default=None, help="passes over the training queries (default: bert 2, gpt 1)")
    ap.add_argument("--train-steps", type=int, default=0, help="cap on training steps, one query each (0: --epochs passes)")
    ap.add_argument("--candidates", type=int, default=None, help="candidates per query and training step (bert 10, gpt 8)")
    ap.add_argument("--lr", type=float, default=None, help="encoder / decoder learning rate (bert 1e-4, gpt 3e-4)")
    ap.add_argument("--head-lr", type=float, default=1e-3, help="learning rate of the heads (and BERT's re-initialised pooler)")
    ap.add_argument("--llm-sample", type=int, default=30)
    ap.add_argument("--skip-llm", action="store_true", help="don't measure the local LLM teacher")
    ap.add_argument("--layers", type=int, default=6, help="gpt: decoder blocks kept")
    ap.add_argument("--alpha", type=float, default=0.5, help="gpt: weight of L_cls")
    ap.add_argument("--beta", type=float, default=0.25, help="gpt: weight of L_reason")
    ap.add_argument("--explainer", default="extractive", help="gpt: the rationale stage's --teacher")
    ap.add_argument("--bert-model", default=str(MODELS_DIR / "rra-bert-mini"), help="gpt: the RRA-BERT to compare with")
    ap.add_argument("--version", default=None)
    a = ap.parse_args(argv)
    for k, v in DEFAULTS[a.student].items():
        if getattr(a, k) is None:
            setattr(a, k, str(MODELS_DIR / v) if k == "out" else v)
    w = a.work
    data, cands, pre, lab = f"{w}/data", f"{w}/candidates.jsonl", f"{w}/prerank.jsonl", f"{w}/labels"
    run(["assets", "--text", "--minilm", "--smollm2", "--mpnet"])
    run(["data", "--out", data, "--max-queries", "man=900", "python-lib=400"], skip_if=f"{data}/queries.jsonl")
    run(["firststage", "--data", data, "--out", cands], skip_if=cands)
    run(["prerank", "--data", data, "--candidates", cands, "--out", pre], skip_if=pre)
    common = ["--data", data, "--prerank", pre, "--cache-dir", f"{w}/cache"]
    train_labels = f"{lab}/{slug(a.teacher)}.train.jsonl"
    run(["labels", *common, "--teacher", a.teacher, "--split", "train", "--sample", str(a.train_queries),
         "--out", train_labels])
    (gpt if a.student == "gpt" else bert)(a, data, pre, common, train_labels)


def bert(a, data: str, pre: str, common: list[str], train_labels: str) -> None:
    w, lab = a.work, f"{a.work}/labels"
    test_labels = {}
    for t in TEST_TEACHERS + ([] if a.teacher in TEST_TEACHERS else [a.teacher]):
        test_labels[slug(t)] = f"{lab}/{slug(t)}.test.jsonl"
        run(["labels", *common, "--teacher", t, "--split", "test", "--out", test_labels[slug(t)]])
    if not a.skip_llm:
        test_labels["smollm2"] = f"{lab}/smollm2.test.jsonl"
        run(["labels", *common, "--teacher", "local-llm", "--split", "test", "--sample", str(a.llm_sample),
             "--workers", "1", "--max-tokens", "80", "--out", test_labels["smollm2"]])
    students = {}
    for name, extra in (("rra-bert", []), ("rra-bert-no-tcl", ["--no-tcl"])):
        out = f"{w}/students/{name}"
        run(["train", "--data", data, "--labels", train_labels, "--out", out, "--max-length", str(a.max_length),
             "--epochs", str(a.epochs), "--max-steps", str(a.train_steps), "--candidates", str(a.candidates),
             "--lr", str(a.lr), "--head-lr", str(a.head_lr), "--threads", "2", *extra],
            skip_if=f"{out}/train_config.json")
        students[name] = out
    run(["export", "--student", students["rra-bert"], "--out", a.out, "--data", data, "--prerank", pre,
         "--version", a.version])
    ablation = f"{w}/export/rra-bert-no-tcl"
    run(["export", "--student", students["rra-bert-no-tcl"], "--out", ablation, "--data", data, "--prerank", pre,
         "--name", "rra-bert-mini-no-tcl", "--version", a.version])
    ref = slug(a.teacher)
    label_args = [f"{k}={v}" for k, v in test_labels.items()]
    run(["evaluate", "--data", data, "--prerank", pre, "--labels", *label_args, "--reference", ref,
         "--student", f"RRA-BERT={a.out}", f"RRA-BERT-no-TCL={ablation}", "--out", f"{w}/eval"])
    if "smollm2" in test_labels:
        run(["evaluate", "--data", data, "--prerank", pre, "--labels", *label_args, "--reference", ref,
             "--common-queries", "--student", f"RRA-BERT={a.out}", f"RRA-BERT-no-TCL={ablation}",
             "--out", f"{w}/eval-llm-sample"])
    run(["card", "--work", w, "--model", a.out, "--teacher", a.teacher, "--train-labels", train_labels])


def gpt(a, data: str, pre: str, common: list[str], train_labels: str) -> None:
    w, ref = a.work, slug(a.teacher)
    test_labels = f"{w}/labels/{ref}.test.jsonl"
    run(["labels", *common, "--teacher", a.teacher, "--split", "test", "--out", test_labels])
    run(["rationales", "--data", data, "--labels", train_labels, "--teacher", a.explainer, "--negatives", "1"])
    students = {"rra-gpt": ["--alpha", str(a.alpha), "--beta", str(a.beta)],
                "rra-gpt-rank-only": ["--alpha", "0", "--beta", "0"]}
    for name, extra in students.items():
        out = f"{w}/students/{name}"
        run(["train_gpt", "--data", data, "--labels", train_labels, "--out", out, "--layers", str(a.layers),
             "--max-length", str(a.max_length), "--docs-per-query", str(a.candidates), "--epochs", str(a.epochs),
             "--max-steps", str(a.train_steps), "--lr", str(a.lr), "--head-lr", str(a.head_lr), "--threads", "2",
             *extra], skip_if=f"{out}/train_config.json")
    ablation = f"{w}/export/rra-gpt-rank-only"
    run(["export_gpt", "--student", f"{w}/students/rra-gpt", "--out", a.out, "--data", data, "--prerank", pre,
         "--version", a.version])
    run(["export_gpt", "--student", f"{w}/students/rra-gpt-rank-only", "--out", ablation, "--data", data,
         "--prerank", pre, "--name", "rra-gpt-mini-rank-only", "--version", a.version])
    run(["evaluate", "--data", data, "--prerank", pre, "--labels", f"{ref}={test_labels}", "--reference", ref,
         "--student", f"RRA-BERT={a.bert_model}", f"RRA-GPT={a.out}", f"RRA-GPT-rank-only={ablation}",
         "--out", f"{w}/eval-gpt"])
    run(["card_gpt", "--model", a.out, "--student", f"{w}/students/rra-gpt", "--eval", f"{w}/eval-gpt",
         "--ablation-student", f"{w}/students/rra-gpt-rank-only",
         "--reproduce", "python -m rradistill_toolkit.pipeline --student gpt"])


if __name__ == "__main__":
    main()
