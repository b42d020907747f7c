"""Stage 4, teacher labels: one listwise prompt per query over its 20 shuffled candidates.

Reads ``prerank.jsonl`` (stage 3) and the data; appends to ``labels.jsonl`` one line per
query (resumable: queries already in the file are skipped on a rerun):

    {"qid", "teacher", "prompt_order": [doc_id, ...], "raw": answer text,
     "order": [doc_id, ...]  (the teacher's ranked list, best first),
     "issues": {"prose": 1, ...},
     "docs": [{"doc_id", "group", "bucket", "rank"}, ...]  (pre-rank order)}

Buckets: ``ranked`` (in the teacher's list, ``rank`` 1-based), ``missing_hard`` (left out,
from the pre-ranker's top 10), ``missing_easy`` (left out, from the bottom 10). A summary
with every parse issue counted, bucket totals and failures goes to ``labels.stats.json``
and the log.

Teachers (``--teacher``):
  ``openai``            an OpenAI-compatible endpoint (``--base-url``/``--model`` or the
                        RRADISTILL_TEACHER_* environment, see ``teachers``)
  ``local-llm``         a GGUF LLM (``--gguf``, default SmolLM2-135M-Instruct) served by
                        ``llm_server`` on loopback and called over the same protocol
  ``scorer:SPEC``       a local scoring model, SPEC as in ``scorers.make_scorer``
                        (``mpnet``, ``e5``, ``committee:mpnet+e5``, ``lang:ko=e5,en=mpnet``...)
``--qids FILE`` labels only the listed queries (``train --list-queries``, ``evaluate
--list-queries``): what a run reads, when a teacher is too slow for every query.
Concurrency (``--workers``), retries (``--retries``) and a rate limit (``--rate`` calls/s)
apply to endpoint teachers.

Usage: python -m rradistill_toolkit.labels --teacher scorer:mpnet --split train \
           --out models/work/labels/mpnet.train.jsonl
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import os
import sys
import time

from tqdm import tqdm

from .common import WORK_DIR, ResumableWriter, iter_jsonl, load_corpus, load_queries, read_jsonl, set_threads, write_json
from .teachers import OpenAIChatTeacher, ScoringTeacher, TeacherError, parse_ranking, shuffled


def bucket_documents(candidates: list[dict], order: list[str]) -> list[dict]:
    """Bucket every candidate given the teacher's ordered list of doc ids."""
    rank = {d: r for r, d in enumerate(order, 1)}
    out = []
    for c in candidates:
        d = c["doc_id"]
        if d in rank:
            b = "ranked"
        elif c.get("group") == "top":
            b = "missing_hard"
        else:
            b = "missing_easy"
        out.append({"doc_id": d, "group": c.get("group"), "bucket": b, "rank": rank.get(d)})
    return out


def label_one(teacher, query: dict, rec: dict, corpus: dict) -> dict:
    prompt_docs = shuffled(rec["candidates"], query["qid"])
    docs = [dict(corpus[c["doc_id"]], **c) for c in prompt_docs]
    t0 = time.perf_counter()
    raw = teacher.answer(query["text"], docs)
    ms = 1000 * (time.perf_counter() - t0)
    parsed = parse_ranking(raw, len(docs))
    order = [prompt_docs[i - 1]["doc_id"] for i in parsed.order]
    return {
        "qid": query["qid"],
        "teacher": teacher.name,
        "prompt_order": [c["doc_id"] for c in prompt_docs],
        "raw": raw,
        "order": order,
        "issues": parsed.issues,
        "docs": bucket_documents(rec["candidates"], order),
        "ms": ms,
    }


def summarize(path) -> dict:
    stats = {"queries": 0, "issues": {}, "buckets": {}, "queries_with_issues": 0, "teacher": None,
             "ms_per_query": 0.0}
    total_ms = 0.0
    for r in iter_jsonl(path):
        stats["queries"] += 1
        stats["teacher"] = r["teacher"]
        total_ms += r.get("ms", 0.0)
        if r["issues"]:
            stats["queries_with_issues"] += 1
        for k, v in r["issues"].items():
            stats["issues"][k] = stats["issues"].get(k, 0) + v
        for d in r["docs"]:
            stats["buckets"][d["bucket"]] = stats["buckets"].get(d["bucket"], 0) + 1
    stats["ms_per_query"] = total_ms / max(1, stats["queries"])
    return stats


