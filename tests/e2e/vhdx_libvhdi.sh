# Troy against libvhdi, a VHDX reader it shares no code with, on .avhdx chains
# from the independent writer: every level Troy converts equals libvhdi's
# reading block by block, except where libvhdi reads a ZERO or UNMAPPED block
# from the parent (its known deviation from [MS-VHDX]; vhdx_chains.sh checks
# Troy's zeros there against the writer). Also runs the writer's own
# self-test against qemu-img and libvhdi, so the writer the other cases rely
# on is itself proven.
source "$(dirname "$0")/common.sh"
/usr/bin/python3 -c 'import pyvhdi' 2>/dev/null || fail "python3-libvhdi not installed (make deps)"

while read -r name options; do
  rm -rf "$name" "$name-troy"
  mkdir -p "$name-troy"
  # shellcheck disable=SC2086
  $MAKE_VHDX chain "$name" $options >/dev/null
  python3 - "$name/manifest.json" >levels <<'PY'
import json, sys
for level in json.load(open(sys.argv[1]))["levels"]:
    print(level["file"], level["raw"])
PY
  while read -r file raw; do
    "$TROY" convert "$name/$file" "$name-troy/$raw" 2>stderr || { cat stderr >&2; fail "convert $name/$file"; }
  done <levels
  result=$(/usr/bin/python3 "$ROOT/fixtures/libvhdi_chain.py" "$name" --raw-from "$name-troy") ||
    { echo "$result" >&2; fail "$name: troy and libvhdi disagree"; }
  pass "$name ($options): $result"
done <<'CASES'
plain --seed 21 --layers 3
sectors4k --seed 22 --layers 2 --sector-size 4096
blocks2m --seed 23 --layers 3 --block-size 2M --size 9M
fixedbase --seed 24 --layers 2 --base fixed --identical-headers
unmapped5 --seed 25 --layers 2 --unmapped-value 5 --subdir
CASES

bash "$ROOT/fixtures/check_make_vhdx.sh" >selftest.log 2>&1 || { cat selftest.log >&2; fail "make_vhdx.py self-test"; }
pass "make_vhdx.py agrees with qemu-img and libvhdi ($(grep -c '^  ok' selftest.log) checks)"
finish
