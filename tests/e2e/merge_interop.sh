# troy merge proved against readers and writers that share no code with Troy.
# Chains written by Xen Orchestra's vhd-lib, by fixtures/make_vhd.py and
# fixtures/make_vhdx.py (expected content computed by plain buffer overlay)
# and by troy capture + troy diff are merged; the merged image is then read
# by qemu-img (standalone VHD and 512-byte-sector VHDX targets, plus
# `qemu-img check` on VHDX), libvhdi (standalone targets, and children where
# its known bugs do not apply), fixtures/spec_read.py (everything) and troy
# convert. The layers left in place must still read what they should. Also:
# VHDX parents grown by a larger child, the Windows-made fat-differential.vhd
# merged into its surrogate parent, merge --undo + troy rollback giving back
# the parent byte for byte, and merges into VHDX differencing targets.
source "$(dirname "$0")/common.sh"
command -v qemu-img >/dev/null || fail "qemu-img not installed (make deps)"
command -v node >/dev/null || fail "node not installed (make deps)"
/usr/bin/python3 -c 'import pyvhdi' 2>/dev/null || fail "python3-libvhdi not installed (make deps)"
PY=/usr/bin/python3 # not a pyenv shim: it starts ten times faster
SPEC_READ="$PY $ROOT/fixtures/spec_read.py"
M=1048576

run_troy() {
  "$TROY" "$@" >"$WORK/stdout" 2>"$WORK/stderr" || { cat "$WORK/stderr" >&2; fail "troy $*"; }
}

# spec_reads EXPECTED IMAGE [PARENT...]: spec_read.py resolves the chain
# given explicitly (top first) to EXPECTED (--compare: no raw file written).
spec_reads() {
  local expected=$1
  shift
  $SPEC_READ --compare "$expected" "$@" || fail "spec_read.py: $* does not read as $expected"
}

# qemu_reads FORMAT IMAGE EXPECTED (and qemu-img check passes for VHDX).
qemu_reads() {
  qemu-img convert -f "$1" -O raw "$2" "$WORK/qemu.raw" || fail "qemu-img cannot read $2"
  cmp -s "$WORK/qemu.raw" "$3" || fail "qemu-img: $2 differs from $3"
  if [ "$1" = vhdx ]; then qemu-img check -q -f vhdx "$2" || fail "qemu-img check $2"; fi
  rm -f "$WORK/qemu.raw"
}

# qemu_sha FORMAT IMAGE: sha256 of the disk as qemu-img reads it.
qemu_sha() {
  qemu-img convert -f "$1" -O raw "$2" "$WORK/qemu.raw" || fail "qemu-img cannot read $2"
  sha "$WORK/qemu.raw"
  rm -f "$WORK/qemu.raw"
}

# libvhdi_reads EXPECTED IMAGE [PARENT...], parents opened explicitly.
libvhdi_reads() {
  $PY - "$@" <<'PY' || fail "libvhdi: ${*:2} differs from $1"
import sys, pyvhdi
expected, paths = sys.argv[1], sys.argv[2:]
files = []
for p in reversed(paths):
    f = pyvhdi.file()
    f.open(p)
    if files:
        f.set_parent(files[-1])
    files.append(f)
top, raw = files[-1], open(expected, "rb")
size = raw.seek(0, 2)
if top.get_media_size() != size:
    sys.exit("libvhdi: size %d, expected %d" % (top.get_media_size(), size))
raw.seek(0)
for at in range(0, size, 1 << 22):
    n = min(1 << 22, size - at)
    got, want = top.read_buffer_at_offset(n, at), raw.read(n)
    if got != want:
        sys.exit("libvhdi: byte %d differs" % (at + next(i for i in range(n) if got[i] != want[i])))
PY
}

# reads_as EXPECTED IMAGE [PARENT...]: troy convert (parents found by itself)
# and spec_read.py (parents given) both read the chain as EXPECTED.
reads_as() {
  expect_converts_to "$2" "$1"
  spec_reads "$@"
}

