#!/usr/bin/env bash
# Builds the boot payload for UEFI Secure Boot machines: ONE signed PE file
# (a unified kernel image, "UKI") holding systemd's EFI stub, Debian's kernel,
# Troy's initrd (troy and the lab's manifest public key) and the kernel
# command line (troy.server=...), signed with the lab's Secure Boot db key.
# The firmware of a machine that trusts the lab's db certificate runs it
# directly from PXE and refuses any other or changed file; under Secure Boot
# the stub ignores a command line given by whoever loaded it (systemd 252's
# stub.c, use_load_options), so the one inside is the one that runs.
#
#   initramfs/uki.sh --boot DIR --server URL [--kernel-args ARGS]
#                    --sign-key DB.key --sign-cert DB.crt [--out FILE]
#
# DIR holds vmlinuz and initrd.img (initramfs/build.sh); FILE defaults to
# DIR/troy.efi. Packages: systemd-boot-efi (the stub), binutils (objcopy),
# sbsigntool (sbsign, sbverify).
set -euo pipefail

boot= server= kernel_args= sign_key= sign_cert= out=
stub=${TROY_UKI_STUB:-/usr/lib/systemd/boot/efi/linuxx64.efi.stub}
usage() {
  echo "usage: $0 --boot DIR --server URL [--kernel-args ARGS] --sign-key DB.key --sign-cert DB.crt [--out FILE]" >&2
  exit 2
}
while [ $# -gt 0 ]; do
  case $1 in
    --boot) boot=$2; shift 2 ;;
    --server) server=$2; shift 2 ;;
    --kernel-args) kernel_args=$2; shift 2 ;;
    --sign-key) sign_key=$2; shift 2 ;;
    --sign-cert) sign_cert=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) usage ;;
  esac
done
[ -n "$boot" ] && [ -n "$server" ] && [ -n "$sign_key" ] && [ -n "$sign_cert" ] || usage
out=${out:-$boot/troy.efi}
die() { echo "initramfs/uki.sh: $*" >&2; exit 2; }

[ -f "$stub" ] || die "$stub is missing (apt-get install systemd-boot-efi)"
for tool in objcopy objdump sbsign sbverify; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install binutils sbsigntool)"
done
for file in vmlinuz initrd.img; do
  [ -f "$boot/$file" ] || die "$boot/$file is missing (build the payload first: initramfs/build.sh)"
done
case $server in
  http://*|https://*) ;;
  *) die "--server $server: not an http:// URL (the lab server as the machines reach it, e.g. http://10.0.0.1:8080)" ;;
esac
# No iPXE runs before this image, so nothing would fill in ${next-server}.
case $server in *'$'*) die "--server $server: give the server's address itself (no iPXE variables here)" ;; esac
case " $kernel_args " in *" troy.server="*) die "--kernel-args: troy.server= is set by --server" ;; esac
openssl x509 -in "$sign_cert" -noout 2>/dev/null || die "$sign_cert: not a PEM certificate (make -f Makefile.lab secure-boot-keys)"
# A UKI is booted by the firmware, not by /cgi-bin/boot, so nothing hands a
# just-updated machine to its local disk: reboot would boot the payload again.
case " $kernel_args " in
  *" troy.then="*) ;;
  *) kernel_args="$kernel_args troy.then=poweroff" ;;
esac
cmdline="troy.server=$server${kernel_args:+ $kernel_args}"
cmdline=$(echo "$cmdline" | tr -s ' ')

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '%s' "$cmdline" > "$work/cmdline"
printf 'NAME="Troy boot payload"\nID=troy\nVERSION_ID="%s"\n' "$(date -u +%Y%m%d%H%M%S)" > "$work/osrel"

# The stub's own sections end below 0x20000 (systemd 252: at 0x19134); the
# added ones go above it, the kernel and initrd each on a 16 MiB boundary
# (the layout systemd's documentation gives for objcopy-built images).
stub_end=0
while read -r size vma; do
  [ $((0x$vma + 0x$size)) -le "$stub_end" ] || stub_end=$((0x$vma + 0x$size))
done < <(objdump -h "$stub" | awk '$1 ~ /^[0-9]+$/ { print $3, $4 }')
[ "$stub_end" -le $((0x20000)) ] || die "$stub: its sections end at $stub_end, above 0x20000 (a newer stub: adjust the layout)"
linux_size=$(stat -c %s "$boot/vmlinuz")
initrd_vma=$(( (0x2000000 + linux_size + 0xffffff) / 0x1000000 * 0x1000000 ))
objcopy \
  --add-section .osrel="$work/osrel" --change-section-vma .osrel=0x20000 \
  --add-section .cmdline="$work/cmdline" --change-section-vma .cmdline=0x30000 \
  --add-section .linux="$boot/vmlinuz" --change-section-vma .linux=0x2000000 \
  --add-section .initrd="$boot/initrd.img" --change-section-vma .initrd="$(printf '0x%x' "$initrd_vma")" \
  "$stub" "$work/unsigned.efi"

# sbsign warns about bytes after the last section (objcopy's symbol table);
# they are inside the signed hash all the same.
sbsign --key "$sign_key" --cert "$sign_cert" --output "$work/signed.efi" "$work/unsigned.efi" 2>"$work/sbsign.log" ||
  die "sbsign failed: $(grep -v 'data remaining' "$work/sbsign.log" | head -n 3)"
sbverify --cert "$sign_cert" "$work/signed.efi" >/dev/null 2>&1 ||
  die "the signed image does not verify against $sign_cert (is $sign_key its private key?)"
mkdir -p "$(dirname "$out")"
cp "$work/signed.efi" "$out.tmp"
mv "$out.tmp" "$out"
echo "initramfs/uki.sh: $out ($(du -h "$out" | cut -f1)), signed by $(openssl x509 -in "$sign_cert" -noout -subject | sed 's/^subject=//'); command line: $cmdline" >&2
