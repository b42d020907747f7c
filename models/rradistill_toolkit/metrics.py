"""Ranking metrics: NDCG@k (exponential gain) and MRR@k, per query; means over queries.

``ranking`` is a list of doc ids, best first; ``gains`` maps doc id -> graded relevance
(missing ids count 0). NDCG uses gain ``2^g - 1`` and discount ``1/log2(rank + 1)``; the
ideal ordering is over all judged documents given (so a relevant document the candidate
list lacks lowers the score). A query without any positive gain scores 0 and is counted.
MRR@k: 1/rank of the first document with a positive gain within the top k, else 0.
"""

from __future__ import annotations

import math


def dcg(gains_in_order: list[float], k: int) -> float:
    return sum((2.0 ** g - 1.0) / math.log2(i + 2) for i, g in enumerate(gains_in_order[:k]))


def ndcg_at_k(ranking: list[str], gains: dict[str, float], k: int) -> float:
    ideal = dcg(sorted((g for g in gains.values() if g > 0), reverse=True), k)
    if ideal <= 0:
        return 0.0
    return dcg([gains.get(d, 0.0) for d in ranking], k) / ideal


def mrr_at_k(ranking: list[str], gains: dict[str, float], k: int = 10) -> float:
    for i, d in enumerate(ranking[:k]):
        if gains.get(d, 0.0) > 0:
            return 1.0 / (i + 1)
    return 0.0


METRICS = {
    "NDCG@1": lambda r, g: ndcg_at_k(r, g, 1),
    "NDCG@5": lambda r, g: ndcg_at_k(r, g, 5),
    "NDCG@10": lambda r, g: ndcg_at_k(r, g, 10),
    "MRR@10": lambda r, g: mrr_at_k(r, g, 10),
}


def evaluate_rankings(rankings: dict[str, list[str]], qrels: dict[str, dict[str, float]]) -> dict[str, float]:
    """Mean of every metric over the queries in ``qrels`` (a query without a ranking scores 0)."""
    out = {m: 0.0 for m in METRICS}
    for qid, gains in qrels.items():
        r = rankings.get(qid, [])
        for m, fn in METRICS.items():
            out[m] += fn(r, gains)
    n = max(1, len(qrels))
    return {m: v / n for m, v in out.items()}
