# Only the delta travels: `troy fingerprint` records the base's hashes under
# the delta, and `troy apply --base-hashes` checks a disk against them with
# the parent out of reach. The right base is brought to the new state; a
# wrong one is refused unchanged; a half-updated one is completed; a
# fingerprint of another image, a truncated or edited one is refused.
source "$(dirname "$0")/common.sh"
source "$ROOT/tests/e2e/apply/lib.sh"

make_disk state1.raw 16 41
make_changed state1.raw state2.raw 20 42
"$TROY" capture --block-size 1M state1.raw base.vhdx 2>/dev/null
"$TROY" diff base.vhdx state2.raw -o monday.avhdx 2>/dev/null
"$TROY" fingerprint monday.avhdx -o monday.fp 2>/dev/null
expect_exit 2 "$TROY" fingerprint base.vhdx -o base.fp
expect_error_line "not a differencing image"
[ "$(head -1 monday.fp)" = "troy-fingerprint 1" ] || fail "the fingerprint's first line"
[ "$(stat -c %s monday.fp)" -lt 20000 ] || fail "the fingerprint is not compact: $(stat -c %s monday.fp) bytes"
pass "troy fingerprint writes $(grep -c '^[0-9]' monday.fp) piece hashes in $(stat -c %s monday.fp) bytes; a base image has none"

# The boot payload's view: the delta and the fingerprint, no parent.
mkdir payload && cp monday.avhdx monday.fp payload/ && mv base.vhdx hidden.vhdx
cp state1.raw target.raw
apply_ok payload/monday.avhdx target.raw --base-hashes payload/monday.fp --verify --report report.json
expect_same target.raw state2.raw "--base-hashes"
[ "$(json_field report.json base_check)" = hashes ] || fail "--base-hashes: base_check $(json_field report.json base_check)"
grep -q "applying the delta alone" "$WORK/stderr" || fail "--base-hashes: no note that the parent is missing"
pass "with only the delta and its fingerprint, the base becomes the new state (checked by hashes, verified)"

apply_ok payload/monday.avhdx target.raw --base-hashes payload/monday.fp --report report.json
[ "$(json_field report.json bytes_written)" = 0 ] || fail "--base-hashes: a second run wrote"
cp state1.raw partly.raw
dd if=state2.raw of=partly.raw bs=1M count=7 conv=notrunc status=none
apply_ok payload/monday.avhdx partly.raw --base-hashes payload/monday.fp
expect_same partly.raw state2.raw "--base-hashes, half updated"
pass "a second run writes nothing; a disk updated up to a piece boundary is completed"

# refused DESCRIPTION WORD... -- ARGS: exit 2, one error line, target unchanged.
refused() {
  local label=$1 words=()
  shift
  while [ "$1" != -- ]; do words+=("$1"); shift; done
  shift
  local before
  before=$(sha wrong.raw)
  expect_exit 2 "$TROY" apply "$@"
  expect_error_line "${words[@]}"
  [ "$(sha wrong.raw)" = "$before" ] || fail "$label: refused, but the target changed"
  pass "$label: refused, target unchanged"
}
make_disk wrong.raw 16 43
refused "another disk against the hashes" wrong.raw "neither" "fingerprint" -- payload/monday.avhdx wrong.raw --base-hashes payload/monday.fp
cp state1.raw wrong.raw
first=$(awk '/^[0-9]/ { print $1; exit }' monday.fp)
printf '\x5a\x5a' | dd of=wrong.raw bs=1 seek=$((first + 1000)) conv=notrunc status=none
refused "the base with two bytes changed" "offset $first" -- payload/monday.avhdx wrong.raw --base-hashes payload/monday.fp
head -n 5 monday.fp >truncated.fp
refused "a truncated fingerprint" truncated.fp "truncated" -- payload/monday.avhdx wrong.raw --base-hashes truncated.fp
sed '5s/^\([0-9]*\) /\1 1/' monday.fp >edited.fp
refused "an edited fingerprint" edited.fp "does not match" -- payload/monday.avhdx wrong.raw --base-hashes edited.fp
"$TROY" create --parent hidden.vhdx other.avhdx 2>/dev/null
"$TROY" fingerprint other.avhdx -o other.fp 2>/dev/null
refused "another image's fingerprint" other.fp "was made for" -- payload/monday.avhdx wrong.raw --base-hashes other.fp
refused "an exclusion cutting a piece" "cuts the fingerprint piece" -- payload/monday.avhdx wrong.raw --base-hashes payload/monday.fp --exclude "$first:512"
finish
