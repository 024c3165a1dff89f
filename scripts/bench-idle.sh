#!/usr/bin/env bash
# Idle cost of a node: two `ferry node`s with discovery ON, connected to each other, inside a
# network namespace this script creates (so mDNS never reaches real interfaces). Prints CPU
# time and memory of one node over a quiet period. Needs root. Usage: scripts/bench-idle.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
cargo build --release --locked -p ferry-cli -q
ns="fybench$$"
ip netns add "$ns"
d=$(mktemp -d)
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; ip netns del "$ns" 2>/dev/null || true; rm -rf "$d"; }
trap cleanup EXIT
ip -n "$ns" link set lo up
pids=()
for n in a b; do
  ip netns exec "$ns" ./target/release/ferry --data-dir "$d/$n" --name "$n" node < /dev/null > "$d/$n.out" 2>&1 &
  pids+=($!)
done
sleep 3
grep -q '^+ ' "$d/a.out" || { echo "nodes did not find each other"; cat "$d"/*.out; exit 1; }
pid=${pids[0]}
tick=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
c0=$(cpu); t0=$(date +%s.%N)
sleep "$secs"
c1=$(cpu); t1=$(date +%s.%N)
awk -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v hz="$tick" 'BEGIN {
  printf "idle node (discovery on, one peer connected): CPU %.3f%% of one core over %.0f s\n", 100*(c1-c0)/hz/(t1-t0), t1-t0 }'
grep -E "VmRSS|VmHWM|Threads" "/proc/$pid/status" | tr -s ' \t' ' ' | paste -sd ',' | sed 's/^/idle node memory: /'
