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
[ "$(head -1 monday.fp)" = "troy-fingerprint 2" ] || fail "the fingerprint's first line"
# Two 8-byte hashes (32 hex digits) per 4 KiB unit: under 1% of the delta's bytes.
delta_bytes=$(awk '/^[0-9]/ { total += $2 } END { print total }' monday.fp)
[ "$(stat -c %s monday.fp)" -lt $((delta_bytes / 100 + 4096)) ] || fail "the fingerprint is not compact: $(stat -c %s monday.fp) bytes for $delta_bytes"
pass "troy fingerprint writes $(grep -c '^[0-9]' monday.fp) pieces of unit hashes in $(stat -c %s monday.fp) bytes for $delta_bytes bytes of delta; a base image has none"

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

# A power cut tears pieces: some 4 KiB units written, others not. Without any
# journal (the boot payload keeps it in RAM), the unit hashes recognise them.
cp state1.raw torn.raw
python3 - monday.fp state2.raw torn.raw <<'PY'
import sys
pieces = [tuple(map(int, line.split()[:2])) for line in open(sys.argv[1]) if line[:1].isdigit()]
with open(sys.argv[2], "rb") as new, open(sys.argv[3], "r+b") as disk:
    for index, (offset, length) in enumerate(pieces):
        if index % 2 == 0:  # every other piece: its first half of 4 KiB units new, then every third unit
            for unit in range(offset // 4096 * 4096, offset + length, 4096):
                start, end = max(unit, offset), min(unit + 4096, offset + length)
                if unit < offset + length // 2 or unit // 4096 % 3 == 0:
                    new.seek(start); disk.seek(start); disk.write(new.read(end - start))
PY
rm -f .torn.raw.troy-apply
[ "$("$TROY" fingerprint --check monday.fp torn.raw 2>/dev/null)" = partial ] || fail "--check on a torn disk: not partial"
apply_ok payload/monday.avhdx torn.raw --base-hashes payload/monday.fp --report report.json
expect_same torn.raw state2.raw "--base-hashes, torn pieces, no journal"
pass "pieces torn unit by unit are completed without a journal"

# --check: one word for what a disk holds under the delta, nothing written.
for case in "state1.raw base" "state2.raw new" "partly.raw new" "wrong.raw foreign"; do
  set -- $case
  [ -f "$1" ] || make_disk wrong.raw 16 43
  before=$(sha "$1")
  word=$("$TROY" fingerprint --check payload/monday.fp "$1" 2>"$WORK/stderr") || fail "--check $1 failed: $(cat "$WORK/stderr")"
  [ "$word" = "$2" ] || fail "--check $1: '$word', expected '$2'"
  [ "$(sha "$1")" = "$before" ] || fail "--check changed $1"
done
cp state1.raw half.raw
dd if=state2.raw of=half.raw bs=1M count=7 conv=notrunc status=none
[ "$("$TROY" fingerprint --check monday.fp half.raw 2>/dev/null)" = partial ] || fail "--check on a half-applied disk"
expect_exit 2 "$TROY" fingerprint --check monday.fp
expect_exit 2 "$TROY" fingerprint --check truncated-missing.fp state1.raw
pass "fingerprint --check tells base, new, partial and foreign, reading only"

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
unit=$(( (first + 1000) / 4096 * 4096 )); (( unit > first )) || unit=$first
refused "the base with two bytes changed" "offset $unit" -- payload/monday.avhdx wrong.raw --base-hashes payload/monday.fp
head -n 7 monday.fp >truncated.fp
refused "a truncated fingerprint" truncated.fp "truncated" -- payload/monday.avhdx wrong.raw --base-hashes truncated.fp
awk 'NR == 6 { $3 = ($3 ~ /^0/ ? "1" : "0") substr($3, 2) } 1' monday.fp >edited.fp  # one base hash digit
refused "an edited fingerprint" edited.fp "does not match" -- payload/monday.avhdx wrong.raw --base-hashes edited.fp
"$TROY" create --parent hidden.vhdx other.avhdx 2>/dev/null
"$TROY" fingerprint other.avhdx -o other.fp 2>/dev/null
refused "another image's fingerprint" other.fp "was made for" -- payload/monday.avhdx wrong.raw --base-hashes other.fp
refused "an exclusion cutting a piece" "cuts the fingerprint piece" -- payload/monday.avhdx wrong.raw --base-hashes payload/monday.fp --exclude "$first:512"
finish
