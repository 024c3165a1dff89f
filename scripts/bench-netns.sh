#!/usr/bin/env bash
# End-to-end benchmark across two network namespaces joined by a veth pair (like two hosts on
# one link), in one run: the link's TCP limit (iperf3), bare QUIC with Ferry's transport setup,
# Ferry for one 1 GiB file and for 10,000 x 4 KiB files, scp and rsync over ssh for the same
# workloads, and Ferry and bare QUIC again through 20 ms RTT + 1 % loss. Prints a table of
# MB/s or files/s, ratios to the link's limit, and Ferry's peak RSS per side.
#
# Root only (it makes namespaces); it sends nothing outside the namespaces it creates, and
# removes them at the end. This kernel has no netem, so the impaired link is a userspace UDP
# proxy (ferry-bench __impair) in the sender's namespace: it can impair QUIC but not TCP, so
# scp and rsync are measured on the clean link only.
#
#   scripts/bench-netns.sh [--quick]      (--quick: 256 MiB and 2,000 files)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench-netns: run as root (it creates network namespaces)" >&2; exit 1; }

big_mib=1024
files=10000
[ "${1:-}" = "--quick" ] && { big_mib=256; files=2000; }

need=()
for p in iperf3 openssh-server openssh-client rsync time; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
  echo "bench-netns: installing ${need[*]}"
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release --locked -q -p ferry-cli -p ferry-bench
ferry="$PWD/target/release/ferry"
bench="$PWD/target/release/ferry-bench"

A=ferrybench-a
B=ferrybench-b
IPA=10.77.0.1
IPB=10.77.0.2
work=$(mktemp -d /tmp/ferry-netns-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  ip netns pids "$B" 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns pids "$A" 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns del "$A" 2>/dev/null || true
  ip netns del "$B" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns del "$A" 2>/dev/null || true
ip netns del "$B" 2>/dev/null || true
ip netns add "$A"
ip netns add "$B"
ip link add fbv-a type veth peer name fbv-b
ip link set fbv-a netns "$A"
ip link set fbv-b netns "$B"
ip -n "$A" addr add "$IPA/24" dev fbv-a
ip -n "$B" addr add "$IPB/24" dev fbv-b
for ns in "$A" "$B"; do ip -n "$ns" link set lo up; done
ip -n "$A" link set fbv-a up
ip -n "$B" link set fbv-b up
inA() { ip netns exec "$A" "$@"; }
inB() { ip netns exec "$B" "$@"; }

echo "bench-netns: making the data (${big_mib} MiB file, ${files} x 4 KiB files) in $work"
head -c "$((big_mib << 20))" /dev/urandom >"$work/big.bin"
mkdir -p "$work/small"
python3 - "$work/small" "$files" <<'EOF'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    sub = os.path.join(d, f"d{i // 1000}")
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, f"f{i}.bin"), "wb") as f:
        f.write(os.urandom(4096))
EOF
big_bytes=$((big_mib << 20))
small_bytes=$((files * 4096))

rows=()
row() { rows+=("$(printf '%-44s %12s %-8s %s' "$1" "$2" "$3" "$4")"); echo "  $1: $2 $3 $4"; }
now() { date +%s.%N; }
rate() { python3 -c "import sys; print(f'{float(sys.argv[1]) / 1e6 / float(sys.argv[2]):.1f}')" "$1" "$2"; }
ratio() { python3 -c "import sys; print(f'{100 * float(sys.argv[1]) / float(sys.argv[2]):.0f} %')" "$1" "$2"; }
sync_drop() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }

echo "== the link's limits"
inB iperf3 -s -1 -B "$IPB" >/dev/null 2>&1 &
pids+=($!)
sleep 0.5
tcp=$(inA iperf3 -c "$IPB" -t 5 -J | python3 -c "import json,sys; print(f\"{json.load(sys.stdin)['end']['sum_received']['bits_per_second'] / 8e6:.1f}\")")
row "TCP (iperf3, 5 s)" "$tcp" "MB/s" "the link's limit"

quic_run() { # $1: address the sender dials (the server or a proxy in front of it); prints MB/s
  local port_file="$work/quic-port"
  inB "$bench" __quic-server --listen "$IPB:47500" >"$port_file" 2>/dev/null &
  pids+=($!)
  sleep 0.5
  inA "$bench" __quic-send "$1" "$big_bytes" | awk '{print $1}'
}
quic=$(quic_run "$IPB:47500")
row "bare QUIC, 1 stream, Ferry's setup" "$quic" "MB/s" "$(ratio "$quic" "$tcp") of TCP"

