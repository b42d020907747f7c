"""Source ``debian-faq-en`` / ``debian-faq-ko``: the Debian FAQ in English and Korean.

The plain-text build of each: every numbered question is a query, its answer the relevant
document. The Korean translation keeps the section numbers, and untranslated questions stay
English: a query's language is read from its text, not from the file.
"""

from __future__ import annotations

import gzip
import os
import re
import sys

from .text import clip, detect_lang, norm_space

DEBIAN_FAQ = "/usr/share/doc/debian/FAQ/debian-faq.{lang}.txt.gz"


HEAD = re.compile(r"^(\d+(?:\.\d+){1,2})\.\s+(\S.*)$")
CHAPTER = re.compile(r"^(?:Chapter\s+)?\d+(?:장)?\.\s+\S")


def parse_debian_faq(path: str) -> list[tuple[str, str, str]]:
    """(section number, question, answer) for every numbered question of the text build."""
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        lines = [l.replace("\xa0", " ").rstrip("\n") for l in f]
    # The table of contents is indented; real headings start at column 0.
    heads = [i for i, l in enumerate(lines) if HEAD.match(l)]
    chapters = [i for i, l in enumerate(lines) if CHAPTER.match(l)]
    out = []
    for n, i in enumerate(heads):
        m = HEAD.match(lines[i])
        title = [m.group(2)]
        j = i + 1
        while j < len(lines) and lines[j].strip():  # a heading may wrap over lines
            title.append(lines[j].strip())
            j += 1
        end = heads[n + 1] if n + 1 < len(heads) else len(lines)
        end = min([c for c in chapters if c > i] + [end])  # a chapter intro is not the answer
        body = "\n".join(lines[j:end])
        out.append((m.group(1), norm_space(" ".join(title)), body))
    return out


def source(lang: str):
    path = DEBIAN_FAQ.format(lang=lang)
    if not os.path.exists(path):
        print(f"data: {path} missing (apt-get install debian-faq{'-ko' if lang == 'ko' else ''})",
              file=sys.stderr)
        return [], []
    docs, queries = [], []
    for num, question, body in parse_debian_faq(path):
        text = clip(body)
        if len(text) < 40:
            continue  # chapter intros without a body
        doc_id = f"debfaq-{lang}-{num}"
        docs.append({"doc_id": doc_id, "source": f"debian-faq-{lang}", "lang": detect_lang(text),
                     "title": question, "text": text})
        if question.endswith("?") or detect_lang(question) == "ko" or num.count(".") >= 1:
            queries.append({"source": f"debian-faq-{lang}", "text": question,
                            "lang": detect_lang(question), "relevant": {doc_id: 1}})
    return docs, queries
