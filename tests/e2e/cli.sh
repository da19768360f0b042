# The command line: help, exit codes, info in text and JSON, check on a clean chain.
source "$(dirname "$0")/common.sh"

"$TROY" --help >help.txt
for command in info check convert; do grep -q "^  $command" help.txt || fail "--help does not list $command"; done
"$TROY" convert --help | grep -q -- "--parent" || fail "convert --help lacks --parent"
pass "--help lists the subcommands"

expect_exit 2 "$TROY"
expect_exit 2 "$TROY" frobnicate
expect_exit 2 "$TROY" convert only-one-argument
pass "usage errors exit 2"

$MAKE_VHD chain c --seed 12 --layers 2 >/dev/null
expect_exit 0 "$TROY" check c/layer2.vhd
grep -q "no problems found, 3 layers checked" stderr || fail "check does not say it is clean"
pass "check: clean chain exits 0"

expect_exit 0 "$TROY" info c/layer2.vhd
for field in "format:          vhd differencing" "virtual size:" "parent found by W2ru locator; link verified" \
  "parent_unicode_name: layer1.vhd" "[2] c/base.vhd"; do
  grep -qF "$field" stdout || fail "info lacks '$field'"
done
pass "info text"

expect_exit 0 "$TROY" info --json c/layer2.vhd
python3 - stdout c/manifest.json <<'PY' || fail "info --json does not match the image"
import json, sys
info = json.load(open(sys.argv[1]))
manifest = json.load(open(sys.argv[2]))
chain = info["chain"]
assert len(chain) == 3, chain
assert chain[0]["type"] == "differencing" and chain[2]["type"] == "dynamic"
assert all(layer["virtual_size_bytes"] == manifest["virtual_size"] for layer in chain)
assert chain[1]["link"]["verified"] is True and chain[1]["link"]["found_by"] == "W2ru locator"
assert chain[0]["details"]["parent_unique_id"] == chain[1]["id"]
assert info["chain_error"] is None
PY
pass "info --json"

# info still describes an image whose parent is missing, then says so and exits 2.
mkdir alone && cp c/layer2.vhd alone/
expect_exit 2 "$TROY" info alone/layer2.vhd
grep -q "parent_locator:" stdout || fail "info printed nothing about the orphan"
expect_error_line "parent not found"
pass "info on an orphan child"
finish
