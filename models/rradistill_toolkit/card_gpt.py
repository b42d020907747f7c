"""The decoder model card: README.md in an RRA-GPT model folder, from the stages' own files.

Like ``card`` (RRA-BERT) every number is read from a file a stage wrote: the folder's
``manifest.json`` and ``export_report.json``, the student's ``train_config.json`` and
``train_log.jsonl``, the rationale stats, and an evaluation (``eval.json``,
``eval_table.md``, ``eval.png``) that has RRA-GPT side by side with RRA-BERT and BM25, and,
when it was evaluated too, the ablation trained without the joint losses (alpha = beta = 0).
Verdicts ("clearly above BM25", "the joint losses helped") come from the evaluation's paired
comparisons and are given only when the 95% interval excludes zero.

Usage: python -m rradistill_toolkit.card_gpt --model models/rra-gpt-mini \
           --student models/work/students/rra-gpt --eval models/work/eval-gpt \
           [--ablation-student models/work/students/rra-gpt-rank-only] [--note TEXT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil

from .card import _f, ablation_verdict, comparison, interval, versus
from .common import read_jsonl
from .students.decoder import PROMPT_TEMPLATE


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Write the RRA-GPT model card.")
    ap.add_argument("--model", required=True, help="the exported model folder")
    ap.add_argument("--student", required=True, help="the train_gpt folder it was exported from")
    ap.add_argument("--eval", required=True, help="evaluate's --out folder, with this model as a student")
    ap.add_argument("--name-in-eval", default="RRA-GPT")
    ap.add_argument("--ablation-student", default=None, help="the train_gpt folder of the alpha = beta = 0 ablation")
    ap.add_argument("--ablation-name-in-eval", default="RRA-GPT-rank-only")
    ap.add_argument("--reproduce", default=None, help="the commands that made this folder")
    ap.add_argument("--note", action="append", default=[], help="a line for the card's run notes")
    a = ap.parse_args(argv)
    m, s, e = a.model, a.student, a.eval
    man = json.load(open(f"{m}/manifest.json"))
    rep = json.load(open(f"{m}/export_report.json"))
    cfg = json.load(open(f"{s}/train_config.json"))
    log = read_jsonl(f"{s}/train_log.jsonl") if os.path.exists(f"{s}/train_log.jsonl") else []
    ev = json.load(open(f"{e}/eval.json"))
    for f in ("eval.png", "eval.json"):
        shutil.copyfile(f"{e}/{f}", f"{m}/{f}")
    rat_stats = None
    if cfg.get("rationales"):
        p = os.path.join(os.path.dirname(os.path.abspath(s)), "..", "labels",
                         cfg["rationales"].rsplit(".jsonl", 1)[0] + ".stats.json")
        rat_stats = json.load(open(p)) if os.path.exists(p) else None

    meth = ev["methods"]
    nd = lambda name, grp="all", tgt="ground_truth": meth.get(name, {}).get(f"{tgt}/{grp}", {}).get("NDCG@10")
    me = a.name_in_eval
    size = os.path.getsize(f"{m}/model.onnx") / 2 ** 20
    L = [f"# {man['name']} (version {man['version']})\n"]
    L.append(f"RRA-GPT, the decoder student of RRADistill: {cfg.get('base')} cut to its first {cfg.get('layers')} "
             f"decoder blocks ({cfg.get('hidden')} wide) with a ranking layer (Linear {cfg.get('hidden')} -> 1) on the "
             "hidden state of the last prompt token. One forward pass per (query, document) prompt, read at the "
             "ranking layer: no decoding, and the exported graph has no LM head. This folder is what the rradistill "
             f"service loads: `model.onnx` ({man.get('precision')}, {size:.1f} MB), `tokenizer.json` (SmolLM2's, read "
             "from its GGUF), `manifest.json` (kind `decoder`), `reference.jsonl` (Python-side token ids and scores "
             "for the Rust tests).\n")
    L.append("## Prompt and tokenization (the service contract)\n")
    L.append("```\n" + PROMPT_TEMPLATE + "```\n")
    L.append(f"Token ids = enc(prefix) + enc(query) + enc(middle) + enc(document) + enc(suffix), each piece encoded "
             f"separately with `tokenizer.json` (no special tokens added; `<|im_start|>`/`<|im_end|>` in the template "
             f"are recognised), no BOS; over {man['max_sequence_length']} tokens the document is cut from its end "
             f"(and, if the query alone overflows, the query too). Right padding with id {man['pad_token_id']}; "
             "the score is the ranking layer's raw logit at position sum(attention_mask) - 1 (sigmoid for a "
             "probability).\n")
    L.append("## How it was made\n")
    if a.reproduce:
        L.append(f"Reproduce (in `models/`, with the project's `.venv`):\n\n```\n{a.reproduce}\n```\n")
    L.append(f"- **Labels:** `{cfg.get('labels')}` ({cfg.get('queries')} training queries with a ranked document; "
             f"{cfg.get('skipped_no_ranked', 0)} skipped).")
    if cfg.get("rationales"):
        extra = ""
        if rat_stats:
            extra = (f" The rationale stage asked {rat_stats['asked']} times over {rat_stats['queries']} queries and "
                     f"kept {rat_stats['kept']}; dropped or trimmed: {rat_stats['issues'] or 'none'} "
                     f"(explainer `{rat_stats.get('explainer')}`).")
        L.append(f"- **Rationales:** `{cfg['rationales']}`, {cfg.get('rationales_used')} rationales on the training "
                 f"queries.{extra}")
    last = log[-min(len(log), 20):] if log else []
    mean = lambda k: (sum(r[k] for r in last if k in r) / max(1, sum(k in r for r in last))) if last else None
    L.append(f"- **Training:** L = L_rank + {cfg.get('alpha')}·L_cls + {cfg.get('beta')}·L_reason; L_rank the "
             f"{cfg.get('loss')} loss of RRA-BERT over each query's candidates ({cfg.get('docs_per_query') or 20} per "
             f"step: every ranked one, then a sample of the rest), L_cls the LM's cross-entropy on `yes` (teacher "
             "ranked it) / `no` after the prompt, L_reason the LM's cross-entropy on the rationale after the answer "
             f"word. {cfg.get('steps')} steps of {cfg.get('queries_per_step')} query, window {cfg.get('max_length')}, "
             f"AdamW lr {cfg.get('lr')} (decoder) / {cfg.get('head_lr')} (ranking layer); "
             f"{cfg.get('pairs_per_second')} pairs/s on 2 CPU cores. Mean of the last "
             f"{len(last)} steps: L_rank {_f(mean('rank'))}, L_cls {_f(mean('cls'))}, L_reason {_f(mean('reason'))}.")
    par, pad = rep["parity"], rep.get("padding", {})
    L.append(f"- **Export checks:** the graph's only output is `scores` and nothing in it has the vocabulary's width "
             f"outside the embedding lookup ({'ok' if rep['graph']['ok'] else 'FAILED'}); fp32 ONNX vs PyTorch on "
             f"{par['pairs']} real held-out pairs: max |diff| {par['max_abs_diff_fp32_vs_pytorch']:.2e} (limit 1e-4); "
             f"a pair alone vs in a right-padded batch: {pad.get('max_abs_diff_alone_vs_batched', float('nan')):.2e}.")
    if "int8" in rep:
        q = rep["int8"]
        kept = f"; left in float32: {q['kept_fp32']}" if q.get("kept_fp32") else ""
        L.append(f"- **int8:** dynamic quantization per channel (MatMul weights and the embedding Gather{kept}), "
                 f"{q['size_mb']} MB (fp32 "
                 f"{rep['fp32_size_mb']} MB); agreement with fp32: Spearman {q['spearman_all_pairs']:.4f} over all "
                 f"pairs, {q['spearman_mean_per_query']:.4f} mean per query (max |diff| {q['max_abs_diff_vs_fp32']:.3f}).")
    for note in a.note:
        L.append(f"- **Run note:** {note}")
    L.append("")
    L.append("## Evaluation on the held-out queries\n")
    L.append(f"{ev['queries']['all']} held-out queries ({ev['queries']['en']} English, {ev['queries']['ko']} Korean), "
             "each re-ranked over its 20 pre-ranked candidates, side by side with RRA-BERT and BM25 (same candidates, "
             "same machine; ms/pair with ONNX Runtime, 2 threads, 20 pairs a batch, shared cores: compare side by "
             "side).\n")
    L.append(open(f"{e}/eval_table.md").read())
    L.append("\n![NDCG@10 and cost per ranker](eval.png)\n")
    others = [n for n in meth if n not in (me,) and meth[n]["kind"] in ("student", "first stage")]
    L.append("### Against the targets\n")
    L.append(f"- {me} NDCG@10 (ground truth, all): {_f(nd(me))}; " +
             "; ".join(f"{n}: {_f(nd(n))}" for n in others) + ".")
    for b in ("BM25", "RRA-BERT"):
        if b in meth:
            per_lang = "; ".join(f"{g}: {c['mean_difference']:+.3f} {interval(c)}"
                                 for g in ("en", "ko") if (c := comparison(ev, me, b, g)))
            L.append(f"- {versus(comparison(ev, me, b), me, b)}" + (f"; per language, {per_lang}" if per_lang else "") + ".")
    ab = a.ablation_name_in_eval
    if ab in meth:
        acfg = json.load(open(f"{a.ablation_student}/train_config.json")) if a.ablation_student else {}
        same = [k for k in ("labels", "layers", "rank_init", "max_length", "docs_per_query", "steps", "lr", "head_lr", "seed")
                if acfg and acfg.get(k) == cfg.get(k)]
        L.append(f"- Joint-loss ablation ({ab}: alpha = beta = 0, only L_rank" +
                 (f"; same {', '.join(same)}" if same else "") + f"): NDCG@10 {_f(nd(ab))} vs {_f(nd(me))} "
                 f"({ablation_verdict(ev, me, ab, 'the joint losses')}; English {_f(nd(ab, 'en'))} vs {_f(nd(me, 'en'))}, "
                 f"Korean {_f(nd(ab, 'ko'))} vs {_f(nd(me, 'ko'))}). One seed, one run each." +
                 (f" It trained at {acfg['pairs_per_second']} pairs/s (no LM head, no rationale tokens)." if acfg.get("pairs_per_second") else ""))
    else:
        L.append(f"- Joint-loss ablation: not in this evaluation (no `{ab}` student was evaluated).")
    L.append(f"- Cost: {me} {meth.get(me, {}).get('ms_per_pair', float('nan')):.2f} ms/pair; " +
             "; ".join(f"{n} {meth[n]['ms_per_pair']:.2f}" for n in others if meth[n]["kind"] == "student") + ".\n")
    L.append("## Limitations\n")
    passes = cfg.get("steps", 0) * cfg.get("queries_per_step", 1) / max(1, cfg.get("queries") or 1)
    L.append(f"- A CPU run: {cfg.get('steps')} steps, {passes:.1f} pass(es) over the training queries, on 2 cores; "
             "the numbers above are what this run reached, not what the method can with a GPU and more passes.")
    L.append("- SmolLM2-135M is an English model: Korean queries are out of its training distribution.")
    L.append("- The base weights come from a Q4_1 GGUF, dequantized to float32: close to, not identical with, the "
             "original checkpoint.")
    with open(f"{m}/README.md", "w") as f:
        f.write("\n".join(L) + "\n")
    print(f"card_gpt: wrote {m}/README.md")


if __name__ == "__main__":
    main()
