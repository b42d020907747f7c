"""Stage 2, first-stage retrieval: BM25 (bm25s) returns the top 50 documents per query.

Reads ``corpus.jsonl`` and ``queries.jsonl``; writes ``candidates.jsonl``: one line per query
``{"qid", "candidates": [{"doc_id", "bm25"}, ...]}`` best first. Tokenization: bm25s'
default word pattern (it keeps Hangul syllables), lower-cased, English stop words removed.

Usage: python -m rradistill_toolkit.firststage --data models/work/data --out models/work/candidates.jsonl
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import bm25s

from .common import WORK_DIR, load_corpus, load_queries, write_jsonl


class BM25Retriever:
    def __init__(self, corpus: dict[str, dict]):
        self.doc_ids = list(corpus)
        texts = [corpus[d]["text"] for d in self.doc_ids]
        self.model = bm25s.BM25()
        self.model.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)

    def retrieve(self, queries: list[str], k: int = 50) -> list[list[tuple[str, float]]]:
        k = min(k, len(self.doc_ids))
        tokens = bm25s.tokenize(queries, stopwords="en", return_ids=False, show_progress=False)
        tokens = [t if t else ["_"] for t in tokens]  # all-stop-word queries
        idx, scores = self.model.retrieve(tokens, k=k, show_progress=len(queries) > 200,
                                          n_threads=1)
        return [[(self.doc_ids[i], float(s)) for i, s in zip(row_i, row_s)]
                for row_i, row_s in zip(idx, scores)]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="BM25 first stage (stage 2).")
    ap.add_argument("--data", default=str(WORK_DIR / "data"))
    ap.add_argument("--out", default=str(WORK_DIR / "candidates.jsonl"))
    ap.add_argument("--k", type=int, default=50)
    args = ap.parse_args(argv)
    corpus = load_corpus(os.path.join(args.data, "corpus.jsonl"))
    queries = load_queries(os.path.join(args.data, "queries.jsonl"))
    t0 = time.perf_counter()
    retriever = BM25Retriever(corpus)
    t1 = time.perf_counter()
    results = retriever.retrieve([q["text"] for q in queries], k=args.k)
    t2 = time.perf_counter()
    recs = [{"qid": q["qid"], "candidates": [{"doc_id": d, "bm25": s} for d, s in res]}
            for q, res in zip(queries, results)]
    write_jsonl(args.out, recs)
    hit = sum(any(c["doc_id"] in q["relevant"] for c in r["candidates"]) for q, r in zip(queries, recs))
    print(f"firststage: {len(recs)} queries, index {t1 - t0:.1f}s, retrieve {t2 - t1:.1f}s, "
          f"recall@{args.k} {hit / max(1, len(recs)):.3f}", file=sys.stderr)


if __name__ == "__main__":
    main()
