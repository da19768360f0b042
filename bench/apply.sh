#!/usr/bin/env bash
# Benchmark: `troy apply`, writing an image's content onto a disk, against
# `dd oflag=direct bs=4M` writing the same number of bytes.
#   (a) delta: a child holding DELTA_MIB MiB of scattered changes (runs of 64 KiB
#       to 4 MiB) of a DISK_MIB MiB disk, applied to a raw file holding the base;
#       with the base check (reads target and parent first), with --base-hashes (the
#       boot payload's case: the delta and its fingerprint only) and with --no-verify-base.
#       The checked runs are also compared with dd reading, then writing, the same bytes.
#   (b) full: a DISK_MIB MiB image of random data applied with --full.
#   Both onto a raw file and, where loop devices can be attached (root), onto a
#   loop device over a raw file.
# Usage: bash bench/apply.sh [TROY_BINARY] [DISK_MIB] [DELTA_MIB]   (defaults 4096 1024)
set -euo pipefail

TROY=${1:-"$(dirname "$0")/../build/troy"}
DISK_MIB=${2:-4096}
DELTA_MIB=${3:-1024}
RUNS=2          # timed runs per command; each starts from a freshly prepared target
NAME_WIDTH=58
SIZE_MIB=$DISK_MIB
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
require_bench_tools
command -v python3 >/dev/null || die "python3 not found (it builds the input data)"
[[ $DISK_MIB =~ ^[0-9]+$ && $DELTA_MIB =~ ^[0-9]+$ ]] && (( DELTA_MIB * 2 <= DISK_MIB && DISK_MIB >= 64 )) \
  || die "DISK_MIB must be at least 64 and at least twice DELTA_MIB"
TROY=$(realpath "$TROY")

WORK=$(mktemp -d "${TMPDIR:-/tmp}/troy-bench.XXXXXX")
LOOP=""
trap '[[ -z $LOOP ]] || losetup -d "$LOOP" 2>/dev/null || true; rm -rf "$WORK"' EXIT
cd "$WORK"

