#!/usr/bin/env bash
# rra-bert-m's trained weights served as `rows` int8, quantized once from the fp32 weights.
#
# Why: the served graph's weight MatMuls (`MatMulNBits`, weight-only int8) are two thirds of its
# kernel time, and ONNX Runtime's integer GEMM is its fastest int8 kernel here. `rows` (integer
# GEMMs on activations quantized one scale per row: nothing shared across a batch) made from
# 0.6.2's folder answered 1.67x the pairs per second through the service, but it had to
# re-quantize `MatMulNBits`' int8 blocks and put one case in each language one place lower on
# the dev sets (benches/README.md, "Integer GEMMs on per-row int8"). This run trains the student
# again exactly as the pipeline trained 0.6.0 (its train stage's command, the same labels and
# seed) and exports it twice from the same fp32 weights: `weights` (how 0.6.2 is served) and
# `rows`.
#
# Two questions, two answers in rows.json:
# - Does the pipeline's training reproduce 0.6.0? The `weights` export beside the committed
#   0.6.2 (0.6.0's weights in the same graph): the largest difference of their reference
#   logits, and whether every dev-set case ranks the same.
# - Is `rows` the candidate for rra-bert-m's next version? By benches/candidates.py's rule, the
#   one the depth runs were judged by (fixed before those runs, commit 22a0781; this file's
#   first commit applies it to `rows` before this run): cost per pair at most 2x rra-bert-mini
#   0.5.0 on both pair sets, dev-set MRR not below 0.6.2's in either language, held-out
#   NDCG@10 not lower than 0.6.2's by a paired 95% interval. The cost is also measured at one
#   intra-op thread, as the service runs each session (recorded, not part of the rule).
#
# Each stage is skipped when its output exists, so an interrupted run continues. Needs the
# toolkit's data (its first stages run here when missing) and a release build of the service.
# Usage: benches/rows.sh [OUT_DIR]   (about 50 min on 2 cores: training is 16 min on one thread)
set -euo pipefail
bench=rows && source "$(dirname "$0")/toolkit.sh"
out="${1:-$repo/benches/results/rows/from-fp32}"
x="$w/rows" r="$w/rows/run"
first_stages

# The pipeline's train stage for rra-bert-m, with its defaults (0.6.0's run: one thread each)
s="$x/student"
[ -f "$s/train_config.json" ] || stage train --student late --data "$data" --labels "$labels" --out "$s" \
  --max-queries 600 --freeze-layers 6 --tower-layers 0 --lr 2e-05 --head-lr 0.0005 --threads 1
served=() names=()
for q in weights rows; do
  name="rra-bert-m-$q"
  [ -f "$x/$name/export_report.json" ] || stage export --student "$s" --out "$x/$name" --quantization "$q" \
    --data "$data" --prerank "$pre" --labels "$labels" --name "$name" --version "0.7.0-exp.$q"
  served+=("$name=$x/$name") names+=("$name")
done
yardsticks && judged_stages "rra-bert-mini-0.5.0=$mini"
# The cost at one intra-op thread, as the service runs each session (recorded, not in the rule)
cost_stage "$r/cost-1-thread.json" --threads 1

# Not part of the rule (added after the run, to read its result): the fp32 graph both int8 graphs
# were quantized from, on the same sets, so each int8 graph's difference from the trained model shows.
f32="$x/rra-bert-m-fp32"
if [ ! -f "$f32/model.onnx" ]; then
  mkdir -p "$f32" && cp "$x/rra-bert-m-weights/tokenizer.json" "$s/onnx/model.fp32.onnx" "$f32/"
  mv "$f32/model.fp32.onnx" "$f32/model.onnx"
  "$py" -c 'import json, sys; m = json.load(open(sys.argv[1])); m.update(name="rra-bert-m-fp32", precision="fp32")