ferry_run() { # $1: label, $2: path to send, $3: bytes, $4: files (for files/s), $5: dial address
  local dest="$work/down-$RANDOM"
  inB /usr/bin/time -f "%M" -o "$work/rss-b" "$ferry" --no-discovery --listen "$IPB:47000" --data-dir "$work/fb" \
    --dest "$dest" --yes --json receive --once >/dev/null 2>&1 &
  local rpid=$!
  pids+=($rpid)
  sleep 0.7
  sync_drop
  local t0 t1
  t0=$(now)
  inA /usr/bin/time -f "%M" -o "$work/rss-a" "$ferry" --no-discovery --listen "$IPA:0" --data-dir "$work/fa" \
    --json send "$5" "$2" >"$work/send.log" 2>&1 || { echo "ferry send failed:"; tail -3 "$work/send.log"; }
  t1=$(now)
  wait "$rpid" 2>/dev/null || true
  local secs
  secs=$(python3 -c "print(float('$t1') - float('$t0'))")
  local mbps
  mbps=$(rate "$3" "$secs")
  local rss="sender $(($(cat "$work/rss-a") / 1024)) MiB, receiver $(($(cat "$work/rss-b") / 1024)) MiB peak RSS"
  if [ "$4" -gt 1 ]; then
    row "$1" "$(python3 -c "print(f'{$4 / $secs:.0f}')")" "files/s" "$mbps MB/s; $rss"
  else
    row "$1" "$mbps" "MB/s" "$(ratio "$mbps" "$tcp") of TCP; $rss"
  fi
  rm -rf "$dest"
}

echo "== Ferry (two real processes, process start to verified exit)"
ferry_run "Ferry, 1 file, verified" "$work/big.bin" "$big_bytes" 1 "$IPB:47000"
ferry_run "Ferry, $files x 4 KiB, verified" "$work/small" "$small_bytes" "$files" "$IPB:47000"

echo "== scp and rsync over ssh (the everyday alternative)"
mkdir -p "$work/ssh" /run/sshd
ssh-keygen -q -t ed25519 -N "" -f "$work/ssh/host" </dev/null
ssh-keygen -q -t ed25519 -N "" -f "$work/ssh/id" </dev/null
cp "$work/ssh/id.pub" "$work/ssh/authorized_keys"
cat >"$work/ssh/sshd_config" <<EOF
ListenAddress $IPB
Port 2222
HostKey $work/ssh/host
AuthorizedKeysFile $work/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
UsePAM no
StrictModes no
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
inB /usr/sbin/sshd -f "$work/ssh/sshd_config" -D -e 2>/dev/null &
pids+=($!)
sleep 0.7
ssh_opts="-i $work/ssh/id -p 2222 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
timed() { # $1 label, $2 bytes, $3 files, then the command
  local label=$1 bytes=$2 nfiles=$3
  shift 3
  sync_drop
  local t0 t1
  t0=$(now)
  if ! "$@" >/dev/null 2>&1; then
    row "$label" "failed" "" ""
    return
  fi
  t1=$(now)
  local secs
  secs=$(python3 -c "print(float('$t1') - float('$t0'))")
  local mbps
  mbps=$(rate "$bytes" "$secs")
  if [ "$nfiles" -gt 1 ]; then
    row "$label" "$(python3 -c "print(f'{$nfiles / $secs:.0f}')")" "files/s" "$mbps MB/s"
  else
    row "$label" "$mbps" "MB/s" "$(ratio "$mbps" "$tcp") of TCP"
  fi
}
mkdir -p "$work/scp-down" "$work/rsync-down"
timed "scp, 1 file" "$big_bytes" 1 inA scp -q ${ssh_opts/-p 2222/-P 2222} "$work/big.bin" "root@$IPB:$work/scp-down/"
timed "scp -r, $files x 4 KiB" "$small_bytes" "$files" inA scp -q -r ${ssh_opts/-p 2222/-P 2222} "$work/small" "root@$IPB:$work/scp-down/"
timed "rsync -a, 1 file" "$big_bytes" 1 inA rsync -a -e "ssh $ssh_opts" "$work/big.bin" "root@$IPB:$work/rsync-down/"
timed "rsync -a, $files x 4 KiB" "$small_bytes" "$files" inA rsync -a -e "ssh $ssh_opts" "$work/small/" "root@$IPB:$work/rsync-down/small/"

echo "== 20 ms RTT + 1 % loss (userspace proxy in the sender's namespace; QUIC only)"
inA "$bench" __impair "$IPA:47600" "$IPB:47000" --delay-ms 10 --loss 0.01 >/dev/null 2>&1 &
pids+=($!)
inA "$bench" __impair "$IPA:47601" "$IPB:47500" --delay-ms 10 --loss 0.01 >/dev/null 2>&1 &
pids+=($!)
sleep 0.5
qimp=$(quic_run "$IPA:47601")
row "bare QUIC, 20 ms RTT + 1 % loss" "$qimp" "MB/s" "$(ratio "$qimp" "$quic") of clean QUIC"
ferry_run "Ferry, 1 file, 20 ms RTT + 1 % loss" "$work/big.bin" "$big_bytes" 1 "$IPA:47600"
ferry_run "Ferry, $files x 4 KiB, 20 ms RTT + 1 % loss" "$work/small" "$small_bytes" "$files" "$IPA:47600"

echo
echo "two namespaces over veth, $(nproc) cores; ${big_mib} MiB file, ${files} x 4 KiB files; release build"
printf '%-44s %12s %-8s %s\n' "workload" "figure" "unit" "against"
printf '%s\n' "${rows[@]}"
