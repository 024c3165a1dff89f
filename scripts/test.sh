#!/usr/bin/env bash
# Sets up and runs every test: formatting and lints, the UI's unit tests, every Rust test
# (unit, loopback, real processes, discovery inside network namespaces), and the desktop app
# end to end through WebDriver under Xvfb. Network-namespace and mount tests need root (CI runs
# as root); as a normal user they print SKIPPED, except under CI where they fail.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p target

echo "== UI: build, types, unit tests"
npm --prefix ui run build --silent
npm --prefix ui test --silent 2>&1 | tee target/ui-test-output.txt

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== Rust tests"
# --nocapture: each test prints what it measured (latencies, handshake time, ...).
set +e
cargo test --workspace --locked -- --nocapture 2>&1 | tee target/test-output.txt
status=${PIPESTATUS[0]}
set -e

echo "== desktop app end to end (WebDriver under Xvfb)"
set +e
cargo build --locked -p ferry-desktop -p ferry-cli &&
  xvfb-run -a -s "-screen 0 1280x800x24 -nolisten tcp" \
    python3 tests/desktop/e2e.py "$PWD/target/debug/ferry-desktop" "$PWD/target/debug/ferry" 2>&1 | tee target/e2e-output.txt
e2e=${PIPESTATUS[0]}
set -e

passed=$(grep -Eo "test result: [a-zA-Z]+\. [0-9]+ passed" target/test-output.txt | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo "; [0-9]+ failed" target/test-output.txt | awk '{s+=$2} END {print s+0}')
ui_passed=$(grep -Eo "Tests +[0-9]+ passed" target/ui-test-output.txt | grep -Eo "[0-9]+" | tail -1)
e2e_line=$(tail -1 target/e2e-output.txt)
e2e_passed=$(echo "$e2e_line" | grep -Eo "^[0-9]+ passed" | grep -Eo "[0-9]+" || echo 0)
e2e_failed=$(echo "$e2e_line" | grep -Eo "[0-9]+ failed" | grep -Eo "[0-9]+" || echo 1)
total_passed=$((passed + ${ui_passed:-0} + e2e_passed))
total_failed=$((failed + e2e_failed))
[ "$e2e" -eq 0 ] || [ "$total_failed" -gt 0 ] || total_failed=1
echo "tests: $total_passed passed, $total_failed failed"
[ "$status" -eq 0 ] && [ "$e2e" -eq 0 ]
