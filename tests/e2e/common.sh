# Shared helpers for the end-to-end cases. Each case is a bash script run by
# ctest as `bash CASE.sh TROY_BINARY`; it builds its inputs in a fresh
# folder, runs the real binary and checks the result. Exit 0 pass, 77 skip.
set -euo pipefail

TROY=$(realpath "$1")
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHARED=${TROY_SHARED:-$(realpath -m "$ROOT/../shared")}
# Debian's python3 (the one with python3-libvhdi) for every case and the
# scripts it runs: a pyenv shim first in PATH costs about a second per call,
# which the cases make hundreds of.
if [ -x /usr/bin/python3 ]; then
  python3() { /usr/bin/python3 "$@"; }
  export -f python3
fi
MAKE_VHD="python3 $ROOT/fixtures/make_vhd.py"
MAKE_VHDX="python3 $ROOT/fixtures/make_vhdx.py"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/troy-e2e.XXXXXX")
# Readable by others: pxe/serve.sh's lighttpd serves from here as www-data.
chmod 755 "$WORK"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
# pxe/serve.sh and troy lab checkin keep check-ins here, not in the
# machine's /var/lib/troy/inbox.
export TROY_INBOX=$WORK/inbox
CHECKS=0

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

pass() {
  CHECKS=$((CHECKS + 1))
  echo "ok: $*"
}

sha() { sha256sum "$1" | cut -d' ' -f1; }

# True for a binary built with AddressSanitizer (about 3x slower): the kill
# sweeps then take fewer points; the Release run of make test takes them all.
is_asan_build() { grep -q __asan_init "$1" 2>/dev/null; }

# sha256 of a large sparse file: holes are hashed from memory, not read.
sparse_sha() {
  python3 - "$1" <<'PY'
import hashlib, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
size = os.fstat(fd).st_size
digest, zeros, at = hashlib.sha256(), bytes(1 << 24), 0
def feed_zeros(n):
    while n:
        piece = min(n, len(zeros))
        digest.update(memoryview(zeros)[:piece])
        n -= piece
while at < size:
    try:
        data = os.lseek(fd, at, os.SEEK_DATA)
    except OSError:
        data = size
    feed_zeros(data - at)
    if data >= size:
        break
    hole = os.lseek(fd, data, os.SEEK_HOLE)
    while data < hole:
        chunk = os.pread(fd, min(hole - data, 1 << 24), data)
        digest.update(chunk)
        data += len(chunk)
    at = hole
print(digest.hexdigest())
PY
}

require_shared() {
  [ -d "$SHARED/fixtures/public" ] || fail "shared fixtures not found at $SHARED (set TROY_SHARED)"
}

# Decompresses a public fixture (e.g. qemu/d2v-zerofilled.vhd) into the work folder.
public_fixture() {
  require_shared
  local name
  name=$(basename "$1")
  bzip2 -dc "$SHARED/fixtures/public/$1.bz2" >"$WORK/$name"
  echo "$WORK/$name"
}

# Runs a command, expecting exit code $1; stderr goes to $WORK/stderr.
expect_exit() {
  local want=$1
  shift
  local got=0
  "$@" >"$WORK/stdout" 2>"$WORK/stderr" || got=$?
  if [ "$got" != "$want" ]; then
    cat "$WORK/stderr" >&2
    fail "expected exit $want, got $got: $*"
  fi
}

# Expects the last command's stderr to hold exactly one error line
# mentioning every given word.
expect_error_line() {
  local lines
  lines=$(grep -c '^troy: error: ' "$WORK/stderr" || true)
  [ "$lines" = 1 ] || { cat "$WORK/stderr" >&2; fail "expected one error line, got $lines"; }
  for word in "$@"; do
    grep '^troy: error: ' "$WORK/stderr" | grep -qF -- "$word" ||
      { cat "$WORK/stderr" >&2; fail "error line does not mention '$word'"; }
  done
}

# Converts an image chain to raw and compares it with an expected raw file.
expect_converts_to() {
  local image=$1 expected=$2
  shift 2
  "$TROY" convert "$@" "$image" "$WORK/converted.raw" --overwrite 2>"$WORK/stderr" ||
    { cat "$WORK/stderr" >&2; fail "troy convert $image failed"; }
  cmp -s "$WORK/converted.raw" "$expected" || fail "troy convert $image differs from $expected"
  rm -f "$WORK/converted.raw"
}

# True when a file has no data extents at all (it is one hole).
all_hole() {
  python3 - "$1" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
try:
    os.lseek(fd, 0, os.SEEK_DATA)
    sys.exit(1)
except OSError:
    sys.exit(0)
PY
}

# True when a (large, sparse) file reads as zeros: it equals a hole of its size.
all_zero() {
  local zeros="$WORK/.zeros" status=0
  rm -f "$zeros" && truncate -s "$(stat -c %s "$1")" "$zeros"
  sparse_cmp "$1" "$zeros" || status=$?
  rm -f "$zeros"
  return $status
}

