"""Flask: `coatcheck.flask.CoatcheckSession` through Flask's test client."""

from __future__ import annotations

import datetime
import threading
import time
from typing import Any

import pytest
from flask import Flask, session
from flask.testing import FlaskClient

import coatcheck
from coatcheck import JSONSerializer, Store
from coatcheck.flask import (
    CoatcheckSession,
    FlaskSessionSerializer,
    ServerSideSession,
    current_session,
    regenerate,
)


def make_app(store: Store, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="flask secret", **config)
    CoatcheckSession(app, store)

    @app.post("/login/<user>")
    def login(user: str) -> dict[str, Any]:
        assert isinstance(session, ServerSideSession)
        session.regenerate()  # against session fixation
        session["user"] = user
        return {"ok": True}

    @app.get("/me")
    def me() -> dict[str, Any]:
        return {"user": session.get("user"), "cart": session.get("cart", [])}

    @app.post("/cart/<item>")
    def add(item: str) -> dict[str, Any]:
        session["cart"] = [*session.get("cart", []), item]
        return {"cart": session["cart"]}

    @app.post("/logout")
    def logout() -> dict[str, Any]:
        session.clear()
        return {"ok": True}

    @app.get("/nothing")
    def nothing() -> str:
        return "no session use"

    return app


def cookie(client: FlaskClient, name: str = "session") -> str | None:
    found = client.get_cookie(name)
    return found.value if found else None


@pytest.fixture
def store() -> Store:
    return Store("store secret", idle_timeout=3600)


def test_login_creates_a_server_side_session_that_the_next_request_sees(store: Store) -> None:
    client = make_app(store).test_client()
    response = client.post("/login/ann")
    token = cookie(client)
    assert token is not None and store.unsign(token) is not None
    assert "ann" not in token  # only the token travels; the data stays server-side
    assert b"ann" in (store.get(token) or b"")
    assert "HttpOnly" in response.headers["Set-Cookie"]
    assert client.get("/me").json == {"user": "ann", "cart": []}
    assert len(store) == 1


def test_logout_destroys_the_session_and_the_cookie(store: Store) -> None:
    client = make_app(store).test_client()
    client.post("/login/ann")
    token = cookie(client)
    assert token is not None
    response = client.post("/logout")
    assert store.get(token) is None
    assert len(store) == 0
    assert "session=;" in response.headers["Set-Cookie"]
    assert cookie(client) is None
    assert client.get("/me").json == {"user": None, "cart": []}


def test_the_id_changes_at_login_and_the_old_one_stops_working(store: Store) -> None:
    client = make_app(store).test_client()
    client.post("/cart/apple")  # an anonymous session first
    before = cookie(client)
    assert before is not None
    client.post("/login/ann")
    after = cookie(client)
    assert after is not None and after != before
    assert store.get(before) is None
    assert client.get("/me").json == {"user": "ann", "cart": ["apple"]}
    assert len(store) == 1


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),
        lambda t: ("y" if t.startswith("x") else "x") + t[1:],  # always a different id
        lambda t: t.split(".")[0],
        lambda t: "garbage",
        lambda t: Store("other secret", idle_timeout=1).sign(t.split(".")[0]),
    ],
    ids=["signature", "id", "unsigned", "garbage", "forged"],
)
def test_a_tampered_cookie_gets_a_fresh_empty_session(store: Store, tamper: Any) -> None:
    client = make_app(store).test_client()
    client.post("/login/ann")
    token = cookie(client)
    assert token is not None
    client.set_cookie("session", tamper(token))
    assert client.get("/me").json == {"user": None, "cart": []}
    client.post("/cart/pear")
    fresh = cookie(client)
    assert fresh is not None and fresh != token
    assert store.get(token) is not None  # the real session is untouched
    assert len(store) == 2


def test_the_stores_idle_timeout_is_the_sessions_idle_timeout() -> None:
    # Margins of 0.15 s or more either way, so a loaded machine's late wake-ups do not matter.
    store = Store("store secret", idle_timeout=0.3)
    client = make_app(store).test_client()
    client.post("/login/ann")
    token = cookie(client)
    assert token is not None
    for _ in range(4):  # 4 x 0.15 s: longer than the timeout, but each request slides it
        time.sleep(0.15)
        assert client.get("/me").json == {"user": "ann", "cart": []}
    time.sleep(0.45)
    assert client.get("/me").json == {"user": None, "cart": []}
    assert store.get(token) is None


