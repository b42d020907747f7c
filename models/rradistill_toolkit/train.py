"""Stage 5, RRA-BERT: a cross-encoder student trained listwise on the teacher's labels.

Model (``RRABert``): all-MiniLM-L6-v2 loaded into ``BertForSequenceClassification`` with
one output (the [CLS] score ``s_cls``: pooler over [CLS], then a linear head), plus, in
training only, the Term Control Layer:

- Token Selection (``select_positions``): the positions of document tokens whose word
  (word-pieces merged, lower-cased) also occurs in the query; stop words and punctuation
  are excluded.
- TCL: a small MLP (hidden -> 256 -> 1) over the encoder's last hidden states at the
  selected positions, mean-pooled into a term score ``s_term`` (0 when nothing matches).
- Loss ``L = L_rank(s_cls) + lambda * L_rank(s_term)``, both over each query's candidate
  list, so the term branch's gradients shape the shared encoder. ``--no-tcl`` trains the
  ablation (``L = L_rank(s_cls)``). Only the encoder with its [CLS] head is exported.

Start: the base model's [CLS] pooler (never trained: all-MiniLM-L6-v2 uses mean pooling) is
replaced by an orthogonal one (``reinit_pooler``) and trained with the heads at ``--head-lr``;
left as it is, the [CLS] score hardly varies across candidates and the loss stays at ln(N).

Data (``ListwiseDataset``, reusable by other students): for each labelled query, its
candidates (the 20 of stage 3) with gains from the teacher (``losses.teacher_gains``);
queries the teacher left with no ranked document are skipped (counted in the log).
``--candidates K`` trains each step on K of a query's candidates (all the teacher ranked, plus
random others): more queries per CPU hour. Tokenization is the service's: ``[CLS] query [SEP] document [SEP]`` with the model's
``tokenizer.json``, only the document truncated to ``--max-length``.

Resumable: a checkpoint (weights, optimizer, schedule, step) is written every
``--save-every`` steps; rerunning the same command continues from it.

Usage: python -m rradistill_toolkit.train --labels models/work/labels/mpnet.train.jsonl \
           --out models/work/students/rra-bert [--no-tcl] [--epochs 1] [--max-length 160]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import sys
import time

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .common import WORK_DIR, iter_jsonl, load_corpus, load_queries, set_threads, write_json
from .losses import LOSSES, teacher_gains

STOP_WORDS = set("""a about above after again against all am an and any are as at be because been before
being below between both but by can could did do does doing down during each few for from further had
has have having he her here hers herself him himself his how i if in into is it its itself just me more
most my myself no nor not now of off on once only or other our ours ourselves out over own same she
should so some such than that the their theirs them themselves then there these they this those through
to too under until up very was we were what when where which while who whom why will with would you your
yours yourself yourselves can't don't i'm it's what's does""".split())
PUNCT = re.compile(r"^[\W_]+$")


# --- tokenization and token selection -------------------------------------------------------

def load_tokenizer(path, max_length: int):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    tok.no_padding()
    tok.enable_truncation(max_length=max_length, strategy="only_second")
    return tok


def _words(enc, seq: int) -> dict[int, tuple[str, list[int]]]:
    """word index -> (word text, token positions) for sequence ``seq`` of a pair encoding."""
    words: dict[int, tuple[str, list[int]]] = {}
    for pos, (w, s, t) in enumerate(zip(enc.word_ids, enc.sequence_ids, enc.tokens)):
        if w is None or s != seq:
            continue
        piece = t[2:] if t.startswith("##") else t
        text, positions = words.get(w, ("", []))
        words[w] = (text + piece, positions + [pos])
    return words


def select_positions(enc) -> list[int]:
    """Token Selection: document token positions whose word also occurs in the query."""
    query_words = {t.lower() for t, _ in _words(enc, 0).values()}
    query_words = {w for w in query_words if w not in STOP_WORDS and not PUNCT.match(w)}
    out = []
    for text, positions in _words(enc, 1).values():
        if text.lower() in query_words:
            out.extend(positions)
    return out


MIN_DOCUMENT_TOKENS = 32


def fit_query(tok, query: str, min_document_tokens: int = MIN_DOCUMENT_TOKENS) -> str:
    """The query, cut at a token boundary if it would leave the document fewer than
    ``min_document_tokens`` of the window. The service refuses such a query (too long is an
    error there); a training query is kept, with its beginning, rather than dropped."""
    trunc = tok.truncation
    if not trunc:
        return query
    keep = max(1, trunc["max_length"] - tok.num_special_tokens_to_add(True) - min_document_tokens)
    tok.no_truncation()  # pair truncation refuses a lone sequence
    try:
        enc = tok.encode(query, add_special_tokens=False)
    finally:
        tok.enable_truncation(trunc["max_length"], stride=trunc["stride"], strategy=trunc["strategy"],
                              direction=trunc["direction"])
    if len(enc.ids) <= keep:
        return query
    return query[: enc.offsets[keep - 1][1]]


