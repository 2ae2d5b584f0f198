"""ASGI middleware (Starlette, FastAPI): ``request.session`` kept server-side.

.. code-block:: python

    from fastapi import FastAPI
    from coatcheck import Store
    from coatcheck.asgi import SessionMiddleware

    app = FastAPI()
    app.add_middleware(SessionMiddleware, store=Store("a long random secret", idle_timeout=1800))

It is used like Starlette's own ``SessionMiddleware``, but the cookie holds only a signed token
and the data stays in the store. A response sends ``Set-Cookie`` only when the session changed
(compared by its serialized form, so changes inside nested values count too); emptying the
session destroys it and deletes the cookie. Call ``request.session.regenerate()`` at login.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coatcheck._native import NotFoundError, Store
from coatcheck.serializers import JSONSerializer, Serializer, dump_bytes, load_dict

__all__ = ["ServerSession", "SessionMiddleware"]


class ServerSession(dict):  # type: ignore[type-arg]
    """The session dict of one request, with the token it was stored under."""

    def __init__(
        self,
        initial: Optional[dict[str, Any]] = None,
        *,
        store: Store,
        token: Optional[str] = None,
    ) -> None:
        super().__init__(initial or {})
        self.store = store
        #: The signed token of the stored session; ``None`` until it is first saved.
        self.token = token
        self.regenerated = False

    def regenerate(self) -> None:
        """Moves the session to a new id, keeping its data (call it at login)."""
        if self.token is not None:
            self.token = self.store.regenerate(self.token)
        self.regenerated = True


class SessionMiddleware:
    """Server-side sessions for any ASGI app, with Starlette's ``SessionMiddleware`` options.

    Args:
        app: The wrapped ASGI app.
        store: Where sessions live.
        cookie_name: The cookie that carries the token.
        max_age: Seconds; the cookie's ``Max-Age`` and the session's idle timeout in the
            store. ``None`` gives a browser-session cookie and the store's own idle timeout.
        path: The cookie's path.
        same_site: The cookie's ``SameSite``.
        https_only: Adds ``Secure`` to the cookie.
        domain: The cookie's domain.
        serializer: How session dicts become bytes; JSON by default.
    """

    def __init__(
        self,
        app: ASGIApp,
        store: Store,
        cookie_name: str = "session",
        max_age: Optional[int] = 14 * 24 * 60 * 60,
        path: str = "/",
        same_site: Literal["lax", "strict", "none"] = "lax",
        https_only: bool = False,
        domain: Optional[str] = None,
        serializer: Optional[Serializer] = None,
    ) -> None:
        self.app = app
        self.store = store
        self.cookie_name = cookie_name
        self.max_age = max_age
        self.serializer: Serializer = serializer or JSONSerializer()
        flags = f"; path={path}; httponly; samesite={same_site}"
        if https_only:
            flags += "; secure"
        if domain:
            flags += f"; domain={domain}"
        self.cookie_flags = flags

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        token = HTTPConnection(scope).cookies.get(self.cookie_name)
        session: Optional[ServerSession] = None
        loaded: Optional[bytes] = None
        if token:
            found = self.store.get(token)
            data = load_dict(self.serializer, found) if found is not None else None
            if data is not None:
                session = ServerSession(data, store=self.store, token=token)
                loaded = found
        if session is None:
            session = ServerSession(store=self.store)
        scope["session"] = session

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                cookie = self._save(scope["session"], loaded)
                if cookie is not None:
                    headers = MutableHeaders(scope=message)
                    headers.append("Set-Cookie", cookie)
            await send(message)

        await self.app(scope, receive, send_wrapper)

    def _save(self, session: Any, loaded: Optional[bytes]) -> Optional[str]:
        """Writes the session if it changed; the ``Set-Cookie`` value to send, if any."""
        if not isinstance(session, ServerSession):
            # The app replaced scope["session"] with a plain dict: adopt it.
            session = ServerSession(session, store=self.store, token=None)
        if not session:
            if session.token is not None and loaded is not None:
                self.store.destroy(session.token)
                return f"{self.cookie_name}=null{self.cookie_flags}; expires=Thu, 01 Jan 1970 00:00:00 GMT"
            return None
        data = dump_bytes(self.serializer, dict(session))
        if data == loaded and not session.regenerated:
            return None  # nothing changed: no write, no Set-Cookie
        token = session.token
        if token is not None:
            try:
                self.store.set(token, data, self.max_age)
            except NotFoundError:
                token = None
        if token is None:
            token = self.store.create(data, self.max_age)
        session.token = token
        max_age = f"; Max-Age={self.max_age}" if self.max_age else ""
        return f"{self.cookie_name}={token}{max_age}{self.cookie_flags}"
