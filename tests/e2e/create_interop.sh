# Images Troy writes (capture, create, convert -O vhd|vhdx, diff, create
# --parent) read by readers that share no code with it: qemu-img (base images
# with 512-byte sectors, plus qemu-img check on VHDX), libvhdi (chains too,
# wherever its known bugs do not apply) and fixtures/spec_read.py (everything,
# written from the specs), and by troy convert. Children made by troy diff
# must hold exactly the sectors that changed: read over an unrelated image
# they give that image with only those sectors replaced.
source "$(dirname "$0")/common.sh"
command -v qemu-img >/dev/null || fail "qemu-img not installed (make deps)"
/usr/bin/python3 -c 'import pyvhdi' 2>/dev/null || fail "python3-libvhdi not installed (make deps)"
PY=/usr/bin/python3 # not a pyenv shim: it starts ten times faster, and it is called often
SPEC_READ="$PY $ROOT/fixtures/spec_read.py"
M=1048576

run_troy() {
  "$TROY" "$@" >"$WORK/stdout" 2>"$WORK/stderr" || { cat "$WORK/stderr" >&2; fail "troy $*"; }
}

# disk gen OUT SIZE SEED: random data in [0, 24M) and [32M, 36M) and the last
#   sector, holes elsewhere.
# disk mutate IN OUT SEED MODE: changed copy of IN. any: sector-granular runs
#   (single sectors, across bitmap bytes and block boundaries, zeros over data,
#   data into holes), [8M, 16M) rewritten, [16M, 24M) zeroed. aligned: only
#   whole 4 KiB-aligned groups and no zeroed block (what libvhdi reads
#   right). over: runs as for any, plus writes into [16M, 24M) and across 24M.
# disk overlay PARENT NEW OTHER SECTOR OUT: OTHER with the SECTOR-byte sectors
#   where NEW differs from PARENT taken from NEW.
disk() {
  $PY - "$@" <<'PY'
import random, sys
M, S, G = 1 << 20, 512, 4096
cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "gen":
    out, size, rng = args[0], int(args[1]), random.Random(int(args[2]))
    with open(out, "wb") as f:
        for at, n in ((0, 24 * M), (32 * M, 4 * M), (size - S, S)):
            f.seek(at)
            f.write(rng.randbytes(n))
        f.truncate(size)
elif cmd == "mutate":
    data = bytearray(open(args[0], "rb").read())
    seed, mode = int(args[2]), args[3]
    rng = random.Random(seed)
    def put(at, n, zero=False):
        data[at:at + n] = bytes(n) if zero else rng.randbytes(n)
    if mode == "aligned":
        k = seed % 5 * G
        put(3 * G + k, 2 * G); put(2 * M - 2 * G + k, 4 * G); put(5 * M + G + k, 9 * G, zero=True)
        put(26 * M + 2 * G + k, 3 * G); put(8 * M, 8 * M)
    else:
        k = seed % 5 * 3 * S
        put(3 * S + k, S); put(13 * S + k, 8 * S); put(2 * M - 3 * S + k, 8 * S); put(32 * M - 2 * S + k, 4 * S)
        put(5 * M + 7 * S + k, 30 * S, zero=True); put(26 * M + 5 * S + k, 9 * S); put(8 * M, 8 * M)
        if mode == "any":
            put(16 * M, 8 * M, zero=True)
        else:
            put(16 * M + 100 * S + k, 10 * S); put(24 * M - 5 * S, 10 * S)
    put(len(data) - S, S)
    open(args[1], "wb").write(data)
elif cmd == "overlay":
    parent, new, other = (open(p, "rb").read() for p in args[:3])
    ss, out = int(args[3]), bytearray(other)
    # Sector by sector only inside the 64 KiB pieces that differ: a Python
    # loop over every sector of the disk takes most of a second.
    piece = 1 << 16
    for start in range(0, len(new), piece):
        if new[start:start + piece] == parent[start:start + piece]:
            continue
        for at in range(start, min(start + piece, len(new)), ss):
            if new[at:at + ss] != parent[at:at + ss]:
                out[at:at + ss] = new[at:at + ss]
    open(args[4], "wb").write(out)
PY
}

# spec_reads EXPECTED IMAGE [PARENT...]: spec_read.py resolves the chain to EXPECTED.
spec_reads() {
  local expected=$1
  shift
  $SPEC_READ --compare "$expected" "$@" || fail "spec_read.py: $* does not read as $expected"
}
# spec_reads_loose EXPECTED CHILD OTHER: CHILD read over an image that is not
# its parent (spec_read.py --ignore-parent-id) gives EXPECTED.
spec_reads_loose() {
  local expected=$1
  shift
  $SPEC_READ --ignore-parent-id --compare "$expected" "$@" || fail "spec_read.py: $* over another image does not read as $expected"
}

