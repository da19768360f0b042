# troy apply onto raw files: the delta of a differencing image (troy's own
# VHD and VHDX children, and make_vhdx.py chains with ZERO and UNMAPPED
# blocks over parent data), --since an ancestor, --full onto a disk holding
# anything; each leaves the target byte-identical to the image's resolved
# content, writes only the delta, and a second run writes nothing. --verify
# and --report tell what happened.
source "$(dirname "$0")/common.sh"
source "$ROOT/tests/e2e/apply/lib.sh"

make_disk state1.raw 24 21
make_changed state1.raw state2.raw 25 22
make_changed state2.raw state3.raw 10 23
for format in vhdx vhd; do
  child=monday.$([ $format = vhdx ] && echo avhdx || echo vhd)
  "$TROY" capture --block-size 1M state1.raw base.$format 2>/dev/null
  "$TROY" diff base.$format state2.raw -o "$child" 2>/dev/null
  cp --sparse=always state1.raw target.raw
  apply_ok "$child" target.raw --verify --report report.json
  expect_same target.raw state2.raw "delta $format"
  [ ! -e .target.raw.troy-apply ] || fail "delta $format: the journal was left behind"
  changed=$(changed_sector_bytes state1.raw state2.raw)
  written=$(json_field report.json bytes_written)
  # The child holds the changed sectors; a VHDX child may widen the zeroed run to its whole ZERO block.
  [ "$written" -ge "$changed" ] && [ "$written" -le $((changed + (2 << 20))) ] ||
    fail "delta $format: wrote $written bytes for $changed bytes of changed sectors"
  [ "$(json_field report.json verification)" = passed ] || fail "delta $format: verification not passed"
  [ "$(json_field report.json base_check)" = parent ] || fail "delta $format: the base was not checked against the parent"
  [ "$(json_field report.json error)" = null ] || fail "delta $format: an error reported"
  pass "delta of a $format child: target equals the new state, $written bytes written, verified, reported"

  apply_ok "$child" target.raw --report report.json
  expect_same target.raw state2.raw "second run $format"
  [ "$(json_field report.json bytes_written)" = 0 ] || fail "second run $format: wrote again"
  [ "$(json_field report.json skipped)" = "$written" ] || fail "second run $format: did not skip the $written bytes"
  pass "a second run of the $format delta writes nothing and skips $written bytes"
done

# --since: two deltas at once onto a disk holding the base.
"$TROY" diff monday.avhdx state3.raw -o tuesday.avhdx 2>/dev/null
cp --sparse=always state1.raw target.raw
apply_ok tuesday.avhdx target.raw --since base.vhdx --report report.json
expect_same target.raw state3.raw "--since base"
[ "$(json_field report.json mode)" = "since base.vhdx" ] || fail "--since: mode $(json_field report.json mode)"
cp --sparse=always state2.raw target.raw
apply_ok tuesday.avhdx target.raw
expect_same target.raw state3.raw "delta of tuesday"
pass "--since base.vhdx brings the base to tuesday; the plain delta brings monday to tuesday"

# --full onto a disk holding random bytes everywhere: everything is written,
# zeros included (holes of the image punched or written).
head -c $((24 << 20)) /dev/urandom >target.raw
apply_ok tuesday.avhdx target.raw --full --verify --report report.json
expect_same target.raw state3.raw "--full over random bytes"
[ "$(json_field report.json bytes_zeroed)" -gt 0 ] || fail "--full: nothing zeroed"
truncate -s 24M sparse.raw
apply_ok base.vhdx sparse.raw --report report.json
expect_same sparse.raw state1.raw "a base image onto an empty file (full)"
[ "$(json_field report.json mode)" = full ] || fail "a base image is applied whole"
pass "--full over random bytes, and a base image onto an empty sparse file"

# A larger target keeps its bytes past the disk.
head -c $((25 << 20)) /dev/urandom >big.raw
tail -c $((1 << 20)) big.raw >tail.before
apply_ok tuesday.avhdx big.raw --full
cmp -s <(head -c $((24 << 20)) big.raw) state3.raw || fail "--full onto a larger file: the disk differs"
cmp -s <(tail -c $((1 << 20)) big.raw) tail.before || fail "--full onto a larger file: bytes past the disk changed"
pass "a target larger than the disk keeps its bytes past the disk"

# make_vhdx.py chains: ZERO and UNMAPPED blocks over parent data, partially
# present blocks, 4096-byte sectors; the expected content is the generator's.
for sector in 512 4096; do
  $MAKE_VHDX chain "vx$sector" --seed $((sector + 5)) --layers 2 --size 20M --block-size 1M \
    --sector-size $sector >/dev/null
  cp --sparse=always "vx$sector/layer1.raw" target.raw
  apply_ok "vx$sector/layer2.avhdx" target.raw --verify
  expect_same target.raw "vx$sector/layer2.raw" "make_vhdx chain, $sector-byte sectors"
  cp --sparse=always "vx$sector/base.raw" target.raw
  apply_ok "vx$sector/layer2.avhdx" target.raw --since "vx$sector/base.vhdx"
  expect_same target.raw "vx$sector/layer2.raw" "make_vhdx chain --since base, $sector-byte sectors"
done
pass "make_vhdx.py chains (ZERO/UNMAPPED over data, partial blocks, 512 and 4096-byte sectors): delta and --since"
finish
