#!/usr/bin/env bash
# Builds Troy's boot payload from Debian packages only: a Debian kernel
# (vmlinuz) and an initramfs (initrd.img) holding busybox-static, the kernel
# modules for common disks and NICs, `troy` with the shared libraries it
# needs, udpcast's udp-receiver (multicast delivery, docs/delivery.md), the lab's public key, and /init (initramfs/init, plain POSIX sh).
# With --http-url it also writes what PXE clients load before the payload:
# Debian's iPXE binaries, boot.ipxe (pxe/boot.ipxe.in) and the kernel
# arguments (cmdline, read by pxe/cgi/boot). For UEFI Secure Boot machines,
# initramfs/uki.sh then makes vmlinuz, initrd.img and the kernel arguments
# one signed troy.efi (make -f Makefile.lab payload does both).
#
#   initramfs/build.sh --troy build/troy --key lab.pub --out SERVED/boot [--cache DIR]
#                      [--http-url URL --kernel-args ARGS [--ipxe-dir /usr/lib/ipxe]]
#
# The kernel package is downloaded once (apt-get download) into the cache.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
troy= key= out= http_url= kernel_args= ipxe_dir=/usr/lib/ipxe
cache=${XDG_CACHE_HOME:-$HOME/.cache}/troy-payload
usage() {
  echo "usage: $0 --troy TROY --key PUBLIC.pem --out DIR [--cache DIR] [--http-url URL --kernel-args ARGS [--ipxe-dir DIR]]" >&2
  exit 2
}
while [ $# -gt 0 ]; do
  case $1 in
    --troy) troy=$2; shift 2 ;;
    --key) key=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --cache) cache=$2; shift 2 ;;
    --http-url) http_url=$2; shift 2 ;;
    --kernel-args) kernel_args=$2; shift 2 ;;
    --ipxe-dir) ipxe_dir=$2; shift 2 ;;
    *) usage ;;
  esac
done
[ -n "$troy" ] && [ -n "$key" ] && [ -n "$out" ] || usage
die() { echo "initramfs/build.sh: $*" >&2; exit 2; }
[ -x "$troy" ] || die "$troy: not an executable (build troy first: make build)"
openssl pkey -pubin -in "$key" -noout 2>/dev/null || die "$key: not a PEM public key (make one: make -f Makefile.lab keys)"
# grep reads the whole list: with -q it would stop at the match, and busybox's
# SIGPIPE would fail the pipeline (pipefail) now and then.
[ -x /bin/busybox ] && busybox --list | grep -x udhcpc >/dev/null || die "busybox-static is missing (apt-get install busybox-static)"
if [ -n "$http_url" ]; then
  for file in undionly.kpxe ipxe.efi snponly.efi; do
    [ -f "$ipxe_dir/$file" ] || die "$ipxe_dir/$file is missing (apt-get install ipxe)"
  done
fi
[ -x /usr/bin/udp-receiver ] || die "udp-receiver is missing (apt-get install udpcast)"
# Native-VHD-boot labs (docs/vhdboot.md): the NTFS partition is mounted with
# ntfs-3g (FUSE: the fuse module below and /dev/fuse), its label read with ntfslabel.
ntfs_tools=(/bin/ntfs-3g /sbin/ntfslabel /bin/ntfsfix)
for tool in "${ntfs_tools[@]}"; do
  [ -x "$tool" ] || die "$tool is missing (apt-get install ntfs-3g)"
done
for tool in depmod modprobe cpio gzip dpkg-deb; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install kmod cpio gzip dpkg)"
done

# Disks and NICs a lab machine (or QEMU) may have; modprobe resolves what each needs.
modules=(
  virtio_pci virtio_blk virtio_scsi virtio_net   # QEMU/KVM guests
  ahci sd_mod nvme                               # SATA and NVMe disks
  e1000 e1000e igb r8169                         # Intel and Realtek NICs
  fuse                                           # ntfs-3g (native-VHD-boot labs)
)

# The kernel: the version linux-image-amd64 depends on, fetched once.
mkdir -p "$cache"
package=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
if [ -z "$package" ]; then
  apt-get update -qq || true
  package=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
fi
[ -n "$package" ] || die "apt knows no linux-image-amd64 (check /etc/apt/sources.list)"
kernel_version=${package#linux-image-}
deb=$(ls "$cache/${package}"_*.deb 2>/dev/null | tail -n 1 || true)
if [ -z "$deb" ]; then
  echo "initramfs/build.sh: downloading $package" >&2
  (cd "$cache" && apt-get download "$package" >/dev/null 2>&1) || die "apt-get download $package failed"
  deb=$(ls "$cache/${package}"_*.deb | tail -n 1)
fi
kernel_tree=$cache/$kernel_version
if [ ! -f "$kernel_tree/boot/vmlinuz-$kernel_version" ]; then
  rm -rf "$kernel_tree"
  dpkg-deb -x "$deb" "$kernel_tree"
  depmod -b "$kernel_tree" "$kernel_version"   # the .deb ships no modules.dep
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc/troy,proc,sys,dev,tmp,run,var/lib/troy}

