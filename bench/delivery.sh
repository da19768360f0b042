#!/usr/bin/env bash
# Delivery at lab scale (issue 17, docs/delivery.md): N machines (1, 8, 32)
# updating v2 -> v3 at once from one server, in network namespaces on one
# bridge (tests/lab/delivery_lib.sh), each link limited by tc to RATE.
# Troy's whole path both ways: pxe/serve.sh (lighttpd) and troy update on
# each machine, over unicast HTTP (today) and with serve.sh --multicast
# (udpcast, then HTTP for what a machine missed). Prints, per N: the time
# until every machine holds v3 byte for byte, over the time for one machine,
# and the bytes the server's interface sent, over the bytes v3 changes.
#   sudo bench/delivery.sh [TROY] [DISK_MIB] [RATE] [COUNTS]
# Defaults: the lab model (docs/delivery.md, "What a 2-core host can show of
# a lab"): build/troy, a 128 MiB disk whose every piece v3 changes (52 MiB
# of 4 KiB units: 42 s on the wire at 10 Mbit/s, as a 5 GB change on a
# gigabit lab), every link 10mbit (a gigabit lab scaled down 100x, so that
# 32 machines' CPU -- verifying every piece, udp-receiver's packets -- fits
# in this machine's 2 cores as a lab's fits in each machine's own), "1 8 32"
# machines by multicast, "1 8" by HTTP (32 would take half an hour).
# CHANGES=N: v3 changes N scattered runs of 0.5-128 KiB (default 1024).
# HTTP_COUNTS: the machine counts of the HTTP runs (default "1 8").
# MODES=multicast: only the multicast runs (one HTTP machine is measured
# anyway: the delta's size).
# REPORTS=0: the machines send no report (troy update --no-report), to see
# what the server's report handling costs when the whole lab reports at once.
# The fixed costs' run (a small change, where one machine's time is its
# start, manifest and held check, 32 times on 2 cores here):
#   CHANGES=32 HTTP_COUNTS="1 8 32" bench/delivery.sh build/troy 64 100mbit
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TROY=$(realpath "${1:-$ROOT/build/troy}")
DISK_MIB=${2:-128}
RATE=${3:-10mbit}
[[ $RATE =~ ^[1-9][0-9]*mbit$ ]] || { echo "bench/delivery.sh: RATE '$RATE' is not NNmbit (e.g. 10mbit)" >&2; exit 1; }
COUNTS=${4:-1 8 32}
MODES=${MODES:-http multicast}   # MODES=multicast: only those runs (the HTTP delta size is measured anyway)
CHANGES=${CHANGES:-1024}
REPORT_OPTIONS=(); [ "${REPORTS:-1}" != 0 ] || REPORT_OPTIONS=(--no-report)
[ "$(id -u)" = 0 ] || { echo "bench/delivery.sh: needs root (network namespaces)" >&2; exit 1; }
for tool in ip tc udp-sender udp-receiver lighttpd openssl /usr/bin/time; do
  command -v $tool >/dev/null || { echo "bench/delivery.sh: $tool is missing (scripts/install-deps.sh)" >&2; exit 1; }
done
source "$ROOT/tests/lab/delivery_lib.sh"
WORK=$(mktemp -d /tmp/troy-bench-delivery.XXXXXX)
chmod 755 "$WORK"
SERVE_PID=
cleanup() {
  [ -z "$SERVE_PID" ] || kill "$SERVE_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  netns_down
  rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"

MiB=1048576
DISK_SIZE=$((DISK_MIB * MiB))
openssl genpkey -algorithm ed25519 -out lab.key 2>/dev/null
openssl pkey -in lab.key -pubout -out lab.pub
# v3 changes CHANGES scattered runs (0.5-128 KiB): by default about 40% of
# the 1 MiB pieces.
python3 "$ROOT/fixtures/make_lab_versions.py" "$DISK_MIB" "$CHANGES" >/dev/null
"$TROY" capture v1.raw base.vhdx 2>/dev/null
"$TROY" diff base.vhdx v2.raw -o v2.avhdx 2>/dev/null
"$TROY" diff v2.avhdx v3.raw -o v3.avhdx 2>/dev/null
SERVED=$WORK/served
mkdir -p "$SERVED/boot"
"$TROY" publish --dir "$SERVED" --key lab.key --name v1 --disk "size=$DISK_SIZE" base.vhdx 2>/dev/null
"$TROY" publish --dir "$SERVED" --key lab.key --name v2 v2.avhdx 2>/dev/null
"$TROY" publish --dir "$SERVED" --key lab.key --name v3 v3.avhdx 2>/dev/null
: > "$SERVED/boot/vmlinuz"
CHANGED=$(python3 - <<'PY'
a, b = open("v2.raw", "rb").read(), open("v3.raw", "rb").read()
print(sum(1 for i in range(0, len(a), 1 << 20) if a[i:i + (1 << 20)] != b[i:i + (1 << 20)]) << 20)
PY
)
# What a session carries: v3's 4 KiB units that differ from v2's.
UNITS=$(python3 - <<'PY'
a, b = open("v2.raw", "rb").read(), open("v3.raw", "rb").read()
print(sum(4096 for i in range(0, len(a), 4096) if a[i:i + 4096] != b[i:i + 4096]))
PY
)
# Busy and total jiffies of every core so far (/proc/stat): how much of
# the machine's CPU a run kept busy.
cpu_jiffies() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat; }
SERVER=http://$NETNS_SERVER_IP:8080

