# The lab server as a service, from a checkout (issue 18): lab.conf read by
# `troy lab config` (values, defaults, one error line naming FILE:LINE), by
# `troy lab status` and by Makefile.lab; systemd/troy-lab-serve serving with
# lab.conf's settings; the access log and the machines' reports kept when
# the server stops and starts again, the log directory not served; the bash
# completion (completion/troy) offering troy's real subcommands and options.
# tests/package/deb.sh checks the same pieces as the .deb installs them.
source "$(dirname "$0")/common.sh"

# --- troy lab config ---
cat > lab.conf <<'EOF'
# a lab
served = $WORK/served
http_port = 8081   # the lab's port
interface =
EOF
sed -i "s|\$WORK|$WORK|" lab.conf
"$TROY" lab config --config lab.conf > effective.txt || fail "troy lab config refused a good lab.conf"
grep -qx "served = $WORK/served" effective.txt && grep -qx 'http_port = 8081' effective.txt &&
  grep -qx 'interface = ' effective.txt && grep -qx 'http_bind = 0.0.0.0  # default' effective.txt ||
  fail "troy lab config: $(cat effective.txt)"
[ "$(TROY_LAB_CONFIG=lab.conf "$TROY" lab config --get http_port)" = 8081 ] || fail "TROY_LAB_CONFIG not read"
( eval "$("$TROY" lab config --config lab.conf --shell)"; [ "$SERVED" = "$WORK/served" ] && [ "$LOG_DIR" = /var/log/troy ] ) ||
  fail "troy lab config --shell: $("$TROY" lab config --config lab.conf --shell)"
pass "troy lab config prints lab.conf's values, marks defaults, --get and --shell"

printf 'served = /srv/a\nhttp_prot = 80\n' > bad.conf
"$TROY" lab config --config bad.conf > out.txt 2> err.txt && fail "a misspelt key was accepted"
[ "$(wc -l < err.txt)" = 1 ] && grep -q "bad.conf:2: unknown key 'http_prot' (did you mean 'http_port'?)" err.txt ||
  fail "misspelt key: $(cat err.txt)"
[ -s out.txt ] && fail "a refused lab.conf printed values"
"$TROY" lab config --config missing.conf 2> err.txt && fail "a missing --config file was accepted"
grep -q 'missing.conf' err.txt || fail "missing --config: $(cat err.txt)"
"$TROY" lab config --get nonsense 2> err.txt && fail "--get of an unknown key succeeded"
pass "a misspelt key is one error line naming file:line with the likely key; a missing --config file is an error"

mkdir -p served/reports
TROY_LAB_CONFIG=lab.conf "$TROY" lab status > status.txt || fail "troy lab status did not take served from lab.conf"
TROY_LAB_CONFIG=bad.conf "$TROY" lab status 2> err.txt && fail "troy lab status ran with a bad lab.conf"
grep -q 'bad.conf:2' err.txt || fail "status with a bad lab.conf: $(cat err.txt)"
pass "troy lab status reads the served directory from lab.conf (and refuses a bad one)"

# --- Makefile.lab reads lab.conf (the command line still wins) ---
make -s -C "$ROOT" -f Makefile.lab status TROY="$TROY" LAB_CONF="$WORK/lab.conf" > make-status.txt 2>&1 ||
  fail "make -f Makefile.lab status with lab.conf: $(cat make-status.txt)"
make -s -C "$ROOT" -f Makefile.lab status TROY="$TROY" LAB_CONF="$WORK/bad.conf" > make-bad.txt 2>&1 &&
  fail "Makefile.lab ran with a bad lab.conf"