# qemu_reads FORMAT IMAGE EXPECTED (and qemu-img check passes for VHDX)
qemu_reads() {
  qemu-img convert -f "$1" -O raw "$2" qemu.raw || fail "qemu-img cannot read $2"
  cmp -s qemu.raw "$3" || fail "qemu-img: $2 differs from $3"
  if [ "$1" = vhdx ]; then qemu-img check -q -f vhdx "$2" || fail "qemu-img check $2"; fi
  rm -f qemu.raw
}

# libvhdi_reads EXPECTED IMAGE [PARENT...], parents opened explicitly. With
# QUIRK=START:END:RAW, libvhdi must read RAW's bytes in [START, END) (a ZERO
# block read from the parent, its known deviation from [MS-VHDX]); with RAW
# "-" that range is not compared.
libvhdi_reads() {
  $PY - "${QUIRK:-0:0:-}" "$@" <<'PY' || fail "libvhdi: ${*:2} differs from $1"
import sys, pyvhdi
quirk, expected, paths = sys.argv[1].split(":"), sys.argv[2], sys.argv[3:]
start, end = int(quirk[0]), int(quirk[1])
files = []
for p in reversed(paths):
    f = pyvhdi.file()
    f.open(p)
    if files:
        f.set_parent(files[-1])
    files.append(f)
top, raw, quirk_raw = files[-1], open(expected, "rb"), open(quirk[2], "rb") if quirk[2] != "-" else None
size = raw.seek(0, 2)
if top.get_media_size() != size:
    sys.exit("libvhdi: size %d, expected %d" % (top.get_media_size(), size))
at = 0
while at < size:
    limit = end if start <= at < end else start if at < start else size
    n, source = min(1 << 22, limit - at, size - at), quirk_raw if start <= at < end else raw
    if source is None:
        at += n
        continue
    source.seek(at)
    got, want = top.read_buffer_at_offset(n, at), source.read(n)
    if got != want:
        sys.exit("libvhdi: byte %d differs" % (at + next(i for i in range(n) if got[i] != want[i])))
    at += n
PY
}

# base_reads EXPECTED IMAGE BLOCK SECTOR: a standalone image reads as EXPECTED
# by troy, spec_read.py, qemu-img (not 4096-byte sectors: it refuses them) and
# libvhdi (not VHD blocks under 2 MiB, which it reads wrong).
base_reads() {
  local expected=$1 image=$2 block=$3 sector=$4 fmt=${2##*.}
  expect_converts_to "$image" "$expected"
  spec_reads "$expected" "$image"
  [ "$sector" = 4096 ] || qemu_reads "$([ "$fmt" = vhd ] && echo vpc || echo vhdx)" "$image" "$expected"
  case "$fmt/$block" in vhd/512K | vhd/1M) ;; *) libvhdi_reads "$expected" "$image" ;; esac
}

options() { # TYPE BLOCK SECTOR, "-" for the default
  [ "$1" != - ] && echo "--type $1"
  [ "$2" != - ] && echo "--block-size $2"
  [ "$3" != - ] && echo "--sector-size $3"
  true
}

# 0. The oracle itself: spec_read.py gives the sha256 that ../shared/README.md
# lists for a Windows-written VHDX and for a Windows-written VHD differencing
# child (partial bitmap bytes) over its surrogate parent.
$SPEC_READ out.raw "$(public_fixture qemu/iotest-dynamic-1G.vhdx)" || fail "spec_read.py iotest-dynamic-1G.vhdx"
[ "$(sparse_sha out.raw)" = d3d112d8dab7fd360609f7d5a7b769904b7a2a7d7b6b8c535f65a23293c05478 ] ||
  fail "spec_read.py misreads iotest-dynamic-1G.vhdx"
$SPEC_READ out.raw "$(public_fixture dfvfs/fat-differential.vhd)" "$(public_fixture dfvfs/fat-parent-surrogate.vhd)" ||
  fail "spec_read.py fat-differential.vhd"
[ "$(sha out.raw)" = 889e3816dcc25c9cfa5970478ba8638ac9cb9df034c2ceb77e7e6f9940487094 ] ||
  fail "spec_read.py misreads fat-differential.vhd over its surrogate parent"
