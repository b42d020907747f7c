"""The card's derived figures: computed from the files it is given, never typed in."""

import json

from tokenizers import Tokenizer

from rradistill_toolkit.card import faq_pieces, window_holds
from rradistill_toolkit.common import MODELS_DIR


def test_faq_pieces_is_the_median_per_language_of_the_debian_faq_only(tmp_path):
    model = MODELS_DIR / "rra-bert-mini"
    docs = [("debian-faq-en", "en", "Use dpkg to install a package."),
            ("debian-faq-en", "en", "The release cycle of Debian stable is about two years long."),
            ("debian-faq-en", "en", "Yes."),
            ("debian-faq-ko", "ko", "패키지를 설치하려면 dpkg 를 쓰세요."),
            ("man", "en", "a much longer man page text " * 20)]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"doc_id": str(i), "source": s, "lang": lang, "title": "", "text": t},
                                         ensure_ascii=False) + "\n" for i, (s, lang, t) in enumerate(docs)))
    tok = Tokenizer.from_file(str(model / "tokenizer.json"))
    n = lambda t: len(tok.encode(t, add_special_tokens=False).ids)
    got = faq_pieces(str(model), str(corpus))
    assert got == {"en": sorted(n(t) for s, _, t in docs if s == "debian-faq-en")[1], "ko": n(docs[3][2])}
    # the English vocabulary spells Hangul out in jamo: more pieces than characters
    assert got["ko"] > len(docs[3][2])


def test_window_holds_counts_whole_pairs_per_query_language(tmp_path):
    model = MODELS_DIR / "rra-bert-mini"
    tok = Tokenizer.from_file(str(model / "tokenizer.json"))
    tok.no_truncation()
    docs = {"short": "Use dpkg.", "long": "a long manual page paragraph " * 40, "ko": "패키지를 설치하려면 dpkg 를 쓰세요."}
    queries = [("q-en", "en", "install a package"), ("q-ko", "ko", "패키지 설치")]
    (tmp_path / "corpus.jsonl").write_text("".join(
        json.dumps({"doc_id": k, "source": "s", "lang": "en", "title": "", "text": v}, ensure_ascii=False) + "\n"
        for k, v in docs.items()))
    (tmp_path / "queries.jsonl").write_text("".join(
        json.dumps({"qid": qid, "lang": lang, "text": t, "source": "s", "split": "train", "relevant": {}},
                   ensure_ascii=False) + "\n" for qid, lang, t in queries))
    labels = tmp_path / "train.jsonl"
    labels.write_text(json.dumps({"qid": "q-en", "docs": [{"doc_id": "short"}, {"doc_id": "long"}, {"doc_id": "ko"}]})
                      + "\n" + json.dumps({"qid": "q-ko", "docs": [{"doc_id": "ko"}]}) + "\n")
    n = lambda q, d: len(tok.encode(q, docs[d]).ids)
    window = n("install a package", "ko")  # the Korean answer just fits beside the English query
    assert n("install a package", "short") <= window < n("install a package", "long")
    got = window_holds(str(model), str(tmp_path), str(labels), window)
    assert got["en"] == 2 / 3
    # the Korean query is spelled out in jamo too, so the same answer beside it no longer fits
    assert n("패키지 설치", "ko") > window and got["ko"] == 0.0
    assert window_holds(str(model), str(tmp_path), str(labels), 10_000) == {"en": 1.0, "ko": 1.0}
