"""Stage 4b, rationales: an LLM explains the teacher's ranking, one or two sentences a document.

What it owns: for each labelled query (stage 4), one chat call per document the teacher
ranked (and, with ``--negatives K``, for the first K documents it left out of the
pre-ranker's top 10), asking why the document is (or is not) relevant at that rank; the
answer is cleaned and checked (``clean_rationale``) and kept only if it passes. These are
RRA-GPT's ``L_reason`` targets.

Robust to bad output: every answer is classified, and all but ``ok`` and ``trimmed`` are
dropped (never trained on), counted per query in the output and in the stats file, and
logged:

- ``empty``: nothing but whitespace, quotes or a bare label such as "Rationale:";
- ``refusal``: "As an AI ...", "I cannot ...", "I'm sorry ...";
- ``too_long``: still over ``max_chars`` after keeping only the first two sentences
  (an answer of more than two sentences is cut to two and counted as ``trimmed``);
- ``off_topic``: shares no content word with the query or the document;
- ``error``: the endpoint failed after its retries.

Back-ends: any OpenAI-compatible endpoint (``--teacher openai``, the environment of
``teachers.OpenAIChatTeacher``), the local GGUF LLM served on loopback by ``llm_server``
(``--teacher local-llm``), or ``--teacher extractive``: a template that names the query
words the document shares, for fully offline runs and tests (no LLM; clearly weaker).

Output (resumable: queries already in the file are skipped on a rerun), recorded with the
labels: by default ``<labels>.rationales.jsonl`` next to the label file, one line a query:

    {"qid", "labels": label file name, "teacher": label teacher, "explainer": LLM name,
     "rationales": {doc_id: text}, "issues": {"too_long": 1, ...}, "raw": {doc_id: answer}}

and ``<out>.stats.json`` (issue totals, kept / asked).

Usage: python -m rradistill_toolkit.rationales --labels models/work/labels/mpnet.train.jsonl \
           --teacher local-llm [--negatives 1] [--max-queries 50]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import time

from tqdm import tqdm

from .common import WORK_DIR, ResumableWriter, iter_jsonl, load_corpus, load_queries, read_jsonl, write_json

SYSTEM_PROMPT = "You are a search relevance expert. You explain ranking decisions briefly and concretely."
USER_TEMPLATE = """Query: {query}

Document: {document}

