# troy apply refuses a target that something else reads and writes (issue
# 19): a raw file behind a loop device (by device and inode, so also under
# another name), a file another program holds a lock on (as qemu does for a
# running VM's disk), and a loop device whose backing file is a file of the
# image's own chain. One error line naming the loop device, nothing written.
# Skipped (exit 77) where loop devices are not available.
source "$(dirname "$0")/common.sh"
source "$ROOT/tests/e2e/apply/lib.sh"
if [ "$(id -u)" != 0 ] || ! command -v losetup >/dev/null; then
  echo "skip: loop devices need root and losetup"
  exit 77
fi
make_disk state1.raw 16 81
make_changed state1.raw state2.raw 20 82
# Fixed: the base file is larger than the disk, so a loop device over it
# is large enough to take the apply.
"$TROY" capture --type fixed --block-size 1M state1.raw base.vhdx 2>/dev/null
"$TROY" diff base.vhdx state2.raw -o monday.avhdx 2>/dev/null
cp state1.raw disk.img
LOOPS=()
LOCKER=
cleanup() {
  [ -z "$LOCKER" ] || kill "$LOCKER" 2>/dev/null || true
  local l
  for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
attach() { # FILE: sets LOOP to a new loop device (no subshell: the trap must know it)
  LOOP=$(losetup -f --show "$1" 2>/dev/null) || { echo "skip: cannot attach a loop device here"; exit 77; }
  LOOPS+=("$LOOP")
}

# --- a raw file behind a loop device, under its own name and another ---
attach disk.img
ln disk.img alias.img
before=$(sha disk.img)
for target in disk.img alias.img; do
  expect_exit 2 "$TROY" apply --full --yes monday.avhdx "$target" --journal "$WORK/journal"
  expect_error_line "$target" "backs loop device $LOOP" "losetup -d"
  [ "$(sha disk.img)" = "$before" ] || fail "$target: refused, but the file changed"
done
pass "a file behind $LOOP is refused, also through a hard link; unchanged"

losetup -d "$LOOP"
apply_ok monday.avhdx disk.img --full --journal "$WORK/journal"
[ "$(sha disk.img)" = "$(sha state2.raw)" ] || fail "detached: the file is not the new state"
pass "once detached, the same apply writes the new state"

# --- a file another program holds a byte-range lock on, as qemu does ---
cp state1.raw vm.img
# exec: $! is the locker itself, so the kill below ends it (a function in the
# background would leave it holding ctest's output pipe for its whole sleep).
(exec /usr/bin/python3 - vm.img <<'PY') &
import fcntl, os, sys, time
f = open(sys.argv[1], "rb")
fcntl.lockf(f, fcntl.LOCK_SH, 1, 100)   # qemu's "perm" lock bytes start at 100
open(sys.argv[1] + ".locked", "w").close()
time.sleep(60)
PY
LOCKER=$!
for _ in $(seq 100); do [ -e vm.img.locked ] && break; sleep 0.1; done
expect_exit 2 "$TROY" apply --full --yes monday.avhdx vm.img --journal "$WORK/journal"
expect_error_line "vm.img" "lock"
[ "$(sha vm.img)" = "$(sha state1.raw)" ] || fail "vm.img: refused, but the file changed"
kill "$LOCKER" && wait "$LOCKER" 2>/dev/null || true
LOCKER=
pass "a file locked by another program (a running VM) is refused; unchanged"

# --- a loop device over a file of the image's own chain ---
attach base.vhdx
base_before=$(sha base.vhdx)
expect_exit 2 "$TROY" apply --full --yes monday.avhdx "$LOOP" --journal "$WORK/journal"
expect_error_line "$LOOP" "base.vhdx" "image's chain"
[ "$(sha base.vhdx)" = "$base_before" ] || fail "the chain's own parent changed"
pass "$LOOP over base.vhdx (the image's own parent) is refused; base.vhdx unchanged"
