# Every VHD under ../shared/fixtures/public converts to the resolved sha256
# listed in ../shared/README.md, and reading never modifies the fixture.
source "$(dirname "$0")/common.sh"

expect_sha() {
  local image=$1 want=$2
  shift 2
  local before
  before=$(sha "$image")
  "$TROY" convert "$@" "$image" out.raw --overwrite 2>stderr || { cat stderr >&2; fail "convert $image"; }
  [ "$(sha out.raw)" = "$want" ] || fail "$(basename "$image"): sha256 $(sha out.raw), expected $want"
  [ "$(sha "$image")" = "$before" ] || fail "$(basename "$image") was modified by a read"
  rm -f out.raw
  pass "$(basename "$image") $*"
}

expect_sha "$(public_fixture qemu/d2v-zerofilled.vhd)" 1ba076be94a8a64541c25aae8d5a5f8b0da758c3797af597e03acb431ff8d143
expect_sha "$(public_fixture dfvfs/ext2.vhd)" 870be7ae16c1fa8faab05c6eb9205dc9a7ae35c5f552c5cf8a267c0bc6a5cb99
expect_sha "$(public_fixture dfvfs/fat-parent-surrogate.vhd)" c599d3222a863af6beaa9c130521bd5f6f8e17aad3df19c1db1917e25e9baaa9

# Windows-made child with partial bitmap bytes over the surrogate parent: the
# spec's MSB-first reading, not libvhdi's.
child=$(public_fixture dfvfs/fat-differential.vhd)
expect_sha "$child" 889e3816dcc25c9cfa5970478ba8638ac9cb9df034c2ceb77e7e6f9940487094 --parent fat-parent-surrogate.vhd

# Hand-edited images with bad checksums: refused by default, readable on request.
image=$(public_fixture dfvfs/image.vhd)
expect_exit 2 "$TROY" convert "$image" refused.raw
expect_error_line image.vhd Checksum --ignore-checksums
[ ! -e refused.raw ] || fail "a refused convert left an output file"
pass "bad checksum refused"
expect_sha "$image" c6db12a7db548e193c29420c1b4533e4708b20c5033db5cc29ef075d48316d25 --ignore-checksums
expect_sha "$(public_fixture dfvfs/image-differential.vhd)" \
  c6db12a7db548e193c29420c1b4533e4708b20c5033db5cc29ef075d48316d25 --ignore-checksums

# 127 GiB empty dynamic disks: size from Current Size, all zeros, and the
# output file is one hole.
for name in virtualpc-dynamic hyperv2012r2-dynamic; do
  image=$(public_fixture qemu/$name.vhd)
  "$TROY" convert "$image" empty.raw --overwrite 2>stderr || { cat stderr >&2; fail "convert $name"; }
  [ "$(stat -c %s empty.raw)" = 136365211648 ] || fail "$name: size $(stat -c %s empty.raw)"
  all_hole empty.raw || fail "$name: output holds data"
  rm -f empty.raw
  pass "$name reads as 136365211648 zero bytes"
done
finish
