# Shared boot plumbing of the QEMU tests (tests/lab/*.sh), sourced after tests/e2e/common.sh.
#
# direct_boot SERVED URL: sets DIRECT_BOOT, QEMU's options that start the
# payload of SERVED/boot itself (-kernel, -initrd, -append), with the kernel
# arguments the lab server's boot script gives it (tools/lab/server.cpp,
# payload_script: troy.server=URL and the first line of boot/cmdline). It
# skips what only the network boot does (the NIC's iPXE, DHCP, TFTP, the
# per-machine script, 20 MiB over HTTP under emulation: ~10 s a boot) for the
# cases that test the payload, not the boot chain. Each test keeps at least
# one full network boot (-boot n), so the chain stays proven.
# URL is the server as the guest sees it: http://10.0.2.2:PORT on QEMU's
# default user network, http://10.0.3.2:PORT on net=10.0.3.0/24.
direct_boot() {
  local served=$1 url=$2 arguments
  arguments=$(head -n 1 "$served/boot/cmdline") || fail "direct_boot: $served/boot/cmdline is missing"
  DIRECT_BOOT=(-kernel "$served/boot/vmlinuz" -initrd "$served/boot/initrd.img"
    -append "initrd=initrd.img troy.server=$url $arguments")
}
