# troy merge's behaviour as a command: the numbers it reports (--dry-run
# runs, --json fields) against changes engineered by hand, re-runs that
# change nothing, --no-compare, re-linking of grandchildren (found in the
# folder or named with --relink, also after --remove), --remove, every
# refusal (one line, exit 2, no file changed), the refusal of a target whose
# merge was interrupted (journal), the warning about siblings, and memory
# that does not grow with the size of a fixed VHD target.
source "$(dirname "$0")/common.sh"
command -v strace >/dev/null || fail "strace not installed (make deps)"
command -v qemu-img >/dev/null || fail "qemu-img not installed (make deps)"
[ -x /usr/bin/time ] || fail "GNU time (/usr/bin/time) not installed"
PY=/usr/bin/python3
SPEC_READ="$PY $ROOT/fixtures/spec_read.py"
M=1048576

run_troy() {
  "$TROY" "$@" >"$WORK/stdout" 2>"$WORK/stderr" || { cat "$WORK/stderr" >&2; fail "troy $*"; }
}

# merge CHILD [OPTIONS]: troy merge succeeds (stdout, stderr in $WORK).
merge() {
  "$TROY" merge "$@" >"$WORK/stdout" 2>"$WORK/stderr" || { cat "$WORK/stderr" >&2; fail "troy merge $*"; }
}

# snapshot DIR: every file under DIR (hidden ones too) with its sha256, size
# and modification time in nanoseconds (one process: the case takes ~100
# snapshots, and three processes per file were a third of its time).
snapshot() {
  $PY - "$1" <<'PY'
import hashlib, os, stat, sys
top, lines = sys.argv[1], []
for folder, _, names in os.walk(top):
    for name in names:
        path = os.path.join(folder, name)
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            continue
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for piece in iter(lambda: f.read(1 << 20), b""):
                digest.update(piece)
        lines.append("%s %s %d %d" % (os.path.relpath(path, top), digest.hexdigest(), st.st_size, st.st_mtime_ns))
print("\n".join(sorted(lines)))
PY
}

# unchanged DIR BEFORE WHAT: DIR's snapshot equals BEFORE.
unchanged() {
  local now
  now=$(snapshot "$1")
  [ "$now" = "$2" ] || { diff <(echo "$2") <(echo "$now") >&2 || true; fail "$3 changed files in $1"; }
}

# refused DIR WORDS -- COMMAND...: exit 2, one error line naming every word,
# and no file under DIR created, removed or changed.
refused() {
  local dir=$1 words=()
  shift
  while [ "$1" != -- ]; do words+=("$1"); shift; done
  shift
  local before
  before=$(snapshot "$dir")
  expect_exit 2 "$@"
  expect_error_line "${words[@]}"
  [ "$(wc -l <"$WORK/stderr")" = 1 ] || { cat "$WORK/stderr" >&2; fail "$*: more than one line on stderr"; }
  unchanged "$dir" "$before" "refused command $*"
}

# raw_reads IMAGE EXPECTED: troy convert reads IMAGE (its chain) as EXPECTED.
raw_reads() {
  "$TROY" convert "$1" "$WORK/read.raw" --overwrite 2>"$WORK/stderr" || { cat "$WORK/stderr" >&2; fail "troy convert $1"; }
  cmp -s "$WORK/read.raw" "$2" || fail "$1 does not read as $2"
  rm -f "$WORK/read.raw"
}

# poke RAW OFFSET LENGTH SEED|zero: overwrites bytes of RAW in place.
poke() {
  $PY - "$@" <<'PY'
import random, sys
path, at, n, what = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
data = bytes(n) if what == "zero" else random.Random(int(what)).randbytes(n)
with open(path, "r+b") as f:
    f.seek(at)
    f.write(data)
PY
}

