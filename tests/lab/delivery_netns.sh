# Delivery at lab scale (issue 17) in network namespaces: one server
# (pxe/serve.sh --multicast eth0,eth1: lighttpd and troy lab multicast over
# udpcast, one sender per interface) and 8 machines on a bridge plus one on
# a second subnet, each running troy update as the payload does, on a disk
# holding v2 while the server publishes v3:
#   - the machines on time receive one multicast session of the changed 4
#     KiB units, verify each piece, and end byte for byte at v3 with nothing
#     over HTTP; the server sends under twice those units, not one per machine;
#   - a machine started while that session runs (late): udpcast takes no
#     one mid-session, so its udp-receiver waits (the announcement's wait
#     outlasts the session) and joins the next session, by multicast too;
#   - the machine on the second subnet gets its sender's session (eth1);
#   - one machine killed mid-session completes on its next run over HTTP,
#     fetching less than the whole change (what its disk holds is kept);
#   - a rogue sender's stream with one tampered piece: that piece is
#     refused and never written (the disk keeps v2's bytes there while HTTP
#     cannot bring it), then HTTP brings it.
#   - a machine at v2 whose wait runs out with no session takes the delta
#     over HTTP, fetching under 3 x the changed units.
# Makes its own namespaces, veth pairs and bridges (tests/lab/delivery_lib.sh)
# and removes them on exit, even on failure.
source "$(dirname "$0")/../e2e/common.sh"
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (network namespaces)"; exit 77; }
for tool in ip udp-sender udp-receiver lighttpd openssl; do
  command -v $tool >/dev/null || { echo "SKIP: $tool is missing"; exit 77; }
done
source "$ROOT/tests/lab/delivery_lib.sh"
ip netns add "${NETNS_PREFIX}probe" 2>/dev/null || { echo "SKIP: cannot create network namespaces here"; exit 77; }
ip netns del "${NETNS_PREFIX}probe"
SERVE_PID=
cleanup() {
  [ -z "$SERVE_PID" ] || kill "$SERVE_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  netns_down
  rm -rf "$WORK"
}
trap cleanup EXIT

MiB=1048576
DISK_SIZE=$((16 * MiB))
COUNT=8
openssl genpkey -algorithm ed25519 -out lab.key 2>/dev/null
openssl pkey -in lab.key -pubout -out lab.pub
python3 "$ROOT/fixtures/make_lab_versions.py" 16 16
"$TROY" capture v1.raw base.vhdx 2>/dev/null
"$TROY" diff base.vhdx v2.raw -o v2.avhdx 2>/dev/null
"$TROY" diff v2.avhdx v3.raw -o v3.avhdx 2>/dev/null
SERVED=$WORK/served
mkdir -p "$SERVED/boot"
for version in v1 v2 v3; do
  image=base.vhdx; [ $version = v1 ] || image=$version.avhdx
  disk=(); [ $version = v1 ] && disk=(--disk "size=$DISK_SIZE serial=LAB-PC-*")
  "$TROY" publish --dir "$SERVED" --key lab.key --name $version "${disk[@]}" $image 2>/dev/null
done
: > "$SERVED/boot/vmlinuz"   # pxe/serve.sh wants a payload; update needs none
# The bytes a session carries: v3's 4 KiB units that differ from v2's.
UNITS=$(python3 - <<'PY'
a, b = open("v2.raw", "rb").read(), open("v3.raw", "rb").read()
print(sum(4096 for i in range(0, len(a), 4096) if a[i:i + 4096] != b[i:i + 4096]))
PY
)
CHANGED=$(python3 - <<'PY'
a, b = open("v2.raw", "rb").read(), open("v3.raw", "rb").read()
print(sum(1 for i in range(0, len(a), 1 << 20) if a[i:i + (1 << 20)] != b[i:i + (1 << 20)]) << 20)
PY
)