machine() {  # I: a sysfs, /dev/vda at v2
  rm -rf "m$1"
  mkdir -p "m$1/sys/block/vda" "m$1/sys/class/net/eth0" "m$1/dev"
  echo $((DISK_SIZE / 512)) > "m$1/sys/block/vda/size"
  printf '52:54:00:00:01:%02x\n' "$1" > "m$1/sys/class/net/eth0/address"
  echo up > "m$1/sys/class/net/eth0/operstate"
  cp v2.raw "m$1/dev/vda"
}

# run MODE N: prints "seconds server_bytes"
run() {
  local mode=$1 count=$2 i pids=() start end tx0 tx1 options=()
  netns_up "$count" "$RATE"
  rm -f m*.cpu m*.log
  for ((i = 1; i <= count; i++)); do machine "$i"; done
  # The copies' dirty pages written out now, not by the kernel's writeback
  # during the run (up to 32 x DISK_MIB): a lab's disks hold their bytes.
  sync
  # udpcast's cap just under the link rate: tbf drops what exceeds it.
  [ "$mode" = http ] || options=(--multicast eth0 --multicast-option
    "--min-receivers $count --min-wait 0 --max-wait 60 --receiver-wait 120 --max-bitrate $(( ${RATE%mbit} * 900 ))k")
  ip netns exec "$(netns_server)" bash "$ROOT/pxe/serve.sh" --served "$SERVED" --http-port 8080 --no-dhcp \
    --troy "$TROY" "${options[@]}" 2>serve.log &
  SERVE_PID=$!
  until ip netns exec "$(netns_receiver 1)" curl -sf -o /dev/null "$SERVER/manifest"; do sleep 0.1; done
  [ "$mode" = http ] || until [ -f "$SERVED/delivery" ]; do sleep 0.1; done
  # Every machine's processes are made first (ip netns exec costs tens of ms
  # per machine here, one after the other: 32 machines started 6 s apart
  # under load), then wait at the FIFO "go" and start together when the
  # clock starts, as a lab powering on at once. The harness is not timed.
  rm -f go ready.* && mkfifo go
  for ((i = 1; i <= count; i++)); do
    ip netns exec "$(netns_receiver "$i")" bash -c ': > "$1"; exec 3<go; exec 3<&-; shift; exec "$@"' _ "ready.$i" \
      /usr/bin/time -f "%U %S" -o "m$i.cpu" \
      "$TROY" update --server "$SERVER" --key lab.pub --sysfs "m$i/sys" \
      --dev "m$i/dev" --work "m$i/work" --yes "${REPORT_OPTIONS[@]}" >"m$i.log" 2>&1 &
    pids+=($!)
  done
  until [ "$(find . -maxdepth 1 -name 'ready.*' | wc -l)" -ge "$count" ]; do sleep 0.05; done
  tx0=$(netns_server_tx_bytes)
  read -r busy0 all0 < <(cpu_jiffies)
  start=$(date +%s.%N)
  exec 4>go  # every machine's open of the FIFO returns; one still on its way finds it open
  # Phases: until every machine listens for the session (its udp-receiver
  # started: each machine's start, manifest, held check); until every
  # machine's session ended (troy says "multicast: N of M pieces"); until
  # every troy ended (the flush, the final report: the server's CGI for each).
  local listening= received= alive
  if [ "$mode" != http ]; then
    until [ "$(grep -l "multicast session for" m*.log 2>/dev/null | wc -l)" -ge "$count" ]; do sleep 0.1; done
    listening=$(date +%s.%N)
    until [ "$(grep -l "multicast: .* pieces received" m*.log 2>/dev/null | wc -l)" -ge "$count" ]; do
      sleep 0.1
      alive=0
      for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1 && break; done
      [ "$alive" = 1 ] || break  # a machine whose session failed says another line
    done
    received=$(date +%s.%N)
  fi
  for pid in "${pids[@]}"; do wait "$pid" || { cat m1.log >&2; echo "bench/delivery.sh: an update failed" >&2; exit 1; }; done
  end=$(date +%s.%N)
  exec 4>&-
  [ -z "$listening" ] || echo "  $mode $count: all listening after $(echo "$listening - $start" | bc -l | cut -c1-5) s," \
    "all sessions ended $(echo "$received - $listening" | bc -l | cut -c1-5) s later, all done" \
    "$(echo "$end - $received" | bc -l | cut -c1-5) s after that (load $(cut -d' ' -f1 /proc/loadavg))" >&2
  read -r busy1 all1 < <(cpu_jiffies)
  tx1=$(netns_server_tx_bytes)
  for ((i = 1; i <= count; i++)); do
    cmp -s "m$i/dev/vda" v3.raw || { echo "bench/delivery.sh: machine $i does not hold v3" >&2; exit 1; }
  done
  if [ "$mode" != http ]; then
    grep -q "brought to v3 by multicast" m1.log || { cat m1.log >&2; echo "bench/delivery.sh: no multicast" >&2; exit 1; }
  fi
  kill "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null || true; SERVE_PID=
  netns_down
  # Busy: the share of both cores the run kept busy (100: CPU-bound, by
  # anything on the machine); cpu: the seconds of CPU the machines' troy
  # (and its udp-receiver) used, summed.
  local cpu
  cpu=$(cat m*.cpu | awk '{ total += $1 + $2 } END { printf "%.1f", total }')
  echo "$(echo "$end - $start" | bc -l) $((tx1 - tx0)) $(( (busy1 - busy0) * 100 / (all1 - all0 + 1) )) $cpu"
}

