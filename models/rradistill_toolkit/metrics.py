"""Ranking metrics: NDCG@k (exponential gain) and MRR@k, per query; means over queries.

``ranking`` is a list of doc ids, best first; ``gains`` maps doc id -> graded relevance
(missing ids count 0). NDCG uses gain ``2^g - 1`` and discount ``1/log2(rank + 1)``; the
ideal ordering is over all judged documents given (so a relevant document the candidate
list lacks lowers the score). A query without any positive gain scores 0 and is counted.
MRR@k: 1/rank of the first document with a positive gain within the top k, else 0.

``paired_comparison`` says whether one ranker is really better than another on the same
queries: the mean per-query difference, its 95% bootstrap confidence interval and a paired
permutation test's two-sided p-value (scipy.stats). "Clearly above" in a model card means
the interval's lower bound is above zero.
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


def per_query(rankings: dict[str, list[str]], qrels: dict[str, dict[str, float]], metric: str) -> dict[str, float]:
    """One metric per query in ``qrels`` (a query without a ranking scores 0)."""
    fn = METRICS[metric]
    return {qid: fn(rankings.get(qid, []), gains) for qid, gains in qrels.items()}


def paired_comparison(a: dict[str, float], b: dict[str, float], resamples: int = 10000, seed: int = 0) -> dict:
    """``a`` minus ``b`` over the queries both scored: mean difference, 95% percentile
    bootstrap interval of that mean, permutation-test p-value (signs of the per-query
    differences flipped at random), and how many queries went each way."""
    import numpy as np
    from scipy import stats

    qids = sorted(set(a) & set(b))
    xa = np.array([a[q] for q in qids], dtype=np.float64)
    xb = np.array([b[q] for q in qids], dtype=np.float64)
    diff = xa - xb
    out = {"queries": len(qids), "mean_difference": float(diff.mean()) if len(qids) else 0.0,
           "better": int((diff > 0).sum()), "worse": int((diff < 0).sum()), "tied": int((diff == 0).sum())}
    if len(qids) < 2 or not diff.any():
        out.update(ci95=[out["mean_difference"], out["mean_difference"]], p_value=1.0)
        return out
    rng = np.random.default_rng(seed)
    boot = stats.bootstrap((diff,), np.mean, n_resamples=resamples, confidence_level=0.95,
                           method="percentile", random_state=rng)
    perm = stats.permutation_test((xa, xb),
                                  lambda x, y, axis: np.mean(x - y, axis=axis), permutation_type="samples",
                                  vectorized=True, n_resamples=resamples, alternative="two-sided", random_state=rng)
    out.update(ci95=[float(boot.confidence_interval.low), float(boot.confidence_interval.high)],
               p_value=float(perm.pvalue))
    return out


def evaluate_rankings(rankings: dict[str, list[str]], qrels: dict[str, dict[str, float]]) -> dict[str, float]:
    """Mean of every metric over the queries in ``qrels`` (a query without a ranking scores 0)."""
    out = {m: 0.0 for m in METRICS}
    for qid, gains in qrels.items():
        r = rankings.get(qid, [])
        for m, fn in METRICS.items():
            out[m] += fn(r, gains)
    n = max(1, len(qrels))
    return {m: v / n for m, v in out.items()}
