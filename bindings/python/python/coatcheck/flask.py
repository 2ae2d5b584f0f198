"""Flask backend: ``flask.session`` kept server-side in a `coatcheck.Store`.

.. code-block:: python

    from flask import Flask, session
    from coatcheck import Store
    from coatcheck.flask import CoatcheckSession

    app = Flask(__name__)
    store = Store("a long random secret", idle_timeout=30 * 60)
    CoatcheckSession(app, store, owner=lambda data: data.get("user_id"))

The cookie (``SESSION_COOKIE_NAME``, ``session`` by default) holds only a signed token; the
data stays in the store. Every ``SESSION_COOKIE_*`` setting applies to that cookie. Values go
through Flask's tagged JSON, so the session stores what Flask's own session stores (tuples,
bytes, ``Markup``, ``UUID``, ``datetime``...).

Lifetimes, one rule: the store's ``idle_timeout`` is the idle timeout of the sessions, its
``absolute_timeout`` their absolute timeout, and an active user's cookie never expires while
the store still holds the session. A permanent session's cookie expires
``idle_timeout`` after the last request and is re-sent on every request while
``SESSION_REFRESH_EACH_REQUEST`` is on (the default; the refresh writes no data); any other
session's cookie lasts until the browser closes. ``PERMANENT_SESSION_LIFETIME`` becomes the
idle timeout when `CoatcheckSession` builds the store; set to something else than the store's
``idle_timeout`` when you pass a store, it is an error.

A request that changes nothing writes nothing. A request that changes the session writes it
with a compare-and-set; if another request of the same session wrote first, this request's
changes are merged into the newer data (keys it did not touch keep the other request's
values). A session that was destroyed meanwhile (logout in another tab, ``destroy_owner``, a
timeout) is never re-created, and the response leaves the cookie alone: the browser may hold a
newer token by then (a login that moved the session to a new id), and the dead one is refused.

Call `regenerate` at login to move the session to a new id; with Flask-Login installed,
``login_user`` does it for you. Flask's own idiom, ``session.clear()`` and then the new data,
gives a new id too: data set after ``clear()`` is stored as a new session, and the old one is
destroyed.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Optional

from flask import session as _flask_session
from flask.json.tag import TaggedJSONSerializer
from flask.sessions import SecureCookieSession, SessionInterface, SessionMixin

from coatcheck._native import Store
from coatcheck._session_state import (
    store_options,
    Outcome,
    OwnerHook,
    SessionBackend,
    SessionState,
    StoredSession,
    raise_on_use,
)
from coatcheck.serializers import Serializer

if TYPE_CHECKING:
    from flask import Flask
    from flask.wrappers import Request, Response

__all__ = [
    "CoatcheckSession",
    "CoatcheckSessionInterface",
    "FlaskSessionSerializer",
    "ServerSideSession",
    "current_session",
    "regenerate",
]

# Flask's default PERMANENT_SESSION_LIFETIME: left alone, it says nothing about the store.
_FLASK_DEFAULT_LIFETIME = datetime.timedelta(days=31)


class FlaskSessionSerializer:
    """Flask's tagged JSON (what Flask's own session stores), as bytes. The Flask default.

    Args:
        tagged: A ``flask.json.tag.TaggedJSONSerializer`` with tags of your own registered;
            a new one by default.
    """

    def __init__(self, tagged: Optional[TaggedJSONSerializer] = None) -> None:
        self.tagged = tagged if tagged is not None else TaggedJSONSerializer()

    def dumps(self, obj: Any) -> bytes:
        """Tags and encodes ``obj`` as UTF-8 JSON."""
        return self.tagged.dumps(obj).encode("utf-8")

    def loads(self, data: bytes) -> Any:
        """Decodes and untags UTF-8 JSON."""
        return self.tagged.loads(data.decode("utf-8"))


class ServerSideSession(StoredSession, SecureCookieSession):
    """The session dict of one request. Tracks changes like Flask's own session."""

    def __init__(
        self, initial: Optional[Mapping[str, Any]] = None, *, state: SessionState
    ) -> None:
        super().__init__(initial)
        #: This request's token, loaded version and loaded bytes.
        self.state = state
        #: Whether the session was not stored when the request began.
        self.new = state.token is None

    @property
    def version(self) -> Optional[int]:
        """The stored version this request last read or wrote, if known."""
        return self.state.version

    def clear(self) -> None:
        """Empties the session; data set afterwards is stored under a new id."""
        self.state.cleared = True
        super().clear()