netns_up $COUNT
netns_subnet2 9
# Machine i: its own sysfs and /dev with one lab disk holding v2.
machine() {  # I
  mkdir -p "m$1/sys/block/vda" "m$1/sys/class/net/eth0" "m$1/dev"
  echo $((DISK_SIZE / 512)) > "m$1/sys/block/vda/size"
  echo "LAB-PC-$1" > "m$1/sys/block/vda/serial"
  printf '52:54:00:00:00:%02x\n' "$1" > "m$1/sys/class/net/eth0/address"
  echo up > "m$1/sys/class/net/eth0/operstate"
  cp v2.raw "m$1/dev/vda"
}
SERVER=http://$NETNS_SERVER_IP:8080
update_on() {  # I [ARGS]: troy update in machine I's namespace, as the payload runs it
  local i=$1
  shift
  local server=$SERVER
  [ "$i" != 9 ] || server=http://$NETNS_SERVER_IP2:8080
  ip netns exec "$(netns_receiver "$i")" "$TROY" update --server "$server" --key lab.pub --sysfs "m$i/sys" \
    --dev "m$i/dev" --work "m$i/work" --yes "$@"
}
serve() {  # serve.sh in the server's namespace, multicast on its eth0
  ip netns exec "$(netns_server)" bash "$ROOT/pxe/serve.sh" --served "$SERVED" --http-port 8080 --no-dhcp \
    --troy "$TROY" "$@" 2>serve.log &
  SERVE_PID=$!
  for _ in $(seq 100); do
    ip netns exec "$(netns_receiver 1)" curl -sf -o /dev/null "$SERVER/manifest" && break
    sleep 0.1
  done
}
for i in $(seq $((COUNT + 1))); do machine "$i"; done

# --- 7 machines on time (8 is killed mid-session), 7 late, 9 on the other subnet ---
# The rate cap makes the session last a few seconds, so that 7 comes while it runs.
# The machines' wait (--receiver-wait) outlasts that session (which also
# waits for the killed machine 8 to be dropped): 7 waits for the next one.
serve --multicast eth0,eth1 --multicast-option "--min-receivers 1 --min-wait 3 --max-wait 20 --receiver-wait 60 --max-bitrate 4m"
for _ in $(seq 50); do [ -f "$SERVED/delivery" ] && break; sleep 0.1; done
[ "$(wc -l <"$SERVED/delivery" 2>/dev/null)" = 2 ] || { cat serve.log >&2; fail "troy lab multicast announced no session per interface"; }
TX0=$(netns_server_tx_bytes)
pids=()
for i in 1 2 3 4 5 6 8 9; do
  update_on "$i" >"m$i.log" 2>&1 &
  pids[i]=$!
done
# Once the session writes machine 1's disk: machine 7 boots (late).
for _ in $(seq 300); do
  cmp -s "m1/dev/vda" v2.raw || break
  sleep 0.05
done
grep -q "eth0: session ended" serve.log && fail "the first session ended before the late machine came (test too slow)"
update_on 7 >m7.log 2>&1 &
pids[7]=$!
# Machine 8: killed (troy and its udp-receiver) once a piece of v3 is on its disk.
for _ in $(seq 300); do
  cmp -s "m8/dev/vda" v2.raw || break
  sleep 0.05
done
for pid in $(ip netns pids "$(netns_receiver 8)"); do kill -9 "$pid" 2>/dev/null || true; done
# The server's bytes of the first session on eth0 (the next one is for machine 7).
for _ in $(seq 300); do grep -q "eth0: session ended" serve.log && break; sleep 0.05; done
TX1=$(netns_server_tx_bytes)
for i in 1 2 3 4 5 6 7 9; do wait "${pids[i]}" || { cat "m$i.log" >&2; fail "machine $i: update failed"; }; done
wait "${pids[8]}" 2>/dev/null || true
for i in 1 2 3 4 5 6 7 9; do
  cmp -s "m$i/dev/vda" v3.raw || { cat "m$i.log" >&2; fail "machine $i does not hold v3"; }
  grep -q "brought to v3 by multicast: [1-9][0-9]* of [0-9]* pieces received" "m$i.log" ||
    { cat "m$i.log" >&2; fail "machine $i was not brought to v3 by multicast alone"; }
