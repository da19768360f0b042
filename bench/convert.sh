#!/usr/bin/env bash
# Benchmark: `troy convert` (VHD or VHDX -> raw) against `qemu-img convert` on the same data.
# Usage: bash bench/convert.sh [TROY_BINARY] [SIZE_MIB] [FORMATS]
#   FORMATS: comma-separated, from vhd and vhdx, run in that order (default: vhd,vhdx)
set -euo pipefail

TROY=${1:-"$(dirname "$0")/../build/troy"}
SIZE_MIB=${2:-1024}
FORMATS=${3:-vhd,vhdx}
MAKE_VHDX=$(dirname "$0")/../fixtures/make_vhdx.py  # builds the VHDX chain of the extra row
BLOCK_MIB=2   # dynamic block size of both images (qemu-img's vpc default), also our allocation unit
RUNS=3        # timed runs per tool, after one untimed warm-up
NAME_WIDTH=38  # width of the tool column
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
require_bench_tools
# make_vhdx.py costs about 1 s + 2 s per GiB (it hashes every expected raw file); the chain's
# data is a sample of blocks anyway, so a bigger disk only adds holes.
CHAIN_MAX_MIB=4096

(( SIZE_MIB >= 2 * BLOCK_MIB && SIZE_MIB % BLOCK_MIB == 0 )) \
  || die "SIZE_MIB must be a multiple of $BLOCK_MIB and at least $((2 * BLOCK_MIB))"
