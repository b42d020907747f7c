"""Stage 7, evaluate: every ranker on the held-out queries, against ground truth and teacher.

Each held-out query is re-ranked over its 20 pre-ranked candidates (stage 3), by:
- ``BM25`` (first-stage score), ``pre-ranker`` (its score),
- each teacher given with ``--labels NAME=labels.jsonl`` (the teacher's ranked list, then
  the documents it left out in pre-rank order),
- each student given with ``--student NAME=MODEL_FOLDER`` (an exported ONNX folder, scored
  with ONNX Runtime exactly as the service tokenizes: only the document truncated). An
  encoder folder (RRA-BERT) gets ``[CLS] query [SEP] document [SEP]``; a decoder folder
  (RRA-GPT, manifest ``kind: decoder``) gets its manifest's prompt, built by
  ``export_gpt.folder_encoder`` (``gpt.PromptEncoder``), right-padded.

Metrics (``metrics``): NDCG@1/5/10 and MRR@10 against the ground truth (the source's
known relevant document) and against the reference teacher's labels (``--reference``,
gains 2^-(rank-1), i.e. fidelity to the teacher), for all queries and per language
(en / ko). Paired comparisons on NDCG@10 against ground truth (``metrics.paired_comparison``,
a 95% bootstrap interval and a permutation p-value): each student against BM25, the
pre-ranker, the reference teacher and every other student, and the reference teacher
against BM25. Cost: milliseconds per (query, document) pair on this machine, 2 threads:
students timed here (one batch of 20 pairs per query); BM25 timed here (retrieval of 50
from the whole corpus, per candidate); the pre-ranker and teachers from their own stages'
timings (per candidate of the prompt / scored list).

Writes ``--out``: ``eval.json``, ``eval_table.md``, ``eval.png``.

Usage: python -m rradistill_toolkit.evaluate --labels mpnet=models/work/labels/mpnet.test.jsonl \
           --reference mpnet --student rra-bert=models/rra-bert-mini --out models/work/eval
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

import numpy as np

from .common import WORK_DIR, iter_jsonl, load_corpus, load_queries, read_jsonl, write_json
from .losses import teacher_gains
from .metrics import METRICS, evaluate_rankings, paired_comparison, per_query


def teacher_ranking(label: dict, candidates: list[dict]) -> list[str]:
    ranked = list(label["order"])
    return ranked + [c["doc_id"] for c in candidates if c["doc_id"] not in set(ranked)]


def by_score(candidates: list[dict], scores) -> list[str]:
    order = sorted(range(len(candidates)), key=lambda i: -float(scores[i]))
    return [candidates[i]["doc_id"] for i in order]


def folder_pair_scorer(model_dir: str, threads: int = 2):
    """``score(pairs) -> raw scores`` for an exported folder of any kind, on ONNX Runtime, one
    batch per call, tokenized exactly as the service does: an encoder (RRA-BERT) gets
    ``[CLS] query [SEP] document [SEP]``, a decoder (RRA-GPT) its manifest's prompt, a late
    student (RRA-BERT-m) its query and documents apart (``students.late``)."""
    import json

    import onnxruntime as ort
    from tokenizers import Tokenizer

    from .export import encode_feed

    manifest = json.load(open(os.path.join(model_dir, "manifest.json")))
    kind = manifest.get("kind")
    if kind == "late":
        from .students import late

        return late.folder_scorer(model_dir, threads)
    if kind == "decoder":  # RRA-GPT: the prompt, per the manifest (export_gpt)
        from .export_gpt import folder_encoder

        prompt = folder_encoder(model_dir)
        encode = lambda pairs: prompt.batch(pairs)
    else:
        tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        tok.enable_truncation(max_length=manifest["max_sequence_length"], strategy="only_second")
        encode = lambda pairs: encode_feed(tok, pairs)[0]
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(os.path.join(model_dir, "model.onnx"), so, providers=["CPUExecutionProvider"])
    output = manifest.get("output", "logits")
    return lambda pairs: sess.run([output], encode(pairs))[0].reshape(len(pairs))


def score_student(model_dir: str, queries, prerank, corpus, threads: int = 2):
    score = folder_pair_scorer(model_dir, threads)
    rankings, elapsed, pairs = {}, 0.0, 0
    for q in queries:
        cands = prerank[q["qid"]]["candidates"]
        t0 = time.perf_counter()
        logits = score([(q["text"], corpus[c["doc_id"]]["text"]) for c in cands])
        elapsed += time.perf_counter() - t0
        pairs += len(cands)
        rankings[q["qid"]] = by_score(cands, logits)
    return rankings, 1000 * elapsed / max(1, pairs)


def bm25_ms_per_candidate(data_dir, queries) -> float:
    from .firststage import BM25Retriever

    corpus = load_corpus(os.path.join(data_dir, "corpus.jsonl"))
    r = BM25Retriever(corpus)
    t0 = time.perf_counter()
    r.retrieve([q["text"] for q in queries], k=50)
    return 1000 * (time.perf_counter() - t0) / max(1, 50 * len(queries))


def parse_named(items) -> dict[str, str]:
    out = {}
    for item in items or []:
        name, _, path = item.partition("=")
        out[name] = path
    return out


def run(args) -> dict:
    corpus = load_corpus(os.path.join(args.data, "corpus.jsonl"))
    queries = load_queries(os.path.join(args.data, "queries.jsonl"), args.split)
    prerank = {r["qid"]: r for r in read_jsonl(args.prerank)}
    queries = [q for q in queries if q["qid"] in prerank]
    label_files = parse_named(args.labels)
    labels = {name: {r["qid"]: r for r in iter_jsonl(p)} for name, p in label_files.items()}
    if args.common_queries and labels:
        # compare every method on the queries that every teacher labelled
        common = set.intersection(*(set(v) for v in labels.values()))
        queries = [q for q in queries if q["qid"] in common]
    if args.max_queries and len(queries) > args.max_queries:
        # a seeded sample, so every source and both languages stay in it (the file is in source order)
        keep = set(q["qid"] for q in random.Random(args.seed).sample(queries, args.max_queries))
        queries = [q for q in queries if q["qid"] in keep]
    qids = [q["qid"] for q in queries]
    if args.list_queries:  # the queries this run ranks, for a teacher to label alone
        print("\n".join(qids))
        return {"queries": len(qids)}
    lang = {q["qid"]: q["lang"] for q in queries}

    methods: dict[str, dict] = {}
    methods["BM25"] = {"rankings": {q: by_score(prerank[q]["candidates"], [c["bm25"] for c in prerank[q]["candidates"]]) for q in qids},
                       "ms_per_pair": bm25_ms_per_candidate(args.data, queries), "kind": "first stage"}
    methods["pre-ranker"] = {"rankings": {q: by_score(prerank[q]["candidates"], [c["prerank"] for c in prerank[q]["candidates"]]) for q in qids},
                             "ms_per_pair": float(np.mean([prerank[q].get("prerank_ms_per_pair", 0.0) for q in qids])) if qids else 0.0,
                             "kind": "pre-ranker"}
    for name, labs in labels.items():
        have = [q for q in qids if q in labs]
        methods[f"teacher:{name}"] = {
            "rankings": {q: teacher_ranking(labs[q], prerank[q]["candidates"]) for q in have},
            "ms_per_pair": float(np.mean([labs[q].get("ms", 0.0) / max(1, len(labs[q]["docs"])) for q in have])) if have else 0.0,
            "kind": "teacher", "queries_labelled": len(have),
        }
    for name, folder in parse_named(args.student).items():
        rankings, ms = score_student(folder, queries, prerank, corpus, args.threads)
        methods[name] = {"rankings": rankings, "ms_per_pair": ms, "kind": "student"}

    gt = {q["qid"]: {d: float(g) for d, g in q["relevant"].items()} for q in queries}
    ref = labels.get(args.reference) if args.reference else None
    teacher_qrels = {q: teacher_gains(ref[q]) for q in qids if ref and q in ref} if ref else {}
    groups = {"all": set(qids), "en": {q for q in qids if lang[q] == "en"}, "ko": {q for q in qids if lang[q] == "ko"}}
    source = {q["qid"]: q["source"] for q in queries}
    for s in sorted(set(source.values())):
        groups[f"source:{s}"] = {q for q in qids if source[q] == s}
    result = {"split": args.split, "queries": {g: len(s) for g, s in groups.items()},
              "reference_teacher": args.reference, "methods": {}}
    for name, m in methods.items():
        entry = {"kind": m["kind"], "ms_per_pair": round(m["ms_per_pair"], 4)}
        for g, s in groups.items():
            if not s:
                continue
            sub_gt = {q: gt[q] for q in s if q in m["rankings"] or m["kind"] != "teacher"}
            entry[f"ground_truth/{g}"] = evaluate_rankings(m["rankings"], sub_gt)
            entry[f"ground_truth/{g}"]["queries"] = len(sub_gt)
            if teacher_qrels:
                sub_t = {q: teacher_qrels[q] for q in s if q in teacher_qrels
                         and (q in m["rankings"] or m["kind"] != "teacher")}
                if sub_t:
                    entry[f"teacher/{g}"] = evaluate_rankings(m["rankings"], sub_t)
                    entry[f"teacher/{g}"]["queries"] = len(sub_t)
        if "queries_labelled" in m:
            entry["queries_labelled"] = m["queries_labelled"]
        result["methods"][name] = entry
    result["comparisons"] = compare_students(methods, gt, groups, ref_name=f"teacher:{args.reference}" if ref else None)
    os.makedirs(args.out, exist_ok=True)
    write_json(os.path.join(args.out, "eval.json"), result)
    table = markdown_table(result)
    with open(os.path.join(args.out, "eval_table.md"), "w") as f:
        f.write(table)
    plot(result, os.path.join(args.out, "eval.png"))
    print(table)
    return result


def compare_students(methods: dict, gt: dict, groups: dict, ref_name: str | None, metric: str = "NDCG@10") -> list[dict]:
    """Each student minus each baseline (BM25, pre-ranker, the reference teacher, the other
    students), and the reference teacher minus BM25 (how far above BM25 a faithful student can
    get), on ``metric`` against ground truth, per query group, on the queries both ranked."""
    students = [n for n, m in methods.items() if m["kind"] == "student"]
    pairs = []
    for i, s in enumerate(students):
        pairs += [(s, b) for b in ["BM25", "pre-ranker"] + ([ref_name] if ref_name in methods else []) + students[i + 1:]]
    if ref_name in methods:
        pairs.append((ref_name, "BM25"))
    scores: dict[tuple[str, str], dict[str, float]] = {}  # (method, group) -> per-query metric, computed once

    def of(name: str, g: str) -> dict[str, float]:
        if (name, g) not in scores:
            ranked = methods[name]["rankings"]
            scores[name, g] = per_query(ranked, {q: gt[q] for q in groups[g] if q in ranked}, metric)
        return scores[name, g]

    return [{"a": s, "b": b, "group": g, "metric": metric, **paired_comparison(of(s, g), of(b, g))}
            for s, b in pairs for g, qs in groups.items() if qs]


def comparison_table(result: dict) -> str:
    rows = result.get("comparisons", [])
    if not rows:
        return ""
    lines = [f"\n**Paired comparisons ({rows[0]['metric']}, ground truth): a minus b on the queries both ranked**\n",
             "| a | b | queries | mean difference | 95% interval | p (permutation) | a better / worse / tied |",
             "|---|---|---:|---:|---|---:|---|"]
    for r in rows:
        lines.append(f"| {r['a']} | {r['b']} ({r['group']}) | {r['queries']} | {r['mean_difference']:+.3f} | "
                     f"[{r['ci95'][0]:+.3f}, {r['ci95'][1]:+.3f}] | {r['p_value']:.3g} | "
                     f"{r['better']} / {r['worse']} / {r['tied']} |")
    return "\n".join(lines) + "\n"


def markdown_table(result: dict) -> str:
    lines = []
    for target in ("ground_truth", "teacher"):
        for g in ("all", "en", "ko"):
            rows = [(n, e) for n, e in result["methods"].items() if f"{target}/{g}" in e]
            if not rows:
                continue
            title = "ground truth" if target == "ground_truth" else f"the reference teacher's labels ({result['reference_teacher']})"
            lines.append(f"\n**Against {title}, {g} held-out queries**\n")
            lines.append("| ranker | queries | " + " | ".join(METRICS) + " | ms/pair |")
            lines.append("|---|---:|" + "---:|" * len(METRICS) + "---:|")
            for n, e in rows:
                m = e[f"{target}/{g}"]
                lines.append(f"| {n} | {m['queries']} | " + " | ".join(f"{m[k]:.3f}" for k in METRICS)
                             + f" | {e['ms_per_pair']:.2f} |")
    return "\n".join(lines) + "\n" + source_table(result) + comparison_table(result)


def source_table(result: dict, metric: str = "NDCG@10") -> str:
    """Ground-truth ``metric`` per source (the held-out queries of each)."""
    sources = sorted({k.split("/", 1)[1] for e in result["methods"].values() for k in e
                      if k.startswith("ground_truth/source:")})
    if not sources:
        return ""
    names = [s.split(":", 1)[1] for s in sources]
    lines = [f"\n**{metric} against ground truth, per source (held-out queries)**\n",
             "| ranker | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for n, e in result["methods"].items():
        cells = [f"{e[f'ground_truth/{s}'][metric]:.3f}" if f"ground_truth/{s}" in e else "-" for s in sources]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines.append("| queries | " + " | ".join(str(result["queries"].get(s, 0)) for s in sources) + " |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["methods"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    x = np.arange(len(names))
    width = 0.27
    for i, g in enumerate(("all", "en", "ko")):
        vals = [result["methods"][n].get(f"ground_truth/{g}", {}).get("NDCG@10", np.nan) for n in names]
        axes[0].bar(x + (i - 1) * width, vals, width, label=f"{g} ({result['queries'].get(g, 0)} q)")
    axes[0].set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    axes[0].set_ylabel("NDCG@10 vs ground truth")
    axes[0].set_ylim(0, 1)
    axes[0].legend(fontsize=8)
    axes[0].set_title("Held-out queries, 20 candidates each")
    ms = [max(result["methods"][n]["ms_per_pair"], 1e-4) for n in names]
    axes[1].bar(x, ms, color="gray")
    axes[1].set_yscale("log")
    axes[1].set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    axes[1].set_ylabel("ms per (query, document) pair, 2 CPU threads")
    axes[1].set_title("Cost on this machine")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description="Evaluate rankers on held-out queries (stage 7).")
    ap.add_argument("--data", default=str(WORK_DIR / "data"))
    ap.add_argument("--prerank", default=str(WORK_DIR / "prerank.jsonl"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--labels", nargs="*", metavar="NAME=PATH", help="teacher label files on the split")
    ap.add_argument("--reference", default=None, help="the teacher (a --labels NAME) for fidelity metrics")
    ap.add_argument("--student", nargs="*", metavar="NAME=MODEL_DIR")
    ap.add_argument("--common-queries", action="store_true", help="only queries every teacher labelled")
    ap.add_argument("--max-queries", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0, help="the --max-queries sample's seed")
    ap.add_argument("--list-queries", action="store_true", help="print the qids this run would rank, and stop")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(WORK_DIR / "eval"))
    return ap


def main(argv=None) -> None:
    run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