grep -q "bad.conf:2: unknown key 'http_prot'" make-bad.txt || fail "Makefile.lab's error: $(cat make-bad.txt)"
lab_make_value() {  # VARIABLE [MAKE ARGUMENTS...]: the value Makefile.lab ends with
  local variable=$1
  shift
  make -s -C "$ROOT" -f Makefile.lab --eval 'print-%: ; @echo "$($*)"' "print-$variable" TROY="$TROY" LAB_CONF="$WORK/lab.conf" "$@"
}
[ "$(lab_make_value SERVED)" = "$WORK/served" ] && [ "$(lab_make_value HTTP_PORT)" = 8081 ] &&
  [ "$(lab_make_value KERNEL_ARGS)" = 'console=tty0 troy.then=reboot quiet' ] ||
  fail "Makefile.lab's values: SERVED=$(lab_make_value SERVED) HTTP_PORT=$(lab_make_value HTTP_PORT)"
[ "$(lab_make_value SERVED SERVED=/elsewhere)" = /elsewhere ] || fail "SERVED on the command line did not win over lab.conf"
[ "$(HTTP_PORT=9 lab_make_value HTTP_PORT)" = 9 ] || fail "HTTP_PORT in the environment did not win over lab.conf"
[ "$(lab_make_value SERVED LAB_CONF=/nonexistent.conf)" = /srv/troy ] || fail "without lab.conf, SERVED is not the default"
pass "Makefile.lab takes lab.conf's values, stops on its error line, and the command line wins"

# --- troy-lab-serve: lab.conf's settings; logs and reports kept across a restart ---
command -v lighttpd >/dev/null || { echo "SKIP: lighttpd is missing"; exit 77; }
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p served/boot
echo 'not a kernel' > served/boot/vmlinuz
printf 'troy-manifest 1\n' > served/manifest
echo '{"kept": true}' > served/reports/52-54-00-00-00-01.json
cat > lab.conf <<EOF
served = $WORK/served
http_port = $PORT
http_bind = 127.0.0.1
log_dir = $WORK/log
interface =
EOF
start_service() {
  PATH="$(dirname "$TROY"):$PATH" TROY_LAB_CONFIG=$WORK/lab.conf sh "$ROOT/systemd/troy-lab-serve" 2>> service.log &
  SERVICE_PID=$!
  for _ in $(seq 100); do
    curl -sf -o /dev/null "http://127.0.0.1:$PORT/manifest" && return
    kill -0 $SERVICE_PID 2>/dev/null || break
    sleep 0.1
  done
  cat service.log >&2
  fail "troy-lab-serve does not serve on lab.conf's port $PORT"
}
stop_service() { kill -TERM $SERVICE_PID; wait $SERVICE_PID 2>/dev/null || true; }
trap 'kill $SERVICE_PID 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
start_service
curl -sf -o /dev/null "http://127.0.0.1:$PORT/manifest?first-run"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/logs/lighttpd-access.log")
[ "$code" = 403 ] || [ "$code" = 404 ] || fail "a log under the served directory is served ($code)"
stop_service
grep -q 'first-run' log/lighttpd-access.log || fail "the access log did not survive the server's stop"
start_service
curl -sf -o /dev/null "http://127.0.0.1:$PORT/manifest?second-run"
stop_service
grep -q 'first-run' log/lighttpd-access.log && grep -q 'second-run' log/lighttpd-access.log ||
  fail "the restart lost the access log: $(cat log/lighttpd-access.log)"
[ "$(cat served/reports/52-54-00-00-00-01.json)" = '{"kept": true}' ] || fail "a report did not survive the restart"
grep -q 'troy-lab-serve: pxe/serve.sh --served' service.log || fail "troy-lab-serve does not say what it runs"
pass "troy-lab-serve serves lab.conf's directory on its port; the access log and reports survive a stop and a restart; logs not served"

PATH="$(dirname "$TROY"):$PATH" TROY_LAB_CONFIG=$WORK/bad.conf sh "$ROOT/systemd/troy-lab-serve" 2> bad-service.log &&
  fail "troy-lab-serve started with a bad lab.conf"
grep -q "bad.conf:2: unknown key" bad-service.log || fail "troy-lab-serve's error: $(cat bad-service.log)"
pass "troy-lab-serve with a bad lab.conf exits with the file:line error (the journal's line)"