# busybox and its applets (not "busybox" itself: that link would loop, and
# the kernel then fails to run /init with error -40).
# One perl (Essential on Debian) for the ~270 links: a ln per applet took 10 s.
cp /bin/busybox "$root/bin/busybox"
# shellcheck disable=SC2046
perl -e 'my $dir = shift; for (@ARGV) { next if $_ eq "busybox"; symlink("busybox", "$dir/$_") or die "$dir/$_: $!\n" }' \
  "$root/bin" $(/bin/busybox --list)

# Modules, in the order modprobe would load them, dependencies first.
: > "$root/etc/troy/modules"
for module in "${modules[@]}"; do
  modprobe -d "$kernel_tree" -S "$kernel_version" --show-depends "$module" | awk '$1 == "insmod" { print $2 }'
done | awk '!seen[$0]++' | while read -r path; do
  relative=${path#"$kernel_tree"/}
  mkdir -p "$root/$(dirname "$relative")"
  cp "$path" "$root/$relative"
  echo "/$relative" >> "$root/etc/troy/modules"
done

# troy and udp-receiver (troy update runs it when the server announces a
# multicast session) and the shared libraries they need, at the paths the loader expects.
cp "$troy" "$root/bin/troy"
cp /usr/bin/udp-receiver "$root/usr/bin/udp-receiver"
for tool in "${ntfs_tools[@]}"; do
  mkdir -p "$root$(dirname "$tool")"
  cp "$tool" "$root$tool"
done
ldd "$troy" /usr/bin/udp-receiver "${ntfs_tools[@]}" | awk '/=> \// { print $3 } /^\t\/.*ld-linux/ { print $1 }' | while read -r library; do
  mkdir -p "$root$(dirname "$library")"
  cp -L "$library" "$root$library"
done
cp "$here/init" "$root/init"
cp "$here/udhcpc.script" "$root/etc/troy/udhcpc.script"
chmod 755 "$root/init" "$root/etc/troy/udhcpc.script"

# The initrd is two archives one after the other (the kernel unpacks each in
# turn): the programs, modules and /init, then this lab's key and the payload's
# stamp. The first is the same for every lab with the same files: it is kept
# in the cache under the sha256 of every path, mode, link and byte it holds,
# so a changed troy, module or script can never reuse an old one. Compressing
# it is most of the build's time (the QEMU tests build a payload each).
tree_hash=$(cd "$root" && { find . -printf '%p %y %m %l\n' | LC_ALL=C sort; find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum; } | sha256sum | cut -c1-32)
base=$cache/initrd-base-$tree_hash.cpio.gz
lab=$(mktemp -d)
trap 'rm -rf "$root" "$lab"' EXIT
# Copied first: another build may drop the cache's oldest meanwhile (an open
# file is read whole even then; a missing one is built again).
if ! cp "$base" "$lab/base.cpio.gz" 2>/dev/null; then
  (cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -6) > "$lab/base.cpio.gz"
  cp "$lab/base.cpio.gz" "$base.$$.tmp" && mv "$base.$$.tmp" "$base"   # atomic: never half of one
  # Keep the newest few: each is ~13 MiB.
  ls -t "$cache"/initrd-base-*.cpio.gz 2>/dev/null | tail -n +7 | xargs -r rm -f
fi
mkdir -p "$lab/etc/troy"
cp "$key" "$lab/etc/troy/lab.pub"
{
  echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "kernel $kernel_version"
  echo "troy $("$troy" --version 2>/dev/null | awk '{ print $2 }')"
} > "$lab/etc/troy/payload"

mkdir -p "$out"
{ cat "$lab/base.cpio.gz"; (cd "$lab" && printf '%s\n' etc/troy/lab.pub etc/troy/payload | cpio -o -H newc --quiet | gzip -6); } > "$out/initrd.img.tmp"
cp "$kernel_tree/boot/vmlinuz-$kernel_version" "$out/vmlinuz.tmp"
# A troy.efi of the previous payload would go on booting the old troy and
# key on Secure Boot machines: gone until initramfs/uki.sh signs the new one.
rm -f "$out/troy.efi"
mv "$out/initrd.img.tmp" "$out/initrd.img"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
echo "initramfs/build.sh: $out/vmlinuz ($kernel_version) and $out/initrd.img ($(du -h "$out/initrd.img" | cut -f1))" >&2
if [ -n "$http_url" ]; then
  cp "$ipxe_dir/undionly.kpxe" "$ipxe_dir/ipxe.efi" "$ipxe_dir/snponly.efi" "$out/"
  sed "s|@HTTP_URL@|$http_url|" "$here/../pxe/boot.ipxe.in" > "$out/boot.ipxe"
  echo "$kernel_args" > "$out/cmdline"
  echo "initramfs/build.sh: $out/boot.ipxe hands over to $http_url; kernel arguments: $kernel_args" >&2
fi
