# troy update end to end, without QEMU: a lab served by lighttpd (pxe/serve.sh
# on a port of its own) and a classroom machine made of a fake sysfs (two
# disks, one matching the manifest's rule) and raw disk image files in place
# of /dev. Cases: v1 to v3 byte for byte with the report stored on the
# server and the other disk untouched; run again (nothing to do, nothing
# written); kill -9 in the middle of an apply, then again (ends at v3);
# a bad manifest signature, a delta whose hash differs, a disk holding none
# of the versions, two disks matching, a manifest from another lab's key:
# nothing written, exit 2, one error line; a served directory instead of a
# server; the kernel command line's settings.
source "$(dirname "$0")/common.sh"

skip_without lighttpd openssl curl

MiB=1048576
DISK_SIZE=$((16 * MiB))

make_lab_images 16 16
openssl genpkey -algorithm ed25519 -out other.key 2>/dev/null
"$TROY" publish --dir "$SERVED" --key lab.key --name v1 --disk "size=$DISK_SIZE serial=LAB-PC-*" base.vhdx 2>/dev/null
"$TROY" publish --dir "$SERVED" --key lab.key --name v2 v2.avhdx 2>/dev/null
"$TROY" publish --dir "$SERVED" --key lab.key --name v3 v3.avhdx 2>/dev/null
: > "$SERVED/boot/vmlinuz"   # pxe/serve.sh wants a payload; update needs none

# The machine: /sys/block/vda (the lab's disk) and vdb (a USB stick), /dev/*.
make_disk() {  # NAME BYTES SERIAL
  mkdir -p "sys/block/$1"
  echo $(($2 / 512)) > "sys/block/$1/size"
  echo "$3" > "sys/block/$1/serial"
}
make_disk vda "$DISK_SIZE" LAB-PC-0001
make_disk vdb $((4 * MiB)) USB-STICK
mkdir -p sys/class/net/eth0 dev
echo 52:54:00:12:34:56 > sys/class/net/eth0/address
echo up > sys/class/net/eth0/operstate
head -c $((4 * MiB)) /dev/zero | tr '\0' 'x' > dev/vdb
STICK_SHA=$(sha dev/vdb)

start_lab_server

# put FILE... DEST: replace served files as troy publish does (a new file
# renamed into place), never rewritten under lighttpd's feet.
put() {
  local dest=${*: -1} file
  for file in "${@:1:$#-1}"; do
    if [ -d "$dest" ]; then cp "$file" "$dest/.put" && mv "$dest/.put" "$dest/$(basename "$file")"
    else cp "$file" "$dest.put" && mv "$dest.put" "$dest"; fi
  done
}

