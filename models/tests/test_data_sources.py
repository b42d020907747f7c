"""The data stage's sources, the Korean first stage, the out-of-domain evaluation and the
leave-one-source-out split, each on real text (Debian's help packages, the shipped dev sets)."""

from __future__ import annotations

import json
import random

import pytest


@pytest.fixture(scope="session")
def help_packages():
    from rradistill_toolkit import assets

    missing = assets.ensure_unpacked(["gnome-user-docs", "libreoffice-help-ko"])
    if missing:
        pytest.fail(f"could not fetch {missing} (apt-get download): the help text sources need them")


def test_gnome_help_pages_are_documents_and_their_titles_queries(help_packages):
    from rradistill_toolkit.data import gnome_help

    docs, queries = gnome_help.source("ko")
    assert len(docs) > 200 and len(queries) > 200
    by_id = {d["doc_id"]: d for d in docs}
    q = next(q for q in queries if q["relevant"] == {"gnome-ko-net-wireless-connect": 1})
    assert q["lang"] == "ko" and "무선" in q["text"]
    doc = by_id["gnome-ko-net-wireless-connect"]
    assert q["text"] not in doc["text"][:40]  # the title is the query, not part of the answer
    assert "시스템 메뉴" in doc["text"] and "<" not in doc["text"]


def test_libreoffice_help_sections_and_headings(help_packages):
    from rradistill_toolkit.assets import text_path
    from rradistill_toolkit.data import html_help

    sections = html_help.read_sections(text_path(html_help.LIBREOFFICE["ko"] + "/shared/main0108.html"))
    assert sections and all("<" not in t for _, _, t in sections)
    docs, queries = html_help.source_pages(html_help.LIBREOFFICE["ko"] + "/shared", "libreoffice-ko", "ko",
                                           "main01*.html")
    assert docs and all(len(d["text"]) >= 80 for d in docs)
    for q in queries:  # a heading is a query only in its document's language, never a bare label
        doc = next(d for d in docs if d["doc_id"] in q["relevant"])
        assert q["lang"] == doc["lang"] and q["text"].lower() not in html_help.GENERIC


def test_info_nodes_are_documents_and_titles_queries():
    from rradistill_toolkit.data import info

    docs, queries = info.source()
    assert len(docs) > 100 and len(queries) > 50
    assert all(not d["doc_id"].startswith("info-python") for d in docs)
    assert not any("license" in d["title"].lower() for d in docs)
    assert all(len(q["text"].split()) >= 3 for q in queries)


def test_pseudo_queries_take_the_sentence_out_of_its_passage():
    from rradistill_toolkit.data.pseudo import add_pseudo_queries

    text = ("Debian keeps every package in a pool. The mirror network copies the pool every six hours "
            "so that users everywhere get updates quickly and reliably. Security updates go to a separate "
            "archive that is not mirrored. Backports live in their own suite as well.")
    docs = [{"doc_id": "d1", "lang": "en", "text": text}, {"doc_id": "d2", "lang": "en", "text": "Too short."}]
    qs = add_pseudo_queries(docs, 5, "src", random.Random(1))
    assert len(qs) == 1 and qs[0]["kind"] == "pseudo" and qs[0]["relevant"] == {"d1": 1}
    assert qs[0]["text"] in text and qs[0]["text"] not in docs[0]["text"]  # removed from the corpus
    assert not text.startswith(qs[0]["text"])  # never the first sentence


def test_build_drops_recurring_headings_and_splits_every_source(text_packages):
    from rradistill_toolkit import data

    qs = [{"text": "Activating the tool", "kind": "structure"}] * 3 + [{"text": "Crop an image", "kind": "structure"}]
    assert [q["text"] for q in data.drop_recurring(qs)] == ["Crop an image"]
    corpus, queries = data.build(["debian-faq-en", "debian-faq-ko"], 0.2, 13, pseudo={"debian-faq-ko": 10})
    for src in ("debian-faq-en", "debian-faq-ko"):
        mine = [q for q in queries if q["source"] == src]
        assert {q["split"] for q in mine} == {"train", "test"}
    pseudo = [q for q in queries if q["kind"] == "pseudo"]
    assert pseudo and all(q["lang"] == "ko" for q in pseudo)
    ids = {d["doc_id"] for d in corpus}
    assert all(set(q["relevant"]) <= ids for q in queries)


def test_korean_first_stage_tokens():
    from rradistill_toolkit.firststage import terms

    # particles and endings go, the stems stay: the question and its answer share terms
    q = terms("파이썬에서 파일을 여는 방법", "morphemes")
    d = terms("파이썬은 open 함수로 파일을 엽니다", "morphemes")
    assert "파이썬" in q and "파이썬" in d and "파일" in q and "파일" in d
    assert terms("파이썬에서", "bigrams") == ["파이", "이썬", "썬에", "에서"]
    assert terms("파이썬에서 the file", "words") == ["파이썬에서", "file"]


