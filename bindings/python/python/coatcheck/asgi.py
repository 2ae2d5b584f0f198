"""ASGI middleware (Starlette, FastAPI): ``request.session`` kept server-side.

.. code-block:: python

    from fastapi import FastAPI
    from coatcheck import Store
    from coatcheck.asgi import SessionMiddleware

    app = FastAPI()
    store = Store("a long random secret", idle_timeout=30 * 60)
    app.add_middleware(SessionMiddleware, store=store, owner=lambda data: data.get("user_id"))

It is used like Starlette's own ``SessionMiddleware``, but the cookie holds only a signed token
and the data stays in the store. A request that changes nothing (compared by the serialized
session, so changes inside nested values count too) writes nothing. A request that changes
the session writes it with a compare-and-set; if another request of the same session wrote
first, this request's changes are merged into the newer data (keys it did not touch keep the
other request's values). Emptying the session destroys it and deletes the cookie. A session
that was destroyed meanwhile (logout in another tab, ``destroy_owner``, a timeout) is never
re-created, and the response leaves the cookie alone (the browser may hold a newer token by
then; the dead one is refused), unless the request called ``clear()``: a logout. Data set
after ``request.session.clear()`` is stored as a new session under a new id, and the old one
is destroyed. Call `regenerate` (or ``request.session.regenerate()``) at login to move the
session to a new id.

Lifetimes, one rule: the store's ``idle_timeout`` is the idle timeout of the sessions, its
``absolute_timeout`` their absolute timeout, and the cookie is sent so that it does not
expire while a user is active. By default (``max_age`` left out) the cookie's ``Max-Age`` is the
store's idle timeout, and the cookie is re-sent, with no data written, at most once per
quarter of it: a user whose requests come less than three quarters of the idle timeout apart
never loses the cookie (a user who stops may see the cookie go up to a quarter of it before
the store drops the session). ``max_age=None`` gives a cookie that lasts until the browser
closes, sent once per session id. A positive ``max_age`` other than the store's idle timeout
is an error. ``max_age`` of 0 or less keeps Starlette's meaning, a cookie that is already
expired: no session outlives its request, and nothing is stored.
"""

from __future__ import annotations

import calendar
import email.utils
import enum
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Final, Literal, Optional, Union

import anyio.to_thread
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coatcheck._native import Store
from coatcheck._session_state import (
    Outcome,
    OwnerHook,
    SessionBackend,
    SessionState,
    StoredSession,
    raise_on_use,
)
from coatcheck.serializers import JSONSerializer, Serializer

__all__ = [
    "STORE_IDLE_TIMEOUT",
    "ServerSession",
    "SessionMiddleware",
    "current_session",
    "regenerate",
    "regenerate_async",
]


class _Default(enum.Enum):
    STORE_IDLE_TIMEOUT = "the store's idle timeout"


#: ``SessionMiddleware(max_age=...)``'s default: the store's idle timeout.
STORE_IDLE_TIMEOUT: Final = _Default.STORE_IDLE_TIMEOUT


