"""A real Debian `redis-server` for the shared-tier tests: a free 127.0.0.1 port, no
persistence, stopped by PID. Missing redis-server is a failure, not a skip: `make test`
installs it."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    def __init__(self, *settings: str) -> None:
        """`settings`: more redis-server arguments, such as `--maxmemory-policy allkeys-lru`."""
        binary = shutil.which("redis-server")
        assert binary, "redis-server is missing: apt-get install redis-server (make test does)"
        self.binary = binary
        self.port = free_port()
        self.settings = settings
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        # setpriv (util-linux) execs redis-server with a parent-death signal: a test run that
        # is killed outright leaves no server behind.
        self.process = subprocess.Popen(
            ["setpriv", "--pdeathsig", "KILL", "--", self.binary, "--port", str(self.port),
             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *self.settings],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.01)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


@contextlib.contextmanager
def redis_server(*settings: str) -> Iterator[RedisServer]:
    server = RedisServer(*settings)
    try:
        yield server
    finally:
        server.kill()
