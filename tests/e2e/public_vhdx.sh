# The VHDX samples under ../shared/fixtures/public/qemu give the sha256 listed
# in ../shared/README.md, the Hyper-V dirty-log sample as replayed, and no
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

# Hyper-V left a log entry unapplied: Troy reads the replayed content, says
# so, and leaves the file as it was (the hash without replay is cc3d67a6...).
dirty=$(public_fixture qemu/iotest-dirtylog-10G-4M.vhdx)
expect_sha "$dirty" 179cefe8b0587f123393eedf2aa7aa8d25798591178e6bc3950a09762f38f96f
"$TROY" info "$dirty" 2>stderr | grep -q "^log: *dirty: 1 entry" || fail "info does not show the dirty log"
grep -q "not yet applied" stderr || fail "no warning about the unapplied log"
expect_exit 0 "$TROY" check "$dirty"
grep -q "not yet applied" "$WORK/stderr" || fail "check does not report the dirty log"
pass "dirty log reported by info and check, not counted as a problem"
finish