rm -f out.raw iotest-dynamic-1G.vhdx fat-differential.vhd fat-parent-surrogate.vhd
pass "spec_read.py reads public VHDX and VHD differencing samples as listed"

# 1. capture, then convert -O to the other format: both read as the source.
seed=0
while read -r fmt type block sector size to_fmt to_type to_block to_sector; do
  seed=$((seed + 1))
  make_random_raw src.raw "$size" "$seed"
  # shellcheck disable=SC2046
  run_troy capture $(options "$type" "$block" "$sector") src.raw "img.$fmt" --overwrite
  expected=src.raw
  if [ $((size % ${sector/-/512})) != 0 ]; then
    grep -q "not whole ${sector/-/512}-byte sectors" "$WORK/stderr" || fail "no warning about the rounded size"
    cp src.raw padded.raw
    truncate -s $(((size + ${sector/-/512} - 1) / ${sector/-/512} * ${sector/-/512})) padded.raw
    expected=padded.raw
  fi
  base_reads "$expected" "img.$fmt" "$block" "$sector"
  # shellcheck disable=SC2046
  run_troy convert -O "$to_fmt" $(options "$to_type" "$to_block" "$to_sector") "img.$fmt" "conv.$to_fmt" --overwrite
  [ "$to_sector" = - ] && [ "$to_fmt" = vhdx ] && to_sector=$sector
  base_reads "$expected" "conv.$to_fmt" "$to_block" "$to_sector"
  pass "capture $fmt $type block $block sector $sector, $size bytes; convert -O $to_fmt $to_type block $to_block sector $to_sector"
  rm -f src.raw padded.raw "img.$fmt" "conv.$to_fmt"
done <<'CASES'
vhd fixed - - 40895488 vhdx fixed 1M -
vhd dynamic 512K - 3146240 vhdx dynamic 2M -
vhd dynamic - - 40906752 vhdx dynamic - 4096
vhd dynamic 8M - 100664832 vhdx dynamic 256M -
vhd dynamic 1M - 3146241 vhd fixed - -
vhdx fixed 1M - 3146240 vhd dynamic 8M -
vhdx fixed - - 40895488 vhd dynamic 512K -
vhdx dynamic 1M - 40906752 vhdx fixed 2M 4096
vhdx dynamic 2M - 3146240 vhd fixed - -
vhdx dynamic - - 100664832 vhdx dynamic 1M -
vhdx dynamic 256M - 40895488 vhd dynamic - -
vhdx dynamic 1M 4096 40906752 vhdx dynamic 32M 512
vhdx fixed 32M 4096 3149824 vhd dynamic 2M -
vhdx dynamic 2M 4096 3146241 vhdx fixed 8M -
CASES

# 2. create: empty images read as zeros of the size asked for.
while read -r fmt type block sector size; do
  # shellcheck disable=SC2046
  run_troy create $(options "$type" "$block" "$sector") --size "$size" "empty.$fmt"
  bytes=$(numfmt --from=iec "$size")
  for reader in troy spec qemu; do
    case $reader in
      troy) run_troy convert "empty.$fmt" out.raw ;;
      spec) $SPEC_READ out.raw "empty.$fmt" || fail "spec_read.py empty.$fmt" ;;
      qemu) [ "$sector" = 4096 ] && continue
        qemu_fmt=$([ "$fmt" = vhd ] && echo vpc || echo vhdx)
        qemu-img convert -f "$qemu_fmt" -O raw "empty.$fmt" out.raw || fail "qemu-img convert empty.$fmt"
        [ "$fmt" = vhd ] || qemu-img check -q -f vhdx "empty.$fmt" || fail "qemu-img check empty.$fmt" ;;
    esac
    [ "$(stat -c %s out.raw)" = "$bytes" ] || fail "$reader: empty.$fmt is $(stat -c %s out.raw) bytes, not $bytes"
    all_zero out.raw || fail "$reader: empty.$fmt is not all zeros"
    rm -f out.raw
  done
  if [ "$bytes" -le $((256 * M)) ]; then
    truncate -s "$bytes" zeros.raw
    libvhdi_reads zeros.raw "empty.$fmt"
    rm -f zeros.raw
  fi
  pass "create $fmt $type block $block sector $sector, $size: all zeros"
  rm -f "empty.$fmt"
done <<'CASES'
vhd dynamic - - 40G
vhd fixed - - 64M
vhd dynamic 512K - 3M
vhdx dynamic - - 40G
vhdx fixed - - 64M
vhdx dynamic 1M - 3M
vhdx dynamic 256M 4096 1G
vhdx fixed 2M 4096 12M
CASES

