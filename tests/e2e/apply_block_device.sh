# troy apply onto block devices (loop devices): without a terminal it writes
# only with --yes; on a terminal it shows the device and asks; the delta and
# --full (zeroing through BLKZEROOUT) give the new state; a device that is
# mounted, or whose partition is mounted, is refused with one line and left
# unchanged. Skipped (exit 77, with the reason) where loop devices are not
# available, e.g. in unprivileged containers.
source "$(dirname "$0")/common.sh"
source "$ROOT/tests/e2e/apply/lib.sh"
if [ "$(id -u)" != 0 ] || ! command -v losetup >/dev/null; then
  echo "skip: loop devices need root and losetup"
  exit 77
fi
make_disk state1.raw 32 71
make_changed state1.raw state2.raw 30 72
"$TROY" capture --block-size 1M state1.raw base.vhdx 2>/dev/null
"$TROY" diff base.vhdx state2.raw -o monday.avhdx 2>/dev/null
cp state1.raw disk.raw
LOOPS=()
cleanup() {
  umount "$WORK/mnt" 2>/dev/null || true
  local l
  for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
attach() { # [losetup options] FILE: sets LOOP to a new loop device (no subshell: the trap must know it)
  LOOP=$(losetup -f --show "$@" 2>/dev/null) || { echo "skip: cannot attach a loop device here"; exit 77; }
  LOOPS+=("$LOOP")
}
attach disk.raw
loop=$LOOP
# The loop device's content as the kernel sees it.
device_sha() { sha256sum "$1" | cut -d' ' -f1; }

before=$(device_sha "$loop")
expect_exit 2 "$TROY" apply monday.avhdx "$loop" --journal "$WORK/journal" </dev/null
expect_error_line "$loop" "--yes"
[ "$(device_sha "$loop")" = "$before" ] || fail "refused without --yes, but the device changed"
pass "a block device without a terminal and without --yes: refused, unchanged"

if command -v script >/dev/null; then
  echo no | script -qec "$TROY apply monday.avhdx $loop --journal $WORK/journal" /dev/null >typescript 2>&1 || true
  grep -q "Type yes" typescript || { cat typescript >&2; fail "no confirmation prompt on a terminal"; }
  grep -q "bytes" typescript || fail "the prompt does not show the device's size"
  grep -q "not confirmed" typescript || fail "answering no did not refuse"
  [ "$(device_sha "$loop")" = "$before" ] || fail "answered no, but the device changed"
  echo yes | script -qec "$TROY apply monday.avhdx $loop --journal $WORK/journal" /dev/null >typescript 2>&1 ||
    { cat typescript >&2; fail "answering yes failed"; }
  [ "$(device_sha "$loop")" = "$(sha state2.raw)" ] || fail "answered yes, but the device is not the new state"
  pass "on a terminal: the device is shown (backing file, size), no refuses, yes applies"
fi

cp state1.raw disk.raw && blockdev --flushbufs "$loop"
apply_ok monday.avhdx "$loop" --yes --verify --journal "$WORK/journal" --report report.json
[ "$(device_sha "$loop")" = "$(sha state2.raw)" ] || fail "delta onto $loop: not the new state"
[ "$(json_field report.json verification)" = passed ] || fail "delta onto $loop: not verified"
[ ! -e "$WORK/journal" ] || fail "the journal was left behind"
pass "delta onto a loop device with --yes: the new state, verified"

head -c $((32 << 20)) /dev/urandom >"$loop"
apply_ok base.vhdx "$loop" --yes --verify --journal "$WORK/journal" --report report.json
[ "$(device_sha "$loop")" = "$(sha state1.raw)" ] || fail "--full onto $loop: not the image"
[ "$(json_field report.json bytes_zeroed)" -gt 0 ] || fail "--full onto $loop: nothing zeroed"
pass "--full onto a loop device holding random bytes: the image, zeros by BLKZEROOUT, verified"

# A mounted device, and a disk whose partition is mounted.
if command -v mkfs.ext2 >/dev/null && mkdir -p mnt && truncate -s 8M fs.raw && mkfs.ext2 -q fs.raw 2>/dev/null; then
  attach fs.raw
  fsloop=$LOOP
  if mount "$fsloop" mnt 2>/dev/null; then
    sync
    before=$(device_sha "$fsloop") # (mounting itself writes the superblock: compare while mounted)
    expect_exit 2 "$TROY" apply base.vhdx "$fsloop" --yes --journal "$WORK/journal"
    expect_error_line "$fsloop" "mounted"
    [ "$(device_sha "$fsloop")" = "$before" ] || fail "a mounted device changed"
    umount mnt
    pass "a mounted device: refused, unchanged"
    python3 - part.raw <<'PY'
import struct, sys
disk = bytearray(40 << 20)
struct.pack_into("<B3xB3xII", disk, 446, 0, 0x83, 2048, 16384)
disk[510:512] = b"\x55\xaa"
open(sys.argv[1], "wb").write(disk)
PY
    attach -P part.raw
    partloop=$LOOP
    if [ -b "${partloop}p1" ] && mkfs.ext2 -q "${partloop}p1" 2>/dev/null && mount "${partloop}p1" mnt 2>/dev/null; then
      expect_exit 2 "$TROY" apply base.vhdx "$partloop" --yes --journal "$WORK/journal"
      expect_error_line "$partloop" "mounted"
      umount mnt
      pass "a disk whose partition is mounted: refused"
    else
      echo "note: no partition device for a loop device here; the mounted-partition case was not run"
    fi
  else
    echo "note: mount is not permitted here; the mounted cases were not run"
  fi
fi
finish
