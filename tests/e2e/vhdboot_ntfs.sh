# troy vhdboot on a real NTFS partition (mkntfs on a loop device, mounted
# with ntfs-3g, as the payload mounts it): the teacher's delta (made beside
# another copy of the base, so its locators name that one) merged into the
# machine's base.vhdx, which then reads v2 in troy and qemu-img, carries the
# delta's id and is not sparse (Windows refuses a sparse VHDX); the
# student's child replaced by a fresh one of the same name; a second run
# writes nothing; a base that is not the delta's refused unchanged; and the
# same job killed (SIGKILL) at sampled write calls, the volume unmounted
# and mounted again, then run again, ends with the same bytes as an
# uninterrupted run. The first run goes through --partition (troy mounts
# and unmounts itself); the killed ones run on a mount made here, so only
# troy is killed, never ntfs-3g.
source "$(dirname "$0")/common.sh"
ntfs_workspace

# v1: 16 MiB with data in scattered MiB; v2: 24 runs of 4-64 KiB changed.
python3 - <<'PY'
import random
r = random.Random(15); M = 1 << 20
b = bytearray(16 * M)
for _ in range(5):
    o = r.randrange(0, 15) * M; b[o:o + M] = r.randbytes(M)
open('v1.raw', 'wb').write(b)
for _ in range(24):
    n = r.randrange(1, 17) * 4096; o = r.randrange(0, 16 * M - n) // 512 * 512
    b[o:o + n] = r.randbytes(n)
open('v2.raw', 'wb').write(b)
s = bytearray(b)
for _ in range(6):
    o = r.randrange(0, 16 * M - 8192) // 512 * 512; s[o:o + 8192] = r.randbytes(8192)
open('student.raw', 'wb').write(s)
PY
"$TROY" capture v1.raw base.vhdx -q
mkdir teacher && cp base.vhdx teacher/
"$TROY" diff teacher/base.vhdx v2.raw -o teacher/v2.avhdx -q
truncate -s 48M ntfs.img
mkntfs -F -Q -q -L TROY ntfs.img >/dev/null 2>&1

# The volume as a lab machine has it: base.vhdx (copied with holes, as cp
# makes it: sparse), the student's child with writes, the delta downloaded.
attach ntfs.img
mount_it
mkdir -p "$MNT/troy/incoming"
cp base.vhdx "$MNT/troy/"
cp teacher/v2.avhdx "$MNT/troy/incoming/"
"$TROY" diff "$MNT/troy/base.vhdx" student.raw -o "$MNT/troy/student.avhdx" -q
umount "$MNT"
detach
cp ntfs.img start.img

delta_id=$("$TROY" info --json teacher/v2.avhdx | python3 -c "import json,sys; print(json.load(sys.stdin)['chain'][0]['id'])")

# --- the uninterrupted run, through --partition ---------------------------
attach ntfs.img
"$TROY" vhdboot --partition "$LOOP" --mount-dir "$MNT" troy/base.vhdx troy/student.avhdx \
  "$MNT/troy/incoming/v2.avhdx" 2>run.err || { cat run.err; fail "vhdboot --partition failed"; }
mountpoint -q "$MNT" && fail "vhdboot left the partition mounted"
grep -q "is a fresh empty child of it" run.err || fail "summary does not say the child is fresh: $(cat run.err)"
mount_it
qemu-img compare -q -f vhdx "$MNT/troy/base.vhdx" -F raw v2.raw || fail "base does not read v2 in qemu-img"
"$TROY" convert "$MNT/troy/base.vhdx" base.out -q && cmp -s base.out v2.raw || fail "base does not read v2 in troy"
qemu-img check -q "$MNT/troy/base.vhdx" || fail "qemu-img check finds problems in the base"
"$TROY" check "$MNT/troy/base.vhdx" >/dev/null || fail "troy check finds problems in the base"
pass "the base reads v2 (troy, qemu-img), checks clean"
[ "$("$TROY" info --json "$MNT/troy/base.vhdx" | python3 -c "import json,sys; print(json.load(sys.stdin)['chain'][0]['id'])")" = "$delta_id" ] ||
  fail "the base does not carry the delta's id"
pass "the base carries the delta's id $delta_id"
for f in base.vhdx student.avhdx; do
  a=$(attrib "$MNT/troy/$f")
  [ $((a & 0x200)) = 0 ] || fail "$f is sparse on NTFS (attributes $a)"
  [ $((a & 0x800)) = 0 ] || fail "$f is compressed on NTFS (attributes $a)"
