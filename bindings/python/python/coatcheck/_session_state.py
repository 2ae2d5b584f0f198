"""The one load-and-save path of the Flask, ASGI and Django backends (private).

A backend keeps one `SessionState` per request. `SessionBackend.open` reads the session of a
cookie's token with its version and remembers the raw bytes it read; `SessionState.save` then
decides, from the session dict the request ends with:

- a new session with data is created; an empty new one is not stored at all;
- a loaded session that was emptied is destroyed (unless the backend keeps empty sessions,
  as Django does);
- a session whose serialized form equals the bytes loaded is not written;
- a changed session is written with ``set_if_version``. If another request of the same
  session wrote first, this request's own changes, relative to what it loaded, are applied
  to the newer data (top-level keys set or deleted; keys it did not touch keep the other
  request's value; the same key changed by both: the last writer wins) and the write is
  retried;
- a session that is gone when it is written or reloaded was revoked (logout in another tab,
  ``destroy_owner``, a timeout): revocation is final, and nothing is ever re-created from
  this request's data.

An owner hook, when the backend has one, files every session it writes or creates under the
owner it computes from the data (``store.set_owner``), so that ``store.sessions_of`` and
``store.destroy_owner`` find a user's sessions without the app knowing their tokens.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Mapping
from typing import Any, Callable, Optional, TypeVar, Union

from coatcheck._native import ConflictError, NotFoundError, Store, UnavailableError
from coatcheck.serializers import Serializer, dump_bytes, load_dict

__all__ = [
    "STORE_SETTINGS",
    "Outcome",
    "OwnerHook",
    "SessionBackend",
    "SessionState",
    "StoredSession",
    "owner_key",
    "raise_on_use",
]

#: Computes the owner (a user id) of a session from its data: a ``str``, an ``int`` or ``None``.
OwnerHook = Callable[[Mapping[str, Any]], Union[str, int, None]]

#: How many times a write that lost to another request of the same session is merged and
#: retried before `ConflictError` is raised.
MAX_RETRIES = 10

_Seconds = Union[int, float]


def owner_key(key: str) -> OwnerHook:
    """An owner hook that reads ``key`` from the session."""

    def owner(data: Mapping[str, Any]) -> Union[str, int, None]:
        value = data.get(key)
        return value if value is None or isinstance(value, (str, int)) else str(value)

    return owner


#: The Store arguments a framework setting may carry, by setting name (Flask ``app.config`` keys,
#: Django ``settings`` attributes): the adapters pass them on when they build the store.
STORE_SETTINGS = {
    "COATCHECK_ABSOLUTE_TIMEOUT": "absolute_timeout",
    "COATCHECK_MAX_SESSIONS": "max_sessions",
    "COATCHECK_MAX_BYTES": "max_bytes",
    "COATCHECK_MAX_SESSION_BYTES": "max_session_bytes",
    "COATCHECK_REDIS_URL": "redis_url",
    "COATCHECK_REDIS_KEY_PREFIX": "redis_key_prefix",
    "COATCHECK_REDIS_TIMEOUT": "redis_timeout",
    "COATCHECK_REDIS_WHEN_DOWN": "redis_when_down",
    "COATCHECK_REDIS_STRICT": "redis_strict",
    "COATCHECK_PERSIST_PATH": "persist_path",
    "COATCHECK_PERSIST_FSYNC": "persist_fsync",
}


def store_options(setting: Callable[[str], Any]) -> dict[str, Any]:
    """The arguments of `Store` (all but the secret and the idle timeout) from the framework
    settings of `STORE_SETTINGS` that are set (not None). A duration may be a ``timedelta``,
    as Flask's own ``PERMANENT_SESSION_LIFETIME`` often is."""
    options = {}
    for name, argument in STORE_SETTINGS.items():
        value = setting(name)
        if isinstance(value, datetime.timedelta):
            value = value.total_seconds()
        if value is not None:
            options[argument] = value
    return options


class Outcome(enum.Enum):
    """What `SessionState.save` did, which decides the cookie."""

    #: No session: nothing stored, no cookie.
    NONE = "none"
    #: A live session, not written (its data did not change).
    UNCHANGED = "unchanged"
    #: The changed data was written under the same token.
    WRITTEN = "written"
    #: A new session was stored under a new token.
    CREATED = "created"
    #: The session was emptied and destroyed: delete the cookie.
    DESTROYED = "destroyed"
    #: The session was gone when this request saved it: no Set-Cookie (the browser may hold
    #: a newer token by then, and the dead one is refused anyway); nothing was
    #: re-created.
    REVOKED = "revoked"


