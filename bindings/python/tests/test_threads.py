"""Many Python threads on one store at once.

Guards against: lost updates under concurrent compare-and-set; a lock left held (a deadlock,
caught by the join timeout); a crash or a wrong value when threads create, read, write and
destroy sessions while the sweeper and `clear`/`sweep` (which release the GIL) run.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

import coatcheck
from coatcheck import Store

THREADS = 16
TIMEOUT = 30.0


def run_threads(target: Callable[[int], None], n: int = THREADS) -> list[BaseException]:
    errors: list[BaseException] = []

    def wrapped(i: int) -> None:
        try:
            target(i)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    threads = [threading.Thread(target=wrapped, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + TIMEOUT
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    stuck = [t for t in threads if t.is_alive()]
    assert not stuck, f"{len(stuck)} threads still running after {TIMEOUT} s: deadlock?"
    return errors


def test_compare_and_set_loses_no_update(make_store: Callable[..., Store]) -> None:
    store = make_store(shards=1)  # one stripe: every thread contends on the same lock
    token = store.create(b"0")
    per_thread = 300

    def increment(_: int) -> None:
        for _ in range(per_thread):
            while True:
                found = store.get_with_version(token)
                assert found is not None
                value, version = found
                try:
                    store.set_if_version(token, str(int(value) + 1).encode(), version)
                    break
                except coatcheck.ConflictError:
                    continue

    assert run_threads(increment) == []
    assert store.get(token) == str(THREADS * per_thread).encode()


def test_mixed_operations_from_many_threads(make_store: Callable[..., Store]) -> None:
    store = make_store(idle_timeout=0.5, sweep_interval=0.01, max_sessions=5000)

    def work(i: int) -> None:
        owner = f"user-{i % 4}"
        for n in range(400):
            data = f"{i}:{n}".encode()
            token = store.create(data, ttl=0.2 if n % 3 == 0 else None)
            got = store.get(token)
            assert got in (data, None)  # evicted or expired is fine; another value is not
            try:
                store.set(token, data + b"!")
                store.set_owner(token, owner)
            except coatcheck.NotFoundError:
                pass
            new = store.regenerate(token)
            if new is not None:
                assert store.get(new) in (data + b"!", None)
                token = new
            if n % 5 == 0:
                store.destroy(token)
            if n % 97 == 0:
                store.sessions_of(owner)
                store.sweep()
            if i == 0 and n % 200 == 0:
                store.clear()

    assert run_threads(work) == []
    # The sweeper may still reclaim sessions here, so each count is checked on its own.
    assert len(store) <= 5000
    assert store.stats()["sessions"] <= 5000
    store.clear()
    assert len(store) == 0 and store.stats()["bytes"] == 0


def test_many_stores_from_many_threads() -> None:
    def work(i: int) -> None:
        for _ in range(20):
            store = Store(f"secret-{i}", idle_timeout=1, sweep_interval=0.01)
            token = store.create(b"x")
            assert store.get(token) == b"x"
            del store

    assert run_threads(work, n=8) == []


def test_clear_releases_the_gil_while_it_walks_the_table(make_store: Callable[..., Store]) -> None:
    # Watches the main thread's progress while another thread runs clear() on a big table
    # (TOOLCHAIN.md: count progress, do not compare timings). Holding the GIL, clear() would
    # stop the main thread for its whole duration; released, the longest stall is far shorter.
    import time

    store = make_store(shards=1)
    value = b"x" * 64
    for _ in range(600_000):
        store.create(value)
    took: list[float] = []

    def clear() -> None:
        start = time.perf_counter()
        store.clear()
        took.append(time.perf_counter() - start)

    worker = threading.Thread(target=clear, daemon=True)
    longest_stall = 0.0
    last = time.perf_counter()
    worker.start()
    while worker.is_alive():
        now = time.perf_counter()
        longest_stall = max(longest_stall, now - last)
        last = now
    worker.join(TIMEOUT)
    assert len(store) == 0 and took
    assert took[0] > 0.02, f"clear() took {took[0]:.4f} s: too quick to tell"
    assert longest_stall < took[0] / 2, (
        f"the main thread stalled {longest_stall:.4f} s during a {took[0]:.4f} s clear()"
    )
