#!/usr/bin/env bash
# End-to-end benchmark across two network namespaces (like two hosts), over several links, in
# one run. For each link profile it runs the selected tools on the selected workloads and, at
# the end, prints one table per profile: MB/s or files/s, the ratio to the link's limit and to
# the best other tool on the same workload, CPU seconds and peak RSS of each side.
#
# Profiles (PROFILES, in this order by default; "router" is extra):
#   clean    veth, nothing in the way                     limit: TCP (iperf3) on it
#   tbf1g    veth with tbf at 1 Gbit/s on both ends        limit: 125 MB/s
#   router   the router (below), no impairment            limit: the router's TCP ceiling
#   lossy20  router: 20 ms RTT, 1 % loss each way          limit: the router's TCP ceiling
#   lossy50  router: 50 ms RTT, 0.5 % loss each way        limit: the router's TCP ceiling
#   rtt50    router: 50 ms RTT, no loss, tbf 1 Gbit/s      limit: 125 MB/s
#   wifi     router: 5 ms RTT, 0.5 % loss, tbf 300 Mbit/s  limit: 37.5 MB/s
# The router (`ferry-bench router`, crates/ferry-bench/src/router.rs) runs in a third namespace
# and joins the two hosts through a TUN device in each (MTU 1500, point to point): every packet
# between them, TCP or UDP, goes through it and gets the profile's delay and loss. tbf, where a
# profile has a rate, is on the TUNs' egress (the veth's in tbf1g), both ways. This kernel has
# no netem; the older UDP impairment proxy (ferry-bench __impair) is no longer used here. Before
# the first router profile the run measures the router's own ceiling (no delay, no loss): TCP
# (iperf3) at TUN MTU 1500, 9000 and 65000, and bare QUIC at 1500, with the router's CPU.
#
# Tools (TOOLS; all by default):
#   quic      bare QUIC, one stream, Ferry's transport setup (ferry-bench __quic-send), memory
#             to memory: the big workload only
#   tcp       plain TCP with socat, disk to disk: the file, or a folder as a tar stream
#   scp, rsync  over ssh (rsync -a; scp is SFTP underneath, OpenSSH's default)
#   syncthing, wormhole, sendme   the peer tools, kept off the internet (below)
#   ferry     `ferry send` to `ferry receive --yes --once`, process start to verified exit
#   ferry3    three `ferry send`s of the big file at once to one `ferry receive` (the big
#             workload only): each one's MB/s and the spread max/min (fairness target: 1.20)
# Every profile also measures TCP with iperf3 (5 s, memory to memory) first: the "link" row.
# Workloads (WORKLOADS): big (one file), small (4 KiB files), many (10 MiB files). Sizes per
# profile: 1 GiB, 10,000 and 100 on clean, tbf1g and router; on the lossy ones (lossy20,
# lossy50) 128 MiB, 1,000 and 12, as TCP tools crawl there; rtt50 1 GiB, 1,000 and 100 (scp
# pays round trips per file); wifi 256 MiB, 2,000 and 25. Every table says its sizes.
# BIG_MIB, SMALL_N and MANY_N override them for every profile; --quick divides them by 4, 5, 5.
# A transfer still running after RUN_TIMEOUT seconds (default 900) is stopped and says so.
# BENCH_DIR is where the data goes (default /dev/shm, tmpfs; /tmp for the VM's disk).
#
#   scripts/bench-netns.sh [--quick]
#   PROFILES="clean lossy20" TOOLS="ferry quic scp" WORKLOADS="big small" scripts/bench-netns.sh
#
# FERRY_CONGESTION passes through to every ferry and bare-QUIC process (the run prints the
# controller it selects); TCP_CC sets the TCP congestion control in both namespaces (default:
# the kernel's default, printed: it is bbr on the development VM, and CUBIC crawls at 1 % loss).
# Timing: page cache dropped before each transfer; CPU seconds are user + system from
# /usr/bin/time (the tool and its children) or from /proc for daemons; "snd/rcv".
#   scp/rsync receiver: the sshd serving the connection and its children (sshd's crypto
#     included); its RSS is the sftp-server's or rsync's (wrapped with /usr/bin/time).
#   Syncthing: each daemon's CPU during the transfer and VmHWM (reset before each workload).
#   magic-wormhole: the two clients only (its mailbox server and relay run beside the receiver).
#
# Root only (it makes namespaces); it sends nothing outside the namespaces it creates, and
# removes them after each profile and at the end.
#
# Peer tools. Every one runs inside the two namespaces (ip netns exec), where the only routes
# are the link and the namespace's own loopback, and each is pointed at nothing public:
#   - Syncthing (Debian's package): a daemon per namespace, each with its own --home in the
#     temp dir and its REST API on its namespace's loopback; global and local discovery,
#     relays, NAT traversal, STUN, usage and crash reporting and upgrades are off, and the
#     sender is given the receiver's explicit tcp://IP:22000 (the receiver does not dial: two
#     dials crossing on a delayed link fail, see st_start). Both daemons are started and
#     connected first (startup is not timed). The clock starts when the folder is added on the
#     sending side (which starts its scan; the receiver already has the folder, receive-only,
#     shared with the sender) and stops when the receiver's /rest/db/status shows all the files
#     known, none needed and the folder idle, and all of them are on disk with the right total
#     size; the receiver's event stream is long-polled so that this is checked as soon as the
#     folder's state changes (and at least once a second).
#   - magic-wormhole: client, mailbox server and transit relay from PyPI, in a venv (Debian
#     12's client is 0.12 from 2020; the servers are not packaged). The mailbox server and the
#     transit relay run in the receiver's namespace and both clients are given --relay-url and
#     --transit-helper for them, never the public defaults. The receiver is started first with
#     a fixed code; timed from the sender's start to both exits. A folder goes as a zip, which
#     the sender builds and the receiver unpacks, both inside the timed span.
#   - sendme (iroh, `cargo install`): --relay disabled and an addresses-only ticket, the sender
#     bound to its namespace address, so the ticket carries that direct address and nothing
#     else. Timed from the sender's start (it imports, i.e. hashes, the data into its store
#     before it prints the ticket) to the receiver's exit (after it exported the files).
#   - LocalSend is not measured: it has no command-line client (GUI only).
# Every copy but Ferry's (which verifies itself, BLAKE3 end to end) and bare QUIC's is compared
# with the source (cmp, diff -r) after the clock stopped.
# Missing tools are installed under $FERRY_BENCH_TOOLS (default /var/tmp/ferry-bench-tools):
# syncthing with apt, magic-wormhole with pip into a venv there, sendme with `cargo install`
# (a large build the first time: several minutes on 2 cores). A tool that cannot be installed
# or fails gets a row saying so, and the run goes on.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench-netns: run as root (it creates network namespaces)" >&2; exit 1; }
# One run at a time on a machine: two would share (and delete) each other's namespaces. The
# lock file holds the running script's pid (a lock fd would be inherited by the daemons).
lock=/run/lock/ferry-bench-netns.pid
while ! (set -o noclobber; echo $$ >"$lock") 2>/dev/null; do
  other=$(cat "$lock" 2>/dev/null || true)
  if [ -n "$other" ] && kill -0 "$other" 2>/dev/null; then
    echo "bench-netns: waiting for another run (pid $other) to end" >&2
    sleep 10
  else
    rm -f "$lock"
  fi
done

