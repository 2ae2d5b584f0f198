"""Stores across os.fork() (gunicorn --preload, multiprocessing's fork start method).

Guards against: a child deadlocking on a lock the sweeper (or a thread releasing the GIL)
held at the moment of fork; a child whose sessions never expire because its sweeper thread
did not survive the fork; parent and child seeing each other's writes or issuing the same
ids. Every child is waited for with a timeout, so a deadlock fails the test instead of
hanging it.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import warnings
from typing import Callable

import pytest

from coatcheck import Store

CHILD_TIMEOUT = 20.0


def fork_and_run(child: Callable[[], int]) -> int:
    """Runs ``child`` in a forked process; its exit code, or a failure after a timeout."""
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork() in a process with threads; the store's sweeper is
        # one, and surviving exactly that is what these tests check.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        code = 99
        try:
            code = child()
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 98
        finally:
            os._exit(code)
    deadline = time.monotonic() + CHILD_TIMEOUT
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"forked child did not finish within {CHILD_TIMEOUT} s (deadlock?)")


def test_a_child_keeps_a_working_copy_and_keeps_expiring(make_store: Callable[..., Store]) -> None:
    store = make_store(idle_timeout=60, sweep_interval=0.02)
    kept = store.create(b"from the parent")
    store.create(b"short-lived", ttl=0.2)

    def child() -> int:
        if store.get(kept) != b"from the parent":
            return 2
        mine = store.create(b"from the child")
        if store.get(mine) != b"from the child":
            return 3
        store.set(kept, b"changed in the child")
        deadline = time.monotonic() + 5
        while len(store) > 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        # Only the child's restarted sweeper can have reclaimed the short-lived session.
        if len(store) != 2 or store.stats()["expirations"] != 1:
            return 4
        return 0

    assert fork_and_run(child) == 0
    assert store.get(kept) == b"from the parent"  # the child's write stayed in the child
    assert len(store) in (1, 2)


def test_parent_and_child_issue_different_ids(make_store: Callable[..., Store]) -> None:
    store = make_store()
    store.create(b"warm up the id generator")
    read, write = os.pipe()

    def child() -> int:
        os.write(write, store.create(b"c").encode() + b"\n")
        return 0

    assert fork_and_run(child) == 0
    os.close(write)
    with os.fdopen(read) as pipe:
        child_token = pipe.read().strip()
    parent_token = store.create(b"p")
    assert store.unsign(child_token) != store.unsign(parent_token)


def test_forking_while_the_store_is_busy_never_deadlocks(make_store: Callable[..., Store]) -> None:
    # Sessions expiring all the time keep the sweeper inside the stripe lock, and threads keep
    # calling clear() and sweep(), which run without the GIL, while the main thread forks.
    # (Batches stay under 64 sessions: more trips the core's compaction livelock, see
    # test_core_sweep_finishes_with_stale_queue_references.)
    store = make_store(idle_timeout=0.01, sweep_interval=0.001, shards=1)
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            for _ in range(60):
                store.create(b"x" * 64)
            store.sweep()
            store.clear()

    workers = [threading.Thread(target=churn, daemon=True) for _ in range(2)]
    for w in workers:
        w.start()
    try:
        for _ in range(100):

            def child() -> int:
                token = store.create(b"child")
                store.sweep()
                store.clear()
                return 0 if store.get(token) is None else 5

            assert fork_and_run(child) == 0
    finally:
        stop.set()
        for w in workers:
            w.join(10)
    assert not any(w.is_alive() for w in workers)


def test_multiprocessing_fork_workers_use_their_copy(make_store: Callable[..., Store]) -> None:
    import multiprocessing

    global _POOL_STORE
    store = _POOL_STORE = make_store()
    token = store.create(b"shared before fork")
    ctx = multiprocessing.get_context("fork")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            with ctx.Pool(2, maxtasksperchild=1) as pool:  # each task: a fresh fork
                result = pool.map_async(_read_then_write, [token] * 4, chunksize=1)
                results = result.get(timeout=CHILD_TIMEOUT)
    finally:
        _POOL_STORE = None
    assert results == [b"shared before fork"] * 4
    assert store.get(token) == b"shared before fork"


# The store reaches pool workers by fork, not by pickling (a store cannot be pickled).
_POOL_STORE: Store | None = None


def _read_then_write(token: str) -> bytes | None:
    assert _POOL_STORE is not None
    value = _POOL_STORE.get(token)
    _POOL_STORE.set(token, b"written in a worker")
    return value


def test_a_fork_waits_for_a_thread_inside_the_store_and_the_child_can_use_it(
    make_store: Callable[..., Store],
) -> None:
    # clear() of a million sessions keeps a thread inside the store while the fork happens.
    # The core's fork handler waits for it to leave, so the child inherits no held lock: it
    # sees the store cleared and keeps working.
    store = make_store(shards=1)
    for _ in range(1_000_000):
        store.create(b"")
    token = store.create(b"x")
    worker = threading.Thread(target=store.clear, daemon=True)
    worker.start()
    time.sleep(0.02)
    still_clearing = worker.is_alive()

    def child() -> int:
        if store.get(token) is not None:
            return 2  # the fork went ahead in the middle of clear()
        fresh = store.create(b"y")
        if store.get(fresh) != b"y":
            return 3
        store.clear()
        return 0 if len(store) == 0 else 4

    assert fork_and_run(child) == 0
    assert still_clearing, "clear() ended before the fork: make the table bigger"
    worker.join(CHILD_TIMEOUT)
    assert store.get(token) is None  # cleared
    assert store.get(store.create(b"z")) == b"z"  # the parent carries on


CORE_LIVELOCK = """
import threading, time, coatcheck
store = coatcheck.Store("k", idle_timeout=3600, shards=1, sweep_interval=0.001)
live = [store.create(b"x") for _ in range(10_000)]
short = [store.create(b"y", ttl=0.005) for _ in range(10_000)]
time.sleep(0.05)
done = []
threading.Thread(target=lambda: done.append(store.sweep()), daemon=True).start()
deadline = time.monotonic() + 5
while not done and time.monotonic() < deadline:
    time.sleep(0.01)
print("finished" if done else "stuck", flush=True)
import os; os._exit(0)
"""


def test_core_sweep_finishes_with_stale_queue_references() -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", CORE_LIVELOCK], capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "finished"
