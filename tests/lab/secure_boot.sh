# The Secure Boot path end to end: OVMF with Secure Boot on and Debian's
# "snakeoil" test keys in PK, KEK and db (standing in for the lab's own db
# key: the test signs with the snakeoil key) network-boots, over PXE/TFTP,
# the unified kernel image that initramfs/uki.sh builds (kernel, Troy's
# initrd with the lab's public key, and the command line in one signed PE).
#   bash tests/lab/secure_boot.sh TROY
# Three machines boot at once, each answered by its own DHCP/TFTP server
# (QEMU's user network), as a rogue server would answer:
#   tampered: the lab's UKI with one byte of its initrd changed  -> refused
#   otherkey: the same UKI signed with a key not in db -> refused
#   signed:   the lab's signed UKI -> runs: troy verifies the lab's manifest
#             with the key inside the image, and its report reaches lighttpd
#             at the troy.server= inside the image.
# Under TCG (no KVM needed), about 90 s on 2 cores.
source "$(dirname "$0")/../e2e/common.sh"

OVMF_CODE=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd
OVMF_VARS=/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd
SNAKEOIL_KEY=/usr/share/ovmf/PkKek-1-snakeoil.key   # PEM, passphrase "snakeoil" (README.Debian)
SNAKEOIL_CERT=/usr/share/ovmf/PkKek-1-snakeoil.pem
for tool in qemu-system-x86_64 lighttpd busybox openssl cpio depmod objcopy sbsign sbverify; do
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
"$TROY" publish --dir "$SERVED" --key lab.key --name v1 --disk "size=$((4 * MiB)) serial=LAB-PC-*" base.vhdx >/dev/null

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
bash "$ROOT/initramfs/build.sh" --troy "$TROY" --key lab.pub --out "$SERVED/boot" \
  --cache "${TROY_PAYLOAD_CACHE:-$ROOT/build/payload-cache}" 2>build.log ||
  { cat build.log >&2; fail "initramfs/build.sh failed"; }
openssl pkey -in "$SNAKEOIL_KEY" -passin pass:snakeoil -out db.key
# QEMU's user network: the host's 127.0.0.1 is 10.0.2.2 for the machine.
bash "$ROOT/initramfs/uki.sh" --boot "$SERVED/boot" --server "http://10.0.2.2:$PORT" \
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
openssl req -new -x509 -newkey rsa:2048 -nodes -sha256 -days 30 -subj "/CN=Not the lab/" \
  -keyout other.key -out other.crt 2>/dev/null
bash "$ROOT/initramfs/uki.sh" --boot "$SERVED/boot" --server "http://10.0.2.2:$PORT" \
  --kernel-args "console=ttyS0 troy.wait=0" --sign-key other.key --sign-cert other.crt \
  --out tftp-otherkey/troy.efi 2>/dev/null || fail "uki.sh could not sign with another key"
pass "rogue images: one byte changed in the initrd; signed with another key"

# --- the server, the machine ---
bash "$ROOT/pxe/serve.sh" --served "$SERVED" --troy "$TROY" --http-port "$PORT" --http-bind 127.0.0.1 --no-dhcp 2>serve.log &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 50); do
  busybox wget -q -O /dev/null "http://127.0.0.1:$PORT/manifest" 2>/dev/null && break
  sleep 0.1
done

