#!/usr/bin/env bash
# Benchmark: `troy convert` (VHD -> raw) against `qemu-img convert` on the same image.
# Usage: bash bench/convert.sh [TROY_BINARY] [SIZE_MIB]
set -euo pipefail

TROY=${1:-"$(dirname "$0")/../build/troy"}
SIZE_MIB=${2:-1024}
BLOCK_MIB=2   # VHD dynamic block size (qemu-img's vpc default), also our allocation unit
RUNS=3        # timed runs per tool, after one untimed warm-up

die() { echo "convert.sh: $*" >&2; exit 1; }
# GNU time, not the shell keyword: only it reports peak RSS (%M).
[[ -x /usr/bin/time ]] || die "/usr/bin/time not found; install it with: apt-get install time"
command -v qemu-img >/dev/null || die "qemu-img not found; install it with: apt-get install qemu-utils"
[[ -x $TROY ]] || die "troy binary not found or not executable: $TROY (build it first)"
(( SIZE_MIB >= 2 * BLOCK_MIB && SIZE_MIB % BLOCK_MIB == 0 )) \
  || die "SIZE_MIB must be a multiple of $BLOCK_MIB and at least $((2 * BLOCK_MIB))"
TROY=$(realpath "$TROY")

WORK=$(mktemp -d "${TMPDIR:-/tmp}/troy-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

# --- Input: raw file whose even-numbered 2 MiB blocks hold random data and odd ones are holes.
# qemu-img's vpc writer leaves all-zero blocks unallocated, so the VHD gets exactly half its
# blocks allocated; random data keeps either tool from winning by spotting zeros.
echo "building a ${SIZE_MIB} MiB dynamic VHD (half of its ${BLOCK_MIB} MiB blocks allocated) in $WORK"
truncate -s "${SIZE_MIB}M" source.raw
for (( block = 0; block < SIZE_MIB / BLOCK_MIB; block += 2 )); do
  head -c "${BLOCK_MIB}M" /dev/urandom | dd of=source.raw bs=1M seek=$((block * BLOCK_MIB)) \
    conv=notrunc status=none
done
# force_size keeps the virtual size exactly SIZE_MIB (no CHS rounding), so outputs compare 1:1.
qemu-img convert -f raw -O vpc -o subformat=dynamic,force_size=on source.raw image.vhd
# Each allocated block costs 2 MiB + a 512-byte sector bitmap; the remaining metadata (footer,
# header, BAT) is far below one block, so integer division counts the allocated blocks.
ALLOCATED=$(( $(stat -c %s image.vhd) / ((BLOCK_MIB << 20) + 512) ))
TOTAL_BLOCKS=$(( SIZE_MIB / BLOCK_MIB ))
echo "image.vhd: $(stat -c %s image.vhd) bytes, $ALLOCATED of $TOTAL_BLOCKS blocks allocated"
(( ALLOCATED == (TOTAL_BLOCKS + 1) / 2 )) || die "expected half the blocks allocated; input is not what we meant"

# --- Timing. Results go to globals, not through $( ): a failing run must stop the script
# (set -e), which a command substitution or process substitution would hide.
# Runs "$@" once untimed (warms the page cache: we measure our code, not the disk), then
# RUNS times under GNU time; sets BEST_S (best wall seconds) and PEAK_KIB (largest peak RSS).
bench() {
  local run seconds kib
  BEST_S="" PEAK_KIB=0
  # stderr goes to a file (troy prints a summary line per run); shown only if a run fails.
  "$@" >/dev/null 2>tool.err || { cat tool.err >&2; die "failed: $*"; }
  for (( run = 0; run < RUNS; run++ )); do
    /usr/bin/time -f '%e %M' -o time.out "$@" >/dev/null 2>tool.err \
      || { cat tool.err >&2; die "failed: $*"; }
    read -r seconds kib < time.out
    if [[ -z $BEST_S ]] || awk -v a="$seconds" -v b="$BEST_S" 'BEGIN { exit !(a < b) }'; then
      BEST_S=$seconds
    fi
    if (( kib > PEAK_KIB )); then PEAK_KIB=$kib; fi
  done
}

echo "timing: 1 warm-up + $RUNS runs each, input in page cache (measures code, not disk)"
bench "$TROY" convert image.vhd troy.raw --overwrite; TROY_S=$BEST_S TROY_KIB=$PEAK_KIB
bench qemu-img convert -f vpc -O raw image.vhd qemu.raw; QEMU_S=$BEST_S QEMU_KIB=$PEAK_KIB
# Same, but flushing its output at the end as troy does (qemu-img's default, unsafe, never
# flushes): this is the equal-work baseline for the target.
bench qemu-img convert -t writeback -f vpc -O raw image.vhd qemu-flush.raw
QFLUSH_S=$BEST_S QFLUSH_KIB=$PEAK_KIB
# Streaming path: no seeks, no sparse holes, every zero byte is written (to /dev/null here).
bench "$TROY" convert image.vhd -; STDOUT_S=$BEST_S STDOUT_KIB=$PEAK_KIB

# --- Correctness first: a fast wrong answer is worthless. Compare against the source raw
# (independent of both readers) as well as against each other.
cmp source.raw troy.raw || die "troy output differs from the source data"
cmp source.raw qemu.raw || die "qemu-img output differs from the source data"
cmp source.raw qemu-flush.raw || die "qemu-img -t writeback output differs from the source data"
"$TROY" convert image.vhd - | cmp - source.raw || die "troy stdout output differs from the source data"
echo "verified: troy (file and stdout) and qemu-img outputs are byte-identical to the source"

# --- Report.
row() {  # name seconds peak_kib
  awk -v n="$1" -v s="$2" -v k="$3" -v mib="$SIZE_MIB" 'BEGIN {
    rate = (s > 0) ? sprintf("%.0f", mib / s) : "n/a"  # GNU time rounds to 10 ms
    printf "%-32s %9.2f %10s %12.1f\n", n, s, rate, k / 1024 }'
}
echo
printf "%-32s %9s %10s %12s\n" tool best_wall_s "MiB/s" peak_rss_MiB
row "troy convert" "$TROY_S" "$TROY_KIB"
row "qemu-img convert" "$QEMU_S" "$QEMU_KIB"
row "qemu-img convert -t writeback" "$QFLUSH_S" "$QFLUSH_KIB"
row "troy convert IMAGE - >/dev/null" "$STDOUT_S" "$STDOUT_KIB"
echo "(MiB/s of ${SIZE_MIB} MiB virtual size)"
echo "note: troy fsyncs its output file before renaming it into place; plain qemu-img convert"
echo "      never flushes (cache=unsafe), -t writeback flushes once at the end like troy"
# The target compares equal work: both tools flushing their output (troy always does, so a
# killed convert never leaves a finished-looking file). The unflushed ratio is shown too.
awk -v t="$TROY_S" -v q="$QEMU_S" -v f="$QFLUSH_S" -v tk="$TROY_KIB" -v qk="$QEMU_KIB" 'BEGIN {
  if (f > 0) printf "ratio troy/qemu-img -t writeback wall: %.2f (both flush; below 1.0 = troy faster)\n", t / f
  if (q > 0) printf "ratio troy/qemu-img (unflushed) wall: %.2f (qemu-img skips the flush)\n", t / q
  printf "ratio troy/qemu-img peak RSS: %.2f (below 1.0 = troy smaller)\n", tk / qk }'
# /usr/bin/time has 10 ms resolution; compare with that tolerance.
if awk -v t="$TROY_S" -v q="$QFLUSH_S" 'BEGIN { exit !(t <= q + 0.01) }'; then
  echo "target: not slower than qemu-img at equal durability: MET"
else
  echo "target: not slower than qemu-img at equal durability: NOT MET"
fi
