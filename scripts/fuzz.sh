#!/usr/bin/env bash
# Runs the parser fuzz targets under ASan+UBSan, seeded with small valid
# images from the independent writers and the public samples.
# Usage: fuzz.sh BUILD_DIR SECONDS_PER_TARGET      explore: random seed, timed
#        fuzz.sh BUILD_DIR --runs N_VHD N_VHDX      regression: fixed seed, N inputs
# `make test` (CI) uses the second form, so a run gives the same verdict every
# time; `make fuzz` explores, and what it finds goes to tests/fuzz/regressions/.
set -euo pipefail
build=$1
if [ "${2:-}" = --runs ]; then
  budget_vhd=(-seed=1 -runs="$3")
  budget_vhdx=(-seed=1 -runs="$4")
else
  budget_vhd=(-max_total_time="${2:-60}")
  budget_vhdx=("${budget_vhd[@]}")
fi
root=$(cd "$(dirname "$0")/.." && pwd)
shared=${TROY_SHARED:-$(realpath -m "$root/../shared")}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/gen" "$work/vhd" "$work/vhdx"

# VHD seeds: small enough to fuzz as they are.
python3 "$root/fixtures/make_vhd.py" dynamic "$work/gen/dyn.vhd" --size 65536 --block-size 4096 --seed 3 >/dev/null
python3 "$root/fixtures/make_vhd.py" fixed "$work/gen/fixed.vhd" --size 8192 --seed 4 >/dev/null
python3 "$root/fixtures/make_vhd.py" chain "$work/gen/chain" --size 131072 --block-size 8192 --writes 6 --seed 5 \
  --locators w2ru,w2ku,macx >/dev/null
cp "$work/gen/dyn.vhd" "$work/gen/fixed.vhd" "$work/vhd/"
cp "$work/gen/chain/layer1.vhd" "$work/vhd/diff.vhd"

# VHDX seeds: real images squeezed the way fuzz_vhdx.cpp expands its input.
squeeze() {
  python3 - "$1" "$2" <<'PY'
import sys
KIB, MIB = 1024, 1024 * 1024
first = [(0, 4), (64, 4), (128, 4), (192, 4), (256, 4)]
other = [(0, 16), (64, 4)]
data = open(sys.argv[1], "rb").read()
out = bytearray()
for slot in range(min(48, -(-len(data) // MIB))):
    for offset, length in (first if slot == 0 else other):
        at = slot * MIB + offset * KIB
        out += data[at:at + length * KIB].ljust(length * KIB, b"\0")
open(sys.argv[2], "wb").write(out)
PY
}
for name in iotest-dynamic-1G test-disk2vhd iotest-dirtylog-10G-4M; do
  bzip2 -dc "$shared/fixtures/public/qemu/$name.vhdx.bz2" >"$work/gen/$name.vhdx"
  squeeze "$work/gen/$name.vhdx" "$work/vhdx/$name"
  rm "$work/gen/$name.vhdx"
done
if [ -f "$root/fixtures/make_vhdx.py" ]; then
  python3 "$root/fixtures/make_vhdx.py" chain "$work/gen/vchain" --size 8388608 --block-size 1048576 --seed 5 >/dev/null
  python3 "$root/fixtures/make_vhdx.py" dirty "$work/gen/dirty.vhdx" --case multi --seed 6 >/dev/null
  squeeze "$work/gen/vchain/layer1.avhdx" "$work/vhdx/diff"
  squeeze "$work/gen/dirty.vhdx" "$work/vhdx/dirty"
fi

# Inputs that once crashed a target run first, every time.
cp "$root"/tests/fuzz/regressions/vhd/* "$work/vhd/" 2>/dev/null || true
cp "$root"/tests/fuzz/regressions/vhdx/* "$work/vhdx/" 2>/dev/null || true

run() {
  local target=$1 corpus=$2 max_len=$3
  shift 3
  echo "fuzz: $target $*"
  # -max_len keeps inputs near the seeds' size, so each run stays fast.
  # A crashing input is kept in BUILD/artifacts (add it to tests/fuzz/regressions/).
  mkdir -p "$build/artifacts"
  UBSAN_OPTIONS=print_stacktrace=1 "$build/$target" "$@" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$build/artifacts/" \
    -print_final_stats=1 "$corpus" 2>"$work/$target.log" || {
    tail -60 "$work/$target.log" >&2
    echo "fuzz: $target FAILED" >&2
    exit 1
  }
  grep -E "^stat::number_of_executed_runs|^Done" "$work/$target.log" || true
  echo "fuzz: $target passed"
}
# Both targets at once: each is one process on one core (in CI the VHD
# target's 13 s ran, then the VHDX target's 54 s, with the other core idle).
run fuzz_vhd "$work/vhd" 262144 "${budget_vhd[@]}" &
vhd_pid=$!
run fuzz_vhdx "$work/vhdx" 1048576 "${budget_vhdx[@]}" &
vhdx_pid=$!
status=0
wait "$vhd_pid" || status=1
wait "$vhdx_pid" || status=1
exit "$status"
