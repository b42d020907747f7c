"""The model card: README.md in the model folder, written from the pipeline's own outputs.

Every number in the card is read from a file a stage wrote (eval.json, export_report.json,
train_config.json, labels *.stats.json, queries.jsonl); nothing is typed in by hand. The
evaluation plot is copied next to it.

Usage: python -m rradistill_toolkit.card --work models/work --model models/rra-bert-mini \
           --teacher scorer:mpnet --train-labels models/work/labels/mpnet.train.jsonl
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import shutil

from .common import WORK_DIR, read_jsonl

REPRODUCE = "python -m rradistill_toolkit.pipeline"  # run in models/ with the project's .venv


def _f(x, nd=3):
    return "n/a" if x is None else f"{x:.{nd}f}"


def teacher_rows(ev: dict, stats_dir: str) -> list[str]:
    rows = ["| teacher | queries | NDCG@10 all | NDCG@10 en | NDCG@10 ko | MRR@10 all | ms/pair | parse issues |",
            "|---|---:|---:|---:|---:|---:|---:|---|"]
    for name, e in ev["methods"].items():
        if e["kind"] not in ("teacher", "first stage", "pre-ranker"):
            continue
        label_name = name.split(":", 1)[1] if name.startswith("teacher:") else None
        issues = ""
        if label_name:
            p = os.path.join(stats_dir, f"{label_name}.test.stats.json")
            if os.path.exists(p):
                s = json.load(open(p))
                issues = ", ".join(f"{k} {v}" for k, v in sorted(s["issues"].items())) or "none"
        g = lambda grp, m="NDCG@10": e.get(f"ground_truth/{grp}", {}).get(m)
        q = e.get("ground_truth/all", {}).get("queries")
        rows.append(f"| {name} | {q} | {_f(g('all'))} | {_f(g('en'))} | {_f(g('ko'))} | {_f(g('all', 'MRR@10'))} "
                    f"| {e['ms_per_pair']:.2f} | {issues} |")
    return rows


def load_tokenizer(model_dir: str):
    """The model folder's own tokenizer, without padding or truncation: lengths as pieces."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


