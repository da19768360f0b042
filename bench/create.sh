#!/usr/bin/env bash
# Benchmark: the commands that write new images.
#   (a) `troy capture` (raw -> dynamic VHDX and VHD) against `qemu-img convert -f raw` of the
#       same file, at equal durability.
#   (b) `troy diff` of two states of a disk differing in 5%, against reading the same bytes.
# Usage: bash bench/create.sh [TROY_BINARY] [SIZE_MIB]
set -euo pipefail

TROY=${1:-"$(dirname "$0")/../build/troy"}
SIZE_MIB=${2:-2048}
BLOCK_MIB=2      # block size of every image (qemu-img's vpc default, Hyper-V's VHD and child default)
CHANGED_PCT=5    # share of the disk that the second state rewrites, for (b)
RUNS=3           # timed runs per command, after one untimed warm-up
NAME_WIDTH=58  # width of the tool column
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
require_bench_tools

command -v python3 >/dev/null || die "python3 not found (it builds the input data)"
[[ $SIZE_MIB =~ ^[0-9]+$ ]] && (( SIZE_MIB >= 4 * BLOCK_MIB && SIZE_MIB % BLOCK_MIB == 0 )) \
  || die "SIZE_MIB must be a multiple of $BLOCK_MIB and at least $((4 * BLOCK_MIB))"
TROY=$(realpath "$TROY")
TOTAL_BLOCKS=$(( SIZE_MIB / BLOCK_MIB ))

