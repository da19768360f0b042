# Bad input: one clear error line naming the file and the field, exit 2,
# nothing written, the input unchanged; `troy check` lists the problem.
source "$(dirname "$0")/common.sh"

$MAKE_VHD chain good --seed 4 --layers 1 --writes 30 >/dev/null

# Damages a copy of an image, then expects convert to refuse it naming the field.
expect_refused() {
  local kind=$1 source=$2
  shift 2
  local image=$WORK/bad-$kind.vhd
  cp "$source" "$image"
  $MAKE_VHD corrupt "$image" "$kind" >/dev/null
  local before
  before=$(sha "$image")
  expect_exit 2 "$TROY" convert "$image" out.raw
  expect_error_line "bad-$kind.vhd" "$@"
  [ ! -e out.raw ] || fail "$kind: output written"
  [ -z "$(ls -A "$WORK" | grep troy-partial || true)" ] || fail "$kind: partial file left"
  [ "$(sha "$image")" = "$before" ] || fail "$kind: input modified"
  local check_exit=0
  "$TROY" check "$image" >check.out 2>check.err || check_exit=$?
  [ "$check_exit" = 1 ] || [ "$check_exit" = 2 ] || fail "$kind: check exited $check_exit"
  grep -qF "bad-$kind.vhd" check.out check.err || fail "$kind: check does not name the file"
  pass "$kind refused ($*); check exit $check_exit"
}

expect_refused footer-both good/layer1.vhd "footer" "Checksum"
expect_refused header-checksum good/layer1.vhd "dynamic header" "Checksum"
expect_refused bat-past-eof good/layer1.vhd "BAT entry" "past the end"
expect_refused bat-overlap good/base.vhd "overlaps"
expect_refused block-size-not-pow2 good/base.vhd "Block Size" "power of two"
expect_refused table-too-small good/base.vhd "Max Table Entries"
expect_refused truncate good/base.vhd "bad-truncate.vhd"
expect_refused absurd-size good/base.vhd "Current Size"

# A damaged footer at the end with an intact copy at offset 0 still reads
# (the spec keeps the copy for this), with a warning; check reports it.
cp good/base.vhd eof.vhd
$MAKE_VHD corrupt eof.vhd eof-footer-garbage >/dev/null
expect_converts_to eof.vhd good/base.raw
grep -q "copy at offset 0" "$WORK/stderr" || fail "no warning about the footer copy"
expect_exit 1 "$TROY" check eof.vhd
grep -q "footer at end of file" stdout || fail "check does not report the damaged footer"
pass "damaged end footer: read from the copy at offset 0, reported by check"

# Bad checksum with --ignore-checksums reads anyway.
cp good/layer1.vhd good/sum.vhd
$MAKE_VHD corrupt good/sum.vhd header-checksum >/dev/null
expect_converts_to good/sum.vhd good/layer1.raw --ignore-checksums
pass "--ignore-checksums reads a bad header checksum"

# Not an image at all.
head -c 100000 /dev/urandom >random.bin
expect_exit 2 "$TROY" info random.bin
expect_error_line random.bin
printf 'tiny' >tiny.bin
expect_exit 2 "$TROY" convert tiny.bin out.raw
expect_error_line tiny.bin
pass "non-images refused"

# Wrong parent: refused unless --force, which warns.
$MAKE_VHD chain wrong --seed 6 --wrong-parent-id >/dev/null
expect_exit 2 "$TROY" convert wrong/layer1.vhd out.raw
expect_error_line layer1.vhd "parent id" "--force"
expect_converts_to wrong/layer1.vhd wrong/layer1.raw --force
grep -q "warning:.*does not match" "$WORK/stderr" || fail "--force gave no warning"
pass "wrong parent refused; --force reads with a warning"

# Missing parent.
mkdir lonely && cp good/layer1.vhd lonely/
expect_exit 2 "$TROY" convert lonely/layer1.vhd out.raw
expect_error_line layer1.vhd "parent not found" "--parent"
pass "missing parent"

# A loop: an image named as its own parent.
expect_exit 2 "$TROY" convert good/layer1.vhd out.raw --parent good/layer1.vhd --force
expect_error_line "loops"
cp good/layer1.vhd good/copy-of-layer1.vhd
expect_exit 2 "$TROY" convert good/layer1.vhd out.raw --parent good/copy-of-layer1.vhd --force
expect_error_line "same id" "loops"
pass "parent loop refused (same file, and a copy with the same id)"

# Deeper than 64 layers.
$MAKE_VHD chain deep --seed 2 --layers 65 --writes 1 --size 65536 --block-size 4096 >/dev/null
expect_converts_to deep/layer63.vhd deep/layer63.raw
expect_exit 2 "$TROY" convert deep/layer65.vhd out.raw
expect_error_line "deeper than 64"
pass "64 layers read; 66 refused"

# An existing output is not replaced without --overwrite.
echo keep >existing.raw
expect_exit 2 "$TROY" convert good/base.vhd existing.raw
expect_error_line existing.raw --overwrite
[ "$(cat existing.raw)" = keep ] || fail "existing output changed"
pass "existing output kept"
finish
