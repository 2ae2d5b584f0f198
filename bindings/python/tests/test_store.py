"""`coatcheck.Store` through its Python surface: every method, every error, type checks."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from typing import Any, Callable

import pytest

import coatcheck
from coatcheck import Store

ERROR_CLASSES = [
    (coatcheck.BadSignatureError, "bad_signature"),
    (coatcheck.NotFoundError, "not_found"),
    (coatcheck.TooLargeError, "too_large"),
    (coatcheck.StoreFullError, "store_full"),
    (coatcheck.ConflictError, "conflict"),
    (coatcheck.InvalidIdError, "invalid_id"),
    (coatcheck.InvalidConfigError, "invalid_config"),
    (coatcheck.InvalidArgumentError, "invalid_argument"),
]


@pytest.mark.parametrize(("cls", "code"), ERROR_CLASSES)
def test_each_error_kind_is_a_session_error_with_its_code(cls: type, code: str) -> None:
    assert issubclass(cls, coatcheck.SessionError)
    assert issubclass(cls, Exception)
    assert cls.code == code  # type: ignore[attr-defined]
    assert cls.__module__ == "coatcheck"


# -- create / get / set -------------------------------------------------------------------


@pytest.mark.parametrize("fsync", [None, "always"], ids=["in memory", "log synced on every write"])
def test_reads_give_back_exactly_the_bytes_stored_of_any_size(tmp_path: Any, fsync: Any) -> None:
    # A store that never waits builds the bytes under the table's lock; one whose calls may wait
    # (here a log synced on every write) copies the value out first. Both must answer the same.
    options: dict[str, Any] = {}
    if fsync is not None:
        options = {"persist_path": str(tmp_path / "log"), "persist_fsync": fsync}
    store = Store("reads test secret", idle_timeout=600, **options)
    values = [b"", b"\x00", bytes(range(256)), b"\xff\x00" * 1000, bytes(range(256)) * 256]
    for value in values:
        token = store.create(value)
        found = store.get(token)
        assert type(found) is bytes and found == value
        version = store.set(token, value[::-1])
        with_version = store.get_with_version(token)
        assert with_version == (value[::-1], version) and type(with_version[0]) is bytes


def test_create_returns_a_signed_token_that_reads_back(store: Store) -> None:
    token = store.create(b'{"n":1}')
    session_id = store.unsign(token)
    assert session_id is not None and len(session_id) == 32
    assert token.startswith(session_id + ".")
    assert store.get(token) == b'{"n":1}'
    assert store.get_with_version(token) == (b'{"n":1}', 1)
    assert len(store) == 1


def test_set_replaces_the_value_and_bumps_the_version(store: Store) -> None:
    token = store.create(b"a")
    assert store.set(token, b"b") == 2
    assert store.set(token, b"") == 3
    assert store.get_with_version(token) == (b"", 3)


def test_set_if_version_writes_only_on_the_expected_version(store: Store) -> None:
    token = store.create(b"a")
    assert store.set_if_version(token, b"b", 1) == 2
    with pytest.raises(coatcheck.ConflictError) as err:
        store.set_if_version(token, b"stale", 1)
    assert err.value.code == "conflict"
    assert store.get_with_version(token) == (b"b", 2)
    assert store.stats()["conflicts"] == 1


@pytest.mark.parametrize(
    ("version", "error"),
    [
        (True, TypeError),  # bool is an int subclass, but no version
        (2.0, TypeError),
        ("2", TypeError),
        (-1, coatcheck.InvalidArgumentError),
        (2**64, coatcheck.InvalidArgumentError),
    ],
)
def test_a_version_that_no_store_returns_is_refused_and_changes_nothing(
    store: Store, version: Any, error: type[Exception]
) -> None:
    token = store.create(b"a")
    with pytest.raises(error, match="version"):
        store.set_if_version(token, b"b", version)
    assert store.get_with_version(token) == (b"a", 1)


def test_values_are_binary_safe(store: Store) -> None:
    data = bytes(range(256)) * 4
    token = store.create(data)
    assert store.get(token) == data


def test_touch_destroy_and_len(store: Store) -> None:
    a, b = store.create(b"a"), store.create(b"b")
    assert len(store) == 2
    assert store.touch(a) is True
    assert store.touch(a, ttl=30) is True
    assert store.destroy(a) is True
    assert store.destroy(a) is False
    assert store.touch(a) is False
    assert store.get(a) is None
    assert store.get(b) == b"b"
    assert len(store) == 1


def test_regenerate_moves_the_session_to_a_new_token(store: Store) -> None:
    old = store.create(b"cart")
    store.set_owner(old, "user-1")
    new = store.regenerate(old)
    assert new is not None and new != old
    assert store.unsign(new) != store.unsign(old)
    assert store.get(old) is None
    assert store.get(new) == b"cart"
    assert store.sessions_of("user-1") == [store.unsign(new)]
    assert store.regenerate(old) is None


def test_clear_removes_everything(store: Store) -> None:
    tokens = [store.create(b"x") for _ in range(100)]
    store.clear()
    assert len(store) == 0
    assert all(store.get(t) is None for t in tokens)


def test_stats_counts_operations(store: Store) -> None:
    token = store.create(b"x")
    store.get(token)
    store.get(store.sign("unknown-id"))
    store.set(token, b"y")
    store.destroy(token)
    store.get(token + "tampered")
    stats = store.stats()
    assert set(stats) == {
        "sessions", "bytes", "hits", "misses", "inserts", "updates", "destroys",
        "expirations", "evicted_unread", "evicted_lru", "signature_failures", "conflicts",
    }  # fmt: skip
    assert stats["sessions"] == 0 and stats["bytes"] == 0
    assert stats["inserts"] == 1 and stats["updates"] == 1 and stats["destroys"] == 1
    assert stats["hits"] >= 1 and stats["misses"] >= 1
    assert stats["signature_failures"] == 1


def test_repr_shows_the_size(store: Store) -> None:
    store.create(b"x")
    assert repr(store) == "<coatcheck.Store sessions=1>"


# -- signing ------------------------------------------------------------------------------


def test_tokens_match_the_cookie_signature_reference_vector() -> None:
    store = Store("keyboard cat", idle_timeout=1)
    assert store.sign("hello") == "hello.xz6khi6+oL1pnNhBgjk3Nr1CX2sxTjJiO9pKXaHZ33E"
    assert store.unsign("hello.xz6khi6+oL1pnNhBgjk3Nr1CX2sxTjJiO9pKXaHZ33E") == "hello"


def test_str_and_bytes_secrets_are_the_same_key() -> None:
    assert Store("k", idle_timeout=1).sign("id") == Store(b"k", idle_timeout=1).sign("id")
    assert Store(["k"], idle_timeout=1).sign("id") == Store(("k",), idle_timeout=1).sign("id")


def test_secret_rotation_first_signs_all_verify() -> None:
    old = Store("old secret", idle_timeout=60)
    rotated = Store(["new secret", "old secret"], idle_timeout=60)
    new_only = Store(["new secret"], idle_timeout=60)
    old_token = old.sign("session-id-1")
    assert rotated.unsign(old_token) == "session-id-1"
    assert rotated.sign("session-id-1") == new_only.sign("session-id-1")
    assert new_only.unsign(old_token) is None
    # The same holds for sessions: a rotated store still reads its old tokens.
    store = Store(["new secret", "old secret"], idle_timeout=60)
    token = store.create(b"data")
    session_id = store.unsign(token)
    assert session_id is not None
    assert store.get(old.sign(session_id)) == b"data"


@pytest.mark.parametrize("bad_id", ["", "has space", "é", "x" * 256, "\x00", "ab\x00cd", "\ud800"])
def test_sign_rejects_malformed_ids(store: Store, bad_id: str) -> None:
    with pytest.raises(coatcheck.InvalidIdError) as err:
        store.sign(bad_id)
    assert err.value.code == "invalid_id"


# -- bad tokens: reads answer None/False, writes raise --------------------------------------


def bad_tokens(store: Store) -> tuple[str, dict[str, str]]:
    """A live session's token, and tokens of every bad kind made in `store`."""
    live = store.create(b"live")
    expired = store.create(b"soon gone", ttl=0.001)
    destroyed = store.create(b"logged out")
    store.destroy(destroyed)
    session_id = store.unsign(live)
    assert session_id is not None
    other = Store("another secret", idle_timeout=60)
    signature = live.split(".", 1)[1]
    return live, {
        "forged": other.sign(session_id),
        "tampered signature": live[:-1] + ("A" if live[-1] != "A" else "B"),
        "tampered id": ("B" if live[0] != "B" else "C") + live[1:],
        "no signature": session_id,
        "empty": "",
        "garbage": "not a token at all",
        "non-ascii": "é." + signature,
        "lone surrogate": "\ud800." + signature,
        "huge": "x" * 10_000,
        "nul in id": session_id[:4] + "\x00" + session_id[5:] + "." + signature,
        "nul in signature": live[:-2] + "\x00" + live[-1],
        "unknown": store.sign("unknown-session-id"),
        "expired": expired,
        "destroyed": destroyed,
    }