def test_nothing_changed_means_no_write_and_no_set_cookie(store: Store) -> None:
    client = make_app(store).test_client()
    client.post("/login/ann")
    updates = store.stats()["updates"]
    for path in ("/me", "/nothing"):
        response = client.get(path)
        assert "Set-Cookie" not in response.headers
    assert store.stats()["updates"] == updates
    assert client.get("/me").headers["Vary"] == "Cookie"
    # A visitor who never stores anything gets no session and no cookie either.
    fresh = make_app(store).test_client()
    assert "Set-Cookie" not in fresh.get("/me").headers
    assert len(store) == 1


def test_a_change_is_written_under_the_same_token(store: Store) -> None:
    client = make_app(store).test_client()
    client.post("/cart/apple")
    token = cookie(client)
    client.post("/cart/pear")
    assert cookie(client) == token
    assert client.get("/me").json == {"user": None, "cart": ["apple", "pear"]}
    assert token is not None
    found = store.get_with_version(token)
    assert found is not None and found[1] == 2


def test_session_cookie_settings_apply(store: Store) -> None:
    app = make_app(
        store,
        SESSION_COOKIE_NAME="sid",
        SESSION_COOKIE_PATH="/app",
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_HTTPONLY=False,
    )
    response = app.test_client().post("/login/ann")
    header = response.headers["Set-Cookie"]
    assert header.startswith("sid=")
    assert "Path=/app" in header and "Secure" in header and "SameSite=Strict" in header
    assert "HttpOnly" not in header


def test_a_permanent_session_cookie_carries_the_lifetime(store: Store) -> None:
    app = make_app(store, PERMANENT_SESSION_LIFETIME=datetime.timedelta(hours=1))

    @app.post("/remember")
    def remember() -> str:
        session.permanent = True
        session["user"] = "ann"
        return "ok"

    header = app.test_client().post("/remember").headers["Set-Cookie"]
    assert "Expires=" in header
    browser = app.test_client().post("/login/bob").headers["Set-Cookie"]
    assert "Expires=" not in browser


def test_a_session_destroyed_between_requests_is_not_revived(store: Store) -> None:
    client = make_app(store).test_client()
    client.post("/cart/apple")
    token = cookie(client)
    assert token is not None
    store.destroy(token)  # e.g. "log out everywhere" from another request
    client.post("/cart/pear")
    new = cookie(client)
    assert new is not None and new != token
    assert client.get("/me").json == {"user": None, "cart": ["pear"]}  # no "apple"


def test_a_custom_serializer_is_used(store: Store) -> None:
    app = Flask(__name__)
    app.secret_key = "k"
    CoatcheckSession(app, store, serializer=JSONSerializer())

    @app.post("/set")
    def set_value() -> str:
        session["pair"] = (1, 2)
        return "ok"

    @app.get("/get")
    def get_value() -> str:
        return repr(session["pair"])

    client = app.test_client()
    client.post("/set")
    assert client.get("/get").text == "[1, 2]"  # plain JSON: the tuple comes back a list
    token = cookie(client)
    assert token is not None and store.get(token) == b'{"pair":[1,2]}'


def test_without_a_store_one_is_built_from_the_secret_key() -> None:
    app = Flask(__name__)
    app.secret_key = "only a secret key"
    ext = CoatcheckSession(app)
    assert ext.store is not None

    @app.post("/set")
    def set_value() -> str:
        session["n"] = 1
        return "ok"

    client = app.test_client()
    client.post("/set")
    token = cookie(client)
    assert token is not None and ext.store.get(token) == b'{"n":1}'


def test_without_a_store_the_secret_key_fallbacks_still_verify() -> None:
    # A deploy that rotates SECRET_KEY keeps the old one in SECRET_KEY_FALLBACKS: tokens
    # signed with it must still open their sessions, as Flask's own cookies do.
    old = CoatcheckSession(make_bare_app("old key")).store
    assert old is not None
    token = old.create(b'{"n":1}')
    rotated = Store(["new key", "old key"], idle_timeout=60)
    app = make_bare_app("new key", SECRET_KEY_FALLBACKS=["old key"])
    ext = CoatcheckSession(app)
    assert ext.store is not None
    assert ext.store.unsign(token) == rotated.unsign(token) == old.unsign(token)
    assert ext.store.unsign(ext.store.sign("some-id")) == "some-id"
    assert ext.store.sign("some-id") == rotated.sign("some-id"), "the new key signs"


