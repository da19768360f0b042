# Streamed deltas (docs/streaming.md): troy update against lighttpd with a
# work folder on an 8 MiB tmpfs, smaller than the 24 MiB delta: the delta is
# read by Range requests and applied byte for byte, only small files kept in
# the work folder; troy apply from the URL killed (-9) in the middle, then
# again: what is on the disk is not fetched a second time (bytes counted in
# lighttpd's access log); a
# tampered piece on the server is refused naming the URL and the piece, and
# nothing but verified content reaches the disk. troy apply reads a URL with
# --index, refuses one without, and refuses a pipe in one line.
source "$(dirname "$0")/common.sh"

skip_without lighttpd openssl curl
[ "$(id -u)" = 0 ] || { echo "SKIP: mounting the small tmpfs work folder needs root"; exit 77; }

MiB=1048576
DISK_SIZE=$((40 * MiB))
python3 - <<'PY'
import random
size, rng = 40 << 20, random.Random(16)
disk = bytearray(rng.randbytes(size))
open("v1.raw", "wb").write(disk)
disk[4 << 20:28 << 20] = rng.randbytes(24 << 20)   # 24 MiB changed: a delta three times the work folder
open("v2.raw", "wb").write(disk)
PY
openssl genpkey -algorithm ed25519 -out lab.key 2>/dev/null
openssl pkey -in lab.key -pubout -out lab.pub
"$TROY" capture v1.raw base.vhdx 2>/dev/null
"$TROY" diff base.vhdx v2.raw -o v2.avhdx 2>/dev/null
SERVED=$WORK/served
mkdir -p "$SERVED"
"$TROY" publish --dir "$SERVED" --key lab.key --name v1 base.vhdx --disk "size=$DISK_SIZE" 2>/dev/null
"$TROY" publish --dir "$SERVED" --key lab.key --name v2 v2.avhdx 2>/dev/null
DELTA=$SERVED/versions/v2.avhdx
DELTA_SIZE=$(stat -c %s "$DELTA")
grep -q "^file-index v2 versions/v2.avhdx.index " "$SERVED/manifest" || fail "publish did not list the delta's index"
pass "publish lists the delta's chunk index in the signed manifest"

mkdir -p sys/block/vda dev work
echo $((DISK_SIZE / 512)) > sys/block/vda/size
mount -t tmpfs -o size=8m tmpfs work
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
SERVER=http://127.0.0.1:$PORT
cat > lighttpd.conf <<EOF
server.document-root = "$SERVED"
server.port = $PORT
server.bind = "127.0.0.1"
server.modules = ("mod_accesslog")
accesslog.filename = "$WORK/access.log"
accesslog.format = "%U %s %b"
server.errorlog = "$WORK/lighttpd.err"
EOF
lighttpd -D -f lighttpd.conf &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null || true; wait 2>/dev/null || true; umount "$WORK/work" 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do
  curl -sf -o /dev/null "$SERVER/manifest" && break
  sleep 0.1
done
curl -sf -o /dev/null "$SERVER/manifest" || { cat lighttpd.err >&2; fail "lighttpd does not serve the manifest"; }

update() { "$TROY" update --server "$SERVER" --key lab.pub --sysfs sys --dev dev --work work --yes --no-report "$@"; }
# lighttpd buffers its access log: SIGHUP writes it out (and reopens it).
flush_log() { kill -HUP "$SERVER_PID"; sleep 0.3; }
empty_log() { flush_log; : > access.log; }
# Body bytes lighttpd sent of the delta since the log was last emptied.
delta_bytes_served() { flush_log; awk '$1 == "/versions/v2.avhdx" && $3 != "-" { sum += $3 } END { print sum + 0 }' access.log; }
# Every 4 KiB of the disk holds v1's or v2's content: nothing unverified was written.
only_known_content() {
  python3 - "$1" <<'PY'
import sys
disk, v1, v2 = (open(p, "rb").read() for p in (sys.argv[1], "v1.raw", "v2.raw"))
for at in range(0, len(disk), 4096):
    unit = disk[at:at + 4096]
    if unit != v1[at:at + 4096] and unit != v2[at:at + 4096]:
        sys.exit(f"offset {at} holds neither v1 nor v2")
PY
}

# --- streamed through an 8 MiB work folder ---
[ "$DELTA_SIZE" -gt $((16 * MiB)) ] || fail "the delta ($DELTA_SIZE bytes) is not larger than twice the work folder"
cp v1.raw dev/vda
empty_log
update 2>out.log || { cat out.log >&2; fail "streamed update failed"; }
cmp -s dev/vda v2.raw || fail "streamed update: the disk is not v2 byte for byte"
grep -q "streaming v2 ($DELTA_SIZE bytes) from $SERVER/versions/v2.avhdx" out.log || { cat out.log >&2; fail "the screen does not say it streams"; }
grep -q downloading out.log && fail "the delta was downloaded whole"
served=$(delta_bytes_served)
[ "$served" -le $((DELTA_SIZE + DELTA_SIZE / 20)) ] || fail "$served bytes of the delta served for one apply of $DELTA_SIZE"
[ -z "$(find work -name 'v2.avhdx*' -o -size +1M)" ] || fail "the delta or a large file left in the work folder: $(ls -l work)"
pass "a $((DELTA_SIZE / MiB)) MiB delta applied through an 8 MiB work folder, byte for byte, $served bytes served"