# 1. Engineered changes: P (6 MiB: random data in [0, 4M), a hole after),
# N1 = P with X, Y, W and Q changed, N2 = N1 with Y put back as in P and Z and
# one sector changed; c1 = diff(P, N1), c2 = diff(c1, N2). merge c2 --into
# base then writes X W Z and the sector (and Q: as zeros, a VHDX ZERO block of
# c1), finds Y identical, and allocates the base blocks W and the sector fall
# in (VHD 2M blocks: 1; VHDX 1M blocks: 2).
#   X [1M+512, +64K)  Y [3M, +32K)  W [4M+4K, +8K)  Q [0, 1M) zeroed
#   Z [2M-1K, +3K) (across a block boundary)  sector 5M+512
$PY - <<'PY'
import random
M = 1 << 20
rng = random.Random(5)
p = bytearray(6 * M)
p[:4 * M] = rng.randbytes(4 * M)
open("P.raw", "wb").write(p)
n1 = bytearray(p)
for at, n in ((M + 512, 64 << 10), (3 * M, 32 << 10), (4 * M + 4096, 8192)):
    n1[at:at + n] = rng.randbytes(n)
n1[:M] = bytes(M)
open("N1.raw", "wb").write(n1)
n2 = bytearray(n1)
n2[3 * M:3 * M + (32 << 10)] = p[3 * M:3 * M + (32 << 10)]
for at, n in ((2 * M - 1024, 3072), (5 * M + 512, 512)):
    n2[at:at + n] = rng.randbytes(n)