class SessionBackend:
    """What a framework backend was set up with: the store, the serializer, the owner hook."""

    def __init__(
        self,
        store: Store,
        serializer: Serializer,
        owner: Optional[OwnerHook] = None,
        flag_keys: frozenset[str] = frozenset(),
    ) -> None:
        self.store = store
        self.serializer = serializer
        self.owner = owner
        #: Keys that on their own hold nothing worth storing (Flask's ``_permanent``): a
        #: session with no other key is stored as an empty one would be, that is, not at all.
        self.flag_keys = flag_keys

    def holds_nothing(self, data: Mapping[str, Any]) -> bool:
        """Whether ``data`` is empty but for flag keys."""
        return data.keys() <= self.flag_keys

    def open(self, token: Optional[str]) -> tuple[dict[str, Any], SessionState]:
        """The session of ``token`` and its state; an empty new session if there is none.

        Reading slides the session's idle deadline.
        """
        state = SessionState(self, cookie_token=token or None)
        if token:
            found = self.store.get_with_version(token)
            if found is not None:
                data = load_dict(self.serializer, found[0])
                if data is not None:
                    state.token, state.raw, state.version = self._resigned(token), *found
                    return data, state
        return {}, state

    def open_eagerly(self, token: Optional[str]) -> tuple[dict[str, Any], SessionState]:
        """`open` for a framework that loads the session before the app runs (Flask, ASGI),
        whether the request uses it or not. An `UnavailableError` (Redis unreachable) is kept
        in the state, for the session dict to raise where the app uses it (see
        `raise_on_use`): a request that never does (a health check, a static file) is served
        while Redis is down, and one that does meets the error in the app's own handlers, as
        with Django's sessions, which load on first use."""
        try:
            return self.open(token)
        except UnavailableError as error:
            state = SessionState(self, cookie_token=token or None)
            state.unavailable = error
            return {}, state

    def _resigned(self, token: str) -> str:
        """``token``, which the store just verified, signed with the current secret. One that
        verified with a fallback secret gets a new signature (the session id stays), which the
        client is then sent (`SessionState.token_changed`): else every session from before a
        rotation would be logged out once the fallback is dropped, its users' activity
        notwithstanding. Flask re-signs its cookie each time it sets it. The id is what comes
        before the token's last dot (``<id>.<signature>``), so one signature is computed."""
        return self.store.sign(token.rpartition(".")[0])

    def owner_of(self, data: Mapping[str, Any]) -> Optional[str]:
        """The owner the hook computes for ``data``, as the store takes it."""
        if self.owner is None:
            return None
        owner = self.owner(data)
        if owner is None or isinstance(owner, str):
            return owner
        # bool is a subclass of int, but True is nobody's user id.
        if isinstance(owner, int) and not isinstance(owner, bool):
            return str(owner)
        raise TypeError(
            f"the owner hook must return a str, an int or None, not {type(owner).__name__}"
            f" ({owner!r})"
        )

    def dump(self, data: Mapping[str, Any]) -> bytes:
        return dump_bytes(self.serializer, dict(data))