quick=0
[ "${1:-}" = "--quick" ] && quick=1
all_profiles="clean tbf1g router lossy20 lossy50 rtt50 wifi"
all_tools="quic tcp scp rsync syncthing wormhole sendme ferry ferry3"
all_workloads="big small many"
profiles=${PROFILES:-clean tbf1g lossy20 lossy50 rtt50 wifi}
sel_tools=" ${TOOLS:-$all_tools} "
workloads=${WORKLOADS:-$all_workloads}
run_timeout=${RUN_TIMEOUT:-900}
for p in $profiles; do [[ " $all_profiles " == *" $p "* ]] || { echo "bench-netns: unknown profile '$p' (one of: $all_profiles)" >&2; exit 1; }; done
for t in $sel_tools; do [[ " $all_tools " == *" $t "* ]] || { echo "bench-netns: unknown tool '$t' (one of: $all_tools)" >&2; exit 1; }; done
for w in $workloads; do [[ " $all_workloads " == *" $w "* ]] || { echo "bench-netns: unknown workload '$w' (one of: $all_workloads)" >&2; exit 1; }; done
want() { [[ "$sel_tools" == *" $1 "* ]]; }

# Profile: link (veth or tun), one-way delay ms, loss, tbf rate Mbit/s (0: none), sizes
# (big MiB, number of 4 KiB files, number of 10 MiB files), what it stands for.
declare -A P_LINK P_DELAY P_LOSS P_RATE P_BIG P_SMALL P_MANY P_DESC
prof() { P_LINK[$1]=$2 P_DELAY[$1]=$3 P_LOSS[$1]=$4 P_RATE[$1]=$5 P_BIG[$1]=$6 P_SMALL[$1]=$7 P_MANY[$1]=$8 P_DESC[$1]=$9; }
prof clean veth 0 0 0 1024 10000 100 "veth, nothing in the way"
prof tbf1g veth 0 0 1000 1024 10000 100 "veth with tbf 1 Gbit/s"
prof router tun 0 0 0 1024 10000 100 "through the router, no impairment"
prof lossy20 tun 10 0.01 0 128 1000 12 "router: 20 ms RTT + 1 % loss"
prof lossy50 tun 25 0.005 0 128 1000 12 "router: 50 ms RTT + 0.5 % loss"
prof rtt50 tun 25 0 1000 1024 1000 100 "router: 50 ms RTT, no loss, tbf 1 Gbit/s"
prof wifi tun 2.5 0.005 300 256 2000 25 "Wi-Fi-like: router 5 ms RTT + 0.5 % loss, tbf 300 Mbit/s"

tools=${FERRY_BENCH_TOOLS:-/var/tmp/ferry-bench-tools}
wormhole_pins=(magic-wormhole==0.24.0 magic-wormhole-mailbox-server==0.8.0 magic-wormhole-transit-relay==0.5.0)
sendme_version=0.37.1
declare -A skip=() # peer tool -> why it is not measured
mkdir -p "$tools"

