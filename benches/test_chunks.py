"""The chunking bench's bookkeeping: rankings read off the service's sorted results, means per
language, and a seeded sample that keeps the split's order."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chunks  # noqa: E402


def test_a_ranking_follows_the_services_order_by_index():
    answer = {"results": [{"index": 2, "relevance_score": 3.0}, {"index": 0, "relevance_score": 1.0},
                          {"index": 1, "relevance_score": -1.0}]}
    assert chunks.ranking(answer, ["a", "b", "c"]) == ["c", "a", "b"]


def test_means_are_per_language_and_overall():
    per_query = {"q1": {"ndcg": 1.0, "mrr": 1.0}, "q2": {"ndcg": 0.5, "mrr": 0.5}, "q3": {"ndcg": 0.0, "mrr": 0.0}}
    out = chunks.summarise(per_query, {"q1": "en", "q2": "en", "q3": "ko"})
    assert out["all"] == {"queries": 3, "NDCG@10": 0.5, "MRR@10": 0.5}
    assert out["en"]["NDCG@10"] == 0.75 and out["ko"]["queries"] == 1


def test_the_sample_is_seeded_and_in_split_order():
    queries = [{"qid": str(i)} for i in range(50)]
    first = chunks.sample(queries, 10, seed=3)
    assert first == chunks.sample(queries, 10, seed=3) and len(first) == 10
    assert [int(q["qid"]) for q in first] == sorted(int(q["qid"]) for q in first)
    assert chunks.sample(queries, 0, seed=3) == queries