class SessionState:
    """One request's view of its session: the token, and the version and bytes it loaded."""

    __slots__ = (
        "backend",
        "cookie_token",
        "token",
        "version",
        "raw",
        "revoked",
        "cleared",
        "unavailable",
    )

    def __init__(self, backend: SessionBackend, cookie_token: Optional[str] = None) -> None:
        self.backend = backend
        #: The token the client sent, if any.
        self.cookie_token = cookie_token
        #: The token of the stored session; ``None`` while the session is new.
        self.token: Optional[str] = None
        #: The version of the stored data this request last read or wrote; ``None`` if unknown.
        self.version: Optional[int] = None
        #: The stored bytes this request last read or wrote.
        self.raw: Optional[bytes] = None
        #: Set when the session turned out to be gone (revoked) before this request saved.
        self.revoked = False
        #: Set when the request called the session dict's ``clear()``.
        self.cleared = False
        #: The error that kept the session from loading (see `SessionBackend.open_eagerly`):
        #: nothing is known of it, so nothing is written for it.
        self.unavailable: Optional[UnavailableError] = None

    @property
    def store(self) -> Store:
        return self.backend.store

    @property
    def token_changed(self) -> bool:
        """Whether the client must be sent `token` (new or regenerated)."""
        return self.token is not None and self.token != self.cookie_token

    def regenerate(self) -> None:
        """Moves the stored session to a new id at once (at login, against fixation).

        A session not stored yet gets a new id when it is first saved anyway. A session that
        is gone meanwhile is revoked.
        """
        if self.token is None:
            return
        new = self.store.regenerate(self.token)
        if new is None:
            self._revoke()
            return
        self.token = new
        # The move raised the version: read it back so that the next save does not conflict,
        # unless another request wrote since this one loaded: then the next save merges.
        found = self.store.get_with_version(new)
        if found is None:
            self._revoke()
            return
        if self.raw is None or found[0] == self.raw:
            self.raw, self.version = found
        else:
            self.version = None

    def touch(self, ttl: Optional[_Seconds] = None) -> bool:
        """Slides the idle deadline without writing data; ``False`` (revoked) if gone."""
        if self.token is None or self.revoked:
            return False
        if not self.store.touch(self.token, ttl):
            self._revoke()
            return False
        return True

    def destroy(self) -> None:
        """Destroys the stored session, if any; the state becomes a new session's."""
        if self.token is not None:
            self.store.destroy(self.token)
        elif self.unavailable is not None and self.cookie_token is not None:
            # The session could not be loaded, but a logout must still end whatever the
            # client's token names (or fail saying so).
            self.store.destroy(self.cookie_token)
        self.token = self.raw = self.version = None

    def create(self, data: Mapping[str, Any], ttl: Optional[_Seconds] = None) -> str:
        """Stores ``data`` as a new session (even an empty one) and returns its token."""
        owner = self.backend.owner_of(data)  # a bad owner fails before anything is stored
        raw = self.backend.dump(data)
        token = self.store.create(raw, ttl)
        if owner is not None:
            try:
                self.store.set_owner(token, owner)
            except BaseException:
                # An owner the store refuses (empty, too long): no session nobody can reach,
                # outside its owner's index.
                self.store.destroy(token)
                raise
        self.token, self.raw, self.version = token, raw, None
        self.revoked = False
        return token

    def save(
        self,
        data: dict[str, Any],
        *,
        ttl: Optional[_Seconds] = None,
        destroy_empty: bool = True,
    ) -> tuple[Outcome, dict[str, Any]]:
        """Saves the session dict the request ends with; what was done, and the data stored.

        The data stored differs from ``data`` only when another request of the same session
        wrote first and this request's changes were merged into its data.
        """
        if self.revoked:
            return Outcome.REVOKED, data
        if self.cleared and self.token is not None and not self.backend.holds_nothing(data):
            return self._replace(data, ttl)
        if self.token is None:
            if self.backend.holds_nothing(data):
                return Outcome.NONE, data
            self.create(data, ttl)
            return Outcome.CREATED, data
        if self.backend.holds_nothing(data) and destroy_empty:
            # Emptied: only what this request loaded goes; keys another request added since
            # stay, and the session is destroyed only if nothing is left (see `_write`).
            return self._write(data, b"", ttl, destroy_empty, version=None)
        raw = dump_bytes(self.backend.serializer, data)
        if raw == self.raw:
            return Outcome.UNCHANGED, data
        if self.version is not None and self.backend.owner is None:
            # The common case, nobody else wrote since this request read: one compare-and-set
            # (`_write` does the same first, with the owner hook, and then merges).
            try:
                self.version = self.store.set_if_version(self.token, raw, self.version, ttl)
            except NotFoundError:
                self._revoke()
                return Outcome.REVOKED, data
            except ConflictError:
                return self._write(data, raw, ttl, destroy_empty, version=None)
            else:
                self.raw = raw
                return Outcome.WRITTEN, data
        return self._write(data, raw, ttl, destroy_empty, version=self.version)

    def _replace(
        self, data: dict[str, Any], ttl: Optional[_Seconds]
    ) -> tuple[Outcome, dict[str, Any]]:
        """Stores ``data``, set after the session was cleared, as a new session, and destroys
        the old one.

        Flask's and Starlette's login idiom is ``session.clear(); session["user_id"] = ...``.
        Nothing of the old session is kept, its id included: a token planted in the browser
        before the login must not become the user's (session fixation), and other requests of
        the old session must not merge their data into the new one (they find it revoked).
        The new session comes first, so that a bad owner or value fails with the old one
        intact; if the old one was revoked meanwhile, so is the new one.
        """
        old = self.token
        assert old is not None
        self.create(data, ttl)
        if not self.store.destroy(old):
            assert self.token is not None
            self.store.destroy(self.token)
            self._revoke()
            return Outcome.REVOKED, data
        return Outcome.CREATED, data

    def _write(
        self,
        mine: dict[str, Any],
        raw: bytes,
        ttl: Optional[_Seconds],
        destroy_empty: bool,
        version: Optional[int],
    ) -> tuple[Outcome, dict[str, Any]]:
        """Writes over ``version`` (``None``: unknown, or known to have moved: merge first),
        merging and retrying while other requests of the session write first."""
        token = self.token
        assert token is not None
        owner_hook = self.backend.owner
        # What the write replaces (for the owner check), decoded only when needed: first the
        # data this request loaded, after a merge the other request's.
        base: Optional[dict[str, Any]] = None
        # This request's changes relative to what it loaded, worked out at the first conflict.
        changed: Optional[dict[str, Any]] = None
        removed: list[str] = []
        payload, data = raw, mine
        for _ in range(MAX_RETRIES):
            if version is not None:
                owner, owner_changed = None, False
                if owner_hook is not None:
                    # Computed before the write: a hook that fails leaves the session as it was.
                    if base is None:
                        base = self._loaded_dict()
                    owner = self.backend.owner_of(data)
                    owner_changed = owner != self.backend.owner_of(base)
                try:
                    new_version = self.store.set_if_version(token, payload, version, ttl)
                except NotFoundError:
                    self._revoke()
                    return Outcome.REVOKED, data
                except ConflictError:
                    pass
                else:
                    self.raw, self.version = payload, new_version
                    if owner_changed:
                        try:
                            self.store.set_owner(token, owner)
                        except NotFoundError:  # destroyed right after the write
                            self._revoke()
                            return Outcome.REVOKED, data
                    return Outcome.WRITTEN, data
            # Another request wrote first (or the version is unknown): merge into its data.
            if changed is None:
                loaded = self._loaded_dict()
                changed = {k: v for k, v in mine.items() if k not in loaded or loaded[k] != v}
                removed = [k for k in loaded if k not in mine]
            found = self.store.get_with_version(token)
            if found is None:
                self._revoke()
                return Outcome.REVOKED, data
            theirs_raw, version = found
            theirs = load_dict(self.backend.serializer, theirs_raw) or {}
            data = dict(theirs)
            data.update(changed)
            for key in removed:
                data.pop(key, None)
            # It removed all that was left.
            if self.backend.holds_nothing(data) and destroy_empty:
                self.destroy()
                return Outcome.DESTROYED, data
            payload = self.backend.dump(data)
            base = theirs
            if payload == theirs_raw:  # this request's changes are there already
                self.raw, self.version = theirs_raw, version
                return Outcome.UNCHANGED, data
        raise ConflictError(
            f"the session was written by other requests {MAX_RETRIES} times while this one"
            " merged its changes"
        )

    def _loaded_dict(self) -> dict[str, Any]:
        if self.raw is None:
            return {}
        return load_dict(self.backend.serializer, self.raw) or {}

    def _revoke(self) -> None:
        self.revoked = True
        self.raw = self.version = None