def test_out_of_domain_evaluation_on_a_slice(tmp_path):
    from rradistill_toolkit import ood

    cases = {lang: ood.load_set(path)[:4] for lang, path in ood.SETS.items()}
    sets = {}
    for lang, c in cases.items():
        sets[lang] = tmp_path / f"{lang}.json"
        sets[lang].write_text(json.dumps(c, ensure_ascii=False))
    # a ranker that knows the answer, and one that ranks it last: the metrics must tell them apart
    oracle = {json.dumps(c["documents"]): c["relevant"] for cs in cases.values() for c in cs}
    best = lambda q, docs: [1.0 if i == oracle[json.dumps(docs)] else 0.0 for i in range(len(docs))]
    worst = lambda q, docs: [-1.0 if i == oracle[json.dumps(docs)] else 0.0 for i in range(len(docs))]
    res = ood.run({"oracle": best, "contrarian": worst}, sets)
    for lang in sets:
        r = res["sets"][lang]["rankers"]
        assert r["oracle"]["MRR"] == 1.0 and r["oracle"]["top1"] == 4
        assert r["contrarian"]["MRR"] == pytest.approx(1 / 6, abs=1e-4)
        bm25 = [ood.rank_of_relevant(ood.bm25_scores(c["query"], c["documents"]), c["relevant"]) for c in cases[lang]]
        assert r["BM25"]["ranks"] == bm25
        longest = [1 + sum(len(d) >= len(c["documents"][c["relevant"]]) for i, d in enumerate(c["documents"])
                           if i != c["relevant"]) for c in cases[lang]]
        assert r[ood.LONGEST]["ranks"] == longest
    cmp = {(c["set"], c["a"], c["b"]): c for c in res["comparisons"]}
    assert cmp["en", "oracle", "BM25"]["mean_difference"] >= 0
    assert "| oracle |" in ood.table(res)


def test_the_public_sets_relevant_passage_is_always_the_longest():
    """Why ``ood`` reports ``longest first``: a length preference alone ranks these sets
    perfectly. If the sets are ever replaced, this says whether the caveat still applies."""
    from rradistill_toolkit import ood

    res = ood.run({})
    for lang in ood.SETS:
        assert res["sets"][lang]["rankers"][ood.LONGEST]["MRR"] == 1.0


def test_equal_length_takes_the_length_preference_away():
    """The control run: every document cut to its case's shortest, at a word, so a length
    preference no longer finds the relevant passage; rankers are handed the cut documents."""
    from rradistill_toolkit import ood

    for path in ood.SETS.values():
        for case in ood.load_set(path):
            cut = ood.equal_length(case)
            shortest = min(len(d) for d in case["documents"])
            assert cut["query"] == case["query"] and cut["relevant"] == case["relevant"]
            for before, after in zip(case["documents"], cut["documents"]):
                assert before.startswith(after) and 0 < len(after) <= shortest
                assert after == before or before[len(after)] == " " or len(after) == shortest
    seen = []
    res = ood.run({"reader": lambda q, docs: seen.extend(docs) or [0.0] * len(docs)}, cut_to_equal_length=True)
    cases = [ood.equal_length(c) for p in ood.SETS.values() for c in ood.load_set(p)]
    assert seen == [d for c in cases for d in c["documents"]]
    for lang in ood.SETS:
        assert res["sets"][lang]["rankers"][ood.LONGEST]["MRR"] < 0.5


def test_ood_bm25_matches_the_sets_own_checker():
    """The sets' own checker (shipped beside them, unchanged) and ours agree on every case."""
    import importlib.util

    from rradistill_toolkit import ood
    from rradistill_toolkit.common import MODELS_DIR

    path = MODELS_DIR / "ood" / "check_bm25.py"
    spec = importlib.util.spec_from_file_location("check_bm25", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for lang, p in ood.SETS.items():
        for c in ood.load_set(p):
            assert ood.bm25_scores(c["query"], c["documents"]) == pytest.approx(mod.bm25_scores(c["query"], c["documents"]))


def test_leave_one_source_out_holds_out_a_whole_family():
    from rradistill_toolkit import loso

    queries = [{"qid": f"{s}-{i}", "source": s, "split": "test" if i < 2 else "train"}
               for s in ("gimp-en", "gimp-ko", "man") for i in range(6)]
    held = loso.held_out_queries(queries, loso.FAMILIES["gimp"], 5)
    assert {q["source"] for q in held} <= {"gimp-en", "gimp-ko"} and len(held) == 5
    assert [q["split"] for q in held[:4]] == ["test"] * 4  # held-out split first
    assert set(loso.FAMILIES) == {"debian", "python", "unix", "libreoffice", "gimp", "gnome"}
    from rradistill_toolkit.data import ALL_SOURCES

    family_sources = [s for f in loso.FAMILIES.values() for s in f]
    assert sorted(family_sources) == sorted(ALL_SOURCES)  # every source is in exactly one family
    parser = loso.train_stage.build_parser()
    args = parser.parse_args(["--labels", "x", "--out", "y", "--exclude-sources", "gimp-en", "gimp-ko"])
    assert args.exclude_sources == ["gimp-en", "gimp-ko"]


def test_a_source_with_no_documents_stops_the_data_stage(monkeypatch):
    """A help package that is neither installed nor unpacked yields no pages: the stage stops
    and says how to get them, instead of writing a corpus without that source."""
    from rradistill_toolkit import data

    monkeypatch.setitem(data.SOURCES, "gimp-ko", lambda: ([], []))
    with pytest.raises(SystemExit, match=r"'gimp-ko' has no documents.*assets --text"):
        data.build(["gimp-ko"], 0.1, 13)
