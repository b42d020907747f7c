"""Stage 2, first-stage retrieval: BM25 (bm25s) returns the top 50 documents per query.

Reads ``corpus.jsonl`` and ``queries.jsonl``; writes ``candidates.jsonl``: one line per query
``{"qid", "candidates": [{"doc_id", "bm25"}, ...]}`` best first.

Tokens (``terms``): lower-cased runs of letters and digits, English stop words removed. A
Korean word (eojeol) glues particles and endings to its stem (``파이썬에서``, ``파이썬을``), so
whole-word tokens rarely match between a Korean query and its answer; ``--korean`` chooses
what a Hangul word becomes:

- ``morphemes`` (default): its content morphemes from Kiwi (``kiwipiepy``, a Korean
  morphological analyzer from the package registry): nouns, verb and adjective stems, roots,
  foreign words and numbers; particles and endings dropped;
- ``bigrams``: its overlapping two-syllable pieces (no dictionary needed);
- ``words``: the word as it stands (what bm25s does by default).

``python -m rradistill_toolkit.firststage --compare`` measures the three on the held-out
Korean queries (recall@50 and MRR@10 of the known relevant document) and writes
``firststage_korean.json`` next to the candidates.

Usage: python -m rradistill_toolkit.firststage --data models/work/data --out models/work/candidates.jsonl
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import sys
import time

import bm25s
import numpy as np

from .common import WORK_DIR, load_corpus, load_queries, write_jsonl

WORD = re.compile(r"[^\W_]+")
HANGUL_WORD = re.compile(r"^[\uac00-\ud7a3]+$")
HAS_HANGUL = re.compile(r"[\uac00-\ud7a3]")
KOREAN_MODES = ("morphemes", "bigrams", "words")
# Kiwi tags kept: general/proper nouns, numerals, pronouns, verb and adjective stems, roots,
# foreign words, Chinese characters, numbers.
CONTENT_TAGS = ("NNG", "NNP", "NNB", "NR", "NP", "VV", "VA", "XR", "SL", "SH", "SN", "MAG")
STOP_WORDS = frozenset(bm25s.stopwords.STOPWORDS_EN)


@functools.lru_cache(maxsize=1)
def _kiwi():
    from kiwipiepy import Kiwi

    return Kiwi(num_workers=1)


def _hangul_terms(word: str, mode: str) -> list[str]:
    if mode == "words" or len(word) == 1:
        return [word]
    if mode == "bigrams":
        return [word[i:i + 2] for i in range(len(word) - 1)]
    raise ValueError(mode)


def terms(text: str, korean: str = "morphemes") -> list[str]:
    """BM25 tokens of ``text`` (see the module doc)."""
    text = text.lower()
    if korean == "morphemes" and HAS_HANGUL.search(text):
        out = []
        for tok in _kiwi().tokenize(text):
            if tok.tag.startswith(CONTENT_TAGS):
                form = tok.form.lower()
                if form not in STOP_WORDS and WORD.fullmatch(form):
                    out.append(form)
        return out
    out = []
    for w in WORD.findall(text):
        if w in STOP_WORDS:
            continue
        out.extend(_hangul_terms(w, korean) if HANGUL_WORD.match(w) else [w])
    return out


def terms_batch(texts: list[str], korean: str = "morphemes") -> list[list[str]]:
    return [terms(t, korean) for t in texts]


class BM25Retriever:
    def __init__(self, corpus: dict[str, dict], korean: str = "morphemes"):
        self.korean = korean
        self.doc_ids = list(corpus)
        tokens = terms_batch([corpus[d]["text"] for d in self.doc_ids], korean)
        self.model = bm25s.BM25()
        self.model.index(tokens, show_progress=False)

    def retrieve(self, queries: list[str], k: int = 50) -> list[list[tuple[str, float]]]:
        k = min(k, len(self.doc_ids))
        tokens = [t or ["_"] for t in terms_batch(queries, self.korean)]  # all-stop-word queries
        idx, scores = self.model.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        return [[(self.doc_ids[i], float(s)) for i, s in zip(row_i, row_s)]
                for row_i, row_s in zip(idx, scores)]


def relevant_ranks(queries: list[dict], results) -> list[int | None]:
    """1-based rank of the first relevant document in each result list (None: not retrieved)."""
    out = []
    for q, res in zip(queries, results):
        rank = next((r for r, (d, _) in enumerate(res, 1) if d in q["relevant"]), None)
        out.append(rank)
    return out


def compare_korean(corpus: dict, queries: list[dict], k: int = 50) -> dict:
    """Recall@k and MRR@10 of the relevant document for held-out Korean queries, per mode."""
    held = [q for q in queries if q["lang"] == "ko" and q["split"] == "test"]
    report = {"queries": len(held), "k": k, "modes": {}}
    for mode in KOREAN_MODES:
        ranks = relevant_ranks(held, BM25Retriever(corpus, mode).retrieve([q["text"] for q in held], k))
        report["modes"][mode] = {
            f"recall@{k}": round(float(np.mean([r is not None for r in ranks])), 4),
            "MRR@10": round(float(np.mean([1.0 / r if r and r <= 10 else 0.0 for r in ranks])), 4),
        }
        print(f"firststage: Korean tokens {mode}: {report['modes'][mode]}", file=sys.stderr)
    return report


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="BM25 first stage (stage 2).")
    ap.add_argument("--data", default=str(WORK_DIR / "data"))
    ap.add_argument("--out", default=str(WORK_DIR / "candidates.jsonl"))
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--korean", default="morphemes", choices=KOREAN_MODES)
    ap.add_argument("--compare", action="store_true", help="measure the Korean token modes, then retrieve")
    args = ap.parse_args(argv)
    corpus = load_corpus(os.path.join(args.data, "corpus.jsonl"))
    queries = load_queries(os.path.join(args.data, "queries.jsonl"))
    if args.compare:
        report = compare_korean(corpus, queries, args.k)
        path = os.path.join(os.path.dirname(os.path.abspath(args.out)), "firststage_korean.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
    t0 = time.perf_counter()
    retriever = BM25Retriever(corpus, args.korean)
    t1 = time.perf_counter()
    results = retriever.retrieve([q["text"] for q in queries], k=args.k)
    t2 = time.perf_counter()
    recs = [{"qid": q["qid"], "candidates": [{"doc_id": d, "bm25": s} for d, s in res]}
            for q, res in zip(queries, results)]
    write_jsonl(args.out, recs)
    hit = sum(r is not None for r in relevant_ranks(queries, results))
    print(f"firststage: {len(recs)} queries, index {t1 - t0:.1f}s, retrieve {t2 - t1:.1f}s, "
          f"recall@{args.k} {hit / max(1, len(recs)):.3f} (Korean tokens: {args.korean})", file=sys.stderr)


if __name__ == "__main__":
    main()
