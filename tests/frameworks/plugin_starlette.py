"""pytest plugin of run.py for Starlette's tests: its SessionMiddleware becomes coatcheck's.

Loaded (``-p``) before Starlette's tests are imported, it replaces
``starlette.middleware.sessions.SessionMiddleware`` with `SessionMiddleware` below, which
takes Starlette's arguments and builds ``coatcheck.asgi.SessionMiddleware`` from them:
``secret_key`` becomes ``store=coatcheck.Store(secret_key, idle_timeout=...)``, the cookie
options pass through under coatcheck's names. ``Session`` (the dict class) stays Starlette's.
"""

from __future__ import annotations

from typing import Any, Optional

import pytest
import starlette.middleware.sessions

import coatcheck
import coatcheck.asgi
from plugin_report import mark_coatcheck

# Starlette's default max_age; the idle timeout of a store whose middleware has none.
DEFAULT_MAX_AGE = 14 * 24 * 60 * 60

_current: Optional[pytest.Item] = None


class SessionMiddleware(coatcheck.asgi.SessionMiddleware):
    """``coatcheck.asgi.SessionMiddleware`` with Starlette's ``SessionMiddleware`` signature."""

    def __init__(
        self,
        app: Any,
        secret_key: Any,
        session_cookie: str = "session",
        max_age: Optional[int] = DEFAULT_MAX_AGE,
        path: str = "/",
        same_site: str = "lax",
        https_only: bool = False,
        domain: Optional[str] = None,
        partitioned: bool = False,
    ) -> None:
        if _current is not None:
            mark_coatcheck(_current)  # even if coatcheck refuses the options below
        # Starlette's max_age is the sessions' lifetime: it becomes the store's idle timeout
        # (Starlette's default when max_age is None, a browser-session cookie, or <= 0, a
        # session that ends with its request); the middleware takes max_age as it is.
        idle = max_age if max_age is not None and max_age > 0 else DEFAULT_MAX_AGE
        store = coatcheck.Store(str(secret_key), idle_timeout=idle)
        super().__init__(
            app,
            store=store,
            session_cookie=session_cookie,
            max_age=max_age,
            path=path,
            same_site=same_site,  # type: ignore[arg-type]
            https_only=https_only,
            domain=domain,
            partitioned=partitioned,
        )


starlette.middleware.sessions.SessionMiddleware = SessionMiddleware  # type: ignore[misc,assignment]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: Optional[pytest.Item]) -> Any:
    global _current
    _current = item
    try:
        return (yield)
    finally:
        _current = None