# merge CHILD [OPTIONS]: troy merge succeeds; its stderr is in $WORK/stderr.
merge() {
  "$TROY" merge "$@" >"$WORK/stdout" 2>"$WORK/stderr" || { cat "$WORK/stderr" >&2; fail "troy merge $*"; }
  grep -q '^troy: merged ' "$WORK/stderr" || { cat "$WORK/stderr" >&2; fail "troy merge $*: no summary line"; }
}

# fixed_vhd_copy DYNAMIC OUT: OUT is a fixed VHD written by qemu-img with the
# same content and the same footer Unique Id as DYNAMIC (so DYNAMIC's
# children accept it as their parent).
fixed_vhd_copy() {
  qemu-img convert -f vpc -O vpc -o subformat=fixed,force_size=on "$1" "$2" || fail "qemu-img convert -O vpc fixed"
  $PY - "$1" "$2" <<'PY'
import struct, sys
src, dst = sys.argv[1:3]
with open(src, "rb") as f:
    f.seek(-512, 2)
    unique_id = f.read(512)[68:84]
with open(dst, "r+b") as f:
    at = f.seek(-512, 2)
    footer = bytearray(f.read(512))
    assert footer[:8] == b"conectix" and struct.unpack_from(">I", footer, 60)[0] == 2, "not a fixed VHD"
    footer[68:84] = unique_id
    footer[64:68] = bytes(4)
    struct.pack_into(">I", footer, 64, ~sum(footer) & 0xFFFFFFFF)
    f.seek(at)
    f.write(footer)
PY
}

# disk gen OUT SIZE SEED: random data in [0, 24M) and [32M, 36M) and the last
#   sector, holes elsewhere.
# disk mutate IN OUT SEED MODE: changed copy of IN. any: sector-granular runs
#   (single sectors, across bitmap bytes and block boundaries, zeros over data,
#   data into holes), [8M, 16M) rewritten, [16M, 24M) zeroed (whole blocks:
#   ZERO blocks in a VHDX child). over: the same runs, data written into
#   [16M, 24M) and across 24M instead of the zeroing.
disk() {
  $PY - "$@" <<'PY'
import random, sys
M, S = 1 << 20, 512
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
    k = seed % 5 * 3 * S
    put(3 * S + k, S); put(13 * S + k, 8 * S); put(2 * M - 3 * S + k, 8 * S); put(32 * M - 2 * S + k, 4 * S)
    put(5 * M + 7 * S + k, 30 * S, zero=True); put(26 * M + 5 * S + k, 9 * S); put(8 * M, 8 * M)
    if mode == "any":
        put(16 * M, 8 * M, zero=True)
    else:
        put(16 * M + 100 * S + k, 10 * S); put(24 * M - 5 * S, 10 * S)
    put(len(data) - S, S)
    open(args[1], "wb").write(data)
PY
}

oracle=$(vhd_lib_oracle)

