# A convert killed at any moment leaves either no output at all (no partial
# or temporary file either) or the complete, correct output; never a
# finished-looking wrong file.
source "$(dirname "$0")/common.sh"

# 192 MiB of random data in a dynamic VHD: large enough to be killed mid-way.
head -c $((192 << 20)) /dev/urandom >source.raw
qemu-img convert -f raw -O vpc -o subformat=dynamic,force_size=on source.raw image.vhd

complete=0 absent=0
for delay in 0.001 0.01 0.03 0.06 0.1 0.2 0.4; do
  rm -f out.raw
  "$TROY" convert image.vhd out.raw 2>/dev/null &
  pid=$!
  sleep "$delay"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  leftovers=$(ls -A | grep -v -x -e source.raw -e image.vhd -e out.raw -e stdout -e stderr || true)
  [ -z "$leftovers" ] || fail "kill after ${delay}s left: $leftovers"
  if [ -e out.raw ]; then
    cmp -s out.raw source.raw || fail "kill after ${delay}s left a wrong out.raw"
    complete=$((complete + 1))
  else
    absent=$((absent + 1))
  fi
done
pass "killed converts: $absent left nothing, $complete had finished correctly"

# Ctrl-C is the same.
"$TROY" convert image.vhd out2.raw 2>/dev/null &
pid=$!
sleep 0.02
kill -INT "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
[ ! -e out2.raw ] || cmp -s out2.raw source.raw || fail "interrupted convert left a wrong file"
[ -z "$(ls -A | grep troy-partial || true)" ] || fail "interrupted convert left a partial file"
pass "interrupted convert"

# Writing the disk to a terminal is refused.
if command -v script >/dev/null; then
  script -qec "$TROY convert image.vhd -" /dev/null >tty.out 2>&1 || true
  grep -q "standard output is a terminal" tty.out || fail "convert to a terminal was not refused"
  rm -f tty.out
  pass "binary output to a terminal refused"
fi
finish
