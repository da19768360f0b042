#!/usr/bin/env bash
# Installs, as root on Debian 12, what Troy needs and the machine lacks.
# Installs nothing when everything is present.
#   scripts/install-deps.sh            the build, the tests, the demo (CI, ./dev test)
#   scripts/install-deps.sh --server   only what a lab server runs: the troy
#                                      package's Depends and Recommends
#   scripts/install-deps.sh --list-server   print that list (tests/package/deb.sh
#                                      compares it with debian/control)
set -euo pipefail

# What the lab server runs (Makefile.lab, pxe/, initramfs/): debian/control's
# Depends and Recommends, kept equal by tests/package/deb.sh.
server_packages=(
  make                                                  # troy-lab (Makefile.lab)
  openssl                                               # lab signing keys (troy publish)
  busybox-static kmod cpio                              # boot payload (initramfs/build.sh)
  ipxe dnsmasq-base lighttpd                            # PXE and HTTP serving (pxe/)
  udpcast                                               # multicast delivery (troy lab multicast, the payload; docs/delivery.md)
  ntfs-3g                                               # native-VHD-boot labs: the payload's NTFS driver (initramfs/build.sh, docs/vhdboot.md)
  systemd-boot-efi binutils sbsigntool efitools        # Secure Boot: the signed unified kernel image (initramfs/uki.sh)
)
# Building troy, its tests and its package: what CI and a developer need on top.
toolchain_packages=(
  cmake g++ pkg-config
  libcli11-dev libfmt-dev liburing-dev libgtest-dev   # build
  libssl-dev                                          # SHA-256 (libcrypto) for troy fingerprint and apply
  nlohmann-json3-dev libcurl4-openssl-dev             # troy update and troy lab: JSON, HTTP
  clang libclang-rt-14-dev                              # fuzzing (libFuzzer)
  qemu-utils libvhdi-utils python3-libvhdi python3      # outside readers used as oracles
  bzip2 time curl                                       # fixtures, benchmarks, the lab server's tests
  strace                                                # crash tests: kill -9 at the Nth write
  qemu-system-x86 ipxe-qemu                             # the boot payload's end-to-end test
  iproute2                                              # network namespaces, veth, bridge, tc (tests/lab/delivery_*.sh, night_e2e.sh)
  aria2 opentracker mktorrent python3-libtorrent        # BitTorrent against multicast (bench/delivery_torrent.sh only)
  chromium                                              # its status page read in a headless browser (tests/lab/boot_e2e.sh)
  ovmf                                                  # its test: UEFI firmware with Secure Boot (tests/lab/secure_boot.sh)
  debhelper help2man lintian dpkg-dev build-essential   # the Debian package and its test (debian/, tests/package/deb.sh)
)

case ${1:-} in
  --list-server) printf '%s\n' "${server_packages[@]}"; exit 0 ;;
  --server) packages=("${server_packages[@]}") ;;
  "") packages=("${server_packages[@]}" "${toolchain_packages[@]}") ;;
  *) echo "usage: $0 [--server | --list-server]" >&2; exit 2 ;;
esac

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${1:-}" != --server ]; then
  # The vhd-lib oracle needs node and npm; any installation of them will do.
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
fi

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
