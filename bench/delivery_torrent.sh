#!/usr/bin/env bash
# BitTorrent against multicast and unicast HTTP (issue 17, docs/delivery.md,
# "BitTorrent"): one server and N receivers (1, 8, 32) in network namespaces
# on one bridge (tests/lab/delivery_lib.sh), every link limited by tc to
# RATE, the raw engines delivering one random file of SIZE_MIB:
#   http       curl from Python's http.server (today's unicast)
#   udpcast    udp-sender / udp-receiver (what troy lab multicast runs)
#   aria2      aria2c seeding on the server, aria2c on each receiver
#   libtorrent libtorrent-rasterbar's Python bindings (the library of
#              Clonezilla's EZIO), same roles, every peer unchoked
#   lt-lsd     the same without a tracker: peers meet by local service
#              discovery (multicast announces on the subnet)
#   lt-super   libtorrent with the server super-seeding (each piece sent
#              about once by the server, the peers spread it); not run by
#              default: with 1 receiver it takes 30x the time (nobody else
#              shows the server that a piece arrived)
# The BitTorrent peers find each other through opentracker on the server
# (lt-lsd aside);
# a receiver that finished keeps seeding (re-serves) until all have finished.
# For each N, every engine runs in turn in the same namespaces. Prints the
# time until every receiver holds the file byte for byte, over the same
# engine's time for 1 receiver, and the bytes the server's interface sent,
# over the file size.
#   sudo bench/delivery_torrent.sh [SIZE_MIB] [RATE] [COUNTS] [ENGINES]
# Defaults: 32 MiB, 100mbit (bench/delivery.sh's gigabit lab scaled down
# 10x), "1 8 32", "http udpcast aria2 libtorrent lt-lsd". About 9 minutes here.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIZE_MIB=${1:-32}
RATE=${2:-100mbit}
COUNTS=${3:-1 8 32}
ENGINES=${4:-http udpcast aria2 libtorrent lt-lsd}
# Longest an engine may take for one N before it counts as failed.
LIMIT=${DELIVERY_TORRENT_LIMIT:-240}
# Debian's python3-libtorrent is built for the system's Python only.
PYTHON=/usr/bin/python3
me=bench/delivery_torrent.sh
[ "$(id -u)" = 0 ] || { echo "$me: needs root (network namespaces)" >&2; exit 1; }
for tool in ip tc curl udp-sender udp-receiver aria2c opentracker mktorrent bc; do
  command -v $tool >/dev/null || { echo "$me: $tool is missing (scripts/install-deps.sh)" >&2; exit 1; }
done
case " $ENGINES " in *" libtorrent "* | *" lt-super "* | *" lt-lsd "*)
  $PYTHON -c 'import libtorrent' 2>/dev/null ||
    { echo "$me: python3-libtorrent is missing (scripts/install-deps.sh)" >&2; exit 1; } ;;
