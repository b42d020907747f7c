"""The card's derived figures: computed from the files it is given, never typed in."""

import json

from rradistill_toolkit.card import faq_pieces, load_tokenizer, window_holds
from rradistill_toolkit.common import MODELS_DIR

MODEL = str(MODELS_DIR / "rra-bert-mini")


def test_faq_pieces_is_the_median_per_language_of_the_debian_faq_only():
    docs = [("debian-faq-en", "en", "Use dpkg to install a package."),
            ("debian-faq-en", "en", "The release cycle of Debian stable is about two years long."),
            ("debian-faq-en", "en", "Yes."),
            ("debian-faq-ko", "ko", "패키지를 설치하려면 dpkg 를 쓰세요."),
            ("man", "en", "a much longer man page text " * 20)]
    corpus = [{"doc_id": str(i), "source": s, "lang": lang, "title": "", "text": t}
              for i, (s, lang, t) in enumerate(docs)]
    tok = load_tokenizer(MODEL)
    n = lambda t: len(tok.encode(t, add_special_tokens=False).ids)
    got = faq_pieces(tok, corpus)
    assert got == {"en": sorted(n(t) for s, _, t in docs if s == "debian-faq-en")[1], "ko": n(docs[3][2])}
    # the English vocabulary spells Hangul out in jamo: more pieces than characters
    assert got["ko"] > len(docs[3][2])


def test_window_holds_counts_whole_pairs_per_query_language(tmp_path):
    tok = load_tokenizer(MODEL)
    docs = {"short": "Use dpkg.", "long": "a long manual page paragraph " * 40, "ko": "패키지를 설치하려면 dpkg 를 쓰세요."}
    corpus = [{"doc_id": k, "source": "s", "lang": "en", "title": "", "text": v} for k, v in docs.items()]
    queries = [{"qid": qid, "lang": lang, "text": t, "source": "s", "split": "train", "relevant": {}}
               for qid, lang, t in [("q-en", "en", "install a package"), ("q-ko", "ko", "패키지 설치")]]
    labels = tmp_path / "train.jsonl"
    labels.write_text(json.dumps({"qid": "q-en", "docs": [{"doc_id": "short"}, {"doc_id": "long"}, {"doc_id": "ko"}]})
                      + "\n" + json.dumps({"qid": "q-ko", "docs": [{"doc_id": "ko"}]}) + "\n")
    n = lambda q, d: len(tok.encode(q, docs[d]).ids)
    window = n("install a package", "ko")  # the Korean answer just fits beside the English query
    assert n("install a package", "short") <= window < n("install a package", "long")
    got = window_holds(tok, corpus, queries, str(labels), window)
    assert got["en"] == 2 / 3
    # the Korean query is spelled out in jamo too, so the same answer beside it no longer fits
    assert n("패키지 설치", "ko") > window and got["ko"] == 0.0
    assert window_holds(tok, corpus, queries, str(labels), 10_000) == {"en": 1.0, "ko": 1.0}
