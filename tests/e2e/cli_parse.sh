# The command line as a new user meets it (issue 20): parse errors are one
# line starting "troy: error:", name the unknown word and the nearest known
# one, exit 2; troy help [COMMAND] and -V work; rollback and merge show their
# own options; rollback re-links the merged child; the output of convert,
# diff and fingerprint is named either way.
source "$(dirname "$0")/common.sh"

# parse_error WORDS -- ARGS...: exit 2, stderr exactly one line, an error
# mentioning every word.
parse_error() {
  local words=()
  while [ "$1" != "--" ]; do words+=("$1"); shift; done
  shift
  expect_exit 2 "$TROY" "$@"
  [ "$(wc -l <"$WORK/stderr")" = 1 ] || { cat "$WORK/stderr" >&2; fail "troy $*: more than one line on stderr"; }
  expect_error_line "${words[@]}"
}

parse_error "unknown command 'infoo'" "did you mean 'info'?" -- infoo x
parse_error "unknown command 'rolback'" "did you mean 'rollback'?" -- rolback u.avhdx
parse_error "unknown command 'frobnicate'" "troy help" -- frobnicate
parse_error "capture: unknown option '--typ'" "did you mean '--type'?" -- capture --typ fixed disk.raw x.vhdx
parse_error "convert: unknown option '--overwrit'" "did you mean '--overwrite'?" -- convert a.vhd b.raw --overwrit
parse_error "merge: unknown option '--forse'" -- merge --forse a.avhdx
parse_error "unknown option '--quite'" "did you mean '--quiet'?" -- --quite info x
parse_error "lab: unknown command 'reprot'" "did you mean 'report'?" -- lab reprot
parse_error "a command is required" -- lab
parse_error "a command is required" --
parse_error "convert" "IMAGE is required" -- convert
parse_error "help: unknown command 'infoo'" "did you mean 'info'?" -- help infoo
# A value is not a command: --parent's file is skipped.
parse_error "info: unknown option '--jsno'" "did you mean '--json'?" -- info --parent infoo x --jsno
pass "parse errors: one line, the unknown word, the nearest one, exit 2"

expect_exit 0 "$TROY" help
grep -q "^Usage: .*troy \[OPTIONS\]" stdout || fail "troy help prints no usage"
grep -q "^  merge" stdout || fail "troy help lists no commands"
"$TROY" --help >help.txt
cmp -s stdout help.txt || fail "troy help differs from troy --help"
expect_exit 0 "$TROY" help merge
grep -q "^Usage: .*troy merge" stdout || fail "troy help merge is not merge's help"
"$TROY" merge --help >help.txt
cmp -s stdout help.txt || fail "troy help merge differs from troy merge --help"
expect_exit 0 "$TROY" help lab report
grep -q "^Usage: .*troy lab report" stdout || fail "troy help lab report is not its help"
for flag in -V --version; do
  expect_exit 0 "$TROY" $flag
  grep -q "^troy [0-9]" stdout || fail "troy $flag prints no version"
done
pass "troy help [COMMAND], -V, --version"

"$TROY" rollback --help >rollback.txt
grep -q -- "^  --undo" rollback.txt && fail "rollback --help offers merge's --undo"
grep -qi "merge overwrites" rollback.txt && fail "rollback --help speaks of what the merge overwrites"
grep -q "the undo image holds" rollback.txt || fail "rollback --help does not speak of the undo image"
grep -q -- "--parent" rollback.txt || fail "rollback --help lacks --parent"
"$TROY" merge --help >merge.txt
for option in --parent --undo --into --relink; do grep -q -- "$option" merge.txt || fail "merge --help lacks $option"; done
grep -q "No --force or --ignore-checksums" merge.txt || fail "merge --help does not say why it has no --force"
pass "rollback and merge --help: each its own options and words"

# The output named either way, the same in convert, diff and fingerprint.
$MAKE_VHDX dynamic base.vhdx --size 8M --block-size 1M --seed 3 >/dev/null
"$TROY" convert base.vhdx sunday.raw 2>/dev/null
cp sunday.raw monday.raw
head -c 65536 /dev/urandom | dd of=monday.raw bs=512 seek=100 conv=notrunc status=none
expect_exit 0 "$TROY" convert base.vhdx -o a.raw
expect_exit 0 "$TROY" convert base.vhdx --output=b.raw
expect_exit 0 "$TROY" convert base.vhdx c.raw -o c.raw
cmp -s a.raw sunday.raw && cmp -s b.raw sunday.raw && cmp -s c.raw sunday.raw || fail "convert -o wrote another disk"
expect_exit 0 "$TROY" diff base.vhdx monday.raw positional.avhdx
expect_exit 0 "$TROY" diff base.vhdx monday.raw -o option.avhdx
expect_converts_to positional.avhdx monday.raw
expect_converts_to option.avhdx monday.raw
expect_exit 0 "$TROY" fingerprint positional.avhdx positional.fp
expect_exit 0 "$TROY" fingerprint option.avhdx -o option.fp
[ -s positional.fp ] && [ -s option.fp ] || fail "fingerprint wrote nothing"
pass "convert, diff, fingerprint: OUT as the last argument or -o"

parse_error "convert: two outputs named" "x.raw" "y.raw" -- convert base.vhdx x.raw -o y.raw
parse_error "diff: two outputs named" "x.avhdx" "y.avhdx" -- diff base.vhdx monday.raw x.avhdx -o y.avhdx
parse_error "fingerprint: two outputs named" "x.fp" "y.fp" -- fingerprint option.avhdx x.fp --output y.fp
parse_error "convert: no output named" "-o OUT" -- convert base.vhdx
parse_error "diff: no output named" "-o CHILD" -- diff base.vhdx monday.raw
parse_error "fingerprint: no output named" "--check" -- fingerprint option.avhdx
parse_error "writes nothing" "x.fp" -- fingerprint --check option.fp monday.raw x.fp
[ ! -e x.raw ] && [ ! -e y.raw ] && [ ! -e x.avhdx ] && [ ! -e x.fp ] || fail "a refused command wrote a file"
pass "two different outputs, or none: one error line naming them, nothing written"

# merge --parent names the image written (its id still verified).
mkdir moved && cp base.vhdx moved/base.vhdx
cp option.avhdx lone.avhdx
expect_exit 0 "$TROY" merge lone.avhdx --parent moved/base.vhdx --undo moved/undo.avhdx
expect_converts_to moved/base.vhdx monday.raw
cmp -s base.vhdx moved/base.vhdx && fail "merge --parent wrote the image the locators name"
expect_exit 2 "$TROY" merge positional.avhdx --parent sunday.raw
pass "merge --parent: the image written is the one named"

# rollback re-links the merged child it finds beside the undo image or the
# image restored (lab_day.sh); for one elsewhere, it names the relink to run.
expect_exit 0 "$TROY" rollback moved/undo.avhdx --parent moved/base.vhdx
grep -q "warning: .*troy relink IMAGE .*moved/base.vhdx" stderr || fail "rollback does not say which relink to run"
expect_converts_to moved/base.vhdx sunday.raw
expect_exit 0 "$TROY" relink lone.avhdx moved/base.vhdx
expect_converts_to lone.avhdx monday.raw --parent moved/base.vhdx
pass "rollback of a child merged from elsewhere: the relink to run, which works"
finish
