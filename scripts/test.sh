#!/usr/bin/env bash
# Sets up and runs every test: formatting and lints, the UI's unit tests, every Rust test
# (unit, loopback, real processes, discovery inside network namespaces), and the desktop app
# end to end through WebDriver under Xvfb. Network-namespace and mount tests need root (CI runs
# as root); as a normal user they print SKIPPED, except under CI where they fail.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
mkdir -p target
# A one-off run has no use for incremental caches, which would take gigabytes more disk.
[ -z "${CI:-}" ] || export CARGO_INCREMENTAL=0
disk() { df -h --output=avail,target . "${TMPDIR:-/tmp}" | sed "s/^/disk: /"; }
disk

echo "== UI: build, types, unit tests"
npm --prefix ui run build --silent
npm --prefix ui test --silent 2>&1 | tee target/ui-test-output.txt

echo "== format and lints"
python3 scripts/results.py --self-test
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

disk
echo "== Rust tests"
# --nocapture: each test prints what it measured (latencies, handshake time, ...).
set +e
cargo test --workspace --locked --no-fail-fast -- --nocapture 2>&1 | tee target/test-output.txt
status=${PIPESTATUS[0]}
set -e

disk
echo "== fuzzing every decoder of peer input (${FERRY_FUZZ_SECS:-15} s per target)"
set +e
bash scripts/fuzz.sh "${FERRY_FUZZ_SECS:-15}" 2>&1 | tee target/fuzz-output.txt
fuzz=${PIPESTATUS[0]}
set -e
# The fuzz build is a second copy of the dependencies; a one-off run frees it for the next stage.
[ -z "${CI:-}" ] || rm -rf fuzz/target

disk
echo "== desktop app end to end (WebDriver under Xvfb)"
set +e
cargo build --locked -p ferry-desktop -p ferry-cli &&
  xvfb-run -a -s "-screen 0 1280x800x24 -nolisten tcp" \
    python3 tests/desktop/e2e.py "$PWD/target/debug/ferry-desktop" "$PWD/target/debug/ferry" 2>&1 | tee target/e2e-output.txt
e2e=${PIPESTATUS[0]}
echo "== desktop app with a LocalSend device (localsendd), in network namespaces"
xvfb-run -a -s "-screen 0 1280x800x24 -nolisten tcp" \
  python3 tests/desktop/e2e_localsend.py "$PWD/target/debug/ferry-desktop" 2>&1 | tee target/e2e-localsend-output.txt
[ "${PIPESTATUS[0]}" -eq 0 ] || e2e=1
set -e

# The summary: counts from each runner's own result lines only, never from what tests print
# (scripts/results.py says how).
read -r total_passed total_failed < <(python3 scripts/results.py target/test-output.txt \
  target/ui-test-output.txt target/fuzz-output.txt target/e2e-output.txt \
  target/e2e-localsend-output.txt)
if [ "$status" -ne 0 ] || [ "$e2e" -ne 0 ] || [ "$fuzz" -ne 0 ]; then
  [ "$total_failed" -gt 0 ] || total_failed=1
fi
disk
echo "tests: $total_passed passed, $total_failed failed"
[ "$status" -eq 0 ] && [ "$e2e" -eq 0 ] && [ "$fuzz" -eq 0 ]
