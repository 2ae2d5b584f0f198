"""Django: ``SESSION_ENGINE = "coatcheck.django"`` through Django's test client, and the
``SessionBase`` contract run through both the sync and the async API."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

import django
import pytest
from django.conf import settings

from coatcheck import Store

STORE = Store("django test secret", idle_timeout=3600)

if not settings.configured:
    settings.configure(
        SECRET_KEY="django secret key",
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django.contrib.sessions",
        ],
        MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
        SESSION_ENGINE="coatcheck.django",
        COATCHECK_STORE=STORE,
        DATABASES={},
        USE_TZ=True,
    )
    django.setup()

from django.contrib.auth import login, logout  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.contrib.auth.signals import user_logged_in  # noqa: E402
from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.test import Client  # noqa: E402
from django.urls import path  # noqa: E402

from coatcheck.django import SessionStore  # noqa: E402

# These tests run without a database: login must not write `last_login`.
user_logged_in.disconnect(dispatch_uid="update_last_login")


def login_view(request: HttpRequest, name: str) -> JsonResponse:
    user = User(pk=len(name), username=name)
    user.backend = "django.contrib.auth.backends.ModelBackend"
    login(request, user)
    return JsonResponse({"ok": True})


def me_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            "user_id": request.session.get("_auth_user_id"),
            "cart": request.session.get("cart", []),
        }
    )


def cart_view(request: HttpRequest, item: str) -> JsonResponse:
    request.session["cart"] = [*request.session.get("cart", []), item]
    return JsonResponse({"cart": request.session["cart"]})


def logout_view(request: HttpRequest) -> JsonResponse:
    logout(request)
    return JsonResponse({"ok": True})


def short_view(request: HttpRequest) -> JsonResponse:
    request.session["cart"] = ["short-lived"]
    request.session.set_expiry(0.2)
    return JsonResponse({"ok": True})


urlpatterns = [
    path("login/<str:name>", login_view),
    path("me", me_view),
    path("cart/<str:item>", cart_view),
    path("logout", logout_view),
    path("short", short_view),
]


def session_cookie(client: Client) -> str | None:
    morsel = client.cookies.get(settings.SESSION_COOKIE_NAME)
    return morsel.value if morsel is not None and morsel.value else None


@pytest.fixture(autouse=True)
def empty_store() -> None:
    STORE.clear()


def test_login_creates_a_server_side_session_that_the_next_request_sees() -> None:
    client = Client()
    client.get("/login/ann")
    token = session_cookie(client)
    assert token is not None and STORE.unsign(token) is not None
    assert b"_auth_user_id" in (STORE.get(token) or b"")
    assert client.get("/me").json() == {"user_id": "3", "cart": []}
    assert len(STORE) == 1


def test_login_rotates_the_key_through_cycle_key() -> None:
    client = Client()
    client.get("/cart/apple")
    before = session_cookie(client)
    assert before is not None
    client.get("/login/ann")
    after = session_cookie(client)
    assert after is not None and after != before
    assert STORE.get(before) is None
    assert client.get("/me").json() == {"user_id": "3", "cart": ["apple"]}
    assert len(STORE) == 1


def test_logout_destroys_the_session() -> None:
    client = Client()
    client.get("/login/ann")
    token = session_cookie(client)
    assert token is not None
    client.get("/logout")
    assert STORE.get(token) is None
    assert len(STORE) == 0
    assert session_cookie(client) is None
    assert client.get("/me").json() == {"user_id": None, "cart": []}


@pytest.mark.parametrize(
    "tamper",
    [lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), lambda t: t.split(".")[0], lambda t: "x" * 40],
    ids=["signature", "unsigned", "garbage"],
)
def test_a_tampered_cookie_gets_a_fresh_empty_session(tamper: Callable[[str], str]) -> None:
    client = Client()
    client.get("/login/ann")
    token = session_cookie(client)
    assert token is not None
    client.cookies[settings.SESSION_COOKIE_NAME] = tamper(token)
    assert client.get("/me").json() == {"user_id": None, "cart": []}
    client.get("/cart/pear")
    fresh = session_cookie(client)
    assert fresh is not None and fresh != token
    assert STORE.get(token) is not None
    assert len(STORE) == 2


def test_an_expired_session_is_gone() -> None:
    client = Client()
    client.get("/short")
    token = session_cookie(client)
    assert token is not None and STORE.get(token) is not None
    time.sleep(0.3)
    assert client.get("/me").json() == {"user_id": None, "cart": []}
    assert STORE.get(token) is None


# -- the SessionBase contract, once through the sync API and once through the async one ----


class Api:
    """Calls a `SessionStore` method by name, synchronously or through its ``a``-variant."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def __call__(self, target: Any, name: str, *args: Any) -> Any:
        if self.mode == "sync":
            return getattr(target, name)(*args)
        return asyncio.run(getattr(target, "a" + name)(*args))


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest) -> Api:
    return Api(request.param)


