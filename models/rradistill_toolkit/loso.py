"""Leave-one-source-out: does what the student learns carry to text it was not trained on?

What it owns: the held-out families, one reduced training run per family without it, and
the evaluation of each run on the family it never saw, next to BM25 and the teacher.

The sources come in families that share text or structure (the English and Korean help of
one application are translations of each other, so leaving out one language alone would
still train on the other's pages): ``debian``, ``python``, ``unix`` (man pages and GNU
manuals), ``libreoffice``, ``gimp``, ``gnome``. For each family: train the student with the
main run's settings on every other family's queries (a reduced budget: ``--max-queries``,
the same for every family, stated in the result), then rank up to ``--eval-queries`` of the
family's own queries (its held-out split first, then its training split, none of which the
run saw) over their 20 candidates. Metrics: NDCG@10 and MRR@10 against the known relevant
document, for the student, BM25 (the first stage's order) and the teacher (its labels), with
the paired bootstrap of student minus BM25.

Resumable: a family whose result is in ``--out`` is skipped; a family's training resumes
from its checkpoint.

Usage: python -m rradistill_toolkit.loso --labels models/work/labels/e5.all.jsonl \
           --out models/work/loso [--families gnome gimp] [train options...]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys

import numpy as np

from . import train as train_stage
from .common import WORK_DIR, iter_jsonl, load_corpus, load_queries, write_json
from .metrics import paired_comparison, per_query

FAMILIES = {
    "debian": ["debian-faq-en", "debian-faq-ko"],
    "python": ["python-faq", "python-lib", "python-docs"],
    "unix": ["man", "info"],
    "libreoffice": ["libreoffice-en", "libreoffice-ko"],
    "gimp": ["gimp-en", "gimp-ko"],
    "gnome": ["gnome-en", "gnome-ko"],
}


def held_out_queries(queries: list[dict], sources: list[str], n: int, seed: int = 3) -> list[dict]:
    mine = [q for q in queries if q["source"] in sources]
    test = [q for q in mine if q["split"] == "test"]
    rest = [q for q in mine if q["split"] != "test"]
    random.Random(seed).shuffle(rest)
    return (test + rest)[:n]


def torch_scorer(student_dir: str, args):
    """Scores a trained (not exported) student, in eval mode."""
    import torch

    from .students import late, tokenization

    scorer = late.load_late(student_dir)
    tok = tokenization.TowerTokenizer(os.path.join(scorer_base(args), "tokenizer.json"), args.max_length,
                                      args.query_length)

    def score(query, docs):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            return scorer(**tok.feed(query, docs)).float().numpy()

    return score


def scorer_base(args) -> str:
    if args.base:
        return args.base
    from .students.bases import e5_dir

    return str(e5_dir())


def evaluate_family(score, queries, prerank, corpus, labels) -> dict:
    gt = {q["qid"]: {d: float(g) for d, g in q["relevant"].items()} for q in queries}
    rankings = {"student": {}, "BM25": {}, "teacher": {}}
    for q in queries:
        cands = prerank[q["qid"]]["candidates"]
        ids = [c["doc_id"] for c in cands]
        s = score(q["text"], [corpus[d]["text"] for d in ids])
        rankings["student"][q["qid"]] = [ids[i] for i in np.argsort(-s, kind="stable")]
        rankings["BM25"][q["qid"]] = [c["doc_id"] for c in sorted(cands, key=lambda c: -c["bm25"])]
        if q["qid"] in labels:
            order = labels[q["qid"]]["order"]
            rankings["teacher"][q["qid"]] = order + [d for d in ids if d not in order]
    out = {}
    for name, r in rankings.items():
        sub = {q: gt[q] for q in r}
        out[name] = {m: round(float(np.mean(list(per_query(r, sub, m).values()))), 4) if sub else None
                     for m in ("NDCG@10", "MRR@10")}
        out[name]["queries"] = len(sub)
    out["student_minus_BM25"] = paired_comparison(per_query(rankings["student"], gt, "NDCG@10"),
                                                  per_query(rankings["BM25"], gt, "NDCG@10"))
    out["student_minus_teacher"] = paired_comparison(
        per_query({q: rankings["student"][q] for q in rankings["teacher"]}, gt, "NDCG@10"),
        per_query(rankings["teacher"], gt, "NDCG@10"))
    return out


def main(argv=None) -> None:
    ap = train_stage.build_parser()
    ap.description = "Leave-one-source-out runs."
    ap.set_defaults(student="late", out=str(WORK_DIR / "loso"), max_queries=1500, candidates=8,
                    max_length=256, query_length=160)
    ap.add_argument("--families", nargs="*", default=list(FAMILIES), choices=list(FAMILIES))
    ap.add_argument("--eval-queries", type=int, default=300)
    ap.add_argument("--prerank", default=str(WORK_DIR / "prerank.jsonl"))
    args = ap.parse_args(argv)
    out_path = os.path.join(args.out, "loso.json")
    result = json.load(open(out_path)) if os.path.exists(out_path) else {}
    corpus = load_corpus(os.path.join(args.data, "corpus.jsonl"))
    queries = load_queries(os.path.join(args.data, "queries.jsonl"))
    prerank = {r["qid"]: r for r in iter_jsonl(args.prerank)}
    labels = {r["qid"]: r for r in iter_jsonl(args.labels)}
    for family in args.families:
        if family in result.get("families", {}):
            continue
        sources = FAMILIES[family]
        run_args = argparse.Namespace(**vars(args))
        run_args.exclude_sources = sources
        run_args.out = os.path.join(args.out, family)
        print(f"loso: {family}: training without {sources}", file=sys.stderr)
        cfg = train_stage.train(run_args)
        held = [q for q in held_out_queries(queries, sources, args.eval_queries) if q["qid"] in prerank]
        res = evaluate_family(torch_scorer(run_args.out, args), held, prerank, corpus, labels)
        res.update({"sources": sources, "train_queries": cfg["queries"], "steps": cfg["steps"]})
        result.setdefault("families", {})[family] = res
        result["settings"] = {k: getattr(args, k) for k in ("student", "max_queries", "candidates", "epochs",
                                                           "freeze_layers", "tower_layers", "lr", "head_lr", "tcl_weight",
                                                           "max_length", "query_length", "eval_queries")}
        result["settings"]["tcl"] = not args.no_tcl
        write_json(out_path, result)
        print(f"loso: {family}: student NDCG@10 {res['student']['NDCG@10']} vs BM25 {res['BM25']['NDCG@10']} "
              f"vs teacher {res['teacher']['NDCG@10']} ({res['student']['queries']} queries)", file=sys.stderr)


if __name__ == "__main__":
    main()
