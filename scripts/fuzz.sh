#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets: each decoder of peer input) for SECONDS each
# (default 30), starting from the checked-in seeds (fuzz/corpus) plus what earlier runs here
# found (target/fuzz-corpus). A crash leaves its input in fuzz/artifacts/TARGET/ and fails.
# Longer run: scripts/fuzz.sh 3600. Needs cargo-fuzz (scripts/setup.sh --test installs it).
#
# The machine's one toolchain is stable; RUSTC_BOOTSTRAP lets it take the instrumentation
# flags libFuzzer needs. Sanitizers stay off (they need a nightly std); the targets themselves
# assert the invariants that matter (bounds, names that never escape).
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
export RUSTC_BOOTSTRAP=1
targets=(streams manifest names records sync localsend media control)
# The targets claim that no input allocates past its bound or hangs; libFuzzer's defaults
# (2 GB of RSS, 1,200 s per input) let an input take 600 MB, or hang for the whole run,
# unreported. Every bound is at most a 48 MiB frame (an offer), and a target's RSS stays under
# 64 MB in a run (peaks of 54-61 MB measured over 20 s each): 256 MB is
# that plus the largest bound with room for a long run's corpus. No input takes 1 s (slowest 0 s
# measured); 10 s is a hang. (An allocation that is never touched shows in no RSS;
# -malloc_limit_mb would need a sanitizer's malloc hooks, which these builds do not have.)
limits=(-rss_limit_mb=256 -timeout=10)
echo "fuzz: building the targets"
(cd fuzz && cargo fuzz build --sanitizer none 2>&1 | tail -3) || exit 1
passed=0
failed=0
for t in "${targets[@]}"; do
  mkdir -p "target/fuzz-corpus/$t"
  log="target/fuzz-$t.log"
  (cd fuzz && cargo fuzz run --sanitizer none "$t" "../target/fuzz-corpus/$t" "corpus/$t" -- \
    -max_total_time="$secs" -print_final_stats=1 "${limits[@]}") >"$log" 2>&1
  rc=$?
  runs=$(grep -Eo "stat::number_of_executed_units: *[0-9]+" "$log" | grep -Eo "[0-9]+$" | tail -1)
  cov=$(grep -Eo "cov: [0-9]+" "$log" | tail -1)
  rss=$(grep -Eo "stat::peak_rss_mb: *[0-9]+" "$log" | grep -Eo "[0-9]+$" | tail -1)
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
    echo "fuzz $t: ${runs:-?} runs in ${secs}s, ${cov:-cov: ?}, peak RSS ${rss:-?} MB, no crash"
  else
    failed=$((failed + 1))
    echo "fuzz $t: FAILED after ${runs:-?} runs (exit $rc); input in fuzz/artifacts/$t/"
    grep -E "panicked|ERROR|SUMMARY|out-of-memory|timeout" "$log" | head -5
  fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