@raise_on_use
class _UnloadedSession(ServerSideSession):
    """The session of a request whose session could not be loaded (Redis unreachable): every
    use raises `UnavailableError` (see `SessionBackend.open_eagerly`)."""


def current_session() -> ServerSideSession:
    """``flask.session``, typed as what coatcheck keeps (for ``.token``, ``.regenerate()``).

    Raises:
        RuntimeError: The app's session interface is not coatcheck's.
    """
    # The object behind the ``flask.session`` proxy (typed as a plain SessionMixin).
    session = getattr(_flask_session, "_get_current_object")()
    if not isinstance(session, ServerSideSession):
        raise RuntimeError("this app's sessions are not kept by coatcheck (CoatcheckSession)")
    return session


def regenerate() -> None:
    """Moves the current session to a new id, keeping its data: call it at login."""
    current_session().regenerate()


class CoatcheckSessionInterface(SessionInterface):
    """A Flask ``SessionInterface`` backed by a `coatcheck.Store`."""

    session_class = ServerSideSession

    def __init__(
        self,
        store: Store,
        serializer: Optional[Serializer] = None,
        owner: Optional[OwnerHook] = None,
    ) -> None:
        self.store = store
        self.serializer: Serializer = serializer or FlaskSessionSerializer()
        # A session holding nothing but the permanent flag (`session.permanent = True` in a
        # before_request) is an empty one, as in Flask-Session: else every request without a
        # cookie (a bot, a health check) would store one for PERMANENT_SESSION_LIFETIME.
        self.backend = SessionBackend(store, self.serializer, owner, frozenset({"_permanent"}))

    def open_session(self, app: Flask, request: Request) -> ServerSideSession:
        data, state = self.backend.open_eagerly(request.cookies.get(self.get_cookie_name(app)))
        if state.unavailable is not None:
            return _UnloadedSession(state=state)
        if state.token is None and app.config.get("SESSION_PERMANENT"):
            # Flask-Session's setting: new sessions are permanent. Not a change of the session:
            # a session holding nothing else is still not stored.
            data["_permanent"] = True
        return self.session_class(data, state=state)

    def regenerate(self, session: SessionMixin) -> None:
        """Flask-Session's ``app.session_interface.regenerate(session)``: a new id, the data
        kept (see `ServerSideSession.regenerate`)."""
        if isinstance(session, ServerSideSession):
            session.regenerate()

    def get_expiration_time(
        self, app: Flask, session: SessionMixin
    ) -> Optional[datetime.datetime]:
        """A permanent session's cookie expires an idle timeout of the store from now."""
        if session.permanent:
            now = datetime.datetime.now(datetime.timezone.utc)
            return now + datetime.timedelta(seconds=self.store.idle_timeout)
        return None

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if not isinstance(session, ServerSideSession):
            return  # not opened by this interface: nothing of ours to save
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
        # Read before anything below reads the session (SecureCookieSession.get sets it).
        accessed, modified = session.accessed, session.modified
        if accessed:
            response.vary.add("Cookie")
        if session.state.unavailable is not None:
            return  # not loaded: nothing to write, and the client keeps its cookie

        state = session.state
        if accessed or modified:
            outcome, _ = state.save(dict(session))
        elif state.revoked:
            outcome = Outcome.REVOKED
        else:
            # flask.session was never used: the session cannot have changed.
            outcome = Outcome.NONE if state.token is None else Outcome.UNCHANGED

        if outcome is Outcome.UNCHANGED and not state.token_changed:
            permanent = bool(dict.get(session, "_permanent", False))
            if not (modified or (permanent and app.config["SESSION_REFRESH_EACH_REQUEST"])):
                return  # no write, and no Set-Cookie
            # Flask's rule for sending the cookie (a permanent one is refreshed on every
            # request, so it never expires before the session). No data is written: the touch
            # finds out whether the session is still there.
            if not state.touch():
                outcome = Outcome.REVOKED

        # Revoked: no Set-Cookie. The browser may hold a newer token by now (a second click on
        # a login form, whose first request moved the session to a new id), and the dead one
        # it may still send is refused anyway. Django and express-session leave it too.
        if outcome in (Outcome.NONE, Outcome.REVOKED):
            return
        if outcome is Outcome.DESTROYED:
            if state.cookie_token is not None:
                response.delete_cookie(name, **cookie)
                response.vary.add("Cookie")
            return
        assert state.token is not None
        response.set_cookie(
            name, state.token, expires=self.get_expiration_time(app, session), **cookie
        )
        response.vary.add("Cookie")


