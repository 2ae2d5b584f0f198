"""The shared tier over HTTP (issue 10): Flask under ``gunicorn -w 2``, coatcheck on Redis
(``COATCHECK_REDIS_URL``) against Flask-Session's redis backend (redis-py), both on one
redis-server this script starts on a free 127.0.0.1 port and stops by PID, in the same run.
Goals: req/s >= 1.3x and p99 <= 0.8x Flask-Session's; ~0 Redis commands per read and 1 per
write; 0 sessions lost.

The app is benches/python/flask_app.py's (the routes bench.py measures) plus ``GET /_stats``.
The load comes from the Node benchmarks' autocannon (benches/node/load.js), so that this and
bench-http-cluster.js measure with the same client and p99 means the same thing. Sessions are
created through the app (``POST /login``), so that each is in the near cache of the worker that
created it only: the other worker must find it through Redis, as another host would.

The workers are gthread workers with one thread: one request at a time each, as sync workers,
but with keep-alive. Sync workers close the connection after every response, which autocannon
does not handle (it counts about two requests sent per response, errors, and latencies of
~0.7 s, at 2 connections as at 8). One request at a time per worker means that connections beyond
the two in service only queue, so the load uses 8 connections (CONNECTIONS), not the 32 of
the Express benchmark.

Run: ``make bench-python`` or ``DURATION=10 SESSIONS=1000 .venv/bin/python
benches/python/bench_http_shared.py`` from the repository root. Not a test: nothing here fails
on a slow figure.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from bench import STARTED, free_port, start_redis, stop_all, table, wait_for_port

if TYPE_CHECKING:  # Flask is imported in the gunicorn workers, not in the driver
    from flask import Flask

HERE = Path(__file__).resolve().parent
LOAD_JS = HERE.parent / "node" / "load.js"
DURATION = int(os.environ.get("DURATION", "10"))
SESSIONS = int(os.environ.get("SESSIONS", "1000"))
# The machine is shared and noisy: rounds alternate the contenders; the tables give medians.
ROUNDS = int(os.environ.get("ROUNDS", "3"))
WORKERS = 2
CONNECTIONS = 8
CONTENDERS = ("coatcheck+redis", "flask-session+redis")
ROUTES = (("read", "GET", "/read"), ("write", "POST", "/write"))


# -- the app, built by gunicorn in each worker -------------------------------------------------


def make_app(contender: str, redis_port: int) -> Flask:
    """``gunicorn 'bench_http_shared:make_app("coatcheck+redis", PORT)'``."""
    from flask import jsonify

    import flask_app

    stats: Callable[[], Optional[dict[str, int]]]
    if contender == "coatcheck+redis":
        from coatcheck.flask import CoatcheckSession

        # flask_app's routes on Flask's own cookie session, which CoatcheckSession replaces.
        app = flask_app.make_app("cookie", None)
        app.config["COATCHECK_REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
        store = CoatcheckSession(app).store
        assert store is not None
        stats = store.stats
    elif contender == "flask-session+redis":
        app = flask_app.make_app("flask-session-redis", redis_port)
        stats = lambda: None  # noqa: E731
    else:
        raise SystemExit(f"unknown contender {contender}")

    @app.get("/_stats")
    def _stats() -> Any:
        return jsonify(pid=os.getpid(), stats=stats())

    return app


# -- the driver --------------------------------------------------------------------------------


def request(port: int, method: str, path: str, cookie: Optional[str] = None) -> tuple[int, Optional[str], bytes]:
    """(status, Set-Cookie, body) of one request over a connection of its own."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, headers={"Cookie": cookie} if cookie else {})
        response = conn.getresponse()
        return response.status, response.getheader("Set-Cookie"), response.read()
    finally:
        conn.close()


def login(port: int) -> list[str]:
    def one(_: int) -> str:
        status, set_cookie, _body = request(port, "POST", "/login")
        if status != 200 or not set_cookie:
            raise RuntimeError(f"POST /login: HTTP {status}, no cookie")
        return set_cookie.split(";", 1)[0]

    with ThreadPoolExecutor(CONNECTIONS) as pool:
        return list(pool.map(one, range(SESSIONS)))


def count_lost(port: int, cookies: list[str]) -> int:
    """Sessions whose /read no longer finds them (both backends answer a missing session with
    an empty one)."""

    def found(cookie: str) -> bool:
        status, _, body = request(port, "GET", "/read", cookie)
        return status == 200 and json.loads(body)["user"] == "user-42"

    with ThreadPoolExecutor(CONNECTIONS) as pool:
        return sum(not ok for ok in pool.map(found, cookies))


