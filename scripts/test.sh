#!/usr/bin/env bash
# Sets up and runs every test. Discovery tests build their own network namespaces, which needs
# root (CI runs as root); run without root they say SKIPPED, except under CI where they fail.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests"
mkdir -p target
# --nocapture: each test prints what it measured (latencies, handshake time, ...).
set +e
cargo test --workspace --locked -- --nocapture 2>&1 | tee target/test-output.txt
status=${PIPESTATUS[0]}
set -e
passed=$(grep -Eo "test result: [a-zA-Z]+\. [0-9]+ passed" target/test-output.txt | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo "; [0-9]+ failed" target/test-output.txt | awk '{s+=$2} END {print s+0}')
echo "tests: $passed passed, $failed failed"
exit "$status"
