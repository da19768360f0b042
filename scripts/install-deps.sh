#!/usr/bin/env bash
# Installs, as root on Debian 12, whatever Troy's build, tests and demo need
# and the machine lacks. Installs nothing when everything is present.
set -euo pipefail

packages=(
  cmake make g++ pkg-config
  libcli11-dev libfmt-dev liburing-dev libgtest-dev   # build
  libssl-dev                                          # SHA-256 (libcrypto) for troy fingerprint and apply
  nlohmann-json3-dev libcurl4-openssl-dev             # troy update and troy lab: JSON, HTTP
  clang libclang-rt-14-dev                              # fuzzing (libFuzzer)
  qemu-utils libvhdi-utils python3-libvhdi python3      # outside readers used as oracles
  bzip2 time                                            # fixtures, benchmarks
  strace                                                # crash tests: kill -9 at the Nth write
  ntfs-3g                                               # native-VHD-boot labs: the NTFS driver (docs/vhdboot.md)
  openssl                                               # lab signing keys (troy publish)
  busybox-static kmod cpio                              # boot payload (initramfs/build.sh)
  ipxe dnsmasq-base lighttpd                            # PXE and HTTP serving (pxe/)
  udpcast                                               # multicast delivery (troy lab multicast, the payload; docs/delivery.md)
  qemu-system-x86 ipxe-qemu                             # the boot payload's end-to-end test
  systemd-boot-efi binutils sbsigntool efitools        # Secure Boot: the signed unified kernel image (initramfs/uki.sh)
  ovmf                                                  # its test: UEFI firmware with Secure Boot (tests/lab/secure_boot.sh)
)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
# The vhd-lib oracle needs node and npm; any installation of them will do.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: everything needed is installed"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}; run as root (or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
