#!/usr/bin/env bash
# Benchmark: the native-VHD-boot merge (troy vhdboot: a delta merged into
# base.vhdx, holes filled, a fresh child) on an NTFS partition mounted with
# ntfs-3g, against the same job on ext4 and against dd writing the delta's
# bytes (conv=fsync) on each file system. The figure to read is the NTFS
# driver's overhead: troy on NTFS / troy on ext4, and each against its dd.
# Both file systems live on loop devices over sparse files in the same
# folder, so they share the host disk.
# Usage: bash bench/vhdboot.sh [TROY_BINARY] [BASE_GIB [BASE_DATA_MIB [DELTA_MIB]]]
#   default 32 GiB virtual base holding 2048 MiB of data, a 1024 MiB delta of
#   1 MiB runs clustered 8 per 32 MiB block (the issue's sizes); needs root, mkntfs, ntfs-3g,
#   mkfs.ext4, and about 2 x (BASE_DATA_MIB + 7 x DELTA_MIB + 1 GiB) free in $TMPDIR.
set -euo pipefail

TROY=$(realpath "${1:-"$(dirname "$0")/../build/troy"}")
BASE_GIB=${2:-32} BASE_DATA_MIB=${3:-2048} DELTA_MIB=${4:-1024}
RUNS=${RUNS:-2}
NAME_WIDTH=36
SIZE_MIB=$DELTA_MIB
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
require_bench_tools
[[ $(id -u) = 0 ]] || die "needs root (loop devices, mount)"
for tool in mkntfs ntfs-3g mkfs.ext4 losetup python3; do
  command -v $tool >/dev/null || die "$tool not found (apt-get install ntfs-3g e2fsprogs)"
done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/troy-bench-vhdboot.XXXXXX")
LOOPS=()
cleanup() {
  for m in "$WORK"/mnt-*; do mountpoint -q "$m" 2>/dev/null && umount "$m"; done
  for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"

echo "inputs: a ${BASE_GIB} GiB base with ${BASE_DATA_MIB} MiB of data, a ${DELTA_MIB} MiB delta (1 MiB runs, 8 per 32 MiB block)"
python3 - "$BASE_GIB" "$BASE_DATA_MIB" "$DELTA_MIB" <<'PY'
import os, random, sys
gib, data_mib, delta_mib = map(int, sys.argv[1:])
M = 1 << 20; size = gib << 30; r = random.Random(15)
# Data in whole 32 MiB blocks (VHDX's default), so the base file holds
# about BASE_DATA_MIB, not blocks of mostly zeros.
chunk = os.urandom(32 * M)
with open('v1.raw', 'wb') as f:
    f.truncate(size)
    for block in r.sample(range(size // (32 * M)), data_mib // 32):
        f.seek(block * 32 * M); f.write(chunk)
# The delta: 1 MiB runs, 8 in each of DELTA_MIB/8 blocks of 32 MiB (a
# teacher's change is clustered; evenly scattered runs would make the
# merge allocate a 32 MiB block of the base per 1 MiB run).
blocks = r.sample(range(size // (32 * M)), delta_mib // 8)
runs = sorted(b * 32 + o for b in blocks for o in r.sample(range(32), 8))
with open('runs.txt', 'w') as f: f.write(' '.join(map(str, runs)))
PY
"$TROY" capture v1.raw base.vhdx -q
cp --sparse=always v1.raw v2.raw
python3 - <<'PY'
import os
runs = list(map(int, open('runs.txt').read().split())); M = 1 << 20
with open('v2.raw', 'r+b') as f, open('delta.bytes', 'wb') as d:
    for run in runs:
        b = os.urandom(M); f.seek(run * M); f.write(b); d.write(b)
PY
"$TROY" diff base.vhdx v2.raw -o delta.avhdx -q
rm -f v1.raw v2.raw
fs_mib=$(( ($(stat -c %s base.vhdx) + 3 * $(stat -c %s delta.avhdx)) / 1048576 + DELTA_MIB / 8 * 32 + 1024 ))

# make_fs KIND: a loop device over a sparse file, formatted; sets DEV.
make_fs() {
  truncate -s "${fs_mib}M" "fs-$1.img"
  DEV=$(losetup -f --show "fs-$1.img")
  LOOPS+=("$DEV")
  if [[ $1 == ntfs ]]; then mkntfs -F -Q -q "$DEV" >/dev/null 2>&1; else mkfs.ext4 -q -F "$DEV"; fi
  mkdir -p "mnt-$1"
}
mount_fs() {  # KIND DEV
  if [[ $1 == ntfs ]]; then ntfs-3g -o rw,nocompression,big_writes "$2" "mnt-$1"; else mount "$2" "mnt-$1"; fi
}

table_header "on a ${BASE_GIB} GiB base (${DELTA_MIB} MiB written)"
declare -A TIME
for kind in ext4 ntfs; do
  make_fs $kind
  dev=$DEV
  mount_fs $kind "$dev"
  m=$WORK/mnt-$kind
  # Each timed run starts from fresh copies (outside the timing), and ends
  # with everything on the device (sync inside the timing).
  # (not sparse: a base copied with holes is made whole once, a cost of
  # its own, not the merge's; docs/vhdboot.md)
  prepare() { rm -rf "$m/troy"; mkdir -p "$m/troy"; cp --sparse=never base.vhdx delta.avhdx "$m/troy/"; sync; }
  best=""
  for (( run = 0; run < RUNS; run++ )); do
    prepare
    /usr/bin/time -f '%e %M' -o time.out sh -c "'$TROY' vhdboot -q '$m/troy/base.vhdx' '$m/troy/student.avhdx' '$m/troy/delta.avhdx' && sync"
    read -r seconds kib < time.out
    if [[ -z $best ]] || awk -v a="$seconds" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$seconds; fi
  done
  TIME[troy-$kind]=$best
  row "troy vhdboot on $kind" "$best" "$kib"
  rm -rf "$m/troy"
  best=""
  for (( run = 0; run < RUNS; run++ )); do
    rm -f "$m/dd.out"; sync
    /usr/bin/time -f '%e %M' -o time.out dd if=delta.bytes of="$m/dd.out" bs=4M conv=fsync status=none
    read -r seconds kib < time.out
    if [[ -z $best ]] || awk -v a="$seconds" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$seconds; fi
  done
  TIME[dd-$kind]=$best
  row "dd conv=fsync on $kind" "$best" "$kib"
  umount "$m"
done
echo
awk -v tn="${TIME[troy-ntfs]}" -v te="${TIME[troy-ext4]}" -v dn="${TIME[dd-ntfs]}" -v de="${TIME[dd-ext4]}" 'BEGIN {
  printf "troy on NTFS / troy on ext4: %.2f (the NTFS driver'"'"'s overhead on the merge)\n", tn / te
  printf "troy / dd on NTFS: %.2f   troy / dd on ext4: %.2f   dd NTFS / dd ext4: %.2f\n", tn / dn, te / de, dn / de }'