def test_a_token_signed_with_a_fallback_secret_is_sent_back_signed_with_the_current_one() -> None:
    # Else, once the fallback is dropped, every session from before the rotation is logged out,
    # however active its user was: Flask re-signs its cookie each time it sets it.
    rotated = Store(["new secret", "old secret"], idle_timeout=3600)
    session_id = rotated.unsign(rotated.create(b'{"user": "ann"}'))
    assert session_id is not None
    old_token = Store("old secret", idle_timeout=3600).sign(session_id)
    client = make_app(rotated).test_client()
    client.set_cookie("session", old_token)
    assert client.get("/me").json == {"user": "ann", "cart": []}
    assert cookie(client) == rotated.sign(session_id)
    assert Store("new secret", idle_timeout=3600).unsign(cookie(client) or "") == session_id
    # A token already signed with the current secret is not sent again.
    assert "Set-Cookie" not in client.get("/nothing").headers


def test_a_session_holding_only_the_permanent_flag_is_not_stored(store: Store) -> None:
    # `session.permanent = True` in a before_request, a common idiom: a request without a
    # cookie (a bot, a health check) must not store a session, as in Flask-Session.
    app = make_app(store)

    @app.before_request
    def permanent() -> None:
        session.permanent = True

    @app.post("/forget")
    def forget() -> str:
        session.pop("user")
        return "ok"

    @app.post("/forget-race")
    def forget_race() -> str:
        token = current_session().token
        assert token is not None
        session.get("user")
        store.set(token, FlaskSessionSerializer().dumps({**session, "theme": "dark"}))
        session.pop("user")
        return "ok"

    for _ in range(20):
        response = app.test_client().get("/nothing")
        assert "Set-Cookie" not in response.headers
    assert len(store) == 0
    client = app.test_client()
    client.post("/login/ann")
    assert len(store) == 1 and cookie(client) is not None
    assert client.post("/forget").headers["Set-Cookie"].startswith("session=;")
    assert len(store) == 0

    # Another request of the session adds a key while this one removes the user: the merged
    # session keeps that key, and stays permanent.
    client = app.test_client()
    client.post("/login/ann")
    token = cookie(client)
    assert token is not None
    client.post("/forget-race")
    kept = FlaskSessionSerializer().loads(store.get(token) or b"")
    assert kept == {"_permanent": True, "theme": "dark"}


def test_flask_sessions_regenerate_and_session_permanent_settings_work(store: Store) -> None:
    # What an app written for Flask-Session uses: SESSION_PERMANENT (new sessions permanent)
    # and app.session_interface.regenerate(session) at login.
    app = make_app(store, SESSION_PERMANENT=True)

    @app.post("/login-as-flask-session-does/<user>")
    def login_as_flask_session_does(user: str) -> str:
        app.session_interface.regenerate(session)  # type: ignore[attr-defined]
        session["user"] = user
        return "ok"

    client = app.test_client()
    client.post("/cart/apple")
    before = cookie(client)
    response = client.post("/login-as-flask-session-does/ann")
    after = cookie(client)
    assert before is not None and after is not None and after != before
    assert store.get(before) is None
    assert "Expires=" in response.headers["Set-Cookie"]  # a permanent session's cookie
    assert client.get("/me").json == {"user": "ann", "cart": ["apple"]}
    assert "Set-Cookie" not in app.test_client().get("/nothing").headers
    assert len(store) == 1


def test_without_a_store_the_limits_come_from_the_app_config() -> None:
    app = make_bare_app(
        "k", COATCHECK_MAX_SESSIONS=100, COATCHECK_ABSOLUTE_TIMEOUT=datetime.timedelta(minutes=10)
    )
    ext = CoatcheckSession(app)
    assert ext.store is not None and ext.store.absolute_timeout == 600

    @app.post("/visit")
    def visit() -> str:
        session["seen"] = True  # a CSRF token on a login form, say: every visitor is stored
        return "ok"

    for _ in range(200):
        app.test_client().post("/visit")  # a crawler: no cookie jar
    assert len(ext.store) == 100