WORK=$(mktemp -d "${TMPDIR:-/tmp}/troy-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

# --- Inputs.
# state1.raw: even-numbered 2 MiB blocks random, odd ones zero. The zeros are written, not
# holes: a block device has no holes, so both tools must read every byte and spot the zeros
# themselves. Random data keeps either tool from winning by spotting zeros in the data blocks.
# state2.raw: state1 with scattered runs (4 KiB to 1 MiB, at any byte offset, in data and zero
# blocks alike) rewritten with random bytes, CHANGED_PCT% of the disk in all, for (b).
make_inputs() {
  echo "building ${SIZE_MIB} MiB state1.raw (even ${BLOCK_MIB} MiB blocks random, odd ones written zeros)"
  echo "and state2.raw (${CHANGED_PCT}% of it rewritten in scattered runs) in $WORK"
  python3 - "$SIZE_MIB" "$BLOCK_MIB" "$CHANGED_PCT" <<'PY'
import os, random, shutil, sys
size_mib, block_mib, changed_pct = map(int, sys.argv[1:4])
block, size = block_mib << 20, size_mib << 20
zeros = bytes(block)
with open("state1.raw", "wb") as f:
    for i in range(size // block):
        f.write(os.urandom(block) if i % 2 == 0 else zeros)
shutil.copyfile("state1.raw", "state2.raw")
rng = random.Random(1)
target, done = size * changed_pct // 100, 0
with open("state2.raw", "r+b") as f:
    while done < target:
        length = min(rng.randint(4 << 10, 1 << 20), target - done)
        at = rng.randrange(size - length)
        f.seek(at)
        f.write(os.urandom(length))
        done += length
PY
}


# --- Report.
# allocated_blocks IMAGE: FULLY_PRESENT / allocated blocks from `troy info`.
allocated_blocks() {
  "$TROY" info "$1" > info.out || die "troy info $1 failed"
  awk '$1 == "allocated:" { print $2 }' info.out
}

# --- (a) capture: troy against qemu-img convert -f raw, per format.
# Equal durability: troy fsyncs its output (then renames it into place and fsyncs the folder).
# qemu-img's default cache mode never flushes, so its baseline is `qemu-img convert` followed by
# `sync FILE` (one fsync of the output, the same work). `-t writeback` is shown as well: that is
# qemu-img's own durable mode, but for VHDX and VHD output it flushes after every metadata
# update (hundreds of fdatasync calls for 2 GiB), more work than one flush at the end.
capture_format() {  # vhdx|vhd
  local f=$1 qemu_fmt qemu_opts troy_out=troy.$1 qemu_out=qemu.$1
  if [[ $f == vhdx ]]; then
    qemu_fmt=vhdx qemu_opts="subformat=dynamic,block_size=${BLOCK_MIB}M"
  else
    # force_size keeps the virtual size exactly SIZE_MIB (no CHS rounding), as troy's.
    qemu_fmt=vpc qemu_opts="subformat=dynamic,force_size=on"
  fi
  echo
  echo "=== capture $f: ${SIZE_MIB} MiB raw -> dynamic ${f^^}, ${BLOCK_MIB} MiB blocks"
  echo "timing: 1 warm-up + $RUNS runs each, source in page cache (measures code and the output's flush)"
  bench "$troy_out" "$TROY" capture --block-size "${BLOCK_MIB}M" state1.raw "$troy_out"
  T_S=$BEST_S T_KIB=$PEAK_KIB
  bench "$qemu_out" sh -c 'qemu-img convert -f raw -O "$1" -o "$2" state1.raw "$3" && sync "$3"' \
    sh "$qemu_fmt" "$qemu_opts" "$qemu_out"
  Q_S=$BEST_S Q_KIB=$PEAK_KIB
  bench "$qemu_out" qemu-img convert -t writeback -f raw -O "$qemu_fmt" -o "$qemu_opts" state1.raw "$qemu_out"
  W_S=$BEST_S W_KIB=$PEAK_KIB

  # Correctness first: qemu-img reads troy's image, troy reads qemu-img's, both against the
  # source; and both left the zero blocks unallocated.
  qemu-img compare -q -f "$qemu_fmt" -F raw "$troy_out" state1.raw || die "qemu-img reads $troy_out differently from state1.raw"
  "$TROY" check "$troy_out" >/dev/null 2>&1 || die "troy check $troy_out fails"
  "$TROY" convert "$qemu_out" - | cmp - state1.raw || die "troy reads $qemu_out differently from state1.raw"
  local t_alloc q_alloc
  t_alloc=$(allocated_blocks "$troy_out") q_alloc=$(allocated_blocks "$qemu_out")
  (( t_alloc == TOTAL_BLOCKS / 2 && q_alloc == TOTAL_BLOCKS / 2 )) \
    || die "expected $((TOTAL_BLOCKS / 2)) blocks allocated, troy has $t_alloc, qemu-img $q_alloc"
  echo "verified: both images read as state1.raw (each tool reading the other's), $t_alloc of $TOTAL_BLOCKS blocks allocated in each"
  echo "file sizes: $troy_out $(stat -c %s "$troy_out") bytes, $qemu_out $(stat -c %s "$qemu_out") bytes"

  table_header "capture $f: tool"
  row "troy capture (fsync)" "$T_S" "$T_KIB"
  row "qemu-img convert -O $qemu_fmt + sync FILE" "$Q_S" "$Q_KIB"
  row "qemu-img convert -O $qemu_fmt -t writeback" "$W_S" "$W_KIB"
  awk -v p="capture $f:" -v t="$T_S" -v q="$Q_S" -v w="$W_S" -v tk="$T_KIB" -v qk="$Q_KIB" 'BEGIN {
    if (q > 0) printf "%s ratio troy/qemu-img+sync wall: %.2f (equal durability; below 1.0 = troy faster)\n", p, t / q
    if (w > 0) printf "%s ratio troy/qemu-img -t writeback wall: %.2f (qemu-img flushing per metadata update)\n", p, t / w
    printf "%s ratio troy/qemu-img peak RSS: %.2f (below 1.0 = troy smaller)\n", p, tk / qk }'
  rm -f "$qemu_out"
  if [[ $f == vhd ]]; then rm -f "$troy_out"; fi  # troy.vhdx stays: it is the parent in (b)
}

# --- (b) diff: a child of parent.vhdx (troy's capture of state1) holding where state2 differs.
# troy reads the parent's allocated data (its zero blocks are known without reading) and all of
# state2.raw, compares them, writes the differing sectors and fsyncs. The baseline reads the
# same bytes, nothing else: both files whole, with dd into /dev/null (no compare, no write).
diff_bench() {
  mv troy.vhdx parent.vhdx
  local parent_bytes new_bytes read_mib
  parent_bytes=$(stat -c %s parent.vhdx) new_bytes=$(stat -c %s state2.raw)
  read_mib=$(( (parent_bytes + new_bytes) >> 20 ))
  echo
  echo "=== diff: parent.vhdx (capture of state1) vs state2.raw (${CHANGED_PCT}% rewritten) -> child.avhdx"
  echo "timing: 1 warm-up + $RUNS runs each, inputs in page cache"
  bench child.avhdx "$TROY" diff parent.vhdx state2.raw -o child.avhdx
  D_S=$BEST_S D_KIB=$PEAK_KIB
  grep "differs from" tool.err || true
  bench none sh -c 'dd if=parent.vhdx of=/dev/null bs=2M status=none && dd if=state2.raw of=/dev/null bs=2M status=none'
  R_S=$BEST_S R_KIB=$PEAK_KIB

  "$TROY" check child.avhdx >/dev/null 2>&1 || die "troy check child.avhdx fails"
  "$TROY" convert child.avhdx - | cmp - state2.raw || die "child.avhdx does not read as state2.raw"
  echo "verified: child.avhdx reads as state2.raw; $(allocated_blocks child.avhdx) of $TOTAL_BLOCKS blocks allocated;" \
    "$(stat -c %s child.avhdx) bytes"

  table_header "diff: tool"
  row "troy diff (fsync)" "$D_S" "$D_KIB"
  row "dd parent.vhdx + state2.raw > /dev/null ($read_mib MiB)" "$R_S" "$R_KIB"
  echo "(MiB/s of the ${SIZE_MIB} MiB disk compared; the dd row reads $read_mib MiB: the parent file and state2.raw)"
  awk -v d="$D_S" -v r="$R_S" 'BEGIN {
    if (r > 0) printf "diff: ratio troy diff/reading the same bytes wall: %.2f (1.0 = as fast as only reading them)\n", d / r }'
}

make_inputs
capture_format vhdx
capture_format vhd
diff_bench
echo
echo "note: troy writes into an unnamed file, fsyncs it, then renames it into place; the qemu-img"
echo "      baseline is followed by sync FILE so that both end with the output on stable storage"