class ServerSession(StoredSession, dict[str, Any]):
    """The session dict of one request, with the token it is stored under.

    ``accessed`` is set by any use of the dict (the response then varies on ``Cookie``).
    """

    def __init__(self, initial: Optional[Mapping[str, Any]] = None, *, state: SessionState):
        super().__init__(initial or {})
        #: This request's token, loaded version and loaded bytes.
        self.state = state
        self.accessed = False

    # Every use of the dict marks the session accessed. `*args: Any` keeps each override
    # compatible with all of dict's overloads.

    def __getitem__(self, key: str) -> Any:
        self.accessed = True
        return super().__getitem__(key)

    def __setitem__(self, key: str, value: Any) -> None:
        self.accessed = True
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.accessed = True
        super().__delitem__(key)

    def __contains__(self, key: object) -> bool:
        self.accessed = True
        return super().__contains__(key)

    def __iter__(self) -> Any:
        self.accessed = True
        return super().__iter__()

    def __len__(self) -> int:
        self.accessed = True
        return super().__len__()

    def get(self, *args: Any, **kwargs: Any) -> Any:
        self.accessed = True
        return super().get(*args, **kwargs)

    def keys(self, *args: Any, **kwargs: Any) -> Any:
        self.accessed = True
        return super().keys(*args, **kwargs)

    def values(self, *args: Any, **kwargs: Any) -> Any:
        self.accessed = True
        return super().values(*args, **kwargs)

    def items(self, *args: Any, **kwargs: Any) -> Any:
        self.accessed = True
        return super().items(*args, **kwargs)

    def setdefault(self, *args: Any, **kwargs: Any) -> Any:
        self.accessed = True
        return super().setdefault(*args, **kwargs)

    def pop(self, *args: Any, **kwargs: Any) -> Any:
        self.accessed = True
        return super().pop(*args, **kwargs)

    def popitem(self, *args: Any, **kwargs: Any) -> Any:
        self.accessed = True
        return super().popitem(*args, **kwargs)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.accessed = True
        super().update(*args, **kwargs)

    def clear(self, *args: Any, **kwargs: Any) -> None:
        """Empties the session; data set afterwards is stored under a new id."""
        self.accessed = True
        self.state.cleared = True
        super().clear(*args, **kwargs)

    def copy(self, *args: Any, **kwargs: Any) -> Any:
        self.accessed = True
        return super().copy(*args, **kwargs)

    def __or__(self, *args: Any, **kwargs: Any) -> Any:
        self.accessed = True
        return super().__or__(*args, **kwargs)

    def __ior__(self, *args: Any, **kwargs: Any) -> Any:
        self.accessed = True
        return super().__ior__(*args, **kwargs)


class _WebSocketSession(ServerSession):
    """The session of a websocket: read as over HTTP, but changes are not saved (as with
    Starlette's sessions: a websocket sends no cookie)."""

    def regenerate(self) -> None:
        """Refused: the new token could never reach the browser, and the old one would stop
        working at once."""
        raise RuntimeError(
            "a session cannot be regenerated over a websocket: no cookie can carry its new"
            " token; regenerate it in an HTTP request (at login)"
        )


@raise_on_use
class _UnloadedSession(ServerSession):
    """The session of a request whose session could not be loaded (Redis unreachable): every
    use raises `UnavailableError` (see `SessionBackend.open_eagerly`)."""


def current_session(request: HTTPConnection) -> ServerSession:
    """``request.session``, typed as what coatcheck keeps (for ``.token``, ``.regenerate()``).

    Raises:
        RuntimeError: The session is not coatcheck's (no `SessionMiddleware`, or the app
            replaced it).
    """
    session = request.session
    if not isinstance(session, ServerSession):
        raise RuntimeError("this request's session is not kept by coatcheck.asgi")
    return session


def regenerate(request: HTTPConnection) -> None:
    """Moves the request's session to a new id, keeping its data: call it at login.

    With a store on Redis this waits on the network (at most ``redis_timeout``), with
    ``persist_fsync="always"`` on the disk: in an ``async`` view,
    ``await regenerate_async(request)`` keeps the event loop free.
    """
    current_session(request).regenerate()


async def regenerate_async(request: HTTPConnection) -> None:
    """`regenerate` for ``async`` views: with a store that waits on I/O (``store.waits_on_io``)
    it runs in a worker thread."""
    session = current_session(request)
    if session.state.backend.store.waits_on_io:
        await anyio.to_thread.run_sync(session.regenerate)
    else:
        session.regenerate()


class _SentCookies:
    """When the cookie of each session was last sent, for sessions sent one recently.

    Why here and not elsewhere: the cookie's age is not in the store (its deadline is slid by
    every read, so it says when the session was last used, not when its cookie was last sent),
    and keeping a send time in the session data would make a refresh a data write. The store
    lives in this process, so a small in-process table does it: it holds only the tokens sent
    less than one refresh interval ago (older entries would be due anyway and are dropped), at
    most `limit` of them. A missing entry (another process start, an entry dropped to stay
    under the limit) only means one refresh earlier than needed.
    """

    def __init__(self, interval: float, limit: int = 100_000) -> None:
        self.interval = interval
        self.limit = limit
        self._sent: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def due(self, token: str, now: float) -> bool:
        with self._lock:
            sent = self._sent.get(token)
        return sent is None or now - sent >= self.interval

    def sent(self, token: str, now: float) -> None:
        with self._lock:
            self._sent[token] = now
            self._sent.move_to_end(token)
            while self._sent:
                oldest = next(iter(self._sent.values()))
                if len(self._sent) <= self.limit and now - oldest < self.interval:
                    break
                self._sent.popitem(last=False)

    def forget(self, token: Optional[str]) -> None:
        if token is not None:
            with self._lock:
                self._sent.pop(token, None)


