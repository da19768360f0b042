# troy lab report | boot | status behind the lab's real lighttpd
# (pxe/serve.sh --no-dhcp): good reports stored and logged, malformed ones
# answered 4xx with nothing stored, the boot script before and after a
# report, and the status table and JSON. The CGI programs are also run
# directly, for the requests curl cannot send.
source "$(dirname "$0")/common.sh"
command -v lighttpd >/dev/null || { echo "SKIP: lighttpd is missing"; exit 77; }
command -v curl >/dev/null || { echo "SKIP: curl is missing"; exit 77; }

SERVED=$WORK/served
mkdir -p "$SERVED/boot"
echo 'not a kernel' > "$SERVED/boot/vmlinuz"
echo 'console=ttyS0 troy.then=poweroff' > "$SERVED/boot/cmdline"
# The server's own manifest says which version is the newest (v3).
printf 'troy-manifest 1\ndisk-size 1048576\nversion v3 base 0123abcd\n' > "$SERVED/manifest"

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT
bash "$ROOT/pxe/serve.sh" --served "$SERVED" --http-port "$PORT" --http-bind 127.0.0.1 --no-dhcp \
  --troy "$TROY" 2>"$WORK/serve.log" &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do
  curl -sf -o /dev/null "$URL/boot/cmdline" && break
  kill -0 $SERVER_PID 2>/dev/null || { cat "$WORK/serve.log" >&2; fail "pxe/serve.sh ended"; }
  sleep 0.1
done
curl -sf -o /dev/null "$URL/boot/cmdline" || { cat "$WORK/serve.log" >&2; fail "lighttpd does not answer on $PORT"; }
pass "pxe/serve.sh --troy serves on 127.0.0.1:$PORT"

# post BODY_FILE: prints the HTTP code; the answer's body goes to $WORK/answer.
post() {
  curl -s -o "$WORK/answer" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary "@$1" \
    "$URL/cgi-bin/report"
}
# (page.stale and page.lock are the status page's bookkeeping: a rebuild that
# is still running after an earlier report's answer removes the mark.)
reports_state() { (cd "$SERVED/reports" && find . -type f ! -name log.lock ! -name 'page.*' | sort | xargs -r sha256sum); }
report_json() { # MACHINE RESULT VERSION MESSAGE
  python3 -c 'import json, sys; print(json.dumps({"machine": sys.argv[1], "result": sys.argv[2], "version": sys.argv[3],
    "message": sys.argv[4], "disk": "/dev/vda", "troy_report": 1, "steps": [{"bytes_written": 4096}]}))' "$@"
}

# --- the boot script before any report: the payload ---
curl -sf -o boot.ipxe "$URL/cgi-bin/boot?mac=52-54-00-00-00-01&platform=pcbios" || fail "GET /cgi-bin/boot failed"
grep -q '^#!ipxe' boot.ipxe || fail "the boot answer is not an iPXE script: $(cat boot.ipxe)"
grep -qF "kernel $URL/boot/vmlinuz initrd=initrd.img troy.server=$URL console=ttyS0 troy.then=poweroff " boot.ipxe ||
  fail "the boot script does not load the payload with the lab's arguments: $(cat boot.ipxe)"
pass "before a report, /cgi-bin/boot answers the payload script"

# --- good reports ---
report_json 52:54:00:00:00:01 ok v3 "brought to v3" > good1.json
report_json 52-54-00-00-00-02 error incomplete 'sha256 of "v3" differs' > good2.json
[ "$(post good1.json)" = 200 ] || fail "a good report was refused: $(cat answer)"
grep -qx 'report stored' answer || fail "answer: $(cat answer)"
[ "$(post good2.json)" = 200 ] || fail "a good report was refused: $(cat answer)"
python3 - "$SERVED/reports" <<'PY' || fail "the stored reports or the log are not as sent"
import json, sys
reports = sys.argv[1]
one = json.load(open(f"{reports}/52-54-00-00-00-01.json"))
assert one["machine"] == "52-54-00-00-00-01" and one["result"] == "ok" and one["version"] == "v3", one
assert one["steps"] == [{"bytes_written": 4096}] and one["troy_report"] == 1 and one["address"] == "127.0.0.1", one
assert one["received"].endswith("Z"), one
lines = [json.loads(line) for line in open(f"{reports}/log.jsonl")]
assert [(l["machine"], l["result"], l["version"]) for l in lines] == [
    ("52-54-00-00-00-01", "ok", "v3"), ("52-54-00-00-00-02", "error", "incomplete")], lines
assert lines[1]["message"] == 'sha256 of "v3" differs', lines
PY
pass "good reports stored with the address and time, one log line each"
if [ "$(id -u)" = 0 ]; then
  # The report file is made by the CGI program, as the user lighttpd runs it as.
  [ "$(stat -c %U "$SERVED/reports/52-54-00-00-00-01.json")" != root ] ||
    fail "the CGI ran as root: it wrote reports/ as root"
  pass "lighttpd and the CGI run as $(stat -c %U "$SERVED/reports/52-54-00-00-00-01.json"), not root"
