#!/usr/bin/env bash
# Runs the parser fuzz targets for a bounded time under ASan+UBSan, seeded
# with small valid images from the independent writer. Usage: fuzz.sh BUILD_DIR SECONDS
set -euo pipefail
build=$1
seconds=${2:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

corpus=$work/corpus
mkdir -p "$corpus" "$work/gen"
python3 "$root/fixtures/make_vhd.py" dynamic "$work/gen/dyn.vhd" --size 65536 --block-size 4096 --seed 3 >/dev/null
python3 "$root/fixtures/make_vhd.py" fixed "$work/gen/fixed.vhd" --size 8192 --seed 4 >/dev/null
python3 "$root/fixtures/make_vhd.py" chain "$work/gen/chain" --size 131072 --block-size 8192 --writes 6 --seed 5 \
  --locators w2ru,w2ku,macx >/dev/null
cp "$work/gen/dyn.vhd" "$work/gen/fixed.vhd" "$corpus/"
cp "$work/gen/chain/layer1.vhd" "$corpus/diff.vhd"

echo "fuzz: fuzz_vhd for ${seconds}s"
# -max_len keeps inputs near the seeds' size, so each run stays fast.
"$build/fuzz_vhd" -max_total_time="$seconds" -max_len=262144 -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 "$corpus" 2>"$work/fuzz.log" || {
  tail -60 "$work/fuzz.log" >&2
  echo "fuzz: fuzz_vhd FAILED" >&2
  exit 1
}
grep -E "^stat::number_of_executed_runs|^Done" "$work/fuzz.log" || true
echo "fuzz: fuzz_vhd passed"
