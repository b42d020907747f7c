"""Stage 1, data: a real corpus and real queries from text that can be had offline.

Every source gives documents and queries whose relevant document is known from the text's
own structure (a question and its answer, a heading and its section, a page title and its
page), one module each:

| source | module | language | queries |
|---|---|---|---|
| ``debian-faq-en``, ``debian-faq-ko`` | ``debian_faq`` | en, ko | FAQ questions |
| ``python-faq``, ``python-lib``, ``python-docs`` | ``python_docs`` | en | questions, headings, synopses |
| ``man`` | ``man`` | en | the NAME line's description |
| ``info`` | ``info`` | en | GNU manual node titles |
| ``libreoffice-en``, ``libreoffice-ko`` | ``html_help`` | en, ko | help page headings |
| ``gimp-en``, ``gimp-ko`` | ``html_help`` | en, ko | manual headings |
| ``gnome-en``, ``gnome-ko`` | ``gnome_help`` | en, ko | topic titles and summaries |

On top of these, ``--pseudo SOURCE=N`` adds up to N inverse-cloze pseudo-queries drawn from a
source's documents (``pseudo``: a sentence taken out of its passage is the query, the rest of
the passage the relevant document): long, specific queries in both languages, as many as the
corpus allows. Every query records its ``source`` and ``kind`` (``structure`` or ``pseudo``),
which the evaluation reports per source and the leave-one-source-out runs hold out by.

A heading that recurs across a source ("Activating the tool") names no one section and is
not a query; the same text in two places of one source is one query with both documents
relevant; a query text seen in an earlier source is not repeated.

Outputs (``--out DIR``): ``corpus.jsonl`` (doc_id, source, lang, title, text) and
``queries.jsonl`` (qid, source, kind, lang, text, relevant {doc_id: grade}, split). The
held-out test split is by query, seeded, per source (``--test-fraction``,
``--source-test-fraction``). The text comes from Debian packages
(``assets.ensure_text_packages``).

Usage: python -m rradistill_toolkit.data --out models/work/data [--sources ...]
           [--max-queries SOURCE=N ...] [--pseudo SOURCE=N ...]
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import os
import random
import sys

from ..common import WORK_DIR, write_jsonl
from . import debian_faq, gnome_help, html_help, info, man, python_docs
from .pseudo import add_pseudo_queries
from .text import clip, detect_lang, norm_space  # noqa: F401  (the stage's helpers, re-exported)

SOURCES = {
    "debian-faq-en": lambda: debian_faq.source("en"),
    "debian-faq-ko": lambda: debian_faq.source("ko"),
    "python-faq": python_docs.source_faq,
    "python-lib": python_docs.source_lib,
    "python-docs": python_docs.source_docs,
    "man": man.source,
    "info": info.source,
    "libreoffice-en": lambda: html_help.source_libreoffice("en"),
    "libreoffice-ko": lambda: html_help.source_libreoffice("ko"),
    "gimp-en": lambda: html_help.source_gimp("en"),
    "gimp-ko": lambda: html_help.source_gimp("ko"),
    "gnome-en": lambda: gnome_help.source("en"),
    "gnome-ko": lambda: gnome_help.source("ko"),
}
ALL_SOURCES = list(SOURCES)
# The committed run's mix (models/README.md): every structural query of every source, plus
# pseudo-queries where headings are few, Korean above all (a quarter of the queries at least).
DEFAULT_PSEUDO = ["libreoffice-ko=3000", "gnome-ko=300", "debian-faq-ko=60", "gimp-ko=200",
                  "libreoffice-en=800", "info=800", "python-docs=400", "man=400", "gnome-en=200"]
DEFAULT_MAX_QUERIES = ["libreoffice-en=2500", "info=2000"]
RECURRING = 3  # a heading seen this many times in one source is a label, not a query


def drop_recurring(queries: list[dict]) -> list[dict]:
    counts = collections.Counter(q["text"].lower() for q in queries if q.get("kind", "structure") == "structure")
    return [q for q in queries if q.get("kind") == "pseudo" or counts[q["text"].lower()] < RECURRING]


def build(sources, test_fraction: float, seed: int, max_queries: dict[str, int] | None = None,
          test_fractions: dict[str, float] | None = None, pseudo: dict[str, int] | None = None):
    """Returns (corpus, queries). Queries with the same text keep the first; ids are stable."""
    corpus, queries = [], []
    for name in sources:
        docs, qs = SOURCES[name]()
        if not docs:
            # A run on part of the corpus would still train and report, per source, as if whole.
            raise SystemExit(f"data: source {name!r} has no documents: its Debian text package is neither "
                             "installed nor unpacked. Run `python -m rradistill_toolkit.assets --text` (or "
                             f"this stage with --install), or leave {name!r} out with --sources.")
        for q in qs:
            q.setdefault("kind", "structure")
        qs = drop_recurring(qs)
        rng = random.Random(f"{seed}-{name}")
        seen = {q["text"].lower() for q in queries}
        qs = [q for q in qs if q["text"].lower() not in seen]
        rng.shuffle(qs)
        if max_queries and name in max_queries:
            qs = qs[: max_queries[name]]
        if pseudo and pseudo.get(name):
            # documents already serving a structural query keep their text whole
            taken = {d for q in qs for d in q["relevant"]}
            free = [d for d in docs if d["doc_id"] not in taken]
            # a Korean source's pseudo-queries come from its Korean text (some pages are untranslated)
            lang = "ko" if name.endswith("-ko") else None
            extra = add_pseudo_queries(free, pseudo[name], name, random.Random(f"{seed}-{name}-pseudo"), lang)
            extra = [q for q in extra if q["text"].lower() not in seen]
            qs = qs + extra
        corpus.extend(docs)
        frac = (test_fractions or {}).get(name, test_fraction)
        merged: dict[str, dict] = {}
        order = list(range(len(qs)))
        random.Random(f"{seed}-{name}-split").shuffle(order)
        n_test = max(1, round(len(qs) * frac)) if qs else 0
        test_idx = set(order[:n_test])
        for i, q in enumerate(qs):
            q["qid"] = f"{name}-" + hashlib.sha1(q["text"].encode()).hexdigest()[:10]
            q["split"] = "test" if i in test_idx else "train"
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
        by_kind = collections.Counter(q["kind"] for q in qs)
        by_lang = collections.Counter(q["lang"] for q in qs)
        print(f"data: {name}: {len(docs)} documents, {len(qs)} queries ({n_test} held out; "
              f"{dict(by_kind)}; {dict(by_lang)})", file=sys.stderr)
    ids = collections.Counter(d["doc_id"] for d in corpus)
    dup = [k for k, v in ids.items() if v > 1]
    if dup:
        raise ValueError(f"duplicate doc ids: {dup[:5]}")
    return corpus, queries


def parse_caps(items) -> dict[str, int]:
    caps = {}
    for item in items or []:
        name, _, n = item.partition("=")
        if name not in SOURCES:
            raise SystemExit(f"data: unknown source {name!r} in {item!r}; sources: {', '.join(SOURCES)}")
        caps[name] = int(n)
    return caps


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Build the corpus and queries (stage 1).")
    ap.add_argument("--out", default=str(WORK_DIR / "data"))
    ap.add_argument("--sources", nargs="+", default=ALL_SOURCES, choices=ALL_SOURCES)
    ap.add_argument("--max-queries", nargs="*", metavar="SOURCE=N", default=DEFAULT_MAX_QUERIES,
                    help="cap the structural queries kept per source (documents are all kept)")
    ap.add_argument("--pseudo", nargs="*", metavar="SOURCE=N", default=DEFAULT_PSEUDO,
                    help="add up to N inverse-cloze pseudo-queries from a source's documents")
    ap.add_argument("--test-fraction", type=float, default=0.1)
    ap.add_argument("--source-test-fraction", nargs="*", metavar="SOURCE=F", default=["debian-faq-ko=0.3"],
                    help="per-source held-out fraction (default: more Korean FAQ queries held out)")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--install", action="store_true",
                    help="install (or unpack, for the help packages) missing text packages")
    args = ap.parse_args(argv)
    if args.install:
        from ..assets import ensure_text_packages, ensure_unpacked

        ensure_text_packages()
        ensure_unpacked()
    fracs = {k: float(v) for k, _, v in (x.partition("=") for x in args.source_test_fraction or [])}
    sources = list(args.sources)
    corpus, queries = build(sources, args.test_fraction, args.seed, parse_caps(args.max_queries), fracs,
                            {k: v for k, v in parse_caps(args.pseudo).items() if k in sources})
    n_docs = write_jsonl(os.path.join(args.out, "corpus.jsonl"), corpus)
    n_q = write_jsonl(os.path.join(args.out, "queries.jsonl"), queries)
    langs = collections.Counter(q["lang"] for q in queries)
    print(f"data: wrote {n_docs} documents, {n_q} queries ({dict(langs)}) to {args.out}")
