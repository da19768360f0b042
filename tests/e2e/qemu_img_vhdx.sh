# Fixed and dynamic VHDX made by qemu-img from random content, with block sizes
# 1, 2, 32 and 256 MiB and sizes that are not a multiple of the block size,
# read byte-identical to qemu-img's own conversion; troy check finds nothing.
source "$(dirname "$0")/common.sh"
command -v qemu-img >/dev/null || fail "qemu-img not installed (make deps)"

seed=0
for block in 1M 2M 32M 256M; do
  for size in 3146240 40895488 300941824; do
    [ "$block" = 256M ] && [ "$size" = 3146240 ] && continue
    for subformat in dynamic fixed; do
      [ "$subformat" = fixed ] && [ "$size" = 300941824 ] && continue
      seed=$((seed + 1))
      make_random_raw in.raw "$size" "$seed"
      # Created at the exact size first, then filled, so the size never
      # depends on how convert sizes a new image.
      qemu-img create -q -f vhdx -o subformat=$subformat,block_size=$block image.vhdx "$size"
      qemu-img convert -n -f raw -O vhdx in.raw image.vhdx
      qemu-img convert -f vhdx -O raw image.vhdx expected.raw
      cmp -s in.raw expected.raw || fail "qemu-img did not round-trip its own $subformat image"
      expect_converts_to image.vhdx expected.raw
      expect_exit 0 "$TROY" check image.vhdx
      pass "qemu-img $subformat VHDX, block size $block, $size bytes"
      rm -f in.raw image.vhdx expected.raw
    done
  done
done

# A block size other than the four above (qemu-img cannot make 4096-byte
# logical sectors; the independent writer's cases cover those).
make_random_raw in.raw 33558528 99
qemu-img create -q -f vhdx -o block_size=8M,log_size=1M image.vhdx 33558528
qemu-img convert -n -f raw -O vhdx in.raw image.vhdx
qemu-img convert -f vhdx -O raw image.vhdx expected.raw
expect_converts_to image.vhdx expected.raw
pass "qemu-img VHDX, 8 MiB blocks"
finish