json.dump(m, open(sys.argv[2], "w"), indent=1)' "$x/rra-bert-m-weights/manifest.json" "$f32/manifest.json"
fi
[ -f "$r/fp32/eval/eval.json" ] || stage evaluate --data "$data" --prerank "$pre" --labels "e5=$labels" \
  --reference e5 --student "rra-bert-m-fp32=$f32" "$current" --max-queries 300 --out "$r/fp32/eval"
[ -f "$r/fp32/ood.json" ] || stage ood --service-binary "$repo/target/release/rradistill" \
  --serve "rra-bert-m-fp32=$f32" "${served[@]}" --out "$r/fp32/ood.json"

mkdir -p "$out/fp32"
cp "$r/fp32/eval/eval.json" "$r/fp32/eval/eval_table.md" "$r/fp32/ood.json" "$out/fp32/"
cp "$r/eval/eval.json" "$r/eval/eval_table.md" "$r/ood.json" "$r/cost.json" "$r/cost-1-thread.json" "$out/"
PYTHONPATH="$repo/benches" "$py" - "$x" "$r" "$out" "$repo/models/rra-bert-m" "${names[@]}" <<'PY'
"""rows.json: the training, both exports, the reproduction check, the figures the rule reads, its verdict."""
import json, sys

from candidates import CURRENT, MINI, RULE, judge

x, r, out, committed, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
weights, rows_name = names


def logits(folder):
    return [json.loads(line)["logit"] for line in open(f"{folder}/reference.jsonl")]


ood = json.load(open(f"{r}/ood.json"))
ranks = {lang: {n: ood["sets"][lang]["rankers"][n]["ranks"] for n in (weights, CURRENT)} for lang in ("en", "ko")}
reproduced = {"reference_logits_max_abs_diff": max(abs(a - b) for a, b in zip(logits(f"{x}/{weights}"), logits(committed))),
              "dev_set_ranks_identical": {lang: v[weights] == v[CURRENT] for lang, v in ranks.items()}}
one_thread = json.load(open(f"{r}/cost-1-thread.json"))
figures = judge(r, names)
for name in names:
    figures[name]["export"] = json.load(open(f"{x}/{name}/export_report.json"))
    figures[name]["cost_vs_mini_1_thread"] = {p: round(one_thread[p]["ms_per_pair"][name] / one_thread[p]["ms_per_pair"][MINI], 3)
                                              for p in ("ood", "heldout")}
# The fp32 graph beside both int8 graphs (not part of the rule)
ev32, ood32 = (json.load(open(f"{out}/fp32/{p}")) for p in ("eval.json", "ood.json"))
fp32 = {"ood_mrr": {n: {lang: ood32["sets"][lang]["rankers"][n]["MRR"] for lang in ("en", "ko")}
                    for n in ("rra-bert-m-fp32", *names)},
        "heldout_ndcg10": ev32["methods"]["rra-bert-m-fp32"]["ground_truth/all"]["NDCG@10"],
        "heldout_minus_current": {k: next(c for c in ev32["comparisons"] if c["a"] == "rra-bert-m-fp32"
                                          and c["b"] == CURRENT and c["group"] == "all")[k]
                                  for k in ("mean_difference", "ci95")}}
json.dump({"rule": RULE + " (benches/candidates.py; applied to rows before the run: benches/rows.sh's first commit)",
           "train": json.load(open(f"{x}/student/train_config.json")), "reproduces_0.6.0": reproduced,
           "students": figures, "fp32_not_in_the_rule": fp32, "candidate": rows_name if figures[rows_name]["passes"] else None},
          open(f"{out}/rows.json", "w"), indent=1)
print(json.dumps({"reproduces_0.6.0": reproduced, "fp32": fp32,
                  **{n: {k: f.get(k) for k in ("ood_mrr", "cost_vs_mini", "cost_vs_mini_1_thread", "heldout_ndcg10",
                                               "passes")} for n, f in figures.items()}}, indent=1))
PY