BAD_TOKEN_KINDS = [
    "forged", "tampered signature", "tampered id", "no signature", "empty", "garbage",
    "non-ascii", "lone surrogate", "huge", "nul in id", "nul in signature", "unknown", "expired",
    "destroyed",
]  # fmt: skip
UNVERIFIED = {"forged", "tampered signature", "tampered id", "no signature", "empty", "garbage",
              "non-ascii", "lone surrogate", "huge", "nul in id", "nul in signature"}  # fmt: skip


@pytest.mark.parametrize("kind", BAD_TOKEN_KINDS)
def test_reads_of_a_bad_token_answer_none_or_false(make_store: Callable[..., Store], kind: str) -> None:
    # No background sweep: the expired session stays stored until a read reclaims it.
    store = make_store(sweep_interval=3600)
    live, tokens = bad_tokens(store)
    token = tokens[kind]
    import time

    time.sleep(0.005)  # lets the 1 ms session expire
    # Reading the expired session may reclaim it; nothing else goes.
    before = (len(store) - (kind == "expired"), store.get_with_version(live))
    assert store.get(token) is None
    assert store.get_with_version(token) is None
    assert store.touch(token) is False
    assert store.destroy(token) is False
    assert store.regenerate(token) is None
    if kind in UNVERIFIED:
        assert store.unsign(token) is None
    # The live session is untouched: same data, same version, nothing removed.
    assert (len(store), store.get_with_version(live)) == before


