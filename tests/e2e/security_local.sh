# Hostile or careless input on the admin's own machine (issue 19): names in
# images cannot drive the terminal; the parent search is not stopped by a
# locator naming a non-image and does not follow an absolute path given as a
# relative one; a zero-size image is reported, not blamed on --size; check's
# output stays short for a BAT of 65,024 bad entries; a FIFO given as a
# manifest, signature or key is refused at once instead of blocking.
source "$(dirname "$0")/common.sh"

# True when FILE holds a control byte other than the newline ending its lines.
has_raw_control() { LC_ALL=C grep -q $'[\x01-\x09\x0b-\x1f\x7f]' "$1"; }

# --- names in images reach the terminal escaped, --json keeps them exact ---
head -c $((4 << 20)) /dev/urandom >disk.raw
hostile=$'p\e[2J\r\nforged row.vhd'
"$TROY" capture disk.raw "$hostile" 2>/dev/null
head -c $((1 << 20)) /dev/urandom | dd of=disk.raw conv=notrunc status=none
"$TROY" diff "$hostile" disk.raw -o child.vhd 2>/dev/null
mv "$hostile" moved.vhd   # the child's locators and Parent Unicode Name now lead nowhere
expect_exit 2 "$TROY" convert child.vhd out.raw
expect_error_line "parent not found" 'p\x1b[2J\x0d\x0aforged row.vhd'
[ "$(wc -l <"$WORK/stderr")" = 1 ] || { cat -A "$WORK/stderr" >&2; fail "the error is split over several lines"; }
has_raw_control "$WORK/stderr" && { cat -A "$WORK/stderr" >&2; fail "raw control bytes in the error line"; }
pass "a parent name with ESC[2J and CR-LF: one error line, escaped"

expect_exit 2 "$TROY" info child.vhd
has_raw_control "$WORK/stdout" && { cat -A "$WORK/stdout" >&2; fail "info prints raw control bytes"; }
grep -qF 'parent name: p\x1b[2J\x0d\x0aforged row.vhd' "$WORK/stdout" || fail "info does not show the name escaped"
expect_exit 1 "$TROY" check child.vhd
has_raw_control "$WORK/stdout" && fail "check prints raw control bytes"
expect_exit 2 "$TROY" info child.vhd --json
python3 - "$WORK/stdout" "$hostile" <<'PY' || fail "info --json does not keep the exact name"
import json, sys
assert sys.argv[2] in json.load(open(sys.argv[1]))["chain_error"]
PY
pass "info and check text escape it; info --json keeps the exact name"

