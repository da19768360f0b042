# VHDX and .avhdx chains from fixtures/make_vhdx.py, an independent writer in
# Python written from [MS-VHDX]: every payload state, both sector sizes,
# several block sizes, sizes that are not a multiple of the block size, more
# than one sector bitmap chunk, every way of naming a parent, and dirty logs
# (read in memory; replayed in place, also after a kill -9 at every write).
source "$(dirname "$0")/common.sh"

# Every level of a chain reads as the raw content the writer computed.
expect_chain() {
  local dir=$1
  shift
  local level
  for level in "$dir"/base.vhdx "$dir"/layer*.avhdx; do
    local raw=${level%.*}.raw
    "$TROY" convert "$@" "$level" converted.raw --overwrite 2>stderr || { cat stderr >&2; fail "convert $level"; }
    sparse_cmp converted.raw "$raw" || fail "$level differs from $raw"
    expect_exit 0 "$TROY" check "$@" "$level"
  done
  rm -f converted.raw
}

seed=0
while read -r options; do
  seed=$((seed + 1))
  rm -rf chain
  # shellcheck disable=SC2086
  $MAKE_VHDX chain chain --seed "$seed" $options --no-sha256 >/dev/null
  expect_chain chain
  pass "chain: ${options:-defaults}"
done <<'CASES'
--layers 2
--layers 3 --sector-size 4096 --block-size 2097152 --base fixed
--layers 2 --block-size 33554432 --size 104858112
--layers 1 --block-size 268435456 --size 300000256
--layers 2 --sector-size 4096 --block-size 1048576 --size 12587008
--layers 2 --unmapped-value 5
--layers 2 --identical-headers
--layers 2 --locators volume_path
--layers 2 --locators absolute_win32_path
--layers 2 --size 4508876800 --block-size 1048576
CASES

# The base in another folder, found by the relative_path locator.
rm -rf chain && $MAKE_VHDX chain chain --seed 40 --layers 2 --subdir >/dev/null
[ -f chain/parents/base.vhdx ] || fail "writer did not put the base in parents/"
for level in chain/layer1.avhdx chain/layer2.avhdx; do
  expect_converts_to "$level" "${level%.*}.raw"
done
"$TROY" info chain/layer1.avhdx | grep -q "found by relative_path locator; link verified" ||
  fail "info does not show the relative_path link"
pass "parent in another folder, found by relative_path"

# No locator at all: --parent names the chain, top's parent first.
rm -rf chain && $MAKE_VHDX chain chain --seed 41 --layers 2 --locators none >/dev/null
expect_exit 2 "$TROY" convert chain/layer2.avhdx out.raw
expect_error_line layer2.avhdx "parent not found" --parent
expect_converts_to chain/layer2.avhdx chain/layer2.raw --parent chain/layer1.avhdx --parent chain/base.vhdx
pass "no locators: refused, then read with --parent"

# info --json names the parent locator entries and the log state.
"$TROY" info --json chain/layer1.avhdx --parent chain/base.vhdx >info.json
python3 - info.json <<'PY' || fail "info --json lacks VHDX fields"
import json, sys
info = json.load(open(sys.argv[1]))
top = info["chain"][0]
assert top["format"] == "vhdx" and top["type"] == "differencing", top
assert any(e["key"] == "parent_linkage" and e["value"].startswith("{") for e in top["details"]["parent_locator"]), top
assert top["details"]["log"]["state"] == "clean", top
assert info["chain"][1]["link"]["verified"] is True
PY
pass "info --json shows locators, log state and the verified link"

# Dirty logs: read as replayed without touching the file; replayed in place
# by check --replay-log to the same content; qemu-img agrees after its own
# replay except where it skips the Tail check (the stale case).
for case in simple multi wrapped stale extend zero-descriptor; do
  $MAKE_VHDX dirty dirty.vhdx --case "$case" --seed 7 >/dev/null
  before=$(sha dirty.vhdx)
  expect_converts_to dirty.vhdx dirty.vhdx.raw
  grep -q "not yet applied" "$WORK/stderr" || fail "$case: no warning about the log"
  [ "$(sha dirty.vhdx)" = "$before" ] || fail "$case: reading modified the file"
  cp dirty.vhdx replayed.vhdx
  expect_exit 0 "$TROY" check --replay-log replayed.vhdx
  "$TROY" info replayed.vhdx | grep -q "^log: *clean" || fail "$case: log still dirty after replay"
  expect_converts_to replayed.vhdx dirty.vhdx.raw
  cp replayed.vhdx qemu.vhdx
  qemu-img check -q qemu.vhdx || fail "$case: qemu-img check fails after troy's replay"
  qemu-img convert -f vhdx -O raw qemu.vhdx qemu.raw
  cmp -s qemu.raw dirty.vhdx.raw || fail "$case: qemu-img reads troy's replayed file differently"
  pass "dirty log ($case): read in memory, replayed in place, qemu-img agrees"
done

# kill -9 at every write of an in-place replay, then the same command again:
# the same bytes as an uninterrupted replay (headers aside: new FileWriteGuid).
$MAKE_VHDX dirty dirty.vhdx --case multi --seed 8 >/dev/null
cp dirty.vhdx whole.vhdx
"$TROY" check --replay-log whole.vhdx 2>/dev/null
n=1
while :; do
  cp dirty.vhdx crash.vhdx
  status=0
  kill_at_write "$n" "$TROY" check --replay-log crash.vhdx || status=$?
  [ "$status" = 137 ] || break
  expect_exit 0 "$TROY" check --replay-log crash.vhdx
  cmp -s <(tail -c +1048577 crash.vhdx) <(tail -c +1048577 whole.vhdx) || fail "killed at write $n: other bytes"
  expect_converts_to crash.vhdx dirty.vhdx.raw
  n=$((n + 1))
done
[ "$n" -gt 4 ] || fail "the replay made only $((n - 1)) writes; the crash test did not run"
pass "replay killed at each of its $((n - 1)) writes completes to the same bytes"
finish
