# troy apply refuses, with one error line, exit 2 and the target's bytes
# unchanged (sha256 before and after): a disk that does not hold the delta's
# base (one byte off, another machine's disk, the new state of another
# delta), a target smaller than the disk, a target that is a file of the
# chain, a missing parent without --base-hashes, --since naming no ancestor,
# bad --exclude and --keep-partition values. A disk that an interrupted
# apply of the same delta partly updated is accepted and completed.
source "$(dirname "$0")/common.sh"
source "$ROOT/tests/e2e/apply/lib.sh"

make_disk state1.raw 16 31
make_changed state1.raw state2.raw 20 32
make_disk other.raw 16 33
"$TROY" capture --block-size 1M state1.raw base.vhdx 2>/dev/null
"$TROY" diff base.vhdx state2.raw -o monday.avhdx 2>/dev/null
"$TROY" capture --block-size 1M other.raw other.vhdx 2>/dev/null

# expect_refused TARGET WORD... -- ARGS...: apply ARGS exits 2 with one error
# line naming every WORD, and TARGET keeps its sha256.
expect_refused() {
  local target=$1 words=()
  shift
  while [ "$1" != -- ]; do words+=("$1"); shift; done
  shift
  local before
  before=$(sha "$target")
  expect_exit 2 "$TROY" apply "$@"
  expect_error_line "${words[@]}"
  [ "$(sha "$target")" = "$before" ] || fail "refused, but $target changed: apply $*"
  if ls .*.troy-apply >/dev/null 2>&1; then fail "refused, but a journal was written: apply $*"; fi
}

# The wrong base: one byte off inside the delta, at a known offset.
first=$(python3 -c '
import sys
a, b = open("state1.raw", "rb").read(), open("state2.raw", "rb").read()
print(next(i for i in range(len(a)) if a[i] != b[i]))')
cp state1.raw wrong.raw
printf '\x5a' | dd of=wrong.raw bs=1 seek=$((first + 3)) conv=notrunc status=none
# (a byte the delta does not change at that offset would equal new content in
# neither case: the sector is foreign)
expect_refused wrong.raw "wrong.raw" "offset $(( (first + 3) / 512 * 512 ))" "nothing was written" -- monday.avhdx wrong.raw
pass "one byte of another content inside the delta: refused, naming the sector's offset"
cp other.raw wrong.raw
expect_refused wrong.raw wrong.raw "neither" -- monday.avhdx wrong.raw
pass "another machine's disk: refused, unchanged"
cp state2.raw newer.raw
printf '\x01' | dd of=newer.raw bs=1 seek=$((first + 3)) conv=notrunc status=none
expect_refused newer.raw newer.raw -- monday.avhdx newer.raw
pass "a disk that went on changing after the new state: refused"

# A partly updated disk (what an interrupted run leaves: each sector old or
# new, here the first half of the disk new) is completed.
cp state1.raw partly.raw
dd if=state2.raw of=partly.raw bs=1M count=8 conv=notrunc status=none
apply_ok monday.avhdx partly.raw --report report.json
expect_same partly.raw state2.raw "a partly updated disk"
[ "$(json_field report.json skipped)" -gt 0 ] || fail "a partly updated disk: nothing skipped"
pass "a disk half updated by an earlier run is recognised and completed, skipping what is there"

# Sizes, identity, options.
head -c $(((16 << 20) - 512)) state1.raw >small.raw
expect_refused small.raw small.raw "smaller" -- monday.avhdx small.raw
expect_refused base.vhdx base.vhdx "chain" -- monday.avhdx base.vhdx
cp state1.raw target.raw
expect_refused target.raw "--since" "not a layer" -- monday.avhdx target.raw --since other.vhdx
expect_refused target.raw "--since" "image itself" -- monday.avhdx target.raw --since monday.avhdx
expect_refused target.raw "--exclude" -- monday.avhdx target.raw --exclude 1M
expect_refused target.raw "--exclude" "sectors" -- monday.avhdx target.raw --exclude 100:512
expect_refused target.raw "--keep-partition 1" "no partition table" -- monday.avhdx target.raw --keep-partition 1
expect_refused target.raw "not a block device or a regular file" -- monday.avhdx .
mkdir alone && cp monday.avhdx alone/ && mv base.vhdx hidden.vhdx
expect_refused target.raw "parent not found" "--base-hashes" -- alone/monday.avhdx target.raw
expect_refused target.raw "parent not found" -- alone/monday.avhdx target.raw --full
mv hidden.vhdx base.vhdx
pass "smaller target, a file of the chain, bad --since, --exclude and --keep-partition, a missing parent: refused"

# --no-verify-base writes even over a foreign disk (its one use: a disk
# known to hold the base although it does not compare, e.g. after fsck).
cp other.raw wrong.raw
apply_ok monday.avhdx wrong.raw --no-verify-base
grep -q "no-verify-base" "$WORK/stderr" || fail "--no-verify-base: no warning"
pass "--no-verify-base writes the delta without checking, with a warning"
finish
