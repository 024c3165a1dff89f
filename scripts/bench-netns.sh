#!/usr/bin/env bash
# End-to-end benchmark across two network namespaces joined by a veth pair (like two hosts on
# one link), in one run: the link's TCP limit (iperf3), bare QUIC with Ferry's transport setup,
# Ferry for one 1 GiB file and for 10,000 x 4 KiB files, scp and rsync over ssh and the peer
# tools below for the same workloads, and Ferry and bare QUIC again through 20 ms RTT + 1 %
# loss. Prints a table of MB/s or files/s, ratios to the link's limit (and, for the peer tools,
# to Ferry), and peak RSS per side.
#
# Root only (it makes namespaces); it sends nothing outside the namespaces it creates, and
# removes them at the end. This kernel has no netem, so the impaired link is a userspace UDP
# proxy (ferry-bench __impair) in the sender's namespace: it can impair QUIC but not TCP, so
# scp, rsync and the peer tools are measured on the clean link only.
#
# Peer tools. Every one runs inside the two namespaces (ip netns exec), where the only routes
# are the veth link and the namespace's own loopback, and each is pointed at nothing public:
#   - Syncthing (Debian's package): a daemon per namespace, each with its own --home in the
#     temp dir and its REST API on its namespace's loopback; global and local discovery,
#     relays, NAT traversal, STUN, usage and crash reporting and upgrades are off, and each
#     device is given the other's explicit tcp://IP:22000. Both daemons are started and
#     connected first (startup is not timed). The clock starts when the folder is added on the
#     sending side (which starts its scan; the receiver already has the folder, receive-only,
#     shared with the sender) and stops when the receiver's /rest/db/status shows all the files
#     known, none needed and the folder idle, and all of them are on disk with the right total
#     size; the receiver's event stream is long-polled so that this is checked as soon as the
#     folder's state changes (and at least once a second). Peak RSS is the daemons' VmHWM,
#     reset before each workload.
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
# Every peer tool's copy is compared with the source (cmp, diff -r) after the clock stopped.
# Missing tools are installed under $FERRY_BENCH_TOOLS (default /var/tmp/ferry-bench-tools):
# syncthing with apt, magic-wormhole with pip into a venv there, sendme with `cargo install`
# (a large build the first time: several minutes on 2 cores). A tool that cannot be installed
# or fails gets a row saying so, and the run goes on.
#
#   scripts/bench-netns.sh [--quick]      (--quick: 256 MiB and 2,000 files)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench-netns: run as root (it creates network namespaces)" >&2; exit 1; }

big_mib=1024
files=10000
[ "${1:-}" = "--quick" ] && { big_mib=256; files=2000; }

tools=${FERRY_BENCH_TOOLS:-/var/tmp/ferry-bench-tools}
wormhole_pins=(magic-wormhole==0.24.0 magic-wormhole-mailbox-server==0.8.0 magic-wormhole-transit-relay==0.5.0)
sendme_version=0.37.1
declare -A skip=() # peer tool -> why it is not measured
mkdir -p "$tools"

need=()
for p in iperf3 openssh-server openssh-client rsync time; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
opt=() # the peer tools' packages: the run goes on without them
command -v syncthing >/dev/null || opt+=(syncthing)
python3 -c "import ensurepip, venv" 2>/dev/null || opt+=(python3-venv)
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
if [ "$(cat "$wh/.pins" 2>/dev/null)" != "${wormhole_pins[*]}" ]; then
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
if ! "$sendme" --version 2>/dev/null | grep -qF " $sendme_version"; then
  echo "bench-netns: building sendme $sendme_version with cargo install into $tools (minutes)"
  (cd "$tools" && cargo install sendme --locked --version "$sendme_version" --root "$tools") \
    >"$tools/cargo-install.log" 2>&1 ||
    skip[sendme]="not installed: cargo install sendme failed ($tools/cargo-install.log)"
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
  pids+=("$rpid")
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
    last_fig=$(python3 -c "print(f'{$4 / $secs:.0f}')")
    row "$1" "$last_fig" "files/s" "$mbps MB/s; $rss"
  else
    last_fig=$mbps
    row "$1" "$mbps" "MB/s" "$(ratio "$mbps" "$tcp") of TCP; $rss"
  fi
  rm -rf "$dest"
}

