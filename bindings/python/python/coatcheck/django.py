"""Django backend: ``SESSION_ENGINE = "coatcheck.django"``.

The session cookie holds the signed token of a session kept in a `coatcheck.Store`. The store
is ``settings.COATCHECK_STORE`` (a `Store`, or the dotted path of one) if set; otherwise one is
built on first use from ``SECRET_KEY`` (and ``SECRET_KEY_FALLBACKS``, which still verify) with
``SESSION_COOKIE_AGE`` as its idle timeout. Values go through ``SESSION_SERIALIZER`` (JSON by
default). ``django.contrib.auth.login`` moves the session to a new key through ``cycle_key``.

Lifetimes, one rule: the store's ``idle_timeout`` is the idle timeout of the sessions, its
``absolute_timeout`` their absolute timeout, and the cookie's max-age is the store's idle
timeout. Setting
``SESSION_COOKIE_AGE`` to something else than the idle timeout of ``COATCHECK_STORE`` is an
error (``ImproperlyConfigured``). ``request.session.set_expiry(seconds)`` still gives one
session an idle timeout of its own; ``set_expiry(datetime or timedelta)`` ends it at that time
however often it is read, as Django's database backend does; an expiry already past at save
destroys the session. Django sends
the cookie only when the session changes, unless ``SESSION_SAVE_EVERY_REQUEST`` is on: turn it
on to keep the cookie alive as long as the session; a save that changes nothing costs a touch,
never a data write.

A save that changes the session writes it with a compare-and-set; if another request of the
same session wrote first, this request's changes are merged into the newer data (keys it did
not touch keep the other request's values). A session destroyed meanwhile (logout in another
tab, ``destroy_owner``, a timeout) is never re-created: the save raises ``UpdateError``, which
Django's middleware turns into ``SessionInterrupted``.

Every session written is filed under its owner, ``settings.COATCHECK_OWNER`` (a callable, or
the dotted path of one, computing a user id from the session dict; ``None`` turns it off). By
default it is the logged-in user's id (``_auth_user_id``), so ``store.sessions_of(str(user.pk))``
lists a user's sessions and ``store.destroy_owner(str(user.pk))`` logs them all out.
"""

from __future__ import annotations

import math
import threading
from datetime import datetime
from datetime import timezone as dt_timezone
from functools import lru_cache
from typing import Any, Callable, Optional, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase, UpdateError
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from coatcheck._native import Store
from coatcheck._session_state import (
    store_options,
    Outcome,
    OwnerHook,
    SessionBackend,
    SessionState,
    owner_key,
)

__all__ = ["SessionStore", "get_owner_hook", "get_store"]

_lock = threading.Lock()
_default_store: Optional[Store] = None
_auth_user_id = owner_key("_auth_user_id")  # django.contrib.auth's SESSION_KEY
_T = TypeVar("_T")


def get_store() -> Store:
    """The store sessions live in (see the module docstring).

    Raises:
        ImproperlyConfigured: ``SESSION_COOKIE_AGE`` is set and differs from the idle timeout
            of ``COATCHECK_STORE``.
    """
    configured = getattr(settings, "COATCHECK_STORE", None)
    if isinstance(configured, str):
        configured = import_string(configured)
    if configured is not None:
        if not isinstance(configured, Store):
            raise TypeError("settings.COATCHECK_STORE must be a coatcheck.Store")
        age = settings.SESSION_COOKIE_AGE
        if (
            settings.is_overridden("SESSION_COOKIE_AGE")
            and abs(age - configured.idle_timeout) >= 0.001
        ):
            raise ImproperlyConfigured(
                f"SESSION_COOKIE_AGE is {age} s but the idle_timeout of COATCHECK_STORE is"
                f" {configured.idle_timeout:g} s: the store's idle timeout is the sessions'"
                " lifetime; remove SESSION_COOKIE_AGE or make them equal"
            )
        return configured
    global _default_store
    with _lock:
        if _default_store is None:
            secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
            _default_store = Store(
                secrets,
                idle_timeout=settings.SESSION_COOKIE_AGE,
                **store_options(lambda name: getattr(settings, name, None)),
            )
        return _default_store