fi

# --- the boot script after a report: the local disk while it holds the newest ---
curl -sf -o next.ipxe "$URL/cgi-bin/boot?mac=52-54-00-00-00-01&platform=pcbios"
grep -q sanboot next.ipxe && ! grep -q 'initrd=initrd.img' next.ipxe ||
  fail "after its report, the machine's next boot is not its local disk: $(cat next.ipxe)"
curl -sf -o again.ipxe "$URL/cgi-bin/boot?mac=52-54-00-00-00-01&platform=pcbios"
cmp -s next.ipxe again.ipxe || fail "a second GET changed the machine's boot: $(cat again.ipxe)"
curl -sf -o other.ipxe "$URL/cgi-bin/boot?mac=52-54-00-00-00-02&platform=efi"
grep -q 'initrd=initrd.img' other.ipxe || fail "the incomplete machine does not get the payload: $(cat other.ipxe)"
# A second later than the reports: the status below flags machines not seen
# since the publish, and times are whole seconds (a fast run once wrote both
# in the same second).
sleep 1
printf 'troy-manifest 1\ndisk-size 1048576\nversion v4 base 0123abcd\n' > "$SERVED/manifest"
curl -sf -o after.ipxe "$URL/cgi-bin/boot?mac=52-54-00-00-00-01&platform=efi"
grep -q 'initrd=initrd.img' after.ipxe || fail "with v4 published, the v3 machine does not get the payload: $(cat after.ipxe)"
pass "after a report: the local disk while it holds the newest version, whoever asks; the payload once v4 is out"

# --- hostile boot requests ---
touch "$SERVED/manifest.boot-local" "$WORK/manifest.boot-local"
curl -sf -o hostile.ipxe "$URL/cgi-bin/boot?mac=../../manifest&platform=pc%20bios" || fail "hostile mac: no answer"
cmp -s hostile.ipxe after.ipxe || fail "a hostile mac changed the script: $(cat hostile.ipxe)"
[ -f "$SERVED/manifest.boot-local" ] && [ -f "$WORK/manifest.boot-local" ] || fail "a hostile mac removed a file"
# lighttpd itself refuses most bad Host headers (400); troy falls back to SERVER_ADDR:SERVER_PORT.
code=$(curl -s -o host.ipxe -w '%{http_code}' -H 'Host: evil" host' "$URL/cgi-bin/boot?mac=52-54-00-00-00-01")
[ "$code" = 400 ] || grep -qF "troy.server=http://127.0.0.1:$PORT " host.ipxe || fail "hostile Host: HTTP $code $(cat host.ipxe)"
for host in 'evil" host' "x' || shell" '${next-server}'; do
  env REQUEST_METHOD=GET QUERY_STRING=mac=52-54-00-00-00-09 HTTP_HOST="$host" SERVER_ADDR=10.0.0.1 SERVER_PORT=80 \
    TROY_SERVED="$SERVED" "$TROY" lab boot > host.ipxe || fail "troy lab boot with Host '$host' failed"
  grep -qF "troy.server=http://10.0.0.1:80 " host.ipxe && ! grep -qF -- "$host" host.ipxe ||
    fail "a hostile Host header reached the script: $(cat host.ipxe)"
done
pass "a hostile mac removes nothing; a hostile Host header never reaches the script"

# --- malformed reports: 4xx, nothing stored ---
before=$(reports_state)
expect_code() { # CODE BODY_FILE WHY
  local code
  code=$(post "$2")
  [ "$code" = "$1" ] || fail "$3: HTTP $code, expected $1 ($(cat answer))"
  [ "$(reports_state)" = "$before" ] || fail "$3: something was stored"
}
printf 'not json' > bad.json;                                     expect_code 400 bad.json "a body that is not JSON"
printf '[1, 2]' > bad.json;                                       expect_code 400 bad.json "a JSON array"
report_json 52:54:00:00:00:0g ok v3 x > bad.json;                  expect_code 400 bad.json "a bad machine"
report_json ../../manifest ok v3 x > bad.json;                     expect_code 400 bad.json "a path as machine"
report_json 52:54:00:00:00:01 fine v3 x > bad.json;               expect_code 400 bad.json "a bad result"
report_json 52:54:00:00:00:01 ok ../x x > bad.json;               expect_code 400 bad.json "a bad version"
report_json 52:54:00:00:00:01 ok v3 "$(head -c 4097 /dev/zero | tr '\0' m)" > bad.json
expect_code 400 bad.json "a message over 4096 bytes"
grep -q '^message: ' answer || fail "the answer does not name the field: $(cat answer)"
printf '{"machine": "52:54:00:00:00:01", "result": "ok", "version": 3, "message": ""}' > bad.json
expect_code 400 bad.json "a version that is a number"
grep -q '^version: not a JSON string' answer || fail "the answer does not name the field: $(cat answer)"
head -c $((1024 * 1024 + 1)) /dev/zero | tr '\0' ' ' > big.json; expect_code 413 big.json "a body over 1 MiB"
head -c $((3 * 1024 * 1024)) /dev/zero | tr '\0' ' ' > big.json; expect_code 413 big.json "a body lighttpd refuses"
code=$(curl -s -o answer -w '%{http_code}' "$URL/cgi-bin/report")
[ "$code" = 405 ] && [ "$(reports_state)" = "$before" ] || fail "GET /cgi-bin/report: HTTP $code"
pass "malformed reports answered 400, 405 or 413, nothing stored"

