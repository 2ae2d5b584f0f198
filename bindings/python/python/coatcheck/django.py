"""Django backend: ``SESSION_ENGINE = "coatcheck.django"``.

The session cookie holds the signed token of a session kept in a `coatcheck.Store`. The store
is ``settings.COATCHECK_STORE`` (a `Store`, or the dotted path of one) if set; otherwise one is
built on first use from ``SECRET_KEY`` (and ``SECRET_KEY_FALLBACKS``, which still verify) with
``SESSION_COOKIE_AGE`` as its idle timeout. Each save passes the session's own expiry age
(``request.session.set_expiry(...)``) as its TTL. Values go through ``SESSION_SERIALIZER``
(JSON by default). ``django.contrib.auth.login`` moves the session to a new key through
``cycle_key``.
"""

from __future__ import annotations

import threading
from typing import Any, Optional

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase, UpdateError
from django.utils.module_loading import import_string

from coatcheck._native import SessionError, Store
from coatcheck.serializers import dump_bytes, load_dict

__all__ = ["SessionStore", "get_store"]

_lock = threading.Lock()
_default_store: Optional[Store] = None


def get_store() -> Store:
    """The store sessions live in (see the module docstring)."""
    configured = getattr(settings, "COATCHECK_STORE", None)
    if isinstance(configured, str):
        configured = import_string(configured)
    if configured is not None:
        if not isinstance(configured, Store):
            raise TypeError("settings.COATCHECK_STORE must be a coatcheck.Store")
        return configured
    global _default_store
    with _lock:
        if _default_store is None:
            secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
            _default_store = Store(secrets, idle_timeout=settings.SESSION_COOKIE_AGE)
        return _default_store


class SessionStore(SessionBase):
    """Django's ``SessionBase`` over a `coatcheck.Store`."""

    _session_key: Optional[str]  # a property of SessionBase that validates the key

    def __init__(self, session_key: Optional[str] = None) -> None:
        self._store = get_store()
        super().__init__(session_key)

    def _ttl(self) -> float:
        age = self.get_expiry_age()
        return age if age > 0 else 0.001  # already expired: gone almost at once

    def _dump(self, session: dict[str, Any]) -> bytes:
        return dump_bytes(self.serializer(), session)

    def load(self) -> dict[str, Any]:
        found = self._store.get(self.session_key) if self.session_key else None
        data = load_dict(self.serializer(), found) if found is not None else None
        if data is None:
            self._session_key = None  # tampered, unknown or expired: a fresh session
            return {}
        return data

    def exists(self, session_key: Optional[str]) -> bool:
        if not session_key:
            return False
        return self._store.get_with_version(session_key) is not None

    def create(self) -> None:
        # The store names sessions itself (ids never collide), so there is no retry loop.
        data = self._get_session(no_load=True)
        self._session_key = self._store.create(self._dump(data), self._ttl())
        self.modified = True

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None or must_create:
            return self.create()
        session = self._get_session()
        if self.session_key is None:
            # Loading just found the key stale: the session was destroyed or expired before
            # this save. Never revive it; as Django's database backend, an UpdateError.
            raise UpdateError
        data = self._dump(session)
        try:
            self._store.set(self.session_key, data, self._ttl())
        except SessionError as e:
            if e.code in ("not_found", "bad_signature"):
                raise UpdateError from e
            raise

    def delete(self, session_key: Optional[str] = None) -> None:
        key = session_key if session_key is not None else self.session_key
        if key:
            self._store.destroy(key)

    @classmethod
    def clear_expired(cls) -> None:
        get_store().sweep()

    # Store calls take under a microsecond and do no I/O: the async variants run them inline
    # rather than through a thread pool.

    async def aexists(self, session_key: Optional[str]) -> bool:
        return self.exists(session_key)

    async def acreate(self) -> None:
        # The expiry age may depend on the loaded session (set_expiry).
        await self._aget_session(no_load=True)
        self.create()

    async def asave(self, must_create: bool = False) -> None:
        had_key = self.session_key is not None
        await self._aget_session(no_load=must_create or not had_key)
        if had_key and not must_create and self.session_key is None:
            raise UpdateError  # a stale key, as in `save`
        self.save(must_create)

    async def adelete(self, session_key: Optional[str] = None) -> None:
        self.delete(session_key)

    async def aload(self) -> dict[str, Any]:
        return self.load()

    @classmethod
    async def aclear_expired(cls) -> None:
        cls.clear_expired()