echo "== Ferry (two real processes, process start to verified exit)"
ferry_run "Ferry, 1 file, verified" "$work/big.bin" "$big_bytes" 1 "$IPB:47000"
ferry_big=$last_fig
ferry_run "Ferry, $files x 4 KiB, verified" "$work/small" "$small_bytes" "$files" "$IPB:47000"
ferry_small=$last_fig

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
# shellcheck disable=SC2086 # $ssh_opts is meant to split
timed "scp, 1 file" "$big_bytes" 1 inA scp -q ${ssh_opts/-p 2222/-P 2222} "$work/big.bin" "root@$IPB:$work/scp-down/"
# shellcheck disable=SC2086
timed "scp -r, $files x 4 KiB" "$small_bytes" "$files" inA scp -q -r ${ssh_opts/-p 2222/-P 2222} "$work/small" "root@$IPB:$work/scp-down/"
timed "rsync -a, 1 file" "$big_bytes" 1 inA rsync -a -e "ssh $ssh_opts" "$work/big.bin" "root@$IPB:$work/rsync-down/"
timed "rsync -a, $files x 4 KiB" "$small_bytes" "$files" inA rsync -a -e "ssh $ssh_opts" "$work/small/" "root@$IPB:$work/rsync-down/small/"
rm -rf "$work/scp-down" "$work/rsync-down"

