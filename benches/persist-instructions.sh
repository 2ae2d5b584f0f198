#!/usr/bin/env bash
# Instructions per write with the restart log (fsync never) and without, under callgrind: a
# figure that other load on the machine cannot disturb. One thread, 1,000 sessions, 200,000
# writes of 200 B values (see `instructions` in benches/persist.rs); the counts include building
# the store and filling it, about 1% of the total.
# Usage: benches/persist-instructions.sh <persist bench executable>
set -euo pipefail
bin=$1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
writes=200000
count() {
  valgrind --tool=callgrind --callgrind-out-file="$out/cg" "$bin" instructions "$1" "$2" >/dev/null 2>&1
  callgrind_annotate "$out/cg" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }'
}
printf '%-28s %14s %14s %14s %8s\n' "writes (1 thread, 200 B)" "no log/write" "log/write" "log's cost" "ratio"
for w in counter new; do
  none=$(count none "$w")
  log=$(count log "$w")
  label="a counter changes"
  [ "$w" = new ] && label="every byte new"
  printf '%-28s %14d %14d %14d %7.2fx\n' "$label" $((none / writes)) $((log / writes)) \
    $(((log - none) / writes)) "$(awk -v a="$none" -v b="$log" 'BEGIN { print a / b }')"
done
