# The live status page (issue 18) with lighttpd (pxe/serve.sh --hosts): a
# fake machine updated by troy update reports progress while it works and
# its final report; the page (SERVED/status/, text/html) and troy lab status
# show its seat, done at v3 and the progress states it went through; a
# hostile report's text is escaped; a machine of the hosts file that never
# reported is flagged; a bad hosts file is said, not fatal.
source "$(dirname "$0")/common.sh"

skip_without lighttpd openssl curl

MiB=1048576
DISK_SIZE=$((16 * MiB))
MAC=52:54:00:12:34:56
MACHINE=52-54-00-12-34-56

make_lab_images 16 16
: > "$SERVED/boot/vmlinuz"
publish_lab_versions "size=$((DISK_SIZE + MiB)) serial=LAB-PC-*"

mkdir -p sys/block/vda sys/class/net/eth0 dev
echo $(((DISK_SIZE + MiB) / 512)) > sys/block/vda/size
echo LAB-PC-0001 > sys/block/vda/serial
echo "$MAC" > sys/class/net/eth0/address
echo up > sys/class/net/eth0/operstate
cp v1.raw dev/vda && truncate -s $((DISK_SIZE + MiB)) dev/vda

printf '# room 12\n52:54:00:12:34:56  R12-01  window\n52-54-00-00-00-99 R12-99\n' > hosts
chmod 644 hosts
start_lab_server --hosts "$WORK/hosts"  # start_lab_server hands its arguments to pxe/serve.sh

"$TROY" update --server "$SERVER" --key lab.pub --sysfs sys --dev dev --work work --yes 2>out.log ||
  { cat out.log >&2; fail "update v1 -> v3 failed"; }
cmp -s -n "$DISK_SIZE" dev/vda v3.raw || fail "the disk is not v3"
wait_for_status_page '<td class="state">done</td>'
curl -sf -D headers -o page.html "$SERVER/status/" || fail "no status page at /status/"
grep -qi '^content-type: text/html' headers || fail "the status page is not served as HTML: $(cat headers)"
python3 - page.html "$MACHINE" <<'PY' || fail "status page: $(cat page.html)"
import html.parser, sys
class Rows(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(); self.rows = {}; self.row = None; self.cell = None; self.summary = ""; self.in_summary = False
    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and attrs.get("id", "").startswith("m-"): self.row = self.rows.setdefault(attrs["id"][2:], {})
        if tag == "td" and self.row is not None: self.cell = attrs.get("class"); self.row[self.cell] = ""
        if tag == "p" and attrs.get("id") == "summary": self.in_summary = True
    def handle_endtag(self, tag):
        if tag == "tr": self.row = None
        if tag == "p": self.in_summary = False
    def handle_data(self, data):
        if self.row is not None and self.cell: self.row[self.cell] += data
        if self.in_summary: self.summary += data
rows = Rows(); rows.feed(open(sys.argv[1]).read())
row = rows.rows[sys.argv[2]]
assert row["seat"] == "R12-01" and row["state"] == "done" and row["version"] == "v3", row
history = row["history"]
assert any(state in history for state in ("checking", "applying", "downloading", "syncing")), history
assert rows.rows["52-54-00-00-00-99"]["state"] == "never seen", rows.rows
assert "(not seen since the last publish)" in rows.rows["52-54-00-00-00-99"]["seen"], rows.rows
assert rows.summary == "1 of 2 at v3, 0 in progress, 0 errors, 1 not seen since the last publish", rows.summary
PY
pass "the page shows the machine's seat, done at v3, the progress states it reported, and the unseen machine flagged"

"$TROY" lab status --served "$SERVED" --hosts hosts > status.txt || fail "troy lab status failed"
grep -q "^$MACHINE  *R12-01  *127\.0\.0\.1  *done  *v3 " status.txt && grep -q '^52-54-00-00-00-99  *R12-99 .* never seen .* never \*$' status.txt &&
  grep -qx '1 of 2 at v3, 0 in progress, 0 errors, 1 not seen since the last publish' status.txt ||
  fail "troy lab status: $(cat status.txt)"
"$TROY" lab status --served "$SERVED" --hosts hosts --json | python3 -c '
import json, sys
status = json.load(sys.stdin)
assert status["machines"][0]["seat"] == "R12-01" and status["machines"][0]["state"] == "done", status
assert any(entry["state"] != "done" for entry in status["machines"][0]["history"]), status' || fail "troy lab status --json"
pass "troy lab status: the same rows and summary as a table and as JSON"

# A hostile report (no key is enrolled for this MAC): its text is escaped on the page.
hostile='{"machine":"52:54:00:66:66:66","result":"error","version":"","message":"<script>alert(1)</script><img src=x onerror=alert(2)>\u001b[2J"}'
curl -sf -H 'Content-Type: application/json' --data-binary "$hostile" "$SERVER/cgi-bin/report" >/dev/null ||
  fail "the hostile report was not stored"
wait_for_status_page 52-54-00-66-66-66
grep -q '<script>\|<img' page.html && fail "a report's text reached the page as HTML"
grep -qF '&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;\x1b[2J' page.html ||
  fail "the hostile message is not shown escaped: $(grep 66-66-66 page.html)"
"$TROY" lab status --served "$SERVED" | grep -q $'\x1b' && fail "troy lab status prints an escape character"
pass "a hostile report's text is escaped on the page and in the table"

# Progress reports: their own budget; a flood from one address is cut, a final report still passes.
progress='{"machine":"52:54:00:77:77:77","result":"progress","state":"applying","percent":5,"detail":"apply","version":"","message":"x"}'
export progress SERVER
codes=$(seq 50 | xargs -P 8 -I{} sh -c 'curl -s -o /dev/null -w "%{http_code}\n" -H "Content-Type: application/json" \
  --data-binary "$progress" "$SERVER/cgi-bin/report"' | sort | uniq -c | tr -s ' ' | tr '\n' ,)
[[ "$codes" =~ ^\ ?[0-9]+\ 200,\ ?[0-9]+\ 429,$ ]] || fail "a progress flood was not limited: $codes"
final='{"machine":"52:54:00:77:77:77","result":"ok","version":"v3","message":"done"}'
[ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' --data-binary "$final" "$SERVER/cgi-bin/report")" = 200 ] ||
  fail "after a progress flood, a final report from the same address was refused"
pass "a progress flood is limited ($codes) without taking the final reports' budget"

printf '52:54:00:12:34:56 R12-01\nnot-a-mac R2\n' > hosts
curl -sf -H 'Content-Type: application/json' --data-binary "$final" "$SERVER/cgi-bin/report" >/dev/null || fail "report"
wait_for_status_page "hosts file not used: $WORK/hosts:2: MAC: &#39;not-a-mac&#39; is not a MAC address"
pass "a bad hosts file is said on the page, which is still made"

# troy lab status takes lab.conf's hosts when --hosts and TROY_HOSTS are not given.
printf '52:54:00:12:34:56 CONF-SEAT\n' > conf-hosts
printf 'hosts = %s\n' "$WORK/conf-hosts" > lab.conf
env -u TROY_HOSTS "$TROY" lab status --served "$SERVED" --config lab.conf | grep -q "^$MACHINE  *CONF-SEAT " ||
  fail "troy lab status does not take lab.conf's hosts: $("$TROY" lab status --served "$SERVED" --config lab.conf)"
pass "troy lab status takes the hosts file from lab.conf"
