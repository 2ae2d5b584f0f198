"""Real servers on 127.0.0.1 for the concurrency tests, and a client that calls them from
many threads at once. Every server and request is bounded in time and stops by itself."""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable, Optional

TIMEOUT = 30.0


@contextlib.contextmanager
def wsgi_server(app: Any) -> Iterator[int]:
    """Serves ``app`` with werkzeug's threaded server (a thread per request); yields the port."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT)


@contextlib.contextmanager
def asgi_server(app: Any) -> Iterator[int]:
    """Serves ``app`` with uvicorn (one event loop, in a thread); yields the port."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, lifespan="off", ws="none", http="h11", log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + TIMEOUT
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(TIMEOUT)
        sock.close()


def request(
    port: int,
    method: str,
    path: str,
    cookie: Optional[str] = None,
    host: str = "127.0.0.1",
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request on a new connection: status, headers, body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        headers = {"Host": host}
        if cookie is not None:
            headers["Cookie"] = cookie
        connection.request(method, path, headers=headers)
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def at_once(n: int, call: Callable[[int], Any]) -> list[Any]:
    """Runs ``call(0) ... call(n - 1)`` in n threads at once; their results, or raises."""
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = call(i)
        except BaseException as e:  # noqa: BLE001 - re-raised below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + TIMEOUT
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "requests still running: a deadlock?"
    if errors:
        raise errors[0]
    return results


def set_cookie_value(headers: http.client.HTTPMessage, name: str = "session") -> Optional[str]:
    """The value the response's ``Set-Cookie`` gives cookie ``name``, if it sets it."""
    for header in headers.get_all("Set-Cookie") or []:
        first = header.split(";", 1)[0]
        key, _, value = first.partition("=")
        if key.strip() == name:
            return value.strip().strip('"')
    return None
