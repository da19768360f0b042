#!/usr/bin/env bash
# The built-in sample: a base image and a teacher's two differencing layers
# (made by the project's independent writers, fixtures/make_vhd.py and
# make_vhdx.py), in VHD and in VHDX, read by
# troy: what the chain is, whether it is sound, and its resolved content.
set -euo pipefail
troy=$(realpath "${1:-build/troy}")
root=$(cd "$(dirname "$0")/.." && pwd)
demo=${DEMO_DIR:-$root/build/demo}
rm -rf "$demo" && mkdir -p "$demo" && cd "$demo"

step() { printf '\n== %s\n$ %s\n' "$1" "${*:2}"; "${@:2}"; }

# Checks that a converted disk holds what the writer intended.
expect_content() {
  local raw=$1 manifest=$2
  local expected actual
  expected=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["levels"][-1]["sha256"])' "$manifest")
  actual=$(sha256sum "$raw" | cut -d' ' -f1)
  echo
  if [ "$actual" != "$expected" ]; then
    echo "demo: MISMATCH: $raw sha256 $actual, expected $expected" >&2
    exit 1
  fi
  echo "demo: $raw matches the content the writer intended (sha256 $actual)"
}

python3 "$root/fixtures/make_vhd.py" chain sample --seed 2026 --layers 2 --writes 24 >/dev/null
echo "Sample chain in $demo/sample: base.vhd <- layer1.vhd <- layer2.vhd (the teacher's latest change)"
step "What is this image, and where is its parent?" "$troy" info sample/layer2.vhd
step "Is every structure of the chain sound?" "$troy" check sample/layer2.vhd
step "Write the resolved disk (what a classroom machine should hold)" "$troy" convert sample/layer2.vhd disk.raw
expect_content disk.raw sample/manifest.json

# The same with Hyper-V's format: a base .vhdx and two checkpoints (.avhdx),
# from the independent VHDX writer (fixtures/make_vhdx.py).
python3 "$root/fixtures/make_vhdx.py" chain checkpoints --seed 2026 --layers 2 >/dev/null
echo
echo "Hyper-V sample in $demo/checkpoints: base.vhdx <- layer1.avhdx <- layer2.avhdx"
step "The checkpoint chain" "$troy" info checkpoints/layer2.avhdx
step "Is it sound?" "$troy" check checkpoints/layer2.avhdx
step "Its resolved disk" "$troy" convert checkpoints/layer2.avhdx checkpoints.raw
expect_content checkpoints.raw checkpoints/manifest.json
