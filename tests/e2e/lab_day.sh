# The README's "A lab's day with Troy" sequence, exactly as written there
# (read from README.md), on raw files instead of /dev/sda: the master
# machine's disk for every line but the last, a classroom machine's disk
# (holding Sunday's base) for apply. Each step's result is checked: after
# merge --undo and rollback, the merged child still opens and reads Monday,
# so the last line works (issue 20).
source "$(dirname "$0")/common.sh"
M=1048576

# The code block after the line naming the sequence, comments dropped.
awk '/A lab.s day with Troy/ { found = 1; next }
     found && /^```sh/ { inside = 1; next }
     inside && /^```/ { exit }
     inside { sub(/[ \t]*#.*/, ""); if (length) print }' "$ROOT/README.md" >steps.txt
[ "$(wc -l <steps.txt)" = 7 ] || { cat steps.txt >&2; fail "README's lab day is not the 7 steps this case knows"; }

make_random_raw master.raw $((64 * M)) 5
cp master.raw sunday.raw
cp master.raw classroom.raw

# The teacher's changes between capture and diff: new data, and data erased.
teacher_changes() {
  head -c $((3 * M)) /dev/urandom | dd of=master.raw bs=1M seek=10 conv=notrunc status=none
  dd if=/dev/zero of=master.raw bs=512 seek=$((40 * M / 512)) count=100 conv=notrunc status=none
  cp master.raw monday.raw
}

# Each step's result, checked right after it.
check_step() {
  case "$1" in
    capture) expect_converts_to base.vhdx sunday.raw; teacher_changes ;;
    diff) expect_converts_to monday.avhdx monday.raw ;;
    info) grep -q "base.vhdx" stdout || fail "info does not name the parent" ;;
    convert) expect_converts_to v2.vhdx monday.raw ;;
    merge)
      expect_converts_to base.vhdx monday.raw
      expect_converts_to monday.avhdx monday.raw ;;
    rollback)
      expect_converts_to base.vhdx sunday.raw
      expect_converts_to monday.avhdx monday.raw ;;
    apply) cmp -s classroom.raw monday.raw || fail "apply did not bring the classroom disk to Monday" ;;
    *) fail "unknown step $1" ;;
  esac
}

while read -r line; do
  words=($line)
  [ "${words[0]}" = troy ] || fail "a step that is not troy: $line"
  disk=master.raw
  [ "${words[1]}" = apply ] && disk=classroom.raw
  args=()
  for word in "${words[@]:1}"; do [ "$word" = /dev/sda ] && args+=("$disk") || args+=("$word"); done
  expect_exit 0 "$TROY" "${args[@]}" </dev/null
  check_step "${words[1]}"
  pass "$line"
done <steps.txt
finish
