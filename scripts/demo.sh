#!/usr/bin/env bash
# The built-in sample: a base image and a teacher's two differencing layers
# (made by the project's independent writer, fixtures/make_vhd.py), read by
# troy: what the chain is, whether it is sound, and its resolved content.
set -euo pipefail
troy=$(realpath "${1:-build/troy}")
root=$(cd "$(dirname "$0")/.." && pwd)
demo=${DEMO_DIR:-$root/build/demo}
rm -rf "$demo" && mkdir -p "$demo" && cd "$demo"

step() { printf '\n== %s\n$ %s\n' "$1" "${*:2}"; "${@:2}"; }

python3 "$root/fixtures/make_vhd.py" chain sample --seed 2026 --layers 2 --writes 24 >/dev/null
echo "Sample chain in $demo/sample: base.vhd <- layer1.vhd <- layer2.vhd (the teacher's latest change)"
step "What is this image, and where is its parent?" "$troy" info sample/layer2.vhd
step "Is every structure of the chain sound?" "$troy" check sample/layer2.vhd
step "Write the resolved disk (what a classroom machine should hold)" "$troy" convert sample/layer2.vhd disk.raw
expected=$(python3 -c 'import json; print(json.load(open("sample/manifest.json"))["levels"][-1]["sha256"])')
actual=$(sha256sum disk.raw | cut -d' ' -f1)
echo
if [ "$actual" = "$expected" ]; then
  echo "demo: disk.raw matches the content the writer intended (sha256 $actual)"
else
  echo "demo: MISMATCH: disk.raw sha256 $actual, expected $expected" >&2
  exit 1
fi
