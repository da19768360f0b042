# The nightly rollout end to end: `troy lab night` runs in a network
# namespace this test creates (and removes), broadcasting its wake-on-LAN
# magic packets on a veth pair there; a listener in the namespace captures
# them and, in place of a powered-off PC whose NIC sees its packet, starts
# QEMU (-boot n) for that MAC: iPXE, the lab server's per-machine script, the
# payload. The payload's command line says troy.then=reboot and QEMU runs
# without -no-reboot, so a machine ends only if the night's boot script
# really turned it into troy.then=poweroff.
#   bash tests/lab/night_e2e.sh TROY
# The lab (hosts file: seats R18-01..03):
#   52:54:00:00:18:01  a v1 disk: updated to v2 (byte for byte), powered off
#   52:54:00:00:18:02  a disk no manifest rule chooses: failed, powered off
#   52:54:00:00:18:03  no machine: woken twice (a retry), did not wake
#   52:54:00:00:18:04  reported v2 before the night (not in the hosts file): not woken
source "$(dirname "$0")/../e2e/common.sh"

for tool in qemu-system-x86_64 lighttpd busybox openssl cpio depmod ip; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool is missing (bash scripts/install-deps.sh)"; exit 77; }
done
[ "$(id -u)" = 0 ] || { echo "SKIP: network namespaces need root"; exit 77; }
[ -f /usr/share/qemu/pxe-virtio.rom ] || [ -f /usr/lib/ipxe/qemu/pxe-virtio.rom ] ||
  { echo "SKIP: QEMU's iPXE NIC ROMs are missing (apt-get install ipxe-qemu)"; exit 77; }

MiB=1048576
DISK_SIZE=$((64 * MiB))
BOOT_TIMEOUT=${TROY_BOOT_TIMEOUT:-300}
A=52:54:00:00:18:01 B=52:54:00:00:18:02 C=52:54:00:00:18:03 D=52:54:00:00:18:04

# --- the lab: v1 and v2 published, the payload built (boot_e2e.sh's cache) ---
openssl genpkey -algorithm ed25519 -out lab.key 2>/dev/null
openssl pkey -in lab.key -pubout -out lab.pub
python3 "$ROOT/fixtures/make_lab_versions.py" 64 12
"$TROY" capture v1.raw base.vhdx 2>/dev/null
"$TROY" diff base.vhdx v2.raw -o v2.avhdx 2>/dev/null
SERVED=$WORK/served
mkdir -p "$SERVED/reports"
"$TROY" publish --dir "$SERVED" --key lab.key --name v1 --disk "size=$DISK_SIZE serial=LAB-PC-*" base.vhdx
"$TROY" publish --dir "$SERVED" --key lab.key --name v2 v2.avhdx
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
bash "$ROOT/initramfs/build.sh" --troy "$TROY" --key lab.pub --out "$SERVED/boot" \
  --cache "${TROY_PAYLOAD_CACHE:-$ROOT/build/payload-cache}" \
  --http-url "http://\${next-server}:$PORT" --kernel-args "console=ttyS0 troy.then=reboot troy.wait=0"
