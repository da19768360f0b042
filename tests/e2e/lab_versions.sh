# Version management end to end (issue 18): troy lab versions, rollback and
# squash on a served directory, and troy update (the payload's side, as in
# update.sh: a fake sysfs, a raw disk file, the lab's lighttpd) bringing
# machines where the lab says. Cases: the list counts the machines by their
# stored reports; bad input is one error line with nothing changed; a
# rollback to v1 is a new version with a higher serial, killed at each of its
# renames and run again it ends the same; update takes a disk at v3 to v1's
# bytes and leaves a disk at v1 unwritten; after a squash through v3, disks
# at v1, v2, v3 and at the rollback all end at the newest byte for byte.
source "$(dirname "$0")/common.sh"

for tool in lighttpd openssl curl strace; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool is missing (bash scripts/install-deps.sh)"; exit 77; }
done

MiB=1048576
DISK_SIZE=$((8 * MiB))
make_lab_images 8 16
openssl genpkey -algorithm ed25519 -out other.key 2>/dev/null
: > "$SERVED/boot/vmlinuz"
publish() { "$TROY" publish --dir "$SERVED" --key lab.key "$@" 2>/dev/null; }
publish --name v1 --disk "size=$DISK_SIZE serial=LAB-PC-*" base.vhdx

mkdir -p sys/block/vda sys/class/net/eth0 dev
echo $((DISK_SIZE / 512)) > sys/block/vda/size
echo LAB-PC-0001 > sys/block/vda/serial
echo 52:54:00:00:00:01 > sys/class/net/eth0/address
start_lab_server

# update MAC: troy update as the payload runs it, reporting as machine MAC.
update() {
  "$TROY" update --server "$SERVER" --key lab.pub --sysfs sys --dev dev --work work --yes --machine "$1" \
    2>out.log || { cat out.log >&2; fail "troy update as $1 failed"; }
}
# at VERSION.raw MAC: a machine whose disk holds VERSION reports it.
at() { cp "$1" dev/vda && update "$2"; }
manifest_line() { grep "^$1 " "$SERVED/manifest" | cut -d' ' -f2; }
# What version management may change (not reports/ nor lighttpd's logs/).
state() { (cd "$SERVED" && find manifest* versions chunks -type f -printf '%p %s %T@\n' | sort | sha256sum); }

at v1.raw 52:54:00:00:00:01
publish --name v2 v2.avhdx
at v1.raw 52:54:00:00:00:02   # brought to v2
publish --name v3 v3.avhdx
at v1.raw 52:54:00:00:00:03   # brought to v3
cmp -s dev/vda v3.raw || fail "setup: the third machine is not at v3"

# --- the list: kind, delta size, machines by their stored reports ---
"$TROY" lab versions --dir "$SERVED" >list.txt
for row in "v1 base 1" "v2 delta from v1 1" "v3 delta from v2 1"; do
  set -- $row
  line=$(grep "^$1 " list.txt) || { cat list.txt >&2; fail "lab versions: no row for $1"; }
  [ "$(echo "$line" | awk '{print $NF == "newest" ? $(NF-1) : $NF}')" = "${*: -1}" ] ||
    { cat list.txt >&2; fail "lab versions: $1 does not count ${*: -1} machine"; }
  echo "$line" | grep -q "${*:2:$#-2}" || { cat list.txt >&2; fail "lab versions: $1 is not '${*:2:$#-2}'"; }
done
grep "^v3 " list.txt | grep -q newest || fail "lab versions: v3 not marked newest"
size=$(stat -c %s "$SERVED/versions/v3.avhdx")
"$TROY" lab versions --dir "$SERVED" --json >list.json
python3 - "$size" <<'PY' || fail "lab versions --json: $(cat list.json)"
import json, sys
listing = json.load(open("list.json"))
rows = {v["name"]: v for v in listing["versions"]}
assert [v["machines"] for v in listing["versions"]] == [1, 1, 1]
assert rows["v3"]["delta_bytes"] == int(sys.argv[1]) and rows["v3"]["newest"] and rows["v1"]["kind"] == "base"
PY
pass "lab versions lists v1 (base), v2, v3 with their delta sizes and one machine at each, from the stored reports"

