# A delta larger than the machine's RAM, applied by the boot payload
# (docs/streaming.md): QEMU with 192 MiB of RAM boots over the network and
# applies a 208 MiB delta, which the payload reads from lighttpd piece by
# piece (its work folder is RAM: a whole download could not fit). Then the
# disk is checked byte for byte. The streaming itself (Range requests, pieces
# verified, bytes fetched after a kill) is checked on the host in
# tests/e2e/stream.sh; this boot proves the RAM bound.
#   bash tests/lab/stream_e2e.sh TROY
source "$(dirname "$0")/../e2e/common.sh"

for tool in qemu-system-x86_64 lighttpd busybox openssl cpio depmod; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool is missing (bash scripts/install-deps.sh)"; exit 77; }
done
[ -f /usr/share/qemu/pxe-virtio.rom ] || [ -f /usr/lib/ipxe/qemu/pxe-virtio.rom ] ||
  { echo "SKIP: QEMU's iPXE NIC ROMs are missing (apt-get install ipxe-qemu)"; exit 77; }

MiB=1048576
RAM_MIB=192
DISK_SIZE=$((240 * MiB))
BOOT_TIMEOUT=${TROY_BOOT_TIMEOUT:-300}

openssl genpkey -algorithm ed25519 -out lab.key 2>/dev/null
openssl pkey -in lab.key -pubout -out lab.pub
python3 - <<'PY'
import random
rng = random.Random(16)
disk = bytearray(rng.randbytes(240 << 20))
open("v1.raw", "wb").write(disk)
disk[16 << 20:224 << 20] = rng.randbytes(208 << 20)
open("v2.raw", "wb").write(disk)
PY
"$TROY" capture v1.raw base.vhdx 2>/dev/null
"$TROY" diff base.vhdx v2.raw -o v2.avhdx 2>/dev/null
SERVED=$WORK/served
mkdir -p "$SERVED"
"$TROY" publish --dir "$SERVED" --key lab.key --name v1 base.vhdx --disk "size=$DISK_SIZE serial=LAB-PC-*" 2>/dev/null
"$TROY" publish --dir "$SERVED" --key lab.key --name v2 v2.avhdx 2>/dev/null
rm base.vhdx v2.avhdx
DELTA_SIZE=$(stat -c %s "$SERVED/versions/v2.avhdx")
[ "$DELTA_SIZE" -gt $((RAM_MIB * MiB)) ] || fail "the delta ($DELTA_SIZE bytes) is not larger than the machine's RAM"

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
bash "$ROOT/initramfs/build.sh" --troy "$TROY" --key lab.pub --out "$SERVED/boot" \
  --cache "${TROY_PAYLOAD_CACHE:-$ROOT/build/payload-cache}" \
  --http-url "http://\${next-server}:$PORT" --kernel-args "console=ttyS0 troy.then=poweroff troy.wait=0" >/dev/null
bash "$ROOT/pxe/serve.sh" --served "$SERVED" --troy "$TROY" --http-port "$PORT" --http-bind 127.0.0.1 --no-dhcp 2>serve.log &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null || true; wait 2>/dev/null || true; cp stream.console /tmp/stream.console 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 50); do
  busybox wget -q -O /dev/null "http://127.0.0.1:$PORT/manifest" 2>/dev/null && break
  sleep 0.1
done
busybox wget -q -O /dev/null "http://127.0.0.1:$PORT/manifest" || { cat serve.log >&2; fail "lighttpd does not serve the manifest"; }

echo "stream_e2e: setup took $SECONDS s"
cp v1.raw disk.raw
timeout "$BOOT_TIMEOUT" qemu-system-x86_64 -accel tcg -m "$RAM_MIB" -nographic -no-reboot \
  -boot n -netdev "user,id=net0,tftp=$SERVED/boot,bootfile=boot.ipxe" \
  -device "virtio-net-pci,netdev=net0,mac=52:54:00:00:01:01" \
  -drive "file=disk.raw,format=raw,if=none,id=disk0" -device virtio-blk-pci,drive=disk0,serial=LAB-PC-0001 \
  >stream.console 2>&1 </dev/null || { tail -n 40 stream.console >&2; fail "the machine did not power off within $BOOT_TIMEOUT s"; }
cmp -s disk.raw v2.raw || { tail -n 40 stream.console >&2; fail "the disk is not v2 byte for byte"; }
grep -q "streaming v2 ($DELTA_SIZE bytes)" stream.console || { tail -n 40 stream.console >&2; fail "the payload did not stream"; }
grep -q 'TROY: OK' stream.console || fail "the screen shows no TROY: OK"
pass "a $((DELTA_SIZE / MiB)) MiB delta applied by a $RAM_MIB MiB machine, byte for byte"
echo "stream_e2e: $CHECKS checks passed"
