# Two QEMU machines boot the payload from the network together and take
# the multicast path (issue 17): QEMU's user networking has no multicast,
# so each machine's NIC is a tap device on a bridge inside a network
# namespace this test makes (tests/lab/delivery_lib.sh), with the server
# (pxe/serve.sh: dnsmasq for DHCP/TFTP, lighttpd, troy lab multicast) in
# another. Both disks hold v2; both must end at v3 byte for byte, each
# screen saying the pieces came by multicast.
source "$(dirname "$0")/../e2e/common.sh"
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (network namespaces, tap devices)"; exit 77; }
for tool in ip qemu-system-x86_64 lighttpd dnsmasq udp-sender udp-receiver busybox openssl cpio depmod; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool is missing (bash scripts/install-deps.sh)"; exit 77; }
done
[ -f /usr/share/qemu/pxe-virtio.rom ] || [ -f /usr/lib/ipxe/qemu/pxe-virtio.rom ] ||
  { echo "SKIP: QEMU's iPXE NIC ROMs are missing (apt-get install ipxe-qemu)"; exit 77; }
source "$ROOT/tests/lab/delivery_lib.sh"
SERVE_PID=
cleanup() {
  [ -z "$SERVE_PID" ] || kill "$SERVE_PID" 2>/dev/null || true
  netns_down
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

MiB=1048576
DISK_SIZE=$((32 * MiB))
BOOT_TIMEOUT=${TROY_BOOT_TIMEOUT:-300}
openssl genpkey -algorithm ed25519 -out lab.key 2>/dev/null
openssl pkey -in lab.key -pubout -out lab.pub
python3 "$ROOT/fixtures/make_lab_versions.py" 32 16
"$TROY" capture v1.raw base.vhdx 2>/dev/null
"$TROY" diff base.vhdx v2.raw -o v2.avhdx 2>/dev/null
"$TROY" diff v2.avhdx v3.raw -o v3.avhdx 2>/dev/null
SERVED=$WORK/served
mkdir -p "$SERVED"
"$TROY" publish --dir "$SERVED" --key lab.key --name v1 --disk "size=$DISK_SIZE serial=LAB-PC-*" base.vhdx 2>/dev/null
"$TROY" publish --dir "$SERVED" --key lab.key --name v2 v2.avhdx 2>/dev/null
"$TROY" publish --dir "$SERVED" --key lab.key --name v3 v3.avhdx 2>/dev/null
bash "$ROOT/initramfs/build.sh" --troy "$TROY" --key lab.pub --out "$SERVED/boot" \
  --cache "${TROY_PAYLOAD_CACHE:-$ROOT/build/payload-cache}" \
  --http-url "http://$NETNS_SERVER_IP:8080" --kernel-args "console=ttyS0 troy.then=poweroff troy.wait=0" 2>payload.log ||
  { cat payload.log >&2; fail "payload not built"; }
cpio -t < <(gzip -dc "$SERVED/boot/initrd.img") 2>/dev/null | grep -x usr/bin/udp-receiver >/dev/null ||
  fail "the payload has no udp-receiver"
pass "payload built, with udp-receiver"

netns_up 0
ip netns exec "$(netns_server)" bash "$ROOT/pxe/serve.sh" --served "$SERVED" --troy "$TROY" --http-port 8080 \
  --interface eth0 --dhcp-range 10.77.0.50,10.77.0.99,1h --multicast eth0 \
  --multicast-option "--min-receivers 2 --min-wait 0 --max-wait 120 --receiver-wait 200" 2>serve.log &
SERVE_PID=$!
for _ in $(seq 100); do [ -f "$SERVED/delivery" ] && break; sleep 0.1; done
[ -f "$SERVED/delivery" ] || { cat serve.log >&2; fail "no multicast session announced"; }

# A machine: its disk at v2 and a tap on the bridge, in the bridge's namespace.
pids=()
for i in 1 2; do
  cp v2.raw "disk$i.raw"
  ip -n "$(netns_bridge)" tuntap add "tap$i" mode tap
  ip -n "$(netns_bridge)" link set "tap$i" master br0 up
  ip netns exec "$(netns_bridge)" timeout "$BOOT_TIMEOUT" qemu-system-x86_64 -accel tcg -m 768 -nographic \
    -no-reboot -boot n -netdev "tap,id=net0,ifname=tap$i,script=no,downscript=no" \
    -device "virtio-net-pci,netdev=net0,mac=52:54:00:77:00:0$i" \
    -drive "file=disk$i.raw,format=raw,if=none,id=disk0" -device "virtio-blk-pci,drive=disk0,serial=LAB-PC-000$i" \
    >"m$i.console" 2>&1 </dev/null &
  pids+=($!)
done
for i in 1 2; do
  wait "${pids[$((i - 1))]}" || { tail -n 40 "m$i.console" >&2; fail "machine $i did not power off within $BOOT_TIMEOUT s"; }
done
for i in 1 2; do
  grep -q "multicast: [1-9][0-9]* of [0-9]* pieces received" "m$i.console" ||
    { tail -n 40 "m$i.console" >&2; fail "machine $i did not receive by multicast"; }
  cmp -s "disk$i.raw" v3.raw || { tail -n 40 "m$i.console" >&2; fail "machine $i's disk is not v3"; }
done
pass "two QEMU machines booted together, received v3 by one multicast session, and hold it byte for byte"
echo "delivery_qemu: $CHECKS checks passed"
