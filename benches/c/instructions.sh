#!/usr/bin/env bash
# Instructions per operation (valgrind callgrind), Rust against the C API: a measure of the
# boundary's cost that other load on the machine cannot disturb, unlike wall time. Each figure
# is (Ir of a run with 2N operations - Ir of a run with N) / N, so setup and prefill cancel out.
# `create` also counts the untimed destroy that follows each created session in both programs.
# Usage: benches/c/instructions.sh RUST_BENCH_BINARY C_SHARED_BINARY C_STATIC_BINARY
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 RUST_BIN C_SHARED_BIN C_STATIC_BIN" >&2; exit 2; }
n=${COATCHECK_BENCH_IR_OPS:-50000}
ir() { # binary op size ops
    COATCHECK_BENCH_ONLY="$2/$3/1" COATCHECK_BENCH_SESSIONS=20000 COATCHECK_BENCH_OPS=$4 COATCHECK_BENCH_REPEATS=1 \
        valgrind --tool=callgrind --callgrind-out-file=/dev/null "$1" 2>&1 >/dev/null |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
printf '| %-12s | %8s | %12s | %8s | %12s | %8s |\n' "op/size" "Rust Ir" "C shared Ir" "vs Rust" "C static Ir" "vs Rust"
printf '|%s|%s|%s|%s|%s|%s|\n' "--------------" "----------" "--------------" "----------" "--------------" "----------"
for size in 200 2048; do
    for op in get set touch create; do
        row=()
        for bin in "$@"; do
            a=$(ir "$bin" "$op" "$size" "$n")
            b=$(ir "$bin" "$op" "$size" $((2 * n)))
            row+=($(((b - a) / n)))
        done
        pct() { awk -v c="$1" -v r="$2" 'BEGIN { printf "%+.1f%%", 100 * (c - r) / r }'; }
        printf '| %-12s | %8d | %12d | %8s | %12d | %8s |\n' "$op/$size" "${row[0]}" \
            "${row[1]}" "$(pct "${row[1]}" "${row[0]}")" "${row[2]}" "$(pct "${row[2]}" "${row[0]}")"
    done
done
