"""Flask: `coatcheck.flask.CoatcheckSession` through Flask's test client."""

from __future__ import annotations

import datetime
import time
from typing import Any

import pytest
from flask import Flask, session
from flask.testing import FlaskClient

from coatcheck import Store
from coatcheck.flask import CoatcheckSession, ServerSideSession


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


def test_an_expired_session_is_gone(store: Store) -> None:
    app = make_app(store, PERMANENT_SESSION_LIFETIME=datetime.timedelta(milliseconds=200))
    client = app.test_client()
    client.post("/login/ann")
    token = cookie(client)
    assert token is not None
    time.sleep(0.3)
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


def test_a_session_written_elsewhere_is_reread_not_recreated(store: Store) -> None:
    client = make_app(store).test_client()
    client.post("/cart/apple")
    token = cookie(client)
    assert token is not None
    store.destroy(token)  # e.g. "log out everywhere" from another request
    client.post("/cart/pear")
    new = cookie(client)
    assert new is not None and new != token
    assert client.get("/me").json == {"user": None, "cart": ["pear"]}


def test_a_custom_serializer_is_used(store: Store) -> None:
    from flask.json.tag import TaggedJSONSerializer

    app = Flask(__name__)
    app.secret_key = "k"
    CoatcheckSession(app, store, serializer=TaggedJSONSerializer())

    @app.post("/set")
    def set_value() -> str:
        session["when"] = datetime.datetime(2024, 1, 2, tzinfo=datetime.timezone.utc)
        session["pair"] = (1, 2)
        return "ok"

    @app.get("/get")
    def get_value() -> str:
        return repr((session["when"].year, session["pair"]))

    client = app.test_client()
    client.post("/set")
    assert client.get("/get").text == "(2024, (1, 2))"


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
