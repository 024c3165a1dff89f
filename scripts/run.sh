#!/usr/bin/env bash
# Sets up, builds and starts the Ferry desktop app. Environment variables as for the CLI
# (FERRY_DATA_DIR, FERRY_NAME, FERRY_DEST, FERRY_NO_DISCOVERY, FERRY_LISTEN, FERRY_CONNECT).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm --prefix ui run build --silent
cargo build --release --locked -p ferry-desktop -p ferry-cli
exec ./target/release/ferry-desktop "$@"
