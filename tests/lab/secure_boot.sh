# The Secure Boot path end to end: OVMF with Secure Boot on and Debian's
# "snakeoil" test keys in PK, KEK and db (standing in for the lab's own db
# key: the test signs with the snakeoil key) network-boots, over PXE/TFTP,
# the unified kernel image that initramfs/uki.sh builds (kernel, Troy's
# initrd with the lab's public key, and the command line in one signed PE).
#   bash tests/lab/secure_boot.sh TROY
# Three machines boot at once, two answered by rogue DHCP/TFTP servers
# (QEMU's user network), one by the lab's (pxe/serve.sh, in a network
# namespace of the test):
#   tampered: the lab's UKI with one byte of its initrd changed  -> refused
#   otherkey: a UKI with its own initrd, signed with a key not in db -> refused
#   signed:   the lab's signed UKI -> runs: troy verifies the lab's manifest
#             with the key inside the image, and its report reaches lighttpd
#             at the troy.server= inside the image.
# Under TCG (no KVM needed), about 90 s on 2 cores.
source "$(dirname "$0")/../e2e/common.sh"

OVMF_CODE=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd
OVMF_VARS=/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd
SNAKEOIL_KEY=/usr/share/ovmf/PkKek-1-snakeoil.key   # PEM, passphrase "snakeoil" (README.Debian)
SNAKEOIL_CERT=/usr/share/ovmf/PkKek-1-snakeoil.pem
for tool in qemu-system-x86_64 lighttpd dnsmasq ip busybox openssl cpio depmod objcopy sbsign sbverify; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool is missing (bash scripts/install-deps.sh)"; exit 77; }
done
for file in "$OVMF_CODE" "$OVMF_VARS" "$SNAKEOIL_KEY" "$SNAKEOIL_CERT" /usr/lib/systemd/boot/efi/linuxx64.efi.stub; do
  [ -f "$file" ] || { echo "SKIP: $file is missing (apt-get install ovmf systemd-boot-efi)"; exit 77; }
done
BOOT_TIMEOUT=${TROY_BOOT_TIMEOUT:-300}
MiB=1048576

# --- the lab: manifest key, one published version, payload, signed UKI ---
openssl genpkey -algorithm ed25519 -out lab.key 2>/dev/null
openssl pkey -in lab.key -pubout -out lab.pub
head -c $((4 * MiB)) /dev/urandom > v1.raw
"$TROY" capture v1.raw base.vhdx 2>/dev/null
SERVED=$WORK/served
mkdir -p "$SERVED"
"$TROY" publish --dir "$SERVED" --key lab.key --disk "size=$((4 * MiB)) serial=LAB-PC-*" --name v1 base.vhdx >/dev/null

# The lab's network: a network namespace of this test with a bridge (the
# classroom switch), the server's address on it and a tap for the machine.
NS=troy-secure-boot-$$
SERVER=10.99.0.1 PORT=8080
ip netns add "$NS" 2>/dev/null || { echo "SKIP: cannot create a network namespace (needs root)"; exit 77; }
trap 'ip netns del "$NS" 2>/dev/null || true; rm -rf "$WORK"' EXIT
ip -n "$NS" link set lo up
ip -n "$NS" link add br0 type bridge
ip -n "$NS" addr add "$SERVER/24" dev br0
ip -n "$NS" link set br0 up
ip -n "$NS" tuntap add tap0 mode tap
ip -n "$NS" link set tap0 master br0 up
bash "$ROOT/initramfs/build.sh" --troy "$TROY" --key lab.pub --out "$SERVED/boot" \
  --cache "${TROY_PAYLOAD_CACHE:-$ROOT/build/payload-cache}" 2>build.log ||
  { cat build.log >&2; fail "initramfs/build.sh failed"; }
openssl pkey -in "$SNAKEOIL_KEY" -passin pass:snakeoil -out db.key
bash "$ROOT/initramfs/uki.sh" --boot "$SERVED/boot" --server "http://$SERVER:$PORT" \
  --kernel-args "console=ttyS0 troy.wait=0" --sign-key db.key --sign-cert "$SNAKEOIL_CERT" 2>uki.log ||
  { cat uki.log >&2; fail "initramfs/uki.sh failed"; }
UKI=$SERVED/boot/troy.efi
sbverify --cert "$SNAKEOIL_CERT" "$UKI" >/dev/null 2>&1 || fail "troy.efi does not verify against the db certificate"
grep -q "troy.then=poweroff" uki.log || fail "uki.sh did not default to troy.then=poweroff: $(cat uki.log)"
pass "payload built; troy.efi signed with the (snakeoil) db key"

