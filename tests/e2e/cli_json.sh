# --json on every command (one object on stdout, the same conventions:
# command, error, lossy_paths, byte counts and durations as numbers), valid
# for a strict decoder even when a file name is not UTF-8; info's details
# typed; --stats prints the details, the default summary stays one short
# line; a failure with --json still gives an object with its error.
source "$(dirname "$0")/common.sh"

PY=/usr/bin/python3
# json_ok COMMAND [FIELD...]: stdout is exactly one JSON object (strict
# decoder: no NaN, no invalid UTF-8), for COMMAND, with the conventional
# fields and the given ones.
json_ok() {
  $PY - "$WORK/stdout" "$@" <<'PY' || fail "$1 --json: $(head -c 600 "$WORK/stdout")"
import json, sys
raw = open(sys.argv[1], "rb").read()
def strict(text):
    raise ValueError("not JSON: " + text)
obj = json.loads(raw.decode("utf-8"), parse_constant=strict)  # strict UTF-8, no NaN
assert isinstance(obj, dict), obj
assert raw.count(b"\n") == 1 and raw.endswith(b"\n"), "stdout holds more than one line"
assert obj["command"] == sys.argv[2], obj
assert "error" in obj and isinstance(obj["lossy_paths"], bool), obj
for field in sys.argv[3:]:
    assert field in obj, "no %s: %s" % (field, obj)
for key, value in obj.items():
    if key.endswith("_bytes") or key.startswith("bytes_"):
        assert isinstance(value, int) and not isinstance(value, bool), (key, value)
    if key == "duration_seconds":
        assert isinstance(value, (int, float)) and value >= 0, (key, value)
PY
}
# summary_ok WORD: stderr's last "troy: " line starts with "troy: WORD" and
# is at most 100 characters, with no "(NNN bytes)" repetition.
summary_ok() {
  local line
  line=$(grep '^troy: ' "$WORK/stderr" | tail -n 1)
  [[ $line == "troy: $1"* ]] || fail "no '$1' summary: $(cat "$WORK/stderr")"
  [ "${#line}" -le 100 ] || fail "summary of ${#line} characters: $line"
  [[ $line == *" bytes)"* ]] && fail "summary repeats byte counts: $line"
  true
}

make_random_raw disk.raw $((8 << 20)) 5
cp disk.raw new.raw
printf 'changed sectors' | dd of=new.raw bs=1 seek=$((3 << 20)) conv=notrunc status=none

expect_exit 0 "$TROY" capture disk.raw base.vhdx --json
json_ok capture source output virtual_size_bytes bytes_stored blocks_stored duration_seconds bytes_per_second
summary_ok "captured disk.raw to base.vhdx"
expect_exit 0 "$TROY" create --parent base.vhdx empty.avhdx --json
json_ok create output format type virtual_size_bytes parent
summary_ok "created empty.avhdx"
expect_exit 0 "$TROY" diff base.vhdx new.raw -o monday.avhdx --json
json_ok diff parent new output bytes_changed runs duration_seconds bytes_per_second
summary_ok "wrote monday.avhdx"
expect_exit 0 "$TROY" convert monday.avhdx flat.raw --json
json_ok convert image output output_format virtual_size_bytes duration_seconds bytes_per_second
summary_ok "converted monday.avhdx to flat.raw"
grep -q '/s$' <(grep '^troy: converted' "$WORK/stderr") || fail "convert's summary has no throughput"
cmp -s flat.raw new.raw || fail "convert wrote the wrong disk"
expect_exit 0 "$TROY" check monday.avhdx --json
json_ok check image problems layers_checked
summary_ok "monday.avhdx: no problems found"
expect_exit 0 "$TROY" info monday.avhdx --json
json_ok info image chain chain_error
expect_exit 0 "$TROY" fingerprint monday.avhdx -o monday.fp --json
json_ok fingerprint image output pieces duration_seconds
cp disk.raw target.raw
expect_exit 0 "$TROY" fingerprint --check monday.fp target.raw --json
json_ok fingerprint disk state
$PY -c 'import json,sys; assert json.load(open(sys.argv[1]))["state"] == "base"' "$WORK/stdout" ||
  fail "fingerprint --check --json: state is not base"
expect_exit 0 "$TROY" apply monday.avhdx target.raw --json
json_ok apply image target bytes_written bytes_skipped duration_seconds bytes_per_second
summary_ok "applied monday.avhdx to target.raw"
cmp -s target.raw new.raw || fail "apply wrote the wrong disk"
cp monday.avhdx keep.avhdx
expect_exit 0 "$TROY" merge monday.avhdx --undo sunday.avhdx --json
json_ok merge child target bytes_written runs undo duration_seconds bytes_per_second
summary_ok "merged monday.avhdx into base.vhdx"
expect_exit 0 "$TROY" rollback sunday.avhdx --json
json_ok rollback child target bytes_written
expect_exit 0 "$TROY" relink keep.avhdx base.vhdx --json
json_ok relink image parent parent_id changed locator_changes
pass "capture, create, diff, convert, check, info, fingerprint, apply, merge, rollback, relink: one valid object each"

