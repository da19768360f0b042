# How troy talks (issue 20): -q (errors only) and -p (progress without a
# terminal) in either position, no escape sequences where they do not belong
# (no terminal, TERM=dumb), the bar on a real terminal, progress for every
# convert, the apply check bar counting the delta's bytes, and a write error
# on standard output as an error. Terminals come from script(1).
source "$(dirname "$0")/common.sh"

ESC=$'\x1b'
has_esc() { grep -q "$ESC" "$1"; }
# Runs a command line on a pseudo-terminal; what it shows goes to $1.
on_tty() {
  local out=$1 term=$2
  shift 2
  TERM=$term script -qfec "$*" /dev/null >"$out" </dev/null
}

$MAKE_VHD chain c --seed 20 --layers 2 >/dev/null
mkdir served

# -q: nothing but errors, wherever it is given.
for args in "-q check c/layer2.vhd" "check -q c/layer2.vhd" "--quiet check c/layer2.vhd" \
  "-q convert c/layer2.vhd q1.raw" "convert c/layer2.vhd q2.raw -q" "convert -q -O vhdx c/layer2.vhd q.vhdx" \
  "-q lab status --served served" "lab status -q --served served" "lab -q status --served served"; do
  # shellcheck disable=SC2086
  expect_exit 0 "$TROY" $args
  [ ! -s stderr ] || { cat stderr >&2; fail "troy $args printed on stderr"; }
done
expect_exit 0 "$TROY" info -q c/layer2.vhd
grep -q "virtual size:" stdout || fail "info -q lost its output on stdout"
[ ! -s stderr ] || fail "info -q printed on stderr"
pass "-q prints nothing on success, before or after the command"

expect_exit 2 "$TROY" -q info missing.vhd
expect_error_line missing.vhd
expect_exit 2 "$TROY" convert -q c/layer2.vhd q1.raw
expect_error_line q1.raw
pass "-q still prints the error line"

on_tty tty-quiet.out xterm "$TROY -q convert c/layer2.vhd tq.raw"
[ ! -s tty-quiet.out ] || { cat -A tty-quiet.out >&2; fail "-q on a terminal still drew something"; }
pass "-q on a terminal: no progress line"

# -p without a terminal: plain lines, no escape sequence, no carriage return.
expect_exit 0 "$TROY" -p convert c/layer2.vhd p.raw
grep -q "^convert \[#*\] 100% " stderr || { cat stderr >&2; fail "-p convert printed no progress line"; }
has_esc stderr && fail "-p without a terminal printed an escape sequence"
grep -q $'\r' stderr && fail "-p without a terminal printed a carriage return"
expect_exit 0 "$TROY" convert --progress -O vhd c/layer2.vhd p.vhd
grep -q "^convert \[#*\] 100% " stderr || fail "convert --progress -O vhd printed no progress line"
expect_exit 0 "$TROY" convert c/layer2.vhd n.raw
grep -q "^convert \[" stderr && fail "convert without -p or a terminal printed a progress line"
pass "-p without a terminal: plain progress lines"

# A terminal: the bar, redrawn in place; TERM=dumb or unset: no escape sequence.
on_tty tty-xterm.out xterm "$TROY convert -O raw c/layer2.vhd t1.raw"
grep -qF "convert [" tty-xterm.out || { cat -A tty-xterm.out >&2; fail "no progress bar on a terminal"; }
grep -qF "$ESC[K" tty-xterm.out || fail "the bar on an xterm is not redrawn in place"
on_tty tty-dumb.out dumb "$TROY convert -O raw c/layer2.vhd t2.raw"
grep -qF "convert [" tty-dumb.out || { cat -A tty-dumb.out >&2; fail "no progress bar on a dumb terminal"; }
has_esc tty-dumb.out && { cat -A tty-dumb.out >&2; fail "TERM=dumb got an escape sequence"; }
on_tty tty-unset.out "" "unset TERM; $TROY convert -O vhdx c/layer2.vhd t3.vhdx"
grep -qF "convert [" tty-unset.out || { cat -A tty-unset.out >&2; fail "no progress bar without TERM"; }
has_esc tty-unset.out && { cat -A tty-unset.out >&2; fail "no TERM got an escape sequence"; }
pass "a terminal gets the bar; TERM=dumb or unset gets no escape sequence"

# apply's check and verify bars count the delta's bytes, not the disk offset:
# a 48 MiB delta at 400 MiB of a 512 MiB disk reads "of 48 MiB".
truncate -s 512M base.raw
head -c $((4 << 20)) /dev/urandom | dd of=base.raw conv=notrunc status=none
expect_exit 0 "$TROY" capture base.raw base.vhdx
cp --sparse=always base.raw new.raw
head -c $((48 << 20)) /dev/urandom | dd of=new.raw bs=1M seek=400 conv=notrunc status=none
expect_exit 0 "$TROY" diff base.vhdx new.raw -o child.avhdx
cp --sparse=always base.raw target.raw
expect_exit 0 "$TROY" -p apply --verify child.avhdx target.raw
for bar in check apply verify; do
  grep -q "^$bar \[#*\] 100% 48 MiB of 48 MiB" stderr || { cat stderr >&2; fail "the $bar bar does not count the 48 MiB delta"; }
done
grep -q " of 448 MiB\| of 512 MiB" stderr && fail "a bar counts the disk's offsets"
cmp -s target.raw new.raw || fail "apply did not write the delta"
pass "apply's bars count the delta's bytes"

expect_exit 0 "$TROY" fingerprint child.avhdx -o child.fingerprint
expect_exit 0 "$TROY" fingerprint -p --check child.fingerprint target.raw
grep -q "^check \[#*\] 100% 48 MiB of 48 MiB" stderr || { cat stderr >&2; fail "fingerprint --check's bar does not count the delta"; }
pass "fingerprint --check's bar counts the delta's bytes"

# A write error on standard output is an error, with one line.
status=0
"$TROY" info --json c/layer2.vhd >/dev/full 2>stderr || status=$?
[ "$status" = 2 ] || fail "info --json > /dev/full exited $status, not 2"
expect_error_line "standard output"
status=0
"$TROY" info c/layer2.vhd >/dev/full 2>stderr || status=$?
[ "$status" = 2 ] || fail "info > /dev/full exited $status, not 2"
expect_error_line "standard output"
pass "a full standard output exits 2 with one error line"
finish
