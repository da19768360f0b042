#!/usr/bin/env bash
# Serves a lab in the foreground: lighttpd (HTTP: manifest, deltas, payload,
# reports) and, unless --no-dhcp, dnsmasq (DHCP and TFTP for PXE) on one
# interface. Ctrl-C (or SIGTERM) stops both.
#   pxe/serve.sh --served DIR --http-port PORT [--http-bind ADDR] [--troy PATH] [--log-dir DIR]
#                [--interface IF --dhcp-range FROM,TO,TIME | --no-dhcp] [--check]
# --log-dir: where lighttpd's access log is kept, across restarts (default:
# SERVED/logs, not served; the troy-lab service gives lab.conf's log_dir).
# Errors (lighttpd's, the CGI programs') go to standard error and dnsmasq logs
# to syslog: both end in the journal under systemd (systemd/troy-lab.service).
# --troy: the troy that answers /cgi-bin/report and /cgi-bin/boot (default:
# build/troy of this checkout when built, else troy from PATH).
# --check: write both configurations, have each server check its own, exit.
# --hosts FILE: MAC -> seat names for the status page (default /etc/troy/hosts
# when it exists; tools/lab/hosts.h); the page is SERVED/status/index.html.
# --inbox DIR: where /cgi-bin/checkin stores teachers' check-ins (default
# $TROY_INBOX, else /var/lib/troy/inbox; outside SERVED; owned by the web server's user; docs/checkin.md).
# --multicast IF[,IF2...]: also send the newest version by multicast on IF,
# session after session (troy lab multicast, udpcast; docs/delivery.md), one
# sender per interface for machines on different subnets; each
# --multicast-option OPT (e.g. "--max-bitrate 600m") is handed to it
# (the troy-lab service: lab.conf's multicast and multicast_max_bitrate).
set -euo pipefail
pxe_dir=$(cd "$(dirname "$0")" && pwd)
hosts=/etc/troy/hosts
inbox=${TROY_INBOX:-/var/lib/troy/inbox}
served= http_port=8080 http_bind=0.0.0.0 interface= dhcp_range= dhcp=1 check=0 troy= log_dir= multicast=
multicast_options=()
usage() { echo "usage: $0 --served DIR [--http-port P] [--http-bind A] [--troy PATH] (--interface IF --dhcp-range R | --no-dhcp)" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --served) served=$2; shift 2 ;;
    --http-port) http_port=$2; shift 2 ;;
    --http-bind) http_bind=$2; shift 2 ;;
    --troy) troy=$2; shift 2 ;;
    --log-dir) log_dir=$2; shift 2 ;;
    --hosts) hosts=$(realpath "$2"); shift 2 ;;
    --inbox) inbox=$(realpath -m "$2"); shift 2 ;;
    --interface) interface=$2; shift 2 ;;
    --dhcp-range) dhcp_range=$2; shift 2 ;;
    --no-dhcp) dhcp=0; shift ;;
    --check) check=1; shift ;;
    --multicast) multicast=$2; shift 2 ;;
    --multicast-option) read -ra words <<<"$2"; multicast_options+=("${words[@]}"); shift 2 ;;
    *) usage ;;
  esac
done
[ -n "$served" ] || usage
served=$(cd "$served" && pwd) || exit 2
die() { echo "pxe/serve.sh: $*" >&2; exit 2; }
[ -f "$served/boot/vmlinuz" ] || die "$served/boot has no payload (make -f Makefile.lab payload)"
[ -f "$served/manifest" ] || echo "pxe/serve.sh: warning: $served has no manifest yet (make -f Makefile.lab publish)" >&2
# What each kind of machine boots, and whether anything verifies it: said
# every time, since the unverified paths look exactly like the verified one.
efi_boot_file=ipxe.efi
if [ -f "$served/boot/troy.efi" ]; then
  efi_boot_file=troy.efi
  command -v sbverify >/dev/null && ! sbverify --list "$served/boot/troy.efi" 2>/dev/null | grep -q 'signature 1' &&
    die "$served/boot/troy.efi is not signed (rebuild it: make -f Makefile.lab payload SERVER_URL=...)"
  echo "pxe/serve.sh: UEFI machines: signed troy.efi, verified by their firmware when Secure Boot is on with the lab's db certificate enrolled (unverified without Secure Boot)" >&2
else
  echo "pxe/serve.sh: WARNING: UEFI machines: unsigned ipxe.efi, UNVERIFIED (no troy.efi: make -f Makefile.lab secure-boot-keys, then payload SERVER_URL=...)" >&2
fi
echo "pxe/serve.sh: WARNING: legacy BIOS machines: undionly.kpxe and boot.ipxe, UNVERIFIED: anyone answering DHCP on this network can boot them into their own payload (docs/security.md)" >&2
if [ "$dhcp" = 1 ]; then
  [ -n "$interface" ] && [ -n "$dhcp_range" ] || die "DHCP needs --interface and --dhcp-range (or --no-dhcp)"
  command -v dnsmasq >/dev/null || die "dnsmasq is missing (apt-get install dnsmasq-base)"
fi
command -v lighttpd >/dev/null || die "lighttpd is missing (apt-get install lighttpd)"
[ -z "$multicast" ] || command -v udp-sender >/dev/null || die "udp-sender is missing (apt-get install udpcast)"
if [ -z "$troy" ]; then
  if [ -x "$pxe_dir/../build/troy" ]; then troy=$pxe_dir/../build/troy; else troy=$(command -v troy) || true; fi
