"""Stage 5a, shallow towers: the base's first N layers taught to compute what all its layers do.

What it owns: a shallower base for RRA-BERT-m (``train --base FOLDER``). A document's cost is
its tower's, so fewer layers is the lever on cost per pair; but the late student starts at its
teacher only because its dense match is e5's own embedding, and the first N layers of e5,
mean-pooled, rank worse than chance on the dev sets (8 of 12 layers: MRR 0.24 en, 0.23 ko,
against 0.76 / 0.88 for all 12; ``benches/README.md``, "How deep the towers must be"). Six
hundred listwise steps from there reach only half the way back.

So before listwise training, the shallow tower learns the full tower's embedding: for texts
from the corpus (``passage:``, documents no held-out query has among its candidates) and the
training queries (``query:``), ``1 - cos(mean(shallow states), e5 embedding)``, the e5
embeddings the label stage cached (``--cache-dir``), computed for what is not cached. No
labels, no held-out text. The word embeddings and the first ``--freeze-layers`` layers stay
as e5 left them.

Writes ``OUT/``: ``config.json`` + weights (a ``BertModel`` with N layers), ``tokenizer.json``
(the base's), ``shallow.json`` (settings, texts, the loss before and after, seconds).

Usage: python -m rradistill_toolkit.shallow --layers 8 --out work/shallow/e5-8l [--documents 6000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time

import numpy as np

from .common import WORK_DIR, iter_jsonl, load_corpus, load_queries, set_threads


def embed(encoder, ids, mask):
    """Mean-pooled, L2-normalized last states: e5's bi-encoder embedding (the late student's
    dense match reads its towers the same way)."""
    import torch

    from .students.late import masked_mean

    h = encoder(input_ids=ids, attention_mask=mask).last_hidden_state.float()
    return torch.nn.functional.normalize(masked_mean(h, mask), dim=-1)


def batches(tokenizer, texts: list[str], targets: np.ndarray, size: int, window: int, seed: int):
    """Length-sorted batches of (ids, mask, targets), in a seeded random order."""
    import torch

    tokenizer.enable_truncation(max_length=window)
    tokenizer.no_padding()
    encs = tokenizer.encode_batch(texts)
    order = sorted(range(len(texts)), key=lambda i: len(encs[i].ids))
    out = []
    for b in range(0, len(order), size):
        idx = order[b: b + size]
        width = max(len(encs[i].ids) for i in idx)
        ids = torch.ones((len(idx), width), dtype=torch.long)  # <pad> is 1 in XLM-R's vocabulary
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for r, i in enumerate(idx):
            ids[r, : len(encs[i].ids)] = torch.tensor(encs[i].ids)
            mask[r, : len(encs[i].ids)] = 1
        out.append((ids, mask, torch.from_numpy(targets[idx])))
    random.Random(seed).shuffle(out)
    return out


def distil(encoder, train, lr: float, bf16: bool) -> list[float]:
    """One pass over ``train`` (``batches``): the encoder's trainable layers learn the targets.
    Returns the loss of every step."""
    import torch

    params = [p for p in encoder.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    warm = max(1, len(train) // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (len(train) - s) / max(1, len(train) - warm)))
    encoder.train()
    losses = []
    for ids, mask, target in train:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = (1 - (embed(encoder, ids, mask) * target).sum(-1)).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(loss.item())
    encoder.eval()
    return losses


def mean_loss(encoder, held) -> float:
    import torch

    with torch.no_grad():
        return float(np.mean([(1 - (embed(encoder, ids, mask) * t).sum(-1)).mean().item() for ids, mask, t in held]))


def texts_and_targets(args) -> tuple[list[str], np.ndarray, dict]:
    """Documents no held-out query ranks and training queries, each with e5's embedding."""
    from .scorers import make_scorer

    corpus = load_corpus(os.path.join(args.data, "corpus.jsonl"))
    test = {q["qid"] for q in load_queries(os.path.join(args.data, "queries.jsonl"), "test")}
    held_docs = {c["doc_id"] for r in iter_jsonl(args.prerank) if r["qid"] in test for c in r["candidates"]}
    rng = random.Random(args.seed)
    doc_ids = sorted(d for d in corpus if d not in held_docs)
    doc_ids = rng.sample(doc_ids, min(args.documents, len(doc_ids)))
    queries = sorted(q["text"] for q in load_queries(os.path.join(args.data, "queries.jsonl"), "train"))
    queries = rng.sample(queries, min(args.queries, len(queries)))
    teacher = make_scorer("e5", threads=args.threads, cache_dir=args.cache_dir)
    docs = [{"doc_id": d, "text": corpus[d]["text"]} for d in doc_ids]
    teacher.prepare(queries, docs)
    texts = [teacher.document_prefix + d["text"] for d in docs] + [teacher.query_prefix + q for q in queries]
    targets = np.stack([teacher.doc_cache[d] for d in doc_ids] + [teacher.query_cache[q] for q in queries])
    return texts, targets.astype(np.float32), {"documents": len(docs), "queries": len(queries),
                                                "held_out_documents_excluded": len(held_docs)}


