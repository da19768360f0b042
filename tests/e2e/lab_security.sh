# The lab against an attacker on the classroom network (docs/security.md),
# with lighttpd (pxe/serve.sh) and a fake machine (sysfs tree, disk files):
# authenticated reports (the key kept beyond the image on the machine's own
# disk, learned by the server on first contact; a stranger's report or GET
# changes nothing; the state survives an update), replayed and expired
# manifests refused, a disk without room for the state said loudly, 8
# parallel 1 MiB reports, the rate limit, and publish refusing a private key
# that is served or readable by others.
source "$(dirname "$0")/common.sh"

skip_without lighttpd openssl curl

MiB=1048576
DISK_SIZE=$((16 * MiB))
MAC=52:54:00:12:34:56
MACHINE=52-54-00-12-34-56

make_lab_images 16 16
: > "$SERVED/boot/vmlinuz"

# --- publish: a private key served or readable by others is refused ---
cp lab.key "$SERVED/lab.key"
status=0
"$TROY" publish --dir "$SERVED" --key "$SERVED/lab.key" --name v1 base.vhdx 2>out.log || status=$?
[ "$status" = 2 ] && grep -q "inside the served directory" out.log && [ ! -e "$SERVED/manifest" ] ||
  { cat out.log >&2; fail "publish accepted a private key inside the served directory"; }
rm "$SERVED/lab.key"
cp lab.key open.key && chmod 644 open.key
status=0
"$TROY" publish --dir "$SERVED" --key open.key --name v1 base.vhdx 2>out.log || status=$?
[ "$status" = 2 ] && grep -q "open.key: mode 0644: the private key is readable" out.log && [ ! -e "$SERVED/manifest" ] ||
  { cat out.log >&2; fail "publish accepted a private key readable by others"; }
pass "publish refuses a private key inside the served directory or readable by others, naming it"

"$TROY" publish --dir "$SERVED" --key lab.key --name v1 --disk "size=$((DISK_SIZE + MiB)) serial=LAB-PC-*" \
  --disk "size=$DISK_SIZE serial=SMALL-*" base.vhdx 2>/dev/null
"$TROY" publish --dir "$SERVED" --key lab.key --name v2 v2.avhdx 2>/dev/null
cp "$SERVED/manifest" manifest.v2 && cp "$SERVED/manifest.sig" manifest.v2.sig
"$TROY" publish --dir "$SERVED" --key lab.key --name v3 v3.avhdx 2>/dev/null
grep -qx 'serial 2' manifest.v2 && grep -qx 'serial 3' "$SERVED/manifest" && grep -q '^expires ' "$SERVED/manifest" ||
  fail "publish does not count the serial up or set an expiry: $(head -n 4 "$SERVED/manifest")"
pass "each publish signs serial+1 and an expiry"

# The machine: vda, the lab's disk, 1 MiB larger than the image (room for its state).
mkdir -p sys/block/vda sys/class/net/eth0 dev
echo $(((DISK_SIZE + MiB) / 512)) > sys/block/vda/size
echo LAB-PC-0001 > sys/block/vda/serial
echo "$MAC" > sys/class/net/eth0/address
echo up > sys/class/net/eth0/operstate
# set_disk IMAGE: the disk's image part becomes IMAGE; what lies after it stays.
set_disk() { dd if="$1" of=dev/vda bs=1M conv=notrunc status=none && truncate -s $((DISK_SIZE + MiB)) dev/vda; }
holds() { cmp -s -n "$DISK_SIZE" dev/vda "$1"; }

start_lab_server

update() { "$TROY" update --server "$SERVER" --key lab.pub --sysfs sys --dev dev --work work --yes "$@"; }
stored() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$SERVED/reports/$MACHINE.json" "$1"; }
last_auth() { tail -n 1 "$SERVED/reports/log.jsonl" | python3 -c 'import json, sys; print(json.load(sys.stdin)["auth"])'; }
boot_script() { curl -sf "$SERVER/cgi-bin/boot?mac=$MACHINE&platform=pcbios"; }

# --- 1. the first update enrolls the machine's key; the state lies beyond the image ---
set_disk v1.raw
update 2>out.log || { cat out.log >&2; fail "update v1 -> v3 failed"; }
holds v3.raw || fail "the disk is not v3"
grep -q 'machine state created' out.log && grep -q 'report sent to .* (authenticated)' out.log ||
  { cat out.log >&2; fail "the screen does not say the state was created and the report authenticated"; }