cat >hosts <<EOF
# the test's lab
$A  R18-01
${B//:/-}  R18-02  a disk of another lab
$C  R18-03  unplugged
EOF
echo "{\"result\":\"ok\",\"version\":\"v2\",\"time\":$(date +%s)}" >"$SERVED/reports/${D//:/-}.boot"
cp v1.raw disk-a.raw
truncate -s "$DISK_SIZE" disk-b.raw

# --- the namespace: a veth pair, its own loopback for the lab server ---
NS=troy-night-$$
ip netns add "$NS"
SERVER_PID= LISTENER_PID=
cleanup() {
  [ -n "$LISTENER_PID" ] && kill "$LISTENER_PID" 2>/dev/null
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null
  wait 2>/dev/null
  ip netns pids "$NS" 2>/dev/null | xargs -r kill -9 2>/dev/null
  ip netns del "$NS" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
in_ns() { ip netns exec "$NS" "$@"; }
in_ns ip link set lo up
in_ns ip link add wol0 type veth peer name wol1
in_ns ip addr add 10.218.0.1/24 brd + dev wol0
in_ns ip link set wol0 up
in_ns ip link set wol1 up

in_ns bash "$ROOT/pxe/serve.sh" --served "$SERVED" --troy "$TROY" --http-port "$PORT" --http-bind 127.0.0.1 \
  --no-dhcp 2>serve.log &
SERVER_PID=$!
for _ in $(seq 50); do
  in_ns busybox wget -q -O /dev/null "http://127.0.0.1:$PORT/manifest" 2>/dev/null && break
  sleep 0.1
done
in_ns busybox wget -q -O /dev/null "http://127.0.0.1:$PORT/manifest" || { cat serve.log >&2; fail "lighttpd does not serve the manifest"; }

# The listener: every magic packet on UDP port 9 is a line of packets.log
# (seconds since it started, the MAC); the first packet for a MAC that has a
# machine starts its QEMU (MACHINE.exit: QEMU's exit status when it ends).
cat >listener.py <<'PY'
import socket, subprocess, sys, threading, time
served, timeout = sys.argv[1], sys.argv[2]
machines = {m: (disk, serial) for m, disk, serial in (a.split(",") for a in sys.argv[3:])}
def run(mac, disk, serial):
    name = mac.replace(":", "-")
    with open(name + ".console", "wb") as console:
        code = subprocess.call(["timeout", timeout, "qemu-system-x86_64", "-accel", "tcg", "-m", "768", "-nographic",
            "-boot", "n", "-netdev", f"user,id=net0,tftp={served}/boot,bootfile=boot.ipxe",
            "-device", f"virtio-net-pci,netdev=net0,mac={mac}",
            "-drive", f"file={disk},format=raw,if=none,id=disk0", "-device", f"virtio-blk-pci,drive=disk0,serial={serial}"],
            stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    open(name + ".exit", "w").write(f"{code}\n")
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("0.0.0.0", 9))
open("listening", "w").close()
start, started, log = time.monotonic(), set(), open("packets.log", "a", buffering=1)
while True:
    data, sender = sock.recvfrom(2048)
    mac = data[6:12]
    if len(data) != 102 or data[:6] != b"\xff" * 6 or data[6:] != mac * 16:
        log.write(f"{time.monotonic() - start:.1f} malformed {data[:12].hex()} {len(data)}\n")
        continue
    name = ":".join(f"{b:02x}" for b in mac)
    log.write(f"{time.monotonic() - start:.1f} {name}\n")
    if name in machines and name not in started:
        started.add(name)
        threading.Thread(target=run, args=(name, *machines[name]), daemon=True).start()
PY
in_ns /usr/bin/python3 listener.py "$SERVED" "$BOOT_TIMEOUT" "$A,$WORK/disk-a.raw,LAB-PC-0001" "$B,$WORK/disk-b.raw,USB-STICK" &
LISTENER_PID=$!
for _ in $(seq 100); do [ -f listening ] && break; sleep 0.1; done
[ -f listening ] || fail "the magic packet listener did not start"

# --- the night ---
status=0
in_ns "$TROY" lab night --served "$SERVED" --hosts hosts --broadcast 10.218.0.255 \
  --wave-size 2 --wave-gap 5s --retry-after 20s --retries 1 --for "${BOOT_TIMEOUT}s" >night.out 2>&1 || status=$?
cat night.out
[ "$status" = 1 ] || fail "troy lab night exited $status; expected 1 (not every machine updated)"
for machine in $A $B; do
  for _ in $(seq 600); do [ -f "${machine//:/-}.exit" ] && break; sleep 0.1; done
  [ "$(cat "${machine//:/-}.exit" 2>/dev/null)" = 0 ] ||
    { tail -n 30 "${machine//:/-}.console" >&2; fail "$machine did not power off by itself after the night's payload"; }
done
pass "both machines booted by their magic packets powered off by themselves (troy.then=poweroff from the night)"

# --- the magic packets: waves, a retry, nobody at the newest version woken ---
cat packets.log
grep -q malformed packets.log && fail "a packet is not 6 x FF + 16 x the MAC"
first() { awk -v m="$1" '$2 == m { print $1; exit }' packets.log; }
count() { awk -v m="$1" '$2 == m' packets.log | wc -l; }
[ "$(count $A)" -ge 1 ] && [ "$(count $B)" -ge 1 ] || fail "no magic packet for $A or $B"
[ "$(count $D)" = 0 ] || fail "$D, at the newest version, was woken"
python3 -c "import sys; sys.exit(0 if float(sys.argv[2]) - float(sys.argv[1]) >= 4 else 1)" "$(first $A)" "$(first $C)" ||
  fail "$C (wave 2) was woken less than the wave gap after wave 1"
[ "$(count $C)" -ge 6 ] || fail "$C was not woken again ($(count $C) packets; 3 per wake-up)"
[ "$(count $A)" -le 3 ] || fail "$A, which booted, was woken again"
pass "magic packets captured in the namespace: wave 1 ($A $B), wave 2 ($C) 5 s later, $C again after 20 s, $D (at v2) never"

# --- the machines and the night's report ---
cmp -s disk-a.raw v2.raw || { tail -n 30 52-54-00-00-18-01.console >&2; fail "$A: the disk is not v2 byte for byte"; }
pass "$A's disk is v2 byte for byte"
"$TROY" lab night-report --served "$SERVED" >report.txt
cat report.txt
grep -q "3 woken: 1 updated, 1 failed, 1 did not wake, 0 woke without a report; 1 already at v2" report.txt ||
  fail "the night's summary line is wrong"
grep -Eq "^52-54-00-00-18-01  R18-01 +updated +v2 +1 " report.txt || fail "$A is not reported updated"
grep -Eq "^52-54-00-00-18-02  R18-02 +failed " report.txt || fail "$B is not reported failed"
grep -Eq "^52-54-00-00-18-03  R18-03 +did not wake +- +2 +no boot request" report.txt || fail "$C is not reported as not woken"
grep -Eq "^52-54-00-00-18-04  - +current +v2 +0 " report.txt || fail "$D is not reported current"
[ "$(ls "$SERVED/reports/nights/")" = "$(basename "$(grep -o '/[^ ]*nights/[^ ]*\.txt' night.out)")" ] ||
  fail "the report file is not the one the night named"
pass "the night's report (reports/nights/, troy lab night-report): updated, failed, did not wake, current"

[ ! -e "$SERVED/reports/night/plan.json" ] || fail "the night's plan is left after the night"
in_ns busybox wget -q -O next.ipxe "http://127.0.0.1:$PORT/cgi-bin/boot?mac=${A//:/-}&platform=pcbios"
grep -q sanboot next.ipxe || fail "after the night, $A's next boot is not its local disk: $(cat next.ipxe)"
pass "after the night, the updated machine's next boot is its local disk again"

# troy lab wake by seat name: one more wake-up for C, captured.
before=$(count $C)
in_ns "$TROY" lab wake --hosts hosts --broadcast 10.218.0.255 R18-03 >/dev/null
sleep 0.5
[ "$(count $C)" -gt "$before" ] || fail "troy lab wake R18-03 sent no packet for $C"
pass "troy lab wake R18-03 (a seat of the hosts file) sends $C's magic packets"

echo "night_e2e: $CHECKS checks passed"
