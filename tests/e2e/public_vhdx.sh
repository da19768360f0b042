# The VHDX samples under ../shared/fixtures/public/qemu give the sha256 listed
# in ../shared/README.md, the dirty-log sample as replayed, and no
# read-only command changes a byte of any of them.
source "$(dirname "$0")/common.sh"

expect_sha() {
  local image=$1 want=$2
  local before
  before=$(sha "$image")
  "$TROY" convert "$image" out.raw --overwrite 2>stderr || { cat stderr >&2; fail "convert $image"; }
  local got
  got=$(sparse_sha out.raw)
  [ "$got" = "$want" ] || fail "$(basename "$image"): sha256 $got, expected $want"
  for command in info check; do
    "$TROY" $command "$image" >/dev/null 2>&1 || fail "troy $command $(basename "$image") failed"
  done
  "$TROY" info --json "$image" >/dev/null 2>&1 || fail "troy info --json $(basename "$image") failed"
  [ "$(sha "$image")" = "$before" ] || fail "$(basename "$image") was modified by a read"
  rm -f out.raw
  pass "$(basename "$image")"
}

expect_sha "$(public_fixture qemu/iotest-dynamic-1G.vhdx)" d3d112d8dab7fd360609f7d5a7b769904b7a2a7d7b6b8c535f65a23293c05478
# disk2vhd writes both headers identical, with the same sequence number.
disk2vhd=$(public_fixture qemu/test-disk2vhd.vhdx)
expect_sha "$disk2vhd" 96d964042be9b58dda1725567abfb0cf9fd8380e2118754afa979c2ad445938a
"$TROY" info "$disk2vhd" | grep -q "headers 1 and 2 identical" || fail "info does not show the identical headers"
pass "identical headers shown"

# A log entry left unapplied (the file was written by qemu 1.6, not Hyper-V): Troy reads the replayed content, says
# so, and leaves the file as it was (the hash without replay is cc3d67a6...).
dirty=$(public_fixture qemu/iotest-dirtylog-10G-4M.vhdx)
expect_sha "$dirty" 179cefe8b0587f123393eedf2aa7aa8d25798591178e6bc3950a09762f38f96f
"$TROY" info "$dirty" 2>stderr | grep -q "^log: *dirty: 1 entry" || fail "info does not show the dirty log"
grep -q "not yet applied" stderr || fail "no warning about the unapplied log"
expect_exit 0 "$TROY" check "$dirty"
grep -q "not yet applied" "$WORK/stderr" || fail "check does not report the dirty log"
pass "dirty log reported by info and check, not counted as a problem"

# check --replay-log writes the log into the file, as Hyper-V does on open:
# afterwards qemu-img (which refuses the dirty file read-only) reads the same
# content, and every byte after the header section equals qemu's own replay.
command -v qemu-img >/dev/null || fail "qemu-img not installed (make deps)"
cp "$dirty" ours.vhdx
cp "$dirty" theirs.vhdx
expect_exit 0 "$TROY" check --replay-log ours.vhdx
grep -q "replayed 1 log entry" "$WORK/stderr" || fail "check --replay-log did not say what it did"
qemu-img check -q -r all theirs.vhdx >/dev/null
qemu-img check -q ours.vhdx || fail "qemu-img check fails after troy's replay"
qemu-img convert -f vhdx -O raw ours.vhdx qemu.raw
[ "$(sparse_sha qemu.raw)" = 179cefe8b0587f123393eedf2aa7aa8d25798591178e6bc3950a09762f38f96f ] ||
  fail "qemu-img reads troy's replayed file differently"
cmp -s <(tail -c +1048577 ours.vhdx) <(tail -c +1048577 theirs.vhdx) || fail "troy's replay differs from qemu's"
"$TROY" info ours.vhdx | grep -q "^log: *clean" || fail "log still dirty after replay"
"$TROY" info ours.vhdx | grep -q "^data_write_guid: *5ab1b2ee-2f64-2e40-8a9b-0f0bcfdcd544" ||
  fail "replay changed the DataWriteGuid (children would lose their parent)"
before=$(sha ours.vhdx)
expect_exit 0 "$TROY" check --replay-log ours.vhdx
grep -q "needs no replay" "$WORK/stderr" || fail "second replay did not say there was nothing to do"
[ "$(sha ours.vhdx)" = "$before" ] || fail "a second replay changed the file"
pass "check --replay-log replays into the file like qemu, keeps the DataWriteGuid, and is idempotent"

# A crash after the replayed writes reached the disk but before the headers
# were rewritten: the old headers still name the log, and replaying again
# ends with the same bytes.
cp ours.vhdx crashed.vhdx
dd if="$dirty" of=crashed.vhdx bs=1M count=1 conv=notrunc status=none
"$TROY" info crashed.vhdx 2>/dev/null | grep -q "^log: *dirty" || fail "simulated crash did not restore the dirty headers"
expect_exit 0 "$TROY" check --replay-log crashed.vhdx
cmp -s <(tail -c +1048577 crashed.vhdx) <(tail -c +1048577 ours.vhdx) || fail "replay after a crash gave other bytes"
pass "replay interrupted before the header update completes on the next run"
finish