def make_bare_app(secret_key: str, **config: Any) -> Flask:
    app = Flask(__name__)
    app.secret_key = secret_key
    app.config.update(config)
    return app


# -- lifetimes ------------------------------------------------------------------------------


def test_a_lifetime_setting_that_contradicts_the_store_is_an_error_at_setup() -> None:
    store = Store("store secret", idle_timeout=1800)
    app = Flask(__name__)
    app.config["PERMANENT_SESSION_LIFETIME"] = datetime.timedelta(hours=2)
    with pytest.raises(ValueError, match="PERMANENT_SESSION_LIFETIME"):
        CoatcheckSession(app, store)
    app.config["PERMANENT_SESSION_LIFETIME"] = 1800  # equal (in seconds): fine
    CoatcheckSession(app, store)


def test_without_a_store_the_flask_lifetime_becomes_the_idle_timeout() -> None:
    app = Flask(__name__)
    app.secret_key = "only a secret key"
    app.config["PERMANENT_SESSION_LIFETIME"] = datetime.timedelta(minutes=20)
    ext = CoatcheckSession(app)
    assert ext.store is not None and ext.store.idle_timeout == 1200


def expires_in(header: str) -> float:
    """Seconds from now to the ``Expires`` of a ``Set-Cookie`` header."""
    from email.utils import parsedate_to_datetime

    expires = header.split("Expires=", 1)[1].split(";", 1)[0]
    now = datetime.datetime.now(datetime.timezone.utc)
    return (parsedate_to_datetime(expires) - now).total_seconds()


def permanent_app(store: Store, **config: Any) -> Flask:
    app = make_app(store, **config)

    @app.post("/remember/<user>")
    def remember(user: str) -> str:
        session.permanent = True
        session["user"] = user
        return "ok"

    return app


def test_a_permanent_session_cookie_expires_with_the_stores_idle_timeout(store: Store) -> None:
    # Flask's default PERMANENT_SESSION_LIFETIME (31 days) says nothing: the store decides.
    header = permanent_app(store).test_client().post("/remember/ann").headers["Set-Cookie"]
    assert 3600 - 5 < expires_in(header) <= 3600 + 1
    browser = make_app(store).test_client().post("/login/bob").headers["Set-Cookie"]
    assert "Expires=" not in browser  # a browser-session cookie


def test_a_permanent_session_cookie_is_resent_on_a_read_only_request_without_a_write(
    store: Store,
) -> None:
    client = permanent_app(store).test_client()
    client.post("/remember/ann")
    token = cookie(client)
    updates = store.stats()["updates"]
    response = client.get("/me")
    assert response.json == {"user": "ann", "cart": []}
    header = response.headers["Set-Cookie"]
    assert header.startswith(f"session={token};")
    assert 3600 - 5 < expires_in(header) <= 3600 + 1
    assert response.headers["Vary"] == "Cookie"
    assert store.stats()["updates"] == updates  # the refresh wrote no data
    # Even a request that never uses the session keeps the cookie alive, as Flask does.
    assert "Set-Cookie" in client.get("/nothing").headers


def test_without_refresh_each_request_a_permanent_cookie_is_sent_only_on_change(
    store: Store,
) -> None:
    client = permanent_app(store, SESSION_REFRESH_EACH_REQUEST=False).test_client()
    assert "Set-Cookie" in client.post("/remember/ann").headers
    assert "Set-Cookie" not in client.get("/me").headers
    assert "Set-Cookie" in client.post("/cart/apple").headers


# -- revocation is final ----------------------------------------------------------------------


def owned_app(store: Store) -> Flask:
    app = Flask(__name__)
    app.secret_key = "k"
    CoatcheckSession(app, store, owner=lambda data: data.get("user"))

    @app.post("/login/<user>")
    def login(user: str) -> str:
        regenerate()
        session["user"] = user
        return "ok"

    @app.post("/other-tab-logs-out-then-write")
    def destroyed_meanwhile() -> str:
        token = current_session().token
        assert token is not None
        store.destroy(token)  # another tab's logout, while this request runs
        session["cart"] = ["apple"]
        return "ok"

    @app.post("/everywhere-logged-out-then-write")
    def destroyed_by_owner() -> str:
        store.destroy_owner(session["user"])  # "log out everywhere" from another device
        session["cart"] = ["apple"]
        return "ok"

    @app.get("/me")
    def me() -> dict[str, Any]:
        return {"user": session.get("user"), "cart": session.get("cart", [])}

    return app


