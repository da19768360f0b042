#!/bin/sh
# A table of the machines that reported: their newest report each.
#   pxe/status.sh SERVED
log=${1:?usage: pxe/status.sh SERVED}/reports/log
if [ ! -s "$log" ]; then echo "no machine has reported yet ($log is empty)"; exit 0; fi
awk -F '\t' '
  { last[$2] = $0 }
  END {
    printf "%-17s  %-15s  %-20s  %-6s  %-12s  %s\n", "MACHINE", "ADDRESS", "LAST REPORT (UTC)", "RESULT", "DISK HOLDS", "MESSAGE"
    for (machine in last) {
      split(last[machine], f, "\t")
      printf "%-17s  %-15s  %-20s  %-6s  %-12s  %s\n", f[2], f[3], f[1], f[4], f[5], f[6]
    }
  }' "$log" | { IFS= read -r header; echo "$header"; sort; }
