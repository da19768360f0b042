# Fixed and dynamic VHDs made by qemu-img from random content read
# byte-identical to qemu-img's own conversion.
source "$(dirname "$0")/common.sh"
command -v qemu-img >/dev/null || fail "qemu-img not installed (make deps)"

seed=0
for size in 1049088 5242880 34603520 70254592; do
  for subformat in fixed dynamic; do
    seed=$((seed + 1))
    make_random_raw in.raw "$size" "$seed"
    qemu-img convert -f raw -O vpc -o subformat=$subformat,force_size=on in.raw image.vhd
    qemu-img convert -f vpc -O raw image.vhd expected.raw
    cmp -s in.raw expected.raw || fail "qemu-img did not round-trip its own $subformat image"
    expect_converts_to image.vhd expected.raw
    # Standard output gives the same bytes.
    "$TROY" convert image.vhd - >streamed.raw 2>stderr || { cat stderr >&2; fail "convert to stdout"; }
    cmp -s streamed.raw expected.raw || fail "stdout output differs ($subformat, $size)"
    pass "qemu-img $subformat VHD of $size bytes"
    rm -f in.raw image.vhd expected.raw streamed.raw
  done
done
finish
