# Teacher check-in (docs/checkin.md) against lighttpd (pxe/serve.sh): the
# teacher machine (+teacher in the hosts file, its key enrolled by a report)
# uploads its child with troy checkin; the CGI stores it in the inbox
# (outside SERVED) after its checks; root publishes it with troy lab checkin
# publish, and a machine at v1 updates to it and reads the teacher's disk.
# Refused, with nothing kept: a student machine, a child of an older version,
# a body changed on the way (sha256), a forged HMAC, a replayed counter, an
# upload cut short. The share route: a file published the same way.
source "$(dirname "$0")/common.sh"

skip_without lighttpd openssl curl

MiB=1048576
DISK_SIZE=$((16 * MiB))
TEACHER=52:54:00:00:00:01
STUDENT=52:54:00:00:00:02
make_lab_images 16 31
: > "$SERVED/boot/vmlinuz"
"$TROY" publish --dir "$SERVED" --key lab.key --name v1 --disk "size=$((DISK_SIZE + MiB))" base.vhdx 2>/dev/null
"$TROY" publish --dir "$SERVED" --key lab.key --name v2 v2.avhdx 2>/dev/null
"$TROY" publish --dir "$SERVED" --key lab.key --name v3 v3.avhdx 2>/dev/null

# The teacher changed its disk on top of v3: its child is the change.
cp v3.raw teacher.raw
head -c $((3 * MiB)) /dev/urandom | dd of=teacher.raw bs=64K seek=37 conv=notrunc status=none
"$TROY" diff v3.avhdx teacher.raw -o teacher.avhdx 2>/dev/null

cat > hosts <<EOF
$TEACHER  R1-00  +teacher  the teacher's desk
$STUDENT  R1-01
EOF
INBOX=$WORK/inbox
start_lab_server --hosts hosts --inbox "$INBOX"

# machine NAME MAC: a fake machine (sysfs tree, its disk NAME/dev/vda at v1).
machine() {
  mkdir -p "$1/sys/block/vda" "$1/sys/class/net/eth0" "$1/dev"
  echo $(((DISK_SIZE + MiB) / 512)) > "$1/sys/block/vda/size"
  echo "$2" > "$1/sys/class/net/eth0/address"
  echo up > "$1/sys/class/net/eth0/operstate"
  dd if=v1.raw of="$1/dev/vda" bs=1M status=none && truncate -s $((DISK_SIZE + MiB)) "$1/dev/vda"
}
update() {
  "$TROY" update --server "$SERVER" --key lab.pub --sysfs "$1/sys" --dev "$1/dev" --work "$1/work" --yes 2>"$1.log" ||
    { cat "$1.log" >&2; fail "update of $1 failed"; }
}
checkin() { "$TROY" checkin "$1" --server "$SERVER" --key lab.pub --machine "$2" --state "$3/dev/vda"; }
entries() { find "$INBOX" -maxdepth 1 -type f ! -name '.receive.lock' | sort; }

# Both machines report once: their keys are enrolled.
machine teacher "$TEACHER"
machine student "$STUDENT"
update teacher
update student

# --- the boot menu: only the teacher machine is offered the check-in ---
curl -sf "$SERVER/cgi-bin/boot?mac=$TEACHER&platform=efi" > teacher.ipxe
curl -sf "$SERVER/cgi-bin/boot?mac=$STUDENT&platform=efi" > student.ipxe
grep -q '^item checkin ' teacher.ipxe && grep -q 'troy.then=checkin' teacher.ipxe && grep -q '^#!ipxe' teacher.ipxe ||
  { cat teacher.ipxe >&2; fail "the teacher machine's boot script has no check-in entry"; }
grep -q 'checkin' student.ipxe && { cat student.ipxe >&2; fail "a student machine is offered the check-in"; }
pass "/cgi-bin/boot offers troy.then=checkin to the +teacher machine only"

# --- a student machine is refused, nothing kept ---
expect_exit 2 checkin teacher.avhdx "$STUDENT" student
expect_error_line "HTTP 403" "not a teacher machine" "+teacher"
[ -z "$(entries)" ] || fail "a refused check-in left $(entries)"
pass "a machine without +teacher is refused (403), nothing kept"

# --- a child of an older version is refused by the client before it sends a byte ---
expect_exit 2 checkin v3.avhdx "$TEACHER" teacher
expect_error_line "its parent id" "newest published version v3" "a child of v2"
pass "troy checkin refuses a child of an older version before uploading"

