# Images larger than the machine's RAM, and a power cut in the middle of a
# sync (docs/streaming.md, issue 16). Two QEMU machines with 160 MiB of RAM
# boot over the network together:
#  - one holds v1 and applies a delta larger than its RAM, which the payload
#    reads from lighttpd piece by piece (its work folder is RAM: a whole
#    download could not fit);
#  - one has a blank disk, so it syncs the whole of v2 (larger than its RAM
#    too); QEMU is killed in the middle (a power cut), and the next boot
#    ends at v2 having downloaded, over both boots, at most one 1 MiB piece
#    more than a sync that was never cut (the server's access log counts).
# Then both disks are checked byte for byte. The streaming itself (Range
# requests, pieces verified, bytes fetched after a kill) is checked on the
# host in tests/e2e/stream.sh and sync.sh; these boots prove the RAM bound
# and the resume in the real payload.
#   bash tests/lab/stream_e2e.sh TROY
source "$(dirname "$0")/../e2e/common.sh"
source "$(dirname "$0")/boot_lib.sh"

for tool in qemu-system-x86_64 lighttpd busybox openssl cpio depmod; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool is missing (bash scripts/install-deps.sh)"; exit 77; }
done
[ -f /usr/share/qemu/pxe-virtio.rom ] || [ -f /usr/lib/ipxe/qemu/pxe-virtio.rom ] ||
  { echo "SKIP: QEMU's iPXE NIC ROMs are missing (apt-get install ipxe-qemu)"; exit 77; }

# The images are written several times over (capture, diff, publish, disks):
# in RAM when /dev/shm has room, as merge_crash.sh does.
shm_free=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }' || true)
if [ "${shm_free:-0}" -gt $((2 << 20)) ]; then
  DISK_WORK=$WORK
  WORK=$(mktemp -d /dev/shm/troy-e2e.XXXXXX)
  chmod 755 "$WORK"   # lighttpd runs as www-data
  rmdir "$DISK_WORK"
  cd "$WORK"
fi

MiB=1048576
RAM_MIB=160
DISK_SIZE=$((208 * MiB))
BOOT_TIMEOUT=${TROY_BOOT_TIMEOUT:-300}

openssl genpkey -algorithm ed25519 -out lab.key 2>/dev/null
openssl pkey -in lab.key -pubout -out lab.pub
# Random bytes (urandom: fast), v2 a new middle 176 MiB long.
head -c $((208 * MiB)) /dev/urandom >v1.raw
cp v1.raw v2.raw
head -c $((176 * MiB)) /dev/urandom | dd of=v2.raw bs=1M seek=16 conv=notrunc status=none
"$TROY" capture v1.raw base.vhdx 2>/dev/null
"$TROY" diff base.vhdx v2.raw -o v2.avhdx 2>/dev/null
SERVED=$WORK/served
mkdir -p "$SERVED"
"$TROY" publish --dir "$SERVED" --key lab.key --name v1 base.vhdx --disk "size=$DISK_SIZE serial=LAB-PC-*" 2>/dev/null
"$TROY" publish --dir "$SERVED" --key lab.key --name v2 v2.avhdx 2>/dev/null
rm base.vhdx v2.avhdx
DELTA_SIZE=$(stat -c %s "$SERVED/versions/v2.avhdx")
[ "$DELTA_SIZE" -gt $((RAM_MIB * MiB)) ] || fail "the delta ($DELTA_SIZE bytes) is not larger than the machine's RAM"

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
bash "$ROOT/initramfs/build.sh" --troy "$TROY" --key lab.pub --out "$SERVED/boot" \
  --cache "${TROY_PAYLOAD_CACHE:-$ROOT/build/payload-cache}" \
  --http-url "http://\${next-server}:$PORT" --kernel-args "console=ttyS0 troy.then=poweroff troy.wait=0" >/dev/null
bash "$ROOT/pxe/serve.sh" --served "$SERVED" --troy "$TROY" --http-port "$PORT" --http-bind 127.0.0.1 --no-dhcp 2>serve.log &
SERVER_PID=$!
SYNC_PID=
STREAM_PID=
trap 'kill -9 $STREAM_PID $SYNC_PID 2>/dev/null || true; kill $SERVER_PID 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 50); do
  busybox wget -q -O /dev/null "http://127.0.0.1:$PORT/manifest" 2>/dev/null && break
  sleep 0.1
done
busybox wget -q -O /dev/null "http://127.0.0.1:$PORT/manifest" || { cat serve.log >&2; fail "lighttpd does not serve the manifest"; }
ACCESS_LOG=$SERVED/logs/lighttpd-access.log   # pxe/serve.sh's default --log-dir
echo "stream_e2e: setup took $SECONDS s"