echo "== peer tools on the same link (each inside the namespaces; how each is timed: see the header)"
peer_pids=() # what this section started, stopped at its end
verify() { # $1 source, $2 the copy: same bytes? (run after the clock stopped)
  if [ -d "$1" ]; then diff -rq -x .stfolder "$1" "$2" >/dev/null 2>&1; else cmp -s "$1" "$2"; fi
}
secs_between() { python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$1" "$2"; }
time_rss() { # $1: a file /usr/bin/time -f %M wrote (KiB on its last line); prints MiB
  local kib
  kib=$(tail -1 "$1" 2>/dev/null | tr -cd 0-9 || true)
  echo $((${kib:-0} / 1024))
}
peer_row() { # $1 label, $2 bytes, $3 files, $4 seconds, $5 Ferry's figure, $6 notes
  local mbps fig
  mbps=$(rate "$2" "$4")
  if [ "$3" -gt 1 ]; then
    fig=$(python3 -c "print(f'{$3 / $4:.0f}')")
    row "$1" "$fig" "files/s" "$mbps MB/s; $(ratio "$fig" "$5") of Ferry's; $6"
  else
    row "$1" "$mbps" "MB/s" "$(ratio "$mbps" "$tcp") of TCP, $(ratio "$mbps" "$5") of Ferry's; $6"
  fi
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

# --- Syncthing
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
    ET.SubElement(dev, "address").text = f"tcp://{peer_ip}:{port}"
    ET.SubElement(dev, "autoAcceptFolders").text = "false"
    root.insert(list(root).index(gui), dev)
    tree.write(path)


def wait_connected(peer_id, limit=30):
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
st_daemon() { # $1 the pid started; prints the last of its line of descendants: the Syncthing
  # process that does the work (below the subshell, ip netns exec's Syncthing is a monitor)
  local p=$1 c
  while c=$(pgrep -P "$p" | head -1) && [ -n "$c" ]; do p=$c; done
  echo "$p"
}
st_hwm() { awk '/^VmHWM/ {print int($2 / 1024)}' "/proc/$1/status" 2>/dev/null || echo "?"; }
st_start() { # starts and connects the two daemons; sets st_a, st_b (pids), id_a, id_b
  inA syncthing generate --home="$work/st-a" --no-default-folder --skip-port-probing >"$work/st-gen.log" 2>&1 || return 1
  inB syncthing generate --home="$work/st-b" --no-default-folder --skip-port-probing >>"$work/st-gen.log" 2>&1 || return 1
  id_a=$(inA syncthing serve --home="$work/st-a" --device-id) || return 1
  id_b=$(inB syncthing serve --home="$work/st-b" --device-id) || return 1
  python3 "$work/st.py" configure "$work/st-a" "$IPA" "$id_b" "$IPB" || return 1
  python3 "$work/st.py" configure "$work/st-b" "$IPB" "$id_a" "$IPA" || return 1
  inA env STNOUPGRADE=1 syncthing serve --home="$work/st-a" --no-browser --no-restart --no-upgrade >"$work/st-a.log" 2>&1 &
  st_a=$!
  inB env STNOUPGRADE=1 syncthing serve --home="$work/st-b" --no-browser --no-restart --no-upgrade >"$work/st-b.log" 2>&1 &
  st_b=$!
  pids+=("$st_a" "$st_b")
  peer_pids+=("$st_a" "$st_b")
  (cd "$work" && inA python3 st.py wait-connected "$id_b")
}
st_run() { # $1 label, $2 path, $3 bytes, $4 files, $5 Ferry's figure, $6 folder id
  local src="$work/st-src-$6" dest="$work/st-dst-$6" da db t0 t1 wpid note
  mkdir -p "$src" "$dest"
  if [ -d "$2" ]; then cp -al "$2/." "$src/"; else ln "$2" "$src/"; fi # Syncthing adds .stfolder
  (cd "$work" && inB python3 st.py add-folder "$6" "$dest" receiveonly "$id_b" "$id_a" >/dev/null)
  da=$(st_daemon "$st_a")
  db=$(st_daemon "$st_b")
  echo 5 >"/proc/$da/clear_refs" 2>/dev/null || true # resets the peak RSS
  echo 5 >"/proc/$db/clear_refs" 2>/dev/null || true
  sync_drop
  (cd "$work" && inB python3 st.py wait-complete "$6" "$dest" "$4" "$3" 1800 >"$work/st-done") &
  wpid=$!
  sleep 1
  t0=$(cd "$work" && inA python3 st.py add-folder "$6" "$src" sendonly "$id_a" "$id_b")
  if ! wait "$wpid"; then
    row "$1" "failed" "" "not in sync within 30 min (logs were in $work)"
  else
    t1=$(cat "$work/st-done")
    note="sender $(st_hwm "$da") MiB, receiver $(st_hwm "$db") MiB daemon peak RSS"
    if [ -d "$2" ]; then verify "$2" "$dest"; else verify "$2" "$dest/$(basename "$2")"; fi ||
      note="WRONG DATA in the copy; $note"
    peer_row "$1" "$3" "$4" "$(secs_between "$t0" "$t1")" "$5" "$note"
  fi
  (cd "$work" && inA python3 st.py remove-folder "$6"; inB python3 st.py remove-folder "$6") >/dev/null 2>&1 || true
  rm -rf "$src" "$dest"
}
if [ -n "${skip[syncthing]:-}" ]; then
  row "Syncthing" "skipped" "" "${skip[syncthing]}"
elif ! st_start; then
  row "Syncthing" "failed" "" "the daemons did not start or connect"
else
  st_run "Syncthing, 1 file" "$work/big.bin" "$big_bytes" 1 "$ferry_big" big
  st_run "Syncthing, $files x 4 KiB" "$work/small" "$small_bytes" "$files" "$ferry_small" small
fi

# --- magic-wormhole, with its own mailbox server and transit relay in the receiver's namespace
wh_run() { # $1 label, $2 path, $3 bytes, $4 files, $5 Ferry's figure
  local dest="$work/wh-down" code="7-ferry-bench-$RANDOM" rpid t0 t1 how note
  local cli=("$wh/bin/wormhole" --relay-url "ws://$IPB:4000/v1" --transit-helper "tcp:$IPB:4001")
  rm -rf "$dest"
  sync_drop
  inB timeout 1800 /usr/bin/time -f "%M" -o "$work/rss-b" "${cli[@]}" receive --accept-file --hide-progress \
    -o "$dest" "$code" >"$work/wh-recv.log" 2>&1 &
  rpid=$!
  pids+=("$rpid")
  sleep 1.5
  t0=$(now)
  if ! inA timeout 1800 /usr/bin/time -f "%M" -o "$work/rss-a" "${cli[@]}" send --hide-progress --no-qr \
    --code "$code" "$2" >"$work/wh-send.log" 2>&1; then
    wait "$rpid" 2>/dev/null || true
    row "$1" "failed" "" "sender: $(tail -1 "$work/wh-send.log")"
    return
  fi
  if ! wait "$rpid"; then
    row "$1" "failed" "" "receiver: $(tail -1 "$work/wh-recv.log")"
    return
  fi
  t1=$(now)
  how="direct"
  grep -q 'Receiving (->relay' "$work/wh-recv.log" && how="through our transit relay"
  note="$how; sender $(time_rss "$work/rss-a") MiB, receiver $(time_rss "$work/rss-b") MiB peak RSS"
  verify "$2" "$dest" || note="WRONG DATA in the copy; $note"
  peer_row "$1" "$3" "$4" "$(secs_between "$t0" "$t1")" "$5" "$note"
  rm -rf "$dest"
}
if [ -n "${skip[wormhole]:-}" ]; then
  row "magic-wormhole" "skipped" "" "${skip[wormhole]}"
else
  mkdir -p "$work/wh"
  inB "$wh/bin/twist" wormhole-mailbox --port="tcp:4000:interface=$IPB" \
    --channel-db="$work/wh/mailbox.sqlite" >"$work/wh/mailbox.log" 2>&1 &
  pids+=($!)
  peer_pids+=($!)
  inB "$wh/bin/twist" transitrelay --port="tcp:4001:interface=$IPB" >"$work/wh/relay.log" 2>&1 &
  pids+=($!)
  peer_pids+=($!)
  if port_up "$IPB" 4000 && port_up "$IPB" 4001; then
    wh_run "magic-wormhole, 1 file" "$work/big.bin" "$big_bytes" 1 "$ferry_big"
    wh_run "magic-wormhole, $files x 4 KiB" "$work/small" "$small_bytes" "$files" "$ferry_small"
  else
    row "magic-wormhole" "failed" "" "our mailbox server or transit relay did not start"
  fi
fi

# --- sendme (iroh), relays disabled, a ticket with the sender's direct address only
sendme_run() { # $1 label, $2 path, $3 bytes, $4 files, $5 Ferry's figure
  local home_a="$work/sendme-a" dest="$work/sendme-b" spid t0 t1 note ticket=""
  rm -rf "$home_a" "$dest"
  mkdir -p "$home_a" "$dest"
  sync_drop
  t0=$(now)
  (cd "$home_a" && exec ip netns exec "$A" timeout 1800 /usr/bin/time -f "%M" -o "$work/rss-a" \
    "$sendme" send --relay disabled --ticket-type addresses --magic-ipv4-addr "$IPA:47700" \
    --no-progress "$2") >"$work/sendme-send.log" 2>&1 &
  spid=$!
  pids+=("$spid")
  while [ -z "$ticket" ] && kill -0 "$spid" 2>/dev/null; do
    ticket=$(awk '/^sendme receive / {print $3}' "$work/sendme-send.log")
    [ -n "$ticket" ] || sleep 0.02
  done
  if [ -z "$ticket" ]; then
    row "$1" "failed" "" "sender: $(tail -1 "$work/sendme-send.log")"
    return
  fi
  if ! (cd "$dest" && exec ip netns exec "$B" timeout 1800 /usr/bin/time -f "%M" -o "$work/rss-b" \
    "$sendme" receive --relay disabled --no-progress "$ticket") >"$work/sendme-recv.log" 2>&1; then
    kill -INT "$spid" 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
    row "$1" "failed" "" "receiver: $(tail -1 "$work/sendme-recv.log")"
    return
  fi
  t1=$(now)
  kill -INT "$spid" 2>/dev/null || true # the sender serves until Ctrl-C
  wait "$spid" 2>/dev/null || true
  note="sender $(time_rss "$work/rss-a") MiB, receiver $(time_rss "$work/rss-b") MiB peak RSS"
  verify "$2" "$dest/$(basename "$2")" || note="WRONG DATA in the copy; $note"
  peer_row "$1" "$3" "$4" "$(secs_between "$t0" "$t1")" "$5" "$note"
  rm -rf "$home_a" "$dest"
}
if [ -n "${skip[sendme]:-}" ]; then
  row "sendme (iroh)" "skipped" "" "${skip[sendme]}"
else
  sendme_run "sendme (iroh), 1 file" "$work/big.bin" "$big_bytes" 1 "$ferry_big"
  sendme_run "sendme (iroh), $files x 4 KiB" "$work/small" "$small_bytes" "$files" "$ferry_small"
fi

row "LocalSend" "skipped" "" "no command-line client (GUI only); not scriptable here"

kill_tree() { # $1 and all its descendants
  local c
  for c in $(pgrep -P "$1" || true); do kill_tree "$c"; done
  kill "$1" 2>/dev/null || true
}
for p in "${peer_pids[@]}"; do kill_tree "$p"; done
for p in "${peer_pids[@]}"; do wait "$p" 2>/dev/null || true; done
versions="Syncthing $(syncthing --version 2>/dev/null | awk '{print $2}' || true), "
versions+="$("$wh/bin/wormhole" --version 2>/dev/null || true) with mailbox server and transit relay "
versions+="$("$wh/bin/pip" show magic-wormhole-mailbox-server 2>/dev/null | awk '/^Version/ {print $2}' || true)/"
versions+="$("$wh/bin/pip" show magic-wormhole-transit-relay 2>/dev/null | awk '/^Version/ {print $2}' || true), "
versions+="$("$sendme" --version 2>/dev/null || true)"

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
echo "peer tools: $versions"