A relevance judge {verdict}. In one or two sentences, explain why, citing what the document says. Answer with the explanation only."""
DOC_CHARS = 600
MAX_CHARS = 300
MAX_SENTENCES = 2

KEPT = ("ok", "trimmed")
LABEL_PREFIX = re.compile(r"^\s*(?:\*\*)?(?:rationale|explanation|answer|reason)\s*(?:\*\*)?\s*[:\-]\s*(?:\*\*)?\s*", re.I)
REFUSAL = re.compile(r"^(?:as an ai|i(?: a|')m sorry|i cannot|i can't|i am unable|i'm unable|sorry,)", re.I)
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")
WORD = re.compile(r"[^\W_]+", re.UNICODE)
STOP = set("""a an and are as at be by for from has have how i in is it its of on or that the this to was what
when where which who why with does do document query relevant relevance not because it's explains about can
you your""".split())


def content_words(text: str) -> set[str]:
    return {w for w in (m.group(0).lower() for m in WORD.finditer(text)) if w not in STOP and len(w) > 1}


def clean_rationale(raw: str | None, query: str, document: str, max_chars: int = MAX_CHARS) -> tuple[str | None, str]:
    """(rationale or None, verdict): verdict is ``ok`` / ``trimmed`` (kept) or a drop reason."""
    text = (raw or "").strip()
    text = LABEL_PREFIX.sub("", text)
    text = re.sub(r"\s+", " ", text).strip().strip("\"'`“”").strip()
    if not WORD.search(text):
        return None, "empty"
    if REFUSAL.match(text):
        return None, "refusal"
    verdict = "ok"
    sentences = SENTENCE_END.split(text)
    if len(sentences) > MAX_SENTENCES:
        text = " ".join(sentences[:MAX_SENTENCES])
        verdict = "trimmed"
    if len(text) > max_chars:
        return None, "too_long"
    if not content_words(text) & (content_words(query) | content_words(document)):
        return None, "off_topic"
    return text, verdict


def verdict_phrase(doc: dict, n_ranked: int) -> str:
    if doc["bucket"] == "ranked":
        return f"ranked this document {doc['rank']} of the {n_ranked} relevant documents for the query"
    return "judged this document not relevant to the query"


def build_messages(query: str, document: str, verdict: str, doc_chars: int = DOC_CHARS) -> list[dict]:
    doc = re.sub(r"\s+", " ", document)[:doc_chars]
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": USER_TEMPLATE.format(query=query, document=doc, verdict=verdict)}]


class ExtractiveExplainer:
    """No LLM: names the query words the document shares (offline runs, tests)."""

    name = "extractive"

    def chat(self, messages: list[dict], max_tokens: int | None = None) -> str:
        user = messages[-1]["content"]
        query = user.split("\n", 1)[0].removeprefix("Query: ")
        document = user.split("Document: ", 1)[1].split("\n\nA relevance judge", 1)[0]
        shared = sorted(content_words(query) & content_words(document))[:4]
        if "not relevant" in user:
            return (f"The document does not address the query about {', '.join(sorted(content_words(query))[:3])}."
                    if not shared else f"It mentions {', '.join(shared)} but does not answer the query.")
        if not shared:
            return f"The document covers the topic the query asks about: {', '.join(sorted(content_words(query))[:3])}."
        return f"The document discusses {', '.join(shared)}, which the query asks about."


def documents_to_explain(label: dict, negatives: int) -> list[dict]:
    ranked = sorted((d for d in label["docs"] if d["bucket"] == "ranked"), key=lambda d: d["rank"])
    hard = [d for d in label["docs"] if d["bucket"] == "missing_hard"][:negatives]
    return ranked + hard


def explain_query(explainer, label: dict, query: str, corpus: dict, negatives: int, max_chars: int,
                  log=None) -> dict:
    docs = documents_to_explain(label, negatives)
    n_ranked = sum(d["bucket"] == "ranked" for d in docs)
    out = {"qid": label["qid"], "teacher": label.get("teacher"), "explainer": explainer.name,
           "rationales": {}, "issues": {}, "raw": {}}
    for d in docs:
        text = corpus[d["doc_id"]]["text"]
        try:
            raw = explainer.chat(build_messages(query, text, verdict_phrase(d, n_ranked)))
        except Exception as e:  # an endpoint failure drops this rationale, not the run
            raw, verdict, kept = None, "error", None
            if log:
                log(f"rationales: {label['qid']}/{d['doc_id']}: {type(e).__name__}: {e}")
        else:
            kept, verdict = clean_rationale(raw, query, text, max_chars)
        out["raw"][d["doc_id"]] = raw
        if verdict not in ("ok",):
            out["issues"][verdict] = out["issues"].get(verdict, 0) + 1
        if kept is not None:
            out["rationales"][d["doc_id"]] = kept
        elif log and verdict != "error":
            log(f"rationales: dropped ({verdict}) {label['qid']}/{d['doc_id']}: {str(raw)[:80]!r}")
    return out


def default_out(labels_path: str) -> str:
    base = labels_path[:-len(".jsonl")] if labels_path.endswith(".jsonl") else labels_path
    return base + ".rationales.jsonl"


def stats(path: str) -> dict:
    totals, kept, asked, queries = {}, 0, 0, 0
    for r in iter_jsonl(path):
        queries += 1
        kept += len(r["rationales"])
        asked += len(r["raw"])
        for k, v in r["issues"].items():
            totals[k] = totals.get(k, 0) + v
    return {"queries": queries, "asked": asked, "kept": kept, "issues": totals}


def make_explainer(args):
    from .teachers import OpenAIChatTeacher

    if args.teacher == "extractive":
        return contextlib.nullcontext(ExtractiveExplainer())
    if args.teacher == "openai":
        return contextlib.nullcontext(OpenAIChatTeacher(base_url=args.base_url, model=args.model, timeout=args.timeout,
                                                        retries=args.retries, rate=args.rate, max_tokens=args.max_tokens))
    if args.teacher == "local-llm":
        from .llm_server import running_server

        @contextlib.contextmanager
        def local():
            with running_server(args.gguf, threads=args.llm_threads) as base:
                name = os.path.basename(args.gguf) if args.gguf else "SmolLM2-135M-Instruct.Q4_1.gguf"
                yield OpenAIChatTeacher(base_url=base, model=name, timeout=args.timeout, retries=args.retries,
                                        max_tokens=args.max_tokens)
        return local()
    raise SystemExit(f"unknown --teacher {args.teacher!r} (openai, local-llm, extractive)")


def run(args) -> dict:
    out = args.out or default_out(args.labels)
    corpus = load_corpus(os.path.join(args.data, "corpus.jsonl"))
    queries = {q["qid"]: q for q in load_queries(os.path.join(args.data, "queries.jsonl"))}
    labels = [lab for lab in read_jsonl(args.labels) if lab["qid"] in queries]
    if args.max_queries:
        labels = labels[: args.max_queries]
    log = lambda msg: print(msg, file=sys.stderr)
    with ResumableWriter(out, key="qid") as w, make_explainer(args) as explainer:
        todo = [lab for lab in labels if lab["qid"] not in w.done]
        print(f"rationales: {len(todo)} queries to explain ({len(labels) - len(todo)} already in {out}), "
              f"explainer {explainer.name}", file=sys.stderr)
        t0 = time.perf_counter()
        for lab in tqdm(todo, desc="rationales", disable=None):
            rec = explain_query(explainer, lab, queries[lab["qid"]]["text"], corpus, args.negatives, args.max_chars, log)
            rec["labels"] = os.path.basename(args.labels)
            w.append(rec)
        elapsed = time.perf_counter() - t0
    s = stats(out)
    s["explainer"] = explainer.name
    s["seconds_this_run"] = round(elapsed, 1)
    write_json(out[:-len(".jsonl")] + ".stats.json" if out.endswith(".jsonl") else out + ".stats.json", s)
    print(f"rationales: kept {s['kept']} of {s['asked']} over {s['queries']} queries; issues {s['issues'] or 'none'}",
          file=sys.stderr)
    return s


def load_rationales(path) -> dict[str, dict[str, str]]:
    """qid -> {doc_id: rationale} (only the kept ones)."""
    return {r["qid"]: r["rationales"] for r in iter_jsonl(path)} if path and os.path.exists(path) else {}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description="Rationales for the teacher's ranking (stage 4b, RRA-GPT's L_reason).")
    ap.add_argument("--data", default=str(WORK_DIR / "data"))
    ap.add_argument("--labels", required=True, help="label file of stage 4")
    ap.add_argument("--out", default=None, help="default: <labels>.rationales.jsonl")
    ap.add_argument("--teacher", default="local-llm", help="openai | local-llm | extractive")
    ap.add_argument("--base-url", default=None)
    ap.add_argument("--model", default=None)
    ap.add_argument("--gguf", default=None, help="local-llm: GGUF file (default SmolLM2-135M-Instruct)")
    ap.add_argument("--llm-threads", type=int, default=2)
    ap.add_argument("--negatives", type=int, default=0, help="also explain this many hard negatives a query")
    ap.add_argument("--max-queries", type=int, default=0)
    ap.add_argument("--max-chars", type=int, default=MAX_CHARS)
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--retries", type=int, default=2)
    ap.add_argument("--rate", type=float, default=0.0)
    return ap


def main(argv=None) -> None:
    run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