# 3. diff and create --parent. The parents: P512 and P4096 (random data with
# holes, sizes not a multiple of any block size), and per format and sector
# size an unrelated image OTHER of the same size.
disk gen P512.raw 40895488 1
disk gen O512.raw 40895488 2
disk gen P4096.raw 40906752 3
disk gen O4096.raw 40906752 4
run_troy capture P512.raw parent.vhd
run_troy capture --type fixed --block-size 8M P512.raw parent-fixed.vhdx
run_troy capture P512.raw parent.vhdx
run_troy capture --sector-size 4096 P4096.raw parent-4k.vhdx
run_troy capture O512.raw other.vhd
run_troy capture O512.raw other.vhdx
run_troy capture --sector-size 4096 O4096.raw other-4k.vhdx

# exact_child CHILD OLD_RAW NEW_RAW SECTOR: CHILD, made from OLD_RAW's image
# to hold NEW_RAW, holds exactly the sectors that differ: read over OTHER it
# gives OTHER with those sectors replaced.
exact_child() {
  local other=other.vhd other_raw=O512.raw
  case ${1##*.}/$4 in
    avhdx/512) other=other.vhdx ;;
    avhdx/4096) other=other-4k.vhdx other_raw=O4096.raw ;;
  esac
  disk overlay "$2" "$3" "$other_raw" "$4" overlay.raw
  spec_reads_loose overlay.raw "$1" "$other"
  rm -f overlay.raw
}

# check_child CHILD PARENT_IMAGE PARENT_RAW NEW_RAW SECTOR LIBVHDI: CHILD reads
# as NEW_RAW over its parent, holds only the changed sectors, and flattens to
# an image qemu-img reads as NEW_RAW. LIBVHDI: yes, no, quirk (ZERO blocks in
# [16M, 24M)).
check_child() {
  local child=$1 parent=$2 parent_raw=$3 new=$4 sector=$5 libvhdi=$6 fmt=${1##*.}
  expect_converts_to "$child" "$new"
  spec_reads "$new" "$child" "$parent"
  exact_child "$child" "$parent_raw" "$new" "$sector"
  case $libvhdi in
    yes) libvhdi_reads "$new" "$child" "$parent" ;;
    quirk) QUIRK="$((16 * M)):$((24 * M)):$parent_raw" libvhdi_reads "$new" "$child" "$parent" ;;
  esac
  # Flattened into a standalone image of the other format and back.
  local flat_fmt=vhd
  [ "$fmt" = vhd ] && flat_fmt=vhdx
  run_troy convert -O "$flat_fmt" "$child" "flat.$flat_fmt" --overwrite
  if [ "$flat_fmt" = vhd ]; then qemu_reads vpc flat.vhd "$new"; else qemu_reads vhdx flat.vhdx "$new"; fi
  rm -f "flat.$flat_fmt"
}

seed=10
while read -r fmt parent parent_raw sector block mode libvhdi; do
  seed=$((seed + 1))
  disk mutate "$parent_raw" new.raw "$seed" "$mode"
  child=child.$([ "$fmt" = vhd ] && echo vhd || echo avhdx)
  # shellcheck disable=SC2046
  run_troy diff $(options - "$block" -) "$parent" new.raw -o "$child" --overwrite
  check_child "$child" "$parent" "$parent_raw" new.raw "$sector" "$libvhdi"
  states=$("$TROY" info "$child" | grep '^block_states:' || true)
  if [ "$mode" = any ] && [ "$fmt" = vhdx ]; then
    [[ $states == *ZERO* ]] || fail "no ZERO block where whole blocks became zero: $states"
  fi
  pass "diff $fmt over $parent, block $block, $mode changes ${states:+($states)}"
  rm -f new.raw "$child"
done <<'CASES'
vhd parent.vhd P512.raw 512 - aligned yes
vhd parent.vhd P512.raw 512 - any no
vhd parent.vhd P512.raw 512 1M any no
vhd parent.vhd P512.raw 512 8M over no
vhdx parent.vhdx P512.raw 512 - aligned yes
vhdx parent.vhdx P512.raw 512 - any quirk
vhdx parent.vhdx P512.raw 512 1M any quirk
vhdx parent.vhdx P512.raw 512 8M any quirk
vhdx parent-fixed.vhdx P512.raw 512 1M over yes
vhdx parent-4k.vhdx P4096.raw 4096 - any quirk
vhdx parent-4k.vhdx P4096.raw 4096 8M aligned yes
vhdx parent-4k.vhdx P4096.raw 4096 1M over yes
CASES