# Installs the vhd-lib oracle once per machine (shared between cases; a lock
# keeps parallel cases from installing it twice).
vhd_lib_oracle() {
  require_shared
  local cache=${TROY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/troy}/vhd-lib
  mkdir -p "$cache"
  (
    flock 9
    if [ ! -f "$cache/.installed" ] || ! cmp -s "$SHARED/oracles/vhd-lib/package.json" "$cache/package.json"; then
      rm -rf "$cache/node_modules"
      cp -r "$SHARED/oracles/vhd-lib/." "$cache/"
      (cd "$cache" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
      touch "$cache/.installed"
    fi
  ) 9>"$cache.lock"
  echo "$cache"
}

# A raw disk of SIZE bytes (a multiple of 512) with random data in scattered
# places, zero runs and holes; SEED varies the places. The very last sector
# holds data, so a reader that drops a partial last block is caught.
make_random_raw() {
  local out=$1 size=$2 seed=$3
  truncate -s "$size" "$out"
  local i
  for i in 0 1 2 3 4 5 6; do
    local at=$(( (seed * 7919 + i * 104729) % (size / 512) ))
    head -c $((512 * (1 + (seed + i) * 37 % 5000))) /dev/urandom | dd of="$out" bs=512 seek="$at" conv=notrunc status=none
  done
  head -c 512 /dev/urandom | dd of="$out" bs=512 seek=$((size / 512 - 1)) conv=notrunc status=none
  truncate -s "$size" "$out"
}

finish() { echo "$CHECKS passed, 0 failed"; }

# Runs a command that is killed (SIGKILL, as by kill -9) when it enters its
# Nth pwrite system call, before that write happens; returns its exit status
# (137 when it was killed, its own status when it made fewer writes).
# strace with its arguments. LeakSanitizer cannot run under ptrace and
# fails the traced command at exit, so an ASan build's leak check is off
# for traced runs only.
under_strace() {
  ASAN_OPTIONS="${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}detect_leaks=0" strace "$@"
}

kill_at_write() {
  local n=$1
  shift
  local status=0
  under_strace -f -o /dev/null -e trace=pwrite64 -e inject=pwrite64:signal=KILL:when="$n" "$@" >/dev/null 2>&1 ||
    status=$?
  return $status
}

# True when two large sparse files have the same size and bytes; only the
# ranges where either holds data are read.
sparse_cmp() {
  python3 - "$1" "$2" <<'PY'
import os, sys
fds = [os.open(p, os.O_RDONLY) for p in sys.argv[1:3]]
sizes = [os.fstat(fd).st_size for fd in fds]
if sizes[0] != sizes[1]:
    sys.exit(1)
def data_ranges(fd, size):
    at = 0
    while at < size:
        try:
            start = os.lseek(fd, at, os.SEEK_DATA)
        except OSError:
            return
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, end
        at = end
# The union of both files' data: where both hold data (a written image and
# its expected content), each byte is read once, not once per file.
merged = []
for start, end in sorted(list(data_ranges(fds[0], sizes[0])) + list(data_ranges(fds[1], sizes[1]))):
    if merged and start <= merged[-1][1]:
        merged[-1][1] = max(merged[-1][1], end)
    else:
        merged.append([start, end])
for start, end in merged:
    while start < end:
        n = min(end - start, 1 << 24)
        if os.pread(fds[0], n, start) != os.pread(fds[1], n, start):
            sys.exit(1)
        start += n
PY
}

# served_bytes ACCESS_LOG HOST: the body bytes lighttpd sent for requests
# naming HOST (host:port, the Host field of its access log), the boot
# payload (/boot/...) aside.
served_bytes() {
  python3 - "$1" "$2" <<'PY'
import re, sys
total = 0
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r'\S+ (\S+) .*?\] "(\S+) (\S+)[^"]*" \d+ (\d+)', line)
    if m and m.group(1) == sys.argv[2] and not m.group(3).startswith("/boot/"):
        total += int(m.group(4))
print(total)
PY
}

# make_lab_images SIZE_MIB SEED: the lab's key pair (lab.key, lab.pub) and
# three versions of a SIZE_MIB MiB disk (fixtures/make_lab_versions.py):
# v1.raw..v3.raw, the base base.vhdx and the deltas v2.avhdx and v3.avhdx.
# Sets SERVED ($WORK/served, with an empty boot/ folder).
make_lab_images() {
  openssl genpkey -algorithm ed25519 -out lab.key 2>/dev/null
  openssl pkey -in lab.key -pubout -out lab.pub
  python3 "$ROOT/fixtures/make_lab_versions.py" "$1" "$2"
  "$TROY" capture v1.raw base.vhdx 2>/dev/null
  "$TROY" diff base.vhdx v2.raw -o v2.avhdx 2>/dev/null
  "$TROY" diff v2.avhdx v3.raw -o v3.avhdx 2>/dev/null
  SERVED=$WORK/served
  mkdir -p "$SERVED/boot"
}

