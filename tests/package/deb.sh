#!/usr/bin/env bash
# The Debian package, built from this tree as a lab admin gets it
# (issue 18): `dpkg-buildpackage -us -uc -b` on a copy of the tree (only the
# troy target, through ccache when present; the copy is kept beside the build
# directory so the next run rebuilds only what changed), lintian without
# errors, then the .deb unpacked into a throwaway root (not this machine):
# troy --version is the package's version, Depends has the lab server's
# programs and none of the test toolchain, lab.conf is a conffile, the
# systemd unit and its program are in place and the unit passes
# systemd-analyze verify, the manual pages and the bash completion are
# installed, and the installed troy-lab-serve serves with lab.conf's
# settings. Release build only (CMakeLists.txt registers it as package.deb).
#   tests/package/deb.sh TROY
set -euo pipefail
source "$(dirname "$0")/../e2e/common.sh"
is_asan_build "$TROY" && { echo "SKIP: the package is built in Release only"; exit 77; }
for tool in dpkg-buildpackage dh lintian help2man; do
  command -v $tool >/dev/null || fail "$tool is missing (bash scripts/install-deps.sh installs it)"
done

# --- the copy of the tree and the build ---
version=$(dpkg-parsechangelog -l "$ROOT/debian/changelog" -S Version)
copy=$(dirname "$TROY")/package-test
mkdir -p "$copy/troy"
# Everything but the build (obj-*) is replaced by the tree's files; tar keeps
# their times, so make rebuilds only what changed since the last run.
find "$copy/troy" -mindepth 1 -maxdepth 1 ! -name 'obj-*' -exec rm -rf {} +
rm -f "$copy"/troy_* "$copy"/troy-dbgsym_*
tar -C "$ROOT" --exclude=./.git --exclude='./build*' --exclude='./obj-*' --exclude=./debian/troy \
  --exclude=./debian/.debhelper --exclude='./debian/*.substvars' --exclude='./debian/*debhelper*' --exclude=./debian/files \
  -cf - . | tar -C "$copy/troy" -xf -
export CCACHE_BASEDIR=$copy/troy
# -O0 (Debian's noopt): this build only proves the package is made and runs;
# optimising it took ~10 min of one CI core (a lab server's build keeps -O2).
# parallel=: dpkg-buildpackage builds with one job unless told (it took 11
# minutes at -O0 on one core, the longest test of the run).
export DEB_BUILD_OPTIONS="noopt parallel=$(nproc)${DEB_BUILD_OPTIONS:+ $DEB_BUILD_OPTIONS}"
# Without -g too (dpkg-buildflags' STRIP variables): nothing here reads the
# debug symbols, and writing them was a sixth of the build (186 s -> 154 s of
# dpkg-buildpackage on 2 cores); no troy-dbgsym package is made then.
export DEB_CFLAGS_STRIP=-g DEB_CXXFLAGS_STRIP=-g
(cd "$copy/troy" && dpkg-buildpackage -us -uc -b -nc) > build.log 2>&1 || { tail -n 40 build.log >&2; fail "dpkg-buildpackage failed"; }
deb=$copy/troy_${version}_$(dpkg --print-architecture).deb
[ -f "$deb" ] || fail "dpkg-buildpackage made no $deb: $(ls "$copy")"
pass "dpkg-buildpackage -us -uc -b built $(basename "$deb")"

# --- lintian: no errors ---
lintian --fail-on error --allow-root "$deb" > lintian.txt 2>&1 || { cat lintian.txt >&2; fail "lintian found errors"; }
pass "lintian: no errors ($(grep -c '^W:' lintian.txt || true) warnings)"

# --- what the package holds ---
depends=$(dpkg-deb -f "$deb" Depends)
for need in lighttpd dnsmasq-base ipxe busybox-static openssl make; do
  [[ ", $depends," == *", $need"[,\ ]* ]] || fail "Depends lacks $need: $depends"
done
for tool in qemu-system-x86 clang libgtest-dev cmake g++ strace nodejs; do
  [[ ", $depends," == *", $tool"[,\ ]* ]] && fail "Depends has the test toolchain's $tool: $depends"
done
package_names() { tr ',|' '\n\n' | sed -E 's/^ +//; s/[ (:].*//' | grep -v '^$' | sort -u; }
declared=$({ dpkg-deb -f "$deb" Depends; echo ,; dpkg-deb -f "$deb" Recommends; } | package_names | grep -v '^lib')
listed=$(bash "$ROOT/scripts/install-deps.sh" --list-server | sort -u)
[ "$declared" = "$listed" ] ||
  fail "debian/control's Depends and Recommends (programs) differ from install-deps.sh --list-server: $(diff <(echo "$declared") <(echo "$listed") | grep '^[<>]' | tr '\n' ' ')"
pass "Depends: the lab server's programs (install-deps.sh --list-server, nothing more), none of the test toolchain"

dpkg-deb -e "$deb" control
grep -qx /etc/troy/lab.conf control/conffiles || fail "lab.conf is not a conffile: $(cat control/conffiles 2>/dev/null)"
pass "/etc/troy/lab.conf is a conffile"

installed=$WORK/root
dpkg-deb -x "$deb" "$installed"
[ "$("$installed/usr/bin/troy" --version)" = "troy $version" ] ||
  fail "troy --version says '$("$installed/usr/bin/troy" --version)', the package is $version"
pass "the installed troy --version is the package's version ($version)"