open("N2.raw", "wb").write(n2)
PY
# engineered FORMAT: the expected JSON numbers (compare mode), computed from
# the raw files: every 512-byte sector held by c1 or c2, written or identical.
engineered() {
  $PY - "$1" <<'PY'
import json, sys
fmt, M, S = sys.argv[1], 1 << 20, 512
p, n1, n2 = (open(f, "rb").read() for f in ("P.raw", "N1.raw", "N2.raw"))
sec = lambda d, i: d[i * S:(i + 1) * S]
held = [i for i in range(len(p) // S) if sec(n1, i) != sec(p, i) or sec(n2, i) != sec(n1, i)]
zero_range = set(range(M // S)) if fmt == "vhdx" else set()  # Q: c1's ZERO block
differ = [i for i in held if sec(n2, i) != sec(p, i)]
zeroed = [i for i in differ if i in zero_range]
print(json.dumps({
    "bytes_written": S * (len(differ) - len(zeroed)), "bytes_zeroed": S * len(zeroed),
    "bytes_identical": S * (len(held) - len(differ)),
    "held": S * len(held), "held_zero": S * len([i for i in held if i in zero_range]),
    "blocks_allocated": 1 if fmt == "vhd" else 2}))
PY
}
# dry_runs_ok STDOUT: the dry-run lines are "write|zero OFFSET LENGTH",
# in disk order, not overlapping, sector-aligned; together they cover exactly
# the sectors where N2 differs from P, and zero runs lie where N2 is zero.
dry_runs_ok() {
  $PY - "$1" <<'PY' || fail "dry-run lines do not describe the change"
import re, sys
S = 512
p, n2 = open("P.raw", "rb").read(), open("N2.raw", "rb").read()
covered, last = set(), 0
for line in open(sys.argv[1]):
    m = re.fullmatch(r"(write|zero) (\d+) (\d+)\n", line)
    assert m, "bad line %r" % line
    kind, at, n = m[1], int(m[2]), int(m[3])
    assert at % S == 0 and n % S == 0 and n > 0 and at >= last, line
    last = at + n
    if kind == "zero":
        assert n2[at:at + n] == bytes(n), "zero run over data: " + line
    covered.update(range(at // S, (at + n) // S))
differ = {i for i in range(len(p) // S) if p[i * S:(i + 1) * S] != n2[i * S:(i + 1) * S]}
assert covered == differ, "runs cover %d sectors, %d differ (%d extra, %d missing)" % (
    len(covered), len(differ), len(covered - differ), len(differ - covered))
PY
}
# json_ok FILE EXPECTED_JSON MODE CHILD TARGET: one JSON object with every
# key; numbers as engineered (MODE: compare, no-compare, dry-run).
json_ok() {
  $PY - "$@" <<'PY' || fail "merge --json ($3): wrong fields"
import json, os, sys
path, want, mode, child, target = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
lines = open(path).read().splitlines()
assert len(lines) == 1, "stdout holds %d lines" % len(lines)
got = json.loads(lines[0])
keys = {"child", "target", "dry_run", "bytes_read", "bytes_written", "bytes_zeroed", "bytes_identical", "runs",
        "blocks_allocated", "duration_seconds", "bytes_per_second", "undo", "relinked", "removed"}
assert keys <= set(got), "missing keys: %s" % (keys - set(got))
assert got["child"] == os.path.realpath(child) and got["target"] == os.path.realpath(target), got
assert got["dry_run"] is (mode == "dry-run"), got
if mode == "no-compare":
    assert got["bytes_written"] + got["bytes_zeroed"] == want["held"], (got, want)
    assert got["bytes_zeroed"] == want["held_zero"] and got["bytes_identical"] == 0, (got, want)
    assert want["held"] - want["held_zero"] <= got["bytes_read"] <= want["held"], (got, want)
else:
    for key in ("bytes_written", "bytes_zeroed", "bytes_identical"):
        assert got[key] == want[key], "%s: %d, expected %d" % (key, got[key], want[key])
    # the new content of the data it holds, the target's old content of all of it
    assert 2 * want["held"] - want["held_zero"] <= got["bytes_read"] <= 2 * want["held"], (got, want)
if mode == "compare":
    assert got["blocks_allocated"] == want["blocks_allocated"], (got, want)
assert got["runs"] >= 1 and got["duration_seconds"] >= 0 and got["bytes_per_second"] >= 0, got
assert got["undo"] is None and got["removed"] == [] and isinstance(got["relinked"], list), got
PY
}
for fmt in vhd vhdx; do
  ext=$([ "$fmt" = vhd ] && echo vhd || echo avhdx)
  for mode in dry-run compare no-compare; do
    rm -rf num && mkdir num
    opts=()
    [ "$fmt" = vhdx ] && opts=(--block-size 1M)
    run_troy capture "${opts[@]}" P.raw "num/base.$fmt"
    run_troy diff --block-size 1M "num/base.$fmt" N1.raw -o "num/c1.$ext"
    run_troy diff --block-size 1M "num/c1.$ext" N2.raw -o "num/c2.$ext"
    if [ "$fmt" = vhdx ]; then "$TROY" info "num/c1.$ext" | grep -q '^block_states:.*ZERO 1' || fail "c1.$ext has no ZERO block"; fi
    want=$(engineered "$fmt")
    before=$(snapshot num)
    case $mode in
      dry-run)
        merge "num/c2.$ext" --into "num/base.$fmt" --dry-run
        dry_runs_ok "$WORK/stdout"
        awk '$1 == "write" { w += $3 } $1 == "zero" { z += $3 } END { print w + 0, z + 0, NR }' "$WORK/stdout" >sums
        grep -q 'nothing was changed' "$WORK/stderr" || fail "--dry-run does not say that nothing was changed"
        unchanged num "$before" "merge --dry-run"
        merge "num/c2.$ext" --into "num/base.$fmt" --dry-run --json --undo "num/undo.$ext"
        [ ! -e "num/undo.$ext" ] || fail "merge --dry-run --undo wrote the undo image"
        cp "$WORK/stdout" dry.json
        [ "$(wc -l <dry.json)" = 1 ] || fail "--dry-run --json: stdout holds more than one JSON line"
        unchanged num "$before" "merge --dry-run --json"
        $PY - dry.json sums <<'PY' || fail "--dry-run lines and --json totals disagree"
import json, sys
got = json.load(open(sys.argv[1]))
w, z, n = map(int, open(sys.argv[2]).read().split())
assert (got["bytes_written"], got["bytes_zeroed"], got["runs"]) == (w, z, n), (got, w, z, n)
runs = got["planned_runs"]
assert len(runs) == n, (len(runs), n)
assert sum(r["length_bytes"] for r in runs if r["op"] == "write") == w
assert sum(r["length_bytes"] for r in runs if r["op"] == "zero") == z
PY
        # The same numbers as the real merge's.
        merge "num/c2.$ext" --into "num/base.$fmt" --json
        $PY - dry.json "$WORK/stdout" <<'PY' || fail "--dry-run --json and the merge's --json disagree"
import json, sys
dry, real = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
for key in ("bytes_read", "bytes_written", "bytes_zeroed", "bytes_identical", "runs"):
    assert dry[key] == real[key], (key, dry[key], real[key])
PY
        json_ok dry.json "$want" dry-run "num/c2.$ext" "num/base.$fmt"
        rm -f dry.json sums ;;
      compare)
        merge "num/c2.$ext" --into "num/base.$fmt" --json --stats
        json_ok "$WORK/stdout" "$want" compare "num/c2.$ext" "num/base.$fmt"
        # The summary line is short; --stats gives the same numbers as --json.
        $PY - "$WORK/stdout" "$WORK/stderr" <<'PY' || fail "the summary line, --stats and --json disagree"
import json, re, sys
got, err = json.load(open(sys.argv[1])), open(sys.argv[2]).read().splitlines()
line = [l for l in err if l.startswith("troy: merged ")]
assert len(line) == 1 and len(line[0]) <= 100 and ("in %d run" % got["runs"]) in line[0], err
stats = dict(l.split(": ", 1) for l in err if not l.startswith("troy:"))
for key in ("bytes_written", "bytes_zeroed", "runs", "blocks_allocated", "bytes_read"):
    assert int(stats[key]) == got[key], (key, stats, got)
PY
        ;;
      no-compare)
        merge "num/c2.$ext" --into "num/base.$fmt" --json --no-compare
        json_ok "$WORK/stdout" "$want" no-compare "num/c2.$ext" "num/base.$fmt"
        written=$($PY -c 'import json,sys; g=json.load(open(sys.argv[1])); print(g["bytes_written"]+g["bytes_zeroed"])' "$WORK/stdout")
        [ "$written" -gt "$($PY -c 'import json,sys; g=json.loads(sys.argv[1]); print(g["bytes_written"]+g["bytes_zeroed"])' "$want")" ] ||
          fail "--no-compare did not write more than a compared merge" ;;
    esac
    raw_reads "num/base.$fmt" N2.raw
    qemu-img convert -f "$([ "$fmt" = vhd ] && echo vpc || echo vhdx)" -O raw "num/base.$fmt" qemu.raw
    cmp -s qemu.raw N2.raw || fail "qemu-img: merged base.$fmt differs from N2.raw"
    raw_reads "num/c2.$ext" N2.raw
    # A re-run finds everything in place and changes no file.
    before=$(snapshot num)
    merge "num/c2.$ext" --into "num/base.$fmt"
    grep -q "already holds what .*c2.$ext reads.*nothing changed" "$WORK/stderr" ||
      { cat "$WORK/stderr" >&2; fail "re-run does not say the merge is already complete"; }
    unchanged num "$before" "re-run of a complete merge"
    merge "num/c2.$ext" --into "num/base.$fmt" --json
    $PY -c 'import json,sys; g=json.load(open(sys.argv[1])); assert g["bytes_written"] == g["bytes_zeroed"] == g["runs"] == 0, g' \
      "$WORK/stdout" || fail "re-run --json reports changes"
    unchanged num "$before" "re-run of a complete merge with --json"
    merge "num/c2.$ext" --into "num/base.$fmt" --undo "num/undo.$ext"
    grep -q "already holds" "$WORK/stderr" || fail "re-run with --undo does not say 'already'"
    unchanged num "$before" "re-run of a complete merge with --undo (no undo image when nothing changes)"
    pass "$fmt: merge c2 --into base, $mode: numbers as engineered; re-run says 'already' and changes nothing"
  done
done
rm -f qemu.raw

# 2. Grandchildren: g1 (child of c, in c's folder) and g2 (child of c in
# another folder, named with --relink), and gg (child of g1). After merging
# c into base (kept, or --remove), every one reads what it read before;
# g1 and g2 name base as their parent; --remove deleted exactly c.
for fmt in vhd vhdx; do
  ext=$([ "$fmt" = vhd ] && echo vhd || echo avhdx)
  for remove in "" --remove; do
    rm -rf rl && mkdir -p rl/a rl/b
    cp P.raw r1.raw && poke r1.raw $((M + 4096)) 20000 1
    cp r1.raw r2.raw && poke r2.raw $((M + 8192)) 3000 2 && poke r2.raw $((5 * M)) 4096 3
    cp r1.raw r3.raw && poke r3.raw $((2 * M - 512)) 1024 4
    cp r2.raw r4.raw && poke r4.raw 512 512 5
    run_troy capture P.raw "rl/a/base.$fmt"
    run_troy diff "rl/a/base.$fmt" r1.raw -o "rl/a/c.$ext"
    run_troy diff "rl/a/c.$ext" r2.raw -o "rl/a/g1.$ext"
    run_troy diff "rl/a/c.$ext" r3.raw -o "rl/b/g2.$ext"
    run_troy diff "rl/a/g1.$ext" r4.raw -o "rl/a/gg.$ext"
    for f in a/g1 b/g2 a/gg; do raw_reads "rl/$f.$ext" "r$( case $f in a/g1) echo 2 ;; b/g2) echo 3 ;; a/gg) echo 4 ;; esac).raw"; done
    files_before=$(cd rl && find . -type f | LC_ALL=C sort)
    merge "rl/a/c.$ext" --relink "rl/b/g2.$ext" $remove --json
    $PY - "$WORK/stdout" "$remove" <<'PY' || fail "--json: relinked/removed lists are wrong"
import json, os, sys
got, remove = json.load(open(sys.argv[1])), sys.argv[2]
relinked = {os.path.basename(p) for p in got["relinked"]}
assert {"g1", "g2"} <= {os.path.splitext(p)[0] for p in relinked}, got
assert "gg" not in {os.path.splitext(p)[0] for p in relinked}, got
assert [os.path.basename(p).split(".")[0] for p in got["removed"]] == (["c"] if remove else []), got
PY
    raw_reads "rl/a/g1.$ext" r2.raw
    raw_reads "rl/b/g2.$ext" r3.raw
    raw_reads "rl/a/gg.$ext" r4.raw
    raw_reads "rl/a/base.$fmt" r1.raw
    $SPEC_READ --compare r2.raw "rl/a/g1.$ext" "rl/a/base.$fmt" || fail "spec_read.py: g1 over base"
    $SPEC_READ --compare r3.raw "rl/b/g2.$ext" "rl/a/base.$fmt" || fail "spec_read.py: g2 over base"
    $SPEC_READ --compare r4.raw "rl/a/gg.$ext" "rl/a/g1.$ext" "rl/a/base.$fmt" || fail "spec_read.py: gg"
    for f in a/g1 b/g2; do
      "$TROY" info "rl/$f.$ext" | grep -q "^  \[1\] .*base.$fmt " || fail "$f.$ext is not re-linked to base.$fmt"
    done
    files_after=$(cd rl && find . -type f | LC_ALL=C sort)
    if [ -n "$remove" ]; then
      [ "$files_after" = "$(grep -v "^./a/c.$ext\$" <<<"$files_before")" ] ||
        fail "--remove: files before: $files_before; after: $files_after"
    else
      [ "$files_after" = "$files_before" ] || fail "merge without --remove: files before: $files_before; after: $files_after"
      raw_reads "rl/a/c.$ext" r1.raw
    fi
    pass "$fmt: grandchildren in the folder and --relink read the same after merge ${remove:-(child kept)}"
  done
done
rm -f r?.raw spec.raw

# A stale child: it names CHILD by its locators but its parent id is an older
# CHILD's (CHILD was made again). It is not re-linked and not changed.
for fmt in vhd vhdx; do
  ext=$([ "$fmt" = vhd ] && echo vhd || echo avhdx)
  rm -rf st && mkdir st
  cp P.raw r1.raw && poke r1.raw 4096 4096 6
  cp r1.raw r2.raw && poke r2.raw $((3 * M)) 4096 7
  run_troy capture P.raw "st/base.$fmt"
  run_troy diff "st/base.$fmt" r1.raw -o "st/c.$ext"
  run_troy diff "st/c.$ext" r2.raw -o "st/stale.$ext"
  run_troy diff "st/base.$fmt" r1.raw -o "st/c.$ext" --overwrite
  expect_exit 2 "$TROY" convert "st/stale.$ext" out.raw
  stale=$(sha "st/stale.$ext")
  merge "st/c.$ext" --json
  [ "$(sha "st/stale.$ext")" = "$stale" ] || fail "the stale child stale.$ext was changed"
  grep -q stale "$WORK/stdout" && fail "the stale child is listed as re-linked: $(cat "$WORK/stdout")"
  expect_exit 2 "$TROY" convert "st/stale.$ext" out.raw
  pass "$fmt: a stale child naming CHILD (its id does not match) is not re-linked"
done
rm -rf st r?.raw out.raw

# --remove with --into: deletes the merged layers, nothing else.
for fmt in vhd vhdx; do
  ext=$([ "$fmt" = vhd ] && echo vhd || echo avhdx)
  rm -rf rm && mkdir rm
  cp P.raw r1.raw && poke r1.raw 4096 4096 11
  cp r1.raw r2.raw && poke r2.raw $((3 * M)) 4096 12
  cp r2.raw r3.raw && poke r3.raw $((4 * M)) 4096 13
  run_troy capture P.raw "rm/base.$fmt"
  run_troy capture P.raw "rm/unrelated.$fmt"
  run_troy diff "rm/base.$fmt" r1.raw -o "rm/l1.$ext"
  run_troy diff "rm/l1.$ext" r2.raw -o "rm/l2.$ext"
  run_troy diff "rm/l2.$ext" r3.raw -o "rm/l3.$ext"
  cp r3.raw rm/notes.raw
  merge "rm/l3.$ext" --into "rm/base.$fmt" --remove
  [ "$(cd rm && ls -A | LC_ALL=C sort | tr '\n' ' ')" = "base.$fmt notes.raw unrelated.$fmt " ] ||
    fail "--remove --into left: $(cd rm && ls -A)"
  raw_reads "rm/base.$fmt" r3.raw
  pass "$fmt: merge l3 --into base --remove deletes l3, l2, l1 and nothing else"
done
rm -rf rm r?.raw

# 3. Refusals: one line, exit 2, no file changed.
rm -rf ref && mkdir ref
cp P.raw ref/new.raw && poke ref/new.raw $((M + 512)) 8192 21
run_troy capture P.raw ref/base.vhd
run_troy capture P.raw ref/base.vhdx
run_troy capture P.raw ref/other.vhd
run_troy diff ref/base.vhd ref/new.raw -o ref/c.vhd
run_troy diff ref/base.vhdx ref/new.raw -o ref/c.avhdx
run_troy diff ref/other.vhd ref/new.raw -o ref/stranger.vhd
# A child larger than its VHD parent (troy diff with a larger NEW).
cp ref/new.raw ref/big.raw && truncate -s $((8 * M)) ref/big.raw && poke ref/big.raw $((7 * M)) 4096 22
run_troy diff ref/base.vhd ref/big.raw -o ref/big.vhd
refused ref growing "not supported" -- "$TROY" merge ref/big.vhd
pass "a child larger than its VHD parent is refused (growing)"
refused ref "not a differencing image" -- "$TROY" merge ref/base.vhd
refused ref "not a differencing image" -- "$TROY" merge ref/base.vhdx
pass "a base image as CHILD is refused"
refused ref --into other.vhd -- "$TROY" merge ref/c.vhd --into ref/other.vhd
refused ref --into c.vhd -- "$TROY" merge ref/c.vhd --into ref/c.vhd
refused ref --into -- "$TROY" merge ref/c.vhd --into ref/missing.vhd
refused ref --into base.vhd -- "$TROY" merge ref/c.avhdx --into ref/base.vhd
pass "--into a file not in the chain is refused"
refused ref --relink stranger.vhd -- "$TROY" merge ref/c.vhd --relink ref/stranger.vhd
refused ref --relink base.vhd -- "$TROY" merge ref/c.vhd --relink ref/base.vhd
pass "--relink of an image whose parent is not CHILD is refused"
echo "not an image" >ref/undo.vhd
refused ref undo.vhd exists --overwrite -- "$TROY" merge ref/c.vhd --undo ref/undo.vhd
refused ref nowhere -- "$TROY" merge ref/c.vhd --undo ref/nowhere/undo.vhd
pass "an existing --undo file without --overwrite is refused"
# Target in use: an exclusive flock held by another process.
for target in base.vhd base.vhdx; do
  child=$([ "$target" = base.vhd ] && echo c.vhd || echo c.avhdx)
  rm -f locked
  # The subshell becomes the sleep holding the lock, so killing it frees the lock.
  (exec 9<"ref/$target" && flock -x 9 && touch "$WORK/locked" && exec sleep 30) >/dev/null 2>&1 &
  holder=$!
  for _ in $(seq 100); do [ -e locked ] && break; sleep 0.05; done
  [ -e locked ] || fail "flock did not take the lock"
  refused ref "in use" -- "$TROY" merge "ref/$child"
  kill "$holder"
  wait "$holder" 2>/dev/null || true
  pass "$target held by flock -x elsewhere: merge refused (in use)"
done
rm -f locked
# Wrong parent: the child's parent id does not match (both writers).
$MAKE_VHD chain ref/wrong --seed 5 --wrong-parent-id >/dev/null
refused ref "parent id" "does not match" -- "$TROY" merge ref/wrong/layer1.vhd
$MAKE_VHDX chain ref/wrongx --seed 5 --layers 1 --wrong-parent-id >/dev/null
refused ref parent_linkage "does not match" -- "$TROY" merge ref/wrongx/layer1.avhdx
pass "a child whose parent id does not match is refused (VHD, VHDX)"
# After all refusals the merge still works, and --undo --overwrite replaces the file.
merge ref/c.vhd --undo ref/undo.vhd --overwrite
raw_reads ref/base.vhd ref/new.raw
raw_reads ref/undo.vhd P.raw
pass "after the refusals, merge --undo --overwrite works"
rm -rf ref

# 4. An interrupted merge (killed at the middle one of its writes, the
# target half merged): the target is refused with "unfinished" by troy info,
# convert and check, and by qemu-img (the in-progress mark); re-running the
# merge finishes it with the right content and no journal left.
for fmt in vhd vhdx; do
  ext=$([ "$fmt" = vhd ] && echo vhd || echo avhdx)
  qfmt=$([ "$fmt" = vhd ] && echo vpc || echo vhdx)
  rm -rf int && mkdir int
  if [ "$fmt" = vhd ]; then $MAKE_VHD chain int/c --seed 71 --layers 1 --writes 40 >/dev/null
  else $MAKE_VHDX chain int/c --seed 71 --layers 1 --writes 30 >/dev/null; fi
  cp -r int/c int/count
  under_strace -f -o writes.log -e trace=pwrite64 "$TROY" merge "int/count/layer1.$ext" >/dev/null 2>&1 ||
    fail "merge under strace"
  total=$(grep -c 'pwrite64(' writes.log)
  rm -rf int/count writes.log
  [ "$total" -ge 4 ] || fail "merge made only $total writes"
  n=$((total / 2))
  cp -r int/c int/k
  status=0
  kill_at_write "$n" "$TROY" merge "int/k/layer1.$ext" || status=$?
  [ "$status" = 137 ] || fail "merge was not killed at write $n of $total (status $status)"
  [ -e "int/k/.base.$fmt.troy-merge" ] || fail "killed at write $n of $total, no journal is left"
  cmp -s "int/k/base.$fmt" "int/c/base.$fmt" && fail "killed at write $n of $total, the target is unchanged"
  refused int/k unfinished "troy merge" -- "$TROY" info "int/k/base.$fmt"
  refused int/k unfinished -- "$TROY" convert "int/k/base.$fmt" int/k/out.raw
  refused int/k unfinished -- "$TROY" check "int/k/base.$fmt"
  refused int/k unfinished -- "$TROY" info "int/k/layer1.$ext"
  # qemu-img refuses it too (VHDX: a possible log replayed on a copy first).
  cp "int/k/base.$fmt" copy.img
  if [ "$fmt" = vhdx ]; then qemu-img check -q -r all -f vhdx copy.img >/dev/null 2>&1 || true; fi
  qemu-img convert -f "$qfmt" -O raw copy.img qemu.raw 2>/dev/null && fail "qemu-img reads the half-merged base.$fmt"
  rm -f copy.img qemu.raw
  merge "int/k/layer1.$ext"
  grep -q 'interrupted' "$WORK/stderr" || { cat "$WORK/stderr" >&2; fail "the re-run does not say it finished an interrupted merge"; }
  [ ! -e "int/k/.base.$fmt.troy-merge" ] || fail "the journal is left after the re-run"
  raw_reads "int/k/base.$fmt" int/k/layer1.raw
  raw_reads "int/k/layer1.$ext" int/k/layer1.raw
  qemu-img convert -f "$qfmt" -O raw "int/k/base.$fmt" qemu.raw
  cmp -s qemu.raw int/k/layer1.raw || fail "qemu-img: finished base.$fmt differs"
  rm -f qemu.raw
  pass "$fmt: killed at write $n of $total: 'unfinished' for troy info/convert/check, qemu-img refuses; the re-run finishes"
done
rm -rf int

# The parent in another folder (found by its relative locator): the journal
# is beside the parent, the parent is refused there, the re-run finishes.
rm -rf sub && $MAKE_VHDX chain sub --seed 72 --layers 2 --subdir >/dev/null
cp -r sub count
under_strace -f -o writes.log -e trace=pwrite64 "$TROY" merge count/layer1.avhdx >/dev/null 2>&1 || fail "merge under strace"
n=$(($(grep -c 'pwrite64(' writes.log) / 2))
rm -rf count writes.log
status=0
kill_at_write "$n" "$TROY" merge sub/layer1.avhdx || status=$?
[ "$status" = 137 ] || fail "merge was not killed at write $n (status $status)"
[ -e sub/parents/.base.vhdx.troy-merge ] || fail "no journal beside the parent in parents/"
refused sub unfinished -- "$TROY" info sub/parents/base.vhdx
merge sub/layer1.avhdx
[ ! -e sub/parents/.base.vhdx.troy-merge ] || fail "the journal is left after the re-run"
raw_reads sub/parents/base.vhdx sub/layer1.raw
raw_reads sub/layer2.avhdx sub/layer2.raw
pass "parent in another folder: journal beside it, refused while unfinished, the re-run finishes"
rm -rf sub

# 5. Siblings: another child of the parent in the same folder gets a warning
# line naming it; an unrelated image in the folder is not named.
for fmt in vhd vhdx; do
  ext=$([ "$fmt" = vhd ] && echo vhd || echo avhdx)
  rm -rf sib && mkdir sib
  cp P.raw s1.raw && poke s1.raw 8192 4096 31
  cp P.raw s2.raw && poke s2.raw $((2 * M)) 4096 32
  run_troy capture P.raw "sib/base.$fmt"
  run_troy capture P.raw "sib/lonely.$fmt"
  run_troy diff "sib/base.$fmt" s1.raw -o "sib/child.$ext"
  run_troy diff "sib/base.$fmt" s2.raw -o "sib/sister.$ext"
  merge "sib/child.$ext"
  grep -i 'warning' "$WORK/stderr" | grep -q "sister.$ext" || { cat "$WORK/stderr" >&2; fail "no warning names the sibling sister.$ext"; }
  grep -i 'warning' "$WORK/stderr" | grep -q "lonely.$fmt" && fail "a warning names an unrelated image"
  grep -i 'warning' "$WORK/stderr" | grep -q "child.$ext" && fail "a warning names the merged child itself"
  pass "$fmt: merge warns about the sibling in the parent's folder"
done
rm -rf sib s?.raw

# 6. Memory does not grow with the disk size (README: the merge works in
# windows of 256 MiB): one sector merged into a 24 MiB fixed VHD.
rm -rf fx && mkdir fx
truncate -s $((24 * M)) fx/p.raw
cp fx/p.raw fx/n.raw && poke fx/n.raw 51200 512 41
run_troy capture --type fixed fx/p.raw fx/p.vhd
run_troy diff fx/p.vhd fx/n.raw -o fx/c.vhd
/usr/bin/time -f '%M' -o rss "$TROY" merge fx/c.vhd 2>"$WORK/stderr" || { cat "$WORK/stderr" >&2; fail "merge into a fixed VHD"; }
raw_reads fx/p.vhd fx/n.raw
[ "$(cat rss)" -lt $((256 * 1024)) ] || fail "merging one sector into a 24 MiB fixed VHD took $(($(cat rss) / 1024)) MiB of memory"
pass "merge into a fixed VHD: memory independent of the disk size"
rm -rf fx rss
finish