esac
source "$ROOT/tests/lab/delivery_lib.sh"
WORK=$(mktemp -d /tmp/troy-bench-torrent.XXXXXX)
chmod 755 "$WORK"
cleanup() {
  netns_down
  rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"

MiB=1048576
SIZE=$((SIZE_MIB * MiB))
SERVER=$NETNS_SERVER_IP
mkdir -p src
head -c "$SIZE" /dev/urandom > src/file.bin

# The torrent: 256 KiB pieces (128 for 32 MiB: enough for 32 peers to swap),
# announced to opentracker on the server.
mktorrent -a "http://$SERVER:6969/announce" -l 18 -o file.torrent src/file.bin >/dev/null
INFO_HASH=$(aria2c -S file.torrent | awk '/^Info Hash:/ {print $3}')
# Debian's opentracker is built with a whitelist (WANT_ACCESSLIST_WHITE): a
# torrent not listed is refused ("not authorized for use with this tracker"),
# and it refuses to run as root. Its whitelist is read inside its chroot.
mkdir -p tracker
echo "$INFO_HASH" > tracker/whitelist
chmod -R a+rX tracker
INFO_HASH_URL=$(echo "$INFO_HASH" | sed 's/../%&/g')

# Each receiver's directory; removed after each engine (N x SIZE on disk).
receiver_dir() { echo "$WORK/r$1"; }
fresh_receivers() {
  local i
  for ((i = 1; i <= $1; i++)); do rm -rf "$(receiver_dir "$i")"; mkdir -p "$(receiver_dir "$i")"; done
}
in_server() { ip netns exec "$(netns_server)" "$@"; }
in_receiver() { local i=$1; shift; ip netns exec "$(netns_receiver "$i")" "$@"; }
now() { date +%s.%N; }

# Waits until every receiver wrote its done file (the time it finished);
# prints the latest, or fails after LIMIT seconds naming how many finished.
wait_done_files() {
  local count=$1 start=$2 i done_count
  while :; do
    done_count=0
    for ((i = 1; i <= count; i++)); do [ -s "$(receiver_dir "$i")/done" ] && done_count=$((done_count + 1)); done
    [ "$done_count" -lt "$count" ] || break
    if (( $(echo "$(now) - $start > $LIMIT" | bc) )); then
      echo "$me: $done_count of $count receivers finished in ${LIMIT}s" >&2
      return 1
    fi
    sleep 0.05
  done
  for ((i = 1; i <= count; i++)); do cat "$(receiver_dir "$i")/done"; done | sort -g | tail -1
}

# Kills what the engine left in the namespaces (the seeders, the tracker),
# keeping the namespaces for the next engine.
stop_engine_processes() {
  local ns pid
  for ns in "${NETNS_MADE[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
  done
  sleep 0.3
}

# --- the engines: each ENGINE_serve (in the background, server namespace),
# --- ENGINE_receive I (one receiver), and how the end is seen.

http_serve() {
  in_server $PYTHON -m http.server --bind "$SERVER" --directory src 8000 >/dev/null 2>&1 &
  until in_receiver 1 curl -sf -o /dev/null "http://$SERVER:8000/file.bin" -r 0-0; do sleep 0.1; done
}
http_receive() {
  in_receiver "$1" curl -sf -o "$(receiver_dir "$1")/file.bin" "http://$SERVER:8000/file.bin"
}

udpcast_serve() {
  # The cap just under the link rate: tbf drops what exceeds it.
  in_server udp-sender --nokbd --no-progress --interface eth0 --file src/file.bin \
    --min-receivers "$1" --min-wait 0 --max-wait 60 --max-bitrate "$(( ${RATE%mbit} * 9 / 10 ))m" \
    >udp-sender.log 2>&1 &
  sleep 0.5
}
udpcast_receive() {
  in_receiver "$1" udp-receiver --nokbd --interface eth0 --file "$(receiver_dir "$1")/file.bin" \
    --start-timeout 60 >/dev/null 2>&1
}

tracker_up() {
  # -u: it refuses to keep root; -d: its chroot, where it reads the whitelist.
  in_server opentracker -i "$SERVER" -p 6969 -P 6969 -u _opentracker -d "$WORK/tracker" -w whitelist \
    >tracker.log 2>&1 &
  until in_receiver 1 curl -sf -o /dev/null "http://$SERVER:6969/scrape?info_hash=$INFO_HASH_URL"; do sleep 0.1; done
}
# Waits until the tracker counts the server's seeder.
tracker_has_seeder() {
  local i
  for ((i = 0; i < 200; i++)); do
    in_receiver 1 curl -sf "http://$SERVER:6969/scrape?info_hash=$INFO_HASH_URL" | grep -q 'completei1e' && return 0
    sleep 0.1
  done
  echo "$me: the seeder never announced itself to the tracker" >&2
  cat seeder.log >&2 || true
  return 1
}

# aria2c: no DHT, no local peer discovery (the tracker only, as a lab
# would run it); --seed-ratio=0.0 without --seed-time seeds until killed;
# --bt-seed-unverified: the server's copy is trusted, not re-hashed.
ARIA2=(aria2c --enable-dht=false --enable-dht6=false --bt-enable-lpd=false --seed-ratio=0.0
       --file-allocation=none --summary-interval=0 --console-log-level=warn --bt-max-peers=0)
aria2_serve() {
  tracker_up
  in_server "${ARIA2[@]}" --bt-seed-unverified=true -d src file.torrent >seeder.log 2>&1 &
  tracker_has_seeder
}
aria2_receive() {
  local dir
  dir=$(receiver_dir "$1")
  in_receiver "$1" "${ARIA2[@]}" -d "$dir" --on-bt-download-complete="$WORK/aria2_done" file.torrent \
    >"$dir/log" 2>&1 &
}
cat > aria2_done <<'EOF'
#!/bin/sh
# aria2c's hook when a torrent's download completed (it then seeds): GID, count, path.
date +%s.%N > "$(dirname "$3")/done"
EOF
chmod +x aria2_done

# libtorrent: one session per machine, the tracker only; writes DIR/done
# when it holds every piece (each checked against the torrent's SHA-1),
# then keeps seeding until killed.
cat > lt_peer.py <<'EOF'
import sys, time
import libtorrent as lt
torrent, directory, role, discovery = sys.argv[1:5]
# A lab has no free riders to choke: every peer is unchoked (the default
# unchokes 8, rotated every 15 s, which idles most links of a 32-peer swarm).
# discovery "lsd": no tracker, peers meet by local service discovery
# (BEP 14: multicast announces on the subnet) instead.
session = lt.session({"listen_interfaces": "0.0.0.0:6881", "enable_dht": False,
                      "enable_lsd": discovery == "lsd",
                      "enable_upnp": False, "enable_natpmp": False, "alert_mask": 0,
                      "unchoke_slots_limit": -1})
params = lt.add_torrent_params()
params.ti = lt.torrent_info(torrent)
params.save_path = directory
if role in ("seed", "superseed"):
    params.flags |= lt.torrent_flags.seed_mode  # no check at start; hashed when first asked for
if role == "superseed":
    # Super-seeding: the seeder offers each peer a piece nobody has yet and
    # the next only once that piece was seen at another peer, so it sends
    # each piece about once and the peers spread the rest.
    params.flags |= lt.torrent_flags.super_seeding
handle = session.add_torrent(params)
while not handle.status().is_seeding:
    time.sleep(0.02)
if role == "leech":
    with open(directory + "/done", "w") as done:
        done.write("%.6f\n" % time.time())
while True:
    time.sleep(3600)
EOF
lt_serve() {  # ROLE (seed or superseed) DISCOVERY (tracker or lsd)
  [ "$2" = lsd ] || tracker_up
  in_server $PYTHON lt_peer.py file.torrent src "$1" "$2" >seeder.log 2>&1 &
  if [ "$2" = lsd ]; then
    until in_server ss -ltn | grep -q ':6881 '; do sleep 0.1; done
  else
    tracker_has_seeder
  fi
}
lt_receive() {  # I DISCOVERY
  local dir
  dir=$(receiver_dir "$1")
  in_receiver "$1" $PYTHON "$WORK/lt_peer.py" file.torrent "$dir" leech "$2" >"$dir/log" 2>&1 &
}
libtorrent_serve() { lt_serve seed tracker; }
libtorrent_receive() { lt_receive "$1" tracker; }
lt-super_serve() { lt_serve superseed tracker; }
lt-super_receive() { lt_receive "$1" tracker; }
lt-lsd_serve() { lt_serve seed lsd; }
lt-lsd_receive() { lt_receive "$1" lsd; }

# run ENGINE N: prints "seconds server_bytes" (namespaces already up).
run() {
  local engine=$1 count=$2 i pids=() start end tx0 tx1
  fresh_receivers "$count"
  "${engine}_serve" "$count"
  tx0=$(netns_server_tx_bytes)
  start=$(now)
  for ((i = 1; i <= count; i++)); do
    "${engine}_receive" "$i" &
    pids+=($!)
  done
  case $engine in
    http | udpcast)
      for pid in "${pids[@]}"; do wait "$pid" || { echo "$me: a $engine receiver failed" >&2; return 1; }; done
      end=$(now) ;;
    *)
      wait "${pids[@]}"
      end=$(wait_done_files "$count" "$start") || return 1 ;;
  esac
  tx1=$(netns_server_tx_bytes)
  stop_engine_processes
  for ((i = 1; i <= count; i++)); do
    cmp -s "$(receiver_dir "$i")/file.bin" src/file.bin ||
      { echo "$me: $engine: receiver $i does not hold the file" >&2; return 1; }
  done
  fresh_receivers "$count"
  echo "$(echo "$end - $start" | bc -l) $((tx1 - tx0))"
}