# lab.conf's multicast keys become serve.sh's multicast options (issue 17;
# an empty served directory: serve.sh stops at once, after the line).
mkdir -p empty
printf 'served = %s\nmulticast = eth7,eth8\nmulticast_max_bitrate = 4m\nmulticast_min_receivers = 40\nmulticast_min_wait = 0\nmulticast_receiver_wait = 300\n' \
  "$WORK/empty" > multicast.conf
PATH="$(dirname "$TROY"):$PATH" TROY_LAB_CONFIG=$WORK/multicast.conf sh "$ROOT/systemd/troy-lab-serve" 2> multicast.log || true
grep -q -- "--no-dhcp --multicast eth7,eth8 --multicast-option --max-bitrate 4m --multicast-option --min-receivers 40 --min-wait 0 --multicast-option --max-wait 60 --receiver-wait 300" multicast.log ||
  fail "troy-lab-serve does not hand lab.conf's multicast keys to serve.sh: $(cat multicast.log)"
pass "lab.conf's multicast keys reach pxe/serve.sh --multicast (the session's start and the machines' wait, defaults included)"
printf 'served = %s\nmulticast = eth7\nmulticast_min_wait = 10s\n' "$WORK/empty" > bad-multicast.conf
PATH="$(dirname "$TROY"):$PATH" TROY_LAB_CONFIG=$WORK/bad-multicast.conf sh "$ROOT/systemd/troy-lab-serve" 2> bad-multicast.log &&
  fail "troy-lab-serve started with multicast_min_wait = 10s"
grep -q "bad-multicast.conf:3: multicast_min_wait: '10s' is not a whole number from 0 to 3600" bad-multicast.log ||
  fail "troy-lab-serve's error for a bad number: $(cat bad-multicast.log)"
pass "a lab.conf number that is not one stops troy-lab-serve with the file:line error"

# --- bash completion: troy's own subcommands and options ---
complete_words() {  # WORD... (the last is being completed)
  (
    source "$ROOT/completion/troy"
    COMP_WORDS=("$TROY" "$@")
    COMP_CWORD=$#
    _troy
    printf '%s\n' "${COMPREPLY[@]}"
  )
}
"$TROY" --help | awk '/^Subcommands:/ { s = 1; next } s && /^  [a-z]/ { print $1 }' | sort > subcommands.txt
[ "$(wc -l < subcommands.txt)" -ge 10 ] || fail "troy --help lists too few subcommands: $(cat subcommands.txt)"
complete_words "" | sort > completed.txt
cmp -s subcommands.txt completed.txt || fail "troy <TAB>: $(diff subcommands.txt completed.txt)"
[ "$(complete_words la)" = lab ] || fail "troy la<TAB>: $(complete_words la)"
# (grep reads all the words: with -q it stops at the match, and the pipeline
# then fails now and then under pipefail, complete_words getting SIGPIPE.)
complete_words lab "" | grep -x config >/dev/null && complete_words lab "" | grep -x status >/dev/null ||
  fail "troy lab <TAB>: $(complete_words lab "")"
[ "$(complete_words -q lab conf)" = config ] || fail "troy -q lab conf<TAB>: $(complete_words -q lab conf)"
[ "$(complete_words lab config --sh)" = --shell ] || fail "troy lab config --sh<TAB>: $(complete_words lab config --sh)"
complete_words info --js | grep -x -- --json >/dev/null || fail "troy info --js<TAB>: $(complete_words info --js)"
complete_words help "" | grep -x merge >/dev/null || fail "troy help <TAB>: $(complete_words help "")"
[ -z "$(complete_words info fix)" ] || fail "troy info fix<TAB> should leave file names to bash: $(complete_words info fix)"
pass "bash completion: the subcommands of troy --help, nested ones (lab config), their options, file names left to bash"

echo "lab_service: $CHECKS checks passed"
