"""Sources ``python-faq``, ``python-lib`` and ``python-docs``: the Python 3.11 documentation.

From the reStructuredText sources shipped with ``python3.11-doc``:

- ``python-faq``: every FAQ question is a query, its answer the relevant document.
- ``python-lib``: the library reference. Every section is a document; a section heading of
  four words or more, and each module's synopsis line, are queries whose relevant document
  is that section (the heading or synopsis itself is removed from the text).
- ``python-docs``: the rest of the documentation (tutorial, how-tos, language reference,
  setup and usage, extending and embedding, the C API, distributing), sections and headings
  as for the library.
"""

from __future__ import annotations

import glob
import os
import re

from .text import clip, norm_space

PY_SOURCES = "/usr/share/doc/python3.11-doc/html/_sources"
DOC_PARTS = ["tutorial", "howto", "reference", "using", "extending", "c-api", "distributing", "install"]

UNDERLINE = re.compile(r"^([=\-~^\"'`#*+.])\1{2,}\s*$")
ROLE = re.compile(r":[a-z:]+:`~?([^`<]*?)(?:\s*<[^>]*>)?`")
INDEX_ENTRY = re.compile(r"^(single|pair|triple|module|builtin|keyword|statement|object|operator|see|seealso)!?:\s")
LINK = re.compile(r"`([^`<]+?)\s*<[^>]+>`_+")


def rst_to_text(text: str) -> str:
    text = ROLE.sub(r"\1", text)
    text = LINK.sub(r"\1", text)
    out = []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith(".. ") and "::" in s:
            # keep the signature of function/class directives, drop other directives
            head, _, rest = s[3:].partition("::")
            if head.strip() in ("function", "method", "class", "data", "attribute", "exception",
                                "decorator"):
                out.append(rest.strip())
            continue
        if s.startswith(".. ") or (s.startswith(":") and ":" in s[1:]) or UNDERLINE.match(s) \
                or INDEX_ENTRY.match(s):
            continue
        out.append(line)
    return re.sub(r"``|\*\*|`", "", "\n".join(out))


def rst_sections(path: str) -> list[tuple[str, str]]:
    """(heading, body) for every section of one .rst source."""
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    heads = []
    for i in range(1, len(lines)):
        if UNDERLINE.match(lines[i]) and lines[i - 1].strip() and not UNDERLINE.match(lines[i - 1]) \
                and len(lines[i].strip()) >= len(lines[i - 1].strip()) - 1:
            heads.append(i - 1)
    out = []
    for n, h in enumerate(heads):
        end = heads[n + 1] if n + 1 < len(heads) else len(lines)
        body = "\n".join(lines[h + 2: end])
        out.append((lines[h].strip(), body))
    return out


def source_faq():
    docs, queries = [], []
    for path in sorted(glob.glob(f"{PY_SOURCES}/faq/*.rst.txt")):
        name = os.path.basename(path).split(".")[0]
        for n, (question, body) in enumerate(rst_sections(path)):
            text = clip(rst_to_text(body))
            if not question.endswith("?") or len(text) < 40:
                if len(text) >= 40:
                    docs.append({"doc_id": f"pyfaq-{name}-{n}", "source": "python-faq", "lang": "en",
                                 "title": question, "text": text})
                continue
            doc_id = f"pyfaq-{name}-{n}"
            docs.append({"doc_id": doc_id, "source": "python-faq", "lang": "en", "title": question,
                         "text": text})
            queries.append({"source": "python-faq", "text": question, "lang": "en",
                            "relevant": {doc_id: 1}})
    return docs, queries


GENERIC = {"examples", "example", "functions", "classes", "constants", "exceptions", "notes",
           "introduction", "overview", "usage", "see also"}
SYNOPSIS = re.compile(r"^:mod:`[^`]+`\s*---\s*(.+)$", re.M)


def source_lib():
    docs, queries = [], []
    for path in sorted(glob.glob(f"{PY_SOURCES}/library/*.rst.txt")):
        name = os.path.basename(path).split(".rst")[0]
        raw = open(path, encoding="utf-8", errors="replace").read()
        for n, (heading, body) in enumerate(rst_sections(path)):
            text = clip(rst_to_text(body))
            if len(text) < 80:
                continue
            doc_id = f"pylib-{name}-{n}"
            title = rst_to_text(heading).strip()
            docs.append({"doc_id": doc_id, "source": "python-lib", "lang": "en", "title": title,
                         "text": text})
            m = SYNOPSIS.match(heading)
            if m and n == 0:
                q = norm_space(rst_to_text(m.group(1)))
                if len(q.split()) >= 2:
                    queries.append({"source": "python-lib", "text": q, "lang": "en",
                                    "relevant": {doc_id: 1}})
            elif len(title.split()) >= 4 and title.lower() not in GENERIC and ":mod:" not in heading:
                queries.append({"source": "python-lib", "text": title, "lang": "en",
                                "relevant": {doc_id: 1}})
        del raw
    return docs, queries


def source_docs():
    """Every other part of the documentation: sections, and headings of four words or more."""
    docs, queries = [], []
    for part in DOC_PARTS:
        for path in sorted(glob.glob(f"{PY_SOURCES}/{part}/*.rst.txt")):
            name = os.path.basename(path).split(".rst")[0]
            for n, (heading, body) in enumerate(rst_sections(path)):
                text = clip(rst_to_text(body))
                if len(text) < 80:
                    continue
                doc_id = f"pydoc-{part}-{name}-{n}"
                title = rst_to_text(heading).strip()
                docs.append({"doc_id": doc_id, "source": "python-docs", "lang": "en", "title": title,
                             "text": text})
                if len(title.split()) >= 4 and title.lower() not in GENERIC:
                    queries.append({"source": "python-docs", "text": title, "lang": "en",
                                    "relevant": {doc_id: 1}})
    return docs, queries
