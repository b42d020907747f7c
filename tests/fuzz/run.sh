#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60) with libFuzzer through cargo-fuzz.
# cargo-fuzz needs nightly-only flags (sanitizers); RUSTC_BOOTSTRAP lets the stable toolchain
# accept them. A crash fails the run; its input is kept under tests/fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-60}"
export RUSTC_BOOTSTRAP=1
export PATH="$PWD/.runtime/cargo/bin:$PATH"
export RRADISTILL_FIXTURES="${RRADISTILL_FIXTURES:-$PWD/target/fixtures}"
command -v cargo-fuzz >/dev/null || cargo install --quiet --locked --root .runtime/cargo cargo-fuzz@0.13.2
mkdir -p tests/fuzz/logs
for target in request_parsing tokenize_and_batch; do
  mkdir -p "tests/fuzz/corpus/$target"
  log="tests/fuzz/logs/$target.log"
  if ! cargo fuzz run --fuzz-dir tests/fuzz --release "$target" "tests/fuzz/corpus/$target" -- \
      -max_total_time="$seconds" -max_len=8192 -rss_limit_mb=4096 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz target $target FAILED (log: $log)" >&2
    exit 1
  fi
  runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' || echo "?")
  echo "fuzz target $target: $runs inputs in ${seconds}s, no crash"
done
