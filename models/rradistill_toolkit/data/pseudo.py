"""Pseudo-queries: a sentence taken out of its passage (inverse cloze).

Headings and questions give real queries, but short ones, and only as many as the text has
headings. A sentence lifted out of a document reads like a long, specific question about
what is around it, and every document with a few sentences can give one: the long-tail
queries the student must handle, in both languages, as many as the corpus allows.

``add_pseudo_queries`` picks documents of one source (seeded), takes one sentence from each
(not the first: the first sentence often restates the heading), removes it from the
document's text, and makes it a query whose relevant document is the rest of the passage. A
document gives at most one pseudo-query, and the sentence is removed from the corpus itself,
so no candidate contains the query word for word (BM25 and the teacher have to match the
passage by what is around the sentence, as for a real question).
"""

from __future__ import annotations

import random
import re

from .text import detect_lang, norm_space, sentences

HANGUL = re.compile(r"[\uac00-\ud7a3]")


def usable(sentence: str, lang: str) -> bool:
    if lang == "ko":
        return 4 <= len(sentence.split()) <= 30 and len(HANGUL.findall(sentence)) >= 10
    return 8 <= len(sentence.split()) <= 40 and sum(c.isalpha() for c in sentence) >= 0.6 * len(sentence)


def add_pseudo_queries(docs: list[dict], n: int, source: str, rng: random.Random,
                       lang: str | None = None) -> list[dict]:
    """Up to ``n`` inverse-cloze queries from ``docs`` (mutated: the sentence leaves its text)."""
    order = list(range(len(docs)))
    rng.shuffle(order)
    out = []
    for i in order:
        if len(out) >= n:
            break
        doc = docs[i]
        if lang and doc["lang"] != lang:
            continue
        sents = sentences(doc["text"])
        if len(sents) < 3:
            continue
        picks = [j for j in range(1, len(sents)) if usable(sents[j], doc["lang"])
                 and detect_lang(sents[j]) == doc["lang"]]
        if not picks:
            continue
        j = rng.choice(picks)
        rest = norm_space(" ".join(sents[:j] + sents[j + 1:]))
        if len(rest) < 80:
            continue
        doc["text"] = rest
        out.append({"source": source, "text": sents[j], "lang": doc["lang"], "kind": "pseudo",
                    "relevant": {doc["doc_id"]: 1}})
    return out