done
# Less what machine 7 fetched over HTTP meanwhile (its indexes, counted by lighttpd).
LATE=$(awk -v ip="$(netns_receiver_ip 7)" '$1 == ip { total += $10 } END { print total + 0 }' "$SERVED/logs/lighttpd-access.log")
SENT=$((TX1 - TX0 - LATE))
[ "$SENT" -lt $((2 * UNITS)) ] ||
  fail "the server sent $SENT bytes in the first session, over twice the $UNITS bytes of changed units"
pass "6 machines byte for byte at v3 from one multicast session, nothing over HTTP: the server sent $SENT bytes for $UNITS bytes of changed 4 KiB units ($CHANGED bytes of changed pieces)"
[ "$(grep -c "eth0: session ended" serve.log)" -ge 2 ] || { cat serve.log >&2; fail "no second session on eth0"; }
pass "machine 7, booted while the session ran, waited and was brought to v3 by the next session, nothing over HTTP"
grep -q "from $NETNS_SERVER_IP2 on eth0" m9.log || { cat m9.log >&2; fail "machine 9 did not take the eth1 sender's session"; }
pass "machine 9 on the second subnet got its own sender's session (eth1)"
cmp -s "m8/dev/vda" v3.raw && fail "machine 8 was not cut short (the kill came too late)"

# Machines 8 (killed mid-session) and 7 (at v2 again) after the last session:
# the announcement is still served but no sender answers; after its 2 s each
# takes HTTP: 8 keeping the pieces the session wrote before the kill, 7 by
# the delta path.
kill "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null || true; SERVE_PID=
[ -f "$SERVED/delivery" ] && fail "serve.sh left the announcement behind"
serve
INDEX_SHA=$(awk '$1 == "content-index" && $2 == "v3" { print $5 }' "$SERVED/manifest")
echo "multicast version=v3 base=v2 index=$INDEX_SHA sender=$NETNS_SERVER_IP/24 portbase=9000 ttl=1 wait=2" >"$SERVED/delivery"
cp v2.raw m7/dev/vda
update_on 7 >m7.log 2>&1 &
late=$!
update_on 8 >m8.log 2>&1 || { cat m8.log >&2; fail "machine 8: the second run failed"; }
wait $late || { cat m7.log >&2; fail "machine 7: the run without a session failed"; }
cmp -s m7/dev/vda v3.raw || { cat m7.log >&2; fail "machine 7 does not hold v3 after its run without a session"; }
grep -q "no session started" m7.log && grep -q "applied v3" m7.log ||
  { cat m7.log >&2; fail "machine 7 (no session) did not fall back to the delta over HTTP"; }
# The delta path fetches only the delta's pieces the disk needs, each a 64 KiB
# verified piece of troy publish's file index: here 2.5 x the changed
# units (the runs of make_lab_versions.py, 0.5-128 KiB, cost one or two
# pieces each); with 256 KiB pieces it was 5-6 x.
# (troy's own count of the delta's body bytes: lighttpd's access log is
# written every 4 s).
DELTA_FETCHED=$(sed -n 's/.*applied v3: .*, \([0-9]*\) bytes fetched.*/\1/p' m7.log)
[ "${DELTA_FETCHED:-0}" -gt 0 ] && [ "$DELTA_FETCHED" -le $((3 * UNITS)) ] ||
  fail "machine 7 fetched $DELTA_FETCHED bytes of the delta for $UNITS bytes of changed units (over 3 x: over-fetch)"
pass "machine 7, at v2 with no session within its wait, completed by the delta over HTTP, fetching $DELTA_FETCHED bytes of it for $UNITS bytes of changed units"
cmp -s "m8/dev/vda" v3.raw || { cat m8.log >&2; fail "machine 8 does not hold v3 after its second run"; }
fetched=$(grep -o 'fetched ([0-9.]* [KM]iB)' m8.log | head -1 || true)
grep -q "synced to v3" m8.log || { cat m8.log >&2; fail "machine 8: no sync over HTTP"; }
kept=$(grep -o '[0-9]\+ kept' m8.log | head -1 | cut -d' ' -f1)
[ "${kept:-0}" -gt $(( (DISK_SIZE - CHANGED) >> 20 )) ] ||
  { cat m8.log >&2; fail "machine 8 kept ${kept:-no} pieces: what the session wrote was fetched again"; }
