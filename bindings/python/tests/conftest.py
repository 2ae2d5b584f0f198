"""Shared fixtures: stores with small, fast settings."""

from __future__ import annotations

from typing import Any, Callable

import pytest

import coatcheck

SECRET = "test secret, not for production"


@pytest.fixture
def make_store() -> Callable[..., coatcheck.Store]:
    """Builds a store; keyword arguments override the defaults."""

    def make(**kwargs: Any) -> coatcheck.Store:
        options: dict[str, Any] = {"idle_timeout": 60}
        options.update(kwargs)
        secret = options.pop("secret", SECRET)
        return coatcheck.Store(secret, **options)

    return make


@pytest.fixture
def store(make_store: Callable[..., coatcheck.Store]) -> coatcheck.Store:
    return make_store()