# create --parent: nothing written, the child reads as its parent.
for spec in "parent.vhd P512.raw 512 child.vhd -" "parent.vhd P512.raw 512 child.vhd 512K" \
  "parent.vhdx P512.raw 512 child.avhdx -" "parent-4k.vhdx P4096.raw 4096 child.avhdx 8M"; do
  read -r parent parent_raw sector child block <<<"$spec"
  # shellcheck disable=SC2046
  run_troy create $(options - "$block" -) --parent "$parent" "$child" --overwrite
  case $child/$block in
    *.vhd/512K) libvhdi=no ;;
    *.vhd/*) libvhdi=yes ;;
    *.avhdx/*) libvhdi=yes ;;  # every chunk has a sector bitmap block (docs/formats.md)
  esac
  check_child "$child" "$parent" "$parent_raw" "$parent_raw" "$sector" "$libvhdi"
  pass "create --parent $parent, block $block: reads as the parent"
  rm -f "$child"
done

# 4. Parent in another folder: relative locators, still found after the pair
# moves elsewhere (where the absolute locator no longer leads anywhere).
for fmt in vhd vhdx; do
  child=$([ "$fmt" = vhd ] && echo child.vhd || echo child.avhdx)
  rm -rf rel moved
  mkdir -p rel/a rel/b moved/deeper
  cp "parent.$fmt" "rel/b/base.$fmt"
  disk mutate P512.raw new.raw 40 aligned
  run_troy diff "rel/b/base.$fmt" new.raw -o "rel/a/$child"
  run_troy info "rel/a/$child"
  if [ "$fmt" = vhd ]; then
    grep -qF 'locator W2ru: ..\b\base.vhd' "$WORK/stdout" || fail "W2ru is not ..\\b\\base.vhd"
    grep -q '^parent_unicode_name: base.vhd$' "$WORK/stdout" || fail "Parent Unicode Name is not base.vhd"
  else
    grep -qF 'relative_path = ..\b\base.vhdx' "$WORK/stdout" || fail "relative_path is not ..\\b\\base.vhdx"
  fi
  mv rel/a rel/b moved/deeper/
  rm -rf rel
  run_troy info "moved/deeper/a/$child"
  grep -q "parent found by $([ "$fmt" = vhd ] && echo W2ru || echo relative_path) locator" "$WORK/stdout" ||
    { cat "$WORK/stdout" >&2; fail "moved $child: parent not found by its relative locator"; }
  (cd / && expect_converts_to "$WORK/moved/deeper/a/$child" "$WORK/new.raw")
  spec_reads new.raw "moved/deeper/a/$child" "moved/deeper/b/base.$fmt"
  libvhdi_reads new.raw "moved/deeper/a/$child" "moved/deeper/b/base.$fmt"
  pass "$fmt child in a/, parent in b/: relative locator, found after both moved"
  rm -rf moved new.raw
done

# 5. Chains of two diffs: base <- c1 <- c2.
for spec in "vhd parent.vhd P512.raw 512 aligned aligned yes" "vhdx parent.vhdx P512.raw 512 aligned aligned yes" \
  "vhdx parent.vhdx P512.raw 512 any over no" "vhdx parent-4k.vhdx P4096.raw 4096 any over no"; do
  read -r fmt parent parent_raw sector mode1 mode2 libvhdi <<<"$spec"
  ext=$([ "$fmt" = vhd ] && echo vhd || echo avhdx)
  disk mutate "$parent_raw" new1.raw 50 "$mode1"
  disk mutate new1.raw new2.raw 51 "$mode2"
  run_troy diff "$parent" new1.raw -o "c1.$ext"
  run_troy diff "c1.$ext" new2.raw -o "c2.$ext"
  expect_converts_to "c2.$ext" new2.raw
  spec_reads new2.raw "c2.$ext" "c1.$ext" "$parent"
  exact_child "c2.$ext" new1.raw new2.raw "$sector"
  if [ "$libvhdi" = yes ]; then libvhdi_reads new2.raw "c2.$ext" "c1.$ext" "$parent"; fi
  run_troy convert -O "$fmt" "c2.$ext" "flat.$fmt"
  spec_reads new2.raw "flat.$fmt"
  pass "chain $parent <- c1 <- c2 ($mode1, $mode2)"
  rm -f new1.raw new2.raw "c1.$ext" "c2.$ext" "flat.$fmt"
done
finish
