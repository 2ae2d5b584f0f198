"""Two hosts sharing sessions through Redis on a third: three network namespaces made (and
removed) by this test with `ip netns` and veth pairs on a bridge, a gunicorn Flask server in
each host namespace, redis-server in the third; the client, in the test's own namespace,
alternates hosts request by request."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

APPS = Path(__file__).parent / "apps"
CYCLES = int(os.environ.get("COATCHECK_TWO_HOST_CYCLES", "300"))
SUDO = [] if os.geteuid() == 0 else ["sudo", "-n"]


def ip(*args: str) -> None:
    subprocess.run([*SUDO, "ip", *args], check=True, capture_output=True, timeout=30)


def in_ns(ns: str, *command: str) -> list[str]:
    return [*SUDO, "ip", "netns", "exec", ns, *command]


@contextlib.contextmanager
def network(tag: str) -> Iterator[dict[str, str]]:
    """A bridge in this namespace and three namespaces on it: redis, host a, host b."""
    bridge = f"ccbr{tag}"
    subnet = f"10.{77 + int(tag) % 100}.0"
    hosts = {"redis": f"{subnet}.1", "a": f"{subnet}.2", "b": f"{subnet}.3"}
    made: list[str] = []
    try:
        ip("link", "add", bridge, "type", "bridge")
        ip("addr", "add", f"{subnet}.254/24", "dev", bridge)
        ip("link", "set", bridge, "up")
        for name, address in hosts.items():
            ns = f"cc-{name}-{tag}"
            ip("netns", "add", ns)
            made.append(ns)
            veth = f"cc{name}{tag}"[:15]
            ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            ip("link", "set", veth, "master", bridge, "up")
            ip("netns", "exec", ns, "ip", "addr", "add", f"{address}/24", "dev", "eth0")
            ip("netns", "exec", ns, "ip", "link", "set", "eth0", "up")
            ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield {**hosts, **{f"ns_{n}": f"cc-{n}-{tag}" for n in hosts}}
    finally:
        for ns in made:
            with contextlib.suppress(subprocess.CalledProcessError):
                ip("netns", "del", ns)
        with contextlib.suppress(subprocess.CalledProcessError):
            ip("link", "del", bridge)


@contextlib.contextmanager
def process(command: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    log = tempfile.TemporaryFile()
    child = subprocess.Popen(command, cwd=APPS, env={**os.environ, **env}, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield child
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGTERM)
        try:
            child.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(10)
        log.close()


def wait_for(host: str, port: int) -> None:
    import http.client

    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(OSError):
            connection = http.client.HTTPConnection(host, port, timeout=2)
            connection.request("GET", "/read")
            if connection.getresponse().status == 200:
                return
        assert time.monotonic() < deadline, f"{host}:{port} did not start"
        time.sleep(0.1)


def call(host: str, method: str, path: str, cookie: str | None) -> tuple[int, str | None, bytes]:
    import http.client

    connection = http.client.HTTPConnection(host, 8000, timeout=10)
    try:
        connection.request(method, path, headers={"Cookie": cookie} if cookie else {})
        response = connection.getresponse()
        set_cookie = None
        for value in response.headers.get_all("Set-Cookie") or []:
            pair = value.split(";", 1)[0]
            if pair.startswith("session=") and pair != "session=":
                set_cookie = pair
        return response.status, set_cookie, response.read()
    finally:
        connection.close()


def test_two_hosts_share_sessions_through_redis_on_a_third() -> None:
    tag = str(os.getpid() % 10000)
    with network(tag) as net:
        redis = in_ns(net["ns_redis"], "redis-server", "--bind", net["redis"], "--port", "6379",
                      "--save", "", "--appendonly", "no", "--protected-mode", "no")
        env = {"COATCHECK_REDIS_URL": f"redis://{net['redis']}:6379/0",
               "COATCHECK_REDIS_TIMEOUT": "1"}
        with process(redis, {}):
            servers = [
                in_ns(net[f"ns_{h}"], sys.executable, "-m", "gunicorn", "-w", "2", "-b",
                      f"{net[h]}:8000", "shared_flask:app")
                for h in ("a", "b")
            ]
            with process(servers[0], env), process(servers[1], env):
                for h in ("a", "b"):
                    wait_for(net[h], 8000)
                hosts = [net["a"], net["b"]]
                lost = read_after_logout = errors = 0
                for i in range(CYCLES):
                    n = 0

                    def next_host() -> str:
                        nonlocal n
                        n += 1
                        return hosts[(i + n) % 2]

                    user = f"user-{i}"
                    status, cookie, _ = call(next_host(), "POST", f"/login?user={user}", None)
                    errors += status >= 500
                    status, again, _ = call(next_host(), "POST", f"/write?item=i{i}", cookie)
                    errors += status >= 500
                    cookie = again or cookie
                    status, _, body = call(next_host(), "GET", "/read", cookie)
                    errors += status >= 500
                    seen = json.loads(body) if status == 200 else {}
                    lost += seen.get("user") != user or seen.get("items") != [f"i{i}"]
                    status, _, _ = call(next_host(), "POST", "/logout", cookie)
                    errors += status >= 500
                    status, _, body = call(next_host(), "GET", "/read", cookie)
                    errors += status >= 500
                    read_after_logout += status == 200 and json.loads(body).get("user") == user
    counts = {"lost": lost, "read_after_logout": read_after_logout, "5xx": errors}
    print(f"two hosts (2 workers each) on Redis in a third namespace: {CYCLES} cycles, {counts}")
    assert counts == {"lost": 0, "read_after_logout": 0, "5xx": 0}
