# Native-VHD-boot labs end to end (issue 15, docs/vhdboot.md): QEMU boots
# classroom machines over the network whose disk holds an NTFS partition
# (made with mkntfs, found by the manifest's rule number=2,label=TROY) with
# troy/base.vhdx at v1 and troy/student.vhdx, a child with the student's
# writes. The payload (troy update on a `layout vhdboot` manifest) mounts it
# with ntfs-3g, downloads the v2 delta beside the base, merges it and gives
# the student a fresh child. Read back on the host (ntfs-3g on the partition's
# bytes): the base reads as v2 in qemu-img and libvhdi, troy check is clean,
# the child is fresh and empty; a second boot writes neither file; QEMU killed
# in the middle of the merge, then booted again, ends at v2 byte for byte; a
# base that is not the published one is refused and unchanged.
#   bash tests/lab/vhdboot_e2e.sh TROY
# One payload build; the boots run two or three at a time.
source "$(dirname "$0")/../e2e/common.sh"
source "$(dirname "$0")/boot_lib.sh"

for tool in qemu-system-x86_64 lighttpd busybox openssl cpio depmod mkntfs ntfs-3g qemu-img; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool is missing (bash scripts/install-deps.sh)"; exit 77; }
done
[ -f /usr/share/qemu/pxe-virtio.rom ] || [ -f /usr/lib/ipxe/qemu/pxe-virtio.rom ] ||
  { echo "SKIP: QEMU's iPXE NIC ROMs are missing (apt-get install ipxe-qemu)"; exit 77; }
[ "$(id -u)" = 0 ] && [ -e /dev/fuse ] || { echo "SKIP: needs root and /dev/fuse (ntfs-3g reads the partition back)"; exit 77; }
/usr/bin/python3 -c 'import pyvhdi' 2>/dev/null || { echo "SKIP: python3-libvhdi is missing"; exit 77; }

MiB=1048576
BOOT_TIMEOUT=${TROY_BOOT_TIMEOUT:-300}
PART_START=$((9 * MiB))     # partition 2: NTFS from 9 MiB to the disk's end
DISK_BYTES=$((200 * MiB))
MNT=$WORK/mnt
mkdir -p "$MNT"

# --- the images: v1, v2 (the teacher's change), the student's writes, another lab's base ---
python3 - <<'PY'
import random
r = random.Random(1515); M = 1 << 20
b = bytearray(32 * M)
for _ in range(6):
    o = r.randrange(0, 31) * M; b[o:o + M] = r.randbytes(M)
open('v1.raw', 'wb').write(b)
b[8 * M:11 * M] = r.randbytes(3 * M)  # the teacher's change: 3 MiB, and 30 runs in the 4th
for _ in range(30):
    n = r.randrange(1, 9) * 4096; o = 11 * M + r.randrange(0, M - n) // 4096 * 4096
    b[o:o + n] = r.randbytes(n)
open('v2.raw', 'wb').write(b)
s = bytearray(open('v1.raw', 'rb').read())
for _ in range(8):
    o = r.randrange(0, 32 * M - 8192) // 512 * 512; s[o:o + 8192] = r.randbytes(8192)
open('student.raw', 'wb').write(s)
f = bytearray(open('v1.raw', 'rb').read()); f[5 * M:5 * M + 4096] = r.randbytes(4096)
open('foreign.raw', 'wb').write(f)
PY
"$TROY" capture v1.raw base.vhdx -q
mkdir teacher && cp base.vhdx teacher/   # the teacher's copy: the delta's locators name it
"$TROY" diff teacher/base.vhdx v2.raw -o teacher/v2.vhdx --block-size 1M -q
"$TROY" capture foreign.raw foreign.vhdx -q

openssl genpkey -algorithm ed25519 -out lab.key 2>/dev/null
openssl pkey -in lab.key -pubout -out lab.pub
SERVED=$WORK/served
mkdir -p "$SERVED"
"$TROY" publish --dir "$SERVED" --key lab.key --name v1 --disk "size=$DISK_BYTES serial=LAB-PC-*" \
  --vhd-boot number=2,label=TROY troy/base.vhdx troy/student.vhdx base.vhdx -q
