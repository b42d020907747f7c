#!/usr/bin/env bash
# How deep RRA-BERT-m's towers must be: students trained on the first N layers of
# multilingual-e5-small (`train --tower-layers N`), otherwise with rra-bert-m 0.6.0's settings
# and training queries, beside rra-bert-m 0.6.2 (12 layers) on what issue 14 asks for:
# the dev sets through the service (MRR, en and ko), held-out NDCG@10 (paired against 0.6.2)
# and cost per pair beside rra-bert-mini 0.5.0 (benches/students.py, one run, interleaved).
#
# The rule, fixed before the run (commit 22a0781): a depth is the candidate for
# rra-bert-m's next version if (a) its cost per pair is at most 2x rra-bert-mini 0.5.0's
# on both the dev-set and the held-out pairs, (b) its dev-set MRR is not below 0.6.2's in
# either language, and (c) its held-out NDCG@10 minus 0.6.2's has a paired 95% interval
# not wholly below 0. Of the depths that pass, the shallower. The candidate is then made a
# version by the full pipeline (`pipeline --tower-layers N`: LOSO, variants, card).
#
# A depth written N:F:shallow first teaches the N-layer tower the full tower's embedding
# (stage 5a, `shallow`, its first N/2 layers frozen) and trains the student from that base,
# F layers frozen (N: the tower stays the base's): the first N layers alone, mean-pooled, rank
# worse than chance, so the plain N:F student starts there. A student is named
# rra-bert-m-Nl[-fF][-shallow][-qQ][-rows], the -fF only where F is not N/2, the -qQ only where
# QUERIES (listwise training queries, default 600 as 0.6.2's) is not 600, the -rows only where
# QUANTIZATION (the export's, default weights as 0.6.2's) is rows.
#
# Each stage is skipped when its output exists, so an interrupted run continues. Needs the
# toolkit's data (its first stages run here when missing) and a release build of the service.
# Usage: benches/layers.sh [OUT_DIR]   (DEPTHS="8:4 6:3": layers:frozen[:shallow]; QUERIES=600;
#        QUANTIZATION=weights|rows; about 1 h on 2 cores)
set -euo pipefail
bench=layers && source "$(dirname "$0")/toolkit.sh"
depths="${DEPTHS:-8:4 6:3}"
queries="${QUERIES:-600}"
quantization="${QUANTIZATION:-weights}"
suffix="" && [ "$queries" -ne 600 ] && suffix="-q$queries"
[ "$quantization" != weights ] && suffix+="-$quantization"
run="$(echo $depths | tr ' :' '_-')$suffix"  # one run's figures apart from another's: "8-4_6-3"
out="${1:-$repo/benches/results/layers/$run}"
x="$w/layers" r="$w/layers/runs/$run"
first_stages

# Every depth trains at once, one thread each (on 2 cores, faster than one after the other);
# a single depth takes both.
threads=1 && [ "$(echo $depths | wc -w)" -eq 1 ] && threads=2
name_of() {
  local n f kind name
  IFS=: read -r n f kind <<<"$1"
  name="rra-bert-m-${n}l"
  [ "$f" -ne $((n / 2)) ] && name+="-f$f"
  [ "$kind" = shallow ] && name+="-shallow"
  echo "$name$suffix"
}
for d in $depths; do
  [[ "$d" == *:shallow ]] || continue
  n="${d%%:*}"
  [ -f "$x/shallow/e5-${n}l/shallow.json" ] || stage shallow --layers "$n" --freeze-layers $((n / 2)) \
    --data "$data" --prerank "$pre" --cache-dir "$w/cache" --out "$x/shallow/e5-${n}l"
done
pids=()
for d in $depths; do
  IFS=: read -r n frozen kind <<<"$d"
  s="$x/students/$(name_of "$d")"
  [ -f "$s/train_config.json" ] && continue
  base=() && [ "$kind" = shallow ] && base=(--base "$x/shallow/e5-${n}l")
  stage train --student late --data "$data" --labels "$labels" --out "$s" --max-queries "$queries" \
    --tower-layers "$n" --freeze-layers "$frozen" "${base[@]}" --threads "$threads" &
  pids+=("$!")
done
for p in "${pids[@]}"; do wait "$p"; done

served=() names=()
for d in $depths; do
  name="$(name_of "$d")"
  [ -f "$x/$name/export_report.json" ] || stage export --student "$x/students/$name" --out "$x/$name" \
    --quantization "$quantization" --data "$data" --prerank "$pre" --labels "$labels" --name "$name" --version "0.7.0-exp.${name#rra-bert-m-}"
  served+=("$name=$x/$name") names+=("$name")
done
judged_stages
# Where each student started: its tower alone as a bi-encoder (e5's first N layers, or the
# stage 5a base), ranking the dev sets beside the full e5.
starts=(e5) && for d in $depths; do
  IFS=: read -r n _ kind <<<"$d"
  [ "$kind" = shallow ] && starts+=("e5:$x/shallow/e5-${n}l") || starts+=("e5@$n")
done
[ -f "$r/starts.json" ] || stage ood --teacher "${starts[@]}" --out "$r/starts.json"

mkdir -p "$out"
cp "$r/eval/eval.json" "$r/eval/eval_table.md" "$r/ood.json" "$r/starts.json" "$r/cost.json" "$out/"
PYTHONPATH="$repo/benches" "$py" - "$x" "$r" "$out" "${names[@]}" <<'PY'
"""layers.json: each depth's training and export, the figures the rule reads, its verdict."""
import json, sys

from candidates import RULE, judge

x, r, out, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
rows = judge(r, names)
for name in names:
    row = rows[name]
    shallow = f"{x}/shallow/e5-{name.split('-')[3]}/shallow.json"
    rows[name] = {**{k: row[k] for k in ("heldout_ndcg10", "ood_mrr", "cost_vs_mini")},
                  "train": json.load(open(f"{x}/students/{name}/train_config.json")),
                  "shallow": json.load(open(shallow)) if "-shallow" in name else None,
                  "export": json.load(open(f"{x}/{name}/export_report.json")),
                  **{k: row[k] for k in ("heldout_minus_current", "checks", "passes")}}
passing = [n for n in names if rows[n]["passes"]]
candidate = min(passing, key=lambda n: rows[n]["train"]["tower_layers"]) if passing else None
json.dump({"rule": RULE + "; of those that pass, the shallower (fixed before the run, commit 22a0781)",
           "students": rows, "candidate": candidate}, open(f"{out}/layers.json", "w"), indent=1)
print(json.dumps({n: {k: r.get(k) for k in ("ood_mrr", "cost_vs_mini", "heldout_ndcg10", "passes")}
                  for n, r in rows.items()}, indent=1))
print("candidate:", candidate)
PY