class StoredSession:
    """What the Flask and ASGI session dicts add to a dict: the state of this request's
    session, and `regenerate`."""

    state: SessionState
    accessed: bool

    @property
    def store(self) -> Store:
        """The store the session lives in."""
        return self.state.store

    @property
    def token(self) -> Optional[str]:
        """The signed token of the stored session; ``None`` until the session is first saved."""
        return self.state.token

    @property
    def session_id(self) -> Optional[str]:
        """The id inside `token`: what ``store.sessions_of(owner)`` lists for this session."""
        token = self.state.token
        return self.state.store.unsign(token) if token is not None else None

    def regenerate(self) -> None:
        """Moves the session to a new id, keeping its data (call it at login).

        The old token stops working at once; the response carries the new one. A session not
        stored yet gets a new id when it is first saved anyway.
        """
        self.state.regenerate()
        self.accessed = True


#: The dict methods through which an app reads or changes a session.
_DICT_METHODS = (
    "__getitem__",
    "__setitem__",
    "__delitem__",
    "__contains__",
    "__iter__",
    "__len__",
    "get",
    "keys",
    "values",
    "items",
    "setdefault",
    "pop",
    "popitem",
    "update",
    "clear",
    "copy",
    "__or__",
    "__ior__",
    "regenerate",
)


_Session = TypeVar("_Session", bound=StoredSession)


def raise_on_use(cls: type[_Session]) -> type[_Session]:
    """Makes a session dict class for requests whose session could not be loaded: every use
    of its data, and `regenerate`, raises the `UnavailableError` the load met."""

    def unavailable(self: StoredSession, *args: Any, **kwargs: Any) -> Any:
        self.accessed = True
        error = self.state.unavailable
        assert error is not None, "only for a session whose load failed"
        raise error.with_traceback(None)

    for name in _DICT_METHODS:
        setattr(cls, name, unavailable)
    return cls