@pytest.mark.parametrize(
    "path", ["/other-tab-logs-out-then-write", "/everywhere-logged-out-then-write"]
)
def test_a_session_revoked_during_a_request_is_not_recreated(store: Store, path: str) -> None:
    client = owned_app(store).test_client()
    client.post("/login/ann")
    assert cookie(client) is not None
    dead = cookie(client)
    response = client.post(path)
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers  # the dead cookie is refused, not deleted
    assert cookie(client) == dead
    assert len(store) == 0  # nothing was re-created from the request's data
    assert store.sessions_of("ann") == []
    assert client.get("/me").json == {"user": None, "cart": []}


def test_a_second_click_on_login_leaves_the_cookie_the_first_one_set(store: Store) -> None:
    app = owned_app(store)

    @app.post("/second-click/<user>")
    def second_click(user: str) -> str:
        token = current_session().token
        assert token is not None
        # The first click's request, run meanwhile: its login moved the session to a new id,
        # which the browser now holds.
        first = store.regenerate(token)
        assert first is not None
        regenerate()
        session["user"] = user
        return first

    client = app.test_client()
    client.post("/login/ann")
    response = client.post("/second-click/ann")
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers  # a deletion would log the user out
    assert store.get(response.text) is not None


def test_data_set_after_clear_is_a_new_session_under_a_new_id(store: Store) -> None:
    app = owned_app(store)

    @app.post("/plain-login/<user>")
    def plain_login(user: str) -> str:
        session.clear()  # Flask's tutorial login
        session["user"] = user
        return "ok"

    @app.post("/visit")
    def visit() -> str:
        session["seen"] = True
        return "ok"

    client = app.test_client()
    client.post("/visit")
    planted = cookie(client)  # what an attacker could have planted in the victim's browser
    assert planted is not None
    client.post("/plain-login/ann")
    fresh = cookie(client)
    assert fresh is not None and fresh != planted
    assert store.get(planted) is None
    assert client.get("/me").json == {"user": "ann", "cart": []}
    assert store.sessions_of("ann") == [store.unsign(fresh)]
    assert len(store) == 1


def test_after_clear_a_failing_owner_hook_or_a_revoked_session_stores_nothing_new(
    store: Store,
) -> None:
    app = Flask(__name__)
    app.secret_key = "k"
    CoatcheckSession(app, store, owner=lambda data: data.get("user"))

    @app.post("/visit")
    def visit() -> str:
        session["user"] = "ann"
        return "ok"

    @app.post("/relogin/<owner>")
    def relogin(owner: str) -> str:
        user = session["user"]
        session.clear()
        if owner == "everywhere-logged-out":
            store.destroy_owner(user)  # a password change elsewhere, while this request runs
        bad = {"bad-type": ["not", "an", "owner"], "empty": ""}
        session["user"] = bad.get(owner, user)
        return "ok"

    client = app.test_client(use_cookies=True)
    client.post("/visit")
    token = cookie(client)
    assert token is not None
    # A bad owner (of the wrong type, or one the store refuses) fails the request with the old
    # session intact, and leaves no new one behind.
    app.testing = False
    for bad in ("bad-type", "empty"):
        assert client.post(f"/relogin/{bad}").status_code == 500
        assert store.get(token) is not None and len(store) == 1, bad
    # A session logged out everywhere meanwhile does not come back under a new id.
    response = client.post("/relogin/everywhere-logged-out")
    assert response.status_code == 200 and "Set-Cookie" not in response.headers
    assert len(store) == 0 and store.sessions_of("ann") == []


# -- concurrent requests of one session merge ---------------------------------------------------


