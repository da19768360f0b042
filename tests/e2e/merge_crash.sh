# troy merge is crash-safe: a kill -9 at any point of a merge leaves a
# parent that every reader either reads as before the merge (or as after it,
# once it is complete) or refuses ("unfinished"), and the same command run
# again completes the merge with the bytes of an uninterrupted one.
#
# For VHDX and VHD, the file-changing system calls of an uninterrupted merge
# are traced (pwrite64 into the images, write/rename/unlink of the journal,
# fsync, ftruncate, linkat of the undo image); then, for kill points chosen
# by a fixed seed over the whole run (always the first and last, every
# journal step, the mark, the re-link step; a point that would leave the
# same files as an earlier one, only syncs between them, is not run twice),
# the same merge starts again from fresh copies and strace kills it (SIGKILL)
# on entering that call. Checked each time:
#   (a) in between: `troy info` refuses the parent naming an unfinished
#       merge, or it succeeds and troy reads the old content or the complete
#       merged content, nothing else; the same holds for troy reading the
#       image without its journal (only the image's own merge-in-progress
#       mark can tell it) and for qemu-img, when it opens the image at all;
#   (b) the same troy merge command run again exits 0;
#   (c) the parent then reads (troy and qemu-img) exactly what an
#       uninterrupted merge gave, `qemu-img check` is clean (VHDX), every
#       layer left in place reads what it read after an uninterrupted merge,
#       no journal is left; with --undo, `troy rollback` afterwards gives back
#       the old parent byte for byte (every other kill point).
# Cases per format: CHILD into its parent (partial runs, whole blocks made
# zero, new blocks where the parent held nothing, the last sector), --into
# over a 2-layer chain, and --undo.
#
# TROY_MERGE_CRASH_POINTS=N sets the number of kill points of the main case
# (by default 36 per format). An ASan build, which is ~3x slower, takes a
# sample of at most 8, 4 and 4 of the points the Release run takes.
source "$(dirname "$0")/common.sh"
command -v strace >/dev/null || fail "strace not installed (make deps)"
command -v qemu-img >/dev/null || fail "qemu-img not installed (make deps)"
under_strace -f -o /dev/null true 2>/dev/null || { echo "skip: ptrace is not permitted here"; exit 77; }
PY=/usr/bin/python3

# Each merge fsyncs its files a few dozen times, and each run starts from
# fresh copies, whose pages the first fsync would write to the disk: on a
# disk file system that is most of the time. A kill -9 loses nothing the
# page cache holds, so the runs go to RAM (/dev/shm) when it has room.
shm_free=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }' || true)
if [ "${shm_free:-0}" -gt $((1 << 20)) ]; then
  DISK_WORK=$WORK
  WORK=$(mktemp -d /dev/shm/troy-e2e.XXXXXX)
  trap 'rm -rf "$WORK" "$DISK_WORK"' EXIT
  cd "$WORK"
fi
# The traced runs and the killed ones must make the same system calls: a
# copy of the binary cannot be rebuilt under them.
cp "$TROY" "$WORK/troy.bin"
TROY=$WORK/troy.bin

# Kill points per format: main case, --into, --undo. Release keeps 36 in
# the main case alone (every write of a merge loses power in the unit tests,
# merge_power_loss_test.cpp; here real kills, sampled).
MAIN_POINTS=${TROY_MERGE_CRASH_POINTS:-36} INTO_POINTS=14 UNDO_POINTS=16
MAIN_CAP=0 INTO_CAP=0 UNDO_CAP=0
if is_asan_build "$TROY"; then
  MAIN_CAP=8 INTO_CAP=4 UNDO_CAP=4
fi
SEED=20260

FAILS=0
# bad MESSAGE: records a failure of this kill point and goes on with the next.
bad() {
  echo "FAIL: $*" >&2
  FAILS=$((FAILS + 1))
}

