# The commands that write a new image (capture, diff, convert -O vhd|vhdx,
# create) killed with kill -9 at write points spread over the whole run (the
# last writes before the rename included) and at each step of the commit
# (fsync, link, rename, folder fsync): afterwards there is either no output at
# all (an existing output replaced with --overwrite is byte-identical to
# before) or the complete output, never another file in the folder, and the
# inputs are unchanged. A run that is not killed gives an image that `troy
# check` passes and that reads as the data it was made from. Then: an existing
# output without --overwrite, and bad input, each refused with one error line
# naming the file or option, exit 2, nothing created.
source "$(dirname "$0")/common.sh"

command -v strace >/dev/null || fail "strace not installed (make deps)"

# A raw disk of SIZE_MIB MiB: about 60% of its 1 MiB blocks hold one to three
# random runs at random sector offsets, the others are holes; the last sector
# holds data. Deterministic layout for a SEED (the bytes are random).
make_disk() {
  python3 - "$1" "$2" "$3" <<'PY'
import os, random, sys
path, mib, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
size = mib << 20
with open(path, "wb") as f:
    f.truncate(size)
    for block in range(mib):
        if rng.random() < 0.6:
            for _ in range(rng.randint(1, 3)):
                length = 512 * rng.randint(1, 400)
                at = (block << 20) + 512 * rng.randint(0, 2047)
                f.seek(at)
                f.write(os.urandom(min(length, size - at)))
    f.seek(size - 512)
    f.write(os.urandom(512))
PY
}

