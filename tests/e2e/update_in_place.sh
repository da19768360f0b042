# In-place updates of existing images (libvhd/updater.h), driven by
# troy_update_tool until merge uses them: writes into allocated and new
# blocks, partial blocks of differencing images (sector bitmaps), whole zero
# blocks, VHD and VHDX. The result must read, in troy and in qemu-img (whose
# own log replay checks Troy's log entries), as the same script applied to a
# raw copy. A kill -9 at a write leaves a valid image; re-running the
# script gives the same bytes.
source "$(dirname "$0")/common.sh"
command -v qemu-img >/dev/null || fail "qemu-img not installed (make deps)"
command -v strace >/dev/null || fail "strace not installed (make deps)"
UPDATE=$(dirname "$TROY")/troy_update_tool
[ -x "$UPDATE" ] || fail "troy_update_tool not built beside $TROY"

MiB=1048576
# Data into a new block, a few sectors into an allocated one, a block
# boundary crossed, the last sector, a whole block zeroed, a partial zero run,
# a large write over many blocks, then zeros over blocks that held data.
# S is the sector size the script is written in.
make_script() {
  local S=$1
  cat <<EOS
write 0 4096 1
write $MiB $S 2
write $((39 * MiB - S)) $((2 * MiB)) 3
commit
write $((70 * MiB - S)) $S 4
zero $((4 * MiB)) $((2 * MiB))
zero $((3 * MiB + 2 * S)) $((4 * S))
write $((20 * MiB)) $((16 * MiB)) 5
zero $((24 * MiB)) $((4 * MiB))
write $((50 * MiB + 4096)) 8192 6
EOS
}
make_script 512 > script.txt
make_script 4096 > script4k.txt

make_random_raw base.raw $((70 * MiB)) 3
cp --sparse=always base.raw expected.raw
"$UPDATE" raw expected.raw script.txt
cp --sparse=always base.raw expected4k.raw
"$UPDATE" raw expected4k.raw script4k.txt

# Reads IMAGE (a chain top) with troy and, for a base image, with qemu-img.
expect_updated() {
  local image=$1 format=$2 what=$3 expected=${4:-expected.raw}
  expect_converts_to "$image" "$expected"
  expect_exit 0 "$TROY" check "$image"
  if [ "$format" != child ]; then
    qemu-img convert -f "$format" -O raw "$image" qemu.raw
    cmp -s qemu.raw "$expected" || fail "$what: qemu-img reads other bytes"
    [ "$format" = vpc ] || qemu-img check -q "$image" || fail "$what: qemu-img check"
  fi
  pass "$what: updated in place, reads as the script applied to a raw copy"
}

for ext in vhd vhdx; do
  format=$([ $ext = vhd ] && echo vpc || echo vhdx)
  "$TROY" capture --block-size 2M base.raw "base.$ext" 2>/dev/null
  cp --sparse=always "base.$ext" "updated.$ext"
  "$UPDATE" image "updated.$ext" script.txt 2>/dev/null
  expect_updated "updated.$ext" "$format" "$ext dynamic"
  "$TROY" capture --type fixed base.raw "fixed.$ext" 2>/dev/null
  "$UPDATE" image "fixed.$ext" script.txt 2>/dev/null
  expect_updated "fixed.$ext" "$format" "$ext fixed"
done

# Children: created empty over the base, then updated; PARTIALLY_PRESENT
# blocks and VHD bitmaps get their bits through the log or in order.
for spec in "vhd 512 vhd" "vhdx 512 avhdx" "vhdx 4096 avhdx"; do
  set -- $spec
  ext=$1 sector=$2 child_ext=$3
  rm -rf c && mkdir -p c/base c/child
  if [ "$sector" = 4096 ]; then
    "$TROY" capture --sector-size 4096 base.raw c/base/base.$ext 2>/dev/null
  else
    "$TROY" capture base.raw c/base/base.$ext 2>/dev/null
  fi
  "$TROY" create --parent c/base/base.$ext c/child/child.$child_ext 2>/dev/null
  script=$([ "$sector" = 4096 ] && echo script4k.txt || echo script.txt)
  expected=$([ "$sector" = 4096 ] && echo expected4k.raw || echo expected.raw)
  "$UPDATE" image c/child/child.$child_ext "$script" 2>/dev/null
  expect_updated c/child/child.$child_ext child "$ext child, $sector-byte sectors" "$expected"
done

