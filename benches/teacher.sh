#!/usr/bin/env bash
# A teacher chosen per language: RRA-BERT-m trained on labels from TEACHER (default
# scorer:lang:ko=e5,en=mpnet: all-mpnet-base-v2 ranks the English queries, multilingual-e5-small
# the Korean ones), otherwise exactly as rra-bert-m 0.6.0 was (the pipeline's defaults: the same
# 600 training queries, 12 layers, 6 frozen, the TCL), beside rra-bert-m 0.6.2 on what issue 14
# asks for: the dev sets through the service (MRR, en and ko, beside each teacher), held-out
# NDCG@10 paired against 0.6.2, and each teacher's own held-out NDCG@10 on the same queries.
#
# Why: on the dev sets mpnet ranks English at 0.850 MRR where e5 reads 0.763 (and Korean at
# 0.357 where e5 reads 0.875), and a student distilled from e5 is bounded by e5. In-domain,
# mpnet ranked a sample of English held-out queries below e5 in rra-bert-m 0.6.0's teacher
# comparison, so the in-domain half of the rule is the open question.
#
# The rule, fixed before the run (this file's first commit): the student is the candidate for
# rra-bert-m's next version by the pipeline's own ship rule against 0.6.2 (card.ship_decision:
# dev-set MRR above 0.6.2's in both languages, and held-out NDCG@10 minus 0.6.2's with a paired
# 95% interval not wholly below 0). The cost per pair is 0.6.2's: the same graph, other weights.
# A candidate becomes a version through the full pipeline (`pipeline --teacher TEACHER`: LOSO,
# the TCL ablation, the card).
#
# The teacher labels only the queries that are read: the 600 the student trains on
# (`train --list-queries`) and the 300 held-out queries evaluate ranks (`evaluate
# --list-queries`). Each stage is skipped when its output exists, so an interrupted run
# continues. Needs the toolkit's data (its first stages run here when missing) and a release
# build of the service.
# Usage: benches/teacher.sh [OUT_DIR]   (TEACHER=scorer:SPEC; about 1 h on 2 cores)
set -euo pipefail
bench=teacher && source "$(dirname "$0")/toolkit.sh"
teacher="${TEACHER:-scorer:lang:ko=e5,en=mpnet}"
slug="$("$py" -c 'import sys; from rradistill_toolkit.pipeline import slug; print(slug(sys.argv[1]))' "$teacher")"
out="${1:-$repo/benches/results/teacher/$slug}"
x="$w/teacher/$slug"
first_stages --mpnet
mkdir -p "$x"

name="rra-bert-m-$slug" s="$x/student"
[ -s "$x/train_qids.txt" ] || stage train --student late --data "$data" --labels "$labels" --out "$s" \
  --max-queries 600 --list-queries >"$x/train_qids.txt"
[ -s "$x/eval_qids.txt" ] || stage evaluate --data "$data" --prerank "$pre" --labels "e5=$labels" \
  --max-queries 300 --list-queries >"$x/eval_qids.txt"
for part in train eval; do
  [ -f "$x/labels.$part.stats.json" ] || stage labels --data "$data" --prerank "$pre" --cache-dir "$w/cache" \
    --teacher "$teacher" --split all --qids "$x/${part}_qids.txt" --out "$x/labels.$part.jsonl"
done
[ -f "$s/train_config.json" ] || stage train --student late --data "$data" --labels "$x/labels.train.jsonl" \
  --out "$s" --max-queries 600 --freeze-layers 6 --threads 2
[ -f "$x/$name/export_report.json" ] || stage export --student "$s" --out "$x/$name" --data "$data" \
  --prerank "$pre" --labels "$x/labels.train.jsonl" --name "$name" --version "0.7.0-exp.$slug"

yardsticks
# The new student first and 0.6.2 last: evaluate compares each student with those after it.
[ -f "$x/eval/eval.json" ] || stage evaluate --data "$data" --prerank "$pre" \
  --labels "e5=$labels" "$slug=$x/labels.eval.jsonl" --reference e5 \
  --student "$name=$x/$name" "$current" --max-queries 300 --out "$x/eval"
spec="${teacher#scorer:}"
[ -f "$x/ood.json" ] || stage ood --service-binary "$repo/target/release/rradistill" \
  --serve "$name=$x/$name" "$current" --teacher e5 mpnet "$spec" --out "$x/ood.json"

mkdir -p "$out"
cp "$x/eval/eval.json" "$x/eval/eval_table.md" "$x/ood.json" "$x/labels.train.stats.json" \
  "$x/labels.eval.stats.json" "$out/"
"$py" - "$x" "$out" "$name" "$slug" "$teacher" <<'PY'
"""teacher.json: the run's training and export, the figures the rule reads, its verdict."""
import json, sys

from rradistill_toolkit.card import ship_decision

x, out, name, slug, teacher = sys.argv[1:]
ev, ood = json.load(open(f"{x}/eval/eval.json")), json.load(open(f"{x}/ood.json"))
cur = "rra-bert-m"
comp = next(c for c in ev["comparisons"] if c["a"] == name and c["b"] == cur and c["group"] == "all")
heldout = {m: {g: ev["methods"][m][f"ground_truth/{g}"]["NDCG@10"] for g in ("all", "en", "ko")}
           for m in ev["methods"] if f"ground_truth/all" in ev["methods"][m]}
mrr = {r: {lang: ood["sets"][lang]["rankers"][r]["MRR"] for lang in ("en", "ko")}
       for r in ood["sets"]["en"]["rankers"]}
decision = ship_decision(ood, ood, comp, name, cur)
json.dump({"teacher": teacher, "rule": decision["rule"] + " (fixed before the run: benches/teacher.sh)",
           "train": json.load(open(f"{x}/student/train_config.json")),
           "export": json.load(open(f"{x}/{name}/export_report.json")),
           "heldout_ndcg10": heldout, "ood_mrr": mrr,
           "heldout_minus_current": {k: comp[k] for k in ("mean_difference", "ci95")},
           "checks": decision["checks"], "candidate": decision["ship"]}, open(f"{out}/teacher.json", "w"), indent=1)
print(json.dumps({"ood_mrr": mrr, "heldout_ndcg10": heldout, "checks": decision["checks"]}, indent=1))
print("candidate:", decision["ship"])
PY
