# Differencing chains written by Xen Orchestra's vhd-lib (an independent
# writer), several seeds and 1 to 3 layers: every level converts to the raw
# content the oracle computed by plain buffer overlay.
source "$(dirname "$0")/common.sh"
oracle=$(vhd_lib_oracle)

for spec in "1 1" "7 2" "11 3" "23 3"; do
  set -- $spec
  seed=$1 layers=$2
  node "$oracle/make-chain.js" "$WORK/chain$seed" --seed "$seed" --layers "$layers" --writes 24 --mib 9 >/dev/null
  cd "$WORK/chain$seed"
  expect_converts_to base.vhd base.raw
  for level in $(seq 1 "$layers"); do
    expect_converts_to layer$level.vhd layer$level.raw
    "$TROY" check layer$level.vhd 2>stderr || { cat stderr >&2; fail "check layer$level.vhd (seed $seed)"; }
  done
  pass "vhd-lib chain seed $seed, $layers layer(s)"
  cd "$WORK"
done
finish
