#!/usr/bin/env bash
# How long a cold `make run` takes: a fresh clone of this repository (no .venv, .runtime or
# target), `make run` until the service answers /ready, then stopped. Writes a JSON record
# (default benches/results/cold_run.json) with the seconds, the machine's core count and
# what the clone still shared with this machine (cargo's registry cache and pip's cache,
# which a new machine would download first).
# Usage: benches/cold_run.sh [OUT_JSON] [PORT]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$repo/benches/results/cold_run.json}"
port="${2:-18931}"
dir="$(mktemp -d)"
trap 'kill -- -$pid 2>/dev/null || true; rm -rf "$dir"' EXIT
git clone -q "$repo" "$dir/repo"
cd "$dir/repo"
start=$(date +%s.%N)
setsid make run PORT="$port" >"$dir/run.log" 2>&1 &
pid=$!
until curl -sf "http://127.0.0.1:$port/ready" >/dev/null; do
  if ! kill -0 "$pid" 2>/dev/null; then tail -n 30 "$dir/run.log" >&2; echo "make run exited" >&2; exit 1; fi
  sleep 2
done
end=$(date +%s.%N)
venv_mb=$(du -sm .venv | cut -f1)
mkdir -p "$(dirname "$out")"
python3 - "$out" "$start" "$end" "$venv_mb" "$(nproc)" "$(git rev-parse --short HEAD)" <<'PY'
import json, sys
out, start, end, venv_mb, cores, commit = sys.argv[1:]
json.dump({"command": "make run (fresh clone, until /ready answers)", "seconds": round(float(end) - float(start), 1),
           "venv_mb": int(venv_mb), "cores": int(cores), "commit": commit,
           "shared_with_the_machine": "cargo's registry cache (~/.cargo) and pip's cache: crate and wheel downloads are not in the figure"},
          open(out, "w"), indent=1)
print(open(out).read())
PY