# A copy of a raw disk with COUNT scattered runs overwritten (in data and in
# hole blocks; some cross a block boundary), as the disk might be later.
make_changed() {
  cp "$1" "$2"
  python3 - "$2" "$3" "$4" <<'PY'
import os, random, sys
path, count, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
size = os.path.getsize(path)
with open(path, "r+b") as f:
    for i in range(count):
        length = 512 * rng.randint(1, 300)
        at = 512 * rng.randrange(size // 512)
        if i == 0:
            at = (1 << 20) - 4096  # across the boundary of the first two blocks
        f.seek(at)
        f.write(os.urandom(min(length, size - at)))
PY
}

# Everything in the current folder: name, size, inode and mtime, so a new,
# removed, replaced or modified file shows.
snapshot() { find . -mindepth 1 -printf '%p %s %i %T@\n' | sort; }

# Expects an image FILE to pass `troy check` and to read as the raw file EXPECTED.
expect_complete() {
  local file=$1 expected=$2 label=$3
  "$TROY" check "$file" >"$WORK/check.out" 2>&1 || { cat "$WORK/check.out" >&2; fail "$label: troy check $file fails"; }
  "$TROY" convert "$file" "$WORK/converted.raw" --overwrite 2>"$WORK/stderr" ||
    { cat "$WORK/stderr" >&2; fail "$label: troy convert $file failed"; }
  cmp -s "$WORK/converted.raw" "$expected" || fail "$label: $file does not read as $expected"
  rm -f "$WORK/converted.raw"
}

BEFORE=$WORK/before.list AFTER=$WORK/after.list
ORIGINAL=$WORK/original-out # the existing OUT of an --overwrite case
NOTES="" PROBLEMS=""        # reported at the end; PROBLEMS fail the case

# Puts the folder back as it was before a run (OUT removed, or the original
# OUT back for an --overwrite case) and lists it.
restore_out() {
  rm -f "$1"
  if [ -e "$ORIGINAL" ]; then cp "$ORIGINAL" "$1"; fi
  snapshot >"$BEFORE"
}

# After a killed run, sets OUTCOME: "nothing" when the folder is exactly as
# before (OUT absent, or with --overwrite the same bytes as before), or
# "complete" when the only change is a complete OUT (allowed when the kill
# came after the rename: allow_complete=yes). A hidden temporary name left
# between link and rename is "partial": noted when an existing OUT was being
# replaced (two steps cannot be avoided there), a problem otherwise. Inputs
# are in the folder too, so a modified input shows in the listing.
expect_nothing_or_complete() {
  local out=$1 expected=$2 label=$3 allow_complete=$4
  snapshot >"$AFTER"
  if [ -e "$ORIGINAL" ] && ! cmp -s "$out" "$ORIGINAL"; then
    [ "$allow_complete" = yes ] || fail "$label: the existing $out changed"
  fi
  if cmp -s "$BEFORE" "$AFTER"; then
    OUTCOME=nothing
    return
  fi
  local others
  others=$(diff "$BEFORE" "$AFTER" | grep '^[<>]' | grep -v -e "^[<>] ./$out " || true)
  if [ -n "$others" ]; then
    grep -q -v -e "^> ./\.$out\.troy-partial-[0-9]* " <<<"$others" &&
      fail "$label: other files changed or left: $others"
    rm -f ./."$out".troy-partial-*
    if [ -e "$ORIGINAL" ]; then
      cmp -s "$out" "$ORIGINAL" || fail "$label: $out replaced, and a partial file left"
    else
      [ ! -e "$out" ] || fail "$label: $out written, and a partial file left"
    fi
    OUTCOME=partial
    if [ -e "$ORIGINAL" ]; then
      NOTES+="  $label: left .$out.troy-partial-PID (the existing $out unchanged)"$'\n'
    else
      PROBLEMS+="  $label: left .$out.troy-partial-PID, a hidden copy of the finished output"$'\n'
    fi
    return
  fi
  [ "$allow_complete" = yes ] || fail "$label: $out was written although the run was killed before its commit"
  expect_complete "$out" "$expected" "$label"
  OUTCOME=complete
}

# sweep LABEL OUT EXPECTED_RAW CMD...: runs CMD (which writes OUT) once to
# count its pwrite calls W, then kills it at up to 16 writes (6 in an ASan build) spread over 1..W
# (always including the last three), then at each step of its commit, then
# lets it run to the end (the W+1st write never comes). With an existing OUT
# (kept in $ORIGINAL) the command must carry --overwrite.
sweep() {
  local label=$1 out=$2 expected=$3
  shift 3
  local others_before
  others_before=$(snapshot | grep -v -e "^./$out " | sha256sum)
  under_strace -f -o "$WORK/trace" -e trace=pwrite64,fsync,linkat,rename "$@" >/dev/null 2>&1 ||
    fail "$label: the command fails: $*"
  local writes fsyncs
  writes=$(grep -c 'pwrite64(' "$WORK/trace" || true)
  fsyncs=$(grep -c 'fsync(' "$WORK/trace" || true)
  [ "$writes" -ge 3 ] || fail "$label: only $writes writes; the sweep would not test anything"
  restore_out "$out"

  local points="" n spread=16
  is_asan_build "$TROY" && spread=6
  local step=$(((writes + spread - 1) / spread))
  for ((n = 1; n <= writes - 3; n += step)); do points+=" $n"; done
  for ((n = writes - 2; n <= writes; n++)); do points+=" $n"; done
  local killed=0 status
  for n in $points; do
    status=0
    kill_at_write "$n" "$@" 2>/dev/null || status=$? # (no "Killed" notice from bash)
    [ "$status" = 137 ] || fail "$label: expected the run to be killed at write $n of $writes, got exit $status"
    expect_nothing_or_complete "$out" "$expected" "$label, killed at write $n" no
    [ "$OUTCOME" = nothing ] || fail "$label: killed at write $n: $OUTCOME"
    killed=$((killed + 1))
  done

  # The commit: fsync of the file, link of the unnamed file, rename, folder fsync
  # (a step the command does not make lets it finish: then OUT must be complete).
  local step_name when outcomes=""
  for step_name in fsync:1 linkat:1 rename:1 "fsync:$fsyncs"; do
    when=${step_name#*:}
    step_name=${step_name%:*}
    status=0
    { under_strace -f -o /dev/null -e trace="$step_name" -e inject="$step_name:signal=KILL:when=$when" "$@" \
      >/dev/null 2>&1; } 2>/dev/null || status=$?
    if [ "$status" = 0 ]; then
      OUTCOME=finished
      expect_complete "$out" "$expected" "$label, not killed at $step_name #$when"
    else
      [ "$status" = 137 ] || fail "$label: killed at $step_name #$when: exit $status"
      expect_nothing_or_complete "$out" "$expected" "$label, killed at $step_name #$when" yes
    fi
    outcomes+=" $step_name#$when:$OUTCOME"
    restore_out "$out"
  done

  # Not killed: the write after the last never comes.
  status=0
  kill_at_write $((writes + 1)) "$@" || status=$?
  [ "$status" = 0 ] || fail "$label: the run to the end exited $status (not the same $writes writes each time?)"
  expect_complete "$out" "$expected" "$label, run to the end"
  [ "$(snapshot | grep -v -e "^./$out " | sha256sum)" = "$others_before" ] ||
    fail "$label: files other than $out changed"
  restore_out "$out"
  pass "$label: killed at $killed of $writes writes, nothing left; commit steps:$outcomes; complete run checks"
}

# --- Inputs. The images every command reads live in the same folder as the
# outputs, so the folder listing covers them too.
mkdir disk && cd disk || exit 1
make_disk state1.raw 24 11
make_changed state1.raw state2.raw 40 12
truncate -s 24M zero.raw
"$TROY" capture --block-size 1M state1.raw parent.vhdx 2>/dev/null
"$TROY" capture --block-size 1M state1.raw parent.vhd 2>/dev/null
"$TROY" create --size 8M old.vhd 2>/dev/null   # content of the existing OUTs below
"$TROY" create --size 8M old.vhdx 2>/dev/null
# The bytes every command must leave its inputs with.
sha256sum state1.raw state2.raw zero.raw parent.vhdx parent.vhd old.vhd old.vhdx >"$WORK/inputs.sha"

# --- Kill -9 sweeps. Relative names (the folder is "."), and an absolute one.
rm -f "$ORIGINAL"
sweep "capture dynamic vhdx" cap.vhdx state1.raw "$TROY" capture --block-size 1M state1.raw cap.vhdx
sweep "capture fixed vhd" cap.vhd state1.raw "$TROY" capture --type fixed state1.raw cap.vhd
sweep "capture dynamic vhdx 4096-byte sectors" cap4k.vhdx state1.raw \
  "$TROY" capture --block-size 1M --sector-size 4096 state1.raw "$PWD/cap4k.vhdx"
sweep "diff vhdx" child.avhdx state2.raw "$TROY" diff --block-size 1M parent.vhdx state2.raw -o child.avhdx
sweep "diff vhd" child.vhd state2.raw "$TROY" diff --block-size 1M parent.vhd state2.raw -o child.vhd
sweep "convert -O vhd" conv.vhd state1.raw "$TROY" convert -O vhd --block-size 1M parent.vhdx conv.vhd
sweep "convert -O vhdx" conv.vhdx state1.raw "$TROY" convert -O vhdx --block-size 1M parent.vhd conv.vhdx
sweep "create dynamic vhd" new.vhd zero.raw "$TROY" create --size 24M new.vhd
sweep "create fixed vhdx" new.vhdx zero.raw "$TROY" create --type fixed --block-size 1M --size 24M new.vhdx
sweep "create --parent vhdx" kid.avhdx state1.raw "$TROY" create --parent parent.vhdx kid.avhdx
sweep "create --parent vhd" kid.vhd state1.raw "$TROY" create --parent parent.vhd kid.vhd

# The same with an existing OUT replaced (--overwrite): killed, it is unchanged.
cp old.vhdx "$ORIGINAL" && cp old.vhdx cap-over.vhdx
sweep "capture dynamic vhdx --overwrite" cap-over.vhdx state1.raw \
  "$TROY" capture --overwrite --block-size 1M state1.raw cap-over.vhdx
cp old.vhd "$ORIGINAL" && cp old.vhd child-over.vhd
sweep "diff vhd --overwrite" child-over.vhd state2.raw \
  "$TROY" diff --overwrite --block-size 1M parent.vhd state2.raw -o child-over.vhd
cp old.vhdx "$ORIGINAL" && cp old.vhdx conv-over.vhdx
sweep "convert -O vhdx --overwrite" conv-over.vhdx state1.raw \
  "$TROY" convert --overwrite -O vhdx --block-size 1M parent.vhd conv-over.vhdx
cp old.vhd "$ORIGINAL" && cp old.vhd new-over.vhd
sweep "create dynamic vhd --overwrite" new-over.vhd zero.raw "$TROY" create --overwrite --size 24M new-over.vhd
cp old.vhdx "$ORIGINAL" && cp old.vhdx kid-over.avhdx
sweep "create --parent vhdx --overwrite" kid-over.avhdx state1.raw \
  "$TROY" create --overwrite --parent parent.vhdx kid-over.avhdx
rm -f "$ORIGINAL" ./*-over.*
sha256sum -c --quiet "$WORK/inputs.sha" || fail "an input changed"
pass "inputs byte-identical after every sweep"

# --- An existing OUT without --overwrite: refused, OUT unchanged, nothing else.
# expect_refused WORD... -- CMD...: exit 2, one error line naming every WORD,
# the folder exactly as before.
expect_refused() {
  local words=()
  while [ "$1" != -- ]; do
    words+=("$1")
    shift
  done
  shift
  REFUSED=$((REFUSED + 1))
  snapshot >"$BEFORE"
  expect_exit 2 "$@"
  expect_error_line "${words[@]}"
  snapshot >"$AFTER"
  cmp -s "$BEFORE" "$AFTER" || fail "refused, but the folder changed: $(diff "$BEFORE" "$AFTER" | grep '^[<>]')"
}
REFUSED=0
cp old.vhd exists.vhd && cp old.vhdx exists.vhdx && cp old.vhdx exists.avhdx
expect_refused exists.vhdx --overwrite -- "$TROY" capture state1.raw exists.vhdx
expect_refused exists.vhd --overwrite -- "$TROY" capture --type fixed state1.raw exists.vhd
expect_refused exists.avhdx --overwrite -- "$TROY" diff parent.vhdx state2.raw -o exists.avhdx
expect_refused exists.vhd --overwrite -- "$TROY" diff parent.vhd state2.raw -o exists.vhd
expect_refused exists.vhd --overwrite -- "$TROY" convert -O vhd parent.vhdx exists.vhd
expect_refused exists.vhdx --overwrite -- "$TROY" convert -O vhdx parent.vhd exists.vhdx
expect_refused exists.vhd --overwrite -- "$TROY" create --size 1G exists.vhd
expect_refused exists.vhdx --overwrite -- "$TROY" create --size 1G exists.vhdx
expect_refused exists.avhdx --overwrite -- "$TROY" create --parent parent.vhdx exists.avhdx
for pair in exists.vhd:old.vhd exists.vhdx:old.vhdx exists.avhdx:old.vhdx; do
  cmp -s "${pair%:*}" "${pair#*:}" || fail "a refused command changed ${pair%:*}"
done
pass "an existing output without --overwrite: refused by capture, diff, convert -O vhd|vhdx and create"

# --- Bad input: one error line naming the file or option, exit 2, nothing created.
REFUSED=0
: >empty.raw
truncate -s 8M small.raw
head -c 100000 parent.vhdx >truncated.vhdx
head -c 100000 parent.vhd >truncated.vhd
# Chains whose middle level lost its own parent (the base was moved away).
mkdir moved
cp parent.vhdx moved/base.vhdx && cp parent.vhd moved/base.vhd
"$TROY" create --parent moved/base.vhdx orphan.avhdx 2>/dev/null
"$TROY" create --parent moved/base.vhd orphan.vhd 2>/dev/null
rm -r moved
expect_refused empty.raw -- "$TROY" capture empty.raw out.vhdx
expect_refused missing.raw -- "$TROY" capture missing.raw out.vhdx
expect_refused missing.raw -- "$TROY" diff parent.vhdx missing.raw -o out.avhdx
expect_refused missing.vhdx -- "$TROY" diff missing.vhdx state2.raw -o out.avhdx
expect_refused --sector-size 4096 -- "$TROY" capture --sector-size 4096 state1.raw out.vhd
expect_refused --sector-size 4096 -- "$TROY" create --sector-size 4096 --size 1G out.vhd
expect_refused --sector-size 4096 -- "$TROY" convert -O vhd --sector-size 4096 parent.vhdx out.vhd
expect_refused --size -- "$TROY" create --size 0 out.vhdx
expect_refused --size -- "$TROY" create --size 0 out.vhd
expect_refused --size 1000 -- "$TROY" create --size 1000 out.vhdx
expect_refused --size -- "$TROY" create --size 1073742000 out.vhd
expect_refused --size -- "$TROY" create --size 3T out.vhd
expect_refused --size -- "$TROY" create --size 2041G out.vhd
expect_refused --size 40X -- "$TROY" create --size 40X out.vhdx
expect_refused --block-size -- "$TROY" capture --block-size 3M state1.raw out.vhdx
expect_refused --block-size -- "$TROY" capture --block-size 3M state1.raw out.vhd
expect_refused --block-size -- "$TROY" create --block-size 3M --size 1G out.vhd
expect_refused --block-size -- "$TROY" diff --block-size 3M parent.vhdx state2.raw -o out.avhdx
expect_refused --block-size -- "$TROY" convert -O vhdx --block-size 3M parent.vhd out.vhdx
expect_refused out.img -- "$TROY" capture state1.raw out.img
expect_refused out.img -- "$TROY" create --size 1G out.img
expect_refused small.raw parent.vhdx -- "$TROY" diff parent.vhdx small.raw -o out.avhdx
expect_refused small.raw parent.vhd -- "$TROY" diff parent.vhd small.raw -o out.vhd
expect_refused parent.vhdx -- "$TROY" diff parent.vhdx state2.raw -o out.vhd
expect_refused parent.vhdx -- "$TROY" create --parent parent.vhdx out.vhd
expect_refused truncated.vhdx -- "$TROY" create --parent truncated.vhdx out.avhdx
expect_refused truncated.vhd -- "$TROY" create --parent truncated.vhd out.vhd
expect_refused orphan.avhdx "parent not found" -- "$TROY" diff orphan.avhdx state2.raw -o out.avhdx
expect_refused orphan.vhd "parent not found" -- "$TROY" diff orphan.vhd state2.raw -o out.vhd
expect_refused orphan.avhdx "parent not found" -- "$TROY" create --parent orphan.avhdx out.avhdx
sha256sum -c --quiet "$WORK/inputs.sha" || fail "an input changed"
pass "bad input: $REFUSED cases refused with one error line, exit 2, nothing created"

# --- The output may not be the parent it is made from: --overwrite would
# replace the parent by a child of itself (its data lost, a chain that loops).
cp parent.vhd self.vhd && cp parent.vhdx self.vhdx
for command in "create --overwrite --parent self.vhd self.vhd" \
  "diff --overwrite self.vhdx state2.raw -o self.vhdx"; do
  snapshot >"$BEFORE"
  status=0
  # shellcheck disable=SC2086
  "$TROY" $command >"$WORK/stdout" 2>"$WORK/stderr" || status=$?
  snapshot >"$AFTER"
  if [ "$status" != 2 ] || ! cmp -s "$BEFORE" "$AFTER"; then
    PROBLEMS+="  troy $command: exit $status, $(grep -c . "$WORK/stderr") stderr line(s)"
    PROBLEMS+="$(cmp -s "$BEFORE" "$AFTER" || echo ", the parent replaced by a child of itself")"$'\n'
    cp parent.vhd self.vhd && cp parent.vhdx self.vhdx
  else
    expect_error_line
  fi
done
[ -n "$PROBLEMS" ] || pass "an output that is its own parent is refused"

[ -z "$NOTES" ] || printf 'note: killed between link and rename while replacing an existing output:\n%s' "$NOTES" >&2
[ -z "$PROBLEMS" ] || fail "$(printf 'after %d checks passed:\n%s' "$CHECKS" "${PROBLEMS%$'\n'}")"
finish