class SessionMiddleware:
    """Server-side sessions for any ASGI app, with Starlette's ``SessionMiddleware`` options.

    Args:
        app: The wrapped ASGI app.
        store: Where sessions live; its ``idle_timeout`` and ``absolute_timeout`` are the
            sessions' lifetimes.
        session_cookie: The cookie that carries the token (Starlette's name for this option).
        cookie_name: The same as ``session_cookie``, under the name earlier versions took.
        max_age: Left out, the cookie follows the store's idle timeout (see the module
            docstring). ``None``: a cookie that lasts until the browser closes. A positive
            number must equal ``store.idle_timeout``: the store, not the cookie, decides how
            long a session lives. 0 or less: sessions end with their request (Starlette's
            already-expired cookie), nothing is stored.
        path: The cookie's path.
        same_site: The cookie's ``SameSite``.
        https_only: Adds ``Secure`` to the cookie.
        domain: The cookie's domain.
        partitioned: Adds ``Partitioned`` to the cookie (CHIPS).
        serializer: How session dicts become bytes; JSON by default.
        owner: Computes a session's owner (a user id: ``str``, ``int`` or ``None``) from its
            data, e.g. ``lambda data: data.get("user_id")``. Every session written is filed
            under it, so ``store.sessions_of(user)`` lists a user's sessions and
            ``store.destroy_owner(user)`` logs them all out.

    A response on which the app itself sets or deletes this cookie (its name, ``path`` and
    ``domain``; Starlette's logout is ``response.delete_cookie("session")``) keeps the app's
    ``Set-Cookie``, and the middleware adds none. A deletion also destroys the stored session,
    so the token it carried stops working at once.

    Raises:
        ValueError: A positive ``max_age`` differs from the store's idle timeout, or both
            ``session_cookie`` and ``cookie_name`` are given.
    """

    def __init__(
        self,
        app: ASGIApp,
        store: Store,
        session_cookie: Optional[str] = None,
        max_age: Union[float, None, Literal[_Default.STORE_IDLE_TIMEOUT]] = STORE_IDLE_TIMEOUT,
        path: str = "/",
        same_site: Literal["lax", "strict", "none"] = "lax",
        https_only: bool = False,
        domain: Optional[str] = None,
        partitioned: bool = False,
        serializer: Optional[Serializer] = None,
        owner: Optional[OwnerHook] = None,
        *,
        cookie_name: Optional[str] = None,
    ) -> None:
        if session_cookie is not None and cookie_name is not None:
            raise ValueError("give session_cookie or cookie_name (the same option), not both")
        #: Sessions end with their request (``max_age`` <= 0): nothing is stored.
        self.expired_at_once = False
        if max_age is STORE_IDLE_TIMEOUT:
            lifetime: Optional[float] = store.idle_timeout
        elif max_age is None:
            lifetime = None
        elif max_age <= 0:
            self.expired_at_once = True
            lifetime = None
        else:
            if abs(max_age - store.idle_timeout) >= 0.001:
                raise ValueError(
                    f"max_age is {max_age:g} s but the store's idle_timeout is"
                    f" {store.idle_timeout:g} s: the store's idle timeout is the sessions'"
                    " lifetime; leave max_age out (the cookie then follows the store) or make"
                    " them equal"
                )
            lifetime = float(max_age)
        self.app = app
        self.store = store
        if session_cookie is not None:
            self.cookie_name = session_cookie
        else:
            self.cookie_name = cookie_name if cookie_name is not None else "session"
        #: The cookie's Path and Domain, which tell the app's own Set-Cookie for it apart.
        self.cookie_path = path
        self.cookie_domain = _domain_key(domain)
        self.serializer: Serializer = serializer or JSONSerializer()
        self.backend = SessionBackend(store, self.serializer, owner)
        #: Seconds between two refreshes of a session's cookie, if the cookie has a lifetime.
        self.refresh_interval = lifetime / 4 if lifetime is not None else None
        self._sent = _SentCookies(self.refresh_interval or 0.0)
        #: The cookie's Max-Age.
        self.max_age: Optional[int] = math.ceil(lifetime) if lifetime is not None else None
        if self.expired_at_once:
            assert max_age is not None and max_age is not STORE_IDLE_TIMEOUT
            self.max_age = math.floor(max_age)
        flags = f"; path={path}; httponly; samesite={same_site}"
        if https_only:
            flags += "; secure"
        if domain:
            flags += f"; domain={domain}"
        if partitioned:
            flags += "; partitioned"
        self.cookie_flags = flags

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        cookie = HTTPConnection(scope).cookies.get(self.cookie_name)
        request_path = scope.get("path", "/")
        # A store on Redis may wait on the network, one that syncs every change on the disk:
        # off the event loop, in a worker thread.
        off_loop = self.backend.store.waits_on_io
        if off_loop:
            data, state = await anyio.to_thread.run_sync(self.backend.open_eagerly, cookie)
        else:
            data, state = self.backend.open_eagerly(cookie)
        session_class: type[ServerSession] = ServerSession
        if state.unavailable is not None:
            session_class = _UnloadedSession
        elif scope["type"] == "websocket":
            session_class = _WebSocketSession
        scope["session"] = session_class(data, state=state)

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                if off_loop:
                    await anyio.to_thread.run_sync(
                        self._save, scope["session"], state, headers, request_path
                    )
                else:
                    self._save(scope["session"], state, headers, request_path)
            await send(message)

        await self.app(scope, receive, send_wrapper)

    def _save(
        self, session: Any, state: SessionState, headers: MutableHeaders, request_path: str
    ) -> None:
        """Writes the session if it changed, and sets or deletes the cookie as needed."""
        app_cookie, app_value = self._app_cookie(headers, request_path)
        if app_cookie is _AppCookie.DELETED:
            # The app logged out by deleting the cookie, as with Starlette's cookie sessions:
            # the stored session goes too, so a copy of the token opens nothing.
            state.destroy()
            self._sent.forget(state.cookie_token)
            _vary_on_cookie(headers)
            return
        if isinstance(session, ServerSession):
            accessed = session.accessed
        else:
            accessed = True  # the app replaced scope["session"] with a dict of its own
        if state.unavailable is not None:
            # Not loaded: nothing to write, and the client keeps its cookie.
            if accessed:
                _vary_on_cookie(headers)
            return
        if self.expired_at_once:
            # Starlette's max_age <= 0: the session is sent in an expired cookie and kept
            # nowhere, so the next request starts afresh.
            state.destroy()
            if accessed:
                _vary_on_cookie(headers)
                if session and app_cookie is _AppCookie.NONE:
                    self._set_cookie(headers, f"null; Max-Age={self.max_age}")
            return
        if accessed:
            _vary_on_cookie(headers)
            outcome, _ = state.save(dict(session))
        elif state.revoked:
            outcome = Outcome.REVOKED
        else:
            outcome = Outcome.NONE if state.token is None else Outcome.UNCHANGED

        if app_cookie is _AppCookie.SET:
            # The app sends the cookie itself (a token of ours with another Max-Age, a blank
            # value): its Set-Cookie stands and none is added. A session this request moved to
            # a token the app did not send could never be reached again: it goes.
            if state.token_changed and app_value != state.token:
                state.destroy()
            return
        # A logout (``clear()``) deletes the cookie even where the session was gone already
        # (timed out, logged out elsewhere, before or during this request). Only a logout: a
        # request that merely finds its session gone may be racing a login that moved it,
        # whose new cookie this must not delete.
        logout = state.cleared and not session and state.cookie_token is not None
        if outcome is Outcome.NONE:
            if logout:
                self._set_cookie(headers, "null; expires=Thu, 01 Jan 1970 00:00:00 GMT")
            return
        if outcome in (Outcome.DESTROYED, Outcome.REVOKED):
            self._sent.forget(state.cookie_token)
            # Revoked, without a logout: no Set-Cookie. The browser may hold a newer token by
            # now (another request of this session logged in and moved it to a new id), and
            # the dead one is refused anyway.
            if (outcome is Outcome.DESTROYED or logout) and state.cookie_token is not None:
                self._set_cookie(headers, "null; expires=Thu, 01 Jan 1970 00:00:00 GMT")
            return
        token = state.token
        assert token is not None
        now = time.monotonic()
        if not state.token_changed:
            if self.refresh_interval is None or not self._sent.due(token, now):
                return
            # The cookie is due for a refresh: the session must still be there (no data
            # is written for it).
            if outcome is Outcome.UNCHANGED and not state.touch():
                self._sent.forget(token)  # revoked: no Set-Cookie, as above
                return
        else:
            self._sent.forget(state.cookie_token)
        max_age = f"; Max-Age={self.max_age}" if self.max_age is not None else ""
        self._set_cookie(headers, f"{token}{max_age}")
        if self.refresh_interval is not None:
            self._sent.sent(token, now)

    def _app_cookie(
        self, headers: MutableHeaders, request_path: str
    ) -> tuple[_AppCookie, Optional[str]]:
        """What the app's own ``Set-Cookie`` headers do with the session cookie, and the value
        they give it: one of the same name, Path and Domain (the last such header decides, as
        in a browser). Attributes are read as RFC 6265 (5.2) says browsers read them."""
        found: tuple[_AppCookie, Optional[str]] = (_AppCookie.NONE, None)
        for header in headers.getlist("set-cookie"):
            pair, *attributes = header.split(";")
            name, equals, value = pair.partition("=")
            if not equals or name.strip(" \t") != self.cookie_name:
                continue
            max_age: Optional[int] = None
            expires: Optional[float] = None
            path = domain = None
            for attribute in attributes:
                key, _, given = attribute.partition("=")
                key, given = key.strip(" \t").lower(), given.strip(" \t")
                if key == "max-age" and re.fullmatch(r"-?[0-9]{1,4000}", given):
                    max_age = int(given)
                elif key == "expires" and (when := _cookie_date(given)) is not None:
                    expires = when
                elif key == "path" and given.startswith("/"):
                    path = given
                elif key == "domain" and given:
                    domain = given
            if (path or _default_path(request_path)) != self.cookie_path:
                continue  # another cookie of the same name, which the browser keeps apart
            if _domain_key(domain) != self.cookie_domain:
                continue
            if max_age is not None:
                expired = max_age <= 0
            else:
                expired = expires is not None and expires <= time.time()
            found = (_AppCookie.DELETED if expired else _AppCookie.SET, value.strip(" \t\""))
        return found

    def _set_cookie(self, headers: MutableHeaders, value: str) -> None:
        headers.append("Set-Cookie", f"{self.cookie_name}={value}{self.cookie_flags}")
        _vary_on_cookie(headers)