unit=$installed/lib/systemd/system/troy-lab.service
[ -f "$unit" ] || fail "no troy-lab.service in the package"
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
[ -x "$installed$exec_start" ] || fail "the unit's ExecStart $exec_start is not in the package"
grep -qx 'Restart=on-failure' "$unit" || fail "the unit does not restart on failure"
if command -v systemd-analyze >/dev/null; then
  # As installed, but with its program at the throwaway root (verify checks it exists).
  mkdir units
  sed "s|^ExecStart=|ExecStart=$installed|" "$unit" > units/troy-lab.service
  systemd-analyze verify --man=no units/troy-lab.service > verify.txt 2>&1 ||
    { cat verify.txt >&2; fail "systemd-analyze verify refused troy-lab.service"; }
fi
pass "troy-lab.service: its program is in the package, Restart=on-failure, systemd-analyze verify accepts it"

for page in man1/troy.1.gz man1/troy-lab-config.1.gz man1/troy-lab-status.1.gz man5/lab.conf.5.gz man8/troy-lab.8.gz; do
  [ -s "$installed/usr/share/man/$page" ] || fail "no manual page $page"
done
for command in $("$installed/usr/bin/troy" --help | awk '/^Subcommands:/ { s = 1; next } s && /^  [a-z]/ { print $1 }'); do
  [ -s "$installed/usr/share/man/man1/troy-$command.1.gz" ] || fail "no manual page for troy $command"
done
MANWIDTH=80 man -l "$installed/usr/share/man/man1/troy-lab-config.1.gz" 2>/dev/null | grep -q -- '--shell' ||
  fail "troy-lab-config(1) does not describe --shell"
pass "manual pages: troy(1), one per subcommand, lab.conf(5), troy-lab(8)"

completion=$installed/usr/share/bash-completion/completions/troy
[ -f "$completion" ] || fail "no bash completion"
[ "$(PATH="$installed/usr/bin:$PATH" bash -c "source '$completion'; COMP_WORDS=(troy lab conf); COMP_CWORD=2; _troy; echo \${COMPREPLY[*]}")" = config ] ||
  fail "the installed completion does not complete troy lab conf<TAB>"
pass "bash completion installed and completing from the installed troy"

# --- the installed service's program and troy-lab, with a lab.conf ---
command -v lighttpd >/dev/null || fail "lighttpd is missing"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p served/boot served/reports
echo 'not a kernel' > served/boot/vmlinuz
printf 'troy-manifest 1\n' > served/manifest
cat > lab.conf <<EOF
served = $WORK/served
http_port = $PORT
http_bind = 127.0.0.1
log_dir = $WORK/log
EOF
export TROY_LAB_CONFIG=$WORK/lab.conf
PATH="$installed/usr/bin:$PATH" sh "$installed$exec_start" 2> service.log &
SERVICE_PID=$!
trap 'kill $SERVICE_PID 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do
  curl -sf -o /dev/null "http://127.0.0.1:$PORT/manifest" && break
  sleep 0.1
done
curl -sf -o /dev/null "http://127.0.0.1:$PORT/manifest" || { cat service.log >&2; fail "the installed troy-lab-serve does not serve"; }
kill -TERM $SERVICE_PID
wait $SERVICE_PID 2>/dev/null || true
[ -s log/lighttpd-access.log ] || fail "no access log in lab.conf's log_dir"
pass "the installed troy-lab-serve serves lab.conf's directory on its port, logging to its log_dir"

PATH="$installed/usr/bin:$PATH" make -s -f "$installed/usr/lib/troy/Makefile.lab" status LAB_CONF="$TROY_LAB_CONFIG" > status.txt 2>&1 ||
  fail "the installed Makefile.lab's status: $(cat status.txt)"
sed "s|@TROY_LAB_DIR@|$installed/usr/lib/troy|" "$ROOT/scripts/troy-lab.in" > troy-lab
PATH="$installed/usr/bin:$PATH" sh troy-lab status > status2.txt 2>&1 || fail "troy-lab status: $(cat status2.txt)"
grep -qx 'exec make --no-print-directory -f "/usr/lib/troy/Makefile.lab" "$@"' "$installed/usr/sbin/troy-lab" ||
  fail "the installed troy-lab does not run /usr/lib/troy/Makefile.lab"
pass "troy-lab status runs the installed Makefile.lab with troy from PATH and lab.conf's served directory"

# Installed for real with dpkg, then purged: only on a throwaway machine (CI=true,
# as root, no troy package there already), since it changes /usr and /etc.
if [ "${CI:-}" = true ] && [ "$(id -u)" = 0 ] && ! dpkg -s troy >/dev/null 2>&1; then
  dpkg -i "$deb" >install.log 2>&1 || { cat install.log >&2; dpkg --purge troy >/dev/null 2>&1; fail "dpkg -i $(basename "$deb") failed"; }
  got=$(/usr/bin/troy --version 2>&1) || true
  grep -q '^# ' /etc/troy/lab.conf && [ -f /lib/systemd/system/troy-lab.service ] && [ "$got" = "troy $version" ] || {
    dpkg --purge troy >/dev/null 2>&1; fail "installed with dpkg -i: /usr/bin/troy says '$got', or lab.conf or troy-lab.service is missing"; }
  dpkg --purge troy >purge.log 2>&1 || { cat purge.log >&2; fail "dpkg --purge troy failed"; }
  [ ! -e /usr/bin/troy ] && [ ! -e /etc/troy/lab.conf ] || fail "dpkg --purge troy left /usr/bin/troy or /etc/troy/lab.conf"
  pass "dpkg -i installs it (its Depends met by install-deps.sh --server), /usr/bin/troy runs, dpkg --purge removes it"
fi

echo "package: $CHECKS checks passed"
