"""Stage 3, pre-rank: a cheap existing model scores the 50 candidates; keep top 10 + bottom 10.

The kept 20 are what the teacher ranks in ONE prompt (no sliding window). Each kept
candidate carries its ``group`` (``top`` or ``bottom``): the label stage uses it to tell
hard negatives (left out by the teacher but from the top 10) from easy ones.

Reads ``candidates.jsonl`` (stage 2) and the corpus; writes ``prerank.jsonl``: one line per
query ``{"qid", "prerank_ms_per_pair", "candidates": [{"doc_id", "bm25", "prerank", "group"}]}``
(20 entries, pre-rank order). Default pre-ranker: all-MiniLM-L6-v2 bi-encoder.

Usage: python -m rradistill_toolkit.prerank --data models/work/data \
           --candidates models/work/candidates.jsonl --out models/work/prerank.jsonl
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from tqdm import tqdm

from .common import WORK_DIR, load_corpus, load_queries, read_jsonl, set_threads, write_jsonl
from .scorers import make_scorer


def keep_top_bottom(cands: list[dict], scores: list[float], top: int, bottom: int) -> list[dict]:
    order = sorted(range(len(cands)), key=lambda i: -scores[i])
    if len(order) <= top + bottom:
        keep = [(i, "top" if r < top else "bottom") for r, i in enumerate(order)]
    else:
        keep = [(i, "top") for i in order[:top]] + [(i, "bottom") for i in order[-bottom:]]
    return [dict(cands[i], prerank=float(scores[i]), group=g) for i, g in keep]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Pre-rank the 50 candidates (stage 3).")
    ap.add_argument("--data", default=str(WORK_DIR / "data"))
    ap.add_argument("--candidates", default=str(WORK_DIR / "candidates.jsonl"))
    ap.add_argument("--out", default=str(WORK_DIR / "prerank.jsonl"))
    ap.add_argument("--scorer", default="minilm")
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--bottom", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    set_threads(args.threads)
    corpus = load_corpus(os.path.join(args.data, "corpus.jsonl"))
    queries = {q["qid"]: q for q in load_queries(os.path.join(args.data, "queries.jsonl"))}
    cand_recs = [r for r in read_jsonl(args.candidates) if r["qid"] in queries]
    scorer = make_scorer(args.scorer, args.threads)
    t0 = time.perf_counter()
    all_docs = {c["doc_id"]: corpus[c["doc_id"]] for r in cand_recs for c in r["candidates"]}
    scorer.prepare([queries[r["qid"]]["text"] for r in cand_recs], list(all_docs.values()))
    out = []
    n_pairs = 0
    for r in tqdm(cand_recs, desc="prerank", disable=None):
        docs = [dict(corpus[c["doc_id"]], **c) for c in r["candidates"]]
        scores = scorer.score(queries[r["qid"]]["text"], docs)
        n_pairs += len(docs)
        out.append({"qid": r["qid"], "candidates": keep_top_bottom(r["candidates"], scores, args.top, args.bottom)})
    ms = 1000 * (time.perf_counter() - t0) / max(1, n_pairs)
    for rec in out:
        rec["prerank_ms_per_pair"] = ms
    write_jsonl(args.out, out)
    print(f"prerank: {len(out)} queries with {args.scorer}, {ms:.2f} ms/pair "
          f"(documents embedded once, shared across queries)", file=sys.stderr)


if __name__ == "__main__":
    main()