# --- bad input: one error line, nothing changed ---
before=$(state)
expect_refused() {  # WORDS ARGS...: exit 2, one error line naming WORDS, the served files unchanged
  local words=$1 status=0
  shift
  "$TROY" lab "$@" >out.log 2>err.log || status=$?
  [ "$status" = 2 ] || { cat err.log >&2; fail "lab $*: exit $status, expected 2"; }
  [ "$(wc -l <err.log)" = 1 ] && grep -q "$words" err.log || { cat err.log >&2; fail "lab $*: not one line naming '$words'"; }
  [ "$(state)" = "$before" ] || fail "lab $*: the served directory changed"
}
expect_refused "'nope': no such version" rollback --dir "$SERVED" --key lab.key --to nope
expect_refused "v2: the manifest has that version already" rollback --dir "$SERVED" --key lab.key --to v1 --name v2
expect_refused "'a/b': 1 to 64" rollback --dir "$SERVED" --key lab.key --to v1 --name a/b
expect_refused "refusing to sign over it" rollback --dir "$SERVED" --key other.key --to v1
cp lab.key "$SERVED/lab.key"
expect_refused "the private key is inside the served directory" rollback --dir "$SERVED" --key "$SERVED/lab.key" --to v1
rm "$SERVED/lab.key"
expect_refused "'v9': no such version" squash --dir "$SERVED" --key lab.key --through v9
# A publish at work holds the served directory's lock: squash and rollback wait their turn.
flock "$SERVED/.publish.lock" sleep 30 >/dev/null 2>&1 &
holder=$!
for _ in $(seq 50); do flock -n "$SERVED/.publish.lock" true && sleep 0.1 || break; done
expect_refused "another troy publish, rollback or squash" squash --dir "$SERVED" --key lab.key --through v2
expect_refused "another troy publish, rollback or squash" rollback --dir "$SERVED" --key lab.key --to v1
pkill -P $holder 2>/dev/null || true
kill $holder 2>/dev/null || true
wait $holder 2>/dev/null || true
expect_refused "no manifest" versions --dir "$WORK/sys"
# A served file changed since it was published: refused, naming it.
cp -a "$SERVED" damaged
printf 'X' | dd of=damaged/versions/v2.avhdx bs=1 seek=1048576 conv=notrunc status=none
status=0
"$TROY" lab rollback --dir damaged --key lab.key --to v1 >/dev/null 2>err.log || status=$?
[ "$status" = 2 ] && [ "$(wc -l <err.log)" = 1 ] && grep -q "versions/v2.avhdx: missing or not the delta of v2" err.log ||
  fail "a damaged delta: exit $status, $(cat err.log)"
[ "$(grep -c '^version ' damaged/manifest)" = 3 ] || fail "a damaged delta: the manifest changed"
rm -rf damaged
pass "unknown or taken versions, a bad name, another lab's key, a served key, a damaged delta: one error line each, nothing changed"

# --- rollback to v1, killed at each rename, run again ---
serial=$(manifest_line serial)
renames=(-e trace=rename,renameat,renameat2,linkat)
cp -a "$SERVED" counted
# Each rename or link as "SYSCALL K" (the K-th call of that syscall): strace's
# when= counts each syscall of an inject set on its own.
under_strace -f -o /dev/stdout "${renames[@]}" "$TROY" lab rollback --dir counted --key lab.key --to v1 2>/dev/null |
  awk '{ name = $2; sub(/\(.*/, "", name) } name ~ /^(rename|renameat|renameat2|linkat)$/ { print name, ++seen[name] }' >events.txt
count=$(wc -l <events.txt)
rm -rf counted
[ "$count" -gt 3 ] || fail "rollback: only $count renames (the kill test would prove little)"
points="1 $((count / 2)) $((count - 2)) $((count - 1)) $count"
is_asan_build "$TROY" && points="$((count - 1)) $count"
for n in $points; do
  status=0
  read -r call nth < <(sed -n "${n}p" events.txt)
  under_strace -f -o /dev/null -e trace="$call" -e inject="$call":signal=KILL:when=$nth \
    "$TROY" lab rollback --dir "$SERVED" --key lab.key --to v1 >/dev/null 2>&1 || status=$?
  [ "$status" = 137 ] || fail "rollback: not killed at rename $n of $count (exit $status)"
  # Killed: the old manifest as it was, or the new one with its signature beside.
  if ! "$TROY" verify-manifest --key lab.pub "$SERVED/manifest" >/dev/null 2>&1; then
    [ -f "$SERVED/manifest.sig.next" ] || fail "rollback killed at rename $n: the manifest does not verify"
  fi
done
"$TROY" lab rollback --dir "$SERVED" --key lab.key --to v1 >out.log 2>&1 || fail "rollback after the kills: $(cat out.log)"
before=$(state)
"$TROY" lab rollback --dir "$SERVED" --key lab.key --to v1 >out.log 2>&1 || fail "a second rollback to v1: $(cat out.log)"
grep -q "the newest version rollback-to-v1 holds v1's content already: nothing to publish" out.log &&
  [ "$(state)" = "$before" ] || fail "a second rollback to v1 is not a no-op: $(cat out.log)"
"$TROY" lab rollback --dir "$SERVED" --key lab.key --to rollback-to-v1 >out.log 2>&1 &&
  grep -q "rollback-to-v1 is the newest version already" out.log || fail "a rollback to the newest: $(cat out.log)"
