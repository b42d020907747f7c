"""NDCG and MRR against hand-computed values."""

import math

import pytest

from rradistill_toolkit.metrics import evaluate_rankings, mrr_at_k, ndcg_at_k


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
