# Damaged VHDX files from the independent writer: one clear error line naming
# the file and the field, exit 2, nothing written, the input unchanged; `troy
# check` lists the problem. Damage the spec lets a reader repair (one header
# or one region table) reads with a warning and is reported by check.
source "$(dirname "$0")/common.sh"

$MAKE_VHDX chain good --seed 4 --layers 1 >/dev/null
$MAKE_VHDX dirty good/dirty.vhdx --case multi --seed 4 >/dev/null

damage() {
  local kind=$1 source=$2
  local image=$WORK/bad-$kind.vhdx
  cp "$source" "$image"
  $MAKE_VHDX corrupt "$image" "$kind" >/dev/null
  echo "$image"
}

# Expects convert to refuse the damaged copy, naming the given words.
expect_refused() {
  local kind=$1 source=$2
  shift 2
  local image
  image=$(damage "$kind" "$source")
  local before
  before=$(sha "$image")
  expect_exit 2 "$TROY" convert --parent good/base.vhdx "$image" out.raw
  expect_error_line "bad-$kind.vhdx" "$@"
  [ ! -e out.raw ] || fail "$kind: output written"
  [ -z "$(ls -A "$WORK" | grep troy-partial || true)" ] || fail "$kind: partial file left"
  [ "$(sha "$image")" = "$before" ] || fail "$kind: input modified"
  local check_exit=0
  "$TROY" check --parent good/base.vhdx "$image" >check.out 2>check.err || check_exit=$?
  [ "$check_exit" = 1 ] || [ "$check_exit" = 2 ] || fail "$kind: check exited $check_exit"
  grep -qF "bad-$kind.vhdx" check.out check.err || fail "$kind: check does not name the file"
  [ "$(sha "$image")" = "$before" ] || fail "$kind: input modified by check"
  pass "$kind refused ($*); check exit $check_exit"
}

base=good/base.vhdx
child=good/layer1.avhdx
expect_refused headers-checksum "$base" "no valid header" "Checksum"
expect_refused headers-same-seq-differ "$base" "SequenceNumber" "differ"
expect_refused regions-checksum "$base" "region table" "Checksum"
expect_refused unknown-required-region "$base" "region" "required"
expect_refused unknown-required-metadata "$base" "metadata" "required"
expect_refused missing-metadata-item "$base" "Virtual Disk Size" "missing"
expect_refused bat-past-eof "$base" "BAT entry" "past the end"
expect_refused bat-overlap "$base" "overlaps"
expect_refused bat-into-metadata "$base" "overlaps" "metadata region"
expect_refused bat-reserved-state "$base" "BAT entry" "reserved state 4"
expect_refused partial-in-dynamic "$base" "PARTIALLY_PRESENT" "non-differencing"
expect_refused partial-without-bitmap "$child" "sector bitmap" "PARTIALLY_PRESENT"
expect_refused block-size-not-pow2 "$base" "BlockSize" "power of two"
expect_refused block-size-too-big "$base" "BlockSize"
expect_refused sector-size-bad "$base" "Logical Sector Size"
expect_refused absurd-size "$base" "Virtual Disk Size" "64 TiB"
expect_refused size-not-sector-multiple "$base" "Virtual Disk Size" "multiple"
expect_refused metadata-overlap "$base" "metadata item" "overlaps"
expect_refused region-overlap "$base" "BAT region" "overlaps"
expect_refused truncate "$base" "past the end of the file"
expect_refused flushed-offset-past-eof good/dirty.vhdx "FlushedFileOffset" "truncated"
expect_refused parent-linkage-missing "$child" "parent_linkage"
expect_refused file-identifier "$base" "not a VHD or VHDX"

# One damaged header or region table: the other copy is used, with a warning;
# check reports it as a problem.
for kind in header1-checksum region-checksum; do
  image=$(damage "$kind" "$base")
  expect_converts_to "$image" good/base.raw
  grep -q "troy: warning: .*Checksum" "$WORK/stderr" || fail "$kind: no warning"
  expect_exit 1 "$TROY" check "$image"
  grep -q "Checksum" stdout || fail "$kind: check does not report it"
  pass "$kind: read from the other copy, reported by check"
done

# --ignore-checksums reads past a damaged header pair.
image=$(damage headers-checksum "$base")
expect_converts_to "$image" good/base.raw --ignore-checksums
pass "--ignore-checksums reads both damaged headers"

# A log whose only sequence fails its checksum holds nothing to replay: a
# crash tore it before anything changed in place, so the file reads as it
# stands (the writer's stale content), with a warning.
image=$(damage log-entry-checksum good/dirty.vhdx)
expect_converts_to "$image" good/dirty.vhdx.stale.raw
grep -q "no valid sequence" "$WORK/stderr" || fail "torn log: no warning"
pass "torn log entry: nothing replayed, warned"

# A wrong parent is refused naming both ids; --force reads it with a warning.
$MAKE_VHDX chain wrong --seed 5 --layers 1 --wrong-parent-id >/dev/null
expect_exit 2 "$TROY" convert wrong/layer1.avhdx out.raw
expect_error_line layer1.avhdx parent_linkage DataWriteGuid --force
"$TROY" convert --force wrong/layer1.avhdx out.raw 2>stderr || { cat stderr >&2; fail "--force did not read"; }
grep -q "troy: warning: .*parent_linkage" stderr || fail "--force without a warning"
rm -f out.raw
pass "wrong parent refused; --force reads it with a warning"

# A parent larger than its child, or with other logical sectors, is not its
# parent: refused before anything is read (sizes: --force reads anyway).
qemu-img create -q -f vhdx big.vhdx 64M
expect_exit 2 "$TROY" convert --parent big.vhdx good/layer1.avhdx out.raw
expect_error_line layer1.avhdx "virtual size" "smaller than its parent"
rm -rf sectors && $MAKE_VHDX chain sectors --seed 6 --layers 1 --sector-size 4096 >/dev/null
expect_exit 2 "$TROY" convert --force --parent sectors/base.vhdx good/layer1.avhdx out.raw
expect_error_line layer1.avhdx "logical sector size 512" "4096"
[ ! -e out.raw ] || fail "output written for a wrong parent"
pass "a larger parent or one with other sector sizes is refused"
finish
