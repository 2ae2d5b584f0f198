"""Instructions per call from Python, under callgrind: a figure that other load on the machine
cannot disturb (`make bench-python-instructions`; figures go to BENCHMARKS.md).

For each contender of `bench.py`'s in-process section (`coatcheck.Store`, a dict of pickled
values, cachelib's SimpleCache) and each operation, a child process runs the same loop over
1,000 sessions of 200 B twice under callgrind: with N calls and with none. The difference over N,
less the same loop calling a function that does nothing, is what one call costs, the Python
call itself included.

valgrind hides the CPU's SHA extensions, so under it `coatcheck.Store` hashes in software: the
"SHA-256" column is that part of each call (its HMAC check of the token), which on a CPU with
the SHA extensions (most x86-64 since 2017-2019, and this machine) costs a small fraction of it.
The "outside SHA-256" column is the rest, the part the binding and the core can change.

Usage: .venv/bin/python benches/python/call_instructions.py [--calls N]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
SESSIONS = 1000
VALUE = b"v" * 200
OPS = ("get", "set", "touch")


def contender(name: str) -> Any:
    sys.path.insert(0, str(HERE))
    import bench

    return {
        "coatcheck": bench.CoatcheckContender,
        "pickled": bench.PickledDict,
        "cachelib": bench.CachelibSimple,
    }[name]()


def child(name: str, op: str, calls: int) -> None:
    """The measured loop; `op` "nothing" calls a function that does nothing."""
    c = contender(name)
    keys = [c.create(VALUE) for _ in range(SESSIONS)]
    fn: Callable[..., Any]
    if op == "set":
        st = c.set
        for i in range(calls):
            st(keys[i % SESSIONS], VALUE)
        return
    fn = {"get": c.get, "touch": c.touch, "nothing": lambda key: None}[op]
    for i in range(calls):
        fn(keys[i % SESSIONS])


def callgrind(name: str, op: str, calls: int, out: str) -> tuple[int, int]:
    """(all instructions, those in SHA-256's compression function) of one child run."""
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
         sys.executable, __file__, "--child", name, op, str(calls)],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    report = subprocess.run(
        ["callgrind_annotate", "--threshold=100", out], check=True, capture_output=True, text=True
    ).stdout
    total = sha = 0
    for line in report.splitlines():
        m = re.match(r"\s*([\d,]+)\s", line)
        if not m:
            continue
        n = int(m.group(1).replace(",", ""))
        if "PROGRAM TOTALS" in line:
            total = n
        elif "sha2::sha256::compress" in line:
            sha += n
    return total, sha


def per_call(name: str, op: str, calls: int, tmp: str) -> tuple[float, float]:
    full, full_sha = callgrind(name, op, calls, os.path.join(tmp, "full"))
    empty, empty_sha = callgrind(name, op, 0, os.path.join(tmp, "empty"))
    return (full - empty) / calls, (full_sha - empty_sha) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--child", nargs=3, metavar=("CONTENDER", "OP", "CALLS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind not found (Debian package valgrind)")
    import coatcheck

    print(f"coatcheck {coatcheck.__version__}, Python {sys.version.split()[0]}, {args.calls} calls per cell")
    with tempfile.TemporaryDirectory() as tmp:
        loop, _ = per_call("pickled", "nothing", args.calls, tmp)
        print(f"the loop around each call (a function that does nothing): {loop:,.0f} instructions, "
              "subtracted below")  # fmt: skip
        rows = []
        ours: dict[str, float] = {}
        for op in OPS:
            total, sha = per_call("coatcheck", op, args.calls, tmp)
            ours[op] = total - loop - sha
            rows.append(f"| coatcheck.Store | {op} | {total - loop:,.0f} | {sha:,.0f} | {ours[op]:,.0f} | |")
        for name, label in (("pickled", "dict of pickled values"), ("cachelib", "cachelib SimpleCache")):
            for op in OPS:
                total, _ = per_call(name, op, args.calls, tmp)
                rows.append(
                    f"| {label} | {op} | {total - loop:,.0f} | – | {total - loop:,.0f} "
                    f"| {(total - loop) / ours[op]:.2f}x |"
                )
    print()
    print("| contender | call | instructions | SHA-256 | outside SHA-256 | ÷ coatcheck outside SHA-256 |")
    print("| --- | --- | --: | --: | --: | --: |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