# The rogue answers. tampered: one byte in the middle of the .initrd section.
mkdir -p tftp-tampered tftp-otherkey
read -r initrd_size initrd_offset < <(objdump -h "$UKI" | awk '$2 == ".initrd" { print $3, $6 }')
cp "$UKI" tftp-tampered/troy.efi
at=$((0x$initrd_offset + 0x$initrd_size / 2))
old=$(od -An -tx1 -j "$at" -N 1 "$UKI" | tr -d ' ')
printf "\\x$(printf %02x $(( 0x$old ^ 0x01 )))" | dd of=tftp-tampered/troy.efi bs=1 seek="$at" conv=notrunc status=none
cmp -s "$UKI" tftp-tampered/troy.efi && fail "the tampered image is unchanged"
# otherkey: what a student would build: Debian's kernel, their own initrd,
# signed with their own key.
mkdir -p rogue/root rogue/boot
printf '#!/bin/sh\necho ROGUE PAYLOAD RAN\n' > rogue/root/init
chmod 755 rogue/root/init
(cd rogue/root && echo init | cpio -o -H newc --quiet | gzip) > rogue/boot/initrd.img
cp "$SERVED/boot/vmlinuz" rogue/boot/vmlinuz
openssl req -new -x509 -newkey rsa:2048 -nodes -sha256 -days 30 -subj "/CN=Not the lab/" \
  -keyout other.key -out other.crt 2>/dev/null
bash "$ROOT/initramfs/uki.sh" --boot rogue/boot --server "http://$SERVER:$PORT" \
  --kernel-args "console=ttyS0" --sign-key other.key --sign-cert other.crt \
  --out tftp-otherkey/troy.efi 2>/dev/null || fail "uki.sh could not sign with another key"
pass "rogue images: the lab's with one byte changed in the initrd; one with its own initrd and key"

# serve.sh refuses to hand out a troy.efi that carries no signature.
mkdir -p unsigned/boot
cp "$SERVED/boot/vmlinuz" "$SERVED/manifest" unsigned/ 2>/dev/null; mv unsigned/vmlinuz unsigned/boot/
cp "$UKI" unsigned/boot/troy.efi
sbattach --remove unsigned/boot/troy.efi 2>/dev/null
bash "$ROOT/pxe/serve.sh" --served unsigned --troy "$TROY" --no-dhcp --check 2>unsigned.log &&
  fail "serve.sh accepted an unsigned troy.efi"
grep -q 'troy.efi is not signed' unsigned.log || fail "serve.sh's refusal does not say why: $(cat unsigned.log)"
pass "serve.sh refuses an unsigned troy.efi"

# --- the lab server (pxe/serve.sh: dnsmasq and lighttpd) and three machines ---
ip netns exec "$NS" bash "$ROOT/pxe/serve.sh" --served "$SERVED" --troy "$TROY" --interface br0 \
  --dhcp-range 10.99.0.50,10.99.0.99,1h --http-port "$PORT" --http-bind "$SERVER" 2>serve.log &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null || true; wait 2>/dev/null || true; ip netns del "$NS" 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 50); do
  ip netns exec "$NS" busybox wget -q -O /dev/null "http://$SERVER:$PORT/manifest" 2>/dev/null && break
  sleep 0.1
done
ip netns exec "$NS" busybox wget -q -O /dev/null "http://$SERVER:$PORT/manifest" ||
  { cat serve.log >&2; fail "pxe/serve.sh does not serve the manifest"; }
grep -q 'UEFI machines: signed troy.efi' serve.log || { cat serve.log >&2; fail "serve.sh does not give UEFI machines troy.efi"; }
grep -q 'legacy BIOS machines: .*UNVERIFIED' serve.log || fail "serve.sh does not say that BIOS machines are unverified"