# --- the good check-in ---
checkin teacher.avhdx "$TEACHER" teacher 2>out.log || { cat out.log >&2; fail "the teacher's check-in failed"; }
grep -q "checked in as ${TEACHER//:/-}-" out.log || { cat out.log >&2; fail "the answer does not name the entry"; }
[ "$(entries | grep -c '\.avhdx$')" = 1 ] && [ "$(entries | grep -c '\.json$')" = 1 ] || fail "inbox: $(entries)"
entry=$(basename "$(entries | grep '\.avhdx$')" .avhdx)
cmp -s "$INBOX/$entry.avhdx" teacher.avhdx || fail "the stored child differs from the teacher's"
[ -z "$(find "$INBOX" -name '*.part')" ] || fail "a temporary file was left"
"$TROY" lab checkin list --inbox "$INBOX" > list.txt
grep -q "^$entry  *R1-00 .* v3$" list.txt || { cat list.txt >&2; fail "troy lab checkin list does not show the entry"; }
case "$INBOX/" in "$SERVED"/*) fail "the inbox is inside SERVED" ;; esac
pass "the teacher's child is uploaded, stored in the inbox outside SERVED, listed (seat, child of v3)"

# --- forged requests with curl: the key as the server holds it, the next counter ---
key_field() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$SERVED/reports/keys/${TEACHER//:/-}" "$1"; }
# post BODY SHA256 [COUNTER] [HMAC]: the answer's status; its line in answer.txt.
post() {
  local body=$1 sha=$2 counter=${3:-$(( $(key_field counter) + 1 ))} size hmac
  size=$(stat -c %s "$body")
  hmac=${4:-$(python3 -c 'import hmac, hashlib, sys; print(hmac.new(bytes.fromhex(sys.argv[1]), sys.argv[2].encode(), hashlib.sha256).hexdigest())' \
    "$(key_field key)" "troy-checkin 1 ${TEACHER//:/-} $counter $size $sha")}
  curl -s -o answer.txt -w '%{http_code}' --data-binary "@$body" -H "Content-Type: application/octet-stream" \
    -H "X-Troy-Checkin: ${TEACHER//:/-} $counter $size $sha $hmac" "$SERVER/cgi-bin/checkin"
}
before=$(entries)
cp teacher.avhdx tampered.avhdx
printf 'X' | dd of=tampered.avhdx bs=1 seek=$((2 * MiB + 7)) conv=notrunc status=none
code=$(post tampered.avhdx "$(sha teacher.avhdx)")
[ "$code" = 400 ] && grep -q "sha256 is $(sha tampered.avhdx), not $(sha teacher.avhdx)" answer.txt ||
  fail "a tampered body: HTTP $code $(cat answer.txt)"
[ "$(entries)" = "$before" ] && [ -z "$(find "$INBOX" -name '*.part')" ] || fail "a tampered body left a file"
pass "a body changed on the way (sha256 not the signed header's) is refused (400), nothing kept"

code=$(post teacher.avhdx "$(sha teacher.avhdx)" "" "$(printf '%064d' 7)")
[ "$code" = 403 ] && grep -q "HMAC does not verify" answer.txt || fail "a forged HMAC: HTTP $code $(cat answer.txt)"
code=$(post teacher.avhdx "$(sha teacher.avhdx)" "$(key_field counter)")
[ "$code" = 403 ] && grep -q "not above" answer.txt || fail "a replayed counter: HTTP $code $(cat answer.txt)"
[ "$(entries)" = "$before" ] || fail "a forged check-in left a file"
pass "a forged HMAC and a replayed counter are refused (403), nothing kept"

code=$(post v3.avhdx "$(sha v3.avhdx)")
[ "$code" = 422 ] && grep -q "not the id of the newest published version v3" answer.txt ||
  fail "a child of v2, signed: HTTP $code $(cat answer.txt)"
[ "$(entries)" = "$before" ] && [ -z "$(find "$INBOX" -name '*.part')" ] || fail "a wrong parent left a file"
pass "the server refuses a child whose parent id is not the newest version's (422), nothing kept"

# --- an upload cut short leaves nothing half-visible ---
head -c $((512 * 1024)) teacher.avhdx > half.avhdx
counter=$(( $(key_field counter) + 1 ))
size=$(stat -c %s teacher.avhdx)
hmac=$(python3 -c 'import hmac, hashlib, sys; print(hmac.new(bytes.fromhex(sys.argv[1]), sys.argv[2].encode(), hashlib.sha256).hexdigest())' \
  "$(key_field key)" "troy-checkin 1 ${TEACHER//:/-} $counter $size $(sha teacher.avhdx)")
python3 - "$PORT" "$size" "${TEACHER//:/-} $counter $size $(sha teacher.avhdx) $hmac" <<'PY'
import socket, sys
port, size, header = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
s = socket.create_connection(("127.0.0.1", port))
s.sendall(f"POST /cgi-bin/checkin HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {size}\r\nX-Troy-Checkin: {header}\r\n\r\n".encode())
s.sendall(open("half.avhdx", "rb").read())
s.close()  # the machine lost power
PY
# Done once the receiver took the counter (it authenticated) and no receiver runs.
# Only this case's receivers (lighttpd gives them TROY_SERVED): another case
# running beside this one may have its own.
receiving() {
  local pid
  for pid in $(pgrep -f 'lab checkin receive'); do
    tr '\0' '\n' < /proc/$pid/environ 2>/dev/null | grep -qxF "TROY_SERVED=$SERVED" && return 0
  done
  return 1
}
for _ in $(seq 100); do [ "$(key_field counter)" = "$counter" ] && ! receiving && break; sleep 0.1; done
[ "$(key_field counter)" = "$counter" ] && ! receiving || fail "the cut upload was never received"
[ "$(entries)" = "$before" ] && [ -z "$(find "$INBOX" -name '*.part')" ] || fail "a cut upload left $(entries; find "$INBOX" -name '*.part')"
pass "an upload cut short leaves nothing in the inbox"

# --- root publishes it: the same code as troy publish; a machine at v1 then reads the teacher's disk ---
"$TROY" lab checkin publish "$entry" --name v4 --key lab.key --served "$SERVED" --inbox "$INBOX" 2>out.log ||
  { cat out.log >&2; fail "troy lab checkin publish failed"; }
grep -q '^version v4 delta v3 ' "$SERVED/manifest" || fail "the manifest has no v4 from v3"
[ -f "$INBOX/published/$entry.avhdx" ] && ! "$TROY" lab checkin list --inbox "$INBOX" | grep -q "$entry" ||
  fail "the published entry is still waiting in the inbox"
machine late 52:54:00:00:00:03
update late
cmp -s -n "$DISK_SIZE" late/dev/vda teacher.raw || fail "a machine at v1 updated to v4 does not read as the teacher's disk"
pass "troy lab checkin publish makes it v4; a machine at v1 updates to it and reads the teacher's disk"

expect_exit 2 "$TROY" lab checkin publish "$entry" --name v5 --key lab.key --served "$SERVED" --inbox "$INBOX"
expect_error_line "no such check-in"
pass "a published entry cannot be published twice"

# --- the share route: a file, with the same checks ---
mkdir share
cp v3.avhdx share/old.avhdx
expect_exit 2 "$TROY" lab checkin publish "$WORK/share/old.avhdx" --name v5 --key lab.key --served "$SERVED" --inbox "$INBOX"
expect_error_line "share/old.avhdx" "not the id of the newest published version v4"
grep -q '^version v5 ' "$SERVED/manifest" && fail "a wrong parent from a share was published"
cp teacher.raw teacher2.raw
head -c $((2 * MiB)) /dev/urandom | dd of=teacher2.raw bs=64K seek=97 conv=notrunc status=none
"$TROY" diff teacher.avhdx teacher2.raw -o share/child.avhdx 2>/dev/null
# Killed (kill -9) midway, once the delta is copied: the next run finishes it.
status=0
kill_at_write 4 "$TROY" lab checkin publish "$WORK/share/child.avhdx" --name v5 --key lab.key --served "$SERVED" \
  --inbox "$INBOX" || status=$?
[ "$status" = 137 ] && [ -e "$SERVED/versions/v5.avhdx" ] && ! grep -q '^version v5 ' "$SERVED/manifest" ||
  fail "the publish was not cut after copying the delta (exit $status)"
"$TROY" lab checkin publish "$WORK/share/child.avhdx" --name v5 --key lab.key --served "$SERVED" --inbox "$INBOX" 2>out.log ||
  { cat out.log >&2; fail "publishing from a share after a cut publish failed"; }
grep -q "left by a publish cut short, removed" out.log || { cat out.log >&2; fail "the cut publish's files were not said"; }
update late
cmp -s -n "$DISK_SIZE" late/dev/vda teacher2.raw || fail "v5 from the share does not read as the teacher's second disk"
pass "the share route: a child of v4 published as v5 (a wrong parent refused; a publish killed midway finished by the next run), applied"

finish