def run_labels(teacher, queries: list[dict], prerank: dict, corpus: dict, out: str,
               workers: int = 1, progress: bool = True) -> dict:
    failures = 0
    with ResumableWriter(out, key="qid") as writer:
        todo = [q for q in queries if q["qid"] not in writer.done and q["qid"] in prerank]
        skipped = len(queries) - len(todo)
        if skipped:
            print(f"labels: resuming, {skipped} queries already labelled (or without candidates)", file=sys.stderr)
        bar = tqdm(total=len(todo), desc=f"labels {teacher.name}", disable=not progress or None)
        if workers <= 1:
            for q in todo:
                try:
                    writer.append(label_one(teacher, q, prerank[q["qid"]], corpus))
                except TeacherError as e:
                    failures += 1
                    print(f"labels: {q['qid']} failed: {e}", file=sys.stderr)
                bar.update(1)
        else:
            with cf.ThreadPoolExecutor(workers) as pool:
                futs = {pool.submit(label_one, teacher, q, prerank[q["qid"]], corpus): q for q in todo}
                for fut in cf.as_completed(futs):
                    try:
                        writer.append(fut.result())
                    except TeacherError as e:
                        failures += 1
                        print(f"labels: {futs[fut]['qid']} failed: {e}", file=sys.stderr)
                    bar.update(1)
        bar.close()
    stats = summarize(out)
    stats["failures_this_run"] = failures
    write_json(str(out).rsplit(".jsonl", 1)[0] + ".stats.json", stats)
    print(f"labels: {stats['queries']} queries labelled by {stats['teacher']}; issues {stats['issues']}; "
          f"buckets {stats['buckets']}; failures this run {failures}", file=sys.stderr)
    return stats


@contextlib.contextmanager
def open_teacher(spec: str, args):
    if spec == "openai":
        yield OpenAIChatTeacher(args.base_url, args.model, timeout=args.timeout, retries=args.retries,
                                rate=args.rate, max_tokens=args.max_tokens, doc_chars=args.doc_chars)
    elif spec == "local-llm":
        from .llm_server import running_server

        with running_server(args.gguf, threads=args.llm_threads) as base:
            name = os.path.basename(args.gguf) if args.gguf else "SmolLM2-135M-Instruct.Q4_1.gguf"
            t = OpenAIChatTeacher(base, name, timeout=args.timeout, retries=args.retries,
                                  rate=args.rate, max_tokens=args.max_tokens, doc_chars=args.doc_chars)
            t.name = f"local-llm:{name}"
            yield t
    elif spec.startswith("scorer:"):
        from .scorers import make_scorer

        yield ScoringTeacher(make_scorer(spec.split(":", 1)[1], args.threads, args.cache_dir), keep=args.keep)
    else:
        raise SystemExit(f"unknown teacher {spec!r}: openai | local-llm | scorer:SPEC")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Listwise teacher labels (stage 4).")
    ap.add_argument("--data", default=str(WORK_DIR / "data"))
    ap.add_argument("--prerank", default=str(WORK_DIR / "prerank.jsonl"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--split", default="train", choices=["train", "test", "all"])
    ap.add_argument("--limit", type=int, default=0, help="label at most N queries (0: all)")
    ap.add_argument("--sample", type=int, default=0, help="label a seeded random sample of N queries")
    ap.add_argument("--lang", default=None, choices=["en", "ko"], help="only queries in this language")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--qids", default=None,
                    help="label only the queries listed in this file, one qid a line (train --list-queries)")
    ap.add_argument("--base-url", default=None)
    ap.add_argument("--model", default=None)
    ap.add_argument("--gguf", default=None)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--retries", type=int, default=3)
    ap.add_argument("--rate", type=float, default=0.0, help="max calls per second (0: no limit)")
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--doc-chars", type=int, default=320, help="characters of each document in the prompt")
    ap.add_argument("--max-tokens", type=int, default=120)
    ap.add_argument("--keep", type=int, default=5, help="scoring teachers: how many to rank")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--llm-threads", type=int, default=1,
                    help="local-llm: llama.cpp threads (its threads spin-wait: more than the free cores is far slower)")
    ap.add_argument("--cache-dir", default=str(WORK_DIR / "cache"), help="scorers' document embeddings")
    args = ap.parse_args(argv)
    set_threads(args.threads)
    corpus = load_corpus(os.path.join(args.data, "corpus.jsonl"))
    queries = load_queries(os.path.join(args.data, "queries.jsonl"), args.split)
    if args.qids:
        with open(args.qids, encoding="utf-8") as f:
            wanted = {line.strip() for line in f if line.strip()}
        queries = [q for q in queries if q["qid"] in wanted]
    if args.lang:
        queries = [q for q in queries if q["lang"] == args.lang]
    if args.sample:
        import random

        queries = random.Random(args.seed).sample(queries, min(args.sample, len(queries)))
    if args.limit:
        queries = queries[: args.limit]
    prerank = {r["qid"]: r for r in read_jsonl(args.prerank)}
    with open_teacher(args.teacher, args) as teacher:
        if teacher.kind == "scorer":  # embed up front, one language at a time (a teacher may differ by language)
            for lang in sorted({q["lang"] for q in queries}):
                qs = [q for q in queries if q["qid"] in prerank and q["lang"] == lang]
                teacher.scorer.prepare([q["text"] for q in qs],
                                       [corpus[c["doc_id"]] for q in qs for c in prerank[q["qid"]]["candidates"]])
        workers = args.workers if teacher.kind == "llm" else 1
        run_labels(teacher, queries, prerank, corpus, args.out, workers=workers)


if __name__ == "__main__":
    main()