# The key came with the first progress report (or the final one when the work was too short for any).
[ -f "$SERVED/reports/keys/$MACHINE" ] && [[ "$(last_auth)" =~ ^(new-key|ok)$ ]] || fail "the server did not learn the key"
[ "$(dd if=dev/vda bs=1 skip="$DISK_SIZE" count=8 status=none)" = TROYSTAT ] || fail "no state record right after the image"
"$TROY" lab status --served "$SERVED" | grep -q "^$MACHINE .* v3  *new " || fail "status does not flag the new key"
pass "the first report enrolls the machine's key (status: new); the state is kept after the image"
boot_script | grep -q sanboot || fail "a machine holding the newest version does not boot its disk"

# --- a stranger: a forged report or GET changes nothing ---
before=$(sha "$SERVED/reports/$MACHINE.json")
code=$(curl -s -o answer -w '%{http_code}' --data-binary \
  "{\"machine\":\"$MAC\",\"result\":\"ok\",\"version\":\"v1\",\"message\":\"forged\"}" "$SERVER/cgi-bin/report")
[ "$code" = 403 ] && grep -q 'unauthenticated' answer || fail "a forged report: HTTP $code $(cat answer)"
[ "$(sha "$SERVED/reports/$MACHINE.json")" = "$before" ] || fail "a forged report changed the stored report"
[ "$(tail -n 1 "$SERVED/reports/log.jsonl" | python3 -c 'import json,sys; l=json.load(sys.stdin); print(l["result"], l["auth"])')" = "refused refused" ] ||
  fail "the refusal is not one line of the log"
for _ in 1 2 3; do boot_script >/dev/null; done
boot_script | grep -q sanboot || fail "GETs by a stranger changed the machine's boot"
pass "a stranger's report is refused (403, one log line), and GETs change nothing"

# --- the state survives an update: the same key, the next report authenticated ---
set_disk v1.raw
update 2>out.log || { cat out.log >&2; fail "the second update failed"; }
holds v3.raw && [ "$(last_auth)" = ok ] && grep -q '(authenticated)' out.log ||
  { cat out.log >&2; fail "after an update, the next report is not authenticated with the same key"; }
grep -q 'machine state created' out.log && fail "the state was lost by the update"
pass "the state survives an update: the next report is authenticated with the same key"

# --- 2. a replayed older manifest, an expired one ---
cp "$SERVED/manifest" manifest.good && cp "$SERVED/manifest.sig" manifest.good.sig
cp manifest.v2 "$SERVED/manifest.new" && mv "$SERVED/manifest.new" "$SERVED/manifest"
cp manifest.v2.sig "$SERVED/manifest.sig.new" && mv "$SERVED/manifest.sig.new" "$SERVED/manifest.sig"
set_disk v2.raw
status=0
update 2>out.log || status=$?
[ "$status" = 2 ] && grep -q 'serial 2 is older than serial 3 this machine already accepted' out.log && holds v2.raw ||
  { cat out.log >&2; fail "a replayed older manifest was not refused"; }
pass "a replayed older manifest (valid signature, serial 2 < 3) is refused, nothing written"
cp manifest.good "$SERVED/manifest.new" && mv "$SERVED/manifest.new" "$SERVED/manifest"
cp manifest.good.sig "$SERVED/manifest.sig.new" && mv "$SERVED/manifest.sig.new" "$SERVED/manifest.sig"
"$TROY" publish --dir "$SERVED" --key lab.key --renew --valid-for 1s 2>/dev/null || fail "publish --renew failed"
sleep 2
status=0
update 2>out.log || status=$?
[ "$status" = 2 ] && grep -q 'expired at' out.log && grep -q 'troy publish --renew' out.log && holds v2.raw ||
  { cat out.log >&2; fail "an expired manifest was not refused"; }
"$TROY" publish --dir "$SERVED" --key lab.key --renew 2>/dev/null
grep -qx 'serial 5' "$SERVED/manifest" || fail "--renew does not count the serial up"
update 2>out.log && holds v3.raw || { cat out.log >&2; fail "the renewed manifest was not accepted"; }
pass "an expired manifest is refused (renew it: troy publish --renew); the renewed one works"

# --- a disk without room for the state: updated, but said loudly ---
mkdir -p sys2/block/vda sys2/class/net/eth0 dev2
echo $((DISK_SIZE / 512)) > sys2/block/vda/size
echo SMALL-0001 > sys2/block/vda/serial
echo 52:54:00:99:99:99 > sys2/class/net/eth0/address
cp v1.raw dev2/vda
"$TROY" update --server "$SERVER" --key lab.pub --sysfs sys2 --dev dev2 --work work --yes 2>out.log ||
  { cat out.log >&2; fail "an update without room for the state failed"; }