# What lighttpd never passes on: CONTENT_LENGTH missing or not a number.
cgi_report() { # CONTENT_LENGTH (or - for unset) BODY
  local length=$1
  if [ "$length" = - ]; then
    printf '%s' "$2" | env -u CONTENT_LENGTH REQUEST_METHOD=POST TROY_SERVED="$SERVED" "$TROY" lab report
  else
    printf '%s' "$2" | env REQUEST_METHOD=POST CONTENT_LENGTH="$length" TROY_SERVED="$SERVED" "$TROY" lab report
  fi
}
cgi_report - "$(cat good1.json)" > cgi.out
head -n 1 cgi.out | grep -q '^Status: 411 ' || fail "no CONTENT_LENGTH: $(cat cgi.out)"
cgi_report 12x "$(cat good1.json)" > cgi.out
head -n 1 cgi.out | grep -q '^Status: 400 ' || fail "CONTENT_LENGTH 12x: $(cat cgi.out)"
cgi_report 99999999999999999999 "$(cat good1.json)" > cgi.out
head -n 1 cgi.out | grep -q '^Status: 413 ' || fail "a huge CONTENT_LENGTH: $(cat cgi.out)"
[ "$(reports_state)" = "$before" ] || fail "a refused CGI request stored something"
env -u TROY_SERVED REQUEST_METHOD=GET "$TROY" lab boot > cgi.out 2>cgi.err && fail "no served directory: exit 0"
head -n 1 cgi.out | grep -q '^Status: 500 ' && grep -q '^troy: error: .*TROY_SERVED' cgi.err ||
  fail "no served directory: $(cat cgi.out cgi.err)"
pass "troy lab report refuses a missing, non-numeric or huge CONTENT_LENGTH; no TROY_SERVED is a 500"

# --- status ---
printf 'garbage line\n{"machine": 1}\n' >> "$SERVED/reports/log.jsonl"
"$TROY" lab status --served "$SERVED" > status.txt || fail "troy lab status failed"
head -n 1 status.txt | grep -q '^MACHINE  *SEAT  *ADDRESS  *STATE  *VERSION  *KEY  *PROGRESS  *LAST SEEN (UTC)  *LAST ERROR$' ||
  fail "status header: $(cat status.txt)"
# v4 was published after these reports: v3 is outdated, neither was seen since.
grep -q '^52-54-00-00-00-01  *-  *127\.0\.0\.1  *outdated  *v3  *none  *-  *20[0-9TZ:-]* \*$' status.txt || fail "status: $(cat status.txt)"
grep -q '^52-54-00-00-00-02  .*  error  *incomplete  *none  *-  *20[0-9TZ:-]* \*  *sha256 of "v3" differs$' status.txt ||
  fail "status: $(cat status.txt)"
grep -q '^0 of 2 at v4, 0 in progress, 1 error, 2 not seen since the last publish$' status.txt || fail "status: no summary line: $(cat status.txt)"
grep -q '^(2 lines of the log skipped' status.txt || fail "status does not count the garbage lines: $(cat status.txt)"
"$TROY" lab status --served "$SERVED" --json > status.json || fail "troy lab status --json failed"
python3 - status.json <<'PY' || fail "status --json: $(cat status.json)"
import json, sys
status = json.load(open(sys.argv[1]))
assert status["skipped_lines"] == 2, status
assert [m["machine"] for m in status["machines"]] == ["52-54-00-00-00-01", "52-54-00-00-00-02"], status
assert status["machines"][0]["version"] == "v3" and status["machines"][1]["state"] == "error", status
PY
TROY_SERVED=$SERVED make -s -C "$ROOT" -f Makefile.lab status TROY="$TROY" SERVED="$SERVED" > make-status.txt ||
  fail "make -f Makefile.lab status failed"
cmp -s make-status.txt status.txt || fail "make -f Makefile.lab status differs from troy lab status"
mkdir empty
[ "$("$TROY" lab status --served empty | head -n 1)" = "no machine has reported yet" ] || fail "status of an empty lab"
pass "troy lab status: the table and --json, garbage lines counted; make -f Makefile.lab status"

finish
