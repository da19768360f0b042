# Chains from the project's independent Python writer (fixtures/make_vhd.py):
# every way a child can name its parent, block sizes, partial bitmap bytes,
# junk in unwritten child sectors; and libvhdi as an outside reader where its
# known bugs do not apply (whole bitmap bytes, blocks of 2 MiB or more).
source "$(dirname "$0")/common.sh"

check_levels() {
  local dir=$1 layers=$2
  shift 2
  for level in $(seq 1 "$layers"); do expect_converts_to "$dir/layer$level.vhd" "$dir/layer$level.raw" "$@"; done
}

$MAKE_VHD chain default --seed 3 --layers 3 --writes 40 >/dev/null
check_levels default 3
pass "3 layers, W2ru + W2ku locators"

for locators in w2ku macx w2ru; do
  $MAKE_VHD chain only-$locators --seed 5 --layers 2 --locators $locators --data-space sectors >/dev/null
  check_levels only-$locators 2
  pass "$locators locator only, data space in sectors"
done

$MAKE_VHD chain named --seed 8 --locators none >/dev/null
check_levels named 1
pass "no locator: parent found by Parent Unicode Name"

$MAKE_VHD chain sub --seed 9 --subdir --layers 2 >/dev/null
check_levels sub 2
mkdir elsewhere && cp sub/layer1.vhd elsewhere/
expect_converts_to elsewhere/layer1.vhd sub/layer1.raw --parent sub/parents/base.vhd
pass "parent in another folder, and named with --parent"

# Every layer in its own folder, no locator resolvable: --parent once per level.
$MAKE_VHD chain spread --seed 10 --layers 2 --locators none >/dev/null
mkdir -p spread/a spread/b spread/c
mv spread/layer2.vhd spread/a/ && mv spread/layer1.vhd spread/b/ && mv spread/base.vhd spread/c/
expect_exit 2 "$TROY" convert spread/a/layer2.vhd out.raw
expect_converts_to spread/a/layer2.vhd spread/layer2.raw --parent spread/b/layer1.vhd --parent spread/c/base.vhd
expect_exit 2 "$TROY" convert spread/a/layer2.vhd out.raw --parent spread/b/layer1.vhd --parent spread/c/base.vhd \
  --parent spread/c/base.vhd
pass "--parent repeated for a deeper chain; one too many is refused"

for block in 4096 524288 4194304; do
  $MAKE_VHD chain blocks$block --seed $((block % 97)) --block-size $block --layers 2 --writes 30 >/dev/null
  check_levels blocks$block 2
  pass "block size $block"
done

# libvhdi reads these chains correctly; Troy must agree with it.
libvhdi_read() {
  # Debian's python3 carries the pyvhdi binding (python3-libvhdi).
  /usr/bin/python3 - "$1" "$2" "$3" <<'PY'
import pyvhdi, sys
child, parent, out = sys.argv[1:]
p = pyvhdi.file(); p.open(parent)
c = pyvhdi.file(); c.open(child); c.set_parent(p)
with open(out, "wb") as f:
    size, offset = c.get_media_size(), 0
    while offset < size:
        data = c.read_buffer_at_offset(min(1 << 20, size - offset), offset)
        f.write(data); offset += len(data)
PY
}
for seed in 21 22 23; do
  $MAKE_VHD chain libvhdi$seed --seed $seed --whole-bytes --writes 40 >/dev/null
  libvhdi_read libvhdi$seed/layer1.vhd libvhdi$seed/base.vhd libvhdi$seed/by-libvhdi.raw
  cmp -s libvhdi$seed/by-libvhdi.raw libvhdi$seed/layer1.raw || fail "libvhdi disagrees with the writer (seed $seed)"
  expect_converts_to libvhdi$seed/layer1.vhd libvhdi$seed/by-libvhdi.raw
  pass "agrees with libvhdi (seed $seed)"
done
finish