@pytest.mark.parametrize("kind", BAD_TOKEN_KINDS)
def test_writes_to_a_bad_token_raise_and_change_nothing(
    make_store: Callable[..., Store], kind: str
) -> None:
    # No background sweep: the expired session stays stored until a read reclaims it.
    store = make_store(sweep_interval=3600)
    live, tokens = bad_tokens(store)
    token = tokens[kind]
    import time

    time.sleep(0.005)
    before = len(store)
    inserts = store.stats()["inserts"]
    expected = coatcheck.BadSignatureError if kind in UNVERIFIED else coatcheck.NotFoundError
    writes: list[Callable[[], Any]] = [
        lambda: store.set(token, b"x"),
        lambda: store.set_if_version(token, b"x", 1),
        lambda: store.set_owner(token, "user"),
    ]
    for write in writes:
        with pytest.raises(expected) as err:
            write()
        assert err.value.code == expected.code  # type: ignore[attr-defined]
    assert len(store) == before
    assert store.stats()["inserts"] == inserts
    assert store.sessions_of("user") == []
    assert store.get_with_version(live) == (b"live", 1)


# -- owners -------------------------------------------------------------------------------


def test_owner_index_lists_ids_never_tokens(store: Store) -> None:
    a, b, c = (store.create(b"x") for _ in range(3))
    other = store.create(b"y")
    for token in (a, b, c):
        store.set_owner(token, "user-7")
    store.set_owner(other, "user-8")
    ids = store.sessions_of("user-7")
    assert sorted(ids) == sorted(store.unsign(t) for t in (a, b, c))
    # An id is a name for the session, not a way in: it does not open it.
    assert all(store.get(i) is None for i in ids)
    assert store.sessions_of("nobody") == []
    store.set_owner(c, None)
    assert sorted(store.sessions_of("user-7")) == sorted([store.unsign(a), store.unsign(b)])
    assert store.destroy_owner("user-7", except_token=a) == 1
    assert store.sessions_of("user-7") == [store.unsign(a)]
    assert store.get(b) is None and store.get(c) == b"x"
    assert store.destroy_owner("user-7") == 1
    assert store.sessions_of("user-7") == []
    assert store.sessions_of("user-8") == [store.unsign(other)]