"$TROY" publish --dir "$SERVED" --key lab.key --name v2 teacher/v2.vhdx -q
grep -qx "layout vhdboot number=2,label=TROY troy/base.vhdx troy/student.vhdx reset" "$SERVED/manifest" ||
  fail "troy publish --vhd-boot did not write the layout line: $(grep layout "$SERVED/manifest")"
pass "troy publish --vhd-boot signed a native-VHD-boot manifest"

# --- a machine's disk: MBR, partition 1 (8 MiB, not NTFS), partition 2 NTFS 'TROY' ---
partition_image() {  # NAME BASE-IMAGE: the NTFS partition's bytes with troy/base.vhdx and a student child
  truncate -s $((DISK_BYTES - PART_START)) "$1"
  mkntfs -F -Q -q -L TROY -p $((PART_START / 512)) -H 255 -S 63 "$1" >/dev/null 2>&1 || fail "mkntfs failed"
  ntfs-3g -o rw,nocompression "$1" "$MNT"
  mkdir -p "$MNT/troy"
  cp "$2" "$MNT/troy/base.vhdx"
  "$TROY" diff "$MNT/troy/base.vhdx" student.raw -o "$MNT/troy/student.vhdx" -q
  umount "$MNT"
}
make_disk() {  # DISK PARTITION-IMAGE
  python3 - "$1" "$DISK_BYTES" "$PART_START" <<'PY'
import struct, sys
path, size, start = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
mbr = bytearray(512)
def entry(kind, first, count):
    return struct.pack('<B3sB3sII', 0, b'\xff\xff\xff', kind, b'\xff\xff\xff', first, count)
mbr[446:462] = entry(0x83, 2048, 16384)
mbr[462:478] = entry(0x07, start // 512, (size - start) // 512)
mbr[510:512] = b'\x55\xaa'
with open(path, 'wb') as disk:
    disk.truncate(size)
    disk.write(mbr)
PY
  dd if="$2" of="$1" bs=1M seek=$((PART_START / MiB)) conv=notrunc,sparse status=none
}
# read_back DISK DIR: the partition's troy/ folder copied out to DIR.
read_back() {
  rm -rf "$2" && mkdir -p "$2"
  dd if="$1" of=part.out bs=1M skip=$((PART_START / MiB)) status=none
  ntfs-3g -o ro part.out "$MNT" || fail "ntfs-3g cannot mount the partition of $1 after the boot"
  cp -a "$MNT/troy/." "$2/"
  umount "$MNT"
  rm -f part.out
}

partition_image lab.part base.vhdx
partition_image foreign.part foreign.vhdx
make_disk start.raw lab.part
read_back start.raw start
START_BASE=$(sha start/base.vhdx)

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
bash "$ROOT/initramfs/build.sh" --troy "$TROY" --key lab.pub --out "$SERVED/boot" \
  --cache "${TROY_PAYLOAD_CACHE:-$ROOT/build/payload-cache}" \
  --http-url "http://\${next-server}:$PORT" --kernel-args "console=ttyS0 troy.then=poweroff troy.wait=0" 2>payload.log ||
  { cat payload.log >&2; fail "the payload did not build"; }
pass "payload built (ntfs-3g and fuse in it)"
bash "$ROOT/pxe/serve.sh" --served "$SERVED" --troy "$TROY" --http-port "$PORT" --http-bind 127.0.0.1 --no-dhcp 2>serve.log &
SERVER_PID=$!
# Every QEMU writes its pid file: a failed check stops the others too. The
# server's lighttpd first: pxe/serve.sh waits on it and would leave it running.
# (|| true throughout: errexit holds in the trap, and most QEMUs are gone.)
trap 'for pidfile in "$WORK"/*.pid; do kill -9 "$(cat "$pidfile")" 2>/dev/null || true; done
      pkill -P $SERVER_PID 2>/dev/null || true; kill $SERVER_PID 2>/dev/null || true; wait 2>/dev/null || true
      mountpoint -q "$MNT" && umount "$MNT"; rm -rf "$WORK"' EXIT
for _ in $(seq 50); do
  busybox wget -q -O /dev/null "http://127.0.0.1:$PORT/manifest" 2>/dev/null && break
  sleep 0.1
done

# qemu_command CASE MAC DISK [DRIVE OPTIONS]: sets QEMU to one boot, to power-off.
# BOOT_BY=pxe: the whole network boot (iPXE, TFTP, the server's per-machine
# script, the payload over HTTP), which the update case takes; the others
# start the payload directly with the server's kernel arguments (boot_lib.sh).
qemu_command() {
  local start=(-boot n)
  if [ "${BOOT_BY:-}" != pxe ]; then
    direct_boot "$SERVED" "http://10.0.2.2:$PORT"
    start=("${DIRECT_BOOT[@]}")
  fi
  QEMU=(qemu-system-x86_64 -accel tcg -m 512 -nographic -no-reboot "${start[@]}" -pidfile "$WORK/$1.pid"
    -netdev "user,id=net0,tftp=$SERVED/boot,bootfile=boot.ipxe" -device "virtio-net-pci,netdev=net0,mac=$2"
    -drive "file=$3,format=raw,if=none,id=disk0${4:-}" -device virtio-blk-pci,drive=disk0,serial=LAB-PC-0001)
}
boot() {
  local QEMU
  qemu_command "$@"
  timeout "$BOOT_TIMEOUT" "${QEMU[@]}" >"$1.console" 2>&1 </dev/null || {
    tail -n 40 "$1.console" >&2
    fail "$1: the machine did not power off by itself within $BOOT_TIMEOUT s"
  }
}
report_field() {
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' \
    "$SERVED/reports/${1//:/-}.json" "$2" 2>/dev/null
}
expect_report() {  # CASE MAC RESULT WORDS
  [ "$(report_field "$2" result)" = "$3" ] ||
    { tail -n 30 "$1.console" >&2; fail "$1: the report says '$(report_field "$2" result)', expected $3"; }
  report_field "$2" message | grep -qF -- "$4" || fail "$1: the report's message '$(report_field "$2" message)' lacks '$4'"
}
libvhdi_reads() {  # RAW IMAGE
  /usr/bin/python3 - "$1" "$2" <<'PY' || fail "libvhdi: $2 does not read as $1"
import sys, pyvhdi
f = pyvhdi.file(); f.open(sys.argv[2])
want = open(sys.argv[1], 'rb').read()
assert f.get_media_size() == len(want), "size"
assert f.read_buffer_at_offset(len(want), 0) == want, "bytes"
PY
}
is_v2_with_fresh_child() {  # CASE DIR
  qemu-img convert -f vhdx -O raw "$2/base.vhdx" "$2/base.raw" && cmp -s "$2/base.raw" v2.raw ||
    { tail -n 30 "$1.console" >&2; fail "$1: the base does not read as v2 in qemu-img"; }
  libvhdi_reads v2.raw "$2/base.vhdx"
  "$TROY" check "$2/base.vhdx" -q || fail "$1: troy check finds fault with the base"
  "$TROY" check "$2/student.vhdx" -q || fail "$1: troy check finds fault with the child"
  python3 - "$2" <<PY || fail "$1: the child is not a fresh empty child of the base"
import json, subprocess, sys
info = lambda p: json.loads(subprocess.run(["$TROY", "info", "--json", p], check=True, capture_output=True).stdout)
child, base = info(sys.argv[1] + "/student.vhdx"), info(sys.argv[1] + "/base.vhdx")
top, parent = child["chain"][0], child["chain"][1]
assert top["allocated_blocks"] == 0, top
assert parent["link"]["verified"] and parent["link"]["expected_id"] == base["chain"][0]["id"], parent["link"]
PY
  [ ! -e "$2/troy-deltas" ] || fail "$1: the downloaded delta was left on the partition"
}

# --- 1. v1 + a student's writes -> v2 and a fresh child; meanwhile a foreign
#        base, and a machine killed in the middle of its merge ---
cp start.raw update.raw
make_disk foreign-disk.raw foreign.part
read_back foreign-disk.raw foreign-before
cp start.raw killed.raw
BOOT_BY=pxe boot update 52:54:00:15:00:01 update.raw & UPDATE_PID=$!
boot foreign 52:54:00:15:00:04 foreign-disk.raw & FOREIGN_PID=$!
# Writes slowed to 1 MiB/s so that the merge takes a few seconds.
qemu_command killed 52:54:00:15:00:03 killed.raw ",throttling.bps-write=1048576"
"${QEMU[@]}" >killed.console 2>&1 </dev/null &
KILLED_PID=$!
for _ in $(seq $((BOOT_TIMEOUT * 10))); do
  grep -q 'merging .* into' killed.console && break
  kill -0 $KILLED_PID 2>/dev/null || break
  sleep 0.1
done
grep -q 'merging .* into' killed.console || { tail -n 30 killed.console >&2; fail "kill: the merge never started"; }
sleep 1
kill -9 $KILLED_PID
wait $KILLED_PID 2>/dev/null || true
grep -q 'TROY: OK' killed.console && fail "kill: the merge had finished before the kill (the test would prove nothing)"
wait $UPDATE_PID || fail "update: the boot failed"
wait $FOREIGN_PID || fail "foreign: the boot failed"

read_back update.raw after
is_v2_with_fresh_child update after
expect_report update 52:54:00:15:00:01 ok "brought to v2"
grep -q "Troy: loading the boot payload from http://10.0.2.2:$PORT" update.console ||
  { tail -n 40 update.console >&2; fail "update: the machine did not boot through iPXE and the server's boot script"; }
pass "network boot (iPXE, the server's script, the payload over HTTP): the base merged to v2 (qemu-img, libvhdi, troy check), the student's child fresh and empty"
busybox wget -q -O next.ipxe "http://127.0.0.1:$PORT/cgi-bin/boot?mac=52-54-00-15-00-01&platform=pcbios"
grep -q sanboot next.ipxe || fail "right after its report, the machine's reboot is not to its local disk: $(cat next.ipxe)"
pass "the reboot right after the report goes to the local disk (later boots: the payload, which resets the child)"

read_back foreign-disk.raw foreign-after
[ "$(sha foreign-after/base.vhdx)" = "$(sha foreign-before/base.vhdx)" ] || fail "foreign: the base was written"
[ "$(sha foreign-after/student.vhdx)" = "$(sha foreign-before/student.vhdx)" ] || fail "foreign: the child was written"
expect_report foreign 52:54:00:15:00:04 error "no version this lab published"
pass "a base that is not the published one is refused, base and child unchanged"

read_back killed.raw killed
[ -e killed/.base.vhdx.troy-merge ] || [ "$(sha killed/base.vhdx)" != "$START_BASE" ] ||
  fail "kill: neither a merge journal nor a changed base: the kill came before the merge"
pass "QEMU killed in the middle of the merge"

# --- 2. the same disk booted again writes nothing; the killed one finishes ---
AFTER_BASE=$(sha after/base.vhdx) AFTER_CHILD=$(sha after/student.vhdx)
boot second 52:54:00:15:00:02 update.raw & SECOND_PID=$!
boot resumed 52:54:00:15:00:03 killed.raw & RESUMED_PID=$!
wait $SECOND_PID || fail "second: the boot failed"
wait $RESUMED_PID || fail "resumed: the boot failed"
read_back update.raw second
[ "$(sha second/base.vhdx)" = "$AFTER_BASE" ] && [ "$(sha second/student.vhdx)" = "$AFTER_CHILD" ] ||
  fail "second: a boot of a current machine with a fresh child wrote the base or the child"
expect_report second 52:54:00:15:00:02 ok "already holds v2"
pass "a second boot writes neither the base nor the child"
read_back killed.raw resumed
is_v2_with_fresh_child resumed resumed
expect_report resumed 52:54:00:15:00:03 ok "brought to v2"
pass "the boot after the kill finished the merge: the base reads v2 byte for byte, the child fresh"

echo "vhdboot_e2e: $CHECKS checks passed"