class _AppCookie(enum.Enum):
    """What the app's own ``Set-Cookie`` headers do with the session cookie."""

    NONE = enum.auto()
    SET = enum.auto()
    DELETED = enum.auto()


def _domain_key(domain: Optional[str]) -> Optional[str]:
    """A cookie's Domain as browsers compare it: no leading dot, any case; None for none."""
    key = (domain or "").strip().lstrip(".").lower()
    return key or None


def _default_path(request_path: str) -> str:
    """The Path a browser gives a cookie set without one (RFC 6265, 5.1.4)."""
    if not request_path.startswith("/") or request_path.count("/") == 1:
        return "/"
    return request_path[: request_path.rindex("/")]


def _cookie_date(text: str) -> Optional[float]:
    """An ``Expires`` date as a Unix time (UTC, zone or not), or None if it cannot be read."""
    date = email.utils.parsedate_tz(text)
    if date is None:
        return None
    try:
        return calendar.timegm(date[:6] + (0, 1, 0)) - (date[9] or 0)
    except (OverflowError, ValueError):
        return None


def _vary_on_cookie(headers: MutableHeaders) -> None:
    """Adds ``Cookie`` to ``Vary`` unless it is there already."""
    if "cookie" not in (v.strip().lower() for v in headers.get("vary", "").split(",")):
        headers.add_vary_header("Cookie")
