#!/usr/bin/env bash
# Sets up, builds and runs Ferry: for now the headless node (`ferry node`), which finds nearby
# devices over mDNS and prints them as they come and go. Extra arguments go to `ferry`, e.g.
#   scripts/run.sh --name laptop            scripts/run.sh --no-discovery --connect 192.168.1.20:7787
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked -p ferry-cli
exec ./target/release/ferry "$@" node