cmp -s dev2/vda v3.raw && [ "$(stat -c %s dev2/vda)" = "$DISK_SIZE" ] || fail "the small disk is not v3, or was extended"
grep -q "WARNING: Troy's state is not kept on this disk, so there is no rollback protection" out.log ||
  { cat out.log >&2; fail "the screen does not say the state is not kept"; }
python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); assert r["state"].startswith("not kept"), r["state"]; assert r["auth"] == "none"' \
  "$SERVED/reports/52-54-00-99-99-99.json" || fail "the report does not say the state is not kept"
pass "a disk without room after the image: updated, the screen and the report say the state is not kept"

# --- 3. eight parallel reports of about 1 MiB, through lighttpd ---
lines_before=$(wc -l < "$SERVED/reports/log.jsonl")
for i in 1 2 3 4 5 6 7 8; do
  python3 -c 'import json, sys; print(json.dumps({"machine": "52:54:00:00:10:0" + sys.argv[1], "result": "ok",
    "version": "v3", "message": "m" * 4000, "steps": ["x" * 1000] * 1040}))' "$i" > big$i.json
done
for i in 1 2 3 4 5 6 7 8; do
  curl -s -o answer$i -w '%{http_code}\n' --data-binary "@big$i.json" "$SERVER/cgi-bin/report" > code$i &
done
wait $(jobs -p | grep -v "^$SERVER_PID$") 2>/dev/null || true
for i in 1 2 3 4 5 6 7 8; do [ "$(cat code$i)" = 200 ] || fail "parallel report $i: HTTP $(cat code$i) $(cat answer$i)"; done
python3 - "$SERVED/reports" "$lines_before" <<'PY' || fail "parallel reports interleaved in the log"
import json, sys
reports, before = sys.argv[1], int(sys.argv[2])
lines = open(f"{reports}/log.jsonl").read().split("\n")
assert lines[-1] == "", "the log does not end with a newline"
new = [json.loads(line) for line in lines[before:-1]]
assert sorted(l["machine"] for l in new) == [f"52-54-00-00-10-0{i}" for i in range(1, 9)], new
assert all(len(l["message"]) == 4000 for l in new)
for i in range(1, 9):
    assert len(json.load(open(f"{reports}/52-54-00-00-10-0{i}.json"))["steps"]) == 1040
PY
pass "8 parallel reports of about 1 MiB: all stored whole, 8 whole log lines"

# --- the rate limit per address ---
# (The burst itself is counted in lab_server_test; here: an address whose
# bucket is empty, as 30 reports in a row leave it, through the CGI.)
printf '{"machine":"52:54:00:00:20:01","result":"ok","version":"v3","message":""}' > small.json
cgi_post() { REQUEST_METHOD=POST CONTENT_LENGTH=$(stat -c %s small.json) REMOTE_ADDR=$1 TROY_SERVED="$SERVED" \
  "$TROY" lab report < small.json | head -n 1; }
echo "10.9.9.9 0.000 $(date +%s)" >> "$SERVED/reports/rate"
cgi_post 10.9.9.9 | grep -q '^Status: 429 ' || fail "an empty bucket: $(cgi_post 10.9.9.9)"
[ ! -e "$SERVED/reports/52-54-00-00-20-01.json" ] || fail "a report over the rate was stored"
cgi_post 10.9.9.8 | grep -q '^Status: 200 ' || fail "another address was limited"
pass "an address over its rate is answered 429 and nothing is stored"

# --- troy lab forget: a replaced disk's new key ---
set_disk v3.raw
dd if=/dev/zero of=dev/vda bs=1 count=$((128 * 1024)) seek="$DISK_SIZE" conv=notrunc status=none  # a new disk
update 2>out.log || true
grep -q 'machine state created' out.log || { cat out.log >&2; fail "a fresh disk did not get a new state"; }
[ -f "$SERVED/reports/keys/$MACHINE.changed" ] || fail "a changed key was not noted"
"$TROY" lab status --served "$SERVED" | grep -q "^$MACHINE .* CHANGED " || fail "status does not flag the changed key"
"$TROY" lab forget --served "$SERVED" "$MAC" 2>out.log || { cat out.log >&2; fail "troy lab forget failed"; }
update 2>out.log && [[ "$(last_auth)" =~ ^(new-key|ok)$ ]] && [ -f "$SERVED/reports/keys/$MACHINE" ] || { cat out.log >&2; fail "after forget, the new key was not enrolled"; }
pass "a replaced disk's key is refused and flagged CHANGED until troy lab forget"
finish
