# kill -9 at any point of an apply, then the same command again: the target
# ends byte-identical to an uninterrupted run, and the second run does not
# rewrite what the first finished. Kills come from the test-only hook
# TROY_TEST_KILL_AFTER_BYTES (SIGKILL once that many bytes of writes have
# finished; strace cannot stop io_uring writes) at random points, twice in a
# row, and from a plain kill -9 after a random delay. Small checkpoints
# (TROY_TEST_CHECKPOINT_BYTES) give the journal several records. Covered:
# the delta checked against the parent, against a fingerprint (where a
# piece torn by the kill is recognised through the journal), and --full.
source "$(dirname "$0")/common.sh"
source "$ROOT/tests/e2e/apply/lib.sh"

make_disk state1.raw 48 51
make_changed state1.raw state2.raw 60 52
"$TROY" capture --block-size 1M state1.raw base.vhdx 2>/dev/null
"$TROY" diff base.vhdx state2.raw -o monday.avhdx 2>/dev/null
"$TROY" fingerprint monday.avhdx -o monday.fp 2>/dev/null
mkdir payload && cp monday.avhdx payload/
export TROY_TEST_CHECKPOINT_BYTES=$((4 << 20))

# killed_run KILL_AFTER ARGS...: one run, killed by the hook unless it finishes first.
killed_run() {
  local after=$1 status=0
  shift
  { TROY_TEST_KILL_AFTER_BYTES=$after "$TROY" apply "$@" >/dev/null 2>"$WORK/stderr"; } 2>/dev/null || status=$?
  [ "$status" = 137 ] || [ "$status" = 0 ] || { cat "$WORK/stderr" >&2; fail "killed run: exit $status: apply $*"; }
  KILLED=$([ "$status" = 137 ] && echo yes || echo no)
}

# sweep LABEL START TOTAL ARGS...: for random kill points, start from START,
# kill, kill again, then run to the end; always the expected bytes.
sweep() {
  local label=$1 start=$2 total=$3 killed=0 resumed_skips=0 i
  shift 3
  for i in 1 2 3 4 5 6; do
    cp --sparse=always "$start" target.raw
    killed_run $(( (RANDOM * 32768 + RANDOM) % total + 1 )) "$@" target.raw
    [ "$KILLED" = yes ] && killed=$((killed + 1))
    if [ $((i % 2)) = 0 ]; then killed_run $(( (RANDOM * 32768 + RANDOM) % total + 1 )) "$@" target.raw; fi
    apply_ok "$@" target.raw --report report.json
    expect_same target.raw state2.raw "$label, kill point $i"
    [ ! -e .target.raw.troy-apply ] || fail "$label: journal left after the complete run"
    [ "$(json_field report.json skipped)" -gt 0 ] && resumed_skips=$((resumed_skips + 1))
  done
  [ "$killed" -ge 3 ] || fail "$label: only $killed of 6 runs were killed"
  pass "$label: killed $killed times (and again in every other rerun), every final run gives identical bytes; $resumed_skips reruns skipped finished pieces"
}

# Kill points fall inside the bytes an uninterrupted run writes (zero runs
# are punched, not written, so the delta's size would overshoot and leave
# runs unkilled), drawn from a fixed seed so a failure can be replayed.
cp --sparse=always state1.raw target.raw
apply_ok monday.avhdx target.raw --report report.json
delta=$(json_field report.json bytes_written)
[ "$delta" -gt 0 ] || fail "an uninterrupted apply wrote nothing"
RANDOM=2026
sweep "delta, parent check" state1.raw "$delta" monday.avhdx
sweep "delta, fingerprint check" state1.raw "$delta" payload/monday.avhdx --base-hashes monday.fp
head -c $((48 << 20)) /dev/urandom >noise.raw
sweep "--full over random bytes" noise.raw $((24 << 20)) monday.avhdx --full

# A plain kill -9 after a random delay (no hook), while the apply runs.
for i in 1 2 3 4; do
  cp --sparse=always noise.raw target.raw
  "$TROY" apply monday.avhdx target.raw --full 2>/dev/null &
  pid=$!
  sleep "0.0$((RANDOM % 10))"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  apply_ok monday.avhdx target.raw --full
  expect_same target.raw state2.raw "kill -9 after a random delay, run $i"
done
pass "kill -9 after random delays, then the same command: identical bytes"
finish