def main(argv=None) -> None:
    import torch
    from tokenizers import Tokenizer
    from transformers import BertModel

    from .students import late
    from .students.bases import e5_dir

    ap = argparse.ArgumentParser(description="Stage 5a: a shallow tower that computes the full tower's embedding.")
    ap.add_argument("--layers", type=int, required=True, help="the base's first N layers")
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", default=str(WORK_DIR / "data"))
    ap.add_argument("--prerank", default=str(WORK_DIR / "prerank.jsonl"), help="whose held-out candidates are left out")
    ap.add_argument("--cache-dir", default=str(WORK_DIR / "cache"), help="the label stage's e5 embeddings")
    ap.add_argument("--documents", type=int, default=6000)
    ap.add_argument("--queries", type=int, default=3000)
    ap.add_argument("--freeze-layers", type=int, default=0, help="layers kept as e5 left them")
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--held", type=int, default=256, help="texts kept aside to measure the loss on")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    set_threads(args.threads)
    torch.manual_seed(args.seed)
    bf16 = torch.cpu._is_avx512_bf16_supported()
    base = str(e5_dir())
    texts, targets, counts = texts_and_targets(args)
    split = random.Random(args.seed).sample(range(len(texts)), len(texts))
    held_idx, train_idx = split[: args.held], split[args.held:]
    tok = Tokenizer.from_file(os.path.join(base, "tokenizer.json"))
    pick = lambda idx: ([texts[i] for i in idx], targets[idx])
    held = batches(tok, *pick(held_idx), args.batch_size, args.window, args.seed)
    train = batches(tok, *pick(train_idx), args.batch_size, args.window, args.seed)
    encoder = BertModel.from_pretrained(base, add_pooling_layer=False, attn_implementation="sdpa")
    late.keep_layers(encoder, args.layers)
    encoder.embeddings.requires_grad_(False)
    for layer in encoder.encoder.layer[: args.freeze_layers]:
        layer.requires_grad_(False)
    before = mean_loss(encoder, held)
    print(f"shallow: {args.layers} layers, {len(train_idx)} texts ({counts}), held-out loss {before:.4f}",
          file=sys.stderr)
    t0 = time.perf_counter()
    losses = distil(encoder, train, args.lr, bf16)
    seconds = time.perf_counter() - t0
    after = mean_loss(encoder, held)
    print(f"shallow: held-out loss {before:.4f} -> {after:.4f} in {seconds:.0f}s", file=sys.stderr)
    os.makedirs(args.out, exist_ok=True)
    encoder.save_pretrained(args.out)
    shutil.copy(os.path.join(base, "tokenizer.json"), os.path.join(args.out, "tokenizer.json"))
    with open(os.path.join(args.out, "shallow.json"), "w") as f:
        json.dump({"layers": args.layers, "freeze_layers": args.freeze_layers, "texts": counts,
                   "train_texts": len(train_idx), "held_texts": len(held_idx), "window": args.window,
                   "batch_size": args.batch_size, "lr": args.lr, "steps": len(losses), "bf16": bf16,
                   "held_loss_before": round(before, 5), "held_loss_after": round(after, 5),
                   "train_seconds": round(seconds, 1)}, f, indent=1)


if __name__ == "__main__":
    main()
