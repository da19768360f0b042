#!/usr/bin/env bash
# troy sync of a disk drifted on 1% of its 4 KiB sectors, against casync
# extract with the drifted disk as seed (Debian has casync; desync is not
# packaged for Debian 12) and against re-sending the whole image. Reports
# bytes fetched / bytes that differ, and time / the time to read the disk
# once (O_DIRECT, so the page cache does not flatter it).
#
#   bench/sync.sh [SIZE_GIB [DATA_PERCENT]]   default 32 GiB, 50% data
#
# Needs about 4 x the data (image, chunk store, drifted disk; then casync's
# store, seed and output) free in TMPDIR: 64 GiB for the defaults, 43 GiB
# with DATA_PERCENT 33 (a 32 GiB Windows disk with 11 GiB used).
#
# The disk is data (random) in 64 MiB stretches, zeros between, as a used
# Windows disk.
# The store is a directory: this measures troy, not a network.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TROY=${TROY:-$ROOT/build/troy}
SIZE_GIB=${1:-32}
DATA_PERCENT=${2:-50}
[[ -x $TROY ]] || { echo "troy not built: $TROY" >&2; exit 1; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/troy-bench-sync.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
SIZE=$((SIZE_GIB << 30))
free_kib=$(df -Pk . | awk 'NR == 2 { print $4 }')
DATA=$((SIZE / 100 * DATA_PERCENT))
(( free_kib > 4 * (DATA >> 10) + (1 << 20) )) || { echo "need $((4 * DATA >> 30)) GiB (+1) free in $WORK" >&2; exit 1; }

seconds() { local start=$SECONDS; "$@" >/dev/null 2>&1; echo $((SECONDS - start)); }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

echo "building a $SIZE_GIB GiB disk ($DATA_PERCENT% random data, zeros between)..." >&2
truncate -s $SIZE v.raw
for (( stretch = 0; stretch < SIZE >> 26; stretch++ )); do   # 64 MiB stretches, DATA_PERCENT of them data
  (( stretch * DATA_PERCENT % 100 < DATA_PERCENT )) &&
    head -c $((64 << 20)) /dev/urandom | dd of=v.raw bs=1M seek=$((stretch * 64)) conv=notrunc status=none
done
"$TROY" -q capture v.raw base.vhdx
openssl genpkey -algorithm ed25519 -out lab.key 2>/dev/null
mkdir served
"$TROY" -q publish --dir served --key lab.key --name v1 base.vhdx
rm base.vhdx

# drift FILE: a copy of v.raw with 1% of its 4 KiB sectors changed, the
# same ones each time (seeded); prints the bytes changed.
drift() {
  cp --sparse=always v.raw "$1"
  python3 - "$SIZE" "$1" <<'PY'
import os, random, sys
size = int(sys.argv[1]); rng = random.Random(1)
fd = os.open(sys.argv[2], os.O_RDWR)
units = size // 4096
for unit in rng.sample(range(units), units // 100):
    os.pwrite(fd, rng.randbytes(4096), unit * 4096)
print(units // 100 * 4096)
PY
}
echo "drifting 1% of the 4 KiB sectors..." >&2
changed=$(drift drifted.raw)

sync
start=$(now); dd if=drifted.raw of=/dev/null bs=4M iflag=direct status=none; read_once=$(elapsed "$start")

sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
start=$(now)
out=$("$TROY" sync --json served/versions/v1.cidx drifted.raw --store served)
troy_s=$(elapsed "$start")
troy_fetched=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes_fetched"])' <<<"$out")
cmp -s drifted.raw v.raw || { echo "troy sync did not end at the image" >&2; exit 1; }
rm -rf drifted.raw served   # room for casync's store, seed and output

casync_row="casync: not installed (apt-get install casync)"
if command -v casync >/dev/null; then
  casync make --store=castore v.caibx v.raw >/dev/null 2>&1
  drift drifted2.raw >/dev/null
  sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
  # casync reads from a local store too; what it would fetch is what it
  # takes from the store: the chunks not found in the seed.
  start=$(now)
  casync extract --store=castore --seed=drifted2.raw --seed-output=no v.caibx drifted2.out.raw >casync.log 2>&1 ||
    { cat casync.log >&2; exit 1; }
  casync_s=$(elapsed "$start")
  cmp -s drifted2.out.raw v.raw || { echo "casync extract did not end at the image" >&2; exit 1; }
  casync_row="casync extract --seed: ${casync_s} s (chunks of ~64 KiB, compressed; bytes from the store not reported by casync)"
  rm -rf castore drifted2.raw drifted2.out.raw
fi

start=$(now); cp --sparse=always v.raw whole.raw; sync; whole_s=$(elapsed "$start")
data=$(du -B1 v.raw | cut -f1)

echo
echo "disk: $SIZE_GIB GiB, $((data >> 20)) MiB of data; 1% of its 4 KiB sectors changed: $((changed >> 10)) KiB"
echo "read the disk once (O_DIRECT): ${read_once} s"
printf "troy sync:      fetched %d KiB = %.2f x the bytes that differ; %s s = %.2f x one read of the disk\n" \
  $((troy_fetched >> 10)) "$(awk -v a=$troy_fetched -v b=$changed 'BEGIN { print a / b }')" "$troy_s" \
  "$(awk -v a=$troy_s -v b=$read_once 'BEGIN { print (b > 0 ? a / b : 0) }')"
echo "$casync_row"
printf "whole image:    %d MiB = %.0f x the bytes that differ; copy %s s\n" $((data >> 20)) \
  "$(awk -v a=$data -v b=$changed 'BEGIN { print a / b }')" "$whole_s"
