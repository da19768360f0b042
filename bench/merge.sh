#!/usr/bin/env bash
# Benchmark: `troy merge`, merging a differencing child into its parent in place, VHD and VHDX,
# on several shapes of change, each against
#   - dd oflag=direct bs=4M writing the same number of bytes sequentially (the physical floor),
#   - Xen Orchestra's vhd-lib mergeVhdChain on the same VHD chain (vhd-lib has no VHDX),
# timed best-of-RUNS with troy and dd interleaved in the same loop, so load from other work on the
# machine falls on both alike.
# Usage: bash bench/merge.sh [TROY_BINARY] [SHAPE...]
#   SHAPE is DISK_MIB:CHANGE_MIB (scattered runs of 4 KiB to 1 MiB) or DISK_MIB:CHANGE_MIB:4k (only
#   4 KiB runs, the worst case for bitmaps); default: 2048:512 4096:1024 2048:128:4k.
#   The older form [TROY_BINARY] DISK_MIB CHANGE_MIB [BIG_DISK_MIB] means DISK_MIB:CHANGE_MIB and,
#   unless BIG_DISK_MIB is 0, BIG_DISK_MIB:CHANGE_MIB (memory must not grow with the virtual size).
set -euo pipefail

TROY=${1:-"$(dirname "$0")/../build/troy"}
shift || true
SHAPES=("$@")
if (( ${#SHAPES[@]} >= 2 )) && [[ ${SHAPES[0]} =~ ^[0-9]+$ && ${SHAPES[1]} =~ ^[0-9]+$ ]]; then
  legacy=("${SHAPES[@]}")
  SHAPES=("${legacy[0]}:${legacy[1]}")
  (( ${legacy[2]:-65536} == 0 )) || SHAPES+=("${legacy[2]:-65536}:${legacy[1]}")
fi
(( ${#SHAPES[@]} > 0 )) || SHAPES=(2048:512 4096:1024 2048:128:4k)
BLOCK_MIB=2    # block size of every image (VHD's only size in vhd-lib; Hyper-V's for children)
RUNS=${RUNS:-3}  # timed runs per command; each starts from fresh copies of the chain
# vhd-lib runs in the same loop as troy (same cache state, same load), in each of the first
# VHDLIB_RUNS rounds, but no more once one of its runs took VHDLIB_SLOW_S seconds or more (on the
# 4 KiB shape it takes 30 to 90 s a run): the summary says how many runs its best is of.
VHDLIB_RUNS=${VHDLIB_RUNS:-$RUNS}
VHDLIB_SLOW_S=${VHDLIB_SLOW_S:-40}
NAME_WIDTH=44  # width of the tool column
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${TROY_SHARED:-$(realpath -m "$ROOT/../shared")}
SIZE_MIB=0
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
require_bench_tools
command -v python3 >/dev/null || die "python3 not found (it builds the inputs and compares the results)"
NEED_MIB=1024
for shape in "${SHAPES[@]}"; do
  [[ $shape =~ ^([0-9]+):([0-9]+)(:4k)?$ ]] || die "shape '$shape': expected DISK_MIB:CHANGE_MIB or DISK_MIB:CHANGE_MIB:4k"
  disk=${BASH_REMATCH[1]} change=${BASH_REMATCH[2]}
  (( disk >= 64 && disk % BLOCK_MIB == 0 && change >= 1 && change * 4 <= disk )) \
    || die "shape '$shape': DISK_MIB must be a multiple of $BLOCK_MIB, at least 64 and at least 4 × CHANGE_MIB"
  # base.raw, new.raw, changes.raw, one format's images and their keep/ copies, a run's copies
  # (grown by the merge), the merged image converted to raw for the check, dd's output.
  base=$(( disk / 2 < 2048 ? disk / 2 : 2048 ))
  need=$(( 5 * base + 8 * change + 1024 ))
  (( need <= NEED_MIB )) || NEED_MIB=$need
done
TROY=$(realpath "$TROY")

AVAIL_MIB=$(( $(df -Pk "${TMPDIR:-/tmp}" | awk 'NR == 2 { print $4 }') / 1024 ))
(( AVAIL_MIB >= NEED_MIB )) || die "needs about $NEED_MIB MiB free in ${TMPDIR:-/tmp}, has $AVAIL_MIB"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/troy-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

# --- vhd-lib (Xen Orchestra, npm), installed once into the cache the e2e tests use
# (tests/e2e/common.sh, vhd_lib_oracle). Sets VHDLIB (node_modules folder) or VHDLIB_WHY.
VHDLIB="" VHDLIB_WHY=""
setup_vhdlib() {
  local cache=${TROY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/troy}/vhd-lib
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    VHDLIB_WHY="node and npm not found (apt-get install nodejs npm)"; return
  fi
  [[ -f $SHARED/oracles/vhd-lib/package.json ]] || { VHDLIB_WHY="$SHARED/oracles/vhd-lib not found (set TROY_SHARED)"; return; }
  mkdir -p "$cache"
  if ! (
    flock 9
    if [[ ! -f $cache/.installed ]] || ! cmp -s "$SHARED/oracles/vhd-lib/package.json" "$cache/package.json"; then
      rm -rf "$cache/node_modules"
      cp -r "$SHARED/oracles/vhd-lib/." "$cache/"
      (cd "$cache" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
      touch "$cache/.installed"
    fi
  ) 9>"$cache.lock" 2>npm.err; then
    VHDLIB_WHY="npm install of vhd-lib failed: $(tail -n 1 npm.err)"; return
  fi
  # vhd-lib 4.15 does not export mergeVhdChain from its index: it lives in vhd-lib/merge.js.
  cat >vhdlib-merge.js <<'JS'
'use strict'
// node vhdlib-merge.js DIR PARENT CHILD: vhd-lib's mergeVhdChain on the chain PARENT <- CHILD in DIR
// (it copies the child's blocks into PARENT, then renames PARENT to CHILD), then an fsync of the
// result: vhd-lib never flushes, troy does.
const fs = require('fs')
const path = require('path')
const { getHandler } = require('@xen-orchestra/fs')
const { mergeVhdChain } = require('vhd-lib/merge')
async function main() {
  const [dir, parent, child] = process.argv.slice(2)
  const handler = getHandler({ url: 'file://' + path.resolve(dir) })
  await handler.sync()
  const result = await mergeVhdChain(handler, ['/' + parent, '/' + child])
  await handler.forget()
  const fd = fs.openSync(path.join(dir, child), 'r+')
  fs.fsyncSync(fd)
  fs.closeSync(fd)
  console.log(JSON.stringify(result))
}
main().catch(err => { console.error(err); process.exit(1) })
JS
  VHDLIB=$cache/node_modules
  NODE_PATH=$VHDLIB node -e "require('vhd-lib/merge').mergeVhdChain" 2>npm.err \
    || { VHDLIB="" VHDLIB_WHY="vhd-lib/merge cannot be loaded: $(tail -n 1 npm.err)"; }
}

# --- Inputs for a disk of $1 MiB with $2 MiB of changes, $3 "4k" or "". base.raw: sparse,
# BASE_MIB MiB of random data in evenly spaced 2 MiB blocks. new.raw: base.raw with the changes
# rewritten with random bytes (so no compare can skip them): scattered, non-overlapping runs of
# 4 KiB to 1 MiB - 4 KiB at 4 KiB offsets, at most one per 1 MiB slot, the slots picked at random
# over the whole disk (a run crosses a block boundary now and then); with "4k", single 4 KiB
# pages picked at random among the even ones (never two adjacent: each is its own run).
# changes.raw: the new bytes back to back (dd's input). Prints the facts.
make_inputs() {
  python3 - "$1" "$BASE_MIB" "$2" "$BLOCK_MIB" "$3" <<'PY'
import os, random, sys
disk_mib, base_mib, change_mib, block_mib = map(int, sys.argv[1:5])
pages_only = sys.argv[5] == "4k"
BLOCK, SLOT, PAGE = block_mib << 20, 1 << 20, 4096
disk, change = disk_mib << 20, change_mib << 20
nblocks = disk // BLOCK
held = list(range(0, nblocks, max(1, nblocks // (base_mib // block_mib))))[: base_mib // block_mib]
# Random bytes come from two independent 256 MiB pools (the parent's and the changes'), sliced at
# random 4 KiB offsets: os.urandom alone costs about 4 s per GiB here.
POOL = 256 << 20
pools = [os.urandom(POOL + BLOCK), os.urandom(POOL + BLOCK)]
rng = random.Random(1)
def random_bytes(pool, n):  # n <= BLOCK
    at = rng.randrange(POOL // PAGE) * PAGE
    return pools[pool][at:at + n]
with open("base.raw", "wb") as base, open("new.raw", "wb") as new:
    base.truncate(disk)
    new.truncate(disk)
    for b in held:
        data = random_bytes(0, BLOCK)
        base.seek(b * BLOCK); base.write(data)
        new.seek(b * BLOCK); new.write(data)
runs, done = [], 0
if pages_only:
    runs = [(p * PAGE, PAGE) for p in rng.sample(range(0, disk // PAGE, 2), change // PAGE)]
    done = change
for slot in rng.sample(range(disk // SLOT), disk // SLOT):
    if done >= change:
        break
    length = min(rng.randint(1, SLOT // PAGE - 1) * PAGE, change - done)
    at = slot * SLOT + rng.randrange((SLOT - PAGE - length) // PAGE + 1) * PAGE  # a gap after each run
    runs.append((at, length))
    done += length
if done < change:
    sys.exit(f"only {done >> 20} MiB of changes fit in {disk_mib} MiB")
held_set, in_held = set(held), 0
with open("new.raw", "r+b") as new, open("changes.raw", "wb") as out, open("runs.txt", "w") as listed:
    for at, length in sorted(runs):
        data = random_bytes(1, length)
        new.seek(at); new.write(data); out.write(data)
        print(at, length, file=listed)
        in_held += sum(PAGE for p in range(at, at + length, PAGE) if p // BLOCK in held_set)
print(f"inputs: {disk_mib} MiB disk; parent data {len(held) * block_mib} MiB in {len(held)} of {nblocks} blocks;"
      f" {done} bytes changed in {len(runs)} runs, {100 * in_held // done}% of them in blocks the parent holds")
print(done, file=open("changed.bytes", "w"))
PY
}

# compare A B: how many bytes of sectors differ between raw files A and B, reading only their data
# extents (SEEK_DATA; holes read as zeros in both). Prints the count.
compare_raw() {
  python3 - "$1" "$2" <<'PY'
import os, sys
fds = [os.open(p, os.O_RDONLY) for p in sys.argv[1:3]]
sizes = [os.fstat(fd).st_size for fd in fds]
if sizes[0] != sizes[1]:
    sys.exit(f"sizes differ: {sizes[0]} and {sizes[1]}")
ranges = []
for fd in fds:
    at = 0
    while at < sizes[0]:
        try:
            data = os.lseek(fd, at, os.SEEK_DATA)
        except OSError:
            break
        at = os.lseek(fd, data, os.SEEK_HOLE)
        ranges.append((data, at))
ranges.sort()
differ, end, PIECE, SECTOR = 0, 0, 4 << 20, 512
for start, stop in ranges:
    start = max(start, end)
    for at in range(start, stop, PIECE):
        n = min(PIECE, stop - at)
        a, b = (os.pread(fd, n, at) for fd in fds)
        if a == b:
            continue
        for s in range(0, n, 65536):
            if a[s:s + 65536] != b[s:s + 65536]:
                differ += sum(SECTOR for t in range(s, min(n, s + 65536), SECTOR) if a[t:t + SECTOR] != b[t:t + SECTOR])
    end = max(end, stop)
print(differ)
PY
}

# calls.py IO_FILE CMD...: runs CMD and writes to IO_FILE the bytes it (and the children it
# reaped) handed to write calls: /proc/PID/io's wchar, read while the exited process is not yet
# reaped. The kernel's own count (GNU time's %O, ru_oublock) is of page-cache folios dirtied:
# on a kernel with large folios a 4 KiB write into a cached 64 KiB folio counts 64 KiB, although
# writeback sends only the dirty 4 KiB blocks to the device (docs/merge.md): both are reported.
cat >calls.py <<'PY'
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
io = dict(line.split(": ") for line in open(f"/proc/{child.pid}/io").read().splitlines())
child.wait()
print(io["wchar"], file=open(sys.argv[1], "w"))
sys.exit(child.returncode)
PY

# scatter.py FILE: the floor of scattered writes. Writes changes.raw's bytes at their places in
# the disk (runs.txt: offset and length of each run, in disk order) into FILE, a sparse file the
# size of the disk, through the page cache, then fsync: what the disk costs for writing the same
# runs where they belong, without any image format (dd writes them back to back).
cat >scatter.py <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
with open("changes.raw", "rb") as changes, open("runs.txt") as runs:
    for line in runs:
        at, length = map(int, line.split())
        os.pwrite(fd, changes.read(length), at)
os.fsync(fd)
PY

# measure NAME CMD...: one run of CMD under GNU time, after a global sync (so no run pays for
# what setup or an earlier run left dirty). Keeps per NAME the best wall time in BEST, that run's
# stdout in NAME.out, WRITE_KIB: the kernel's count of bytes the run wrote to files (%O,
# 512-byte units: ru_oublock, i.e. the page-cache folios it dirtied plus its O_DIRECT writes), in
# KiB, and CALL_KIB: the bytes it handed to write calls (calls.py); PEAK_KIB is the largest peak
# RSS of all runs.
declare -A BEST PEAK_KIB WRITE_KIB CALL_KIB
measure() {
  local name=$1 seconds kib out
  shift
  sync
  python3 "$WORK/calls.py" calls.out /usr/bin/time -f '%e %M %O' -o time.out "$@" >run.out 2>tool.err \
    || { cat tool.err >&2; die "failed: $*"; }
  read -r seconds kib out <time.out
  LAST_S=$seconds
  if [[ -z ${BEST[$name]:-} ]] || awk -v a="$seconds" -v b="${BEST[$name]}" 'BEGIN { exit !(a < b) }'; then
    BEST[$name]=$seconds WRITE_KIB[$name]=$(( out / 2 )) CALL_KIB[$name]=$(( $(cat calls.out) / 1024 ))
    mv run.out "$name.out"
  fi
  if (( kib > ${PEAK_KIB[$name]:-0} )); then PEAK_KIB[$name]=$kib; fi
}

mrow() {  # title NAME: MiB/s is of the CHANGE_MIB MiB of changes
  awk -v n="$1" -v s="${BEST[$2]}" -v k="${PEAK_KIB[$2]}" -v w="${WRITE_KIB[$2]}" -v mib="$CHANGE_MIB" \
      -v width="$NAME_WIDTH" -v calls="${CALL_KIB[$2]}" 'BEGIN {
    rate = (s > 0) ? sprintf("%.0f", mib / s) : "n/a"  # GNU time rounds to 10 ms
    printf "%-*s %9.2f %8s %12.1f %14.1f %15.1f\n", width, n, s, rate, k / 1024, w / 1024, calls / 1024 }'
}

json_field() { grep -o "\"$2\": *[0-9]*" "$1.out" | grep -o '[0-9]*$'; }  # NAME FIELD

# fresh FILES...: the chain's files copied from keep/ into run/ (sparse), so each run starts from
# the same parent. The child's absolute locator names the parent where `troy diff` made it, in
# the work folder, where no file is left: its relative one finds run/'s copy, and only that one
# (two files with the parent's id would be refused).
fresh() { rm -rf run && mkdir run && for f in "$@"; do cp --sparse=always "keep/$f" run/; done; }

# capture_bases: base.vhd and base.vhdx, troy's captures of base.raw (then no longer needed).
CAPTURES=1
capture_bases() {
  local byte
  "$TROY" capture --block-size "${BLOCK_MIB}M" base.raw base.vhd 2>/dev/null
  CAPTURES=1
  if [[ -n $VHDLIB ]]; then
    # vhd-lib's merge checks the parent's id with uuid.stringify, which accepts only RFC 4122 byte
    # order (version nibble 1-5 in byte 6). troy, as Windows, stores a version 4 GUID in
    # Microsoft's order (version in byte 7): 11 ids in 16 are refused ("Stringified UUID is
    # invalid"). Capture again until the random id passes; the files are troy's all the same.
    while byte=$(od -An -tx1 -j74 -N1 base.vhd | tr -d ' '); [[ ${byte:0:1} != [1-5] ]]; do
      (( ++CAPTURES <= 64 )) || die "no vhd-lib-compatible id in 64 captures"
      "$TROY" capture --overwrite --block-size "${BLOCK_MIB}M" base.raw base.vhd 2>/dev/null
    done
  fi
  "$TROY" capture --block-size "${BLOCK_MIB}M" base.raw base.vhdx 2>/dev/null
  rm -f base.raw
}

# merge_format LABEL FMT: makes base.FMT's child (diff to new.raw), times the merges and dd,
# interleaved, prints the table and ratios, and adds a line to SUMMARY.
merge_format() {
  local label=$1 fmt=$2 child
  local changed
  changed=$(cat changed.bytes)
  child=child.vhd
  [[ $fmt == vhdx ]] && child=child.avhdx
  "$TROY" diff "base.$fmt" new.raw -o "$child" 2>/dev/null
  mkdir -p keep && mv "base.$fmt" "$child" keep/
  echo
  echo "=== $label $fmt: troy merge $child into base.$fmt ($(( $(stat -c %s "keep/base.$fmt") >> 20 )) MiB file," \
       "$BLOCK_MIB MiB blocks)"
  if [[ $fmt == vhd && -n $VHDLIB ]]; then
    echo "(base.vhd captured $CAPTURES time(s) to get an id vhd-lib's uuid check accepts)"
  fi
  local qfmt=vpc
  [[ $fmt == vhdx ]] && qfmt=vhdx
  BEST=() PEAK_KIB=() WRITE_KIB=() CALL_KIB=()

  local run written="" dd_src=changes.raw v_bad="" v_merged="" vhdlib_runs=0 vhdlib_slow=0 load_from load_to
  load_from=$(cut -d' ' -f1 /proc/loadavg)
  for (( run = 0; run < RUNS; run++ )); do
    fresh "base.$fmt" "$child"
    measure troy "$TROY" merge --json "run/$child"
    if (( run == 0 )); then
      # Checked by an independent reader: qemu-img reads dynamic VHD and VHDX (not troy's children).
      qemu-img compare -q -f "$qfmt" -F raw "run/base.$fmt" new.raw \
        || die "$label $fmt: qemu-img reads the merged base.$fmt differently from new.raw"
      # dd writes exactly what troy reports writing: the changed bytes when they match (they
      # should), else that many random bytes (rounded up to 4 KiB for O_DIRECT).
      written=$(json_field troy bytes_written)
      if (( written != $(stat -c %s changes.raw) )); then
        head -c $(( (written + 4095) / 4096 * 4096 )) /dev/urandom >dd.src
        dd_src=dd.src
      fi
    fi
    fresh "base.$fmt" "$child"
    measure nocompare "$TROY" merge --no-compare --json "run/$child"
    if (( run == 0 )); then
      qemu-img compare -q -f "$qfmt" -F raw "run/base.$fmt" new.raw \
        || die "$label $fmt: qemu-img reads base.$fmt merged with --no-compare differently from new.raw"
    fi
    rm -rf run
    rm -f dd.out
    measure dd dd if="$dd_src" of=dd.out bs=4M oflag=direct conv=fsync,notrunc status=none
    rm -f dd.out
    truncate -s "${DISK_MIB}M" scatter.out
    measure scatter python3 "$WORK/scatter.py" scatter.out
    rm -f scatter.out
    if [[ $fmt == vhd && -n $VHDLIB ]] && (( run < VHDLIB_RUNS )) && [[ $vhdlib_slow == 0 ]]; then
      fresh base.vhd child.vhd
      measure vhdlib env NODE_PATH="$VHDLIB" node "$WORK/vhdlib-merge.js" run base.vhd child.vhd
      (( ++vhdlib_runs ))
      vhdlib_slow=$(awk -v s="$LAST_S" -v slow="$VHDLIB_SLOW_S" 'BEGIN { print (s >= slow) ? 1 : 0 }')
      if (( run == 0 )); then
        v_merged=$(grep -o '"mergedDataSize":[0-9]*' vhdlib.out | grep -o '[0-9]*$' || echo "?")
        "$TROY" convert run/child.vhd merged.raw --overwrite 2>/dev/null
        v_bad=$(compare_raw merged.raw new.raw)
        rm -f merged.raw
      fi
      rm -rf run
    fi
  done
  rm -f dd.src
  load_to=$(cut -d' ' -f1 /proc/loadavg)
  local identical runs allocated n_written
  written=$(json_field troy bytes_written) identical=$(json_field troy bytes_identical)
  runs=$(json_field troy runs) allocated=$(json_field troy blocks_allocated)
  n_written=$(json_field nocompare bytes_written)

  echo "troy --json: bytes_written $written, bytes_identical $identical, runs $runs, blocks_allocated $allocated;" \
       "--no-compare: bytes_written $n_written"
  echo "verified: qemu-img compare reads base.$fmt as new.raw after troy merge and troy merge --no-compare"
  printf "\n%-*s %9s %8s %12s %14s %15s\n" "$NAME_WIDTH" "$label $fmt: tool" best_wall_s "MiB/s" peak_rss_MiB fs_written_MiB \
    write_calls_MiB
  mrow "troy merge (compare, default)" troy
  mrow "troy merge --no-compare" nocompare
  mrow "dd oflag=direct bs=4M, troy's bytes_written" dd
  mrow "the changed runs pwritten in place + fsync" scatter
  if [[ -n ${BEST[vhdlib]:-} ]]; then
    mrow "vhd-lib mergeVhdChain + fsync (best of $vhdlib_runs)" vhdlib
  elif [[ $fmt == vhd ]]; then
    echo "vhd-lib mergeVhdChain: not measured: $VHDLIB_WHY"
  else
    echo "vhd-lib mergeVhdChain: no row: vhd-lib reads and writes VHD only, not VHDX"
  fi
  local tk=${PEAK_KIB[troy]} nk=${PEAK_KIB[nocompare]}
  local lines
  lines=$(awk -v p="$label $fmt:" -v t="${BEST[troy]}" -v n="${BEST[nocompare]}" -v d="${BEST[dd]}" \
      -v v="${BEST[vhdlib]:-}" -v tk="$tk" -v nk="$nk" -v c="$changed" -v w="$written" -v tw="${WRITE_KIB[troy]}" \
      -v nw="${WRITE_KIB[nocompare]}" -v dw="${WRITE_KIB[dd]}" -v vw="${WRITE_KIB[vhdlib]:-0}" \
      -v sc="${BEST[scatter]}" -v tc="${CALL_KIB[troy]}" -v nc="${CALL_KIB[nocompare]}" \
      -v label="$label" -v fmt="$fmt" -v load="$load_from-$load_to" -v vr="$vhdlib_runs" 'BEGIN {
    if (d > 0) {
      printf "%s ratio troy merge/dd wall: %.2f (target: at most 1.10) %s\n", p, t / d, (t / d <= 1.10 ? "MET" : "NOT MET")
      printf "%s ratio troy merge --no-compare/dd wall: %.2f\n", p, n / d
    }
    if (sc > 0) printf "%s ratio troy merge/the same runs pwritten in place (the floor for these runs): %.2f; the floor/dd: %.2f\n", p, t / sc, (d > 0 ? sc / d : 0)
    if (v != "" && t > 0)
      printf "%s ratio vhd-lib/troy merge wall: %.1f (target: at least 10) %s\n", p, v / t, (v / t >= 10 ? "MET" : "NOT MET")
    printf "%s bytes written/bytes changed: troy --json %.3f; as the kernel counts them (fs_written): troy %.2f, --no-compare %.2f, dd %.2f", \
      p, w / c, tw * 1024 / c, nw * 1024 / c, dw * 1024 / c
    if (v != "") printf ", vhd-lib %.2f", vw * 1024 / c
    printf "; handed to write calls: troy %.3f, --no-compare %.3f\n", tc * 1024 / c, nc * 1024 / c
    m = (tk > nk ? tk : nk) / 1024
    printf "%s troy peak RSS: %.1f MiB (target: at most 64 MiB) %s\n", p, m, (m <= 64 ? "MET" : "NOT MET")
    # the summary row: shape, format, troy/dd, --no-compare/dd, troy/scatter, vhd-lib/troy,
    # fs_written/changed, write calls/changed, peak RSS, troy wall
    printf "ROW| %s | %s | %.2f | %.2f | %.2f | %.2f | %s | %.2f | %.3f | %.1f MiB | %.2f s | %s |\n", label, fmt, \
      t / d, n / d, (sc > 0 ? t / sc : 0), (d > 0 ? sc / d : 0), (v != "" ? sprintf("%.1f (%d)", v / t, vr) : "-"), \
      tw * 1024 / c, tc * 1024 / c, m, t, load }')
  grep -v '^ROW' <<<"$lines"
  SUMMARY+=("$(grep '^ROW' <<<"$lines" | cut -c4-)")
  if [[ -n ${BEST[vhdlib]:-} ]]; then
    echo "$label $fmt: vhd-lib reports mergedDataSize $v_merged bytes (new blocks it appended); its merged image" \
         "differs from new.raw in $v_bad bytes (it copies whole child blocks, bitmap included, so parent sectors the" \
         "child does not hold become zeros: a known vhd-lib bug, ../shared/README.md)"
  fi
  rm -rf keep
}

# shape_bench SHAPE: inputs for DISK_MIB:CHANGE_MIB[:4k], then both formats.
shape_bench() {
  local shape=$1 disk change kind="" label
  IFS=: read -r disk change kind <<<"$shape"
  CHANGE_MIB=$change DISK_MIB=$disk
  BASE_MIB=$(( disk / 2 < 2048 ? disk / 2 : 2048 ))
  label="$(( disk >> 10 )) GiB"
  (( disk % 1024 == 0 )) || label="$disk MiB"
  label+="/$change MiB"
  [[ -z $kind ]] || label+=" 4k"
  echo
  echo "##### $label: $disk MiB virtual disk, $change MiB of changes$([[ -z $kind ]] || echo ", all in 4 KiB runs");" \
       "building the inputs in $WORK"
  make_inputs "$disk" "$change" "$kind"
  capture_bases
  merge_format "$label" vhd
  merge_format "$label" vhdx
  rm -f new.raw changes.raw changed.bytes runs.txt
}

setup_vhdlib
[[ -n $VHDLIB ]] || echo "vhd-lib: not measured: $VHDLIB_WHY"
echo "timing: $RUNS runs of troy merge, troy merge --no-compare, dd and the runs in place, interleaved; up to"
echo "$VHDLIB_RUNS of vhd-lib in the same rounds (fewer once one takes ${VHDLIB_SLOW_S} s);"
echo "best wall time each, largest peak RSS; each run starts after a global sync from fresh copies of the chain in"
echo "the page cache (copying not timed); troy and vhd-lib flush the merged image, dd writes with O_DIRECT + fsync"
SUMMARY=()
for shape in "${SHAPES[@]}"; do shape_bench "$shape"; done

echo
echo "=== summary (troy $("$TROY" -V 2>/dev/null | head -n 1)); targets: troy/dd at most 1.10, vhd-lib/troy at least 10"
echo "troy/runs in place: against the floor row (the changed runs pwritten at their own offsets + fsync), the fair"
echo "bound for a lazy merge of scattered runs; runs in place/dd: how far that floor is above dd's sequential one;"
echo "vhd-lib/troy (runs of vhd-lib); load: the 1-minute load average at the start and end of the format's timings"
echo "| shape | format | troy merge/dd | --no-compare/dd | troy/runs in place | runs in place/dd | vhd-lib/troy (runs) | fs_written/changed | write calls/changed | peak RSS | troy merge | load |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${SUMMARY[@]}"
echo "total: $SECONDS s"
