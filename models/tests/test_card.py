"""The card's derived figures: computed from the files it is given, never typed in."""

import json

from tokenizers import Tokenizer

from rradistill_toolkit.card import faq_pieces
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