def faq_pieces(tok, corpus: list[dict]) -> dict[str, int]:
    """Median length in tokenizer pieces of the Debian FAQ's answers, per language (the same
    FAQ in English and Korean): what the window holds of each."""
    texts = collections.defaultdict(list)
    for d in corpus:
        if d["source"] in ("debian-faq-en", "debian-faq-ko"):
            texts[d["lang"]].append(d["text"])
    return {lang: sorted(len(e.ids) for e in tok.encode_batch(ts, add_special_tokens=False))[len(ts) // 2]
            for lang, ts in texts.items()}


def window_holds(tok, corpus: list[dict], queries: list[dict], train_labels: str, window: int) -> dict[str, float]:
    """Share of the training pairs (query, candidate document) that fit whole in ``window``
    tokenizer pieces, per query language: how much of each document the student saw."""
    texts = {d["doc_id"]: d["text"] for d in corpus}
    by_qid = {q["qid"]: q for q in queries}
    pairs = collections.defaultdict(list)
    for lab in read_jsonl(train_labels):
        q = by_qid[lab["qid"]]
        pairs[q["lang"]] += [(q["text"], texts[d["doc_id"]]) for d in lab["docs"]]
    return {lang: sum(len(e.ids) <= window for e in tok.encode_batch(ps)) / len(ps)
            for lang, ps in sorted(pairs.items())}


def direction(r: dict) -> int:
    """The one rule every verdict uses: +1 when a paired comparison's 95% interval lies above
    zero, -1 when below, 0 when it includes zero."""
    lo, hi = r["ci95"]
    return 1 if lo > 0 else -1 if hi < 0 else 0


def interval(r: dict) -> str:
    lo, hi = r["ci95"]
    return f"[{lo:+.3f}, {hi:+.3f}]"


def ablation_verdict(ev: dict, full: str, ablated: str, part: str) -> str:
    """An ablation's paired comparison (``full`` minus ``ablated``): ``part`` helped or hurt only
    when the 95% interval excludes zero."""
    r = comparison(ev, full, ablated)
    if r is None:
        return "not compared"
    verdict = {1: f"{part} helped", -1: f"{part} hurt", 0: "no clear difference"}[direction(r)]
    return f"{verdict} on this data, difference {r['mean_difference']:+.3f}, 95% interval {interval(r)}, p = {r['p_value']:.2g}"


def tcl_verdict(ev: dict) -> str:
    return ablation_verdict(ev, "RRA-BERT", "RRA-BERT-no-TCL", "TCL")


def versus(r: dict | None, a: str, b: str) -> str:
    """One paired comparison in words: "clearly above/below" only when the interval excludes zero."""
    if r is None:
        return f"{a} and {b} were not compared"
    verdict = {1: f"clearly above {b}: the interval excludes zero", -1: f"clearly below {b}",
               0: f"not clearly different from {b}: the interval includes zero"}[direction(r)]
    return (f"{a} minus {b}, per query: {r['mean_difference']:+.3f} (95% bootstrap interval {interval(r)}, "
            f"permutation p = {r['p_value']:.2g}; better on {r['better']} queries, worse on {r['worse']}, tied on "
            f"{r['tied']}): **{verdict}**")


def comparison(ev: dict, a: str, b: str, group: str = "all") -> dict | None:
    """The evaluate stage's paired comparison of ``a`` minus ``b`` (NDCG@10, ground truth)."""
    for r in ev.get("comparisons", []):
        if r["a"] == a and r["b"] == b and r["group"] == group:
            return r
    return None


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Write the model card.")
    ap.add_argument("--work", default=str(WORK_DIR))
    ap.add_argument("--model", required=True)
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--train-labels", required=True)
    ap.add_argument("--note", action="append", default=[], help="a line for the card's run notes")
    a = ap.parse_args(argv)
    w, m = a.work, a.model
    ev = json.load(open(f"{w}/eval/eval.json"))
    ev_llm = json.load(open(f"{w}/eval-llm-sample/eval.json")) if os.path.exists(f"{w}/eval-llm-sample/eval.json") else None
    manifest = json.load(open(f"{m}/manifest.json"))
    report = json.load(open(f"{m}/export_report.json"))
    student_dir = glob.glob(f"{w}/students/rra-bert/train_config.json")
    cfg = json.load(open(student_dir[0])) if student_dir else {}
    cfg_ab = json.load(open(f"{w}/students/rra-bert-no-tcl/train_config.json")) \
        if os.path.exists(f"{w}/students/rra-bert-no-tcl/train_config.json") else {}
    train_stats = json.load(open(a.train_labels.rsplit(".jsonl", 1)[0] + ".stats.json"))
    queries = read_jsonl(f"{w}/data/queries.jsonl")
    corpus = read_jsonl(f"{w}/data/corpus.jsonl")
    by_src = collections.Counter((q["source"], q["split"]) for q in queries)
    tok = load_tokenizer(m)
    pieces = faq_pieces(tok, corpus)
    holds = window_holds(tok, corpus, queries, a.train_labels, cfg.get("max_length") or manifest["max_sequence_length"])
    shutil.copyfile(f"{w}/eval/eval.png", f"{m}/eval.png")
    shutil.copyfile(f"{w}/eval/eval.json", f"{m}/eval.json")

    meth = ev["methods"]
    ref = f"teacher:{ev['reference_teacher']}"
    nd = lambda name, grp="all", tgt="ground_truth": meth.get(name, {}).get(f"{tgt}/{grp}", {}).get("NDCG@10")
    stu, abl, bm = nd("RRA-BERT"), nd("RRA-BERT-no-TCL"), nd("BM25")
    tea = nd(ref)
    ratio = stu / tea if stu is not None and tea else None

    L = []
    L.append(f"# {manifest['name']} (version {manifest['version']})\n")
    L.append("RRA-BERT, the encoder student of RRADistill: a cross-encoder (all-MiniLM-L6-v2, 6 layers, 384 wide) "
             "that scores `[CLS] query [SEP] document [SEP]` with one logit, distilled from a teacher's listwise "
             "labels with the Term Control Layer (TCL) and Token Selection in training; the TCL is removed at export, "
             "so serving costs nothing extra. This folder is what the rradistill service loads: `model.onnx` "
             f"({manifest.get('precision')}, dynamic quantization, {os.path.getsize(f'{m}/model.onnx') / 2**20:.1f} MB), "
             "`tokenizer.json` (padding and truncation removed: the service does both), `manifest.json`, "
             f"`reference.jsonl` (Python-side scores for the Rust tests). Window: {manifest['max_sequence_length']} tokens "
             "(the query is never truncated, the document's beginning is kept).\n")
    L.append("## How it was made\n")
    L.append(f"Reproduce (in `models/`, with the project's `.venv`): `{REPRODUCE}` "
             f"(the defaults are this run's settings; every stage can also be rerun alone, see `models/README.md`).\n")
    L.append(f"- **Teacher that made the training labels:** `{train_stats['teacher']}` "
             f"({a.teacher}), on {train_stats['queries']} training queries "
             f"({cfg.get('queries', 'n/a')} used: {cfg.get('skipped_no_ranked', 0)} had no ranked document); "
             f"buckets {train_stats['buckets']}.")
    L.append(f"- **Data:** {len(corpus)} documents and {len(queries)} queries from the Debian FAQ (English, Korean), "
             "the Python FAQ and library reference (python3.11-doc), and Linux man pages (sections 2, 3, 5, 7), "
             "each query with its known relevant document from the source's structure (question -> answer, "
             "heading or synopsis -> section, man page NAME line -> DESCRIPTION). Held-out split by query:")
    L.append("")
    L.append("| source | train queries | held-out queries |\n|---|---:|---:|")
    for src in sorted({s for s, _ in by_src}):
        L.append(f"| {src} | {by_src[(src, 'train')]} | {by_src[(src, 'test')]} |")
    L.append("")
    L.append("- **Candidates:** BM25 (bm25s) top 50; the pre-ranker (all-MiniLM-L6-v2 bi-encoder) keeps its top 10 "
             "and bottom 10; the teacher ranks those 20, shuffled, in one listwise prompt; the documents it leaves out "
             "are negatives (`missing_hard` from the top 10, `missing_easy` from the bottom 10).")
    cands = cfg.get("candidates") or 20
    per_step = (f"{cands} of its 20 candidates (every document the teacher ranked plus random left-out ones)"
                if cands < 20 else "all 20 candidates")
    seen = (cfg.get("steps") or 0) * (cfg.get("queries_per_step") or 1)
    L.append(f"- **Training:** listwise softmax cross-entropy over each query's candidates, targets 2^-(rank-1) for "
             f"the teacher's ranked documents and 0 for missing ones; TCL weight {cfg.get('tcl_weight')}; "
             f"{cfg.get('steps')} steps of {cfg.get('queries_per_step')} query, each step on {per_step}, "
             f"so {seen} query lists ({seen * cands} pairs), {seen / max(1, cfg.get('queries') or 1):.2f} passes over "
             f"the {cfg.get('queries')} labelled queries; AdamW, learning rate {cfg.get('lr')} (encoder) and "
             f"{cfg.get('head_lr', 'n/a')} (heads), linear warm-up over 10% of the steps then linear decay; "
             f"window {cfg.get('max_length')} pieces (it holds the whole query and document for "
             + ", ".join(f"{v:.0%} of the {k} training pairs" for k, v in holds.items())
             + f"; the others lose the end of their document); {cfg.get('pairs_per_second', 'n/a')} pairs/s "
             f"({cfg.get('train_seconds_this_run', 'n/a')} s) on 2 CPU cores. The ablation "
             f"ran the same settings with the TCL off ({cfg_ab.get('pairs_per_second', 'n/a')} pairs/s).")
    par = report["parity"]
    L.append(f"- **Export checks:** fp32 ONNX vs PyTorch on {par['pairs']} real held-out pairs: max |diff| = "
             f"{par['max_abs_diff_fp32_vs_pytorch']:.2e} (limit 1e-4). int8 vs fp32: Spearman "
             f"{report['int8']['spearman_all_pairs']:.4f} over all pairs, {report['int8']['spearman_mean_per_query']:.4f} "
             f"mean per query (max |diff| {report['int8']['max_abs_diff_vs_fp32']:.3f}).\n")
    for note in a.note:
        L.append(f"- **Run note:** {note}")
    L.append("")
    L.append("## Evaluation on the held-out queries\n")
    L.append(f"{ev['queries']['all']} held-out queries ({ev['queries']['en']} English, {ev['queries']['ko']} Korean), "
             "each re-ranked over its 20 pre-ranked candidates. Ground truth: the source's relevant document "
             "(a query whose relevant document is not among the 20 scores 0 for every ranker). Teacher fidelity: "
             f"NDCG against the training teacher's labels on the same queries ({ev['reference_teacher']}). "
             "ms/pair: one (query, document) pair on this machine (2 CPU threads, shared with other work, so "
             "compare side by side): students with ONNX Runtime, 20 pairs a batch; BM25 per retrieved candidate; "
             "the pre-ranker including its document encoding; scoring teachers from their cached document "
             "embeddings (encoding not included, so their figure is a lower bound); the LLM teacher per candidate "
             "of its prompt.\n")
    L.append(open(f"{w}/eval/eval_table.md").read())
    L.append("\n![NDCG@10 and cost per ranker](eval.png)\n")
    L.append("### Against the targets\n")
    L.append(f"- RRA-BERT NDCG@10 (ground truth, all held-out): {_f(stu)}; its teacher ({ref}): {_f(tea)}; "
             f"ratio {_f(ratio * 100 if ratio is not None else None, 1)}% (target >= 95%): "
             f"**{'met' if ratio is not None and ratio >= 0.95 else 'not met'}**.")
    vs_bm25 = comparison(ev, "RRA-BERT", "BM25")
    if vs_bm25:
        L.append(f"- BM25 on the same candidates: {_f(bm)}; {versus(vs_bm25, 'RRA-BERT', 'BM25')}.")
        t = comparison(ev, ref, "BM25")
        if t:
            L.append(f"- Its teacher minus BM25 on the same queries: {t['mean_difference']:+.3f} (95% interval "
                     f"{interval(t)}, p = {t['p_value']:.2g}); per language, "
                     + "; ".join(f"{g}: student {c['mean_difference']:+.3f} {interval(c)}, "
                                 f"teacher {tg['mean_difference']:+.3f}"
                                 for g in ("en", "ko")
                                 if (c := comparison(ev, "RRA-BERT", "BM25", g)) and (tg := comparison(ev, ref, "BM25", g)))
                     + ".")
    else:
        L.append(f"- BM25 on the same candidates: {_f(bm)}; RRA-BERT is "
                 f"{'above' if stu is not None and bm is not None and stu > bm else 'below'} it by {_f(abs((stu or 0) - (bm or 0)))}.")
    if abl is None:
        L.append("- TCL ablation: not in this evaluation (no `RRA-BERT-no-TCL` student was evaluated).")
    else:
      L.append(f"- TCL ablation (same labels, steps and seed, TCL off): NDCG@10 {_f(abl)} vs {_f(stu)} with TCL "
             f"({tcl_verdict(ev)}; English {_f(nd('RRA-BERT-no-TCL', 'en'))} vs {_f(nd('RRA-BERT', 'en'))}, "
             f"Korean {_f(nd('RRA-BERT-no-TCL', 'ko'))} vs {_f(nd('RRA-BERT', 'ko'))}). One seed, one run each: the interval "
             "covers the choice of queries, not the training seed's own variation.")
    L.append(f"- Korean held-out queries (reported separately above): RRA-BERT {_f(nd('RRA-BERT', 'ko'))} vs BM25 "
             f"{_f(nd('BM25', 'ko'))} and its teacher {_f(nd(ref, 'ko'))}. The student starts from all-MiniLM-L6-v2, "
             "trained on English text: its uncased WordPiece vocabulary has no Korean syllables or words and spells "
             "Hangul out in jamo"
             + (f" (the Debian FAQ's answers take a median of {pieces['ko']} pieces in Korean against {pieces['en']} "
                f"in English, so the {manifest['max_sequence_length']}-token window holds much less of a Korean "
                "answer)" if {"en", "ko"} <= pieces.keys() else "")
             + ", so it is weak on Korean "
             + ("even though its teacher (multilingual-e5-small) is not; a multilingual base is needed for Korean "
                "traffic.\n" if ev["reference_teacher"] == "e5" else
                "and this teacher's neural members are English models too; a multilingual base and teacher are "
                "needed for Korean traffic.\n"))
    L.append("## Choosing the teacher\n")
    L.append("An LLM teacher is the method; the LLMs that run here offline are tiny. Candidate teachers were measured "
             "against the ground truth of the held-out queries (their labels, ranked list then the left-out documents "
             "in pre-rank order). Local scoring models answer in the same listwise format (their 5 best, best first) "
             "through the same parser; committees are reciprocal-rank fusion (k=60).\n")
    L.extend(teacher_rows(ev, f"{w}/labels"))
    L.append("")
    if ev_llm:
        L.append(f"On the {ev_llm['queries']['all']}-query random sample the local LLM labelled "
                 f"({ev_llm['queries']['en']} English, {ev_llm['queries']['ko']} Korean), side by side:\n")
        L.extend(teacher_rows(ev_llm, f"{w}/labels"))
        L.append("")
    # only teachers that labelled every held-out query compete (a small sample is too noisy)
    best = max(((n, e["ground_truth/all"]["NDCG@10"]) for n, e in meth.items() if e["kind"] == "teacher"
                and e["ground_truth/all"]["queries"] == ev["queries"]["all"]),
               key=lambda x: x[1], default=(None, None))
    chosen = ("Selection was made on the teachers' own held-out quality, not by training one student per teacher "
              f"(each student run is {seen * cands} pairs at {cfg.get('pairs_per_second', 'n/a')} pairs/s here)"
              if best[0] == ref else
              f"That is not the best teacher in this table, `{best[0]}` is: the run notes say why")
    L.append(f"Best teacher on all held-out queries' ground truth: `{best[0]}` (NDCG@10 {_f(best[1])}). The training labels came "
             f"from `{ref}`. {chosen}; the pipeline takes any teacher with "
             "`--teacher`, including a strong LLM behind an OpenAI-compatible endpoint (`--teacher openai` with "
             "RRADISTILL_TEACHER_BASE_URL / _MODEL / _API_KEY), which is how it is meant to be run.\n")
    L.append("## Limitations\n")
    L.append("- Queries are derived from document structure (FAQ questions, headings, man page summaries), not from "
             "search logs; they are shorter and more literal than real long-tail queries.")
    L.append("- Usually one relevant document per query (a query text shared by several pages has them all); other relevant candidates count as non-relevant.")
    L.append(f"- Small training run ({cfg.get('queries')} labelled queries, {cfg.get('steps')} steps) sized for "
             "2 shared CPU cores.")
    L.append("- The Korean FAQ text comes from a wrapped plain-text build: some words are split by the line wrap.")
    with open(f"{m}/README.md", "w") as f:
        f.write("\n".join(L) + "\n")
    print(f"card: wrote {m}/README.md")


if __name__ == "__main__":
    main()