# Changing a VHDX gives it a new DataWriteGuid ([MS-VHDX]): its existing
# children no longer verify against it and are refused, never misread.
"$UPDATE" image c/base/base.vhdx script4k.txt 2>/dev/null
expect_exit 2 "$TROY" convert c/child/child.avhdx out.raw
expect_error_line child.avhdx parent_linkage DataWriteGuid
pass "a changed VHDX parent no longer verifies for its old children"

# An image another process holds locked is refused, unchanged.
cp --sparse=always base.vhdx locked.vhdx
before=$(sha locked.vhdx)
# Its own output: a sleep holding ctest's pipe would keep the case open for 30 s.
flock locked.vhdx sleep 30 >/dev/null 2>&1 &
holder=$!
sleep 0.3
expect_exit 2 "$UPDATE" image locked.vhdx script.txt
grep -q "in use" "$WORK/stderr" || fail "lock: no 'in use' message"
pkill -P $holder 2>/dev/null || true  # the sleep flock runs
kill $holder 2>/dev/null || true
wait $holder 2>/dev/null || true
[ "$(sha locked.vhdx)" = "$before" ] || fail "locked image changed"
pass "an image locked by another process is refused and unchanged"

# kill -9 at a write: the image is valid at once (troy check; for VHDX
# qemu-img's own log replay gives troy's bytes), and the script run again
# ends with the expected bytes. Every write of a run that makes at most 10;
# else the first three, the last three and 4 of the others drawn with a
# fixed seed, the same each run (power_loss_test.cpp loses power at every
# write and flush of these updaters, with five survival patterns each).
# Under ASan: the first, the last and 4 drawn.
POINTS=10
is_asan_build "$UPDATE" && POINTS=6
# kill_points N: the write calls (of N) a sweep kills the script at.
kill_points() {
  python3 -c "
import random; n, count = $1, $POINTS
ends = 3 if count >= 10 else 1
if n <= count:
    print(*range(1, n + 1))
else:
    must = set(range(1, ends + 1)) | set(range(n - ends + 1, n + 1))
    rest = [i for i in range(1, n + 1) if i not in must]
    print(*sorted(must | set(random.Random(2026).sample(rest, count - len(must)))))"
}
sweep() {
  local image=$1 format=$2 what=$3 n status points=0 writes
  local t
  t=$(dirname "$image")/t.img  # beside the original, so a child finds its parent
  cp --sparse=always "$image" "$t"
  under_strace -f -o writes.log -e trace=pwrite64 "$UPDATE" image "$t" script.txt >/dev/null 2>&1 ||
    fail "$what: the script fails under strace"
  writes=$(grep -c 'pwrite64(' writes.log)
  [ "$writes" -gt 10 ] || fail "$what: only $writes writes: the sweep proves little"
  for n in $(kill_points "$writes"); do
    cp --sparse=always "$image" "$t"
    status=0
    kill_at_write "$n" "$UPDATE" image "$t" script.txt || status=$?
    [ "$status" = 137 ] || fail "$what: not killed at write $n of $writes (exit $status)"
    "$TROY" check "$t" >/dev/null 2>&1 || fail "$what: killed at write $n: troy check fails"
    if [ "$format" = vhdx ]; then
      "$TROY" convert "$t" mid.raw --overwrite 2>/dev/null
      cp --sparse=always "$t" q.img
      qemu-img check -q -r all q.img >/dev/null 2>&1 || true
      qemu-img convert -f vhdx -O raw q.img qemu.raw
      cmp -s mid.raw qemu.raw || fail "$what: killed at write $n: qemu-img's log replay differs from troy's"
    fi
    "$UPDATE" image "$t" script.txt 2>/dev/null || fail "$what: re-run after kill at write $n failed"
    "$TROY" convert "$t" got.raw --overwrite 2>/dev/null
    cmp -s got.raw expected.raw || fail "$what: re-run after kill at write $n gives other bytes"
    points=$((points + 1))
  done
  pass "$what: kill -9 at $points of $writes writes, then re-run: valid at once, same bytes at the end"
}
sweep base.vhdx vhdx "vhdx dynamic"
sweep base.vhd vpc "vhd dynamic"
mkdir -p d/base d/child
"$TROY" capture base.raw d/base/base.vhdx 2>/dev/null
"$TROY" create --parent d/base/base.vhdx d/child/child.avhdx 2>/dev/null
sweep d/child/child.avhdx child "vhdx child (sector bitmaps through the log)"
finish