# --- inputs --------------------------------------------------------------
# A 12 MiB disk. base.raw: data in 1 MiB regions, zeros in others
# (unallocated in the base); new.raw: scattered runs of 1-24 sectors, a whole
# 1 MiB region and a 2 MiB aligned one (a ZERO block of a VHDX child) made
# zero, a partial zero run, a run across a block boundary, data in regions
# that were zero (the parent must allocate blocks), the last sector;
# top.raw: new.raw with more runs, some of them back to the base's content,
# and a zeroed 2 MiB block.
$PY - base.raw new.raw top.raw <<'PY'
import random, sys
M = 1 << 20
size = 12 * M
r = random.Random(20260)
base = bytearray(size)
for b in range(size // M):
    if b % 5 not in (3, 4):
        base[b * M:(b + 1) * M] = r.randbytes(M)
new = bytearray(base)
for i in range(60):
    at = r.randrange(size // 512) * 512
    n = min(512 * r.randint(1, 24), size - at)
    new[at:at + n] = r.randbytes(n)
new[1 * M:2 * M] = bytes(M)
new[6 * M:8 * M] = bytes(2 * M)
new[3 * M:4 * M] = r.randbytes(M)
new[8 * M + 4096:9 * M - 4096] = r.randbytes(M - 8192)
new[5 * M + 8192:5 * M + 65536] = bytes(65536 - 8192)
new[11 * M - 1536:11 * M + 2048] = r.randbytes(3584)
new[size - 512:] = r.randbytes(512)
top = bytearray(new)
for i in range(30):
    at = r.randrange(size // 512) * 512
    n = min(512 * r.randint(1, 16), size - at)
    top[at:at + n] = r.randbytes(n) if i % 3 else base[at:at + n]
top[8 * M:10 * M] = bytes(2 * M)
top[4 * M + 512:4 * M + 4096] = r.randbytes(3584)
for name, data in zip(sys.argv[1:], (base, new, top)):
    open(name, 'wb').write(data)
PY
cmp -s base.raw new.raw && fail "the generator made no change"

# The kill points: from the trace of an uninterrupted run, the file-changing
# calls in order, each named by its system call and its invocation number
# among that call's invocations (what strace's inject when=N counts; writes
# to standard output and error and to pipes are counted but are no kill
# points). Always the first and the last, the journal steps (write, rename,
# unlink and the call after each), the mark (the first image write after
# the journal), the undo image's linkat, the re-link step (everything after
# the last journal rename); the rest drawn with a fixed seed, up to COUNT in
# all but at least COUNT/2 of them; with a CAP, a sample of at most CAP of
# those (the first and the last kept). A kill -9 on entering a call leaves
# the files as the calls before it made them, and fsync/fdatasync change no
# byte a later reader sees: kill points with only such calls between them
# leave the same files, and of those only the first is run (the others would
# repeat every check on the same bytes); the rest, the cap included, is
# chosen among the distinct ones. Prints "INDEX SYSCALL N TOTAL" per kill
# point run, then "same INDEX..." for the points left out as repeats.
cat >choose.py <<'PY'
import random, re, sys
trace, count, seed, folder, cap = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
ordinal, events = {}, []
for line in open(trace):
    m = re.match(r'\d+\s+(\w+)\((\d*)(?:<([^>]*)>)?', line)
    if not m:
        continue
    name, fd, what = m.group(1), m.group(2), m.group(3) or ''
    ordinal[name] = ordinal.get(name, 0) + 1
    # Only writes into files of the folder merged in: not standard output
    # and error, nor pipes (AddressSanitizer probes memory by writing it
    # into one).
    if name == 'write' and (fd in ('1', '2') or not what.startswith(folder + '/')):
        continue
    events.append((name, ordinal[name]))
if not events:
    sys.exit("no file-changing calls in " + trace)
# state[i]: the file-changing calls made before a kill at i, syncs not counted.
state, made = [], 0
for name, _ in events:
    state.append(made)
    made += name not in ('fsync', 'fdatasync')
must = {0, len(events) - 1}
renames = [i for i, (name, _) in enumerate(events) if name == 'rename']
for i, (name, _) in enumerate(events):
    if name in ('write', 'rename', 'unlink', 'linkat'):
        must.update({i, min(i + 1, len(events) - 1)})
if renames:
    first_image_write = next((i for i in range(renames[0], len(events)) if events[i][0] == 'pwrite64'), None)
    if first_image_write is not None:
        must.add(first_image_write)
    must.update(range(renames[-1], len(events)))
rest = [i for i in range(len(events)) if i not in must]
drawn = min(len(rest), max(count - len(must), count // 2))
chosen = sorted(must | set(random.Random(seed).sample(rest, drawn)))
first_of_state = {}
for i in chosen:
    first_of_state.setdefault(state[i], i)
repeats = [i for i in chosen if first_of_state[state[i]] != i]
chosen = sorted(first_of_state.values())
if 2 <= cap < len(chosen):
    ends = {chosen[0], chosen[-1]}
    inner = [i for i in chosen if i not in ends]
    chosen = sorted(ends | set(random.Random(seed).sample(inner, cap - 2)))
for i in chosen:
    print(i + 1, events[i][0], events[i][1], len(events))
print("same", *(i + 1 for i in repeats))
PY

SYSCALLS=pwrite64,write,fsync,fdatasync,rename,unlink,ftruncate,linkat

# --- one case --------------------------------------------------------------
# sweep LABEL COUNT CAP: runs $COMMAND (an array, in folder run/) from fresh
# copies of pristine/ for COUNT kill points (at most CAP, unless 0). Expects: $PARENT (its file
# name), $OLD (raw content of the parent before), reference contents in ref/
# (one per image the case leaves, ref/NAME.raw), $QFMT (qemu-img format of
# the parent), $UNDO (file name of the undo image, or empty).
sweep() {
  local label=$1 count=$2 cap=$3 killed=0 refused=0 old_seen=0 new_seen=0 rolled=0 point fails_before=$FAILS
  rm -rf run && cp -a pristine run
  (cd run && under_strace -f -y -o "$WORK/trace" -e trace=$SYSCALLS "${COMMAND[@]}" >/dev/null 2>"$WORK/stderr") ||
    { cat "$WORK/stderr" >&2; fail "$label: uninterrupted traced run failed: ${COMMAND[*]}"; }
  $PY choose.py "$WORK/trace" "$count" "$SEED" "$(realpath run)" "$cap" >points || fail "$label: no kill points"
  local total repeats
  total=$(head -1 points | cut -d' ' -f4)
  repeats=$(grep '^same' points | wc -w)
  repeats=$((repeats - 1))
  grep -v '^same' points >points.run
  mkdir -p alone
  while read -r index call n _; do
    point="$label, kill at event $index/$total ($call #$n)"
    rm -rf run && cp -a pristine run
    local status=0
    (cd run && under_strace -f -o /dev/null -e trace="$call" -e inject="$call":signal=KILL:when="$n" \
      "${COMMAND[@]}" >/dev/null 2>"$WORK/stderr") || status=$?
    if [ "$status" != 137 ]; then
      cat "$WORK/stderr" >&2
      bad "$point: the merge was not killed there (exit $status): not the same calls as the traced run"
      continue
    fi
    killed=$((killed + 1))
    # (a) What readers see in between.
    local state=""
    if "$TROY" info "run/$PARENT" >/dev/null 2>"$WORK/stderr"; then
      "$TROY" convert "run/$PARENT" - 2>"$WORK/stderr" >"$WORK/between.raw" ||
        { bad "$point: troy info opens the parent, troy convert does not: $(cat "$WORK/stderr")"; continue; }
      if cmp -s "$WORK/between.raw" "$OLD"; then state=old; old_seen=$((old_seen + 1))
      elif cmp -s "$WORK/between.raw" "ref/$PARENT.raw"; then state=new; new_seen=$((new_seen + 1))
      else bad "$point: troy reads the parent without complaint, but neither as before nor as merged"; continue
      fi
    else
      grep -q unfinished "$WORK/stderr" ||
        { bad "$point: troy info refuses the parent without saying a merge is unfinished: $(cat "$WORK/stderr")"; continue; }
      refused=$((refused + 1))
    fi
    # A reader that does not know the journal goes by the image's own mark:
    # troy on the image alone (hard-linked into another folder).
    ln -f "run/$PARENT" "alone/$PARENT"
    if "$TROY" convert "alone/$PARENT" "$WORK/between.raw" --overwrite 2>"$WORK/stderr"; then
      if ! cmp -s "$WORK/between.raw" "$OLD" && ! cmp -s "$WORK/between.raw" "ref/$PARENT.raw"; then
        bad "$point: the parent without its journal has no merge-in-progress mark, but reads neither as before nor as merged"
        continue
      fi
    elif ! grep -q unfinished "$WORK/stderr"; then
      bad "$point: the parent without its journal is refused, but not as unfinished: $(cat "$WORK/stderr")"
      continue
    fi
    if qemu-img convert -f "$QFMT" -O raw "run/$PARENT" "$WORK/qemu.raw" 2>/dev/null; then
      if ! cmp -s "$WORK/qemu.raw" "$OLD" && ! cmp -s "$WORK/qemu.raw" "ref/$PARENT.raw"; then
        bad "$point: qemu-img reads the parent (troy: ${state:-refused}), neither as before nor as merged"
        continue
      fi
    fi
    # (b) The same command again.
    if ! (cd run && "${COMMAND[@]}" >/dev/null 2>"$WORK/stderr"); then
      bad "$point: re-running '${COMMAND[*]}' failed: $(cat "$WORK/stderr")"
      continue
    fi
    # (c) The bytes of an uninterrupted merge, in every layer left.
    local ok=yes name
    for name in ref/*.raw; do
      name=${name#ref/} name=${name%.raw}
      "$TROY" convert "run/$name" - 2>"$WORK/stderr" | cmp -s - "ref/$name.raw" ||
        { bad "$point: after the re-run, troy reads $name differently from an uninterrupted merge $(cat "$WORK/stderr")"; ok=no; }
    done
    qemu-img convert -f "$QFMT" -O raw "run/$PARENT" "$WORK/qemu.raw" 2>"$WORK/stderr" ||
      { bad "$point: after the re-run, qemu-img cannot read the parent: $(cat "$WORK/stderr")"; ok=no; }
    [ "$ok" = no ] || cmp -s "$WORK/qemu.raw" "ref/$PARENT.raw" ||
      { bad "$point: after the re-run, qemu-img reads the parent differently from an uninterrupted merge"; ok=no; }
    if [ "$QFMT" = vhdx ] && ! qemu-img check -q -f vhdx "run/$PARENT" >"$WORK/stderr" 2>&1; then
      bad "$point: after the re-run, qemu-img check: $(cat "$WORK/stderr")"
      ok=no
    fi
    if compgen -G "run/.*.troy-merge*" >/dev/null; then
      bad "$point: journal files left after the re-run: $(cd run && ls -a | grep troy-merge | tr '\n' ' ')"
      ok=no
    fi
    if [ -n "$UNDO" ] && [ "$ok" = yes ] && [ $((killed % 2)) = 1 ]; then
      if ! "$TROY" rollback "run/$UNDO" >/dev/null 2>"$WORK/stderr"; then
        bad "$point: troy rollback $UNDO after the re-run failed: $(cat "$WORK/stderr")"
      elif ! "$TROY" convert "run/$PARENT" - 2>/dev/null | cmp -s - "$OLD"; then
        bad "$point: after troy rollback $UNDO the parent does not read as before the merge"
      else
        rolled=$((rolled + 1))
      fi
    fi
  done <points.run
  rm -rf alone
  [ "$killed" -ge 1 ] || fail "$label: no run was killed"
  local summary="killed at $killed of $total calls ($repeats more chosen would leave the same files as one of these)"
  summary+="; in between: $refused refused as unfinished, $old_seen read as before, $new_seen as merged"
  if [ "$FAILS" = "$fails_before" ]; then
    pass "$label: $summary; every re-run gave the uninterrupted bytes${UNDO:+; rolled back $rolled times}"
  else
    echo "FAIL: $label: $((FAILS - fails_before)) kill points failed; $summary" >&2
  fi
  KILL_POINTS=$((KILL_POINTS + killed))
}

# make_pristine CHILD [GRANDCHILD]: base.$format from base.raw, CHILD with
# new.raw's content over it, GRANDCHILD with top.raw's over CHILD. Made in
# run/, the folder every run uses, so that the absolute parent locators name
# the copies being merged, never the pristine ones.
make_pristine() {
  rm -rf run pristine && mkdir run
  "$TROY" capture --block-size "$base_block" base.raw run/base.$format 2>/dev/null
  "$TROY" diff run/base.$format new.raw -o "run/$1" 2>/dev/null
  if [ $# = 2 ]; then "$TROY" diff "run/$1" top.raw -o "run/$2" 2>/dev/null; fi
  mv run pristine
}

# reference: the uninterrupted run of $COMMAND over a copy of pristine/, the
# content of each named image afterwards goes to ref/NAME.raw.
reference() {
  rm -rf run ref && cp -a pristine run && mkdir ref
  (cd run && "${COMMAND[@]}" >/dev/null 2>"$WORK/stderr") || { cat "$WORK/stderr" >&2; fail "uninterrupted: ${COMMAND[*]}"; }
  local name
  for name in "$@"; do
    "$TROY" convert "run/$name" "ref/$name.raw" 2>"$WORK/stderr" || { cat "$WORK/stderr" >&2; fail "reading $name"; }
  done
}

for format in vhdx vhd; do
  if [ $format = vhdx ]; then child=avhdx base_block=1M QFMT=vhdx; else child=vhd base_block=512K QFMT=vpc; fi
  PARENT=base.$format OLD=$WORK/base.raw
  KILL_POINTS=0

  # CHILD into its parent.
  make_pristine child.$child
  COMMAND=("$TROY" merge child.$child) UNDO=
  reference base.$format child.$child
  cmp -s ref/base.$format.raw new.raw || fail "$format: an uninterrupted merge does not give the child's content"
  cmp -s ref/child.$child.raw new.raw || fail "$format: the child reads differently after an uninterrupted merge"
  sweep "$format: merge child.$child" "$MAIN_POINTS" "$MAIN_CAP"

  # --into over a 2-layer chain: base <- mid <- top.
  make_pristine mid.$child top.$child
  COMMAND=("$TROY" merge top.$child --into base.$format) UNDO=
  reference base.$format mid.$child top.$child
  cmp -s ref/base.$format.raw top.raw || fail "$format: an uninterrupted --into merge does not give the top's content"
  cmp -s ref/top.$child.raw top.raw || fail "$format: the top reads differently after an uninterrupted --into merge"
  sweep "$format: merge top.$child --into base.$format" "$INTO_POINTS" "$INTO_CAP"

  # --undo, then troy rollback.
  make_pristine child.$child
  COMMAND=("$TROY" merge child.$child --undo undo.$child) UNDO=undo.$child
  reference base.$format child.$child undo.$child
  cmp -s ref/base.$format.raw new.raw || fail "$format: an uninterrupted --undo merge does not give the child's content"
  "$TROY" rollback run/undo.$child >/dev/null 2>&1 || fail "$format: troy rollback after an uninterrupted merge"
  "$TROY" convert run/base.$format - 2>/dev/null | cmp -s - base.raw || fail "$format: rollback does not restore"
  sweep "$format: merge child.$child --undo undo.$child" "$UNDO_POINTS" "$UNDO_CAP"

  echo "$format: $KILL_POINTS kill points"
done

[ "$FAILS" = 0 ] || fail "$FAILS kill points failed (see FAIL lines above)"
finish
