"""The listwise answer parser: garbage, partial, duplicate, empty answers."""

from rradistill_toolkit.teachers import build_messages, parse_ranking, shuffled


def test_clean_answer():
    r = parse_ranking("[3] > [1] > [7]", 20)
    assert r.order == [3, 1, 7]
    assert r.issues == {}


def test_prose_around_the_list():
    r = parse_ranking("Sure! Here is the ranking:\n[2] > [5]\nHope this helps.", 20)
    assert r.order == [2, 5]
    assert r.issues == {"prose": 1}


def test_duplicates_keep_first():
    r = parse_ranking("[4] > [2] > [4] > [2] > [9]", 20)
    assert r.order == [4, 2, 9]
    assert r.issues == {"duplicate": 2}


def test_unknown_ids_dropped():
    r = parse_ranking("[21] > [0] > [3] > [99]", 20)
    assert r.order == [3]
    assert r.issues == {"unknown_id": 3}


def test_empty_and_none():
    for answer in ("", "   ", None):
        r = parse_ranking(answer, 20)
        assert r.order == [] and r.issues == {"empty": 1}


def test_garbage_without_ids():
    r = parse_ranking("I cannot help with that request.", 20)
    assert r.order == []
    assert r.issues == {"prose": 1, "empty": 1}


def test_bare_numbers_fallback():
    r = parse_ranking("3, 1, 12", 20)
    assert r.order == [3, 1, 12]
    assert r.issues == {"bare_numbers": 1}


def test_partial_truncated_answer():
    # generation cut off mid-list: the ids that made it are kept
    r = parse_ranking("[5] > [6] > [1", 20)
    assert r.order == [5, 6]
    assert "prose" in r.issues


def test_dates_are_not_ids():
    r = parse_ranking("[20] 1984-05-26 12:32:53.199", 20)
    assert r.order == [20]


def test_prompt_shuffle_is_deterministic_and_complete():
    cands = [{"doc_id": f"d{i}", "text": f"text {i}"} for i in range(20)]
    a, b = shuffled(cands, "q1"), shuffled(cands, "q1")
    assert a == b and sorted(c["doc_id"] for c in a) == sorted(c["doc_id"] for c in cands)
    assert [c["doc_id"] for c in a] != [c["doc_id"] for c in cands]
    msgs = build_messages("a query", a)
    assert "[20]" in msgs[1]["content"] and "a query" in msgs[1]["content"]
