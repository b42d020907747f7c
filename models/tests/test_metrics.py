"""NDCG and MRR against hand-computed values; paired comparisons on cases with known answers."""

import math

import pytest

from rradistill_toolkit.metrics import evaluate_rankings, mrr_at_k, ndcg_at_k, paired_comparison, per_query


def test_ndcg_single_relevant():
    # relevant at rank 3: DCG = 1/log2(4) = 0.5; ideal = 1
    assert ndcg_at_k(["a", "b", "c"], {"c": 1}, 10) == pytest.approx(0.5)
    assert ndcg_at_k(["a", "b", "c"], {"c": 1}, 1) == 0.0
    assert ndcg_at_k(["c", "a"], {"c": 1}, 1) == 1.0


def test_ndcg_graded():
    # gains 2^g - 1: g=2 -> 3, g=1 -> 1. Ranking [x(1), y(2)]:
    # DCG = 1/1 + 3/log2(3) ; ideal = 3/1 + 1/log2(3)
    got = ndcg_at_k(["x", "y"], {"x": 1, "y": 2}, 10)
    want = (1 + 3 / math.log2(3)) / (3 + 1 / math.log2(3))
    assert got == pytest.approx(want)


def test_ndcg_relevant_missing_from_candidates():
    assert ndcg_at_k(["a", "b"], {"z": 1}, 10) == 0.0
    assert ndcg_at_k(["a"], {}, 10) == 0.0


def test_mrr():
    assert mrr_at_k(["a", "b", "c"], {"b": 1}) == 0.5
    assert mrr_at_k(["a", "b", "c"], {"b": 1, "a": 1}) == 1.0
    assert mrr_at_k(list("abcdefghijk"), {"k": 1}, 10) == 0.0


def test_mean_over_queries():
    res = evaluate_rankings({"q1": ["a", "b"], "q2": ["b", "a"]}, {"q1": {"a": 1}, "q2": {"a": 1}, "q3": {"a": 1}})
    # q1: 1, q2: 1/log2(3), q3 (no ranking): 0
    assert res["NDCG@10"] == pytest.approx((1 + 1 / math.log2(3)) / 3)
    assert res["MRR@10"] == pytest.approx((1 + 0.5) / 3)


def test_paired_comparison_one_ranker_always_better():
    # 10 queries, a beats b by 0.1 on each: the interval is the point itself, and the exact
    # sign-flip test (2^10 patterns) finds only the all-plus and all-minus patterns as extreme
    b = {f"q{i}": 0.05 * i for i in range(10)}
    a = {q: v + 0.1 for q, v in b.items()}
    r = paired_comparison(a, b)
    assert r["queries"] == 10 and (r["better"], r["worse"], r["tied"]) == (10, 0, 0)
    assert r["mean_difference"] == pytest.approx(0.1)
    assert r["ci95"] == pytest.approx([0.1, 0.1])
    assert r["p_value"] == pytest.approx(2 / 1024)


def test_paired_comparison_no_difference_and_unshared_queries():
    a = {"q1": 0.5, "q2": 1.0, "only_a": 1.0}
    b = {"q1": 0.5, "q2": 1.0, "only_b": 0.0}
    r = paired_comparison(a, b)
    assert r["queries"] == 2 and r["tied"] == 2
    assert r["mean_difference"] == 0.0 and r["p_value"] == 1.0


def test_paired_comparison_mixed_differences_are_not_significant():
    a = {"q1": 1.0, "q2": 0.0, "q3": 0.5, "q4": 0.5}
    b = {"q1": 0.0, "q2": 1.0, "q3": 0.5, "q4": 0.25}
    r = paired_comparison(a, b)
    assert r["mean_difference"] == pytest.approx(0.0625)
    assert r["ci95"][0] < 0 < r["ci95"][1]
    assert r["p_value"] > 0.5


def test_per_query():
    rankings = {"q1": ["d1", "d2"], "q2": ["d2", "d1"]}
    qrels = {"q1": {"d1": 1.0}, "q2": {"d1": 1.0}, "q3": {"d1": 1.0}}
    assert per_query(rankings, qrels, "MRR@10") == {"q1": 1.0, "q2": 0.5, "q3": 0.0}
