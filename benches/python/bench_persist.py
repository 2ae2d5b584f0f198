"""The restart log's cost where Python users meet it (issue 11).

``Store.set`` of 200 B sessions over 10,000 tokens (each write changing a counter in the
session), one thread, with and without ``persist_path`` (fsync ``never`` / ``interval`` / ``always``). Each round runs every mode, in
an order that rotates from round to round (after one warm-up round), so that machine noise
hits each alike; medians are compared against the same store without a log, in the same run. A benchmark, not a test: nothing fails on a slow figure.

Run: ``.venv/bin/python benches/python/bench_persist.py`` (``OPS``, ``ROUNDS`` change the run).
"""

from __future__ import annotations

import gc
import os
import statistics
import tempfile
import time

from coatcheck import Store

OPS = int(os.environ.get("OPS", 200_000))
ROUNDS = int(os.environ.get("ROUNDS", 5))
SESSIONS = 10_000
MODES = ("none", "never", "interval", "always")
# `always` waits for the disk in every call: fewer ops keep its cell within seconds.
ALWAYS_OPS = min(OPS, 5_000)


# Distinct values, one per counter; a prime count, so a session's next write carries another.
VALUES = 997


def session_value(n: int) -> bytes:
    """200 bytes shaped like a Flask session, with `n` in its middle."""
    text = (
        '{"_fresh":true,"_id":"4f2a","views":%010d,"user_id":"user-42",'
        '"csrf_token":"b1946ac92492d2347c6235b4d2611184","cart":["a","b"]}' % n
    )
    return text.encode().ljust(200)


def sets_per_second(mode: str, root: str) -> float:
    options = {}
    if mode != "none":
        options = {"persist_path": tempfile.mkdtemp(dir=root), "persist_fsync": mode}
    store = Store("bench secret " * 4, idle_timeout=3600, **options)
    # Each write changes a counter in the session, as an app's writes do (the log records
    # the bytes that changed); the values are made before the clock starts.
    values = [session_value(i) for i in range(VALUES)]
    tokens = [store.create(values[0]) for _ in range(SESSIONS)]
    n = ALWAYS_OPS if mode == "always" else OPS
    run = [(tokens[i % SESSIONS], values[i % VALUES]) for i in range(n)]
    start = time.perf_counter()
    for token, value in run:
        store.set(token, value)
    elapsed = time.perf_counter() - start
    del store
    gc.collect()  # closes this round's log before the next round starts
    return n / elapsed


def main() -> None:
    results: dict[str, list[float]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory(prefix="coatcheck-bench-persist-") as root:
        # Round 0 warms up and is not counted; later rounds rotate the order, so no mode
        # always follows the same one.
        for round_ in range(ROUNDS + 1):
            for mode in MODES[round_ % len(MODES) :] + MODES[: round_ % len(MODES)]:
                ops = sets_per_second(mode, root)
                if round_ > 0:
                    results[mode].append(ops)
    base = statistics.median(results["none"])
    print(
        f"Store.set, 200 B over {SESSIONS} sessions, one thread, median of {ROUNDS} rounds "
        f"({OPS} ops; always: {ALWAYS_OPS})"
    )
    print("mode          sets/s   vs no log")
    for mode in MODES:
        ops = statistics.median(results[mode])
        print(f"{mode:<10} {ops:>9.0f}   {ops / base:.2f}x")


if __name__ == "__main__":
    main()
