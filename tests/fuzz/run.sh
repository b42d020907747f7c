#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60) with libFuzzer through cargo-fuzz.
# cargo-fuzz needs nightly-only flags (sanitizers); RUSTC_BOOTSTRAP lets the stable toolchain
# accept them. A crash fails the run; its input is kept under tests/fuzz/artifacts/.
#
# The instrumented build (AddressSanitizer, one codegen unit per crate) is the heaviest
# compile of the test suite and the one that runs last, when the disk is fullest. It is a
# step of its own so that a failure there is told apart from a crash found by fuzzing: the
# compiler's own error lines are printed with the disk and memory left, and the build is
# tried once more with one job at a time (LLVM's out-of-memory and I/O errors are
# resource failures, not findings). A crash found by fuzzing is never retried.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-60}"
targets=(request_parsing tokenize_and_batch)
export RUSTC_BOOTSTRAP=1
export PATH="$PWD/.runtime/cargo/bin:$PATH"
export RRADISTILL_FIXTURES="${RRADISTILL_FIXTURES:-$PWD/target/fixtures}"
command -v cargo-fuzz >/dev/null || cargo install --quiet --locked --root .runtime/cargo cargo-fuzz@0.13.2
mkdir -p tests/fuzz/logs

# What a failed build or run said, without the pages of compiler command lines around it.
explain() {
  local log="$1"
  echo "--- error lines of $log:" >&2
  grep -E 'error(\[E[0-9]+\])?:|LLVM ERROR|panicked|No space left|out of memory|memory allocation|signal: [0-9]+' "$log" \
    | cut -c1-400 | head -n 40 >&2 || true
  echo "--- last lines of $log:" >&2
  tail -n 50 "$log" | cut -c1-400 >&2
  echo "--- disk and memory left:" >&2
  df -h . >&2 || true
  free -m >&2 || true
}

build_log=tests/fuzz/logs/build.log
if ! cargo fuzz build --fuzz-dir tests/fuzz --release >"$build_log" 2>&1; then
  explain "$build_log"
  echo "fuzz build failed; trying once more with one job at a time" >&2
  if ! CARGO_BUILD_JOBS=1 cargo fuzz build --fuzz-dir tests/fuzz --release >"$build_log" 2>&1; then
    explain "$build_log"
    echo "fuzz build FAILED twice (log: $build_log)" >&2
    exit 1
  fi
fi

for target in "${targets[@]}"; do
  mkdir -p "tests/fuzz/corpus/$target"
  log="tests/fuzz/logs/$target.log"
  if ! cargo fuzz run --fuzz-dir tests/fuzz --release "$target" "tests/fuzz/corpus/$target" -- \
      -max_total_time="$seconds" -max_len=8192 -rss_limit_mb=4096 -print_final_stats=1 >"$log" 2>&1; then
    explain "$log"
    echo "fuzz target $target FAILED (log: $log)" >&2
    exit 1
  fi
  runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' || echo "?")
  echo "fuzz target $target: $runs inputs in ${seconds}s, no crash"
done