load() { cut -d' ' -f1-3 /proc/loadavg; }
LINK_SECONDS=$(echo "scale=3; $SIZE * 8 / (${RATE%mbit} * 1000000)" | bc)
echo "delivery_torrent: a $SIZE_MIB MiB file, every link $RATE (tc tbf, both directions), $(nproc) cores;" \
     "the file alone at the link's rate: $LINK_SECONDS s"
echo "aria2 $(aria2c --version | awk 'NR == 1 {print $3}'), libtorrent" \
     "$($PYTHON -c 'import libtorrent; print(libtorrent.__version__)' 2>/dev/null || echo -), load at start: $(load)"
printf '%-11s %9s %9s %7s %7s %11s %7s  %s\n' engine receivers seconds "x one" "x link" "server MiB" "x file" "load (1 5 15 min)"
declare -A one
for count in $COUNTS; do
  netns_up "$count" "$RATE"
  for engine in $ENGINES; do
    if result=$(run "$engine" "$count"); then
      read -r seconds bytes <<<"$result"
      [ -n "${one[$engine]:-}" ] || one[$engine]=$seconds
      awk -v e="$engine" -v n="$count" -v s="$seconds" -v o="${one[$engine]}" -v k="$LINK_SECONDS" -v b="$bytes" \
          -v f="$SIZE" -v l="$(load)" 'BEGIN {
        printf "%-11s %9d %9.2f %7.2f %7.2f %11.1f %7.2f  %s\n", e, n, s, s / o, s / k, b / 1048576, b / f, l }'
    else
      printf '%-11s %9d %9s\n' "$engine" "$count" failed
      stop_engine_processes
    fi
  done
  netns_down
done
echo "x one: time over the same engine's time for 1 receiver; x link: over the file's time at the link's"
echo "rate; x file: bytes the server's interface sent over the file size. Goal (issue 17), 32 receivers: time <= 1.5 x one, server bytes <= 2 x the file."
