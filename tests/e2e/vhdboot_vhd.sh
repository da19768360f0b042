# troy vhdboot with a VHD base (base.vhd, Windows 7's native boot) on a real
# NTFS partition (mkntfs on a loop device, mounted with ntfs-3g): merging
# into a VHD keeps its footer UniqueId, so the job gives the base the merged
# delta's own id, in both footers. v1 -> v2 in one run, then v2 -> v3 in the
# next (v3's parent id is v2's own id: the chain of ids is what proves the
# version); the base reads v3 in qemu-img (-f vpc) and troy, checks clean,
# both footers equal; the student's child is a fresh VHD child of the base
# reading v3; a run with nothing to do writes nothing; a foreign base is
# refused unchanged; troy killed (SIGKILL) at sampled write calls of a merge
# and run again ends with the same base bytes as an uninterrupted run.
source "$(dirname "$0")/common.sh"
ntfs_workspace

# v1: 16 MiB with data in scattered MiB; v2 and v3: 24 runs of 4-64 KiB
# changed each; the student's writes on top of v1.
python3 - <<'PY'
import random
r = random.Random(1515); M = 1 << 20
b = bytearray(16 * M)
for _ in range(5):
    o = r.randrange(0, 15) * M; b[o:o + M] = r.randbytes(M)
open('v1.raw', 'wb').write(b)
s = bytearray(b)
for _ in range(6):
    o = r.randrange(0, 16 * M - 8192) // 512 * 512; s[o:o + 8192] = r.randbytes(8192)
open('student.raw', 'wb').write(s)
for v in (2, 3):
    for _ in range(24):
        n = r.randrange(1, 17) * 4096; o = r.randrange(0, 16 * M - n) // 512 * 512
        b[o:o + n] = r.randbytes(n)
    open('v%d.raw' % v, 'wb').write(b)
PY
"$TROY" capture v1.raw base.vhd -q
mkdir teacher && cp base.vhd teacher/
"$TROY" diff teacher/base.vhd v2.raw -o teacher/v2.vhd -q
"$TROY" diff teacher/v2.vhd v3.raw -o teacher/v3.vhd -q
id_of() { "$TROY" info --json "$1" | python3 -c "import json,sys; print(json.load(sys.stdin)['chain'][0]['id'])"; }
v2_id=$(id_of teacher/v2.vhd) v3_id=$(id_of teacher/v3.vhd)
truncate -s 64M ntfs.img
mkntfs -F -Q -q -L TROY ntfs.img >/dev/null 2>&1

# The volume as a lab machine has it: base.vhd at v1, the student's child
# with writes, the teacher's deltas downloaded (their locators name the
# teacher's files).
attach ntfs.img
mount_it
mkdir -p "$MNT/troy/incoming"
cp base.vhd "$MNT/troy/"
cp teacher/v2.vhd teacher/v3.vhd "$MNT/troy/incoming/"
"$TROY" diff "$MNT/troy/base.vhd" student.raw -o "$MNT/troy/student.vhd" -q
umount "$MNT"
detach
cp ntfs.img start.img

B=$MNT/troy/base.vhd C=$MNT/troy/student.vhd D2=$MNT/troy/incoming/v2.vhd D3=$MNT/troy/incoming/v3.vhd
footers_equal() { [ "$(head -c 512 "$1" | sha256sum)" = "$(tail -c 512 "$1" | sha256sum)" ]; }
reads() {  # FILE RAW WHAT
  qemu-img convert -f vpc -O raw "$1" q.out && cmp -s q.out "$2" || fail "$3: the base does not read $2 in qemu-img"
  "$TROY" convert "$1" t.out -q --overwrite && cmp -s t.out "$2" || fail "$3: the base does not read $2 in troy"
}
child_fresh() {  # WHAT RAW
  "$TROY" info --json "$C" | python3 -c "
import json, sys
j = json.load(sys.stdin); c = j['chain'][0]
assert c['format'] == 'vhd' and c['allocated_blocks'] == 0, c
assert j['chain'][1]['link']['verified'], j['chain'][1]
" || fail "$1: the student's child is not a fresh VHD child of the base"
  "$TROY" convert "$C" c.out -q --overwrite && cmp -s c.out "$2" || fail "$1: the fresh child does not read as the base"
}