# 1. Chains from the project's independent writers: merge layer1 into the
# base, and/or (a fresh copy) layer2 --into the base. The base reads the merged
# level by troy, spec_read.py, qemu-img (+ check on VHDX; not 4096-byte
# sectors, which qemu-img refuses) and libvhdi; layer2, found in the folder
# and re-linked to the base, still reads its own level.
vhd_writer_case() { # DIR FORMAT MODES OPTIONS... (MODES: "layer1 into" or one of them)
  local dir=$1 fmt=$2 modes=$3 ext qfmt base
  shift 3
  if [ "$fmt" = vhd ]; then ext=vhd base=base.vhd qfmt=vpc; else ext=avhdx base=base.vhdx qfmt=vhdx; fi
  rm -rf "$dir.orig"
  if [ "$fmt" = vhd ]; then $MAKE_VHD chain "$dir.orig" --layers 2 "$@" >/dev/null; else $MAKE_VHDX chain "$dir.orig" --layers 2 "$@" >/dev/null; fi
  for mode in $modes; do
    rm -rf "$dir" && cp -r "$dir.orig" "$dir"
    cd "$dir"
    local merged=layer1
    if [ "$mode" = layer1 ]; then merge "layer1.$ext"; else merge "layer2.$ext" --into "$base"; merged=layer2; fi
    reads_as "$merged.raw" "$base"
    grep -q 'logical_sector_size": 4096' manifest.json 2>/dev/null || qemu_reads "$qfmt" "$base" "$merged.raw"
    libvhdi_reads "$merged.raw" "$base"
    expect_exit 0 "$TROY" check "layer2.$ext"
    if [ "$mode" = layer1 ]; then
      reads_as layer1.raw "layer1.$ext" "$base"
      reads_as layer2.raw "layer2.$ext" "$base" # re-linked: its parent was layer1
      "$TROY" info "layer2.$ext" | grep -q "\[1\] $base " || fail "layer2.$ext is not re-linked to $base"
    else
      reads_as layer2.raw "layer2.$ext" "layer1.$ext" "$base"
      # layer1 now reads its own sectors over layer2's level: troy and
      # spec_read.py agree on it.
      run_troy convert "layer1.$ext" "$WORK/layer1.raw" --overwrite
      spec_reads "$WORK/layer1.raw" "layer1.$ext" "$base"
      rm -f "$WORK/layer1.raw"
    fi
    cd "$WORK"
  done
}
while read -r modes opts; do
  # shellcheck disable=SC2086
  vhd_writer_case "$WORK/mkvhd" vhd "${modes/+/ }" $opts
  pass "make_vhd.py chain $opts: merge ${modes/+/, }"