# --- kill -9 in the middle of a streamed apply, then again: what is on the
# disk is not fetched again (troy apply's engine, which troy update runs for
# a disk at a version; a disk left between versions is synced by update) ---
"$TROY" fingerprint v2.avhdx v2.fp 2>/dev/null
apply_url() {
  "$TROY" apply "$SERVER/versions/v2.avhdx" target.raw --base-hashes v2.fp --index "$SERVED/versions/v2.avhdx.index" "$@"
}
cp v1.raw target.raw
status=0
TROY_TEST_CHECKPOINT_BYTES=$MiB TROY_TEST_KILL_AFTER_BYTES=$((14 * MiB)) apply_url >/dev/null 2>killed.log || status=$?
[ "$status" = 137 ] || { cat killed.log >&2; fail "the kill hook did not stop the apply (exit $status)"; }
rm -f .target.raw.troy-apply  # a power cut in the payload loses its journal with the RAM
empty_log
apply_url 2>out.log || { cat out.log >&2; fail "the apply after a kill failed"; }
cmp -s target.raw v2.raw || fail "kill: the rerun did not end at v2"
rerun=$(delta_bytes_served)
[ "$rerun" -le $((DELTA_SIZE - 12 * MiB)) ] ||
  fail "the rerun fetched $rerun bytes of the delta after 14 MiB had been written (of $DELTA_SIZE)"
pass "killed after 14 MiB written, journal lost, run again: v2 byte for byte, $rerun bytes fetched again"

# --- a tampered piece: refused, named, never written ---
cp "$DELTA" delta.good
cp delta.good delta.bad
python3 - "$DELTA_SIZE" <<'PY'
import sys
size = int(sys.argv[1])
with open("delta.bad", "r+b") as f:   # a byte near the end: in the last data block
    f.seek(size - 3 * (1 << 20))
    byte = f.read(1)
    f.seek(size - 3 * (1 << 20))
    f.write(bytes([byte[0] ^ 1]))
PY
mv delta.bad "$DELTA"
cp v1.raw dev/vda
status=0
update 2>out.log || status=$?
[ "$status" = 2 ] || { cat out.log >&2; fail "a tampered delta: exit $status, expected 2"; }
piece=$(((DELTA_SIZE - 3 * MiB) / 65536))  # troy publish indexes deltas by 64 KiB pieces (kFileIndexPieceSize)
grep -q "$SERVER/versions/v2.avhdx: piece $piece (bytes .*) has sha256 .* not the .*/versions/v2.avhdx.index gives" out.log ||
  { cat out.log >&2; fail "the error does not name the URL and the piece"; }
only_known_content dev/vda || fail "a tampered piece reached the disk"
mv delta.good "$DELTA"
update 2>out.log || { cat out.log >&2; fail "the update after the server was repaired failed"; }
cmp -s dev/vda v2.raw || fail "after the repair: not v2"
pass "a tampered piece is refused naming the URL and piece $piece, nothing unverified written; repaired, v2"

# --- troy apply from a URL; without --index; from a pipe ---
cp v1.raw target.raw
"$TROY" apply "$SERVER/versions/v2.avhdx" target.raw --base-hashes v2.fp --index "$SERVER/versions/v2.avhdx.index" \
  2>out.log || { cat out.log >&2; fail "apply from a URL failed"; }
cmp -s target.raw v2.raw || fail "apply from a URL: not v2"
cp v1.raw target.raw
"$TROY" apply "$SERVER/versions/v2.avhdx" target.raw --base-hashes v2.fp --index "$SERVED/versions/v2.avhdx.index" \
  --json 2>out.log >apply.json || { cat out.log >&2; fail "apply from a URL with a local index failed"; }
cmp -s target.raw v2.raw || fail "apply from a URL, local index: not v2"
python3 -c "import json,sys; j=json.load(open('apply.json')); sys.exit(0 if 0 < j['bytes_fetched'] <= $DELTA_SIZE else 1)" ||
  fail "apply --json has no true bytes_fetched: $(cat apply.json)"
pass "troy apply reads a URL verified by --index (a URL or a file), byte for byte"
cp v1.raw target.raw
status=0
"$TROY" apply "$SERVER/versions/v2.avhdx" target.raw --base-hashes v2.fp 2>out.log || status=$?
[ "$status" = 2 ] && grep -q "needs --index" out.log || { cat out.log >&2; fail "a URL without --index was not refused"; }
status=0
cat v2.avhdx | "$TROY" apply - target.raw --base-hashes v2.fp 2>out.log || status=$?
[ "$status" = 2 ] && grep -q "is a pipe" out.log && [ "$(grep -c . out.log)" = 1 ] ||
  { cat out.log >&2; fail "a pipe was not refused in one line"; }
cmp -s target.raw v1.raw || fail "a refused apply changed the target"
pass "a URL without --index and a pipe are refused in one line, the target unchanged"
echo "stream: $CHECKS checks passed"