cp v1.raw disk.raw
start=$SECONDS
# boot_uki NAME TFTP_DIR MAC: a machine whose DHCP/TFTP server (QEMU's user
# network) answers PXE with TFTP_DIR/troy.efi; its screen in NAME.console.
# -global ...secure=on and smm=on: the secboot firmware keeps its variables
# (the keys) behind SMM; romfile= : QEMU's iPXE option ROMs are unsigned, the
# firmware's own virtio-net driver does the PXE boot.
QEMU_PIDS=()
boot_uki() {
  local name=$1 tftp=$2 mac=$3
  cp "$OVMF_VARS" "$name.vars"
  timeout "$BOOT_TIMEOUT" qemu-system-x86_64 -machine q35,smm=on -accel tcg -m 768 -nographic -no-reboot \
    -global driver=cfi.pflash01,property=secure,value=on \
    -drive if=pflash,format=raw,unit=0,readonly=on,file="$OVMF_CODE" \
    -drive if=pflash,format=raw,unit=1,file="$name.vars" \
    -netdev "user,id=net0,tftp=$tftp,bootfile=troy.efi" \
    -device "virtio-net-pci,netdev=net0,mac=$mac,romfile=" \
    -drive "file=$WORK/$name.disk,format=raw,if=none,id=disk0" -device virtio-blk-pci,drive=disk0,serial=LAB-PC-0001 \
    -boot n >"$name.console" 2>&1 </dev/null &
  QEMU_PIDS+=($!)
}
# screen NAME: its console without carriage returns and escape sequences.
screen() { tr -d '\r' <"$1.console" | sed 's/\x1b\[[0-9;=]*[a-zA-Z]//g'; }
# refused NAME: waits until the firmware refuses the image or something of it
# runs; the machine is then stopped (after a refusal it would try other boot
# options for minutes).
refused() {
  local name=$1 pid=$2
  for _ in $(seq $((BOOT_TIMEOUT * 5))); do
    grep -q 'Access Denied\|Security Violation\|EFI stub\|Linux version' "$name.console" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  screen "$name" >"$name.txt"
  ! grep -q 'EFI stub\|Linux version\|troy: boot payload' "$name.txt" && grep -q 'Access Denied' "$name.txt"
}
# Three machines at once (each QEMU is one emulated CPU; two cores share them).
for name in tampered otherkey signed; do cp v1.raw "$name.disk"; done
trap 'kill -9 ${QEMU_PIDS[*]} 2>/dev/null || true; kill $SERVER_PID 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
MAC=52:54:00:5b:00:03
boot_uki tampered "$WORK/tftp-tampered" 52:54:00:5b:00:01
boot_uki otherkey "$WORK/tftp-otherkey" 52:54:00:5b:00:02
boot_uki signed "$SERVED/boot" "$MAC"

refused tampered "${QEMU_PIDS[0]}" || { tail -n 30 tampered.txt >&2; fail "the UKI with one initrd byte changed was not refused"; }
grep -m 1 'Access Denied' tampered.txt
pass "Secure Boot refused the lab's UKI with one byte of its initrd changed ($((SECONDS - start)) s)"
refused otherkey "${QEMU_PIDS[1]}" || { tail -n 30 otherkey.txt >&2; fail "the UKI signed by another key was not refused"; }
pass "Secure Boot refused the same UKI signed by a key not in db ($((SECONDS - start)) s)"
cmp -s tampered.disk v1.raw && cmp -s otherkey.disk v1.raw || fail "a refused machine's disk changed"

wait "${QEMU_PIDS[2]}" || { screen signed | tail -n 40 >&2; fail "the machine booting the signed UKI did not power off by itself within $BOOT_TIMEOUT s"; }
screen signed >signed.txt
fail_with_console() { tail -n 40 signed.txt >&2; fail "$*"; }
grep -q 'troy: boot payload' signed.txt || fail_with_console "the signed UKI did not run troy's payload"
grep -q 'Secure boot enabled' signed.txt || fail_with_console "the kernel does not report Secure Boot enabled"
REPORT=$SERVED/reports/${MAC//:/-}.json
[ -f "$REPORT" ] || fail_with_console "no report from $MAC reached lighttpd"
python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); sys.exit(0 if r["result"] == "ok" and "v1" in r["message"] else 1)' "$REPORT" ||
  fail "the report is not ok at v1: $(cat "$REPORT")"
cmp -s signed.disk v1.raw || fail "the disk changed"
pass "the signed UKI ran troy: manifest verified with the key inside it, report received: ok at v1 ($((SECONDS - start)) s)"

echo "secure_boot: $CHECKS checks passed"