def test_the_store_reports_its_timeouts() -> None:
    store = Store("s" * 32, idle_timeout=1800, absolute_timeout=86400)
    assert store.idle_timeout == 1800.0
    assert store.absolute_timeout == 86400.0
    assert Store("s" * 32, idle_timeout=0.5).absolute_timeout is None


@pytest.mark.parametrize("suffix", ["x", "\ud800", "\x00"])
def test_destroy_owner_with_a_forged_except_token_raises_and_destroys_nothing(
    store: Store, suffix: str
) -> None:
    token = store.create(b"x")
    store.set_owner(token, "user")
    with pytest.raises(coatcheck.BadSignatureError):
        store.destroy_owner("user", except_token=token + suffix)
    assert store.sessions_of("user") == [store.unsign(token)]


@pytest.mark.parametrize("owner", ["zoë 🧥", "nul\x00inside", "o" * 1024])
def test_owners_are_any_text_up_to_1024_bytes(store: Store, owner: str) -> None:
    token = store.create(b"x")
    store.set_owner(token, owner)
    assert store.sessions_of(owner) == [store.unsign(token)]
    assert store.destroy_owner(owner) == 1
    assert store.get(token) is None


@pytest.mark.parametrize("owner", ["", "o" * 1025, "user\ud800"])
def test_malformed_owners_are_invalid_arguments(store: Store, owner: str) -> None:
    token = store.create(b"x")
    calls: list[Callable[[], Any]] = [
        lambda: store.set_owner(token, owner),
        lambda: store.sessions_of(owner),
        lambda: store.destroy_owner(owner),
    ]
    for call in calls:
        with pytest.raises(coatcheck.InvalidArgumentError) as err:
            call()
        assert err.value.code == "invalid_argument"


# -- limits -------------------------------------------------------------------------------


def test_too_large_values_are_refused_and_change_nothing(make_store: Callable[..., Store]) -> None:
    store = make_store(max_session_bytes=16)
    token = store.create(b"x" * 16)
    with pytest.raises(coatcheck.TooLargeError) as err:
        store.create(b"x" * 17)
    assert err.value.code == "too_large"
    assert "17 bytes" in str(err.value)
    with pytest.raises(coatcheck.TooLargeError):
        store.set(token, b"y" * 17)
    with pytest.raises(coatcheck.TooLargeError):
        store.set_if_version(token, b"y" * 17, 1)
    assert store.get_with_version(token) == (b"x" * 16, 1)
    assert len(store) == 1


def test_default_max_session_bytes_is_one_mebibyte(store: Store) -> None:
    store.create(b"x" * 1048576)
    with pytest.raises(coatcheck.TooLargeError):
        store.create(b"x" * 1048577)


def test_max_sessions_evicts_the_least_valuable(make_store: Callable[..., Store]) -> None:
    store = make_store(max_sessions=2)
    active = store.create(b"active")
    store.get(active)  # read: worth more than a session never read again
    store.create(b"abandoned")
    third = store.create(b"third")
    assert len(store) == 2
    assert store.get(active) == b"active"
    assert store.get(third) == b"third"
    assert store.stats()["evicted_unread"] == 1


