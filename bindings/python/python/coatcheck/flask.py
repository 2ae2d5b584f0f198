"""Flask backend: ``flask.session`` kept server-side in a `coatcheck.Store`.

.. code-block:: python

    from flask import Flask, session
    from coatcheck import Store
    from coatcheck.flask import CoatcheckSession

    app = Flask(__name__)
    store = Store("a long random secret", idle_timeout=30 * 60)
    CoatcheckSession(app, store)

The cookie (``SESSION_COOKIE_NAME``, ``session`` by default) holds only a signed token; the
data stays in the store. Every ``SESSION_COOKIE_*`` setting applies to that cookie.
``PERMANENT_SESSION_LIFETIME`` is the session's idle timeout in the store, slid by every
request that reads the session. A request that changes nothing writes nothing and sends no
``Set-Cookie``. Call ``session.regenerate()`` at login to move the session to a new id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from flask.sessions import SecureCookieSession, SessionInterface

from coatcheck._native import NotFoundError, Store
from coatcheck.serializers import JSONSerializer, Serializer, dump_bytes, load_dict

if TYPE_CHECKING:
    from flask import Flask
    from flask.wrappers import Request, Response

__all__ = ["CoatcheckSession", "CoatcheckSessionInterface", "ServerSideSession"]


class ServerSideSession(SecureCookieSession):
    """The session dict of one request. Tracks changes like Flask's own session."""

    def __init__(
        self,
        initial: Optional[dict[str, Any]] = None,
        *,
        store: Optional[Store] = None,
        token: Optional[str] = None,
        version: Optional[int] = None,
    ) -> None:
        super().__init__(initial)
        self.store = store
        #: The signed token of the stored session; ``None`` until the session is first saved.
        self.token = token
        #: The stored version this request read, if any.
        self.version = version
        self.new = token is None

    def regenerate(self) -> None:
        """Moves the session to a new id, keeping its data (call it at login).

        The old token stops working at once; the response carries the new one.
        """
        if self.store is not None and self.token is not None:
            self.token = self.store.regenerate(self.token)
        self.modified = True
        self.accessed = True


class CoatcheckSessionInterface(SessionInterface):
    """A Flask ``SessionInterface`` backed by a `coatcheck.Store`."""

    session_class = ServerSideSession

    def __init__(self, store: Store, serializer: Optional[Serializer] = None) -> None:
        self.store = store
        self.serializer: Serializer = serializer or JSONSerializer()

    def open_session(self, app: Flask, request: Request) -> ServerSideSession:
        token = request.cookies.get(self.get_cookie_name(app))
        if token:
            found = self.store.get_with_version(token)
            if found is not None:
                data = load_dict(self.serializer, found[0])
                if data is not None:
                    return self.session_class(
                        data, store=self.store, token=token, version=found[1]
                    )
        return self.session_class(store=self.store)

    def save_session(  # type: ignore[override]
        self, app: Flask, session: ServerSideSession, response: Response
    ) -> None:
        name = self.get_cookie_name(app)
        # The SESSION_COOKIE_* attributes, the same for setting and for deleting the cookie.
        cookie: dict[str, Any] = {
            "domain": self.get_cookie_domain(app),
            "path": self.get_cookie_path(app),
            "secure": self.get_cookie_secure(app),
            "partitioned": self.get_cookie_partitioned(app),
            "samesite": self.get_cookie_samesite(app),
            "httponly": self.get_cookie_httponly(app),
        }

        if session.accessed:
            response.vary.add("Cookie")

        if not session.modified:
            return  # nothing changed: no write, and no Set-Cookie

        if not session:
            # Emptied (logout): the stored session goes, and so does the cookie.
            if session.token is not None:
                self.store.destroy(session.token)
                session.token = None
                response.delete_cookie(name, **cookie)
                response.vary.add("Cookie")
            return

        ttl = app.permanent_session_lifetime.total_seconds()
        data = dump_bytes(self.serializer, dict(session))
        token = session.token
        if token is not None:
            try:
                session.version = self.store.set(token, data, ttl)
            except NotFoundError:
                token = None  # expired or destroyed meanwhile: store it afresh
        if token is None:
            token = self.store.create(data, ttl)
            session.version = 1
        session.token = token
        response.set_cookie(
            name, token, expires=self.get_expiration_time(app, session), **cookie
        )
        response.vary.add("Cookie")


class CoatcheckSession:
    """Installs coatcheck as the session interface of a Flask app.

    Args:
        app: The app, or ``None`` to call `init_app` later.
        store: The store; by default one is built from ``app.secret_key`` with
            ``PERMANENT_SESSION_LIFETIME`` as its idle timeout.
        serializer: How session dicts become bytes; JSON by default.
    """

    def __init__(
        self,
        app: Optional[Flask] = None,
        store: Optional[Store] = None,
        *,
        serializer: Optional[Serializer] = None,
    ) -> None:
        self.store = store
        self.serializer = serializer
        self.interface: Optional[CoatcheckSessionInterface] = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Makes ``app`` keep its sessions in the store."""
        store = self.store
        if store is None:
            if not app.secret_key:
                raise RuntimeError("CoatcheckSession needs a store or app.secret_key")
            store = Store(
                app.secret_key,
                idle_timeout=app.permanent_session_lifetime.total_seconds(),
            )
            self.store = store
        self.interface = CoatcheckSessionInterface(store, self.serializer)
        app.session_interface = self.interface
