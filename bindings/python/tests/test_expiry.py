"""Expiry with short timeouts (tens of milliseconds, so the suite stays fast)."""

from __future__ import annotations

import time
from typing import Callable

from coatcheck import Store


def wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_an_idle_session_expires_and_reads_slide_the_deadline(
    make_store: Callable[..., Store],
) -> None:
    # Margins of 0.2 s or more either way, so a loaded machine's late wake-ups do not matter.
    store = make_store(idle_timeout=0.3)
    kept, left = store.create(b"kept"), store.create(b"left")
    for _ in range(5):  # 5 x 0.1 s: longer than the timeout, but read every 0.1 s
        time.sleep(0.1)
        assert store.get(kept) == b"kept"
    assert store.get(left) is None
    time.sleep(0.45)
    assert store.get(kept) is None
    assert store.get_with_version(kept) is None
    assert store.touch(kept) is False


def test_touch_slides_the_deadline_and_can_change_the_ttl(make_store: Callable[..., Store]) -> None:
    store = make_store(idle_timeout=0.3)
    token = store.create(b"x")
    time.sleep(0.1)
    assert store.touch(token, ttl=0.8) is True
    time.sleep(0.45)
    assert store.get(token) == b"x"  # the 0.8 s TTL now applies, not the 0.3 s one


def test_a_per_session_ttl_replaces_the_idle_timeout(make_store: Callable[..., Store]) -> None:
    store = make_store(idle_timeout=60)
    short = store.create(b"short", ttl=0.1)
    long = store.create(b"long")
    time.sleep(0.2)
    assert store.get(short) is None
    assert store.get(long) == b"long"


def test_the_absolute_timeout_is_not_extended_by_reads(make_store: Callable[..., Store]) -> None:
    store = make_store(idle_timeout=60, absolute_timeout=0.3)
    token = store.create(b"x")
    assert wait_until(lambda: store.get(token) is None, timeout=2.0)
    assert store.get(token) is None


def test_a_write_to_an_expired_session_is_not_found(make_store: Callable[..., Store]) -> None:
    import coatcheck
    import pytest

    store = make_store(idle_timeout=0.05)
    token = store.create(b"x")
    time.sleep(0.1)
    with pytest.raises(coatcheck.NotFoundError):
        store.set(token, b"y")


def test_the_sweeper_reclaims_expired_sessions(make_store: Callable[..., Store]) -> None:
    # Long enough that all 1000 are made before the first expires, on a busy machine too.
    store = make_store(idle_timeout=0.5, sweep_interval=0.05)
    for _ in range(1000):
        store.create(b"x" * 100)
    assert len(store) == 1000
    # The sweeper counts a session gone before it counts it expired: wait for both.
    assert wait_until(lambda: len(store) == 0 and store.stats()["expirations"] == 1000)
    stats = store.stats()
    assert stats["bytes"] == 0