def test_a_concurrent_write_keeps_the_keys_this_request_did_not_touch(store: Store) -> None:
    app = make_app(store)

    @app.post("/race")
    def race() -> str:
        token = current_session().token
        assert token is not None
        session.get("user")
        # Another request of the same session writes first, while this one runs.
        store.set(token, b'{"user":"ann","cart":["pear"],"theme":"dark","note":"theirs"}')
        session["note"] = "mine"  # the same key changed by both: the last writer wins
        session.pop("user")  # removed here: stays removed
        session["lang"] = "fr"  # added here
        return "ok"

    client = app.test_client()
    client.post("/login/ann")
    client.post("/cart/apple")
    conflicts = store.stats()["conflicts"]
    client.post("/race")
    token = cookie(client)
    assert token is not None
    assert FlaskSessionSerializer().loads(store.get(token) or b"") == {
        "cart": ["pear"],  # not touched here: the other request's value
        "theme": "dark",
        "note": "mine",
        "lang": "fr",
    }
    assert store.stats()["conflicts"] == conflicts + 1


def test_emptying_a_session_removes_only_what_this_request_loaded(store: Store) -> None:
    app = make_app(store)

    @app.post("/clear-race")
    def clear_race() -> str:
        token = current_session().token
        assert token is not None
        session.get("user")
        # Another request of the same session adds a key while this one empties it.
        store.set(token, b'{"user":"ann","cart":["apple"],"theme":"dark"}')
        session.clear()
        return "ok"

    client = app.test_client()
    client.post("/login/ann")
    client.post("/cart/apple")
    token = cookie(client)
    assert token is not None
    client.post("/clear-race")
    assert FlaskSessionSerializer().loads(store.get(token) or b"") == {"theme": "dark"}


def test_regenerate_after_a_concurrent_write_keeps_that_write(store: Store) -> None:
    app = make_app(store)

    @app.post("/rotate-race")
    def rotate_race() -> str:
        token = current_session().token
        assert token is not None
        session.get("user")
        store.set(token, b'{"user":"ann","cart":["apple"],"theme":"dark"}')
        regenerate()
        session["rotated"] = True
        return "ok"

    client = app.test_client()
    client.post("/login/ann")
    client.post("/cart/apple")
    client.post("/rotate-race")
    token = cookie(client)
    assert token is not None
    stored = FlaskSessionSerializer().loads(store.get(token) or b"")
    assert stored == {"user": "ann", "cart": ["apple"], "theme": "dark", "rotated": True}


def test_twenty_concurrent_requests_of_one_session_each_keep_their_key(store: Store) -> None:
    from live import at_once, request, wsgi_server

    n = 20
    everyone_loaded = threading.Barrier(n, timeout=20)
    app = make_app(store)

    @app.post("/add/<int:i>")
    def add_key(i: int) -> str:
        session.get("user")  # loaded the same version as the 19 others...
        everyone_loaded.wait()
        session[f"key-{i}"] = i  # ...and each writes its own key
        return "ok"

    client = app.test_client()
    client.post("/login/ann")
    token = cookie(client)
    assert token is not None
    conflicts = store.stats()["conflicts"]
    with wsgi_server(app) as port:
        statuses = at_once(
            n, lambda i: request(port, "POST", f"/add/{i}", f"session={token}")[0]
        )
    assert statuses == [200] * n
    data = FlaskSessionSerializer().loads(store.get(token) or b"")
    assert data == {"user": "ann", **{f"key-{i}": i for i in range(n)}}
    assert store.stats()["conflicts"] > conflicts  # they did collide, and were merged


# -- owners, ids at login, serializer -----------------------------------------------------------


def test_the_owner_hook_files_sessions_so_other_devices_can_be_logged_out(store: Store) -> None:
    app = owned_app(store)

    @app.get("/devices")
    def devices() -> dict[str, Any]:
        return {
            "sessions": store.sessions_of(session["user"]),
            "this": current_session().session_id,
        }

    @app.post("/logout-others")
    def logout_others() -> dict[str, Any]:
        n = store.destroy_owner(session["user"], except_token=current_session().token)
        return {"logged_out": n}

    laptop, phone, other = app.test_client(), app.test_client(), app.test_client()
    laptop.post("/login/ann")
    phone.post("/login/ann")
    other.post("/login/bob")
    listed = laptop.get("/devices").json
    assert listed is not None and listed["this"] in listed["sessions"]
    assert len(listed["sessions"]) == 2
    assert all(store.get(i) is None for i in listed["sessions"])  # ids, not tokens
    assert laptop.post("/logout-others").json == {"logged_out": 1}
    assert phone.get("/me").json == {"user": None, "cart": []}
    assert laptop.get("/me").json == {"user": "ann", "cart": []}
    assert other.get("/me").json == {"user": "bob", "cart": []}


