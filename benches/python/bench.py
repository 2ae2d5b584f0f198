"""Python benchmarks of coatcheck (`make bench-python`); figures go to BENCHMARKS.md.

What it measures, in one run:

1. Store operations (get / set / touch / destroy at 200 B and 2 KB) of `coatcheck.Store`
   against a dict of pickled values, cachelib's SimpleCache, Flask-Session's redis backend
   and redis-py, the last two against a real redis-server this script starts on a free
   127.0.0.1 port (no persistence) and stops by PID afterwards, also on failure.
2. Memory per session with 1M sessions of 200 B, each contender in a child process of its own
   (RSS growth; for redis, the redis-server process's RSS growth).
3. A Flask app under waitress (4 threads) with a bounded HTTP load from 127.0.0.1: Flask's
   default cookie session, coatcheck, Flask-Session with cachelib and with redis.

`coatcheck.Store` works on signed tokens, so its figures include HMAC signature checks that
the key-value contenders do not do. Not a test: nothing here fails on a slow figure.
Options: --quick (small sizes, to check the script works), --sessions N (memory section).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import http.client
from pathlib import Path
from typing import Any, Callable, Optional

HERE = Path(__file__).resolve().parent
TTL = 3600

# -- processes we start: redis-server and the app servers -------------------------------------

STARTED: list[subprocess.Popen[bytes]] = []


def stop_all() -> None:
    """Stops every process this script started, by PID."""
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def start_redis() -> tuple[int, subprocess.Popen[bytes]]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server not found (Debian package redis-server; make bench-python installs it)")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--protected-mode", "yes", "--daemonize", "no", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    STARTED.append(proc)
    wait_for_port(port, proc)
    return port, proc


def rss_of(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


# -- 1. store operations ----------------------------------------------------------------------


class Contender:
    """One way of keeping sessions, reduced to create/get/set/touch/destroy on a key."""

    name = ""

    def create(self, value: bytes) -> Any: ...
    def get(self, key: Any) -> Any: ...
    def set(self, key: Any, value: bytes) -> Any: ...
    def touch(self, key: Any) -> Any: ...
    def destroy(self, key: Any) -> Any: ...


class CoatcheckContender(Contender):
    name = "coatcheck.Store"

    def __init__(self) -> None:
        from coatcheck import Store

        self.store = Store("bench secret", idle_timeout=TTL)
        self.create = self.store.create  # type: ignore[method-assign]
        self.get = self.store.get  # type: ignore[method-assign]
        self.set = self.store.set  # type: ignore[method-assign]
        self.touch = self.store.touch  # type: ignore[method-assign]
        self.destroy = self.store.destroy  # type: ignore[method-assign]


class CoatcheckRedisContender(CoatcheckContender):
    """The same store shared through Redis (`redis_url`): reads from the near cache, writes
    through to the redis-server the other contenders use."""

    name = "coatcheck.Store + Redis"

    def __init__(self, port: int) -> None:
        from coatcheck import Store

        self.store = Store("bench secret", idle_timeout=TTL, redis_url=f"redis://127.0.0.1:{port}/0")
        self.create = self.store.create  # type: ignore[method-assign]
        self.get = self.store.get  # type: ignore[method-assign]
        self.set = self.store.set  # type: ignore[method-assign]
        self.touch = self.store.touch  # type: ignore[method-assign]
        self.destroy = self.store.destroy  # type: ignore[method-assign]


class PickledDict(Contender):
    """A dict of `(expires, pickle.dumps(value))`: what an in-process store in Python does."""

    name = "dict of pickled values"

    def __init__(self) -> None:
        self.d: dict[str, tuple[float, bytes]] = {}

    def create(self, value: bytes) -> str:
        key = secrets.token_urlsafe(24)
        self.d[key] = (time.monotonic() + TTL, pickle.dumps(value))
        return key

    def get(self, key: str) -> Optional[bytes]:
        found = self.d.get(key)
        if found is None or found[0] < time.monotonic():
            return None
        self.d[key] = (time.monotonic() + TTL, found[1])
        return pickle.loads(found[1])  # type: ignore[no-any-return]

    def set(self, key: str, value: bytes) -> None:
        self.d[key] = (time.monotonic() + TTL, pickle.dumps(value))

    def touch(self, key: str) -> bool:
        found = self.d.get(key)
        if found is None:
            return False
        self.d[key] = (time.monotonic() + TTL, found[1])
        return True

    def destroy(self, key: str) -> bool:
        return self.d.pop(key, None) is not None


class CachelibSimple(Contender):
    name = "cachelib SimpleCache"

    def __init__(self) -> None:
        from cachelib import SimpleCache

        self.c = SimpleCache(threshold=10_000_000, default_timeout=TTL)

    def create(self, value: bytes) -> str:
        key = secrets.token_urlsafe(24)
        self.c.set(key, value)
        return key

    def get(self, key: str) -> Any:
        return self.c.get(key)

    def set(self, key: str, value: bytes) -> Any:
        return self.c.set(key, value)

    def touch(self, key: str) -> Any:
        # SimpleCache has no touch: a read and a write, as Flask-Session's cachelib backend does.
        return self.c.set(key, self.c.get(key))

    def destroy(self, key: str) -> Any:
        return self.c.delete(key)


class RedisPy(Contender):
    name = "redis-py"

    def __init__(self, port: int) -> None:
        from redis import Redis

        self.r = Redis(host="127.0.0.1", port=port)

    def create(self, value: bytes) -> str:
        key = secrets.token_urlsafe(24)
        self.r.set(key, value, ex=TTL)
        return key

    def get(self, key: str) -> Any:
        return self.r.getex(key, ex=TTL)  # a read that slides the deadline, like Store.get

    def set(self, key: str, value: bytes) -> Any:
        return self.r.set(key, value, ex=TTL)

    def touch(self, key: str) -> Any:
        return self.r.expire(key, TTL)

    def destroy(self, key: str) -> Any:
        return self.r.delete(key)


class FlaskSessionRedis(Contender):
    """Flask-Session's redis interface, driven through the methods its requests use."""

    name = "Flask-Session (redis)"

    def __init__(self, port: int) -> None:
        import datetime

        from flask import Flask
        from flask_session.redis import RedisSessionInterface
        from redis import Redis

        self.app = Flask(__name__)
        self.ctx = self.app.app_context()
        self.ctx.push()
        self.iface = RedisSessionInterface(self.app, client=Redis(host="127.0.0.1", port=port))
        self.lifetime = datetime.timedelta(seconds=TTL)

    def _session(self, value: bytes) -> Any:
        return self.iface.session_class({"data": value.decode("latin-1")}, sid="x")

    def create(self, value: bytes) -> str:
        key = self.iface.key_prefix + secrets.token_urlsafe(24)
        self.iface._upsert_session(self.lifetime, self._session(value), key)
        return key

    def get(self, key: str) -> Any:
        return self.iface._retrieve_session_data(key)

    def set(self, key: str, value: bytes) -> Any:
        return self.iface._upsert_session(self.lifetime, self._session(value), key)

    def touch(self, key: str) -> Any:
        # Flask-Session refreshes a permanent session by writing it again.
        data = self.iface._retrieve_session_data(key)
        return self.iface._upsert_session(self.lifetime, self.iface.session_class(data, sid="x"), key)

    def destroy(self, key: str) -> Any:
        return self.iface._delete_session(key)