fi
[ -n "$troy" ] && [ -x "$troy" ] || die "troy not found${troy:+ at $troy} (make build, or give --troy PATH)"
# lighttpd starts the CGI scripts in pxe/cgi, not here: an absolute path.
troy=$(cd "$(dirname "$troy")" && pwd)/$(basename "$troy")

run_dir=$(mktemp -d /tmp/troy-serve.XXXXXX)
trap 'rm -rf "$run_dir"' EXIT
mkdir -p "$served/reports" "$served/reimage" "$served/status"
log_dir=${log_dir:-$served/logs}
mkdir -p "$log_dir" || die "cannot make the log directory $log_dir"
log_dir=$(cd "$log_dir" && pwd)
# lighttpd and the CGI programs run as an unprivileged user (www-data, else
# nobody) that owns only reports/ and reimage/: it must reach the served files and troy.
http_user=$(id -u www-data >/dev/null 2>&1 && echo www-data || echo nobody)
http_group=$(id -gn "$http_user")
if [ "$(id -u)" = 0 ]; then
  chown -R "$http_user:$http_group" "$served/reports"
  chown "$http_user:$http_group" "$log_dir"   # lighttpd opens its log after dropping to that user
  chmod 750 "$log_dir"
  chmod 750 "$served/reports"
  chown "$http_user:$http_group" "$served/reimage"   # the report CGI removes a flag once the machine is done
  chown -R "$http_user:$http_group" "$served/status"   # the report CGI regenerates the status page
  # Teachers' check-ins (the checkin CGI writes them; root publishes them): never inside SERVED.
  case "$inbox/" in "$served"/*) die "--inbox $inbox is inside the served directory $served: it must not be served" ;; esac
  mkdir -p "$inbox" && chown "$http_user:$http_group" "$inbox" && chmod 750 "$inbox" ||
    die "cannot make the check-in inbox $inbox"
  for need in "$served/boot/vmlinuz:r" "$troy:x" "$pxe_dir/cgi/report:r"; do
    runuser -u "$http_user" -- test "-${need##*:}" "${need%:*}" ||
      die "${need%:*}: the web server's user $http_user cannot reach it (a folder on the way not readable by others?)"
  done
fi
fill() {
  sed -e "s|@SERVED@|$served|g" -e "s|@HTTP_PORT@|$http_port|g" -e "s|@HTTP_BIND@|$http_bind|g" \
      -e "s|@RUN_DIR@|$run_dir|g" -e "s|@LOG_DIR@|$log_dir|g" -e "s|@PXE_DIR@|$pxe_dir|g" -e "s|@INTERFACE@|$interface|g" \
      -e "s|@DHCP_RANGE@|$dhcp_range|g" -e "s|@TROY@|$troy|g" -e "s|@HOSTS@|$hosts|g" -e "s|@INBOX@|$inbox|g" -e "s|@HTTP_USER@|$http_user|g" -e "s|@HTTP_GROUP@|$http_group|g" -e "s|@EFI_BOOT_FILE@|$efi_boot_file|g" "$1" > "$2"
}
fill "$pxe_dir/lighttpd.conf.in" "$run_dir/lighttpd.conf"
lighttpd -tt -f "$run_dir/lighttpd.conf" || die "lighttpd refused its configuration ($run_dir/lighttpd.conf)"
if [ "$dhcp" = 1 ]; then
  fill "$pxe_dir/dnsmasq.conf.in" "$run_dir/dnsmasq.conf"
  dnsmasq --test --conf-file="$run_dir/dnsmasq.conf" 2>/dev/null ||
    die "dnsmasq refused its configuration: $(dnsmasq --test --conf-file="$run_dir/dnsmasq.conf" 2>&1 | grep -m 1 .)"
fi
if [ "$check" = 1 ]; then
  rm -rf "$run_dir"
  echo "pxe/serve.sh: configurations accepted by lighttpd${interface:+ and dnsmasq}" >&2
  exit 0
fi

pids=()
stop() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -f "$served/delivery"   # no session announced once no sender runs
  rm -rf "$run_dir"
}
trap stop INT TERM EXIT
lighttpd -D -f "$run_dir/lighttpd.conf" & pids+=($!)
echo "pxe/serve.sh: HTTP on $http_bind:$http_port serving $served (access log: $log_dir/lighttpd-access.log)" >&2
rm -f "$served/delivery"
if [ -n "$multicast" ]; then
  "$troy" lab multicast --dir "$served" --interface "$multicast" --log "$run_dir/udp-sender.log" \
    "${multicast_options[@]}" & pids+=($!)
  echo "pxe/serve.sh: multicast sessions of the newest version on $multicast (udpcast; announced in $served/delivery)" >&2
fi
if [ "$dhcp" = 1 ]; then
  dnsmasq --no-daemon --conf-file="$run_dir/dnsmasq.conf" --pid-file="$run_dir/dnsmasq.pid" & pids+=($!)
  echo "pxe/serve.sh: DHCP ($dhcp_range) and TFTP on $interface" >&2
fi
echo "pxe/serve.sh: serving; Ctrl-C stops" >&2
# Ends when either server ends (e.g. a port already taken), stopping the other.
wait -n