def test_a_value_that_can_never_fit_max_bytes_is_store_full(make_store: Callable[..., Store]) -> None:
    store = make_store(max_bytes=512)
    token = store.create(b"small")
    with pytest.raises(coatcheck.StoreFullError) as err:
        store.create(b"x" * 1000)
    assert err.value.code == "store_full"
    with pytest.raises(coatcheck.StoreFullError):
        store.set(token, b"x" * 1000)
    assert store.get(token) == b"small"
    assert len(store) == 1


# -- argument checking --------------------------------------------------------------------


def type_error_cases() -> list[tuple[str, Callable[[Store, str], Any]]]:
    return [
        ("create(str)", lambda s, t: s.create("text")),  # type: ignore[arg-type]
        ("create(None)", lambda s, t: s.create(None)),  # type: ignore[arg-type]
        ("create(ttl=str)", lambda s, t: s.create(b"x", ttl="5")),  # type: ignore[arg-type]
        ("create(ttl=bool)", lambda s, t: s.create(b"x", ttl=True)),
        ("get(bytes)", lambda s, t: s.get(t.encode())),  # type: ignore[arg-type]
        ("get(None)", lambda s, t: s.get(None)),  # type: ignore[arg-type]
        ("get_with_version(int)", lambda s, t: s.get_with_version(1)),  # type: ignore[arg-type]
        ("set(str data)", lambda s, t: s.set(t, "text")),  # type: ignore[arg-type]
        ("set(ttl=list)", lambda s, t: s.set(t, b"x", ttl=[1])),  # type: ignore[arg-type]
        ("set_if_version(str version)", lambda s, t: s.set_if_version(t, b"x", "1")),  # type: ignore[arg-type]
        ("touch(int)", lambda s, t: s.touch(5)),  # type: ignore[arg-type]
        ("destroy(None)", lambda s, t: s.destroy(None)),  # type: ignore[arg-type]
        ("regenerate(bytes)", lambda s, t: s.regenerate(b"x")),  # type: ignore[arg-type]
        ("sign(int)", lambda s, t: s.sign(5)),  # type: ignore[arg-type]
        ("sign(None)", lambda s, t: s.sign(None)),  # type: ignore[arg-type]
        ("unsign(None)", lambda s, t: s.unsign(None)),  # type: ignore[arg-type]
        ("set_owner(int)", lambda s, t: s.set_owner(t, 5)),  # type: ignore[arg-type]
        ("sessions_of(None)", lambda s, t: s.sessions_of(None)),  # type: ignore[arg-type]
        ("destroy_owner(int)", lambda s, t: s.destroy_owner(5)),  # type: ignore[arg-type]
        ("destroy_owner(except=bytes)", lambda s, t: s.destroy_owner("o", b"x")),  # type: ignore[arg-type]
        ("Store(int secret)", lambda s, t: Store(5, idle_timeout=1)),  # type: ignore[arg-type]
        ("Store(list of int)", lambda s, t: Store(["a", 5], idle_timeout=1)),  # type: ignore[list-item]
        ("Store(str timeout)", lambda s, t: Store("k", idle_timeout="60")),  # type: ignore[arg-type]
        ("Store(bool timeout)", lambda s, t: Store("k", idle_timeout=True)),
        ("Store(float count)", lambda s, t: Store("k", idle_timeout=1, max_sessions=1.5)),  # type: ignore[arg-type]
        ("Store(str shards)", lambda s, t: Store("k", idle_timeout=1, shards="16")),  # type: ignore[arg-type]
        ("Store(no timeout)", lambda s, t: Store("k")),  # type: ignore[call-arg]
        ("Store(positional timeout)", lambda s, t: Store("k", 60)),  # type: ignore[misc]
    ]


@pytest.mark.parametrize(("name", "call"), type_error_cases(), ids=[c[0] for c in type_error_cases()])
def test_wrong_argument_types_raise_type_error(
    store: Store, name: str, call: Callable[[Store, str], Any]
) -> None:
    token = store.create(b"keep")
    with pytest.raises(TypeError):
        call(store, token)
    assert store.get_with_version(token) == (b"keep", 1)
    assert len(store) == 1