def worker_stats(port: int) -> Optional[dict[str, int]]:
    """The store counters summed over the workers. Each worker answers for itself, and which
    one accepts a connection is up to the kernel: ask until every worker has answered."""
    seen: dict[int, Optional[dict[str, int]]] = {}
    for _ in range(200):
        answer = json.loads(request(port, "GET", "/_stats")[2])
        seen[answer["pid"]] = answer["stats"]
        if len(seen) == WORKERS:
            break
    else:
        raise RuntimeError(f"/_stats: only workers {sorted(seen)} answered")
    if any(s is None for s in seen.values()):
        return None
    return {key: sum(s[key] for s in seen.values() if s) for key in next(iter(seen.values())) or {}}


def autocannon(port: int, method: str, path: str, cookies: list[str], duration: int) -> dict[str, Any]:
    options = {"port": port, "method": method, "path": path, "cookies": cookies,
               "connections": CONNECTIONS, "duration": duration}  # fmt: skip
    out = subprocess.run(["node", str(LOAD_JS)], input=json.dumps(options), capture_output=True,
                         text=True, check=True, timeout=duration + 120)  # fmt: skip
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def command_stats(redis: Any) -> dict[str, int]:
    """Calls per command Redis has run, those inside Lua scripts included; each call adds one
    INFO."""
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in redis.info("commandstats").items()}


def measure(port: int, redis: Any, method: str, path: str, cookies: list[str]) -> dict[str, Any]:
    autocannon(port, method, path, cookies, 1)  # warm-up: near caches, connections to Redis
    stats_before = worker_stats(port)
    commands_before = command_stats(redis)
    r = autocannon(port, method, path, cookies, DURATION)
    commands_after = command_stats(redis)
    commands_after["info"] -= 1  # the INFO before
    stats_after = worker_stats(port)
    requests = r["requests"]["total"]
    by_command = sorted(((name, (calls - commands_before.get(name, 0)) / requests)
                         for name, calls in commands_after.items()), key=lambda c: -c[1])  # fmt: skip
    row: dict[str, Any] = {
        "rps": r["requests"]["average"], "p50": r["latency"]["p50"], "p99": r["latency"]["p99"],
        "non2xx": r["non2xx"], "errors": r["errors"] + r["timeouts"],
        "commands": sum(n for _, n in by_command), "by_command": by_command,
        "hit_rate": None, "round_trips": None, "tier_failures": 0,
    }  # fmt: skip
    if stats_before is not None and stats_after is not None:
        delta = {key: stats_after[key] - stats_before[key] for key in stats_after}
        lookups = delta["tier_near_hits"] + delta["tier_near_misses"]
        row["hit_rate"] = delta["tier_near_hits"] / lookups if lookups else None
        row["round_trips"] = delta["tier_round_trips"] / requests
        row["tier_failures"] = delta["tier_failures"]
    return row