def test_an_owner_that_is_neither_str_nor_int_is_a_type_error(store: Store) -> None:
    app = Flask(__name__)
    app.secret_key = "k"
    CoatcheckSession(app, store, owner=lambda data: data.get("admin"))

    @app.post("/set/<int:n>")
    def set_flag(n: int) -> str:
        session["admin"] = [True, 7][n]
        return "ok"

    client = app.test_client()
    client.post("/set/1")  # an int owner is filed as text
    assert len(store.sessions_of("7")) == 1
    app.config["PROPAGATE_EXCEPTIONS"] = True
    with pytest.raises(TypeError, match="bool"):
        app.test_client().post("/set/0")


def test_regenerate_moves_the_session_without_a_needless_conflict(store: Store) -> None:
    client = make_app(store).test_client()
    client.post("/cart/apple")
    conflicts = store.stats()["conflicts"]
    client.post("/login/ann")  # regenerate(), then a write
    assert store.stats()["conflicts"] == conflicts
    assert client.get("/me").json == {"user": "ann", "cart": ["apple"]}


def test_flask_login_rotates_the_session_id_at_login(store: Store) -> None:
    from flask_login import LoginManager, UserMixin, login_user

    class User(UserMixin):
        def __init__(self, name: str) -> None:
            self.id = name

    app = make_app(store)
    manager = LoginManager(app)
    manager.user_loader(User)

    @app.post("/flask-login/<name>")
    def flask_login(name: str) -> str:
        login_user(User(name))  # no regenerate() here: the extension does it
        return "ok"

    client = app.test_client()
    client.post("/cart/apple")
    before = cookie(client)
    client.post("/flask-login/ann")
    after = cookie(client)
    assert before is not None and after is not None and after != before
    assert store.get(before) is None
    data = FlaskSessionSerializer().loads(store.get(after) or b"")
    assert data["_user_id"] == "ann" and data["cart"] == ["apple"]
    assert len(store) == 1


def test_the_default_serializer_keeps_what_flasks_own_session_keeps(store: Store) -> None:
    import uuid

    from markupsafe import Markup

    values: dict[str, Any] = {
        "tuple": (1, "two"),
        "bytes": b"\x00\xff",
        "markup": Markup("<b>hi</b>"),
        "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "when": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
        "tagged keys": {" t": "a dict whose key looks like a tag"},
    }
    app = make_app(store)

    @app.post("/set")
    def set_values() -> str:
        session.update(values)
        return "ok"

    @app.get("/check")
    def check() -> str:
        assert {k: session[k] for k in values} == values
        assert {k: type(session[k]) for k in values} == {k: type(v) for k, v in values.items()}
        return "same"

    client = app.test_client()
    client.post("/set")
    assert client.get("/check").text == "same"


def test_setting_a_key_to_its_value_resends_the_cookie_as_flask_does_but_writes_nothing(
    store: Store,
) -> None:
    app = make_app(store)

    @app.post("/same")
    def same() -> str:
        session["user"] = session["user"]  # Flask marks the session modified
        return "ok"

    client = app.test_client()
    client.post("/login/ann")
    token = cookie(client)
    updates = store.stats()["updates"]
    response = client.post("/same")
    assert response.headers["Set-Cookie"].startswith(f"session={token};")
    assert store.stats()["updates"] == updates


def test_a_session_too_large_for_the_store_is_a_500_and_keeps_the_stored_session() -> None:
    store = Store("store secret", idle_timeout=3600, max_session_bytes=512)
    app = make_app(store)
    client = app.test_client()
    client.post("/login/ann")
    client.post("/cart/tea")
    token = cookie(client)
    # The store's limit is checked when the response saves the session: the typed error
    # reaches Flask's error handling (a 500; raised as is under TESTING).
    app.testing = True
    with pytest.raises(coatcheck.TooLargeError):
        client.post("/cart/" + "x" * 600)
    app.testing = False
    assert client.post("/cart/" + "x" * 600).status_code == 500
    assert cookie(client) == token
    assert client.get("/me").json == {"user": "ann", "cart": ["tea"]}