# --- the parent search goes past a locator naming a directory or a non-image ---
$MAKE_VHDX chain sub --seed 7 --layers 1 --size 8M --subdir >/dev/null   # relative_path .\parents\base.vhdx
$MAKE_VHD chain subv --seed 7 --layers 1 --size $((8 << 20)) --subdir >/dev/null    # W2ru .\parents\base.vhd
for pair in sub/layer1.avhdx:base.vhdx subv/layer1.vhd:base.vhd; do
  child=${pair%%:*} base=${pair##*:} dir=$(dirname "${pair%%:*}")
  mv "$dir/parents/$base" "$dir/$base"   # still found by the absolute locator's file name
  for blocker in directory text; do
    if [ $blocker = directory ]; then mkdir "$dir/parents/$base"; else echo lab-pc-07 >"$dir/parents/$base"; fi
    expect_exit 0 "$TROY" convert "$child" out.raw --overwrite
    cmp -s out.raw "$dir/layer1.raw" || fail "$child past a $blocker: wrong content"
    rm -rf "${dir:?}/parents/$base"
  done
  mv "$dir/$base" "$dir/elsewhere"   # now no locator verifies: every candidate is listed
  echo lab-pc-07 >"$dir/parents/$base"
  expect_exit 2 "$TROY" info "$child"
  expect_error_line "parent not found" "$dir/parents/$base (not a VHD or VHDX image" "$dir/$base"
  pass "$child: a locator naming a directory or a text file does not stop the search; all tried are listed"
done

# --- an absolute path in relative_path is not followed ---
# A VHDX child whose relative_path is ..\OTHER\b.vhdx, rewritten in place to
# an absolute path of the same length that names a real copy of its parent.
mkdir -p in abs
$MAKE_VHDX chain rel --seed 9 --layers 1 --size 8M --locators relative_path >/dev/null
absolute="$WORK/abs/b.vhdx"
other=$(printf 'o%.0s' $(seq $((${#absolute} - 10))))   # ..\OTHER\b.vhdx as long as $absolute
mkdir "$other" && cp rel/base.vhdx "$other/b.vhdx" && cp rel/base.vhdx abs/b.vhdx && cp rel/layer1.avhdx in/child.avhdx
expect_exit 0 "$TROY" relink in/child.avhdx "$other/b.vhdx"
python3 - in/child.avhdx "..\\$other\\b.vhdx" "${absolute//\//\\}" <<'PY'
import sys
path, old, new = sys.argv[1], sys.argv[2].encode("utf-16-le"), sys.argv[3].encode("utf-16-le")
assert len(old) == len(new), (old, new)
data = open(path, "rb").read()
assert data.count(old) >= 1, "relative_path not found"  # also in the log of the relink
open(path, "wb").write(data.replace(old, new))
PY
rm -r "$other"
expect_exit 2 "$TROY" info in/child.avhdx
grep -qF "locator relative_path: ${absolute//\//\\}" "$WORK/stdout" || fail "the rewrite did not take"
expect_exit 2 "$TROY" convert in/child.avhdx out.raw --overwrite
expect_error_line "parent not found" "an absolute path in a relative locator"
pass "an absolute path in relative_path is not followed out of the child's folder"

# --- a zero-size image: check says so, convert names the field, not --size ---
$MAKE_VHD dynamic --size $((1 << 20)) zero.vhd >/dev/null
python3 - zero.vhd <<'PY'
import struct, sys
path = sys.argv[1]
data = bytearray(open(path, "rb").read())
def zero_size(at):
    footer = data[at:at + 512]
    footer[48:56] = bytes(8)                       # Current Size
    footer[64:68] = bytes(4)
    footer[64:68] = struct.pack(">I", ~sum(footer) & 0xFFFFFFFF)
    data[at:at + 512] = footer
zero_size(0)
zero_size(len(data) - 512)
open(path, "wb").write(data)
PY
expect_exit 1 "$TROY" check zero.vhd
grep -q "zero.vhd: virtual size is 0 bytes (Current Size field)" "$WORK/stdout" || fail "check does not report the size"
for format in vhd vhdx; do
  expect_exit 2 "$TROY" convert -O $format zero.vhd zero-out.$format
  expect_error_line "zero.vhd" "Current Size"
  grep -q -- "--size" "$WORK/stderr" && fail "convert -O $format blames --size"
  [ ! -e zero-out.$format ] || fail "convert -O $format wrote an output"
done
pass "a zero-size image: check reports its Current Size, convert names the input's field"

# --- check's output is bounded: a BAT of 65,024 entries past the end ---
"$TROY" create --size 127G --block-size 2M bigbat.vhd 2>/dev/null
python3 - bigbat.vhd <<'PY'
import struct, sys
path = sys.argv[1]
with open(path, "r+b") as f:
    f.seek(512)
    header = f.read(1024)
    table, = struct.unpack(">Q", header[16:24])
    entries, = struct.unpack(">I", header[28:32])
    assert entries == 65024, entries
    f.seek(table)
    f.write(struct.pack(">I", 0x7FFF0000) * entries)
PY
expect_exit 1 "$TROY" check bigbat.vhd
lines=$(wc -l <"$WORK/stdout")
[ "$lines" -le 40 ] || fail "check printed $lines lines for one kind of problem"
grep -q "^\.\.\. and [0-9]* more like: bigbat.vhd" "$WORK/stdout" || fail "check does not count what it left out"
grep -q "65024 problems found" "$WORK/stderr" || fail "the summary does not count every problem: $(cat "$WORK/stderr")"
expect_exit 1 "$TROY" check bigbat.vhd --json
python3 - "$WORK/stdout" <<'PY' || fail "check --json: counts missing or problems unbounded"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["problem_count"] == 65024 and len(d["problems"]) <= 40, (d["problem_count"], len(d["problems"]))
assert d["problems_not_listed"] == 65024 - len(d["problems"])
PY
pass "check on a BAT of 65,024 bad entries: $lines lines, every problem counted (also in --json)"

# --- FIFOs given as small files are refused at once ---
mkfifo fifo
if command -v openssl >/dev/null; then
  openssl genpkey -algorithm ed25519 -out lab.key 2>/dev/null
  openssl pkey -in lab.key -pubout -out lab.pub
  echo "troy-manifest 1" >manifest
  for args in "--key lab.pub fifo" "--key fifo manifest" "--key lab.pub --signature fifo manifest"; do
    # shellcheck disable=SC2086 # the words are the options
    expect_exit 2 timeout 10 "$TROY" verify-manifest $args
    expect_error_line "fifo" "not a regular file"
  done
  pass "verify-manifest: a FIFO as manifest, signature or key is refused at once"
fi
expect_exit 2 timeout 10 "$TROY" info fifo
expect_error_line "fifo" "not a regular file"
pass "an image that is a FIFO is refused at once"
