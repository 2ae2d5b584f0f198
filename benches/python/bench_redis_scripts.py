"""What the shared tier's scripts cost Redis itself, against the plain commands connect-redis and
Flask-Session send (issue 10).

Redis runs commands on one thread, so a pipelined `redis-benchmark` run measures its CPU per
command: 1 / (commands per second). This runs the tier's WRITE script (a session written
again, as a request that changes its session does) and its LOAD script (a read that finds no
trusted copy) against `SET` and `GET` of a 200 B value, on a redis-server of its own, alternating
the rounds. The scripts are read from core/src/tier/scripts.rs, so the figures are those of the
scripts in this tree.

Run: .venv/bin/python benches/python/bench_redis_scripts.py (ROUNDS, OPS change the run).
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
from pathlib import Path

from bench import start_redis, stop_all

ROUNDS = int(os.environ.get("ROUNDS", "3"))
OPS = int(os.environ.get("OPS", "300000"))
SCRIPTS = Path(__file__).resolve().parents[2] / "core" / "src" / "tier" / "scripts.rs"
VALUE = "x" * 200


def script_source(name: str) -> str:
    """The prelude and the body of the script `name`, as the tier sends them."""
    text = SCRIPTS.read_text()
    prelude = re.search(r'const PRELUDE: &str = r"(.*?)";', text, re.S)
    body = re.search(rf"static {name}: LazyLock<Script>.*?r\"(.*?)\",", text, re.S)
    if prelude is None or body is None:
        raise SystemExit(f"script {name} not found in {SCRIPTS}")
    return prelude.group(1) + body.group(1)


def cli(port: int, *args: str) -> str:
    out = subprocess.run(
        ["redis-cli", "-p", str(port), *args], check=True, capture_output=True, text=True, timeout=30
    )
    return out.stdout.strip()


def per_second(port: int, *command: str) -> float:
    """Commands per second of `command`, 8 clients with 16 commands in flight each."""
    out = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-n", str(OPS), "-c", "8", "-P", "16", "-r", "10000", "-q",
         *command],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    found = re.findall(r"([0-9.]+) requests per second", out.stdout.replace("\r", "\n"))
    if not found:
        raise SystemExit(f"no figure from redis-benchmark {' '.join(command)}: {out.stdout[-300:]}")
    return float(found[-1])


def main() -> None:
    if shutil.which("redis-benchmark") is None:
        raise SystemExit("redis-benchmark not found (Debian package redis-tools)")
    port, _ = start_redis()
    try:
        write = cli(port, "SCRIPT", "LOAD", script_source("WRITE"))
        load = cli(port, "SCRIPT", "LOAD", script_source("LOAD"))
        # WRITE's arguments: no precondition, the value, the default idle timeout (30 min), no
        # absolute timeout, the key prefix, no id sealed for listing.
        write_args = ["none", "0", VALUE, "0", "1800000", "0", "p:", ""]
        cells = {
            "SET (connect-redis, Flask-Session write)": ["SET", "k:__rand_int__", VALUE],
            "WRITE script, a session written again": ["EVALSHA", write, "2", "s:__rand_int__", "p:version", *write_args],
            "GET (connect-redis, Flask-Session read)": ["GET", "k:__rand_int__"],
            "LOAD script, a read with no trusted copy": ["EVALSHA", load, "1", "s:__rand_int__", "0", ""],
        }  # fmt: skip
        # Every key the timed rounds touch exists first, so each cell measures its usual case.
        per_second(port, *cells["SET (connect-redis, Flask-Session write)"])
        per_second(port, *cells["WRITE script, a session written again"])
        runs: dict[str, list[float]] = {name: [] for name in cells}
        for _ in range(ROUNDS):
            for name, command in cells.items():
                runs[name].append(per_second(port, *command))
        rate = {name: statistics.median(r) for name, r in runs.items()}
        print(f"Redis's own cost per command, 200 B values, median of {ROUNDS} rounds of {OPS} commands")
        print("(8 clients x 16 in flight; Redis runs commands on one thread, so 1/rate is its CPU per command)")
        for name, r in rate.items():
            print(f"  {name:<45} {r:>10.0f}/s  {1e6 / r:6.2f} us of Redis per command")
        set_rate = rate["SET (connect-redis, Flask-Session write)"]
        get_rate = rate["GET (connect-redis, Flask-Session read)"]
        print(f"  WRITE costs Redis {set_rate / rate['WRITE script, a session written again']:.1f}x a SET")
        print(f"  LOAD costs Redis {get_rate / rate['LOAD script, a read with no trusted copy']:.1f}x a GET")
    finally:
        stop_all()


if __name__ == "__main__":
    main()