# update [ARGS...]: troy update as the payload runs it, against this machine.
update() {
  "$TROY" update --server "$SERVER" --key lab.pub --sysfs sys --dev dev --work work --yes "$@"
}
# The server's newest stored report for this machine, as JSON.
stored_report() { cat "$SERVED/reports/52-54-00-12-34-56.json"; }
report_field() { stored_report | python3 -c "import json, sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }

# --- v1 to v3, the report on the server, the stick untouched ---
cp v1.raw dev/vda
update 2>out.log || { cat out.log >&2; fail "update v1 -> v3 failed"; }
cmp -s dev/vda v3.raw || fail "update: the disk is not v3 byte for byte"
pass "troy update brought the disk from v1 to v3 over HTTP, byte for byte"
[ "$(sha dev/vdb)" = "$STICK_SHA" ] || fail "the disk the rule did not choose was written"
grep -q 'holds v1 exactly: applying the deltas since' out.log && grep -q 'applying v3 (2 of 2)' out.log ||
  { cat out.log >&2; fail "the screen does not tell the checks and the applies"; }
grep -q 'TROY: OK. dev/vda brought to v3' out.log || fail "no final OK line"
pass "only the disk matching the rule was written; the screen tells each check and apply"
[ "$(report_field result)" = ok ] && [ "$(report_field version)" = v3 ] || fail "the stored report: $(stored_report)"
[ "$(stored_report | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["steps"]))')" = 2 ] ||
  fail "the report lacks the two applies: $(stored_report)"
pass "the report reached the server: ok, v3, both applies"
[ -z "$(ls work | grep -v "\.fingerprint$")" ] || fail "deltas left in the work folder: $(ls work)"

# --- again: nothing to do, nothing written ---
before=$(stat -c %Y dev/vda)
sleep 1.1
update 2>out.log || { cat out.log >&2; fail "update of an up-to-date disk failed"; }
grep -q 'already holds v3, the newest version' out.log || fail "the rerun does not say the disk is up to date"
[ "$(stat -c %Y dev/vda)" = "$before" ] || fail "the rerun wrote to an up-to-date disk"
grep -q 'downloading' out.log && fail "the rerun downloaded a delta"
pass "an up-to-date disk: one check, nothing downloaded, nothing written"

# --- kill -9 in the middle of an apply, then again ---
cp v1.raw dev/vda
status=0
TROY_TEST_CHECKPOINT_BYTES=65536 TROY_TEST_KILL_AFTER_BYTES=$((300 * 1024)) update >/dev/null 2>killed.log || status=$?
[ "$status" = 137 ] || { cat killed.log >&2; fail "the kill hook did not stop the update (exit $status)"; }
cmp -s dev/vda v1.raw && fail "kill: nothing was written before the kill (the test would prove nothing)"
update 2>out.log || { cat out.log >&2; fail "the update after a kill failed"; }
grep -q 'holds none of the published versions exactly' out.log ||
  { cat out.log >&2; fail "the rerun did not see the interrupted apply"; }
cmp -s dev/vda v3.raw || fail "kill: the rerun did not end at v3"
pass "killed in the middle of applying v2, run again: no version held exactly, synced, v3 byte for byte"
# The boot payload keeps its journal in RAM: a power cut loses it.
cp v1.raw dev/vda
status=0
TROY_TEST_CHECKPOINT_BYTES=65536 TROY_TEST_KILL_AFTER_BYTES=$((500 * 1024)) update >/dev/null 2>killed.log || status=$?
[ "$status" = 137 ] || { cat killed.log >&2; fail "the kill hook did not stop the update (exit $status)"; }
rm -f dev/.vda.troy-apply
update 2>out.log || { cat out.log >&2; fail "the update after a kill and a lost journal failed"; }
cmp -s dev/vda v3.raw || fail "kill, journal lost: the rerun did not end at v3"
pass "killed, its journal lost as a power cut loses the payload's RAM, run again: v3 byte for byte"

# expect_refused CASE WORDS [ARGS...]: exit 2, one error line with WORDS, disk unchanged.
expect_refused() {
  local case=$1 words=$2 status=0 before
  shift 2
  before=$(sha dev/vda)
  update "$@" 2>out.log || status=$?
  [ "$status" = 2 ] || { cat out.log >&2; fail "$case: exit $status, expected 2"; }
  grep -qF -- "$words" out.log || { cat out.log >&2; fail "$case: the error does not say '$words'"; }
  grep -q 'TROY: ERROR' out.log || fail "$case: no final ERROR line"
  [ "$(sha dev/vda)" = "$before" ] || fail "$case: the disk was written"
  [ "$(sha dev/vdb)" = "$STICK_SHA" ] || fail "$case: the stick was written"
}

# --- a manifest changed on the server: refused, nothing written, reported ---
cp v1.raw dev/vda
cp "$SERVED/manifest" manifest.good
sed "s/^disk size=$DISK_SIZE /disk size=$DISK_SIZE model=* /" manifest.good > manifest.changed
put manifest.changed "$SERVED/manifest"
expect_refused "changed manifest" "manifest refused"
[ "$(report_field result)" = error ] && report_field message | grep -q "manifest refused" ||
  fail "the refusal was not reported: $(stored_report)"
put manifest.good "$SERVED/manifest"
pass "a manifest changed on the server is refused before anything is read from the disk, and reported"

# --- a manifest signed by another key ---
cp -r "$SERVED" served.other
rm served.other/manifest served.other/manifest.sig
"$TROY" publish --dir served.other --key other.key --name v1 --disk "size=$DISK_SIZE" base.vhdx 2>/dev/null
cp "$SERVED/manifest" manifest.good && cp "$SERVED/manifest.sig" sig.good
put served.other/manifest served.other/manifest.sig "$SERVED"
expect_refused "another lab's key" "manifest refused"
put manifest.good "$SERVED/manifest" && put sig.good "$SERVED/manifest.sig"
pass "a manifest signed with another key is refused"

# --- a delta changed on the server: refused before anything is written ---
cp "$SERVED/versions/v2.avhdx" delta.good
cp delta.good delta.changed
# In the first data block (at 4 MiB, after the log, metadata and BAT regions):
# a streamed delta is verified piece by piece as it is read, and this is the
# first piece read after the metadata, before anything is written.
printf 'X' | dd of=delta.changed bs=1 seek=$((4 * MiB + 17)) conv=notrunc status=none
put delta.changed "$SERVED/versions/v2.avhdx"
expect_refused "changed delta" "sha256"
put delta.good "$SERVED/versions/v2.avhdx"
head -c -4096 delta.good > delta.short
put delta.short "$SERVED/versions/v2.avhdx"
expect_refused "truncated delta" "damaged or replaced on the server"
put delta.good "$SERVED/versions/v2.avhdx"
[ -z "$(ls work | grep -v "\.fingerprint$")" ] || fail "a refused delta was left in the work folder: $(ls work)"
pass "a changed or truncated delta is refused with nothing written and nothing kept"

# --- a disk holding none of the versions ---
# (synced to the newest version: the manifest's on-foreign is sync by default)
cp foreign.raw dev/vda
update 2>out.log || { cat out.log >&2; fail "update of a foreign disk failed"; }
cmp -s dev/vda v3.raw || fail "a foreign disk is not v3 after sync"
grep -q 'holds none of the published versions exactly' out.log && grep -q 'synced to v3' out.log ||
  { cat out.log >&2; fail "the screen does not say why the disk is synced"; }
pass "a disk holding none of the versions is synced to v3, and the screen says why"

# --- the rule matches two disks; no disk ---
cp v1.raw dev/vda
make_disk vdc "$DISK_SIZE" LAB-PC-0002
cp v1.raw dev/vdc
expect_refused "two disks match" "refusing to guess"
rm -r sys/block/vdc dev/vdc
echo NOT-LAB > sys/block/vda/serial
expect_refused "no disk matches" "no disk matches"
echo LAB-PC-0001 > sys/block/vda/serial
pass "a rule matching two disks, or none, writes nothing"

# --- a served directory in place of a server; a disk chosen by name ---
cp v1.raw dev/vda
"$TROY" update --server "$SERVED" --key lab.pub --sysfs sys --dev dev --work work --yes 2>out.log ||
  { cat out.log >&2; fail "update from a directory failed"; }
cmp -s dev/vda v3.raw || fail "update from a directory: not v3"
cp v2.raw dev/vda
update --disk vda --no-report 2>out.log || { cat out.log >&2; fail "update --disk vda failed"; }
cmp -s dev/vda v3.raw || fail "update --disk vda: not v3"
pass "a served directory works as a source; --disk NAME chooses the disk by hand"

# --- without --yes and without a terminal: nothing written ---
cp v1.raw dev/vda
status=0
"$TROY" update --server "$SERVER" --key lab.pub --sysfs sys --dev dev --work work </dev/null 2>out.log || status=$?
[ "$status" = 2 ] && grep -q 'no terminal to confirm on' out.log && cmp -s dev/vda v1.raw ||
  { cat out.log >&2; fail "without --yes or a terminal, the update did not refuse"; }
pass "without --yes and no terminal to confirm on, nothing is written"

# --- the kernel command line: server and then from it, troy.disk= refused ---
echo "console=ttyS0 troy.server=$SERVER troy.then=poweroff troy.disk=vdb troy.wait=0" > cmdline
cp v1.raw dev/vda
"$TROY" update --cmdline cmdline --key lab.pub --sysfs sys --dev dev --work work --yes --after-file after \
  2>out.log || { cat out.log >&2; fail "update --cmdline failed"; }
cmp -s dev/vda v3.raw && [ "$(sha dev/vdb)" = "$STICK_SHA" ] || fail "update --cmdline: wrong disk content"
grep -q 'ignored troy.disk=vdb' out.log || fail "troy.disk= on the command line was not refused"
[ "$(cat after)" = poweroff ] || fail "troy.then=poweroff did not reach the after file: $(cat after)"
echo "troy.server=$SERVER troy.then=shell troy.wait=0" > cmdline
"$TROY" update --cmdline cmdline --key lab.pub --sysfs sys --dev dev --work work --yes --after-file after 2>out.log
[ "$(cat after)" = reboot ] && grep -q 'ignored troy.then=shell' out.log || fail "troy.then=shell was not refused"
pass "the kernel command line gives the server and a poweroff, never the disk or a shell"

# --- a server that is not there ---
status=0
"$TROY" update --server http://127.0.0.1:1 --key lab.pub --sysfs sys --dev dev --work work --yes 2>out.log || status=$?
[ "$status" = 2 ] && grep -q '127.0.0.1:1/manifest' out.log || { cat out.log >&2; fail "an unreachable server"; }
pass "an unreachable server: one error naming the URL"
finish