openssl genpkey -algorithm ed25519 -out lab.key 2>/dev/null
openssl pkey -in lab.key -pubout -out lab.pub
mkdir served
expect_exit 0 "$TROY" publish --dir served --key lab.key --name v1 base.vhdx --disk 'size=8388608' --json
json_ok publish dir name kind image_id disk_size_bytes
summary_ok "published base v1"
expect_exit 0 "$TROY" verify-manifest --key lab.pub served/manifest --json
json_ok verify-manifest manifest signature verified
expect_exit 2 "$TROY" update --json
json_ok update
pass "publish, verify-manifest, update: one valid object each"

# info's details are typed: numbers, booleans, locators as objects.
"$TROY" create --size 8M vhd.vhd 2>/dev/null && "$TROY" create --parent vhd.vhd child.vhd 2>/dev/null
expect_exit 0 "$TROY" info child.vhd --json
$PY - "$WORK/stdout" <<'PY' || fail "info --json details are not typed: $(cat "$WORK/stdout")"
import json, sys
info = json.load(open(sys.argv[1]))
top, base = info["chain"]
d = top["details"]
assert isinstance(top["virtual_size_bytes"], int) and isinstance(top["allocated_bytes"], int), top
assert isinstance(d["bat_offset"], int) and isinstance(d["max_table_entries"], int), d
assert isinstance(d["saved_state"], bool) and d["geometry_chs"]["heads"] > 0, d
assert all(isinstance(l, dict) and isinstance(l["offset"], int) and l["platform_code"] in ("W2ku", "W2ru")
           for l in d["parent_locator"]), d["parent_locator"]
assert d["parent_unique_id"] == base["id"], (d, base)
PY
expect_exit 0 "$TROY" info monday.avhdx --parent base.vhdx --json
$PY - "$WORK/stdout" <<'PY' || fail "VHDX info --json details are not typed: $(cat "$WORK/stdout")"
import json, sys
d = json.load(open(sys.argv[1]))["chain"][0]["details"]
assert isinstance(d["chunk_ratio"], int) and d["log"]["state"] == "clean", d
assert isinstance(d["leave_blocks_allocated"], bool) and isinstance(d["bat_region"]["offset"], int), d
assert any(l["key"] == "parent_linkage" for l in d["parent_locator"]), d
PY
pass "info --json: details are numbers, booleans and objects"

# A file name that is not UTF-8: valid JSON that says it is lossy.
bad=$'x\xffy.vhdx'
cp base.vhdx "$bad"
for args in "info" "check" "convert"; do
  case $args in
    convert) expect_exit 0 "$TROY" convert "$bad" $'out\xfe.raw' --json ;;
    *) expect_exit 0 "$TROY" "$args" "$bad" --json ;;
  esac
  json_ok "$args"
  $PY -c 'import json,sys; assert json.load(open(sys.argv[1]))["lossy_paths"] is True' "$WORK/stdout" ||
    fail "$args --json: a name that is not UTF-8 without lossy_paths"
done
pass "a file name that is not UTF-8: info, check, convert give valid JSON with lossy_paths"

# --stats: every count, one "name: value" a line, on stderr only.
expect_exit 0 "$TROY" diff base.vhdx new.raw -o stats.avhdx --stats
[ -s "$WORK/stdout" ] && fail "--stats wrote to stdout"
for name in bytes_changed runs sectors_changed duration_seconds bytes_per_second; do
  grep -qE "^$name: [0-9.]+$" "$WORK/stderr" || fail "--stats lacks $name: $(cat "$WORK/stderr")"
done
summary_ok "wrote stats.avhdx"
pass "--stats prints the details; the summary stays one short line"

# Failure with --json: the object still comes, with the error; exit 2.
expect_exit 2 "$TROY" info missing.vhdx --json
json_ok info
$PY -c 'import json,sys; e=json.load(open(sys.argv[1]))["error"]; assert "missing.vhdx" in e, e' "$WORK/stdout" ||
  fail "info --json on a missing file: no error field"
expect_exit 2 "$TROY" convert missing.vhdx out2.raw --json
json_ok convert
expect_exit 2 "$TROY" merge base.vhdx --json
json_ok merge
$PY -c 'import json,sys; assert json.load(open(sys.argv[1]))["error"]' "$WORK/stdout" || fail "merge --json: no error"
expect_exit 2 "$TROY" convert base.vhdx - --json
json_ok convert
pass "a failure with --json: one object with error, exit 2"
finish