def gunicorn(contender: str, redis_port: int) -> tuple[int, subprocess.Popen[bytes]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", str(WORKERS), "--worker-class", "gthread",
         "--threads", "1", "--bind", f"127.0.0.1:{port}", "--chdir", str(HERE), "--log-level", "warning",
         f"bench_http_shared:make_app({contender!r}, {redis_port})"],
    )  # fmt: skip
    STARTED.append(proc)
    wait_for_port(port, proc)
    worker_stats(port)  # the master listens before its workers have built the app
    return port, proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    STARTED.remove(proc)
    proc.terminate()
    proc.wait(30)


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per route and contender: medians over the rounds, counts summed."""

    def median(values: list[Any]) -> Any:
        present = sorted(v for v in values if v is not None)
        return present[len(present) // 2] if present else None

    out = []
    for route, _, _ in ROUTES:
        for contender in CONTENDERS:
            mine = [r for r in rows if r["route"] == route and r["contender"] == contender]
            names = {name for r in mine for name, _ in r["by_command"]}
            by_command = sorted(((name, median([dict(r["by_command"]).get(name, 0.0) for r in mine]))
                                 for name in names), key=lambda c: -c[1])  # fmt: skip
            summary = {key: median([r[key] for r in mine])
                       for key in ("rps", "p50", "p99", "commands", "round_trips", "hit_rate")}  # fmt: skip
            summary.update(route=route, contender=contender, by_command=by_command,
                           non2xx=sum(r["non2xx"] for r in mine), errors=sum(r["errors"] for r in mine),
                           tier_failures=sum(r["tier_failures"] for r in mine),
                           per_round=", ".join(f"{r['rps']:.0f}/{r['p99']}" for r in mine))  # fmt: skip
            out.append(summary)
    return out


def report(all_rows: list[dict[str, Any]], lost: dict[str, int]) -> None:
    rows = summarize(all_rows)
    fixed = lambda x: "–" if x is None else f"{x:.2f}"  # noqa: E731
    percent = lambda x: "–" if x is None else f"{100 * x:.1f} %"  # noqa: E731
    print(f"\n### Flask under gunicorn, {WORKERS} workers of 1 thread, sessions on one redis-server\n")
    print(f"`ROUNDS={ROUNDS} DURATION={DURATION} SESSIONS={SESSIONS} .venv/bin/python"
          " benches/python/bench_http_shared.py`"
          f" (Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, autocannon on the same machine)")
    print(f"{SESSIONS} sessions, {CONNECTIONS} keep-alive connections (gthread workers of one thread take"
          f" one request at a time each: more connections would only queue), {DURATION} s per cell"
          f" after 1 s of warm-up, median of {ROUNDS} rounds (rounds alternate which contender goes first)."
          " Redis cmds/req: everything Redis ran during the cell over completed requests.\n")  # fmt: skip
    print(table(
        ["route", "contender", "req/s", "p50 ms", "p99 ms", "non-2xx", "errors", "Redis cmds/req",
         "tier round trips/req", "near-cache hit rate", "req/s / p99 per round"],
        [[r["route"], r["contender"], f"{r['rps']:.0f}", str(r["p50"]), str(r["p99"]), str(r["non2xx"]),
          str(r["errors"]), fixed(r["commands"]), fixed(r["round_trips"]), percent(r["hit_rate"]),
          r["per_round"]]
         for r in rows],
    ))  # fmt: skip
    print("\nRedis commands per request by name (those run inside Lua scripts included):")
    for r in rows:
        named = ", ".join(f"{name} {n:.2f}" for name, n in r["by_command"] if n >= 0.01)
        print(f"- {r['route']}, {r['contender']}: {named}")
    ratios = []
    for route, _, _ in ROUTES:
        ours, theirs = (next(r for r in rows if r["route"] == route and r["contender"] == c) for c in CONTENDERS)
        p99 = f"{ours['p99'] / theirs['p99']:.2f}x" if theirs["p99"] else "–"
        ratios.append([route, f"{ours['rps'] / theirs['rps']:.2f}x", p99])
    print()
    print(table(["route", "req/s coatcheck / Flask-Session (goal ≥ 1.3)",
                 "p99 coatcheck / Flask-Session (goal ≤ 0.8)"], ratios))  # fmt: skip
    print(f"\nSessions lost (of {SESSIONS} per round, checked after both phases): "
          + ", ".join(f"{c} {n}" for c, n in lost.items()))  # fmt: skip
    failures = sum(r["tier_failures"] for r in rows)
    if failures:
        print(f"coatcheck tier failures during the cells: {failures}")


def main() -> None:
    from redis import Redis

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rows: list[dict[str, Any]] = []
    lost: dict[str, int] = {}
    try:
        redis_port, _ = start_redis()
        # One connection for the whole run: a new one would add its handshake to a cell.
        redis = Redis(host="127.0.0.1", port=redis_port, single_connection_client=True)
        for round_ in range(ROUNDS):
            for contender in CONTENDERS if round_ % 2 == 0 else CONTENDERS[::-1]:
                redis.flushall()
                port, proc = gunicorn(contender, redis_port)
                try:
                    cookies = login(port)
                    for route, method, path in ROUTES:
                        row = {"route": route, "contender": contender, **measure(port, redis, method, path, cookies)}
                        print(f"round {round_ + 1} {contender} {path}: {row['rps']:.0f} req/s, p50 {row['p50']} ms,"
                              f" p99 {row['p99']} ms, {row['commands']:.2f} Redis cmds/req", file=sys.stderr,
                              flush=True)  # fmt: skip
                        rows.append(row)
                    lost[contender] = lost.get(contender, 0) + count_lost(port, cookies)
                finally:
                    stop(proc)
        report(rows, lost)
    finally:
        stop_all()


if __name__ == "__main__":
    main()
