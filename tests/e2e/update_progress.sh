# Progress reports do not hold up the work (issue 17): troy update sends
# them from a thread of its own, so a machine of a lab that reports all at
# once does not wait for the server before it checks and writes its disk.
# The lab's report CGI (a wrapper handed to pxe/serve.sh as --troy) holds
# back its answer to the first progress report until the disk holds v3 (at
# most 10 s, half of troy's time limit for a report): an update that waited
# for that answer before working would never get there. The final report still comes after it, authenticated
# with the next counter, and is stored; the machine ends at v3.
source "$(dirname "$0")/common.sh"

skip_without lighttpd openssl curl

MiB=1048576
DISK_SIZE=$((16 * MiB))
MAC=52:54:00:12:34:57

make_lab_images 16 16 >/dev/null
: > "$SERVED/boot/vmlinuz"
publish_lab_versions "size=$((DISK_SIZE + MiB))"

mkdir -p sys/block/vda sys/class/net/eth0 dev
echo $(((DISK_SIZE + MiB) / 512)) > sys/block/vda/size
echo "$MAC" > sys/class/net/eth0/address
echo up > sys/class/net/eth0/operstate
cp v1.raw dev/vda && truncate -s $((DISK_SIZE + MiB)) dev/vda

# The CGI's troy: the first progress report waits for the disk to hold v3.
mkdir -m 777 marks
cat > troy-cgi <<EOF
#!/bin/bash
if [ "\$1 \$2" = "lab report" ] && mkdir "$WORK/marks/first" 2>/dev/null; then
  body=\$(cat)
  if [[ \$body == *'"result":"progress"'* ]]; then
    answer=not-v3
    for _ in \$(seq 100); do
      cmp -s -n $DISK_SIZE "$WORK/dev/vda" "$WORK/v3.raw" && { answer=v3; break; }
      sleep 0.1
    done
    echo "\$answer" > "$WORK/marks/answer"
  fi
  printf '%s' "\$body" | exec "$TROY" "\$@"
fi
exec "$TROY" "\$@"
EOF
chmod 755 troy-cgi
start_lab_server --troy "$WORK/troy-cgi"

"$TROY" update --server "$SERVER" --key lab.pub --sysfs sys --dev dev --work work --yes 2>out.log ||
  { cat out.log >&2; fail "update v1 -> v3 failed"; }
cmp -s -n "$DISK_SIZE" dev/vda v3.raw || fail "the disk is not v3"
[ -f marks/answer ] || fail "no progress report was the first report: $(cat out.log)"
[ "$(cat marks/answer)" = v3 ] ||
  fail "the update waited for the answer to its first progress report before writing the disk (the disk was not v3 after 10 s)"
grep -q "report sent to $SERVER (authenticated)" out.log || fail "the final report was not sent: $(cat out.log)"
grep -q "progress reports stopped\|WARNING" out.log && fail "warnings: $(cat out.log)"
python3 - "$SERVED/reports/log.jsonl" <<'PY' || fail "reports: $(cat "$SERVED/reports/log.jsonl")"
import json, sys
lines = [json.loads(line) for line in open(sys.argv[1])]
assert [(l["result"], l["version"], l["auth"]) for l in lines] == [("ok", "v3", "ok")], lines
PY
pass "the work went on while the server held back its answer to the first progress report; the final report came after it and was stored"
