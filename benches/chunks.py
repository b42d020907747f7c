"""What reading long documents in chunks does to ranking and to cost, through the service.

What it answers: whether `--max-chunks-per-document` (a document over the window read in
overlapping windows, scored as its best; src/model/tokenize.rs) ranks held-out queries
better than cutting each document to one window, and what it costs. The queries are the
toolkit's held-out split (`models/work/data`, never trained on), each ranking its pre-ranked
candidates (`models/work/prerank.jsonl`, the evaluate stage's) against its known relevant
document; the documents are the corpus's sections, many longer than a student's window.

One release binary serves the model with `--max-chunks-per-document` at the largest setting
asked; every query is sent once per setting (`max_chunks_per_doc`), the settings in turn, so
machine noise falls on all of them alike. Reported per setting: NDCG@10 and MRR@10 (all, en,
ko) against the known relevant document, the paired difference from one chunk (95% bootstrap
interval, permutation p), the documents still cut after their last chunk, the tokens scored,
and the wall time of the requests as a ratio to one chunk's.

    .venv/bin/python benches/chunks.py --model models/rra-bert-m --chunks 1 2 4 \\
        --json benches/results/chunks/rra-bert-m-heldout.json
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import sys
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "models"))
from rradistill_toolkit.common import load_corpus, load_queries, read_jsonl  # noqa: E402
from rradistill_toolkit.metrics import mrr_at_k, ndcg_at_k, paired_comparison  # noqa: E402
from rradistill_toolkit.ood import serving  # noqa: E402


def rerank(base: str, query: str, documents: list[str], chunks: int) -> dict:
    body = {"query": query, "documents": documents, "raw_scores": True, "max_chunks_per_doc": chunks}
    request = urllib.request.Request(base + "/v1/rerank", data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as r:
        return json.load(r)


def ranking(answer: dict, doc_ids: list[str]) -> list[str]:
    """Doc ids best first (the service sorts; ties by index)."""
    return [doc_ids[r["index"]] for r in answer["results"]]


def sample(queries: list[dict], n: int, seed: int) -> list[dict]:
    if n and len(queries) > n:
        keep = {q["qid"] for q in random.Random(seed).sample(queries, n)}
        queries = [q for q in queries if q["qid"] in keep]
    return queries


def summarise(per_query: dict[str, dict], langs: dict[str, str]) -> dict:
    out = {}
    for group in ("all", "en", "ko"):
        qids = [q for q in per_query if group == "all" or langs[q] == group]
        if qids:
            out[group] = {"queries": len(qids),
                          "NDCG@10": round(sum(per_query[q]["ndcg"] for q in qids) / len(qids), 4),
                          "MRR@10": round(sum(per_query[q]["mrr"] for q in qids) / len(qids), 4)}
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "models/rra-bert-m"))
    ap.add_argument("--binary", default=str(ROOT / "target/release/rradistill"))
    ap.add_argument("--data", default=str(ROOT / "models/work/data"))
    ap.add_argument("--prerank", default=str(ROOT / "models/work/prerank.jsonl"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--chunks", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--queries", type=int, default=300, help="a seeded sample of the split (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    settings = sorted(set(args.chunks))
    if settings[0] != 1:
        settings = [1] + settings  # everything is compared with one chunk

    corpus = load_corpus(os.path.join(args.data, "corpus.jsonl"))
    prerank = {r["qid"]: r for r in read_jsonl(args.prerank)}
    queries = [q for q in load_queries(os.path.join(args.data, "queries.jsonl"), args.split) if q["qid"] in prerank]
    queries = sample(queries, args.queries, args.seed)
    langs = {q["qid"]: q["lang"] for q in queries}
    per_setting = {c: {} for c in settings}
    cost = {c: {"seconds": 0.0, "documents": 0, "input_tokens": 0, "documents_truncated": 0} for c in settings}
    name = pathlib.Path(args.model).name
    with serving(args.binary, {name: args.model}, args=("--max-chunks-per-document", str(settings[-1]))) as base:
        rerank(base, "warm up", ["a document"], 1)
        for q in queries:
            doc_ids = [c["doc_id"] for c in prerank[q["qid"]]["candidates"]]
            documents = [corpus[d]["text"] for d in doc_ids]
            gains = {d: float(g) for d, g in q["relevant"].items()}
            for c in settings:
                started = time.perf_counter()
                answer = rerank(base, q["text"], documents, c)
                cost[c]["seconds"] += time.perf_counter() - started
                meta = answer["meta"]
                for key in ("input_tokens", "documents_truncated", "documents"):
                    cost[c][key] += meta[key]
                order = ranking(answer, doc_ids)
                per_setting[c][q["qid"]] = {"ndcg": ndcg_at_k(order, gains, 10), "mrr": mrr_at_k(order, gains, 10)}
    base_cost = cost[1]
    result = {"model": args.model, "split": args.split, "queries": len(queries), "seed": args.seed,
              "settings": {}, "command": " ".join(["benches/chunks.py", *(argv if argv is not None else sys.argv[1:])])}
    for c in settings:
        entry = {"quality": summarise(per_setting[c], langs), "cost": {
            **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in cost[c].items()},
            "time_vs_one_chunk": round(cost[c]["seconds"] / base_cost["seconds"], 3),
            "tokens_vs_one_chunk": round(cost[c]["input_tokens"] / base_cost["input_tokens"], 3)}}
        if c != 1:
            entry["minus_one_chunk"] = {}
            for group in ("all", "en", "ko"):
                qids = [q for q in per_setting[c] if group == "all" or langs[q] == group]
                if qids:
                    entry["minus_one_chunk"][group] = paired_comparison(
                        {q: per_setting[c][q]["ndcg"] for q in qids}, {q: per_setting[1][q]["ndcg"] for q in qids})
        result["settings"][str(c)] = entry
    print(json.dumps(result["settings"], indent=1))
    if args.json:
        pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
