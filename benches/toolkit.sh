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
