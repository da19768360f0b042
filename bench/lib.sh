# Shared by the benchmark scripts. Source it after setting TROY, RUNS and
# SIZE_MIB (and NAME_WIDTH, the width of the tool column).

die() { echo "$(basename "$0"): $*" >&2; exit 1; }

# GNU time, not the shell keyword: only it reports peak RSS (%M).
require_bench_tools() {
  [[ -x /usr/bin/time ]] || die "/usr/bin/time not found; install it with: apt-get install time"
  command -v qemu-img >/dev/null || die "qemu-img not found; install it with: apt-get install qemu-utils"
  [[ -x $TROY ]] || die "troy binary not found or not executable: $TROY (build it first)"
}

# bench OUTPUT CMD...: runs CMD once untimed (warms the page cache: we measure
# the programs, not the disk), then RUNS times under GNU time, removing OUTPUT
# (none: nothing to remove) before each run, outside the timing. Sets BEST_S
# (best wall seconds) and PEAK_KIB (largest peak RSS).
bench() {
  local output=$1 run seconds kib
  shift
  BEST_S="" PEAK_KIB=0
  [[ $output == none ]] || rm -f "$output"
  # stderr goes to a file (troy prints a summary line per run); shown only if a run fails.
  "$@" >/dev/null 2>tool.err || { cat tool.err >&2; die "failed: $*"; }
  for (( run = 0; run < RUNS; run++ )); do
    [[ $output == none ]] || rm -f "$output"
    /usr/bin/time -f '%e %M' -o time.out "$@" >/dev/null 2>tool.err \
      || { cat tool.err >&2; die "failed: $*"; }
    read -r seconds kib < time.out
    if [[ -z $BEST_S ]] || awk -v a="$seconds" -v b="$BEST_S" 'BEGIN { exit !(a < b) }'; then
      BEST_S=$seconds
    fi
    if (( kib > PEAK_KIB )); then PEAK_KIB=$kib; fi
  done
}

row() {  # name seconds peak_kib [mib, default SIZE_MIB]
  awk -v n="$1" -v s="$2" -v k="$3" -v mib="${4:-$SIZE_MIB}" -v w="${NAME_WIDTH:-40}" 'BEGIN {
    rate = (s > 0) ? sprintf("%.0f", mib / s) : "n/a"  # GNU time rounds to 10 ms
    printf "%-*s %9.2f %10s %12.1f\n", w, n, s, rate, k / 1024 }'
}

table_header() {  # title
  echo
  printf "%-*s %9s %10s %12s\n" "${NAME_WIDTH:-40}" "$1" best_wall_s "MiB/s" peak_rss_MiB
}