need=()
for p in iperf3 socat openssh-server openssh-client rsync time; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
opt=() # the peer tools' packages: the run goes on without them
want syncthing && ! command -v syncthing >/dev/null && opt+=(syncthing)
want wormhole && ! python3 -c "import ensurepip, venv" 2>/dev/null && opt+=(python3-venv)
if ((${#need[@]} + ${#opt[@]})); then
  echo "bench-netns: installing ${need[*]} ${opt[*]}"
  apt-get -o DPkg::Lock::Timeout=600 update -qq
fi
if ((${#need[@]})); then
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need[@]}" >/dev/null
fi
if ((${#opt[@]})); then
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${opt[@]}" \
    >"$tools/apt.log" 2>&1 || echo "bench-netns: apt-get install ${opt[*]} failed (see $tools/apt.log)"
fi
command -v syncthing >/dev/null || skip[syncthing]="not installed: apt-get install syncthing failed ($tools/apt.log)"

wh="$tools/wormhole-venv"
if want wormhole && [ "$(cat "$wh/.pins" 2>/dev/null)" != "${wormhole_pins[*]}" ]; then
  echo "bench-netns: installing ${wormhole_pins[*]} into $wh"
  rm -rf "$wh"
  if python3 -m venv "$wh" >"$tools/pip.log" 2>&1 &&
    "$wh/bin/pip" install -q "${wormhole_pins[@]}" >>"$tools/pip.log" 2>&1; then
    echo "${wormhole_pins[*]}" >"$wh/.pins"
  else
    skip[wormhole]="not installed: venv or pip install failed ($tools/pip.log)"
  fi
fi

sendme="$tools/bin/sendme"
if want sendme && ! "$sendme" --version 2>/dev/null | grep -qF " $sendme_version"; then
  echo "bench-netns: building sendme $sendme_version with cargo install into $tools (minutes)"
  (cd "$tools" && cargo install sendme --locked --version "$sendme_version" --root "$tools") \
    >"$tools/cargo-install.log" 2>&1 ||
    skip[sendme]="not installed: cargo install sendme failed ($tools/cargo-install.log)"
fi

cargo build --release --locked -q -p ferry-cli -p ferry-bench
ferry="$PWD/target/release/ferry"
bench="$PWD/target/release/ferry-bench"
ferry_cc=$("$bench" __congestion)
tcp_cc=${TCP_CC:-$(sysctl -n net.ipv4.tcp_congestion_control)}
clk_tck=$(getconf CLK_TCK)

A=ferrybench-a
B=ferrybench-b
R=ferrybench-r
IPA=10.77.0.1
IPB=10.77.0.2
# Data in tmpfs by default (BENCH_DIR to change it): the figures are the transfer's, not the
# VM's shared disk's. Ferry makes every file durable (syncfs) before it reports done and
# measures that; on a disk the other tools, which never sync, get that time for free.
bench_dir=${BENCH_DIR:-/dev/shm}
[ -d "$bench_dir" ] || bench_dir=/tmp
work=$(mktemp -d "$bench_dir/ferry-netns-bench.XXXXXX")
results="$work/results.tsv"
: >"$results"
pids=()        # everything started in the background, stopped at the end
profile_pids=() # what a profile started (servers, daemons), stopped when its link goes down
router_pid=""
kill_tree() { # $1 and all its descendants
  local c
  for c in $(pgrep -P "$1" || true); do kill_tree "$c"; done
  kill "$1" 2>/dev/null || true
}
drop_namespaces() {
  local ns
  for ns in "$A" "$B" "$R"; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
}
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  drop_namespaces
  rm -rf "$work"
  [ "$(cat "$lock" 2>/dev/null)" = $$ ] && rm -f "$lock"
}
trap cleanup EXIT
drop_namespaces
inA() { ip netns exec "$A" "$@"; }
inB() { ip netns exec "$B" "$@"; }
now() { date +%s.%N; }
secs_between() { python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$1" "$2"; }
sync_drop() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
# /usr/bin/time in front of a command, then the file to write: its last line is then
# "cpu USER SYS MAXRSS_KIB" (an array, not a function: it goes after ip netns exec and timeout).
TM=(/usr/bin/time -f "cpu %U %S %M" -o)
tcpu() { awk '/^cpu / {c = sprintf("%.2f", $2 + $3)} END {print c == "" ? "-" : c}' "$1" 2>/dev/null || echo -; }
trss() { awk '/^cpu / {m = int($4 / 1024)} END {print m == "" ? "-" : m}' "$1" 2>/dev/null || echo -; }
# CPU seconds a running process and the children it has waited for have used.
pcpu() { awk -v t="$clk_tck" '{printf "%.2f", ($14 + $15 + $16 + $17) / t}' "/proc/$1/stat" 2>/dev/null || echo 0; }
udp_gain() { # $1 "B/A" from before: prints the drops since, "B/A"
  echo "$(($(udp_drops "$B") - ${1%/*}))/$(($(udp_drops "$A") - ${1#*/}))"
}
udp_drops() { # $1 namespace: UDP datagrams its sockets dropped for want of buffer, so far
  # shellcheck disable=SC2016 # awk's own $
  ip netns exec "$1" awk '/^Udp:/ {if (!c) {for (i = 1; i <= NF; i++) if ($i == "RcvbufErrors") c = i} else print $c}' /proc/net/snmp
}
minus() { python3 -c "import sys; print(f'{float(sys.argv[1]) - float(sys.argv[2]):.2f}')" "$1" "$2"; }

# One result: tool workload bytes files seconds cpu_snd cpu_rcv rss_snd rss_rcv note. seconds
# "-" is a failure (the note says why). Tables are made from these at the end.
profile=""
rec() {
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$profile" "$@" >>"$results"
  local fig=""
  [ "$5" != "-" ] && fig=$(python3 -c "import sys; b, n, s = map(float, sys.argv[1:4]); print(f'{n / s:.0f} files/s, {b / 1e6 / s:.1f} MB/s' if sys.argv[4] == 'small' else f'{b / 1e6 / s:.1f} MB/s')" "$3" "$4" "$5" "$2")
  echo "  [$profile] $1 $2: ${fig:-failed} ${10}"
}
fail() { rec "$1" "$2" 0 0 - - - - - "$3"; } # tool workload why
verify() { # $1 source, $2 the copy: same bytes? (run after the clock stopped)
  if [ -d "$1" ]; then diff -rq -x .stfolder "$1" "$2" >/dev/null 2>&1; else cmp -s "$1" "$2"; fi
}
port_up() { # $1 ip, $2 port: waits (from the sender's namespace) up to 20 s until it accepts
  inA python3 -c '
import socket, sys, time
end = time.time() + 20
while time.time() < end:
    try:
        socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)' "$1" "$2"
}

# --- the data, made once per size when a profile first needs it
mkdir -p "$work/data"
data_big() { # $1 MiB; prints the path
  local f="$work/data/big-$1M.bin"
  [ -f "$f" ] || head -c "$(($1 << 20))" /dev/urandom >"$f"
  echo "$f"
}
data_files() { # $1 count, $2 size KiB; prints the path of a folder of $1 random files
  local d="$work/data/files-$1x$2K"
  [ -d "$d" ] || python3 - "$d.tmp" "$1" "$2" <<'EOF'
import os, sys
d, n, kib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    sub = os.path.join(d, f"d{i // 1000}")
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, f"f{i}.bin"), "wb") as f:
        f.write(os.urandom(kib * 1024))
EOF
  [ -d "$d" ] || mv "$d.tmp" "$d"
  echo "$d"
}
scale() { # $1 figure, $2 divisor under --quick
  if ((quick)); then echo $(($1 / $2 > 0 ? $1 / $2 : 1)); else echo "$1"; fi
}

# --- the link of a profile
tbf_on() { # $1 namespace, $2 device, $3 rate Mbit/s, $4 one-way delay ms: tbf with a buffer
  # of one bandwidth-delay product (at least 20 ms of the rate) and a burst of 4 ms of it
  local burst latency
  burst=$(python3 -c "import sys; print(max(int(float(sys.argv[1]) * 1e6 / 8 / 250), 65536))" "$3")
  latency=$(python3 -c "import sys; print(max(20, int(2 * float(sys.argv[1]))))" "$4")
  tc -n "$1" qdisc replace dev "$2" root tbf rate "${3}mbit" burst "$burst" latency "${latency}ms"
}
link_up() { # $1 profile, $2 TUN MTU (router profiles; default 1500), $3 "clean": the router
  # without the profile's delay and loss
  local p=$1 mtu=${2:-1500} ns i
  drop_namespaces
  ip netns add "$A"
  ip netns add "$B"
  for ns in "$A" "$B"; do
    ip -n "$ns" link set lo up
    ip netns exec "$ns" sysctl -q -w net.ipv4.tcp_congestion_control="$tcp_cc"
  done
  if [ "${P_LINK[$p]}" = veth ]; then
    ip link del fbv-a 2>/dev/null || true # left in the root namespace by a run cut short
    ip link add fbv-a type veth peer name fbv-b
    ip link set fbv-a netns "$A"
    ip link set fbv-b netns "$B"
    ip -n "$A" addr add "$IPA/24" dev fbv-a
    ip -n "$B" addr add "$IPB/24" dev fbv-b
    ip -n "$A" link set fbv-a up
    ip -n "$B" link set fbv-b up
    if [ "${P_RATE[$p]}" != 0 ]; then
      tbf_on "$A" fbv-a "${P_RATE[$p]}" 0
      tbf_on "$B" fbv-b "${P_RATE[$p]}" 0
    fi
  else
    # A point-to-point TUN in each host; the router (in R) attaches to both by name.
    ip netns add "$R"
    ip -n "$R" link set lo up
    for i in a b; do
      ns=$A && [ $i = b ] && ns=$B
      ip -n "$ns" tuntap add dev "fbt-$i" mode tun
      ip -n "$ns" link set "fbt-$i" mtu "$mtu" txqueuelen 50000 up
    done
    ip -n "$A" addr add "$IPA" peer "$IPB" dev fbt-a
    ip -n "$B" addr add "$IPB" peer "$IPA" dev fbt-b
    if [ "${P_RATE[$p]}" != 0 ]; then
      tbf_on "$A" fbt-a "${P_RATE[$p]}" "${P_DELAY[$p]}"
      tbf_on "$B" fbt-b "${P_RATE[$p]}" "${P_DELAY[$p]}"
    fi
    local delay=${P_DELAY[$p]} loss=${P_LOSS[$p]}
    [ "${3:-}" = clean ] && delay=0 loss=0
    ip netns exec "$R" "$bench" router --a "$A:fbt-a" --b "$B:fbt-b" --delay-ms "$delay" --loss "$loss" \
      >"$work/router.log" 2>&1 &
    router_pid=$!
    pids+=("$router_pid")
    for i in $(seq 50); do grep -q '^router:' "$work/router.log" && break; sleep 0.1; done
    inA ping -c 1 -W 3 "$IPB" >/dev/null || { echo "bench-netns: no path through the router:" >&2; cat "$work/router.log" >&2; exit 1; }
  fi
}
link_down() { # stops what the profile started and the router (printing its counters), drops the namespaces
  local p d
  for p in "${profile_pids[@]}"; do kill_tree "$p"; done
  for p in "${profile_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  profile_pids=()
  if [ -n "$router_pid" ]; then
    d=$(ip -n "$A" -s link show fbt-a | awk '/TX:/ {getline; print $4}')/$(ip -n "$B" -s link show fbt-b | awk '/TX:/ {getline; print $4}')
    kill -INT "$router_pid" 2>/dev/null || true
    wait "$router_pid" 2>/dev/null || true
    router_pid=""
    grep -E '^router: .* -> ' "$work/router.log" | sed 's/^/  /' || true
    echo "  kernel drops on the TUNs' way to the router (TX dropped a/b): $d"
    echo "$d" >"$work/tun-drops"
  fi
  drop_namespaces
}

# --- TCP with iperf3, memory to memory: the "link" row of each profile, and the ceiling
iperf_run() { # $1 tool label, $2 workload label; sets iperf_mbps
  local rc0 rc1 note bytes secs retr
  inB timeout 60 "${TM[@]}" "$work/t-b" iperf3 -s -1 -B "$IPB" >/dev/null 2>&1 &
  local spid=$!
  sleep 0.5
  rc0=$( [ -n "$router_pid" ] && pcpu "$router_pid" || echo 0)
  if ! inA timeout 60 "${TM[@]}" "$work/t-a" iperf3 -c "$IPB" -t 5 -J >"$work/iperf.json" 2>/dev/null; then
    wait "$spid" 2>/dev/null || true
    fail "$1" "$2" "iperf3 failed"
    iperf_mbps=""
    return
  fi
  wait "$spid" 2>/dev/null || true
  rc1=$( [ -n "$router_pid" ] && pcpu "$router_pid" || echo 0)
  read -r bytes secs retr < <(python3 -c "
import json, sys
e = json.load(open(sys.argv[1]))['end']
print(e['sum_received']['bytes'], e['sum_received']['seconds'], e['sum_sent'].get('retransmits', 0))" "$work/iperf.json")
  iperf_mbps=$(python3 -c "import sys; print(f'{float(sys.argv[1]) / 1e6 / float(sys.argv[2]):.1f}')" "$bytes" "$secs")
  note="iperf3 5 s, memory to memory, TCP $tcp_cc; $retr retransmits"
  [ -n "$router_pid" ] && note+="; router CPU $(minus "$rc1" "$rc0") s"
  rec "$1" "$2" "$bytes" 1 "$secs" "$(tcpu "$work/t-a")" "$(tcpu "$work/t-b")" "$(trss "$work/t-a")" "$(trss "$work/t-b")" "$note"
}

# --- bare QUIC, Ferry's transport setup, memory to memory
quic_run() { # $1 bytes, $2 tool label (default quic)
  local out mbps secs rc0 rc1 note
  inB timeout "$run_timeout" "${TM[@]}" "$work/t-b" "$bench" __quic-server --listen "$IPB:47500" >"$work/quic-srv.log" 2>&1 &
  local spid=$!
  sleep 0.5
  rc0=$( [ -n "$router_pid" ] && pcpu "$router_pid" || echo 0)
  local u0 u1
  u0=$(udp_drops "$B")
  if ! out=$(inA timeout "$run_timeout" "${TM[@]}" "$work/t-a" "$bench" __quic-send "$IPB:47500" "$1" 2>&1); then
    kill_tree "$spid"
    wait "$spid" 2>/dev/null || true
    fail "${2:-quic}" big "$(tail -1 <<<"$out")"
    return
  fi
  wait "$spid" 2>/dev/null || true
  rc1=$( [ -n "$router_pid" ] && pcpu "$router_pid" || echo 0)
  mbps=$(awk '{print $1; exit}' <<<"$out")
  secs=$(python3 -c "import sys; print(float(sys.argv[1]) / 1e6 / float(sys.argv[2]))" "$1" "$mbps")
  u1=$(udp_drops "$B")
  note="memory to memory, $ferry_cc; $(grep -o '[0-9]* packets lost' <<<"$out" || true) ($((u1 - u0)) at the receiver's full UDP buffer)"
  [ -n "$router_pid" ] && note+="; router CPU $(minus "$rc1" "$rc0") s"
  rec "${2:-quic}" big "$1" 1 "$secs" "$(tcpu "$work/t-a")" "$(tcpu "$work/t-b")" "$(trss "$work/t-a")" "$(trss "$work/t-b")" "$note"
}

# --- plain TCP: socat, a file as it is, a folder as a tar stream; disk to disk
tcp_run() { # $1 workload, $2 path, $3 bytes, $4 files
  local dest="$work/tcp-down" t0 t1 rpid note=""
  rm -rf "$dest"
  mkdir -p "$dest"
  sync_drop
  if [ -d "$2" ]; then
    inB timeout "$run_timeout" "${TM[@]}" "$work/t-b" sh -c "socat -u TCP-LISTEN:5001,bind=$IPB,reuseaddr - | tar x -C '$dest'" 2>/dev/null &
    rpid=$!
    sleep 0.3
    t0=$(now)
    inA timeout "$run_timeout" "${TM[@]}" "$work/t-a" sh -c "tar c -C '$2' . | socat -u - TCP:$IPB:5001,retry=50,interval=0.1" 2>/dev/null || note="sender failed"
  else
    inB timeout "$run_timeout" "${TM[@]}" "$work/t-b" socat -u "TCP-LISTEN:5001,bind=$IPB,reuseaddr" "CREATE:$dest/$(basename "$2")" 2>/dev/null &
    rpid=$!
    sleep 0.3
    t0=$(now)
    inA timeout "$run_timeout" "${TM[@]}" "$work/t-a" socat -u "OPEN:$2" "TCP:$IPB:5001,retry=50,interval=0.1" 2>/dev/null || note="sender failed"
  fi
  wait "$rpid" || note="${note:-receiver failed}"
  t1=$(now)
  if [ -n "$note" ]; then fail tcp "$1" "socat: $note (or stopped after $run_timeout s)"; return; fi
  if [ -d "$2" ]; then verify "$2" "$dest"; else verify "$2" "$dest/$(basename "$2")"; fi || note="WRONG DATA in the copy; "
  rec tcp "$1" "$3" "$4" "$(secs_between "$t0" "$t1")" "$(tcpu "$work/t-a")" "$(tcpu "$work/t-b")" \
    "$(trss "$work/t-a")" "$(trss "$work/t-b")" "${note}socat (a folder: tar | socat), TCP $tcp_cc"
  rm -rf "$dest"
}

# --- scp and rsync over ssh
mkdir -p "$work/ssh" /run/sshd
ssh-keygen -q -t ed25519 -N "" -f "$work/ssh/host" </dev/null
ssh-keygen -q -t ed25519 -N "" -f "$work/ssh/id" </dev/null
cp "$work/ssh/id.pub" "$work/ssh/authorized_keys"
for w in sftp-server rsync; do # the server side's programs, with their peak RSS and CPU
  bin=/usr/lib/openssh/sftp-server && [ $w = rsync ] && bin=rsync
  printf '#!/bin/sh\nexec /usr/bin/time -f "cpu %%U %%S %%M" -o %s %s "$@"\n' "$work/t-srv" "$bin" >"$work/ssh/$w-wrap"
  chmod +x "$work/ssh/$w-wrap"
done
cat >"$work/ssh/sshd_config" <<EOF
ListenAddress $IPB
Port 2222
HostKey $work/ssh/host
AuthorizedKeysFile $work/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
UsePAM no
StrictModes no
Subsystem sftp $work/ssh/sftp-server-wrap
EOF
ssh_opts="-i $work/ssh/id -p 2222 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
sshd_pid=""
sshd_start() {
  ip netns exec "$B" /usr/sbin/sshd -f "$work/ssh/sshd_config" -D -e 2>>"$work/sshd.log" &
  sshd_pid=$!
  profile_pids+=("$sshd_pid")
  port_up "$IPB" 2222
}
ssh_run() { # $1 scp|rsync, $2 workload, $3 path, $4 bytes, $5 files
  local dest="$work/ssh-down" t0 t1 c0 c1 ok=1 copy note="receiver: sshd and"
  rm -rf "$dest" "$work/t-srv"
  mkdir -p "$dest"
  sync_drop
  c0=$(pcpu "$sshd_pid")
  t0=$(now)
  # shellcheck disable=SC2086 # $ssh_opts is meant to split
  if [ "$1" = scp ]; then
    inA timeout "$run_timeout" "${TM[@]}" "$work/t-a" scp -q -r ${ssh_opts/-p 2222/-P 2222} "$3" "root@$IPB:$dest/" >/dev/null 2>&1 || ok=0
    copy="$dest/$(basename "$3")"
    note+=" sftp-server"
  elif [ -d "$3" ]; then
    inA timeout "$run_timeout" "${TM[@]}" "$work/t-a" rsync -a -e "ssh $ssh_opts" --rsync-path="$work/ssh/rsync-wrap" \
      "$3/" "root@$IPB:$dest/copy/" >/dev/null 2>&1 || ok=0
    copy="$dest/copy"
    note+=" rsync"
  else
    inA timeout "$run_timeout" "${TM[@]}" "$work/t-a" rsync -a -e "ssh $ssh_opts" --rsync-path="$work/ssh/rsync-wrap" \
      "$3" "root@$IPB:$dest/" >/dev/null 2>&1 || ok=0
    copy="$dest/$(basename "$3")"
    note+=" rsync"
  fi
  t1=$(now)
  if ((!ok)); then fail "$1" "$2" "failed (or stopped after $run_timeout s)"; return; fi
  sleep 0.5 # sshd reaps the connection's processes: their CPU then counts in its own
  c1=$(pcpu "$sshd_pid")
  verify "$3" "$copy" || note="WRONG DATA in the copy; $note"
  rec "$1" "$2" "$4" "$5" "$(secs_between "$t0" "$t1")" "$(tcpu "$work/t-a")" "$(minus "$c1" "$c0")" \
    "$(trss "$work/t-a")" "$(trss "$work/t-srv")" "$note (RSS: the latter)"
  rm -rf "$dest"
}
cat >"$work/st.py" <<'EOF'
# Syncthing helper for bench-netns.sh: every call runs inside one namespace and talks only to
# that namespace's own Syncthing, on its loopback.
import json, os, sys, time, urllib.request
import xml.etree.ElementTree as ET

API = "http://127.0.0.1:8384"
KEY = "ferry-bench-netns"
port = 22000


def call(method, path, body=None, timeout=30):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(API + path, data=data, method=method,
                                 headers={"X-API-Key": KEY, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        raw = r.read()
    return json.loads(raw) if raw.strip() else None


def configure(home, own_ip, peer_id, peer_ip):
    """Rewrites a generated config: no discovery, relays, NAT, STUN, reporting or upgrades;
    the peer at its explicit address; the REST API on this namespace's loopback."""
    path = os.path.join(home, "config.xml")
    tree = ET.parse(path)
    root = tree.getroot()
    gui = root.find("gui")
    gui.find("address").text = "127.0.0.1:8384"
    gui.find("apikey").text = KEY
    opts = root.find("options")
    for k, v in {"listenAddress": f"tcp://{own_ip}:{port}", "globalAnnounceServer": "",
                 "globalAnnounceEnabled": "false", "localAnnounceEnabled": "false",
                 "relaysEnabled": "false", "natEnabled": "false", "urAccepted": "-1",
                 "urURL": "", "autoUpgradeIntervalH": "0", "releasesURL": "",
                 "startBrowser": "false", "crashReportingEnabled": "false",
                 "crashReportingURL": "", "stunKeepaliveStartS": "0", "stunServer": "",
                 "announceLANAddresses": "false", "restartOnWakeup": "false",
                 "reconnectionIntervalS": "5",
                 # the default lowers its own CPU priority; the others here run at normal priority
                 "setLowPriority": "false"}.items():
        for el in opts.findall(k):
            opts.remove(el)
        ET.SubElement(opts, k).text = v
    dev = ET.Element("device", id=peer_id, name="peer", compression="metadata",
                     introducer="false", skipIntroductionRemovals="false", introducedBy="")
    ET.SubElement(dev, "address").text = "dynamic" if peer_ip == "dynamic" else f"tcp://{peer_ip}:{port}"
    ET.SubElement(dev, "autoAcceptFolders").text = "false"
    root.insert(list(root).index(gui), dev)
    tree.write(path)


def wait_connected(peer_id, limit=60):
    end = time.time() + limit
    while time.time() < end:
        try:
            if call("GET", "/rest/system/connections")["connections"].get(peer_id, {}).get("connected"):
                return
        except Exception:
            pass
        time.sleep(0.2)
    sys.exit("syncthing: the two daemons did not connect")


def add_folder(fid, path, kind, own_id, peer_id):
    """Adds the folder shared with the peer; prints the time just before the request."""
    body = {"id": fid, "label": fid, "path": path, "type": kind,
            "devices": [{"deviceID": own_id}, {"deviceID": peer_id}],
            "rescanIntervalS": 3600, "fsWatcherEnabled": False}
    t = time.time()
    call("POST", "/rest/config/folders", body)
    print(f"{t:.6f}")


def on_disk(path, nfiles, nbytes):
    n = b = 0
    for d, dirs, files in os.walk(path):
        dirs[:] = [x for x in dirs if x != ".stfolder"]
        for f in files:
            n += 1
            b += os.path.getsize(os.path.join(d, f))
    return n == nfiles and b == nbytes


def wait_complete(fid, path, nfiles, nbytes, limit):
    """Prints the time at which the receiver knows all nfiles, needs none, is idle, and has
    them all on disk with the right total size."""
    since = 0
    end = time.time() + limit
    while time.time() < end:
        try:
            ev = call("GET", f"/rest/events?since={since}&timeout=1"
                      "&events=StateChanged,FolderSummary,FolderErrors", timeout=10)
            since = ev[-1]["id"] if ev else since
            s = call("GET", f"/rest/db/status?folder={fid}")
        except Exception:
            time.sleep(0.1)
            continue
        if (s["globalFiles"] == nfiles and s["needFiles"] == 0 and s["needBytes"] == 0
                and s["state"] == "idle" and on_disk(path, nfiles, nbytes)):
            print(f"{time.time():.6f}")
            return
    sys.exit(f"syncthing: {fid} not complete after {limit} s")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "configure":
        configure(*args)
    elif cmd == "wait-connected":
        wait_connected(args[0])
    elif cmd == "add-folder":
        add_folder(*args)
    elif cmd == "remove-folder":
        call("DELETE", f"/rest/config/folders/{args[0]}")
    elif cmd == "wait-complete":
        wait_complete(args[0], args[1], int(args[2]), int(args[3]), float(args[4]))
EOF
leaf() { # $1 a pid started; prints the last of its line of descendants: the tool below the
  # subshell, timeout and time (for Syncthing: the process that does the work, below its monitor)
  local p=$1 c
  while c=$(pgrep -P "$p" | head -1) && [ -n "$c" ]; do p=$c; done
  echo "$p"
}
st_hwm() { awk '/^VmHWM/ {print int($2 / 1024)}' "/proc/$1/status" 2>/dev/null || echo "-"; }
st_start() { # starts and connects the profile's two daemons; sets st_a, st_b (pids), id_a, id_b
  local ha="$work/st-a-$profile" hb="$work/st-b-$profile"
  inA syncthing generate --home="$ha" --no-default-folder --skip-port-probing >"$work/st-gen.log" 2>&1 || return 1
  inB syncthing generate --home="$hb" --no-default-folder --skip-port-probing >>"$work/st-gen.log" 2>&1 || return 1
  id_a=$(inA syncthing serve --home="$ha" --device-id) || return 1
  id_b=$(inB syncthing serve --home="$hb" --device-id) || return 1
  python3 "$work/st.py" configure "$ha" "$IPA" "$id_b" "$IPB" || return 1
  # Only the sender dials: two dials crossing on a delayed link are a TCP simultaneous open,
  # one connection on which both ends play TLS client and fail, again at each retry (the two
  # daemons' retry schedules are the same).
  python3 "$work/st.py" configure "$hb" "$IPB" "$id_a" dynamic || return 1
  inA env STNOUPGRADE=1 syncthing serve --home="$ha" --no-browser --no-restart --no-upgrade >"$work/st-a.log" 2>&1 &
  st_a=$!
  inB env STNOUPGRADE=1 syncthing serve --home="$hb" --no-browser --no-restart --no-upgrade >"$work/st-b.log" 2>&1 &
  st_b=$!
  profile_pids+=("$st_a" "$st_b")
  if ! (cd "$work" && inA python3 st.py wait-connected "$id_b"); then
    tail -n 5 "$work/st-a.log" "$work/st-b.log" | sed 's/^/  syncthing: /'
    return 1
  fi
}
st_run() { # $1 workload, $2 path, $3 bytes, $4 files
  local fid="$1-$RANDOM" src dest da db t0 t1 wpid note ca cb
  src="$work/st-src-$fid" dest="$work/st-dst-$fid"
  mkdir -p "$src" "$dest"
  if [ -d "$2" ]; then cp -al "$2/." "$src/"; else ln "$2" "$src/"; fi # Syncthing adds .stfolder
  (cd "$work" && inB python3 st.py add-folder "$fid" "$dest" receiveonly "$id_b" "$id_a" >/dev/null)
  da=$(leaf "$st_a")
  db=$(leaf "$st_b")
  echo 5 >"/proc/$da/clear_refs" 2>/dev/null || true # resets the peak RSS
  echo 5 >"/proc/$db/clear_refs" 2>/dev/null || true
  sync_drop
  (cd "$work" && inB python3 st.py wait-complete "$fid" "$dest" "$4" "$3" "$run_timeout" >"$work/st-done") &
  wpid=$!
  sleep 1
  ca=$(pcpu "$da")
  cb=$(pcpu "$db")
  t0=$(cd "$work" && inA python3 st.py add-folder "$fid" "$src" sendonly "$id_a" "$id_b")
  if ! wait "$wpid"; then
    fail syncthing "$1" "not in sync within $run_timeout s"
  else
    t1=$(cat "$work/st-done")
    note="daemons' CPU and VmHWM"
    if [ -d "$2" ]; then verify "$2" "$dest"; else verify "$2" "$dest/$(basename "$2")"; fi ||
      note="WRONG DATA in the copy; $note"
    rec syncthing "$1" "$3" "$4" "$(secs_between "$t0" "$t1")" "$(minus "$(pcpu "$da")" "$ca")" \
      "$(minus "$(pcpu "$db")" "$cb")" "$(st_hwm "$da")" "$(st_hwm "$db")" "$note"
  fi
  (cd "$work" && inA python3 st.py remove-folder "$fid"; inB python3 st.py remove-folder "$fid") >/dev/null 2>&1 || true
  rm -rf "$src" "$dest"
}

# --- magic-wormhole, with its own mailbox server and transit relay in the receiver's namespace
wh_start() {
  mkdir -p "$work/wh"
  inB "$wh/bin/twist" wormhole-mailbox --port="tcp:4000:interface=$IPB" \
    --channel-db="$work/wh/mailbox-$profile.sqlite" >"$work/wh/mailbox.log" 2>&1 &
  profile_pids+=($!)
  inB "$wh/bin/twist" transitrelay --port="tcp:4001:interface=$IPB" >"$work/wh/relay.log" 2>&1 &
  profile_pids+=($!)
  port_up "$IPB" 4000 && port_up "$IPB" 4001
}
wh_run() { # $1 workload, $2 path, $3 bytes, $4 files
  local dest="$work/wh-down" code="7-ferry-bench-$RANDOM" rpid t0 t1 how note
  local cli=("$wh/bin/wormhole" --relay-url "ws://$IPB:4000/v1" --transit-helper "tcp:$IPB:4001")
  rm -rf "$dest"
  sync_drop
  inB timeout "$run_timeout" "${TM[@]}" "$work/t-b" "${cli[@]}" receive --accept-file --hide-progress \
    -o "$dest" "$code" >"$work/wh-recv.log" 2>&1 &
  rpid=$!
  sleep 1.5
  t0=$(now)
  if ! inA timeout "$run_timeout" "${TM[@]}" "$work/t-a" "${cli[@]}" send --hide-progress --no-qr \
    --code "$code" "$2" >"$work/wh-send.log" 2>&1; then
    wait "$rpid" 2>/dev/null || true
    fail wormhole "$1" "sender: $(grep -v '^cpu ' "$work/wh-send.log" | tail -1)"
    return
  fi
  if ! wait "$rpid"; then
    fail wormhole "$1" "receiver: $(grep -v '^cpu ' "$work/wh-recv.log" | tail -1)"
    return
  fi
  t1=$(now)
  how="direct"
  grep -q 'Receiving (->relay' "$work/wh-recv.log" && how="through our transit relay"
  note="$how; the two clients"
  verify "$2" "$dest" || note="WRONG DATA in the copy; $note"
  rec wormhole "$1" "$3" "$4" "$(secs_between "$t0" "$t1")" "$(tcpu "$work/t-a")" "$(tcpu "$work/t-b")" \
    "$(trss "$work/t-a")" "$(trss "$work/t-b")" "$note"
  rm -rf "$dest"
}

# --- sendme (iroh), relays disabled, a ticket with the sender's direct address only
sendme_run() { # $1 workload, $2 path, $3 bytes, $4 files
  local home_a="$work/sendme-a" dest="$work/sendme-b" spid t0 t1 note ticket=""
  rm -rf "$home_a" "$dest"
  mkdir -p "$home_a" "$dest"
  sync_drop
  t0=$(now)
  # a fresh port each time: a sender still shutting down keeps its own
  (cd "$home_a" && exec ip netns exec "$A" timeout "$run_timeout" /usr/bin/time -f "cpu %U %S %M" -o "$work/t-a" \
    "$sendme" send --relay disabled --ticket-type addresses --magic-ipv4-addr "$IPA:$((47700 + RANDOM % 1000))" \
    --no-progress "$2") >"$work/sendme-send.log" 2>&1 &
  spid=$!
  while [ -z "$ticket" ] && kill -0 "$spid" 2>/dev/null; do
    ticket=$(awk '/^sendme receive / {print $3}' "$work/sendme-send.log")
    [ -n "$ticket" ] || sleep 0.02
  done
  if [ -z "$ticket" ]; then
    fail sendme "$1" "sender: $(tail -1 "$work/sendme-send.log")"
    return
  fi
  if ! (cd "$dest" && exec ip netns exec "$B" timeout "$run_timeout" /usr/bin/time -f "cpu %U %S %M" -o "$work/t-b" \
    "$sendme" receive --relay disabled --no-progress "$ticket") >"$work/sendme-recv.log" 2>&1; then
    kill_tree "$spid"
    wait "$spid" 2>/dev/null || true
    fail sendme "$1" "receiver: $(grep -v '^cpu ' "$work/sendme-recv.log" | tail -1)"
    return
  fi
  t1=$(now)
  # the sender serves until Ctrl-C: SIGINT to sendme itself, below ip netns exec's timeout and time
  kill -INT "$(leaf "$spid")" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$spid" 2>/dev/null || break; sleep 0.1; done
  kill_tree "$spid"
  wait "$spid" 2>/dev/null || true
  note="sender's CPU includes its import (hashing) into its store"
  verify "$2" "$dest/$(basename "$2")" || note="WRONG DATA in the copy; $note"
  rec sendme "$1" "$3" "$4" "$(secs_between "$t0" "$t1")" "$(tcpu "$work/t-a")" "$(tcpu "$work/t-b")" \
    "$(trss "$work/t-a")" "$(trss "$work/t-b")" "$note"
  rm -rf "$home_a" "$dest"
}

# --- Ferry: two real processes, process start to verified exit
ferry_opts=(--no-discovery --no-localsend)
ferry_run() { # $1 workload, $2 path, $3 bytes, $4 files
  local dest="$work/ferry-down" rpid t0 t1 ok=1
  rm -rf "$dest"
  inB timeout "$run_timeout" "${TM[@]}" "$work/t-b" "$ferry" "${ferry_opts[@]}" --listen "$IPB:47000" --data-dir "$work/fb" \
    --dest "$dest" --yes --json receive --once >"$work/ferry-recv.log" 2>&1 &
  rpid=$!
  sleep 0.7
  sync_drop
  local u0
  u0=$(udp_drops "$B")/$(udp_drops "$A")
  t0=$(now)
  inA timeout "$run_timeout" "${TM[@]}" "$work/t-a" "$ferry" "${ferry_opts[@]}" --listen "$IPA:0" --data-dir "$work/fa" \
    --json send "$IPB:47000" "$2" >"$work/ferry-send.log" 2>&1 || ok=0
  t1=$(now)
  wait "$rpid" 2>/dev/null || ok=0
  if ((!ok)); then
    fail ferry "$1" "$(grep -v '^cpu ' "$work/ferry-send.log" | tail -1 | cut -c1-200)"
  else
    rec ferry "$1" "$3" "$4" "$(secs_between "$t0" "$t1")" "$(tcpu "$work/t-a")" "$(tcpu "$work/t-b")" \
      "$(trss "$work/t-a")" "$(trss "$work/t-b")" "verified by Ferry; $ferry_cc; $(udp_gain "$u0") datagrams dropped at full UDP buffers (rcv/snd)"
  fi
  rm -rf "$dest"
}
ferry3_run() { # $1 path of the big file, $2 its bytes: three senders at once to one receiver
  local dest="$work/ferry3-down" rpid t0 i ok=1 spids=() d
  rm -rf "$dest"
  for i in 1 2 3; do # three names for the same bytes: three files at the receiver
    d="$work/data/ferry3-$i"
    mkdir -p "$d"
    ln -f "$1" "$d/big-$i.bin"
  done
  inB timeout "$run_timeout" "${TM[@]}" "$work/t-b" "$ferry" "${ferry_opts[@]}" --listen "$IPB:47000" --data-dir "$work/fb" \
    --dest "$dest" --yes --json receive >"$work/ferry3-recv.log" 2>&1 &
  rpid=$!
  sleep 0.7
  sync_drop
  t0=$(now)
  for i in 1 2 3; do
    (inA timeout "$run_timeout" "${TM[@]}" "$work/t-a$i" "$ferry" "${ferry_opts[@]}" --listen "$IPA:0" --data-dir "$work/fa$i" \
      --json send "$IPB:47000" "$work/data/ferry3-$i/big-$i.bin" >"$work/ferry3-send$i.log" 2>&1 &&
      now >"$work/ferry3-end$i") &
    spids+=($!)
  done
  for i in 0 1 2; do wait "${spids[$i]}" || ok=0; done
  # the receiver runs until stopped: SIGINT to ferry itself (time ignores it and still reports)
  kill -INT "$(leaf "$rpid")" 2>/dev/null || true
  wait "$rpid" 2>/dev/null || true
  if ((!ok)); then
    fail ferry3 big "a sender failed: $(grep -hv '^cpu ' "$work"/ferry3-send*.log | tail -1 | cut -c1-200)"
  else
    local each spread secs cpu_a rss_a
    read -r each spread secs < <(python3 - "$2" "$t0" "$work"/ferry3-end{1,2,3} <<'EOF'
import sys
b, t0 = float(sys.argv[1]), float(sys.argv[2])
ends = [float(open(f).read()) for f in sys.argv[3:]]
r = [b / 1e6 / (e - t0) for e in ends]
print("/".join(f"{x:.1f}" for x in r), f"{max(r) / min(r):.2f}", max(ends) - t0)
EOF
    )
    cpu_a=$(python3 -c "import sys; print(f'{sum(float(x) for x in sys.argv[1:] if x != \"-\"):.2f}')" \
      "$(tcpu "$work/t-a1")" "$(tcpu "$work/t-a2")" "$(tcpu "$work/t-a3")")
    rss_a=$(printf '%s\n' "$(trss "$work/t-a1")" "$(trss "$work/t-a2")" "$(trss "$work/t-a3")" | sort -n | tail -1)
    rec ferry3 big "$((3 * $2))" 1 "$secs" "$cpu_a" "$(tcpu "$work/t-b")" "$rss_a" "$(trss "$work/t-b")" \
      "3 senders at once: each $each MB/s, spread max/min $spread (target <= 1.20); figure: all 3 / last end; CPU: 3 senders summed, RSS: the largest"
  fi
  rm -rf "$dest"
}

# --- one profile: its link, the link row, the servers, every workload with every tool
declare -A limit_mbps limit_what
router_tcp=""
run_profile() { # $1 profile
  local p=$1 wl path bytes files big small many
  profile=$p
  big=$(scale "${BIG_MIB:-${P_BIG[$p]}}" 4)
  small=$(scale "${SMALL_N:-${P_SMALL[$p]}}" 5)
  many=$(scale "${MANY_N:-${P_MANY[$p]}}" 5)
  echo "== $p: ${P_DESC[$p]} (load $(loadavg))"
  {
    echo "desc	${P_DESC[$p]}"
    echo "sizes	big $big MiB, small $small x 4 KiB, many $many x 10 MiB"
    echo "load_before	$(loadavg)"
  } >"$work/meta-$p"
  link_up "$p"
  iperf_run link tcp
  if [ "${P_RATE[$p]}" != 0 ]; then
    limit_mbps[$p]=$(python3 -c "import sys; print(float(sys.argv[1]) / 8)" "${P_RATE[$p]}")
    limit_what[$p]="tbf ${P_RATE[$p]} Mbit/s"
  elif [ "${P_LINK[$p]}" = tun ] && [ -n "$router_tcp" ]; then
    limit_mbps[$p]=$router_tcp
    limit_what[$p]="the router's TCP ceiling (iperf3, MTU 1500)"
  else
    limit_mbps[$p]=${iperf_mbps:-0}
    limit_what[$p]="TCP (iperf3) on this link"
  fi
  if want scp || want rsync; then sshd_start || echo "bench-netns: sshd did not start"; fi
  local st_ok=0 wh_ok=0
  if want syncthing && [ -z "${skip[syncthing]:-}" ]; then
    if st_start; then st_ok=1; else fail syncthing all "the daemons did not start or connect"; fi
  fi
  if want wormhole && [ -z "${skip[wormhole]:-}" ]; then
    if wh_start; then wh_ok=1; else fail wormhole all "our mailbox server or transit relay did not start"; fi
  fi
  for wl in $workloads; do
    case $wl in
      big) path=$(data_big "$big") files=1 bytes=$((big << 20)) ;;
      small) path=$(data_files "$small" 4) files=$small bytes=$((small * 4096)) ;;
      many) path=$(data_files "$many" 10240) files=$many bytes=$((many * 10 << 20)) ;;
    esac
    echo "-- $p, $wl"
    if want quic && [ "$wl" = big ]; then quic_run "$bytes"; fi
    if want tcp; then tcp_run "$wl" "$path" "$bytes" "$files"; fi
    if want scp; then ssh_run scp "$wl" "$path" "$bytes" "$files"; fi
    if want rsync; then ssh_run rsync "$wl" "$path" "$bytes" "$files"; fi
    if want syncthing; then
      if [ -n "${skip[syncthing]:-}" ]; then fail syncthing "$wl" "${skip[syncthing]}"; elif ((st_ok)); then st_run "$wl" "$path" "$bytes" "$files"; fi
    fi
    if want wormhole; then
      if [ -n "${skip[wormhole]:-}" ]; then fail wormhole "$wl" "${skip[wormhole]}"; elif ((wh_ok)); then wh_run "$wl" "$path" "$bytes" "$files"; fi
    fi
    if want sendme; then
      if [ -n "${skip[sendme]:-}" ]; then fail sendme "$wl" "${skip[sendme]}"; else sendme_run "$wl" "$path" "$bytes" "$files"; fi
    fi
    if want ferry; then ferry_run "$wl" "$path" "$bytes" "$files"; fi
    if want ferry3 && [ "$wl" = big ]; then ferry3_run "$path" "$bytes"; fi
  done
  rm -f "$work/tun-drops"
  link_down
  {
    echo "limit	${limit_mbps[$p]}	${limit_what[$p]}"
    echo "load_after	$(loadavg)"
    [ -f "$work/tun-drops" ] && echo "tun_drops	$(cat "$work/tun-drops")"
    grep -E '^router: .* -> ' "$work/router.log" 2>/dev/null | sed 's/^/router	/' || true
  } >>"$work/meta-$p"
}

# --- the router's own ceiling: no delay, no loss; TCP at three TUN MTUs, bare QUIC at 1500
router_ceiling() {
  local mtu
  profile=ceiling
  echo "== the router's ceiling (no delay, no loss; load $(loadavg))"
  echo "load_before	$(loadavg)" >"$work/meta-ceiling"
  for mtu in 1500 9000 65000; do
    link_up router "$mtu" clean
    iperf_run "tcp-mtu$mtu" link
    [ "$mtu" = 1500 ] && router_tcp=$iperf_mbps
    if [ "$mtu" = 1500 ] && want quic; then quic_run "$(($(scale 1024 4) << 20))" quic-mtu1500; fi
    link_down
    grep -E '^router: .* -> ' "$work/router.log" | sed "s/^/router	MTU $mtu: /" >>"$work/meta-ceiling" || true
    echo "router	MTU $mtu: kernel drops before the router (TUN TX dropped a/b): $(cat "$work/tun-drops")" >>"$work/meta-ceiling"
  done
  echo "load_after	$(loadavg)" >>"$work/meta-ceiling"
}

echo "bench-netns: profiles: $profiles; tools:$sel_tools; workloads: $workloads$( ((quick)) && echo "; --quick")"
echo "bench-netns: Ferry's congestion controller: $ferry_cc (FERRY_CONGESTION=${FERRY_CONGESTION:-unset}); TCP: $tcp_cc"
load_start=$(loadavg)
t_start=$(now)
for p in $profiles; do
  if [ "${P_LINK[$p]}" = tun ] && [ "${CEILING:-1}" != 0 ] && [ -z "$router_tcp" ]; then router_ceiling; fi
  run_profile "$p"
done

versions="ssh $(ssh -V 2>&1 | cut -d, -f1), rsync $(rsync --version | awk 'NR == 1 {print $3}'), socat $(socat -V | awk '/socat version/ {print $3}'), iperf3 $(iperf3 --version | awk 'NR == 1 {print $2}')"
want syncthing && versions+=", Syncthing $(syncthing --version 2>/dev/null | awk '{print $2}' || true)"
want wormhole && versions+=", $("$wh/bin/wormhole" --version 2>/dev/null || true)"
want sendme && versions+=", $("$sendme" --version 2>/dev/null || true)"

report="$tools/bench-netns-last.txt"
python3 - "$work" "$results" "$profiles" "$(nproc)" "$load_start" "$(loadavg)" "$(secs_between "$t_start" "$(now)")" \
  "$ferry_cc" "$tcp_cc" "$versions" <<'EOF' | tee "$report"
import os, sys

work, results, profiles, ncpu, load0, load1, secs, fcc, tcc, versions = sys.argv[1:]
rows = [l.rstrip("\n").split("\t") for l in open(results) if l.strip()]


def meta(p):
    m = {"router": []}
    path = os.path.join(work, f"meta-{p}")
    if os.path.exists(path):
        for l in open(path):
            k, _, v = l.rstrip("\n").partition("\t")
            if k == "router":
                m["router"].append(v)
            else:
                m[k] = v
    return m


def mbps(r):
    return float(r[3]) / 1e6 / float(r[5]) if r[5] != "-" else None


def fmt(x):
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}"


def table(p, rows, limit):
    head = ["tool", "workload", "figure", "MB/s", "of limit", "of best other", "CPU s snd/rcv",
            "RSS MiB snd/rcv", "note"]
    out = []
    for r in rows:
        _, tool, wl, b, n, s, ca, cb, ra, rb, note = r
        m = mbps(r)
        if m is None:
            out.append([tool, wl, "failed", "", "", "", "", "", note])
            continue
        n = int(n)
        fig = f"{n / float(s):.0f} files/s" if wl == "small" else f"{fmt(m)} MB/s"
        lim = f"{100 * m / limit:.0f} %" if limit else ""
        # the other tools on the same workload; not the baselines (iperf3, bare QUIC, both
        # memory to memory) nor Ferry's three at once
        baseline = lambda t: t in ("link", "quic", "ferry3") or "-mtu" in t
        others = [(mbps(o), o[1]) for o in rows
                  if o is not r and o[2] == wl and not baseline(o[1]) and mbps(o) is not None]
        best = ""
        if others and not baseline(tool):
            bm, bt = max(others)
            best = f"{100 * m / bm:.0f} % ({bt})"
        out.append([tool, wl, fig, fmt(m), lim, best, f"{ca}/{cb}", f"{ra}/{rb}", note])
    w = [max(len(x[i]) for x in out + [head]) for i in range(len(head) - 1)]
    line = lambda x: " | ".join(f"{c:<{w[i]}}" if i < len(w) else c for i, c in enumerate(x))
    print(line(head))
    print("-" * (sum(w) + 3 * len(w) + 20))
    for x in out:
        print(line(x))


print()
print(f"bench-netns: two network namespaces, {ncpu} cores, release build; {float(secs) / 60:.0f} min; "
      f"load average {load0} at the start, {load1} at the end")
print(f"Ferry and bare QUIC congestion controller: {fcc}; TCP congestion control: {tcc}; MB = 10^6 bytes")
for p in ["ceiling"] + profiles.split():
    pr = [r for r in rows if r[0] == p]
    if not pr:
        continue
    m = meta(p)
    print()
    if p == "ceiling":
        print("== the router's own ceiling: through the router with no delay and no loss, memory to memory")
        table(p, pr, None)
    else:
        lim = m.get("limit", "0\t").split("\t")
        print(f"== {p}: {m.get('desc', '')}; {m.get('sizes', '')}")
        print(f"   limit: {fmt(float(lim[0]))} MB/s, {lim[1]}")
        table(p, pr, float(lim[0]) or None)
    if "tun_drops" in m:
        print(f"   kernel drops before the router (TUN TX dropped a/b): {m['tun_drops']}")
    for l in m["router"]:
        print(f"   {l}")
    print(f"   load average before {m.get('load_before', '?')}, after {m.get('load_after', '?')}")
print()
print(f"versions: {versions}")
EOF
echo "(also in $report)"
