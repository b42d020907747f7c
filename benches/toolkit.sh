# Sourced by the benches that run the toolkit's stages (layers.sh, rows.sh, teacher.sh), after
# `set -euo pipefail` and with `bench` set to the script's name. It moves into models/ and sets
# what each of them reads: repo, py, the work folder w, data, pre (the pre-ranked candidates)
# and labels (multilingual-e5-small's on every query); `stage CMD ARGS` runs one toolkit
# command under nice, named in the log; `first_stages [ASSET FLAGS]` runs the pipeline's own
# first stages (pipeline.first_stages) and e5's labels, each skipped when done.
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$repo/.venv/bin/python"
cd "$repo/models"
w=work
data="$w/data" pre="$w/prerank.jsonl" labels="$w/labels/e5.all.jsonl"
stage() { echo "$bench: $*" >&2; nice -n 10 "$py" -m "rradistill_toolkit.$1" "${@:2}"; }
first_stages() {
  "$py" -c 'import sys; from rradistill_toolkit.pipeline import first_stages; first_stages(*sys.argv[1:])' "$w" "$@"
  [ -f "${labels%.jsonl}.stats.json" ] || stage labels --data "$data" --prerank "$pre" --cache-dir "$w/cache" \
    --teacher scorer:e5 --split all --out "$labels"
}

# `yardsticks`: sets `current` (NAME=FOLDER of rra-bert-m 0.6.2, the default these benches'
# candidates were judged against, named rra-bert-m as in their results) and `mini` (the folder
# of rra-bert-mini 0.5.0), both unpacked from the git history: what every candidate is judged
# beside, so a rerun judges it as the committed results did.
yardsticks() {
  current="rra-bert-m=$(version dcb4bb7 models/rra-bert-m "rra-bert-m 0.6.2")"
  mini="$(version)"
}
# `version [COMMIT PATH NAME]`: the folder of a committed version (default: pipeline.PREVIOUS,
# rra-bert-mini 0.5.0), unpacked from the git history into the work folder
# (pipeline.previous_version).
version() {
  "$py" -c 'import sys; from rradistill_toolkit.pipeline import previous_version; print(previous_version("work", *([tuple(sys.argv[1:])] if sys.argv[1:] else [])))' "$@"
}

# `judged_stages [FOLDERS TO SERVE TOO]`: what benches/candidates.py's rule reads, for the
# candidates in the array `served` (NAME=FOLDER), into the run folder `r`: held-out queries
# (evaluate, the candidates before 0.6.2 so each is compared with it), the dev sets through the
# service (ood) and the cost per pair beside rra-bert-mini 0.5.0 (students.py at its default
# 2 threads, cost.json). Each skipped when done.
judged_stages() {
  [ -n "${mini:-}" ] || yardsticks
  [ -f "$r/eval/eval.json" ] || stage evaluate --data "$data" --prerank "$pre" --labels "e5=$labels" \
    --reference e5 --student "${served[@]}" "$current" --max-queries 300 --out "$r/eval"
  [ -f "$r/ood.json" ] || stage ood --service-binary "$repo/target/release/rradistill" \
    --serve "${served[@]}" "$current" "$@" --teacher e5 --out "$r/ood.json"
  cost_stage "$r/cost.json"
}

# `cost_stage FILE [STUDENTS.PY FLAGS]`: cost per pair of the candidates in `served` beside
# rra-bert-mini 0.5.0 and 0.6.2 (benches/students.py, both pair sets, 3 rounds), skipped when done.
cost_stage() {
  [ -n "${mini:-}" ] || yardsticks
  local models=() m
  for m in "${served[@]}"; do models+=(--model "$m"); done
  [ -f "$1" ] || nice -n 10 "$py" "$repo/benches/students.py" --model "rra-bert-mini-0.5.0=$mini" \
    --model "$current" "${models[@]}" --pairs ood heldout --heldout-queries 20 --rounds 3 "${@:2}" --json "$1"
}
