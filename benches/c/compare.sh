#!/usr/bin/env bash
# Puts the Rust and C benchmark results side by side: for each operation, value size and thread
# count, the best ns/op seen in each file (files may hold several rounds), and the C cost over
# Rust in percent.
# Usage: benches/c/compare.sh RUST.txt C_SHARED.txt C_STATIC.txt
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 RUST.txt C_SHARED.txt C_STATIC.txt" >&2; exit 2; }
awk '
    FNR == 1 { file++ }
    /^RESULT / {
        key = ""; ns = ""
        for (i = 2; i <= NF; i++) {
            split($i, kv, "=")
            if (kv[1] == "ns_per_op") ns = kv[2] + 0; else key = key (key == "" ? "" : " ") $i
        }
        if (!((file, key) in best) || ns < best[file, key]) best[file, key] = ns
        if (file == 1 && !(key in seen)) { seen[key] = 1; order[++n] = key }
    }
    function pct(c, r) { return r > 0 ? sprintf("%+.1f%%", 100 * (c - r) / r) : "n/a" }
    END {
        printf "| %-30s | %9s | %14s | %8s | %14s | %8s |\n", "measurement", "Rust ns", "C (shared) ns", "vs Rust", "C (static) ns", "vs Rust"
        printf "|%s|%s|%s|%s|%s|%s|\n", "--------------------------------", "-----------", "----------------", "----------", "----------------", "----------"
        for (i = 1; i <= n; i++) {
            k = order[i]; r = best[1, k]; s = best[2, k]; t = best[3, k]
            printf "| %-30s | %9.1f | %14.1f | %8s | %14.1f | %8s |\n", k, r, s, pct(s, r), t, pct(t, r)
        }
    }
' "$1" "$2" "$3"