@lru_cache(maxsize=None)
def _import_hook(path: str) -> Any:
    return import_string(path)


def get_owner_hook() -> Optional[OwnerHook]:
    """The owner hook: ``settings.COATCHECK_OWNER``, by default the logged-in user's id."""
    if not hasattr(settings, "COATCHECK_OWNER"):
        return _auth_user_id
    configured = settings.COATCHECK_OWNER
    if isinstance(configured, str):
        configured = _import_hook(configured)
    if configured is not None and not callable(configured):
        raise ImproperlyConfigured("settings.COATCHECK_OWNER must be a callable or its path")
    hook: Optional[OwnerHook] = configured
    return hook


class SessionStore(SessionBase):
    """Django's ``SessionBase`` over a `coatcheck.Store`."""

    _session_key: Optional[str]  # a property of SessionBase that validates the key

    def __init__(self, session_key: Optional[str] = None) -> None:
        self._store = get_store()
        super().__init__(session_key)
        self._backend = SessionBackend(self._store, self.serializer(), get_owner_hook())
        self._state = SessionState(self._backend)

    def get_session_cookie_age(self) -> int:
        """The cookie's max-age: the store's idle timeout (whole seconds, rounded up)."""
        return math.ceil(self._store.idle_timeout)

    def _ttl(self) -> Optional[float]:
        """This session's idle timeout; ``None`` if its expiry has already passed."""
        expiry = self.get("_session_expiry")
        if not expiry:
            # The store's own, passed explicitly: a custom expiry removed must not linger.
            return self._store.idle_timeout
        # A date: the time left to it, to the millisecond (get_expiry_age drops the fraction
        # of a second, which would end the session up to a second early).
        left = _seconds_to(expiry)
        age = left if left is not None else self.get_expiry_age()
        return age if age > 0 else None

    def load(self) -> dict[str, Any]:
        data, self._state = self._backend.open(self.session_key)
        if self._state.token is None:
            self._session_key = None  # tampered, unknown or expired: a fresh session
            return data
        if (left := _seconds_to(data.get("_session_expiry"))) is not None and left <= 0:
            # Reads slide the store's deadline; a date set by set_expiry does not move.
            self._state.destroy()
            self._session_key = None
            return {}
        self._adopt_resigned_key()
        return data

    def _adopt_resigned_key(self) -> None:
        """A key verified with a fallback secret: the same session under a current signature
        (see SessionBackend.open), which the client is sent."""
        if self._state.token is not None and self._state.token != self.session_key:
            self._session_key = self._state.token
            self.modified = True

    def exists(self, session_key: Optional[str]) -> bool:
        if not session_key:
            return False
        # A look, not a use: it neither slides the session's idle deadline nor keeps it from
        # eviction, as Django's database backend's filter(...).exists() leaves it alone.
        return self._store.peek(session_key) is not None

    def create(self) -> None:
        # The store names sessions itself (ids never collide), so there is no retry loop.
        data = self._get_session(no_load=True)
        ttl = self._ttl()
        self._session_key = self._state.create(data, ttl)
        if ttl is None:
            # Expired already (an expiry in the past): a key, but no session behind it.
            self._state.destroy()
        self.modified = True

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None or must_create:
            return self.create()
        session = self._get_session()
        if self.session_key is not None and self._state.token is None:
            # Never loaded: `clear()` empties the cache without loading (a logout written as
            # `request.session.clear()`). The stored session is opened now, as what this save
            # replaces.
            _, self._state = self._backend.open(self.session_key)
            if self._state.token is None:
                self._session_key = None
            self._adopt_resigned_key()
        if self.session_key is None:
            # Loading just found the key stale: the session was destroyed or expired before
            # this save. Never revive it; as Django's database backend, an UpdateError.
            raise UpdateError
        ttl = self._ttl()
        if ttl is None:
            self._state.destroy()  # its expiry has passed: gone at once
            return
        if self._state.token != self.session_key:
            raise UpdateError  # destroyed by this very object (an expiry that had passed)
        outcome, stored = self._state.save(session, ttl=ttl, destroy_empty=False)
        if outcome is Outcome.UNCHANGED and not self._state.touch(ttl):
            outcome = Outcome.REVOKED
        if outcome is Outcome.REVOKED:
            raise UpdateError
        if stored is not session:
            self._session_cache = stored  # merged with another request's write

    def cycle_key(self) -> None:
        data = self._session
        if self.session_key is not None and self._state.token == self.session_key:
            # One step in the store: the old key stops working, data and owner move along.
            self._state.regenerate()
            if not self._state.revoked:  # revoked: the next save raises UpdateError
                self._session_key = self._state.token
                # The client must get the new key even if nothing else changes (Django's
                # update_session_auth_hash for another user's password): the old one is dead.
                self.modified = True
            return
        key = self.session_key
        self.create()
        self._session_cache = data
        if key:
            self.delete(key)

    def delete(self, session_key: Optional[str] = None) -> None:
        key = session_key if session_key is not None else self.session_key
        if key:
            self._store.destroy(key)
            if key == self._state.token:
                self._state.revoked = True  # saving this key again is an UpdateError

    @classmethod
    def clear_expired(cls) -> None:
        # Expired sessions are reclaimed by the sweeper of the process that holds them (and by
        # their TTLs in Redis). Sweeping needs no store made for it: a store made here, in
        # `manage.py clearsessions` as Django's docs schedule it, would be empty, and on
        # COATCHECK_PERSIST_PATH would fail on the directory the server holds.
        if _default_store is None and getattr(settings, "COATCHECK_STORE", None) is None:
            return
        get_store().sweep()

    # A store in this process answers in under a microsecond with no I/O: the async variants
    # then run inline. A store on Redis may wait on the network (at most redis_timeout), one
    # with persist_fsync="always" on the disk, so they run in a worker thread and the event
    # loop stays free.

    async def _off_loop(self, call: Callable[..., _T], *args: Any) -> _T:
        if self._store.waits_on_io:
            return await sync_to_async(call, thread_sensitive=False)(*args)
        return call(*args)

    async def aexists(self, session_key: Optional[str]) -> bool:
        return await self._off_loop(self.exists, session_key)

    async def acreate(self) -> None:
        # The expiry age may depend on the loaded session (set_expiry).
        await self._aget_session(no_load=True)
        await self._off_loop(self.create)

    async def asave(self, must_create: bool = False) -> None:
        had_key = self.session_key is not None
        await self._aget_session(no_load=must_create or not had_key)
        if had_key and not must_create and self.session_key is None:
            raise UpdateError  # a stale key, as in `save`
        await self._off_loop(self.save, must_create)

    async def acycle_key(self) -> None:
        await self._aget_session()
        await self._off_loop(self.cycle_key)

    async def adelete(self, session_key: Optional[str] = None) -> None:
        await self._off_loop(self.delete, session_key)

    async def aload(self) -> dict[str, Any]:
        return await self._off_loop(self.load)

    @classmethod
    async def aclear_expired(cls) -> None:
        cls.clear_expired()  # a sweep of this process's table: no network


def _seconds_to(expiry: Any) -> Optional[float]:
    """Seconds left to the date of a ``set_expiry(datetime or timedelta)``, which Django stores
    as an ISO string; ``None`` for seconds of inactivity, which are the store's to enforce."""
    if not isinstance(expiry, str):
        return None
    try:
        when = datetime.fromisoformat(expiry)
    except ValueError:
        return None  # not Django's format: the store's idle timeout still ends the session
    # Aware or naive as `when` is (it may have been written under another USE_TZ; naive means
    # local time, which is what Django's `timezone.now()` gives without USE_TZ).
    now = datetime.now(dt_timezone.utc) if when.tzinfo is not None else datetime.now()
    return (when - now).total_seconds()