def test_create_save_load_exists_delete(api: Api) -> None:
    s = SessionStore()
    s["n"] = 1
    api(s, "create")
    key = s.session_key
    assert key is not None and api(s, "exists", key) is True
    s["n"] = 2
    api(s, "save")
    again = SessionStore(key)
    assert api(again, "load") == {"n": 2}
    api(again, "delete")
    assert api(again, "exists", key) is False
    assert api(SessionStore(key), "load") == {}


def test_save_without_a_key_creates_one(api: Api) -> None:
    s = SessionStore()
    s["x"] = "y"
    api(s, "save")
    assert s.session_key is not None
    assert STORE.get(s.session_key) == b'{"x":"y"}'


def test_save_of_a_vanished_session_is_an_update_error(api: Api) -> None:
    from django.contrib.sessions.backends.base import UpdateError

    s = SessionStore()
    s["x"] = 1
    api(s, "create")
    STORE.destroy(s.session_key)
    with pytest.raises(UpdateError):
        api(s, "save")


def test_save_of_a_never_loaded_session_with_a_stale_key_is_an_update_error(api: Api) -> None:
    # Another request logged the user out (or the session timed out) before this one saved
    # without ever reading the session: the save must neither crash nor revive the session.
    from django.contrib.sessions.backends.base import UpdateError

    s = SessionStore()
    s["x"] = 1
    api(s, "create")
    key = s.session_key
    STORE.destroy(key)
    before = len(STORE)
    stale = SessionStore(key)
    with pytest.raises(UpdateError):
        api(stale, "save")
    assert len(STORE) == before
    assert stale.session_key is None


def test_cycle_key_keeps_the_data_under_a_new_key(api: Api) -> None:
    s = SessionStore()
    s["cart"] = ["apple"]
    api(s, "save")
    old = s.session_key
    api(s, "cycle_key")
    assert s.session_key != old
    assert STORE.get(old) is None
    assert api(SessionStore(s.session_key), "load") == {"cart": ["apple"]}


def test_unknown_and_tampered_keys_load_empty(api: Api) -> None:
    for key in ["nonexistent-key", STORE.sign("unknown-id"), "short"]:
        s = SessionStore(key)
        assert api(s, "load") == {}
        assert s.session_key is None
        assert api(s, "exists", key) is False


def test_clear_expired_reclaims_expired_sessions(api: Api) -> None:
    s = SessionStore()
    s["x"] = 1
    s.set_expiry(0.01)
    api(s, "save")
    assert len(STORE) == 1
    time.sleep(0.05)
    if api.mode == "sync":
        SessionStore.clear_expired()
    else:
        asyncio.run(SessionStore.aclear_expired())
    deadline = time.monotonic() + 3  # reclaimed by clear_expired or the sweeper by now
    while len(STORE) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(STORE) == 0
