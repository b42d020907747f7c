"""The decoder's own relevance judgement before any training, at each depth (a baseline for RRA-GPT).

What it owns: for held-out queries and their 20 pre-ranked candidates, the prompt of
``gpt.PROMPT_TEMPLATE`` through the untrained decoder (SmolLM2 from its GGUF), and at each
requested depth d the score ``logit(yes) - logit(no)`` read from the last prompt token's
hidden state after block d through the final norm and the LM head ("logit lens"; at full depth
this is exactly the LM's own next-token judgement). That is the ranking layer's start under
``train_gpt --rank-init answer`` when the model is cut to d blocks, so it says which depth and
which start are worth training from. Scored with NDCG@10 against ground truth, beside BM25 and
the pre-ranker on the same queries.

Writes ``--out`` (JSON): per depth and per ranker, NDCG@10 over the queries (all, en, ko).

Usage: python -m rradistill_toolkit.zero_shot [--max-queries 20] [--depths 4,6,8,12,16,20,24,30]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

import torch

from .students import decoder as gpt
from .common import WORK_DIR, load_corpus, load_queries, read_jsonl, set_threads, write_json
from .evaluate import by_score
from .metrics import ndcg_at_k


def lens_scores(lm, enc: gpt.PromptEncoder, query: str, docs: list[str], depths: list[int]) -> dict[int, list[float]]:
    """depth -> yes-minus-no score per document, read after block ``depth`` (0 < depth <= all)."""
    yes, no = enc.word_id(gpt.YES), enc.word_id(gpt.NO)
    w = lm.lm_head.weight[yes] - lm.lm_head.weight[no]
    bias = getattr(lm.lm_head, "bias", None)
    b = float(bias[yes] - bias[no]) if bias is not None else 0.0
    feed = enc.batch([(query, d) for d in docs])
    mask = torch.from_numpy(feed["attention_mask"])
    with torch.no_grad():
        out = lm.model(input_ids=torch.from_numpy(feed["input_ids"]), attention_mask=mask, output_hidden_states=True)
    last = mask.sum(-1) - 1
    rows = torch.arange(len(docs))
    full = lm.config.num_hidden_layers
    scores = {}
    for d in depths:
        h = out.hidden_states[d][rows, last]
        if d < full:  # transformers' last entry already carries the final norm
            h = lm.model.norm(h)
        scores[d] = (h @ w + b).tolist()
    return scores


def run(args) -> dict:
    set_threads(args.threads)
    corpus = load_corpus(os.path.join(args.data, "corpus.jsonl"))
    prerank = {r["qid"]: r for r in read_jsonl(args.prerank)}
    queries = [q for q in load_queries(os.path.join(args.data, "queries.jsonl"), args.split) if q["qid"] in prerank]
    random.Random(args.seed).shuffle(queries)
    queries = queries[: args.max_queries] if args.max_queries else queries
    if args.init == "tiny":
        lm = gpt.tiny_llama(args.vocab_size, layers=2)
    else:
        from . import assets

        lm = gpt.load_smollm2(args.gguf or str(assets.smollm2_gguf()))
    lm.eval()
    full = lm.config.num_hidden_layers
    depths = sorted({min(int(d), full) for d in args.depths.split(",") if int(d) > 0})
    tokenizer = args.tokenizer or str(WORK_DIR / "assets" / "smollm2-tokenizer.json")
    if not os.path.exists(tokenizer):  # the tokenizer the GGUF carries, as train_gpt writes it
        from . import assets

        gpt.tokenizer_from_gguf(args.gguf or str(assets.smollm2_gguf()), tokenizer)
    enc = gpt.PromptEncoder(tokenizer, args.max_length, args.pad_token_id)
    per_query: dict[str, dict[str, float]] = {}
    langs = {}
    t0 = time.perf_counter()
    for q in queries:
        cands = prerank[q["qid"]]["candidates"]
        gt = {d: float(g) for d, g in q["relevant"].items()}
        rankers = {"BM25": [c["bm25"] for c in cands], "pre-ranker": [c["prerank"] for c in cands]}
        for d, s in lens_scores(lm, enc, q["text"], [corpus[c["doc_id"]]["text"] for c in cands], depths).items():
            rankers[f"zero-shot@{d}"] = s
        per_query[q["qid"]] = {name: ndcg_at_k(by_score(cands, s), gt, 10) for name, s in rankers.items()}
        langs[q["qid"]] = q["lang"]
    result = {"queries": len(queries), "depths": depths, "layers": full, "metric": "NDCG@10",
              "seconds": round(time.perf_counter() - t0, 1), "ndcg10": {}}
    for group in ("all", "en", "ko"):
        qs = [q for q in per_query if group == "all" or langs[q] == group]
        if qs:
            names = per_query[qs[0]]
            result["ndcg10"][group] = {n: round(sum(per_query[q][n] for q in qs) / len(qs), 4) for n in names}
            result.setdefault("group_queries", {})[group] = len(qs)
    write_json(args.out, result)
    for n, v in result["ndcg10"].get("all", {}).items():
        print(f"zero_shot: {n:>16}  NDCG@10 {v:.3f}", file=sys.stderr)
    return result


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description="The untrained decoder's yes-minus-no judgement at each depth.")
    ap.add_argument("--data", default=str(WORK_DIR / "data"))
    ap.add_argument("--prerank", default=str(WORK_DIR / "prerank.jsonl"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--max-queries", type=int, default=20, help="a random sample of held-out queries (0: all)")
    ap.add_argument("--depths", default="4,6,8,12,16,20,24,30", help="blocks kept, comma-separated")
    ap.add_argument("--tokenizer", default=None,
                    help="the decoder's tokenizer.json (default: read from the GGUF into work/assets/)")
    ap.add_argument("--pad-token-id", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=160)
    ap.add_argument("--init", default="gguf", choices=["gguf", "tiny"], help="SmolLM2 from its GGUF, or a tiny random Llama")
    ap.add_argument("--gguf", default=None)
    ap.add_argument("--vocab-size", type=int, default=49152, help="--init tiny only")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--out", default=str(WORK_DIR / "eval-zero-shot.json"))
    return ap


def main(argv=None) -> None:
    run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