def ops_per_second(fn: Callable[[Any], Any], args: list[Any], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for a in args:
            fn(a)
        best = min(best, time.perf_counter() - start)
    return len(args) / best


def bench_ops(contender: Contender, size: int, n: int) -> dict[str, float]:
    value = os.urandom(size // 2).hex().encode()[:size]
    keys = [contender.create(value) for _ in range(n)]
    other = os.urandom(size // 2).hex().encode()[:size]
    result = {
        "get": ops_per_second(contender.get, keys),
        "set": ops_per_second(lambda k: contender.set(k, other), keys),
        "touch": ops_per_second(contender.touch, keys),
    }
    result["destroy"] = ops_per_second(contender.destroy, keys, repeat=1)
    return result


# -- 2. memory per session, one child process per contender ------------------------------------


def memory_child(name: str, n: int, size: int, redis_port: int) -> None:
    value = os.urandom(size // 2).hex().encode()[:size]
    holder: Any
    gc.collect()
    if name == "redis-py":
        from redis import Redis

        r = Redis(host="127.0.0.1", port=redis_port)
        r.flushall()
        server_pid = int(r.info("server")["process_id"])
        before = rss_of(server_pid)
        pipe = r.pipeline(transaction=False)
        for i in range(n):
            pipe.set(secrets.token_urlsafe(24), value, ex=TTL)
            if i % 10_000 == 9_999:
                pipe.execute()
        pipe.execute()
        time.sleep(0.2)
        after = rss_of(server_pid)
        r.flushall()
    else:
        if name == "coatcheck.Store":
            from coatcheck import Store

            store = Store("bench secret", idle_timeout=TTL)
            before = rss_of()
            for _ in range(n):
                store.create(value)
            holder = store
        elif name == "dict of pickled values":
            d = PickledDict()
            before = rss_of()
            for _ in range(n):
                d.create(value)
            holder = d
        elif name == "cachelib SimpleCache":
            c = CachelibSimple()
            before = rss_of()
            for _ in range(n):
                c.create(value)
            holder = c
        else:
            raise SystemExit(f"unknown contender {name}")
        gc.collect()
        after = rss_of()
        del holder
    print(json.dumps({"bytes_per_session": (after - before) / n}))


def measure_memory(name: str, n: int, size: int, redis_port: int) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", name, str(n), str(size), str(redis_port)],
        check=True, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    return float(json.loads(out.stdout.strip().splitlines()[-1])["bytes_per_session"])


# -- 3. Flask under waitress ------------------------------------------------------------------


def http_load(port: int, path_and_method: tuple[str, str], clients: int, requests: int) -> float:
    """req/s of `requests` requests from `clients` keep-alive connections, each with its own
    session (logged in first, not timed)."""
    method, path = path_and_method
    per_client = requests // clients
    cookies: list[str] = []
    for _ in range(clients):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/login")
        response = conn.getresponse()
        response.read()
        set_cookie = response.getheader("Set-Cookie")
        if not set_cookie:
            raise RuntimeError("login set no cookie")
        cookies.append(set_cookie.split(";", 1)[0])
        conn.close()
    errors: list[BaseException] = []
    barrier = threading.Barrier(clients + 1)

    def client(cookie: str) -> None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            barrier.wait()
            for _ in range(per_client):
                conn.request(method, path, headers={"Cookie": cookie})
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    raise RuntimeError(f"{method} {path}: HTTP {response.status}")
                new = response.getheader("Set-Cookie")
                if new:
                    cookie = new.split(";", 1)[0]
            conn.close()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in cookies]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join(120)
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    if any(t.is_alive() for t in threads):
        raise RuntimeError("HTTP load did not finish within 120 s")
    return per_client * clients / elapsed


def bench_flask(contender: str, redis_port: int, requests: int) -> dict[str, float]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "flask_app.py"), contender, str(port), str(redis_port)]
    )
    STARTED.append(proc)
    try:
        wait_for_port(port, proc)
        http_load(port, ("GET", "/read"), 4, 200)  # warm up
        return {
            "read": http_load(port, ("GET", "/read"), 4, requests),
            "write": http_load(port, ("POST", "/write"), 4, requests),
        }
    finally:
        STARTED.remove(proc)
        proc.terminate()
        proc.wait(10)