echo "delivery: v2 -> v3 of a $DISK_MIB MiB disk, $((CHANGED / MiB)) MiB of 1 MiB pieces changed," \
     "$((UNITS / 1024)) KiB of 4 KiB units" \
     "(v3.avhdx: $(( $(stat -c %s v3.avhdx) / MiB )) MiB); every link $RATE (tc tbf); $(nproc) cores;" \
     "reports ${REPORTS:-1}; $(date -u +%H:%M) UTC, load $(cut -d' ' -f1-3 /proc/loadavg)"
# The delta's size: what one machine fetches over HTTP (the delta path reads
# only the 4 KiB units v3 changed, plus the manifest and indexes).
read -r HTTP_ONE DELTA _ _ < <(run http 1)
echo "one machine over HTTP fetches $((DELTA / 1024)) KiB in $(printf %.2f "$HTTP_ONE") s: the delta size below"
printf '%-10s %6s %9s %9s %12s %10s %10s %6s %6s\n' path machines seconds "x one" "server MiB" "x delta" "x units" "busy%" "cpu s"
for mode in $MODES; do
  one=
  counts=$COUNTS
  [ "$mode" != http ] || counts=${HTTP_COUNTS:-1 8}
  for count in $counts; do
    read -r seconds bytes busy cpu < <(run "$mode" "$count")
    [ -n "$one" ] || one=$seconds
    awk -v m="$mode" -v n="$count" -v s="$seconds" -v o="$one" -v b="$bytes" -v d="$DELTA" -v c="$UNITS" -v u="$busy" -v p="$cpu" 'BEGIN {
      printf "%-10s %6d %9.2f %9.2f %12.1f %10.2f %10.2f %6d %6.1f\n", m, n, s, s / o, b / 1048576, b / d, b / c, u, p }'
  done
done
echo "x one: time over the same path's time for 1 machine; x delta: server bytes over one HTTP machine's;"
echo "x units: over the 4 KiB units v3 changes (what a session sends); busy%: of both cores during the run"
echo "(anything on the machine); cpu s: CPU seconds of the machines' troy update and udp-receiver, summed."
echo "Goal (issue 17), 32 machines:"
echo "time <= 1.5 x one machine's, server bytes <= 2 x the delta."