def _regenerate_at_login(sender: Any, **extra: Any) -> None:
    """Flask-Login's ``user_logged_in``: a new session id at login, against fixation."""
    from flask import session

    if isinstance(session, ServerSideSession):
        session.regenerate()


class CoatcheckSession:
    """Installs coatcheck as the session interface of a Flask app.

    Args:
        app: The app, or ``None`` to call `init_app` later.
        store: The store; by default one is built from ``app.secret_key`` (and
            ``SECRET_KEY_FALLBACKS``, which still verify) with ``PERMANENT_SESSION_LIFETIME``
            as its idle timeout.
        serializer: How session dicts become bytes; Flask's tagged JSON by default.
        owner: Computes a session's owner (a user id: ``str``, ``int`` or ``None``) from its
            data, e.g. ``lambda data: data.get("user_id")``. Every session written is filed
            under it, so ``store.sessions_of(user)`` lists a user's sessions and
            ``store.destroy_owner(user)`` logs them all out.
    """

    def __init__(
        self,
        app: Optional[Flask] = None,
        store: Optional[Store] = None,
        *,
        serializer: Optional[Serializer] = None,
        owner: Optional[OwnerHook] = None,
    ) -> None:
        self.store = store
        self.serializer = serializer
        self.owner = owner
        self.interface: Optional[CoatcheckSessionInterface] = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Makes ``app`` keep its sessions in the store.

        Raises:
            ValueError: ``PERMANENT_SESSION_LIFETIME`` was set, to something else than the
                idle timeout of the store passed in.
        """
        lifetime = app.permanent_session_lifetime
        store = self.store
        if store is None:
            if not app.secret_key:
                raise RuntimeError("CoatcheckSession needs a store or app.secret_key")
            # The first secret signs; the fallbacks (Flask >= 3.1) still verify.
            secrets = [app.secret_key, *(app.config.get("SECRET_KEY_FALLBACKS") or [])]
            store = Store(
                secrets,
                idle_timeout=lifetime.total_seconds(),
                **store_options(app.config.get),
            )
            self.store = store
        elif (
            lifetime != _FLASK_DEFAULT_LIFETIME
            and abs(lifetime.total_seconds() - store.idle_timeout) >= 0.001
        ):
            raise ValueError(
                f"PERMANENT_SESSION_LIFETIME is {lifetime.total_seconds():g} s but the store's"
                f" idle_timeout is {store.idle_timeout:g} s: the store's idle timeout is the"
                " sessions' lifetime; remove the setting or make them equal"
            )
        self.interface = CoatcheckSessionInterface(store, self.serializer, self.owner)
        app.session_interface = self.interface
        try:
            from flask_login import user_logged_in
        except ImportError:
            return
        user_logged_in.connect(_regenerate_at_login, app)
