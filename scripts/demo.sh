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

# A lab without VHDs: the master machine boots a raw disk. Troy captures it
# as a base image once; after the teacher's change, troy diff stores only the
# sectors that differ, as a child that Hyper-V, qemu-img and libvhdi open.
echo
echo "Raw-disk lab: the master disk is $demo/master.raw (a copy of the resolved disk above)"
cp --sparse=always checkpoints.raw master.raw
step "Capture the master disk as the base image" "$troy" capture master.raw lab-base.vhdx
# The teacher's change: a few scattered sectors and one whole 1 MiB run.
python3 - master.raw <<'PY'
import os, random, sys
rng = random.Random(2026)
with open(sys.argv[1], "r+b") as disk:
    size = os.fstat(disk.fileno()).st_size
    for _ in range(12):
        disk.seek(rng.randrange(size // 512) * 512)
        disk.write(os.urandom(512 * rng.randint(1, 16)))
    disk.seek(16 << 20)
    disk.write(os.urandom(1 << 20))
PY
step "After the teacher's change: only the sectors that differ" "$troy" diff lab-base.vhdx master.raw -o monday.avhdx
step "The new child and its parent" "$troy" info monday.avhdx
step "Base + change, resolved" "$troy" convert monday.avhdx monday.raw
echo
if cmp -s monday.raw master.raw; then
  echo "demo: base + monday.avhdx reads exactly as the changed master disk ($(du -h monday.avhdx | cut -f1) instead of $(du -h --apparent-size master.raw | cut -f1))"
else
  echo "demo: MISMATCH: base + monday.avhdx differs from the changed master disk" >&2
  exit 1
fi

# The paper's second module: merge the change into the base in place, lazily
# (only the sectors monday.avhdx holds and that differ), keeping an undo image.
cp --sparse=always lab-base.vhdx lab-base-sunday.vhdx
step "Merge monday.avhdx into lab-base.vhdx, saving what it overwrites" \
  "$troy" merge monday.avhdx --undo sunday-undo.avhdx
step "The base alone now reads as Monday's disk" "$troy" convert lab-base.vhdx merged.raw
cmp -s merged.raw master.raw || { echo "demo: MISMATCH: the merged base differs from the changed master disk" >&2; exit 1; }
step "Running the same merge again finds nothing to do" "$troy" merge monday.avhdx
step "Back to Sunday: roll the merge back" "$troy" rollback sunday-undo.avhdx
step "The base reads as before the merge" "$troy" convert lab-base.vhdx sunday.raw
"$troy" convert lab-base-sunday.vhdx sunday-expected.raw 2>/dev/null
# Monday's disk is larger (the change wrote past Sunday's end), so the merge
# grew the base as Hyper-V would; after the rollback the added part reads zeros.
truncate -s "$(stat -c %s sunday.raw)" sunday-expected.raw
echo
if cmp -s sunday.raw sunday-expected.raw; then
  echo "demo: merged and rolled back: lab-base.vhdx reads exactly as before the merge (plus zeros where it grew)"
else
  echo "demo: MISMATCH: the rolled-back base differs from Sunday's" >&2
  exit 1
fi