"$TROY" verify-manifest --key lab.pub "$SERVED/manifest" >/dev/null || fail "the manifest after the rollback does not verify"
grep -q "^version rollback-to-v1 delta v3 " "$SERVED/manifest" || fail "no rollback-to-v1 delta from v3: $(cat "$SERVED/manifest")"
[ "$(manifest_line serial)" -gt "$serial" ] || fail "the rollback's serial $(manifest_line serial) is not above $serial"
cmp -s "$SERVED/versions/rollback-to-v1.cidx" "$SERVED/versions/v1.cidx" || fail "the rollback's content index is not v1's"
[ ! -e "$SERVED/manifest.sig.next" ] || fail "manifest.sig.next left behind"
pass "rollback --to v1: a new delta rollback-to-v1 from v3 with v1's content, serial $serial -> $(manifest_line serial), killed at renames $points of $count and run again"

at v3.raw 52:54:00:00:00:09
cmp -s dev/vda v1.raw || fail "update after the rollback: the disk at v3 is not v1's bytes"
grep -q 'applying rollback-to-v1' out.log || { cat out.log >&2; fail "the disk at v3 did not apply the revert delta"; }
cp v1.raw dev/vda
update 52:54:00:00:00:09
[ "$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["written"])' \
  "$SERVED/reports/52-54-00-00-00-09.json")" = False ] && cmp -s dev/vda v1.raw || fail "the disk at v1 was written"
grep -q 'already holds rollback-to-v1' out.log || { cat out.log >&2; fail "the disk at v1 is not up to date"; }
at v2.raw 52:54:00:00:00:09
cmp -s dev/vda v1.raw || fail "update after the rollback: the disk at v2 is not v1's bytes"
# Machine 09 stands for each disk in turn; 01, 02 and 03 keep their reports (v1, v2, v3).
pass "after the rollback: the disk at v3 (and v2) applies it to v1's bytes; the disk at v1 is not written"

# --- a version after the rollback: the admin's next delta is a child of it ---
cp "$SERVED/versions/rollback-to-v1.avhdx" .   # beside v3.avhdx, its parent
python3 - <<'PY'
disk = bytearray(open("v1.raw", "rb").read())
for at in range(0, len(disk), 3 << 20):
    disk[at:at + 8192] = b"v4" * 4096
open("v4.raw", "wb").write(disk)
PY
"$TROY" diff rollback-to-v1.avhdx v4.raw -o v4.avhdx 2>/dev/null
publish --name v4 v4.avhdx || fail "publishing v4, a child of the rollback, failed"

# --- squash through v3: disks at every old version end at v4 ---
at v1.raw 52:54:00:00:00:09   # now at v4; 01, 02, 03 last reported v1, v2, v3
status=0
under_strace -f -o /dev/null -e trace=unlink,unlinkat -e inject=unlink,unlinkat:signal=KILL:when=1 \
  "$TROY" lab squash --dir "$SERVED" --key lab.key --through v3 >/dev/null 2>&1 || status=$?
[ "$status" = 137 ] || fail "squash: not killed at its first removal (exit $status)"
grep -q "^version v3 base " "$SERVED/manifest" || fail "squash killed before removing: the manifest is not squashed"
[ -e "$SERVED/versions/v2.avhdx" ] || fail "squash killed at its first removal removed v2's delta"
"$TROY" lab squash --dir "$SERVED" --key lab.key --through v3 >out.log 2>&1 || { cat out.log >&2; fail "squash rerun failed"; }
grep -q "v3 is the base already: nothing to squash; removed" out.log || fail "squash rerun: $(cat out.log)"
[ "$(ls "$SERVED/versions" | grep -c '^v[12]\.')" = 0 ] || fail "files of v1, v2 left: $(ls "$SERVED/versions")"
"$TROY" verify-manifest --key lab.pub "$SERVED/manifest" >/dev/null || fail "the squashed manifest does not verify"
[ "$(grep -c '^version ' "$SERVED/manifest")" = 3 ] || fail "squashed manifest: $(cat "$SERVED/manifest")"
pass "squash --through v3: v3 the base, rollback-to-v1 and v4 after it; killed before its removals, the rerun removes v1's and v2's files"

"$TROY" lab versions --dir "$SERVED" >list.txt
grep -q "^v4 .* 1  newest" list.txt && grep -q "^v3 .*base .* 1 " list.txt &&
  grep -q "2 machine(s) at a version the manifest no longer lists or none (v1 1, v2 1): they sync to v4" list.txt ||
  { cat list.txt >&2; fail "lab versions after the squash"; }
pass "lab versions after the squash: v4 holds 1 machine, 2 at dropped versions that sync"

for disk in v1.raw v2.raw v3.raw; do
  cp "$disk" dev/vda
  update 52:54:00:00:00:09
  cmp -s dev/vda v4.raw || { cat out.log >&2; fail "after the squash: the disk at ${disk%.raw} is not v4"; }
  [ "$disk" != v2.raw ] || grep -q "holds none of the published versions exactly.*sync to v4" out.log ||
    { cat out.log >&2; fail "the disk at v2 did not sync"; }
done
pass "after the squash: disks at v1, v2 (synced by the content index) and v3 all end at v4 byte for byte"
finish