# publish_lab_versions DISK_RULE: make_lab_images' base.vhdx, v2.avhdx and
# v3.avhdx published as v1, v2, v3 into $SERVED, signed with lab.key, v1
# with the manifest's disk rule (e.g. "size=17825792 serial=LAB-PC-*").
publish_lab_versions() {
  "$TROY" publish --dir "$SERVED" --key lab.key --name v1 --disk "$1" base.vhdx 2>/dev/null
  "$TROY" publish --dir "$SERVED" --key lab.key --name v2 v2.avhdx 2>/dev/null
  "$TROY" publish --dir "$SERVED" --key lab.key --name v3 v3.avhdx 2>/dev/null
}

# The lab's web server (pxe/serve.sh, lighttpd without DHCP) on a free
# loopback port, serving $SERVED with $TROY as its CGI, stopped (and $WORK
# removed) at exit. Sets SERVER (its URL) and SERVER_PID; its log is
# serve.log in the current folder.
start_lab_server() {
  PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  SERVER=http://127.0.0.1:$PORT
  bash "$ROOT/pxe/serve.sh" --served "$SERVED" --http-port "$PORT" --http-bind 127.0.0.1 --no-dhcp --troy "$TROY" "$@" \
    2>serve.log &
  SERVER_PID=$!
  trap 'kill $SERVER_PID 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
  for _ in $(seq 100); do
    curl -sf -o /dev/null "$SERVER/manifest" && break
    sleep 0.1
  done
  curl -sf -o /dev/null "$SERVER/manifest" || { cat serve.log >&2; fail "lighttpd does not serve the manifest"; }
}

# wait_for_status_page TEXT: the status page ($SERVER/status/, into
# page.html) once it holds TEXT. A report marks the page stale and it is
# rebuilt after the answer, at most once a second (status_page.h), so a case
# reading it right after a report waits for the rebuild (up to 10 s).
wait_for_status_page() {
  for _ in $(seq 100); do
    curl -sf -o page.html "$SERVER/status/" && grep -qF -- "$1" page.html && return 0
    sleep 0.1
  done
  fail "the status page does not show '$1' 10 s after the report: $(cat page.html 2>/dev/null | head -c 2000)"
}

# ntfs_workspace: the native-VHD-boot cases on ntfs-3g (vhdboot_ntfs.sh,
# vhdboot_vhd.sh). Skips (77) without root, the NTFS tools, /dev/fuse or
# ptrace; moves WORK to RAM when it has room (each kill point copies an
# image); MNT is the mount point and LOOP the loop device the case sets up,
# both undone on exit; TROY becomes a copy, so that the traced and the killed
# runs make the same calls.
ntfs_workspace() {
  [ "$(id -u)" = 0 ] || { echo "skip: needs root (loop devices, mount)"; exit 77; }
  for tool in mkntfs ntfs-3g losetup strace qemu-img; do
    command -v $tool >/dev/null || { echo "skip: $tool not installed (make deps)"; exit 77; }
  done
  [ -e /dev/fuse ] || { echo "skip: no /dev/fuse"; exit 77; }
  under_strace -f -o /dev/null true 2>/dev/null || { echo "skip: ptrace is not permitted here"; exit 77; }
  # The images live in RAM when it has room: each kill point copies one.
  shm_free=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }' || true)
  if [ "${shm_free:-0}" -gt $((512 << 10)) ]; then
    rm -rf "$WORK"
    WORK=$(mktemp -d /dev/shm/troy-e2e.XXXXXX)
    cd "$WORK"
  fi
  LOOP= MNT=$WORK/mnt
  cleanup() {
    mountpoint -q "$MNT" 2>/dev/null && umount "$MNT"
    [ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null
    rm -rf "$WORK"
  }
  trap cleanup EXIT
  mkdir -p "$MNT"
  cp "$TROY" troy.bin  # the traced and the killed runs make the same calls
  TROY=$WORK/troy.bin
}
# On ntfs_workspace's loop device and mount point: attach IMAGE, detach,
# mount_it (ntfs-3g as the payload mounts), attrib FILE (NTFS attributes).
attach() { LOOP=$(losetup -f --show "$1"); }
detach() { losetup -d "$LOOP"; LOOP=; }
mount_it() { ntfs-3g -o rw,nocompression,big_writes "$LOOP" "$MNT"; }
attrib() { python3 -c "import os,sys; print(hex(int.from_bytes(os.getxattr(sys.argv[1], 'system.ntfs_attrib_be'), 'big')))" "$1"; }
# ntfs_kill_points SEED N: the write calls (of N) a case kills troy at: the
# first, the last and 3 drawn by SEED (none drawn in an ASan build).
ntfs_kill_points() {
  local points=5
  is_asan_build "$TROY" && points=2
  python3 -c "
import random; r = random.Random($1); n = $2
print(' '.join(str(p) for p in sorted({1, n} | set(r.sample(range(2, n), min($points - 2, n - 2))))))"
}

# skip_without TOOL...: the case is skipped (77) when a tool is missing.
skip_without() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "SKIP: $tool is missing (bash scripts/install-deps.sh)"; exit 77; }
  done
}
