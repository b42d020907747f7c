"""Stage 1, data: a real corpus and real queries from text that can be had offline.

Sources (Debian packages, see ``assets.ensure_text_packages``), each giving documents and
queries whose relevant document is known from the source's own structure:

- ``debian-faq-en`` / ``debian-faq-ko``: the Debian FAQ in English and Korean (plain-text
  build). Each numbered question is a query; its answer is the relevant document. The Korean
  translation keeps the section numbers, and untranslated questions stay English: a query's
  language is detected from its text (Hangul), not from the file.
- ``python-faq``: the Python FAQ (reStructuredText sources shipped with python3.11-doc).
  Question -> answer.
- ``python-lib``: the Python library reference. Every section is a document; a section
  heading of four words or more, and each module's synopsis line, are queries whose
  relevant document is that section (the heading/synopsis itself is removed from the text).
- ``man``: Linux man-pages (sections 2, 3, 5, 7). The NAME line's description ("open and
  possibly create a file") is the query; the DESCRIPTION section is the relevant document.

Outputs (``--out DIR``): ``corpus.jsonl`` (doc_id, source, lang, title, text) and
``queries.jsonl`` (qid, source, lang, text, relevant {doc_id: grade}, split). The held-out
test split is by query, seeded, stratified by source (``--test-fraction``).

Usage: python -m rradistill_toolkit.data --out models/work/data [--max-queries N] [--sources ...]
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import hashlib
import os
import random
import re
import sys

from .common import WORK_DIR, write_jsonl

DEBIAN_FAQ = "/usr/share/doc/debian/FAQ/debian-faq.{lang}.txt.gz"
PY_SOURCES = "/usr/share/doc/python3.11-doc/html/_sources"
MAN_ROOT = "/usr/share/man"
ALL_SOURCES = ["debian-faq-en", "debian-faq-ko", "python-faq", "python-lib", "man"]
MAX_DOC_CHARS = 2000

HANGUL = re.compile(r"[\uac00-\ud7a3]")


def detect_lang(text: str) -> str:
    return "ko" if len(HANGUL.findall(text)) >= 2 else "en"


def norm_space(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\xa0", " ")).strip()


def clip(text: str, n: int = MAX_DOC_CHARS) -> str:
    text = norm_space(text)
    if len(text) <= n:
        return text
    cut = text.rfind(" ", 0, n)
    return text[: cut if cut > n // 2 else n]


# --- Debian FAQ -----------------------------------------------------------------------------

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


def source_debian_faq(lang: str):
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


# --- reStructuredText (Python docs) ---------------------------------------------------------

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


def source_python_faq():
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


def source_python_lib():
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


# --- man pages ------------------------------------------------------------------------------

FONT = re.compile(r"\\f[BIRP0-9]|\\f\(..|\\f\[[^\]]*\]")


def roff_to_text(lines: list[str]) -> str:
    out = []
    for line in lines:
        if line.startswith(".\\\"") or line.startswith("'\\\""):
            continue
        if line.startswith("."):
            parts = line.split(None, 1)
            macro = parts[0]
            if macro in (".B", ".I", ".BR", ".IR", ".RB", ".RI", ".BI", ".IB", ".SM", ".SB") and len(parts) > 1:
                words = re.findall(r'"[^"]*"|\S+', parts[1])
                out.append("".join(w.strip('"') for w in words))
            elif macro in (".TP", ".PP", ".P", ".LP", ".IP") and len(parts) > 1:
                out.append(parts[1].split()[0].strip('"'))
            continue
        out.append(line)
    text = "\n".join(out)
    text = FONT.sub("", text)
    text = text.replace("\\-", "-").replace("\\(em", "-").replace("\\(en", "-").replace("\\e", "\\")
    text = re.sub(r"\\\(.{2}|\\\[[^\]]*\]|\\[&|^%:]", "", text)
    return text


def parse_man(path: str):
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    if any(l.startswith(".so ") for l in lines[:5]) or not any("Linux man-pages" in l for l in lines[:60]):
        return None
    sections: dict[str, list[str]] = collections.OrderedDict()
    current = None
    for line in lines:
        if line.startswith(".SH"):
            current = line[3:].strip().strip('"').upper()
            sections[current] = []
        elif current:
            sections[current].append(line)
    name = norm_space(roff_to_text(sections.get("NAME", [])))
    if " - " not in name:
        return None
    names, desc = name.split(" - ", 1)
    body = roff_to_text(sections.get("DESCRIPTION", []))
    return names.strip(), desc.strip(), body


def source_man():
    docs, queries = [], []
    for sec in ("2", "3", "5", "7"):
        for path in sorted(glob.glob(f"{MAN_ROOT}/man{sec}/*.{sec}*.gz")):
            parsed = parse_man(path)
            if not parsed:
                continue
            names, desc, body = parsed
            # The page's names stay in the document (as a reader sees them); the NAME line's
            # description, which is the query, does not.
            text = clip(f"{names} ({sec}): {norm_space(body)}")
            if len(text) < 80 or len(desc.split()) < 3:
                continue
            page = os.path.basename(path).rsplit(".gz", 1)[0]
            doc_id = f"man-{page}"
            docs.append({"doc_id": doc_id, "source": "man", "lang": "en", "title": f"{names} ({sec})",
                         "text": text})
            queries.append({"source": "man", "text": desc, "lang": "en", "relevant": {doc_id: 1}})
    return docs, queries


SOURCES = {
    "debian-faq-en": lambda: source_debian_faq("en"),
    "debian-faq-ko": lambda: source_debian_faq("ko"),
    "python-faq": source_python_faq,
    "python-lib": source_python_lib,
    "man": source_man,
}


def build(sources, test_fraction: float, seed: int, max_queries: dict[str, int] | None = None,
          test_fractions: dict[str, float] | None = None):
    """Returns (corpus, queries). Queries with the same text keep the first; ids are stable."""
    corpus, queries = [], []
    for name in sources:
        docs, qs = SOURCES[name]()
        corpus.extend(docs)
        rng = random.Random(f"{seed}-{name}")
        seen = {q["text"].lower() for q in queries}
        qs = [q for q in qs if q["text"].lower() not in seen]
        rng.shuffle(qs)
        if max_queries and name in max_queries:
            qs = qs[: max_queries[name]]
        frac = (test_fractions or {}).get(name, test_fraction)
        n_test = max(1, round(len(qs) * frac)) if qs else 0
        merged: dict[str, dict] = {}
        for i, q in enumerate(qs):
            q["qid"] = f"{name}-" + hashlib.sha1(q["text"].encode()).hexdigest()[:10]
            q["split"] = "test" if i < n_test else "train"
            if q["qid"] in merged:
                # the same text twice in one source (two man pages with one summary, a FAQ
                # question asked in two chapters): one query, every such document relevant;
                # it keeps the split of its first occurrence
                merged[q["qid"]]["relevant"].update(q["relevant"])
            else:
                merged[q["qid"]] = q
        qs = list(merged.values())
        n_test = sum(q["split"] == "test" for q in qs)
        queries.extend(qs)
        print(f"data: {name}: {len(docs)} documents, {len(qs)} queries ({n_test} held out)",
              file=sys.stderr)
    ids = collections.Counter(d["doc_id"] for d in corpus)
    dup = [k for k, v in ids.items() if v > 1]
    if dup:
        raise ValueError(f"duplicate doc ids: {dup[:5]}")
    return corpus, queries


def parse_caps(items) -> dict[str, int]:
    caps = {}
    for item in items or []:
        name, _, n = item.partition("=")
        caps[name] = int(n)
    return caps


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Build the corpus and queries (stage 1).")
    ap.add_argument("--out", default=str(WORK_DIR / "data"))
    ap.add_argument("--sources", nargs="+", default=ALL_SOURCES, choices=ALL_SOURCES)
    ap.add_argument("--max-queries", nargs="*", metavar="SOURCE=N",
                    help="cap the queries kept per source (documents are all kept)")
    ap.add_argument("--test-fraction", type=float, default=0.1)
    ap.add_argument("--source-test-fraction", nargs="*", metavar="SOURCE=F", default=["debian-faq-ko=0.3"],
                    help="per-source held-out fraction (default: more Korean queries held out)")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--install", action="store_true", help="apt-get install missing text packages")
    args = ap.parse_args(argv)
    if args.install:
        from .assets import ensure_text_packages

        ensure_text_packages()
    fracs = {k: float(v) for k, _, v in (x.partition("=") for x in args.source_test_fraction or [])}
    corpus, queries = build(args.sources, args.test_fraction, args.seed, parse_caps(args.max_queries), fracs)
    n_docs = write_jsonl(os.path.join(args.out, "corpus.jsonl"), corpus)
    n_q = write_jsonl(os.path.join(args.out, "queries.jsonl"), queries)
    print(f"data: wrote {n_docs} documents, {n_q} queries to {args.out}")


if __name__ == "__main__":
    main()
