# capture and diff read block devices, not only files: a loop device over a
# raw disk. Skipped (exit 77, with the reason) where loop devices are not
# available, e.g. in unprivileged containers.
source "$(dirname "$0")/common.sh"
if [ "$(id -u)" != 0 ] || ! command -v losetup >/dev/null; then
  echo "skip: loop devices need root and losetup"
  exit 77
fi
make_random_raw disk.raw $((48 * 1048576 + 4096)) 11
cp --sparse=always disk.raw original.raw
loop=$(losetup -f --show disk.raw 2>/dev/null) || { echo "skip: cannot attach a loop device here"; exit 77; }
trap 'losetup -d "$loop" 2>/dev/null; rm -rf "$WORK"' EXIT

"$TROY" capture "$loop" base.vhdx 2>/dev/null
expect_converts_to base.vhdx original.raw
qemu-img convert -f vhdx -O raw base.vhdx qemu.raw
cmp -s qemu.raw original.raw || fail "qemu-img reads the captured image differently"
pass "capture of a loop device equals the disk, in troy and qemu-img"

# The teacher's change, written through the block device.
dd if=/dev/urandom of="$loop" bs=512 count=3 seek=777 conv=notrunc,fsync status=none
dd if=/dev/zero of="$loop" bs=1M count=2 seek=20 conv=notrunc,fsync status=none
"$TROY" diff base.vhdx "$loop" -o monday.avhdx 2>/dev/null
cp --sparse=always disk.raw changed.raw
expect_converts_to monday.avhdx changed.raw
pass "diff against a loop device stores the change"
finish
