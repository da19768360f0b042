# Fixed and dynamic VHDX made by qemu-img from random content, with block sizes
# 1, 2, 32 and 256 MiB and sizes that are not a multiple of the block size,
# read byte-identical to qemu-img's own conversion; troy check finds nothing.
source "$(dirname "$0")/common.sh"
command -v qemu-img >/dev/null || fail "qemu-img not installed (make deps)"

# A raw disk with random data in scattered places, zero runs and holes.
make_raw() {
  local out=$1 size=$2 seed=$3
  truncate -s "$size" "$out"
  local i
  for i in 0 1 2 3 4 5 6; do
    local at=$(( (seed * 7919 + i * 104729) % (size / 512) ))
    head -c $((512 * (1 + (seed + i) * 37 % 5000))) /dev/urandom | dd of="$out" bs=512 seek="$at" conv=notrunc status=none
  done
  # The very last sector holds data, so a reader that drops the partial last block is caught.
  head -c 512 /dev/urandom | dd of="$out" bs=512 seek=$((size / 512 - 1)) conv=notrunc status=none
  truncate -s "$size" "$out"
}

seed=0
for block in 1M 2M 32M 256M; do
  for size in 3146240 40895488 300941824; do
    [ "$block" = 256M ] && [ "$size" = 3146240 ] && continue
    for subformat in dynamic fixed; do
      [ "$subformat" = fixed ] && [ "$size" = 300941824 ] && continue
      seed=$((seed + 1))
      make_raw in.raw "$size" "$seed"
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
make_raw in.raw 33558528 99
qemu-img create -q -f vhdx -o block_size=8M,log_size=1M image.vhdx 33558528
qemu-img convert -n -f raw -O vhdx in.raw image.vhdx
qemu-img convert -f vhdx -O raw image.vhdx expected.raw
expect_converts_to image.vhdx expected.raw
pass "qemu-img VHDX, 8 MiB blocks"
finish