start=$SECONDS
# boot_uki NAME NETDEV MAC [ip netns exec NS]: a machine whose NIC is on
# NETDEV; the rogue ones on QEMU's user network, whose DHCP/TFTP server
# answers PXE with a rogue troy.efi; its screen in NAME.console.
# -global ...secure=on and smm=on: the secboot firmware keeps its variables
# (the keys) behind SMM; romfile= : QEMU's iPXE option ROMs are unsigned, the
# firmware's own virtio-net driver does the PXE boot.
QEMU_PIDS=()
boot_uki() {
  local name=$1 netdev=$2 mac=$3
  shift 3
  cp "$OVMF_VARS" "$name.vars"
  "$@" qemu-system-x86_64 -machine q35,smm=on -accel tcg -m 768 -nographic -no-reboot \
    -global driver=cfi.pflash01,property=secure,value=on \
    -drive if=pflash,format=raw,unit=0,readonly=on,file="$OVMF_CODE" \
    -drive if=pflash,format=raw,unit=1,file="$name.vars" \
    -netdev "$netdev" \
    -device "virtio-net-pci,netdev=net0,mac=$mac,romfile=" \
    -drive "file=$WORK/$name.disk,format=raw,if=none,id=disk0" -device virtio-blk-pci,drive=disk0,serial=LAB-PC-0001 \
    -boot n >"$name.console" 2>&1 </dev/null &
  QEMU_PIDS+=($!)
}
# screen NAME: its console without carriage returns and escape sequences.
screen() { tr -d '\r' <"$1.console" | sed 's/\x1b\[[0-9;=]*[a-zA-Z]//g'; }
# wait_for NAME PID PATTERN: until the console shows PATTERN, the machine
# stops, or BOOT_TIMEOUT; then the machine is killed (SIGKILL: QEMU 7.2 under
# TCG sometimes hangs on SIGTERM). False when it had to be killed.
wait_for() {
  local name=$1 pid=$2 pattern=$3 deadline=$((SECONDS + BOOT_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do
    [ -n "$pattern" ] && grep -q "$pattern" "$name.console" 2>/dev/null && break
    sleep 0.2
  done
  local stopped=0
  kill -0 "$pid" 2>/dev/null || stopped=1
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  [ "$stopped" = 1 ]
}
# refused NAME PID: the firmware refused the image and nothing of it ran (after
# a refusal the firmware would try other boot options for minutes: killed).
refused() {
  local name=$1 pid=$2
  wait_for "$name" "$pid" 'Access Denied\|Security Violation\|EFI stub\|Linux version' || true
  screen "$name" >"$name.txt"
  ! grep -q 'EFI stub\|Linux version\|troy: boot payload\|ROGUE' "$name.txt" && grep -q 'Access Denied' "$name.txt"
}
# Three machines at once (each QEMU is one emulated CPU; two cores share them).
for name in tampered otherkey signed; do cp v1.raw "$name.disk"; done
trap 'kill -9 ${QEMU_PIDS[*]} 2>/dev/null || true; kill $SERVER_PID 2>/dev/null || true; wait 2>/dev/null || true
      ip netns del "$NS" 2>/dev/null || true; rm -rf "$WORK"' EXIT
MAC=52:54:00:5b:00:03
boot_uki tampered "user,id=net0,tftp=$WORK/tftp-tampered,bootfile=troy.efi" 52:54:00:5b:00:01
boot_uki otherkey "user,id=net0,tftp=$WORK/tftp-otherkey,bootfile=troy.efi" 52:54:00:5b:00:02
boot_uki signed "tap,id=net0,ifname=tap0,script=no,downscript=no" "$MAC" ip netns exec "$NS"

refused tampered "${QEMU_PIDS[0]}" || { tail -n 30 tampered.txt >&2; fail "the UKI with one initrd byte changed was not refused"; }
grep -m 1 'Access Denied' tampered.txt
pass "Secure Boot refused the lab's UKI with one byte of its initrd changed ($((SECONDS - start)) s)"
refused otherkey "${QEMU_PIDS[1]}" || { tail -n 30 otherkey.txt >&2; fail "the UKI signed by another key was not refused"; }
pass "Secure Boot refused a UKI with another initrd signed by a key not in db ($((SECONDS - start)) s)"
cmp -s tampered.disk v1.raw && cmp -s otherkey.disk v1.raw || fail "a refused machine's disk changed"

# Stopped early when its PXE boot fails (the firmware would go on for minutes).
wait_for signed "${QEMU_PIDS[2]}" 'PXEv4.*): [A-Z]' ||
  { screen signed | tail -n 40 >&2; tail -n 20 serve.log >&2
    fail "the machine booting the signed UKI did not run it to power-off (within $BOOT_TIMEOUT s)"; }
screen signed >signed.txt
fail_with_console() { tail -n 40 signed.txt >&2; fail "$*"; }
grep -q 'sent .*/troy.efi to' serve.log || { cat serve.log >&2; fail "the lab's dnsmasq did not send troy.efi by TFTP"; }
grep -q 'troy: boot payload' signed.txt || fail_with_console "the signed UKI did not run troy's payload"
grep -q 'Secure boot enabled' signed.txt || fail_with_console "the kernel does not report Secure Boot enabled"
REPORT=$SERVED/reports/${MAC//:/-}.json
[ -f "$REPORT" ] || fail_with_console "no report from $MAC reached lighttpd"
python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); sys.exit(0 if r["result"] == "ok" and "v1" in r["message"] else 1)' "$REPORT" ||
  fail "the report is not ok at v1: $(cat "$REPORT")"
cmp -s signed.disk v1.raw || fail "the disk changed"
pass "the lab's dnsmasq gave the UEFI machine troy.efi; it ran troy: manifest verified with the key inside it, report received: ok at v1 ($((SECONDS - start)) s)"

echo "secure_boot: $CHECKS checks passed"