def encode_pairs(tok, query: str, docs: list[str], with_selection: bool = True):
    """Tensors for a list of (query, document) pairs, padded to the longest; an overlong
    query is cut (``fit_query``), the documents are cut from their end."""
    query = fit_query(tok, query)
    encs = tok.encode_batch([(query, d) for d in docs])
    width = max(len(e.ids) for e in encs)
    n = len(encs)
    ids = np.zeros((n, width), np.int64)
    mask = np.zeros((n, width), np.int64)
    types = np.zeros((n, width), np.int64)
    sel = np.zeros((n, width), np.float32)
    for r, e in enumerate(encs):
        L = len(e.ids)
        ids[r, :L], mask[r, :L], types[r, :L] = e.ids, e.attention_mask, e.type_ids
        if with_selection:
            for p in select_positions(e):
                sel[r, p] = 1.0
    return {k: torch.from_numpy(v) for k, v in
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "select": sel}.items()}


# --- data -----------------------------------------------------------------------------------

class ListwiseDataset:
    """One item per labelled query: its text, candidate texts and teacher gains."""

    def __init__(self, labels_path, corpus: dict, queries: dict, max_queries: int = 0):
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
            if max_queries and len(self.items) >= max_queries:
                break

    def __len__(self):
        return len(self.items)

    def epoch_order(self, seed: int, epoch: int) -> list[int]:
        order = list(range(len(self.items)))
        random.Random(f"{seed}-{epoch}").shuffle(order)
        return order


# --- model ----------------------------------------------------------------------------------

class RRABert(nn.Module):
    """Cross-encoder with an optional Term Control Layer (training only)."""

    def __init__(self, base_dir, use_tcl: bool = True, tcl_hidden: int = 256):
        super().__init__()
        from transformers import BertForSequenceClassification

        self.encoder = BertForSequenceClassification.from_pretrained(str(base_dir), num_labels=1)
        h = self.encoder.config.hidden_size
        self.use_tcl = use_tcl
        self.tcl = nn.Sequential(nn.Linear(h, tcl_hidden), nn.GELU(), nn.Linear(tcl_hidden, 1)) if use_tcl else None

    def forward(self, input_ids, attention_mask, token_type_ids, select=None):
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                           output_hidden_states=self.use_tcl and select is not None)
        s_cls = out.logits.squeeze(-1)
        s_term = None
        if self.use_tcl and select is not None:
            hidden = out.hidden_states[-1]
            t = self.tcl(hidden).squeeze(-1)  # [B, S]
            s_term = (t * select).sum(-1) / select.sum(-1).clamp(min=1.0)
        return s_cls, s_term