INVALID_CONFIGS: list[dict[str, Any]] = [
    {"idle_timeout": 0},
    {"idle_timeout": -1},
    {"idle_timeout": math.nan},
    {"idle_timeout": math.inf},
    {"idle_timeout": 1e30},
    {"idle_timeout": 10**400},
    {"absolute_timeout": 0},
    {"max_sessions": 0},
    {"max_sessions": -5},
    {"max_bytes": 0},
    {"max_session_bytes": 0},
    {"shards": 3},
    {"shards": 0},
    {"shards": 1 << 17},
    {"sweep_interval": 0},
    {"secret": []},
    {"secret": ""},
    {"secret": ["ok", b""]},
]


@pytest.mark.parametrize("options", INVALID_CONFIGS, ids=[str(o) for o in INVALID_CONFIGS])
def test_out_of_range_settings_are_invalid_config(
    make_store: Callable[..., Store], options: dict[str, Any]
) -> None:
    with pytest.raises(coatcheck.InvalidConfigError) as err:
        make_store(**options)
    assert err.value.code == "invalid_config"


def test_valid_settings_are_accepted(make_store: Callable[..., Store]) -> None:
    store = make_store(
        idle_timeout=1.5, absolute_timeout=3600, max_sessions=10, max_bytes=1 << 20,
        max_session_bytes=1024, shards=4, sweep_interval=0.5,
    )  # fmt: skip
    assert store.get(store.create(b"x")) == b"x"


@pytest.mark.parametrize("ttl", [0, -1, 0.0001, 1e-300, math.nan, math.inf, 10**400])
def test_out_of_range_ttls_are_invalid_arguments(store: Store, ttl: float) -> None:
    token = store.create(b"x")
    calls: list[Callable[[], Any]] = [
        lambda: store.create(b"y", ttl=ttl),
        lambda: store.set(token, b"y", ttl=ttl),
        lambda: store.set_if_version(token, b"y", 1, ttl=ttl),
        lambda: store.touch(token, ttl=ttl),
    ]
    for call in calls:
        with pytest.raises(coatcheck.InvalidArgumentError):
            call()
    assert store.get_with_version(token) == (b"x", 1)
    assert len(store) == 1


@pytest.mark.skipif(
    "libasan" in os.environ.get("LD_PRELOAD", ""),
    reason="AddressSanitizer maps terabytes of shadow memory: no address-space cap fits under"
    " it (the test runs in the plain suite)",
)
def test_a_read_that_python_cannot_allocate_raises_memory_error_and_the_session_stays() -> None:
    # In a child process whose address space is capped just above its size, a 48 MiB value
    # cannot be handed to Python: a MemoryError, as with any allocation, not a panic.
    script = """
import resource, coatcheck
store = coatcheck.Store("s", idle_timeout=60, max_session_bytes=64 * 1024 * 1024)
token = store.create(b"x" * (48 * 1024 * 1024))
with open("/proc/self/status") as status:
    size = next(int(line.split()[1]) for line in status if line.startswith("VmSize:")) * 1024
resource.setrlimit(resource.RLIMIT_AS, (size + 16 * 1024 * 1024, resource.RLIM_INFINITY))
try:
    store.get(token)
    print("read")
except MemoryError:
    print("MemoryError")
resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
print(len(store.get(token)))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["MemoryError", str(48 * 1024 * 1024)], done.stderr


def test_peek_reads_a_session_without_sliding_its_idle_deadline() -> None:
    store = Store("peek secret", idle_timeout=0.3)
    peeked, read = store.create(b"peeked"), store.create(b"read")
    time.sleep(0.2)
    assert store.peek(peeked) == b"peeked" and store.get(read) == b"read"
    time.sleep(0.2)
    assert store.peek(peeked) is None, "peek slid the deadline"
    assert store.get(read) == b"read"
    assert store.peek("forged.token") is None