done <<'CASES'
layer1+into --seed 31 --writes 40
into --seed 32 --writes 40 --block-size 524288
layer1 --seed 33 --writes 40 --block-size 4096 --size 6000128
layer1+into --seed 34 --writes 40 --whole-bytes --unwritten zero
CASES
while read -r modes opts; do
  # shellcheck disable=SC2086
  vhd_writer_case "$WORK/mkvhdx" vhdx "${modes/+/ }" $opts
  read -r blocks states < <($PY -c 'import json, sys; m = json.load(open(sys.argv[1]))
print(-(-m["virtual_size"] // m["block_size"]), " ".join(sorted(m["levels"][1]["states"])))' "$WORK/mkvhdx/manifest.json")
  [[ $states == *ZERO* ]] || [ "$blocks" -lt 4 ] || fail "make_vhdx.py wrote no ZERO block in layer1 ($opts)"
  pass "make_vhdx.py chain $opts (layer1: $states): merge ${modes/+/, }"
done <<'CASES'
layer1+into --seed 41 --writes 30
layer1+into --seed 42 --writes 30 --base fixed
layer1+into --seed 43 --writes 30 --sector-size 4096 --block-size 2097152
layer1 --seed 44 --writes 30 --unmapped-value 5
into --seed 45 --writes 30 --block-size 33554432 --size 35652096
layer1 --seed 46 --writes 30 --identical-headers
into --seed 47 --writes 30 --sector-size 4096 --base fixed --size 12587008
CASES
rm -rf "$WORK"/mkvhd*

# 2. Chains made by troy capture + troy diff. The merged parent reads the new
# state by qemu-img (+ check; not 4096-byte sectors), libvhdi, spec_read.py
# and troy; the kept child, re-linked, reads it too (libvhdi included: its
# ZERO blocks now lie over zeros in the parent).
disk gen P512.raw 40895488 1
disk gen P4096.raw 40906752 3
seed=50
while read -r fmt sector ptype pblock cblock mode; do
  seed=$((seed + 1))
  rm -rf made && mkdir made
  disk mutate "P$sector.raw" made/new.raw "$seed" "$mode"
  if [ "$fmt" = vhd ]; then parent=made/parent.vhd child=made/child.vhd qfmt=vpc; else parent=made/parent.vhdx child=made/child.avhdx qfmt=vhdx; fi
  opts=(--type "$ptype" --block-size "$pblock")
  [ "$fmt" = vhdx ] && opts+=(--sector-size "$sector")
  run_troy capture "${opts[@]}" "P$sector.raw" "$parent"
  run_troy diff --block-size "$cblock" "$parent" made/new.raw -o "$child"
  states=$("$TROY" info "$child" | sed -n 's/^block_states: *//p')
  if [ "$fmt" = vhdx ] && [ "$mode" = any ]; then [[ $states == *ZERO* ]] || fail "no ZERO block in $child: $states"; fi
  merge "$child"
  reads_as made/new.raw "$parent"
  [ "$sector" = 4096 ] || qemu_reads "$qfmt" "$parent" made/new.raw
  case $fmt/$pblock in vhd/512K | vhd/1M) ;; *) libvhdi_reads made/new.raw "$parent" ;; esac
  reads_as made/new.raw "$child" "$parent"
  [ "$fmt" = vhdx ] && libvhdi_reads made/new.raw "$child" "$parent"
  expect_exit 0 "$TROY" check "$child"
  pass "capture $fmt $ptype block $pblock sector $sector + diff block $cblock ($mode${states:+, $states}): merged"
done <<'CASES'
vhdx 512 dynamic 32M 1M any
vhdx 512 dynamic 1M 2M over
vhdx 512 fixed 32M 2M any
vhdx 512 dynamic 32M 1M over
vhdx 4096 dynamic 32M 2M any
vhdx 4096 dynamic 1M 1M over
vhdx 4096 fixed 32M 1M any
vhd 512 dynamic 512K 2M any
vhd 512 dynamic 2M 512K over
CASES
rm -rf made

# Growth: a child larger than its VHDX parent grows the parent (as Hyper-V
# does). A parent from make_vhdx.py (another writer's BAT) grown from 5 to 9
# MiB, and a troy parent grown across the first sector bitmap chunk (4 GiB
# with 1 MiB blocks; sparse): qemu-img (+ check), spec_read.py, troy, and
# libvhdi for the small one, read the new disk; the child still reads it.
# With --undo, rollback gives the old content, then zeros to the new size.
sparse_reads() { # EXPECTED IMAGE [PARENT...]: troy, spec_read.py, qemu-img (+ check) on a sparse disk
  local expected=$1 image=$2
  shift
  run_troy convert "$image" "$WORK/troy.raw" --overwrite
  sparse_cmp "$WORK/troy.raw" "$expected" || fail "troy: $image differs from $expected"
  $SPEC_READ "$WORK/spec.raw" "$@" || fail "spec_read.py cannot read $*"
  sparse_cmp "$WORK/spec.raw" "$expected" || fail "spec_read.py: $* differs from $expected"
  if [ $# = 1 ]; then
    qemu-img convert -f vhdx -O raw "$image" "$WORK/qemu.raw" || fail "qemu-img cannot read $image"
    sparse_cmp "$WORK/qemu.raw" "$expected" || fail "qemu-img: $image differs from $expected"
    qemu-img check -q -f vhdx "$image" || fail "qemu-img check $image"
  fi
  rm -f "$WORK/troy.raw" "$WORK/spec.raw" "$WORK/qemu.raw"
}
rm -rf grow && mkdir -p grow/a
$MAKE_VHDX dynamic grow/a/small.vhdx --size 5M --seed 3 --block-size 1048576 >/dev/null
make_random_raw grow/new.raw $((9 * M)) 4
dd if=grow/a/small.vhdx.raw of=grow/new.raw bs=1M count=2 conv=notrunc status=none
cp grow/a/small.vhdx.raw grow/old.raw && truncate -s $((9 * M)) grow/old.raw
run_troy diff grow/a/small.vhdx grow/new.raw -o grow/a/small.avhdx
cp -r grow/a grow/b
merge grow/a/small.avhdx
sparse_reads grow/new.raw grow/a/small.vhdx
libvhdi_reads grow/new.raw grow/a/small.vhdx
sparse_reads grow/new.raw grow/a/small.avhdx grow/a/small.vhdx
merge grow/b/small.avhdx --undo grow/b/undo.avhdx
sparse_reads grow/new.raw grow/b/small.vhdx
run_troy rollback grow/b/undo.avhdx
sparse_reads grow/old.raw grow/b/small.vhdx
pass "make_vhdx.py parent grown from 5 to 9 MiB by merge; rollback: the old content, zeros to 9 MiB"
truncate -s 4095M grow/p.raw
make_random_raw grow/tail.raw $M 9
dd if=grow/tail.raw of=grow/p.raw bs=1M seek=4094 conv=notrunc status=none
cp --sparse=always grow/p.raw grow/n.raw && truncate -s 4098M grow/n.raw
make_random_raw grow/tail.raw $((3 * M)) 10
dd if=grow/tail.raw of=grow/n.raw bs=1M seek=4094 conv=notrunc status=none
run_troy capture --block-size 1M grow/p.raw grow/big.vhdx
run_troy diff grow/big.vhdx grow/n.raw -o grow/big.avhdx
merge grow/big.avhdx
sparse_reads grow/n.raw grow/big.vhdx
run_troy convert grow/big.avhdx grow/out.raw # spec_read.py: seconds on a differencing 4 GiB disk
sparse_cmp grow/out.raw grow/n.raw || fail "troy: big.avhdx over the grown parent differs"
pass "troy parent grown from 4095 to 4098 MiB (into the second chunk) by merge"
rm -rf grow

# 3. fat-differential.vhd (written by Windows, partial bitmap bytes) merged
# into its surrogate parent, renamed to the name the child's locators give:
# the parent then reads the spec value listed in ../shared/README.md by
# qemu-img, spec_read.py and troy, and the child still reads it over it.
mkdir fat && cd fat
mv "$(public_fixture dfvfs/fat-differential.vhd)" .
mv "$(public_fixture dfvfs/fat-parent-surrogate.vhd)" fat-parent.vhd
[ "$(qemu_sha vpc fat-parent.vhd)" = c599d3222a863af6beaa9c130521bd5f6f8e17aad3df19c1db1917e25e9baaa9 ] ||
  fail "the surrogate parent does not read as listed"
merge fat-differential.vhd
fat=889e3816dcc25c9cfa5970478ba8638ac9cb9df034c2ceb77e7e6f9940487094
[ "$(qemu_sha vpc fat-parent.vhd)" = $fat ] || fail "qemu-img: merged fat-parent.vhd is not the spec value"
$SPEC_READ out.raw fat-parent.vhd || fail "spec_read.py fat-parent.vhd"
[ "$(sha out.raw)" = $fat ] || fail "spec_read.py: merged fat-parent.vhd is not the spec value"
run_troy convert fat-parent.vhd out.raw --overwrite
[ "$(sha out.raw)" = $fat ] || fail "troy: merged fat-parent.vhd is not the spec value"
run_troy convert fat-differential.vhd out.raw --overwrite
[ "$(sha out.raw)" = $fat ] || fail "troy: fat-differential.vhd over the merged parent is not the spec value"
$SPEC_READ out.raw fat-differential.vhd fat-parent.vhd || fail "spec_read.py fat-differential.vhd"
[ "$(sha out.raw)" = $fat ] || fail "spec_read.py: fat-differential.vhd over the merged parent is not the spec value"
cd "$WORK" && rm -rf fat
pass "Windows-made fat-differential.vhd merged into its surrogate parent: the spec value, by qemu-img, spec_read.py, troy"

# 4. merge --undo, then troy rollback UNDO (or troy merge UNDO): the parent
# reads byte for byte what it read before (qemu-img, troy). The undo image,
# read over the merged parent, holds the old content (spec_read.py too).
rollback_case() { # DIR PARENT CHILD QEMU_FORMAT OLD_RAW NEW_RAW UNDO HOW
  local dir=$1 parent=$2 child=$3 qfmt=$4 old=$5 new=$6 undo=$7 how=$8
  cd "$dir"
  local before
  before=$(qemu_sha "$qfmt" "$parent")
  [ "$before" = "$(sha "$old")" ] || fail "$parent does not read as $old before the merge"
  merge "$child" --undo "$undo"
  [ -f "$undo" ] || fail "merge --undo $undo wrote no undo image"
  qemu_reads "$qfmt" "$parent" "$new"
  reads_as "$old" "$undo" "$parent"
  "$TROY" "$how" "$undo" >"$WORK/stdout" 2>"$WORK/stderr" || { cat "$WORK/stderr" >&2; fail "troy $how $undo"; }
  [ "$(qemu_sha "$qfmt" "$parent")" = "$before" ] || fail "troy $how $undo: qemu-img reads $parent differently than before the merge"
  [ "$qfmt" = vhdx ] && { qemu-img check -q -f vhdx "$parent" || fail "qemu-img check $parent after rollback"; }
  reads_as "$old" "$parent"
  [ ! -e ".$parent.troy-merge" ] || fail "a journal is left after troy $how"
  cd "$WORK"
}
rm -rf rb && node "$oracle/make-chain.js" "$WORK/rb" --seed 13 --layers 1 --writes 24 --mib 9 >/dev/null
rollback_case rb base.vhd layer1.vhd vpc base.raw layer1.raw undo.vhd rollback
pass "VHD (vhd-lib): merge --undo, troy rollback restores the parent exactly"
rm -rf rb && $MAKE_VHDX chain rb --seed 14 --layers 1 --writes 30 >/dev/null
rollback_case rb base.vhdx layer1.avhdx vhdx base.raw layer1.raw undo.avhdx rollback
pass "VHDX (make_vhdx.py, ZERO blocks): merge --undo, troy rollback restores the parent exactly"
rm -rf rb && mkdir rb && disk mutate P512.raw rb/new.raw 60 any && cp P512.raw rb/old.raw
run_troy capture --block-size 32M rb/old.raw rb/parent.vhdx
run_troy diff --block-size 1M rb/parent.vhdx rb/new.raw -o rb/child.avhdx
rollback_case rb parent.vhdx child.avhdx vhdx old.raw new.raw back.avhdx merge
pass "VHDX (troy capture + diff, ZERO blocks): merge --undo, troy merge UNDO restores the parent exactly"
rm -rf rb

# 5. vhd-lib chains (several seeds, 1 to 3 layers): troy merges the top layer
# into its parent. The parent then reads the top level's oracle raw (qemu-img
# too when it is the standalone base: dynamic as vhd-lib wrote it, or a fixed
# copy made by qemu-img); every other level still reads its oracle raw.
for spec in "1 1 dynamic" "7 2 dynamic" "23 3 dynamic" "5 1 fixed" "9 2 fixed"; do
  read -r seed layers base <<<"$spec"
  dir=$WORK/vhdlib$seed
  node "$oracle/make-chain.js" "$dir" --seed "$seed" --layers "$layers" --writes 24 --mib 9 >/dev/null
  [ "$layers" = 3 ] && cp -r "$dir" "$WORK/into$seed" # for --into below
  cd "$dir"
  if [ "$base" = fixed ]; then
    fixed_vhd_copy base.vhd fixed.vhd && mv fixed.vhd base.vhd
    "$TROY" info base.vhd | grep -q '^format: *vhd fixed' || fail "the qemu-img copy of base.vhd is not a fixed VHD"
  fi
  chain=() # the levels below the top, top first
  for level in $(seq $((layers - 1)) -1 1); do chain+=("layer$level.vhd"); done
  chain+=(base.vhd)
  merge "layer$layers.vhd"
  target=${chain[0]}
  reads_as "layer$layers.raw" "${chain[@]}"
  [ "$target" = base.vhd ] && qemu_reads vpc base.vhd "layer$layers.raw"
  reads_as "layer$layers.raw" "layer$layers.vhd" "${chain[@]}"
  expect_exit 0 "$TROY" check "layer$layers.vhd"
  for i in $(seq 1 $((${#chain[@]} - 1))); do
    level=${chain[$i]}
    reads_as "${level%.vhd}.raw" "${chain[@]:$i}"
  done
  [ "$target" = base.vhd ] || qemu_reads vpc base.vhd base.raw
  pass "vhd-lib seed $seed, $layers layer(s) over a $base base: merge layer$layers.vhd into $target"
  cd "$WORK"
done

# --into the base of 3-layer chains: the base reads the top level; the top
# still reads it; each layer k between reads its own sectors (those layers
# 1..k wrote, from vhd-lib's manifest) over the top level's content.
node "$oracle/make-chain.js" "$WORK/into11" --seed 11 --layers 3 --writes 24 --mib 9 >/dev/null
for seed in 11 23; do
  cd "$WORK/into$seed"
  merge layer3.vhd --into base.vhd
  reads_as layer3.raw base.vhd
  qemu_reads vpc base.vhd layer3.raw
  reads_as layer3.raw layer3.vhd layer2.vhd layer1.vhd base.vhd
  for k in 1 2; do
    $PY - "$k" <<'PY'
import json, sys
k = int(sys.argv[1])
levels = json.load(open("manifest.json"))["levels"]
out, own = bytearray(open("layer3.raw", "rb").read()), open("layer%d.raw" % k, "rb").read()
for level in levels[1:k + 1]:
    for w in level["writes"]:
        a, b = w["sector"] * 512, (w["sector"] + w["sectors"]) * 512
        out[a:b] = own[a:b]
open("expected%d.raw" % k, "wb").write(out)
PY
    chain=(layer1.vhd base.vhd)
    [ "$k" = 2 ] && chain=(layer2.vhd layer1.vhd base.vhd)
    reads_as "expected$k.raw" "${chain[@]}"
  done
  expect_exit 0 "$TROY" check layer3.vhd
  pass "vhd-lib seed $seed, 3 layers: merge layer3.vhd --into base.vhd"
  cd "$WORK"
done

# 6. Into a VHDX differencing target (make_vhdx.py: its blocks in every
# state, UNDEFINED included, which reads the parent as NOT_PRESENT does):
# merge layer2 into layer1. layer1 then reads layer2's level (troy,
# spec_read.py over the base), layer2 still reads it, the base is unchanged
# (qemu-img), and a re-run finds nothing to do.
for opts in "--seed 61 --writes 30" "--seed 2 --writes 30 --block-size 2097152" "--seed 4 --writes 30 --block-size 2097152" \
  "--seed 62 --writes 30 --sector-size 4096 --block-size 2097152" "--seed 7 --writes 30"; do
  rm -rf dt
  # shellcheck disable=SC2086
  $MAKE_VHDX chain dt --layers 2 $opts >/dev/null
  cd dt
  merge layer2.avhdx
  reads_as layer2.raw layer1.avhdx base.vhdx
  reads_as layer2.raw layer2.avhdx layer1.avhdx base.vhdx
  grep -q 'logical_sector_size": 4096' manifest.json || qemu_reads vhdx base.vhdx base.raw
  expect_exit 0 "$TROY" merge layer2.avhdx
  grep -q 'already holds' "$WORK/stderr" || { cat "$WORK/stderr" >&2; fail "re-run of merge layer2.avhdx did not find the merge complete"; }
  cd "$WORK"
  pass "make_vhdx.py chain $opts: merge layer2 into the differencing layer1"
done
finish
