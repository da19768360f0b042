# troy publish's content indexes and chunk store, and troy sync (issue 16):
# a blank disk, a disk at v1 drifted on 1% of its 4 KiB sectors, another
# lab's disk and a disk whose content moved each end byte for byte at v2,
# fetching only what they lack; a tampered chunk is refused and never
# written; a sync killed mid-way ends exact when run again, fetching at most
# one piece a second time; the bytes after the image are never touched.
source "$(dirname "$0")/common.sh"
command -v openssl >/dev/null || { echo "SKIP: openssl is missing"; exit 77; }
command -v strace >/dev/null || { echo "SKIP: strace is missing"; exit 77; }

openssl genpkey -algorithm ed25519 -out lab.key 2>/dev/null
MIB=$((1 << 20))
SIZE=$((24 * MIB))
python3 - <<'PY'
import random
rng = random.Random(16)
size = 24 << 20
disk = bytearray(rng.randbytes(size))
disk[4 << 20:8 << 20] = bytes(4 << 20)            # zeros: never stored, never fetched
open("v1.raw", "wb").write(disk)
for _ in range(40):                                # v2: 40 scattered 4 KiB changes, none in the zeros
    at = rng.choice([rng.randrange(0, 1024), rng.randrange(2048, size // 4096)]) * 4096
    disk[at:at + 4096] = rng.randbytes(4096)
open("v2.raw", "wb").write(disk)
open("other.raw", "wb").write(rng.randbytes(size))  # another lab's image
PY
"$TROY" capture v1.raw base.vhdx 2>/dev/null
"$TROY" diff base.vhdx v2.raw -o v2.avhdx 2>/dev/null
mkdir served
expect_exit 0 "$TROY" publish --dir served --key lab.key --name v1 base.vhdx --disk "size=$SIZE"
expect_exit 0 "$TROY" publish --dir served --key lab.key --name v2 v2.avhdx

# The manifest lists each version's content index and held table, as the files are.
for version in v1 v2; do
  for kind in content-index held-table; do
    read -r _ _ file size sum < <(grep "^$kind $version " served/manifest) || fail "no $kind line for $version"
    [ "$size" = "$(stat -c %s "served/$file")" ] && [ "$sum" = "$(sha "served/$file")" ] || fail "$kind $version"
  done
done
# Every stored chunk is named by its SHA-256; 20 MiB of data, none of the zeros, shared pieces once.
for chunk in served/chunks/*/*[0-9a-f]; do
  [ "$(sha "$chunk")" = "$(basename "$chunk")" ] || fail "$chunk is not named by its sha256"
done
chunks=$(find served/chunks -type f ! -name '*.units' | wc -l)
[ "$chunks" -gt 20 ] && [ "$chunks" -le 40 ] || fail "$chunks chunks for 20 MiB of v1 and the pieces v2 changed"
pass "publish: content indexes and held tables signed in the manifest, $chunks chunks named by their sha256"

# A disk with 1 MiB after the image (where the machine's state lives): never touched.
disk_with_tail() {  # FILE CONTENT
  if [ -n "$2" ]; then cp "$2" "$1"; else truncate -s $SIZE "$1"; fi
  head -c $MIB /dev/urandom >tail.bin
  cat tail.bin >>"$1"
}
synced_exactly() {  # FILE
  cmp -s -n $SIZE "$1" v2.raw || fail "$1 is not v2 after sync"
  tail -c $MIB "$1" | cmp -s - tail.bin || fail "$1: the MiB after the image changed"
}
sync_json() { "$TROY" sync --json served/versions/v2.cidx "$1" --store served; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

disk_with_tail blank.raw ""
out=$(sync_json blank.raw) || fail "sync of a blank disk: $out"
synced_exactly blank.raw
fetched=$(field bytes_fetched <<<"$out")
[ "$fetched" -eq $((20 * MIB)) ] || fail "blank disk: $fetched bytes fetched, not the 20 MiB that are not zeros"
pass "blank disk: byte for byte at v2, its 20 MiB of data fetched and none of its zeros"

# v1 with 1% of its 4 KiB sectors changed at random.
disk_with_tail drifted.raw v1.raw
changed=$(python3 - <<'PY'
import random, os
rng = random.Random(99)
fd = os.open("drifted.raw", os.O_RDWR)
units = (24 << 20) // 4096
picked = rng.sample(range(units), units // 100)
for unit in picked:
    os.pwrite(fd, rng.randbytes(4096), unit * 4096)
print(len(picked) * 4096)
PY
)
out=$(sync_json drifted.raw) || fail "sync of a drifted disk: $out"
synced_exactly drifted.raw
fetched=$(field bytes_fetched <<<"$out")
# The bound of the issue is 1.1 x the changed bytes + the delta file; the
# delta file (VHDX, 2 MiB blocks) is far larger than the 40 x 4 KiB it
# changes, so the check is against those: what v2 changes in content.
bound=$((changed * 11 / 10 + 40 * 4096))
[ "$fetched" -le "$bound" ] || fail "drifted: $fetched bytes fetched, more than 1.1 x $changed changed + v2's 160 KiB"
pass "v1 with 1% drift: exact at v2, $fetched bytes fetched for $changed changed (bound $bound)"

disk_with_tail foreign.raw other.raw
out=$(sync_json foreign.raw) || fail "sync of another lab's disk: $out"
synced_exactly foreign.raw
pass "another lab's disk: exact at v2"

# Content moved on the disk: v2 3 MiB further on, so most pieces are found elsewhere.
disk_with_tail moved.raw ""
dd if=v2.raw of=moved.raw bs=1M seek=3 count=21 conv=notrunc status=none
out=$(sync_json moved.raw) || fail "sync of a moved disk: $out"
synced_exactly moved.raw
copied=$(field pieces_copied <<<"$out")
[ "$copied" -ge 10 ] || fail "moved: only $copied pieces copied from elsewhere on the disk"
pass "content moved on the disk: exact at v2, $copied pieces copied locally instead of fetched"

# A tampered chunk: refused, and the piece it was for is never written.
cp -a served tampered
victim=$(python3 - <<'PY'
import hashlib
data = open("v2.raw", "rb").read()
print(hashlib.sha256(data[9 << 20:10 << 20]).hexdigest())
PY
)
chunk=tampered/chunks/${victim:0:2}/$victim
printf 'X' | dd of="$chunk" bs=1 seek=1000 conv=notrunc status=none
disk_with_tail victim.raw ""
before=$(dd if=victim.raw bs=1M skip=9 count=1 status=none | sha256sum)
expect_exit 2 "$TROY" sync served/versions/v2.cidx victim.raw --store tampered
expect_error_line "$chunk" "piece 9 (disk offset $((9 * MIB))): the fetched bytes' sha256" "tampered"
[ "$(dd if=victim.raw bs=1M skip=9 count=1 status=none | sha256sum)" = "$before" ] || fail "the tampered piece was written"
pass "a tampered chunk is refused in one line naming it, and never written"

# kill -9 in the middle of a sync, then again: exact, at most one piece fetched twice.
disk_with_tail killed.raw other.raw
opened_chunks() { grep -o 'chunks/../[0-9a-f]*"' "$1" | sort -u; }
status=0
under_strace -f -o run1.log -e trace=pwrite64,openat -e inject=pwrite64:signal=KILL:when=8 \
  "$TROY" sync served/versions/v2.cidx killed.raw --store served >/dev/null 2>&1 || status=$?
[ "$status" = 137 ] || fail "the sync was not killed (status $status)"
under_strace -f -o run2.log -e trace=openat "$TROY" sync served/versions/v2.cidx killed.raw --store served \
  >/dev/null 2>&1 || fail "the sync after kill -9 failed"
synced_exactly killed.raw
again=$(comm -12 <(opened_chunks run1.log) <(opened_chunks run2.log) | wc -l)
first=$(opened_chunks run1.log | wc -l)
[ "$again" -le 1 ] || fail "$again pieces fetched again after the kill (of $first fetched before it)"
pass "killed mid-sync (after $first pieces fetched), run again: exact at v2, $again piece fetched twice"

expect_exit 2 "$TROY" sync served/manifest blank.raw --store served
expect_error_line "served/manifest: chunk index: magic is not TROYCIDX"
pass "a file that is not an index is refused in one line"
finish