# -- report -----------------------------------------------------------------------------------


def fmt_rate(x: float) -> str:
    return f"{x / 1e6:.2f} M" if x >= 1e6 else f"{x / 1e3:.1f} k"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: checks that the script works")
    parser.add_argument("--sessions", type=int, default=None, help="sessions for the memory section (default 1M)")
    parser.add_argument("--sections", default="ops,memory,http", help="comma-separated subset of ops,memory,http")
    parser.add_argument("--memory-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        name, n, size, redis_port = args.memory_child
        memory_child(name, int(n), int(size), int(redis_port))
        return

    n_mem = args.sessions or (20_000 if args.quick else 1_000_000)
    n_local = 5_000 if args.quick else 100_000
    n_remote = 1_000 if args.quick else 20_000
    http_requests = 400 if args.quick else 4_000
    http_rounds = 1 if args.quick else 3

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        import coatcheck

        redis_port, _ = start_redis()
        print(f"coatcheck {coatcheck.__version__}, Python {sys.version.split()[0]}, "
              f"{os.cpu_count()} CPUs, redis-server on 127.0.0.1:{redis_port}"
              f"{' (--quick: reduced sizes)' if args.quick else ''}\n")  # fmt: skip

        sections = set(args.sections.split(","))
        report: list[str] = []
        for size in (200, 2048) if "ops" in sections else ():  # 1. operations
            contenders: list[tuple[Contender, int]] = [
                (CoatcheckContender(), n_local),
                (CoatcheckRedisContender(redis_port), n_remote),
                (PickledDict(), n_local),
                (CachelibSimple(), n_local),
                (FlaskSessionRedis(redis_port), n_remote),
                (RedisPy(redis_port), n_remote),
            ]
            results = {c.name: bench_ops(c, size, n) for c, n in contenders}
            ours = results["coatcheck.Store"]
            rows = []
            for name, r in results.items():
                cells = [name]
                for op in ("get", "set", "touch", "destroy"):
                    ratio = "" if name == "coatcheck.Store" else f" (Store {ours[op] / r[op]:.1f}x)"
                    cells.append(fmt_rate(r[op]) + ratio)
                rows.append(cells)
            report.append(f"### Operations per second, {size} B values (one thread)\n\n"
                          + table(["contender", "get", "set", "touch", "destroy"], rows))  # fmt: skip
            print(report[-1] + "\n", flush=True)
            shared = results["coatcheck.Store + Redis"]
            rows = [
                [name] + [f"{shared[op] / results[name][op]:.1f}x" for op in ("get", "set", "touch", "destroy")]
                for name in ("redis-py", "Flask-Session (redis)")
            ]
            report.append(f"### coatcheck.Store + Redis against the Redis clients, {size} B values\n\n"
                          + table(["against", "get", "set", "touch", "destroy"], rows))  # fmt: skip
            print(report[-1] + "\n", flush=True)

        # 2. memory
        rows = []
        mem: dict[str, float] = {}
        for name in ("coatcheck.Store", "dict of pickled values", "cachelib SimpleCache", "redis-py"):
            if "memory" in sections:
                mem[name] = measure_memory(name, n_mem, 200, redis_port)
        for name, b in mem.items():
            ratio = "" if name == "coatcheck.Store" else f"{mem['coatcheck.Store'] / b:.2f}"
            rows.append([name, f"{b:.0f}", ratio])
        if mem:
            report.append(f"### Memory per session, {n_mem:,} sessions of 200 B (RSS growth)\n\n"
                          + table(["contender", "bytes/session", "Store / contender"], rows))  # fmt: skip
            print(report[-1] + "\n", flush=True)
        if "http" not in sections:
            return

        # 3. Flask under waitress
        # Rounds interleave the contenders and keep each one's best figure, so a burst of
        # background load hurts one round of one contender, not the comparison.
        flask_results: dict[str, dict[str, float]] = {}
        for _ in range(http_rounds):
            for contender in ("cookie", "coatcheck", "flask-session-cachelib", "flask-session-redis"):
                got = bench_flask(contender, redis_port, http_requests)
                best = flask_results.setdefault(contender, got)
                for k, v in got.items():
                    best[k] = max(best[k], v)
        ours_http = flask_results["coatcheck"]
        rows = []
        for contender, r in flask_results.items():
            rows.append([
                contender,
                f"{r['read']:.0f}", f"{ours_http['read'] / r['read']:.2f}",
                f"{r['write']:.0f}", f"{ours_http['write'] / r['write']:.2f}",
            ])  # fmt: skip
        report.append(f"### Flask under waitress (4 threads), best of {http_rounds} rounds of {http_requests} requests from 4 keep-alive clients\n\n"
                      + table(["session backend", "read req/s", "coatcheck / it", "write req/s", "coatcheck / it"], rows))  # fmt: skip
        print(report[-1], flush=True)
    finally:
        stop_all()


if __name__ == "__main__":
    main()
