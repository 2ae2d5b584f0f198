"""The restart log (`persist_path`): sessions survive the process, through the store and
through real Flask and Django servers killed with SIGKILL and started again."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import coatcheck
from live import request
from redis_server import free_port
from test_shared_tier import APPS, cookie_from


def store_on(path: Path | str, **kwargs: object) -> coatcheck.Store:
    kwargs.setdefault("persist_fsync", "never")
    return coatcheck.Store("persist test secret", idle_timeout=600, persist_path=path, **kwargs)


def test_sessions_owners_and_revocations_outlive_the_store(tmp_path: Path) -> None:
    path = tmp_path / "sessions"
    store = store_on(path)
    kept = store.create(b'{"user": 1}')
    store.set_owner(kept, "user-1")
    revoked = store.create(b'{"user": 2}')
    assert store.destroy(revoked)
    del store
    gc.collect()

    store = store_on(str(path))  # a str works as well as a Path
    assert store.get(kept) == b'{"user": 1}'
    assert store.sessions_of("user-1") == [store.unsign(kept)]
    assert store.get(revoked) is None
    stats = store.stats()
    assert stats["log_restored"] == 1 and stats["log_failures"] == 0


def test_a_directory_in_use_and_a_log_with_redis_are_setup_errors(tmp_path: Path) -> None:
    path = tmp_path / "sessions"
    first = store_on(path)
    token = first.create(b"x")
    with pytest.raises(coatcheck.InvalidConfigError, match="in use"):
        store_on(path)
    with pytest.raises(coatcheck.InvalidConfigError, match="redis_url"):
        store_on(tmp_path / "other", redis_url="redis://127.0.0.1:6379")
    with pytest.raises(coatcheck.InvalidConfigError, match="parent"):
        store_on(tmp_path / "missing" / "sessions")
    assert first.get(token) == b"x"


def test_a_closed_store_frees_its_directory_while_still_referenced(tmp_path: Path) -> None:
    # An app factory per test, say: the old app still holds its store.
    path = tmp_path / "sessions"
    first = store_on(path)
    token = first.create(b'{"user": 1}')
    first.close()
    assert first.get(token) == b'{"user": 1}'  # still readable
    with pytest.raises(coatcheck.UnavailableError, match="closed"):
        first.create(b"refused")
    second = store_on(path)  # first is still alive: close() freed the directory
    assert second.get(token) == b'{"user": 1}'
    first.close()  # again: nothing more to do


def test_a_store_collected_by_the_garbage_collector_closes_without_holding_the_gil(
    tmp_path: Path,
) -> None:
    # The last reference goes: the store compacts its log (a few hundred ms for these sessions)
    # and unlocks its directory. Another Python thread runs meanwhile: it could not run a
    # single bytecode while a call held the GIL.
    path = tmp_path / "sessions"
    store = store_on(path)
    for n in range(400_000):
        store.create(b'{"user": %d, "cart": "..............................."}' % n)
    ticks: list[float] = []
    stop = threading.Event()

    def ticker() -> None:
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.001)

    thread = threading.Thread(target=ticker)
    thread.start()
    time.sleep(0.05)
    began = time.monotonic()
    del store
    ended = time.monotonic()
    stop.set()
    thread.join()
    assert ended - began > 0.05, "the store closed too fast to tell"
    during = [t for t in ticks if began + 0.01 < t < ended - 0.01]
    assert len(during) >= 5, f"{len(during)} ticks in {ended - began:.3f} s of closing"
    reopened = store_on(path)  # the directory was unlocked, and every session kept
    assert len(reopened) == 400_000


def test_an_error_from_a_store_nobody_keeps_reaches_the_caller_intact(tmp_path: Path) -> None:
    # The store is collected while the error is being raised: its close must leave the error
    # as it is.
    with pytest.raises(coatcheck.BadSignatureError):
        store_on(tmp_path / "sessions").set("not a token", b"x")
    store_on(tmp_path / "sessions")  # and the directory was unlocked


def test_django_clearsessions_runs_while_the_server_holds_the_restart_log(tmp_path: Path) -> None:
    # `manage.py clearsessions`, which Django's docs schedule from cron, runs in a process of
    # its own: it must not try to open the directory the serving process has locked.
    path = tmp_path / "sessions"
    serving = store_on(path)
    token = serving.create(b'{"user": 1}')
    done = subprocess.run(
        [sys.executable, "-c", "import shared_django\n"
         "from django.core.management import call_command\n"
         "call_command('clearsessions')"],
        cwd=APPS, env={**os.environ, "COATCHECK_PERSIST_PATH": str(path), "COATCHECK_REDIS_URL": ""},
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert serving.get(token) == b'{"user": 1}'


def test_bad_persist_arguments_are_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="persist_path"):
        store_on(42)  # type: ignore[arg-type]
    with pytest.raises(coatcheck.InvalidConfigError, match="persist_fsync"):
        store_on(tmp_path / "s", persist_fsync="sometimes")
    with pytest.raises(TypeError, match="persist_fsync"):
        store_on(tmp_path / "s", persist_fsync=1)


APPS_BY_SERVER = {"flask": ("shared_flask:app", "session"), "django": ("shared_django:application", "sessionid")}


@contextlib.contextmanager
def app_server(app: str, port: int, path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """gunicorn with one worker serving a test app on a restart log."""
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}", app],
        cwd=APPS, env={**os.environ, "COATCHECK_PERSIST_PATH": str(path), "COATCHECK_REDIS_URL": ""},
        stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError):
                if request(port, "GET", "/read")[0] == 200:
                    break
            log.seek(0)
            assert process.poll() is None, log.read().decode(errors="replace")[-4000:]
            assert time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.05)
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        log.close()


@pytest.mark.parametrize("server", ["flask", "django"])
def test_a_user_stays_logged_in_after_the_server_is_killed(server: str, tmp_path: Path) -> None:
    app, cookie_name = APPS_BY_SERVER[server]
    path = tmp_path / "sessions"
    port = free_port()
    with app_server(app, port, path) as process:
        _, headers, _ = request(port, "POST", "/login?user=ada")
        ada = cookie_from(headers, cookie_name)
        # Two writes: the log keeps the second as the bytes it changed in the first.
        for item in ("coat", "hat"):
            _, headers, _ = request(port, "POST", f"/write?item={item}", ada)
            ada = cookie_from(headers, cookie_name) or ada
        _, headers, _ = request(port, "POST", "/login?user=bob")
        bob = cookie_from(headers, cookie_name)
        request(port, "POST", "/logout", bob)
        # No clean shutdown: the whole process group dies at once.
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
    with app_server(app, port, path):
        status, _, body = request(port, "GET", "/read", ada)
        assert status == 200
        seen = json.loads(body)
        assert (seen["user"], seen["items"]) == ("ada", ["coat", "hat"])
        # Logged out before the kill: still logged out.
        _, _, body = request(port, "GET", "/read", bob)
        assert json.loads(body)["user"] is None