# qemu CONSOLE MAC DISK [NET] [DRIVE OPTIONS] &: one boot with RAM_MIB of
# RAM, in the background ($! is QEMU itself: exec). BOOT_BY=pxe: the whole
# network boot (iPXE, TFTP, the server's script, the payload over HTTP), which
# the streaming machine takes; the syncing one starts the payload directly
# with the server's kernel arguments (boot_lib.sh).
qemu() {
  local start=(-boot n) net=${4:-10.0.2.0/24}
  if [ "${BOOT_BY:-}" != pxe ]; then
    direct_boot "$SERVED" "http://${net%.*}.2:$PORT"   # the host is .2 of QEMU's user network
    start=("${DIRECT_BOOT[@]}")
  fi
  exec qemu-system-x86_64 -accel tcg -m "$RAM_MIB" -nographic -no-reboot \
    "${start[@]}" -netdev "user,id=net0,tftp=$SERVED/boot,bootfile=boot.ipxe${4:+,net=$4}" \
    -device "virtio-net-pci,netdev=net0,mac=$2" \
    -drive "file=$3,format=raw,if=none,id=disk0${5:-}" -device virtio-blk-pci,drive=disk0,serial=LAB-PC-0001 \
    >"$1" 2>&1 </dev/null
}
# finished PID CONSOLE WHAT: waits for a QEMU to power off, at most BOOT_TIMEOUT s.
finished() {
  local deadline=$((SECONDS + BOOT_TIMEOUT))
  while kill -0 "$1" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { kill -9 "$1"; tail -n 40 "$2" >&2; fail "$3: the machine did not power off within $BOOT_TIMEOUT s"; }
    sleep 0.5
  done
  wait "$1" || { tail -n 40 "$2" >&2; fail "$3: QEMU failed"; }
}

cp v1.raw disk.raw
truncate -s "$DISK_SIZE" blank.raw
BOOT_BY=pxe qemu stream.console 52:54:00:00:01:01 disk.raw &
STREAM_PID=$!
# The blank machine is on its own QEMU user network: its requests name the
# server 10.0.3.2 in the access log. Its disk writes 8 MiB/s, so that the
# cut comes in the middle of the sync: once a third of the disk is written.
qemu sync-cut.console 52:54:00:00:01:02 blank.raw 10.0.3.0/24 ",throttling.bps-write=8388608" &
SYNC_PID=$!
for _ in $(seq $((BOOT_TIMEOUT * 10))); do
  [ "$(du -k blank.raw | cut -f1)" -ge $((DISK_SIZE / 3072)) ] && break
  kill -0 $SYNC_PID 2>/dev/null || break
  sleep 0.1
done
kill -9 $SYNC_PID 2>/dev/null || { tail -n 30 sync-cut.console >&2; fail "sync: the machine powered off before the cut (the test would prove nothing)"; }
wait $SYNC_PID 2>/dev/null || true   # qemu itself, so nothing more reaches blank.raw
SYNC_PID=
grep -q 'holds none of the published versions exactly' sync-cut.console ||
  { tail -n 30 sync-cut.console >&2; fail "sync: the blank machine did not say why it syncs"; }
cmp -s blank.raw v2.raw && fail "sync: the sync had finished before the cut (the test would prove nothing)"
pass "power cut in the middle of a blank disk's sync to v2"
qemu sync-resumed.console 52:54:00:00:01:02 blank.raw 10.0.3.0/24 &
SYNC_PID=$!

finished $STREAM_PID stream.console "streaming"
cmp -s disk.raw v2.raw || { tail -n 40 stream.console >&2; fail "the disk is not v2 byte for byte"; }
grep -q "streaming v2 ($DELTA_SIZE bytes)" stream.console || { tail -n 40 stream.console >&2; fail "the payload did not stream"; }
grep -q 'TROY: OK' stream.console || fail "the screen shows no TROY: OK"
grep -q "Troy: loading the boot payload from http://10.0.2.2:$PORT" stream.console ||
  fail "streaming: the machine did not boot through iPXE and the server's boot script"
pass "a $((DELTA_SIZE / MiB)) MiB delta applied by a $RAM_MIB MiB machine, byte for byte"

finished $SYNC_PID sync-resumed.console "sync, booted again"
SYNC_PID=
cmp -s blank.raw v2.raw || { tail -n 40 sync-resumed.console >&2; fail "sync: the next boot did not end at v2"; }
grep -q 'TROY: OK' sync-resumed.console || fail "sync: the screen shows no TROY: OK"

# Body bytes lighttpd sent to the blank machine over both boots, the boot
# payload aside (lighttpd writes its access log every 4 s). An uncut sync of
# a blank disk fetches every non-zero piece once, and reads the signed
# manifest, the indexes and held tables it lists, and at most the unit CRCs
# (4 bytes per 4 KiB); each boot reads those again.
sleep 5
fetched=$(served_bytes "$ACCESS_LOG" "10.0.3.2:$PORT")
content=$(python3 - <<'PY'
data = open("v2.raw", "rb").read()
M = 1 << 20
print(sum(len(data[i:i + M]) for i in range(0, len(data), M) if data[i:i + M].count(0) != len(data[i:i + M])))
PY
)
metadata=$(( $(cat "$SERVED/manifest" "$SERVED/manifest.sig" 2>/dev/null | wc -c) + DISK_SIZE / 1024 +
  $(awk '$1 == "content-index" || $1 == "held-table" { sum += $4 } END { print sum + 0 }' "$SERVED/manifest") ))
bound=$((content + MiB + 2 * metadata))
[ "$fetched" -gt "$content" ] || fail "sync: the access log shows $fetched bytes, less than the $content bytes synced"
[ "$fetched" -le "$bound" ] ||
  fail "sync: $fetched bytes downloaded over both boots, more than $content of content + one 1 MiB piece + 2 x $metadata of indexes"
pass "cut and booted again: v2 byte for byte, $fetched bytes downloaded over both boots for $content of content (bound: + one piece + 2 x $metadata of indexes)"
echo "stream_e2e: $CHECKS checks passed"