# --- v1 -> v2, then v2 -> v3 in the next run -------------------------------
attach ntfs.img
mount_it
"$TROY" vhdboot "$B" "$C" "$D2" 2>run.err || { cat run.err; fail "vhdboot v2 failed"; }
reads "$B" v2.raw "v2"
[ "$(id_of "$B")" = "$v2_id" ] || fail "the base does not carry v2's id"
footers_equal "$B" || fail "the base's footer copy at 0 differs from its end footer"
child_fresh "v2" v2.raw
pass "v1 -> v2: the base reads v2 (qemu-img -f vpc, troy), carries v2's id in both footers, the child is fresh"
"$TROY" vhdboot "$B" "$C" "$D2" "$D3" 2>run.err || { cat run.err; fail "vhdboot v3 failed"; }
grep -q "merged $D3 into" run.err || fail "v3 run: $(cat run.err)"
reads "$B" v3.raw "v3"
"$TROY" check "$B" >/dev/null 2>&1 || fail "troy check finds problems in the base"
[ "$(id_of "$B")" = "$v3_id" ] && footers_equal "$B" || fail "the base does not carry v3's id in both footers"
child_fresh "v3" v3.raw
for f in base.vhd student.vhd; do
  a=$(attrib "$MNT/troy/$f")
  [ $((a & 0x200)) = 0 ] && [ $((a & 0x800)) = 0 ] || fail "$f is sparse or compressed on NTFS (attributes $a)"
done
pass "v2 -> v3 (v2 skipped): the base reads v3 in qemu-img and troy, checks clean, carries v3's id; fresh VHD child reads v3"
sha256sum "$B" "$C" >expected.sha
"$TROY" vhdboot "$B" "$C" "$D2" "$D3" 2>run.err || { cat run.err; fail "third run failed"; }
sha256sum -c --quiet expected.sha || fail "a run with nothing to merge changed the base or the child"
pass "a run with nothing to merge changes neither file"
umount "$MNT"
detach

# --- a foreign base: refused, unchanged --------------------------------------
cp start.img wrong.img
attach wrong.img
mount_it
"$TROY" capture student.raw "$B" --overwrite -q
before=$(sha "$B") child_before=$(sha "$C")
expect_exit 2 "$TROY" vhdboot "$B" "$C" "$D2"
grep -q "the base is not this delta's base; nothing merged" "$WORK/stderr" || fail "refusal not named: $(cat "$WORK/stderr")"
[ "$(sha "$B")" = "$before" ] && [ "$(sha "$C")" = "$child_before" ] || fail "a refused run changed the base or the child"
umount "$MNT"
detach
pass "a foreign VHD base is refused, base and child unchanged"

# --- killed at sampled writes of the v1 -> v2 job, then run again -------------
# The base ends with the same bytes as the uninterrupted run's (its id is
# the delta's, chosen by no one at random); the child is fresh (its own id
# is new at each run).
cp start.img trace.img
attach trace.img
mount_it
job=("$TROY" vhdboot "$B" "$C" "$D2")
writes=$(under_strace -f -e trace=pwrite64,write -o strace.out "${job[@]}" 2>/dev/null && grep -c "pwrite64\|write(" strace.out)
base_sha=$(sha "$B")
umount "$MNT"
detach
points=$(ntfs_kill_points 15 "$writes")
for n in $points; do
  cp start.img kill.img
  attach kill.img
  mount_it
  status=0
  under_strace -f -o /dev/null -e trace=pwrite64,write -e inject=pwrite64,write:signal=KILL:when="$n" "${job[@]}" \
    >/dev/null 2>&1 || status=$?
  umount "$MNT"
  mount_it
  "${job[@]}" 2>rerun.err || { cat rerun.err; fail "kill at write $n (status $status): the re-run failed"; }
  [ "$(sha "$B")" = "$base_sha" ] || fail "kill at write $n (status $status): the base differs from an uninterrupted run's"
  child_fresh "kill at write $n" v2.raw
  [ ! -e "$MNT/troy/.base.vhd.troy-merge" ] || fail "kill at write $n: the merge journal is left"
  umount "$MNT"
  detach
done
pass "killed at write calls $points of $writes, run again: the base ends byte for byte as uninterrupted, a fresh child"
finish