IFS=, read -r -a FORMAT_LIST <<< "$FORMATS"
(( ${#FORMAT_LIST[@]} > 0 )) || die "FORMATS is empty; give vhd, vhdx or vhd,vhdx"
for format in "${FORMAT_LIST[@]}"; do
  [[ $format == vhd || $format == vhdx ]] || die "unknown format '$format' in FORMATS: use vhd, vhdx or both"
done
if [[ ,$FORMATS, == *,vhdx,* ]]; then
  command -v python3 >/dev/null || die "python3 not found (needed for the VHDX chain row)"
  [[ -f $MAKE_VHDX ]] || die "fixtures/make_vhdx.py not found at $MAKE_VHDX"
  MAKE_VHDX=$(realpath "$MAKE_VHDX")
fi
TROY=$(realpath "$TROY")
TOTAL_BLOCKS=$(( SIZE_MIB / BLOCK_MIB ))

WORK=$(mktemp -d "${TMPDIR:-/tmp}/troy-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

# --- Input: raw file whose even-numbered 2 MiB blocks hold random data and odd ones are holes.
# qemu-img writes no block for all-zero data, so each image gets exactly half its blocks
# allocated; random data keeps either tool from winning by spotting zeros. Shared by all formats.
make_source() {
  local block
  echo "building ${SIZE_MIB} MiB of source data (even ${BLOCK_MIB} MiB blocks random, odd ones holes) in $WORK"
  truncate -s "${SIZE_MIB}M" source.raw
  for (( block = 0; block < TOTAL_BLOCKS; block += 2 )); do
    head -c "${BLOCK_MIB}M" /dev/urandom | dd of=source.raw bs=1M seek=$((block * BLOCK_MIB)) \
      conv=notrunc status=none
  done
}

# --- Images. Each build_FORMAT writes IMAGE and sets IMAGE, QEMU_FORMAT (qemu-img's -f name)
# and ALLOCATED (allocated blocks, found independently of the timed conversion).
build_vhd() {
  IMAGE=image.vhd QEMU_FORMAT=vpc
  # force_size keeps the virtual size exactly SIZE_MIB (no CHS rounding), so outputs compare 1:1.
  qemu-img convert -f raw -O vpc -o subformat=dynamic,force_size=on source.raw "$IMAGE"
  # Each allocated block costs 2 MiB + a 512-byte sector bitmap; the remaining metadata (footer,
  # header, BAT) is far below one block, so integer division counts the allocated blocks.
  ALLOCATED=$(( $(stat -c %s "$IMAGE") / ((BLOCK_MIB << 20) + 512) ))
}
build_vhdx() {
  IMAGE=image.vhdx QEMU_FORMAT=vhdx
  qemu-img create -q -f vhdx -o "subformat=dynamic,block_size=${BLOCK_MIB}M" "$IMAGE" "${SIZE_MIB}M"
  # -n writes into the image just created. create marks every block ZERO; --target-is-zero
  # tells qemu-img so, otherwise it writes the holes as zero data and allocates every block.
  qemu-img convert -n --target-is-zero -f raw -O vhdx source.raw "$IMAGE"
  # `troy info` prints "allocated: N blocks, ..." (FULLY_PRESENT blocks, from the BAT).
  "$TROY" info "$IMAGE" > info.out || die "troy info $IMAGE failed"
  ALLOCATED=$(awk '$1 == "allocated:" { print $2 }' info.out)
}
build_image() {  # format
  echo
  echo "=== $1: building a ${SIZE_MIB} MiB dynamic ${1^^} (${BLOCK_MIB} MiB blocks) from the source"
  "build_$1"
  echo "$IMAGE: $(stat -c %s "$IMAGE") bytes, ${ALLOCATED:-?} of $TOTAL_BLOCKS blocks allocated"
  (( ALLOCATED == (TOTAL_BLOCKS + 1) / 2 )) || die "expected half the blocks allocated; input is not what we meant"
}


time_image() {
  echo "timing: 1 warm-up + $RUNS runs each, input in page cache (measures code, not disk)"
  bench troy.raw "$TROY" convert "$IMAGE" troy.raw --overwrite; TROY_S=$BEST_S TROY_KIB=$PEAK_KIB
  bench qemu.raw qemu-img convert -f "$QEMU_FORMAT" -O raw "$IMAGE" qemu.raw; QEMU_S=$BEST_S QEMU_KIB=$PEAK_KIB
  # Same, but flushing its output at the end as troy does (qemu-img's default, unsafe, never
  # flushes): this is the equal-work baseline for the target.
  bench qemu-flush.raw qemu-img convert -t writeback -f "$QEMU_FORMAT" -O raw "$IMAGE" qemu-flush.raw
  QFLUSH_S=$BEST_S QFLUSH_KIB=$PEAK_KIB
  # Streaming path: no seeks, no sparse holes, every zero byte is written (to /dev/null here).
  bench none "$TROY" convert "$IMAGE" -; STDOUT_S=$BEST_S STDOUT_KIB=$PEAK_KIB
}

# --- Correctness first: a fast wrong answer is worthless. Compare against the source raw
# (independent of both readers) as well as against each other.
verify_image() {
  cmp source.raw troy.raw || die "troy output of $IMAGE differs from the source data"
  cmp source.raw qemu.raw || die "qemu-img output of $IMAGE differs from the source data"
  cmp source.raw qemu-flush.raw || die "qemu-img -t writeback output of $IMAGE differs from the source data"
  "$TROY" convert "$IMAGE" - | cmp - source.raw || die "troy stdout output of $IMAGE differs from the source data"
  echo "verified: troy (file and stdout) and qemu-img outputs of $IMAGE are byte-identical to the source"
  rm -f troy.raw qemu.raw qemu-flush.raw "$IMAGE"  # keeps the free space needed to one format's
}

# --- Report.
report_image() {  # format
  local f=$1
  table_header "$f: tool"
  row "troy convert $IMAGE" "$TROY_S" "$TROY_KIB"
  row "qemu-img convert -f $QEMU_FORMAT" "$QEMU_S" "$QEMU_KIB"
  row "qemu-img convert -f $QEMU_FORMAT -t writeback" "$QFLUSH_S" "$QFLUSH_KIB"
  row "troy convert $IMAGE - >/dev/null" "$STDOUT_S" "$STDOUT_KIB"
  echo "(MiB/s of ${SIZE_MIB} MiB virtual size, $ALLOCATED of $TOTAL_BLOCKS blocks allocated)"
  # The target compares equal work: both tools flushing their output (troy always does, so a
  # killed convert never leaves a finished-looking file). The unflushed ratio is shown too.
  awk -v p="$f:" -v t="$TROY_S" -v q="$QEMU_S" -v fl="$QFLUSH_S" -v tk="$TROY_KIB" -v qk="$QEMU_KIB" 'BEGIN {
    if (fl > 0) printf "%s ratio troy/qemu-img -t writeback wall: %.2f (both flush; below 1.0 = troy faster)\n", p, t / fl
    if (q > 0) printf "%s ratio troy/qemu-img (unflushed) wall: %.2f (qemu-img skips the flush)\n", p, t / q
    printf "%s ratio troy/qemu-img peak RSS: %.2f (below 1.0 = troy smaller)\n", p, tk / qk }'
  # /usr/bin/time has 10 ms resolution; compare with that tolerance.
  if awk -v t="$TROY_S" -v q="$QFLUSH_S" 'BEGIN { exit !(t <= q + 0.01) }'; then
    echo "$f: target: not slower than qemu-img at equal durability: MET"
  else
    echo "$f: target: not slower than qemu-img at equal durability: NOT MET"
  fi
}

# --- VHDX only, informational: a differencing chain (base.vhdx <- layer1.avhdx <- layer2.avhdx)
# from fixtures/make_vhdx.py. qemu-img cannot read differencing VHDX, so there is no baseline.
chain_allocation() {  # sets CHAIN_ALLOC: "file N" per level, from troy info
  local file
  CHAIN_ALLOC=""
  for file in base.vhdx layer1.avhdx layer2.avhdx; do
    "$TROY" info "chain/$file" > info.out || die "troy info chain/$file failed"
    CHAIN_ALLOC+="${CHAIN_ALLOC:+, }$file $(awk '$1 == "allocated:" { print $2 }' info.out)"
  done
}
bench_chain() {
  CHAIN_MIB=$(( SIZE_MIB < CHAIN_MAX_MIB ? SIZE_MIB : CHAIN_MAX_MIB ))
  echo
  echo "=== vhdx chain: building a ${CHAIN_MIB} MiB 3-level chain with fixtures/make_vhdx.py"
  if (( CHAIN_MIB < SIZE_MIB )); then
    echo "note: chain capped at $CHAIN_MAX_MIB MiB (not $SIZE_MIB): make_vhdx.py hashes every raw file"
  fi
  python3 "$MAKE_VHDX" chain chain --seed 1 --layers 2 --size "${CHAIN_MIB}M" \
    --block-size "${BLOCK_MIB}M" || die "make_vhdx.py chain failed"
  chain_allocation
  echo "chain: allocated blocks of $(( CHAIN_MIB / BLOCK_MIB )): $CHAIN_ALLOC (the rest read the parent or zeros)"
  bench chain.raw "$TROY" convert chain/layer2.avhdx chain.raw --overwrite; CHAIN_S=$BEST_S CHAIN_KIB=$PEAK_KIB
  cmp chain/layer2.raw chain.raw || die "troy output of chain/layer2.avhdx differs from layer2.raw"
  echo "verified: troy output of chain/layer2.avhdx is byte-identical to make_vhdx.py's layer2.raw"
  rm -rf chain chain.raw
  table_header "vhdx chain: tool"
  row "troy convert chain/layer2.avhdx" "$CHAIN_S" "$CHAIN_KIB" "$CHAIN_MIB"
  echo "(MiB/s of ${CHAIN_MIB} MiB virtual size; no ratio: qemu-img cannot read differencing VHDX)"
}

make_source
for format in "${FORMAT_LIST[@]}"; do
  build_image "$format"
  time_image
  verify_image
  report_image "$format"
done
if [[ ,$FORMATS, == *,vhdx,* ]]; then bench_chain; fi
echo
echo "note: troy fsyncs its output file before renaming it into place; plain qemu-img convert"
echo "      never flushes (cache=unsafe), -t writeback flushes once at the end like troy"