# --- Inputs. state1.raw: random data everywhere (no zeros, so --full writes every
# byte and the dd baseline is the same work). state2.raw: state1 with DELTA_MIB MiB
# rewritten in scattered non-overlapping runs of 64 KiB to 4 MiB at 4 KiB offsets.
# delta.raw: those bytes back to back, what dd writes for the delta baseline.
make_inputs() {
  echo "building ${DISK_MIB} MiB state1.raw, state2.raw with ${DELTA_MIB} MiB changed in scattered runs, in $WORK"
  head -c $((DISK_MIB << 20)) /dev/urandom >state1.raw
  cp state1.raw state2.raw
  python3 - "$DISK_MIB" "$DELTA_MIB" <<'PY'
import os, random, sys
disk, delta = (int(v) << 20 for v in sys.argv[1:3])
rng = random.Random(1)
slots = disk // (8 << 20)          # one run per 8 MiB slot at most: runs never overlap
per_slot = delta // slots
runs, done = [], 0
for slot in rng.sample(range(slots), slots):
    if done >= delta:
        break
    length = min(max(64 << 10, (rng.randint(per_slot // 2, per_slot * 3 // 2) >> 12) << 12), 4 << 20, delta - done)
    at = slot * (8 << 20) + ((rng.randrange((8 << 20) - length + 1)) >> 12 << 12)
    runs.append((at, length))
    done += length
with open("state2.raw", "r+b") as f, open("delta.raw", "wb") as d:
    for at, length in sorted(runs):
        data = os.urandom(length)
        f.seek(at)
        f.write(data)
        d.write(data)
print(f"{len(runs)} runs, {done >> 20} MiB")
PY
  "$TROY" capture --block-size 2M state1.raw base.vhdx 2>/dev/null
  "$TROY" diff base.vhdx state2.raw -o child.avhdx 2>/dev/null
  "$TROY" fingerprint child.avhdx -o child.fp 2>/dev/null
  "$TROY" capture --block-size 32M state1.raw full.vhdx 2>/dev/null
}

# timed PREPARE CMD...: RUNS times: PREPARE (untimed), then CMD under GNU time.
# Sets BEST_S and PEAK_KIB.
timed() {
  local prepare=$1 run seconds kib
  shift
  BEST_S="" PEAK_KIB=0
  for (( run = 0; run < RUNS; run++ )); do
    eval "$prepare"
    /usr/bin/time -f '%e %M' -o time.out "$@" >/dev/null 2>tool.err || { cat tool.err >&2; die "failed: $*"; }
    read -r seconds kib <time.out
    if [[ -z $BEST_S ]] || awk -v a="$seconds" -v b="$BEST_S" 'BEGIN { exit !(a < b) }'; then BEST_S=$seconds; fi
    if (( kib > PEAK_KIB )); then PEAK_KIB=$kib; fi
  done
}

ratio() {  # label troy_s dd_s
  awk -v p="$1" -v t="$2" -v d="$3" 'BEGIN {
    if (d > 0) printf "%s: ratio troy/dd wall: %.2f (target: at most 1.10) %s\n", p, t / d, (t / d <= 1.10 ? "MET" : "NOT MET") }'
}

# bench_target LABEL TARGET RESET_BASE RESET_ANY: the delta and full runs onto TARGET.
bench_target() {
  local label=$1 target=$2 reset_base=$3 reset_any=$4
  echo
  echo "=== $label: delta (${DELTA_MIB} MiB scattered in ${DISK_MIB} MiB)"
  timed "$reset_base" "$TROY" apply --yes child.avhdx "$target" --journal journal
  local v_s=$BEST_S v_k=$PEAK_KIB
  grep -o 'wrote [^;]*' tool.err || true
  cmp -s <(head -c $((DISK_MIB << 20)) "$target") state2.raw || die "$label: the target is not state2 after the delta"
  # The boot payload's case: only the delta and its fingerprint (the parent hidden).
  mv base.vhdx base.hidden
  timed "$reset_base" "$TROY" apply --yes --base-hashes child.fp child.avhdx "$target" --journal journal
  mv base.hidden base.vhdx
  local h_s=$BEST_S h_k=$PEAK_KIB
  timed "$reset_base" "$TROY" apply --yes --no-verify-base child.avhdx "$target" --journal journal
  local n_s=$BEST_S n_k=$PEAK_KIB
  timed "$reset_any" dd if=delta.raw of="$target" bs=4M oflag=direct conv=notrunc,fsync status=none
  local d_s=$BEST_S d_k=$PEAK_KIB
  # The base check must read what it overwrites before the first write (nothing
  # is written onto a wrong disk), so its floor is a read pass plus a write
  # pass: dd reading as many bytes sequentially (the optimistic case for a
  # read), then writing them.
  timed "$reset_base" sh -c "dd if='$target' of=/dev/null bs=4M iflag=direct count=$((DELTA_MIB / 4)) status=none &&
    dd if=delta.raw of='$target' bs=4M oflag=direct conv=notrunc,fsync status=none"
  local rw_s=$BEST_S rw_k=$PEAK_KIB
  table_header "$label delta: tool"
  row "troy apply (base checked: reads target and parent first)" "$v_s" "$v_k" "$DELTA_MIB"
  row "troy apply --base-hashes (delta and fingerprint only)" "$h_s" "$h_k" "$DELTA_MIB"
  row "troy apply --no-verify-base" "$n_s" "$n_k" "$DELTA_MIB"
  row "dd oflag=direct bs=4M of the same ${DELTA_MIB} MiB (sequential)" "$d_s" "$d_k" "$DELTA_MIB"
  row "dd iflag=direct read, then dd write, of ${DELTA_MIB} MiB" "$rw_s" "$rw_k" "$DELTA_MIB"
  ratio "$label delta --no-verify-base" "$n_s" "$d_s"
  ratio "$label delta with the base check" "$v_s" "$d_s"
  ratio "$label delta with the base check, against dd read + write" "$v_s" "$rw_s"
  ratio "$label delta --base-hashes, against dd read + write" "$h_s" "$rw_s"

  echo
  echo "=== $label: full (${DISK_MIB} MiB)"
  timed "$reset_any" "$TROY" apply --yes --full full.vhdx "$target" --journal journal
  local f_s=$BEST_S f_k=$PEAK_KIB
  cmp -s <(head -c $((DISK_MIB << 20)) "$target") state1.raw || die "$label: the target is not state1 after --full"
  timed "$reset_any" dd if=state1.raw of="$target" bs=4M oflag=direct conv=notrunc,fsync status=none
  local fd_s=$BEST_S fd_k=$PEAK_KIB
  table_header "$label full: tool"
  row "troy apply --full" "$f_s" "$f_k"
  row "dd oflag=direct bs=4M of state1.raw" "$fd_s" "$fd_k"
  ratio "$label full" "$f_s" "$fd_s"
}

make_inputs
cp state1.raw target.raw
# Resetting the target to the base rewrites only the delta's runs (cheap), by
# applying the reverse delta with --no-verify-base; "any" needs no reset.
"$TROY" diff --overwrite child.avhdx state1.raw -o undo.avhdx 2>/dev/null
RESET_FILE='"$TROY" apply --yes --no-verify-base undo.avhdx target.raw --journal journal 2>/dev/null; sync'
bench_target "raw file" target.raw "$RESET_FILE" "sync"
rm -f target.raw

if [[ $(id -u) == 0 ]] && command -v losetup >/dev/null && cp state1.raw loop.raw && LOOP=$(losetup -f --show loop.raw 2>/dev/null); then
  RESET_LOOP='"$TROY" apply --yes --no-verify-base undo.avhdx "$LOOP" --journal journal 2>/dev/null; sync'
  bench_target "loop device" "$LOOP" "$RESET_LOOP" "sync"
else
  echo
  echo "loop device: skipped (needs root and a loop device)"
fi
echo
echo "note: the inputs are in the page cache; troy and dd both write with O_DIRECT and end with"
echo "      an fsync, so the times measure the target's write path. peak_rss is the whole process."