done
pass "neither the base nor the child is sparse or compressed on NTFS"
"$TROY" info --json "$MNT/troy/student.avhdx" | python3 -c "
import json, sys
j = json.load(sys.stdin); i = j['chain'][0]
assert i['allocated_blocks'] == 0, i['allocated_blocks']
assert j['chain'][1]['link']['verified'], j['chain'][1]
" || fail "the student's child is not a fresh empty child of the base"
"$TROY" convert "$MNT/troy/student.avhdx" child.out -q && cmp -s child.out v2.raw || fail "the child does not read v2"
pass "the student's child is fresh and empty, same name, reads v2"
sha256sum "$MNT/troy/base.vhdx" "$MNT/troy/student.avhdx" >expected.sha
umount "$MNT"

# A second run writes nothing.
img_sum=$(sha ntfs.img)
"$TROY" vhdboot --partition "$LOOP" --mount-dir "$MNT" troy/base.vhdx troy/student.avhdx \
  "$MNT/troy/incoming/v2.avhdx" 2>run2.err || { cat run2.err; fail "second run failed"; }
grep -q "already holds every delta given" run2.err && grep -q "already fresh" run2.err || fail "second run: $(cat run2.err)"
mount_it
sha256sum -c --quiet expected.sha || fail "the second run changed the base or the child"
umount "$MNT"
pass "a second run changes neither file"
detach

# --- a base that is not the delta's: refused, unchanged ----------------------
cp start.img wrong.img
attach wrong.img
mount_it
"$TROY" capture student.raw "$MNT/troy/base.vhdx" --overwrite -q
before=$(sha "$MNT/troy/base.vhdx") child_before=$(sha "$MNT/troy/student.avhdx")
expect_exit 2 "$TROY" vhdboot "$MNT/troy/base.vhdx" "$MNT/troy/student.avhdx" "$MNT/troy/incoming/v2.avhdx"
grep -q "the base is not this delta's base; nothing merged" "$WORK/stderr" || fail "refusal not named: $(cat "$WORK/stderr")"
[ "$(sha "$MNT/troy/base.vhdx")" = "$before" ] && [ "$(sha "$MNT/troy/student.avhdx")" = "$child_before" ] ||
  fail "a refused run changed the base or the child"
umount "$MNT"
detach
pass "a base that is not the delta's is refused, base and child unchanged"

# --- killed at sampled writes, then run again --------------------------------
# Each file's ids (FileWriteGuid, LogGuid, a fresh child's) are new at each
# run, so "the same bytes" is: the base's disk reads v2 exactly and carries
# the delta's id, qemu-img check is clean, the child is fresh, nothing sparse,
# no journal left.
ends_right() {
  "$TROY" convert "$MNT/troy/base.vhdx" base.out -q --overwrite && cmp -s base.out v2.raw ||
    fail "$1: the base does not read v2"
  qemu-img check -q "$MNT/troy/base.vhdx" || fail "$1: qemu-img check finds problems"
  "$TROY" info --json "$MNT/troy/base.vhdx" | python3 -c "import json,sys; assert json.load(sys.stdin)['chain'][0]['id'] == '$delta_id'" ||
    fail "$1: the base does not carry the delta's id"
  "$TROY" info --json "$MNT/troy/student.avhdx" | python3 -c "import json,sys; assert json.load(sys.stdin)['chain'][0]['allocated_blocks'] == 0" ||
    fail "$1: the child is not fresh"
  for f in base.vhdx student.avhdx; do
    [ $(($(attrib "$MNT/troy/$f") & 0x200)) = 0 ] || fail "$1: $f is sparse"
  done
  [ ! -e "$MNT/troy/.base.vhdx.troy-merge" ] || fail "$1: the merge journal is left"
}
cp start.img trace.img
attach trace.img
mount_it
job=("$TROY" vhdboot "$MNT/troy/base.vhdx" "$MNT/troy/student.avhdx" "$MNT/troy/incoming/v2.avhdx")
writes=$(under_strace -f -e trace=pwrite64,write -o strace.out "${job[@]}" 2>/dev/null && grep -c "pwrite64\|write(" strace.out)
umount "$MNT"
detach
points=$(ntfs_kill_points 1515 "$writes")
for n in $points; do
  cp start.img kill.img
  attach kill.img
  mount_it
  status=0
  under_strace -f -o /dev/null -e trace=pwrite64,write -e inject=pwrite64,write:signal=KILL:when="$n" "${job[@]}" \
    >/dev/null 2>&1 || status=$?
  umount "$MNT"   # ntfs-3g writes what troy gave it; then a fresh mount, as after a reboot
  mount_it
  "${job[@]}" 2>rerun.err || { cat rerun.err; fail "kill at write $n (status $status): the re-run failed"; }
  ends_right "kill at write $n (status $status)"
  umount "$MNT"
  detach
done
pass "killed at write calls $points of $writes, run again: each ends at v2 with the delta's id, a fresh child"
finish
