"""The cost of the no-conflict save path (issue 9), in Python.

One request's store work for 20,000 sessions: open the session, change one key, save it.
*versioned* is the backends' save path (``coatcheck._session_state``: compare with what was
loaded, then ``set_if_version``); *upsert* is v1's path, the same load and change followed by a
plain ``set``, which could lose concurrent updates. Rounds alternate between the two so that
machine noise hits both alike; the medians are compared.

Run: ``make bench-python`` (all Python benchmarks) or ``.venv/bin/python
benches/python/bench_save_path.py``.
"""

from __future__ import annotations

import os
import statistics
import time

from coatcheck import JSONSerializer, Store
from coatcheck._session_state import SessionBackend
from coatcheck.serializers import dump_bytes, load_dict

N = int(os.environ.get("OPS", 20_000))
ROUNDS = int(os.environ.get("ROUNDS", 7))
SIZES = (200, 2048)


def versioned(backend: SessionBackend, tokens: list[str]) -> float:
    start = time.perf_counter()
    for token in tokens:
        data, state = backend.open(token)
        data["views"] = data.get("views", 0) + 1
        state.save(data)
    return (time.perf_counter() - start) / len(tokens) * 1e9


def upsert(backend: SessionBackend, tokens: list[str]) -> float:
    store, serializer = backend.store, backend.serializer
    start = time.perf_counter()
    for token in tokens:
        found = store.get_with_version(token)
        assert found is not None
        data = load_dict(serializer, found[0]) or {}
        data["views"] = data.get("views", 0) + 1
        store.set(token, dump_bytes(serializer, data))
    return (time.perf_counter() - start) / len(tokens) * 1e9


def main() -> None:
    store = Store("bench secret", idle_timeout=3600)
    backend = SessionBackend(store, JSONSerializer())
    print(f"open + change + save, {N} sessions, median of {ROUNDS} alternating rounds (ns, lower is better)")
    print(f"{'size':<6} {'versioned':>10} {'upsert':>10} {'cost':>8}")
    for size in SIZES:
        payload = {"user_id": 42, "data": "x" * max(0, size - 30)}
        tokens = [store.create(dump_bytes(backend.serializer, payload)) for _ in range(N)]
        versioned(backend, tokens)  # warm-up
        times: dict[str, list[float]] = {"versioned": [], "upsert": []}
        for _ in range(ROUNDS):
            times["versioned"].append(versioned(backend, tokens))
            times["upsert"].append(upsert(backend, tokens))
        v, u = statistics.median(times["versioned"]), statistics.median(times["upsert"])
        print(f"{str(size) + 'B':<6} {v:>10.0f} {u:>10.0f} {(v / u - 1) * 100:>7.1f}%")
        if store.stats()["conflicts"]:
            raise SystemExit("a conflict on the no-conflict path")
        store.clear()


if __name__ == "__main__":
    main()