class ClsScorer(nn.Module):
    """What is exported and served: the encoder and its [CLS] head, logits [batch, 1]."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                            token_type_ids=token_type_ids).logits


def rra_loss(model: RRABert, batch: dict, gains: torch.Tensor, n_queries: int, loss_name: str = "listwise",
             tcl_weight: float = 0.5):
    """Loss for ``n_queries`` queries of equal candidate count stacked in ``batch``."""
    loss_fn = LOSSES[loss_name]
    s_cls, s_term = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], batch.get("select"))
    s_cls = s_cls.view(n_queries, -1)
    loss = loss_fn(s_cls, gains.view(n_queries, -1))
    parts = {"rank": loss.item()}
    if s_term is not None:
        term = loss_fn(s_term.view(n_queries, -1), gains.view(n_queries, -1))
        loss = loss + tcl_weight * term
        parts["term"] = term.item()
    return loss, parts


def save_student(model: RRABert, out_dir, config: dict) -> None:
    os.makedirs(out_dir, exist_ok=True)
    model.encoder.save_pretrained(os.path.join(out_dir, "encoder"))
    if model.tcl is not None:
        torch.save(model.tcl.state_dict(), os.path.join(out_dir, "tcl.pt"))
    write_json(os.path.join(out_dir, "train_config.json"), config)


def load_student_encoder(out_dir):
    from transformers import BertForSequenceClassification

    return BertForSequenceClassification.from_pretrained(os.path.join(out_dir, "encoder"), num_labels=1).eval()


def _is_head(name: str) -> bool:
    """The score heads, trained at ``--head-lr``: the TCL, and the [CLS] head (pooler + linear)."""
    return name.startswith("tcl") or "classifier" in name or ".pooler." in name


def reinit_pooler(model: RRABert) -> None:
    """all-MiniLM-L6-v2 was trained with mean pooling: its [CLS] pooler was never trained and is
    near zero (weights std ~0.009, pre-activation ~0.05), so the [CLS] score barely varies across
    candidates and the listwise loss sits at ln(N) for hundreds of steps. An orthogonal pooler
    passes the [CLS] state through unshrunk (tanh stays unsaturated: |pre-activation| ~0.4)."""
    dense = model.encoder.bert.pooler.dense
    with torch.no_grad():
        nn.init.orthogonal_(dense.weight)
        dense.bias.zero_()


def train(args) -> dict:
    from . import assets

    set_threads(args.threads)
    torch.manual_seed(args.seed)
    base = args.base or str(assets.minilm_dir())
    corpus = load_corpus(os.path.join(args.data, "corpus.jsonl"))
    queries = {q["qid"]: q for q in load_queries(os.path.join(args.data, "queries.jsonl"), "train")}
    ds = ListwiseDataset(args.labels, corpus, queries, args.max_queries)
    if not len(ds):
        raise SystemExit(f"no trainable queries in {args.labels} (train split, with a ranked document)")
    tok = load_tokenizer(os.path.join(base, "tokenizer.json"), args.max_length)
    model = RRABert(base, use_tcl=not args.no_tcl)
    if args.reinit_pooler:
        reinit_pooler(model)
    model.train()
    head = [p for n, p in model.named_parameters() if _is_head(n)]
    body = [p for n, p in model.named_parameters() if not _is_head(n)]
    opt = torch.optim.AdamW([{"params": body, "lr": args.lr}, {"params": head, "lr": args.head_lr}],
                            weight_decay=0.01)
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
    config = {"base": "all-MiniLM-L6-v2", "labels": os.path.basename(args.labels), "tcl": not args.no_tcl,
              "tcl_weight": args.tcl_weight, "loss": args.loss, "max_length": args.max_length,
              "queries": len(ds), "skipped_no_ranked": ds.skipped_no_ranked, "epochs": args.epochs,
              "steps": total, "queries_per_step": args.queries_per_step, "candidates": args.candidates, "reinit_pooler": args.reinit_pooler,
              "lr": args.lr, "head_lr": args.head_lr, "seed": args.seed}
    print(f"train: {len(ds)} queries ({ds.skipped_no_ranked} skipped: no ranked document), "
          f"{total} steps, tcl={not args.no_tcl}", file=sys.stderr)
    os.makedirs(args.out, exist_ok=True)
    log = open(os.path.join(args.out, "train_log.jsonl"), "a")
    bar = tqdm(total=total, initial=step, desc="train" + ("" if args.no_tcl else "+tcl"), disable=None)
    t0 = time.perf_counter()
    pairs = 0
    while step < total:
        epoch, pos = divmod(step, steps_per_epoch)
        order = ds.epoch_order(args.seed, epoch)
        idx = order[pos * args.queries_per_step: (pos + 1) * args.queries_per_step]
        items = [ds.items[i] for i in idx]
        n_docs = min(len(it["docs"]) for it in items)
        picks = [candidate_subset(it, n_docs, args.candidates, random.Random(f"{args.seed}-{step}-{it['qid']}"))
                 for it in items]
        batches = [encode_pairs(tok, it["query"], [it["docs"][j] for j in pk], with_selection=not args.no_tcl)
                   for it, pk in zip(items, picks)]
        batch = {k: _cat_padded([b[k] for b in batches]) for k in batches[0]}
        gains = torch.tensor([[it["gains"][j] for j in pk] for it, pk in zip(items, picks)], dtype=torch.float32)
        loss, parts = rra_loss(model, batch, gains, len(items), args.loss, args.tcl_weight)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        step += 1
        pairs += batch["input_ids"].shape[0]
        loss_value = loss.item()
        log.write(json.dumps({"step": step, "loss": loss_value, **parts}) + "\n")
        log.flush()
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.3f}")
        if step % args.save_every == 0 or step == total:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "step": step}, ckpt + ".tmp")
            os.replace(ckpt + ".tmp", ckpt)
            log.flush()
    bar.close()
    log.close()
    elapsed = time.perf_counter() - t0
    config["train_seconds_this_run"] = round(elapsed, 1)
    config["pairs_per_second"] = round(pairs / max(elapsed, 1e-9), 2)
    model.eval()
    save_student(model, args.out, config)
    print(f"train: done, {pairs} pairs in {elapsed:.0f}s; student in {args.out}", file=sys.stderr)
    return config


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


def _cat_padded(tensors: list[torch.Tensor]) -> torch.Tensor:
    width = max(t.shape[1] for t in tensors)
    return torch.cat([torch.nn.functional.pad(t, (0, width - t.shape[1])) for t in tensors], 0)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description="Train RRA-BERT (stage 5).")
    ap.add_argument("--data", default=str(WORK_DIR / "data"))
    ap.add_argument("--labels", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--base", default=None, help="base model folder (default: all-MiniLM-L6-v2)")
    ap.add_argument("--no-tcl", action="store_true", help="ablation: train without the Term Control Layer")
    ap.add_argument("--tcl-weight", type=float, default=0.5)
    ap.add_argument("--loss", default="listwise", choices=sorted(LOSSES))
    ap.add_argument("--max-length", type=int, default=160)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--max-queries", type=int, default=0)
    ap.add_argument("--queries-per-step", type=int, default=1)
    ap.add_argument("--no-reinit-pooler", dest="reinit_pooler", action="store_false",
                    help="keep the base model's (untrained) [CLS] pooler instead of an orthogonal one")
    ap.add_argument("--candidates", type=int, default=0,
                    help="candidates per query and step: the teacher's ranked ones plus random others (0: all)")
    ap.add_argument("--lr", type=float, default=4e-5)
    ap.add_argument("--head-lr", type=float, default=5e-4)
    ap.add_argument("--save-every", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7)
    return ap


def main(argv=None) -> None:
    train(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