pass "machine 8, killed mid-session, completes over HTTP keeping $kept pieces ($fetched)"

# --- a rogue sender: v3's stream with one piece tampered ---
python3 - "$SERVED" <<'PY'
import hashlib, struct, sys
served = sys.argv[1]
lines = open(f"{served}/manifest").read().splitlines()
index_of = {l.split()[1]: l.split()[2] for l in lines if l.startswith("content-index ")}
def hashes(path):
    data = open(f"{served}/{path}", "rb").read()
    count = struct.unpack_from("<Q", data, 24)[0]
    return data, [data[64 + 32 * i:96 + 32 * i] for i in range(count)]
raw3, new = hashes(index_of["v3"])
raw2, old = hashes(index_of["v2"])
pieces = [i for i, h in enumerate(new) if h != old[i] and h != bytes(32)]
out = bytearray(b"TROYMCS2" + struct.pack("<IIQQ", 2, 1 << 20, 16 << 20, len(pieces)) +
                hashlib.sha256(raw3).digest() + hashlib.sha256(raw2).digest())
for n, i in enumerate(pieces):  # each piece whole, as one run
    h = new[i].hex()
    body = bytearray(open(f"{served}/chunks/{h[:2]}/{h}", "rb").read())
    if n == 1:
        body[4096] ^= 0xFF
        open("tampered.piece", "w").write(f"{i}\n")
    out += struct.pack("<QII", i, 1, 0) + struct.pack("<III", 0, len(body), 0) + body
open("tampered.stream", "wb").write(out)
PY
read -r PIECE < tampered.piece
# The rogue announcement and sender (the same HTTP server still runs, no
# multicast sender of its own); the real server's delta hidden, so that
# HTTP cannot bring the piece either and the disk shows what was written.
DELTA_FILE=$(awk '$1 == "version" && $2 == "v3" { print $5 }' "$SERVED/manifest")
mv "$SERVED/$DELTA_FILE" hidden.delta
cp v2.raw m1/dev/vda
echo "multicast version=v3 base=v2 index=$INDEX_SHA sender=$NETNS_SERVER_IP/24 portbase=9000 ttl=1 wait=10" >"$SERVED/delivery"
ip netns exec "$(netns_server)" udp-sender --nokbd --interface eth0 --portbase 9000 --min-receivers 1 \
  --min-wait 0 --max-wait 5 <tampered.stream >rogue.log 2>&1 &
ROGUE=$!
status=0
update_on 1 >m1.log 2>&1 || status=$?
wait "$ROGUE" 2>/dev/null || true
grep -q "piece $PIECE .*does not match the signed content index: refused, not written" m1.log ||
  { cat m1.log rogue.log >&2; fail "the tampered piece $PIECE was not refused"; }
[ "$status" != 0 ] || fail "the update succeeded though piece $PIECE could come from nowhere"
cmp -s <(tail -c +$((PIECE * MiB + 1)) m1/dev/vda | head -c $MiB) <(tail -c +$((PIECE * MiB + 1)) v2.raw | head -c $MiB) ||
  fail "piece $PIECE on the disk is not v2's: the tampered bytes were written"
mv hidden.delta "$SERVED/$DELTA_FILE"
rm -f "$SERVED/delivery"
update_on 1 >m1.log 2>&1 || { cat m1.log >&2; fail "machine 1: no v3 over HTTP after the rogue stream"; }
cmp -s m1/dev/vda v3.raw || fail "machine 1 does not hold v3"
pass "a rogue stream's tampered piece $PIECE refused and never written; HTTP brought it afterwards"
echo "delivery_netns: $CHECKS checks passed"
