"""Django: ``SESSION_ENGINE = "coatcheck.django"`` through Django's test client, and the
``SessionBase`` contract run through both the sync and the async API."""

from __future__ import annotations

import asyncio
import datetime
import json
import threading
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
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
        ],
        # Users live in memory (MemoryBackend below): these tests run without a database.
        AUTHENTICATION_BACKENDS=[f"{__name__}.MemoryBackend"],
        SESSION_ENGINE="coatcheck.django",
        COATCHECK_STORE=STORE,
        DATABASES={},
        USE_TZ=True,
    )
    django.setup()

from django.contrib.auth import login, logout, update_session_auth_hash  # noqa: E402
from django.contrib.auth.decorators import login_required  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.contrib.auth.signals import user_logged_in  # noqa: E402
from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.test import Client  # noqa: E402
from django.urls import path  # noqa: E402

from coatcheck.django import SessionStore, get_store  # noqa: E402

# These tests run without a database: login must not write `last_login`.
user_logged_in.disconnect(dispatch_uid="update_last_login")


class MemoryBackend:
    """Users without a database: user ``n`` is named by ``n`` letters."""

    def get_user(self, user_id: Any) -> User:
        return User(pk=int(user_id), username="x" * int(user_id))


def login_view(request: HttpRequest, name: str) -> JsonResponse:
    login(request, User(pk=len(name), username=name), backend=f"{__name__}.MemoryBackend")
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


def password_of_other_view(request: HttpRequest) -> JsonResponse:
    # What Django's admin does after changing another user's password: only cycle_key.
    update_session_auth_hash(request, User(pk=99, username="x" * 99))
    return JsonResponse({"ok": True})


def clear_view(request: HttpRequest) -> JsonResponse:
    # A hand-written logout that never reads the session first.
    request.session.clear()
    return JsonResponse({"ok": True})


def short_view(request: HttpRequest) -> JsonResponse:
    request.session["cart"] = ["short-lived"]
    request.session.set_expiry(0.2)
    return JsonResponse({"ok": True})


# -- the README's "your devices" example, as written there -------------------------------------


@login_required
def devices(request: HttpRequest) -> JsonResponse:
    store = get_store()
    return JsonResponse({"sessions": store.sessions_of(str(request.user.pk)),
                         "this": store.unsign(request.session.session_key)})  # fmt: skip


@login_required
def logout_others(request: HttpRequest) -> JsonResponse:
    n = get_store().destroy_owner(str(request.user.pk), except_token=request.session.session_key)
    return JsonResponse({"logged_out": n})


# -- views for revocation and concurrency -------------------------------------------------------


def destroyed_meanwhile_view(request: HttpRequest) -> JsonResponse:
    request.session.get("cart")
    STORE.destroy(request.session.session_key)  # another tab's logout, while this runs
    request.session["cart"] = ["apple"]
    return JsonResponse({"ok": True})


def destroyed_by_owner_view(request: HttpRequest) -> JsonResponse:
    STORE.destroy_owner(request.session["_auth_user_id"])  # "log out everywhere"
    request.session["cart"] = ["apple"]
    return JsonResponse({"ok": True})


def race_view(request: HttpRequest) -> JsonResponse:
    request.session.get("cart")
    # Another request of the same session writes first, while this one runs.
    STORE.set(request.session.session_key, b'{"cart":["pear"],"theme":"dark","note":"x"}')
    request.session["note"] = "mine"  # the same key changed by both: the last writer wins
    request.session["lang"] = "fr"  # added here
    return JsonResponse({"ok": True})


BARRIER: list[threading.Barrier] = []


def add_key_view(request: HttpRequest, i: int) -> JsonResponse:
    request.session.get("cart")  # loaded the same version as the others...
    BARRIER[0].wait()
    request.session[f"key-{i}"] = i  # ...and each writes its own key
    return JsonResponse({"ok": True})


urlpatterns = [
    path("login/<str:name>", login_view),
    path("me", me_view),
    path("cart/<str:item>", cart_view),
    path("logout", logout_view),
    path("clear", clear_view),
    path("short", short_view),
    path("password-of-other", password_of_other_view),
    path("devices", devices),
    path("devices/logout-others", logout_others),
    path("destroyed-meanwhile", destroyed_meanwhile_view),
    path("destroyed-by-owner", destroyed_by_owner_view),
    path("race", race_view),
    path("add/<int:i>", add_key_view),
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


def test_a_session_cleared_without_being_read_is_stored_empty() -> None:
    client = Client()
    client.get("/cart/apple")
    token = session_cookie(client)
    response = client.get("/clear")
    assert response.status_code == 200
    assert client.get("/me").json() == {"user_id": None, "cart": []}
    assert token is not None and STORE.get(token) is not None  # the session, emptied
    # Cleared after it was destroyed elsewhere: not revived (Django's db backend: a 400).
    STORE.destroy(token)
    assert client.get("/clear").status_code == 400
    assert STORE.get(token) is None


def test_a_key_signed_with_a_fallback_secret_is_sent_back_signed_with_the_current_one() -> None:
    # SECRET_KEY rotated, the old one in SECRET_KEY_FALLBACKS: a visitor's session moves to the
    # current signature on their next request, so dropping the fallback later logs nobody out.
    from django.test import override_settings

    rotated = Store(["new django secret", "old django secret"], idle_timeout=3600)
    with override_settings(COATCHECK_STORE=rotated):
        s = SessionStore()
        s["cart"] = ["apple"]
        s.save()
        session_id = rotated.unsign(s.session_key or "")
        assert session_id is not None
        client = Client()
        client.cookies[settings.SESSION_COOKIE_NAME] = Store(
            "old django secret", idle_timeout=3600
        ).sign(session_id)
        assert client.get("/me").json() == {"user_id": None, "cart": ["apple"]}
        assert session_cookie(client) == rotated.sign(session_id)
        assert client.get("/me").cookies.get(settings.SESSION_COOKIE_NAME) is None
        # A logout by clear(), the cookie still the old signature's: emptied, and re-signed.
        old = Client()
        old.cookies[settings.SESSION_COOKIE_NAME] = Store(
            "old django secret", idle_timeout=3600
        ).sign(session_id)
        assert old.get("/clear").status_code == 200
        assert session_cookie(old) == rotated.sign(session_id)
        assert old.get("/me").json() == {"user_id": None, "cart": []}
        # An expiry date that has passed ends the session, whatever signed its key.
        s = SessionStore()
        s["cart"] = ["pear"]
        s.set_expiry(datetime.timedelta(milliseconds=100))
        s.save()
        expiring_id = rotated.unsign(s.session_key or "")
        assert expiring_id is not None
        time.sleep(0.2)
        late = SessionStore(Store("old django secret", idle_timeout=3600).sign(expiring_id))
        assert late.load() == {}
        assert rotated.get(rotated.sign(expiring_id)) is None


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


def test_a_key_cycled_with_nothing_else_changed_is_sent_to_the_client() -> None:
    client = Client()
    client.get("/login/alice")
    before = session_cookie(client)
    response = client.get("/password-of-other")
    assert settings.SESSION_COOKIE_NAME in response.cookies
    assert session_cookie(client) not in (None, before)
    assert client.get("/me").json()["user_id"] == "5"


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
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),
        lambda t: t.split(".")[0],
        lambda t: "x" * 40,
        lambda t: Store("another secret", idle_timeout=3600).sign(t.split(".")[0]),
    ],
    ids=["signature", "unsigned", "garbage", "other-secret"],
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


def test_an_expiry_in_the_past_destroys_the_session_at_once(api: Api) -> None:
    # Django's own test_actual_expiry, for a new session and for a stored one.
    import datetime

    s = SessionStore()
    s["foo"] = "bar"
    s.set_expiry(-datetime.timedelta(seconds=10))
    api(s, "save")
    assert s.session_key is not None
    assert "foo" not in SessionStore(s.session_key)
    stored = SessionStore()
    stored["foo"] = "bar"
    api(stored, "save")
    again = SessionStore(stored.session_key)
    assert api(again, "load") == {"foo": "bar"}
    again.set_expiry(-1)
    api(again, "save")
    assert "foo" not in SessionStore(stored.session_key)
    assert len(STORE) == 0


@pytest.mark.parametrize("how", ["timedelta", "datetime"])
def test_an_expiry_date_ends_the_session_then_however_often_it_is_read(api: Api, how: str) -> None:
    import datetime

    from django.utils import timezone

    s = SessionStore()
    s["x"] = 1
    lifetime = datetime.timedelta(seconds=1)
    s.set_expiry(lifetime if how == "timedelta" else timezone.now() + lifetime)
    api(s, "save")
    ends = time.monotonic() + 1
    for _ in range(3):  # reads before the date find it, and slide the store's deadline
        time.sleep(0.25)
        assert api(SessionStore(s.session_key), "load")["x"] == 1
    time.sleep(max(0.0, ends - time.monotonic()) + 0.1)
    late = SessionStore(s.session_key)
    assert api(late, "load") == {}
    assert late.session_key is None
    assert STORE.get(s.session_key) is None


def test_exists_is_a_look_that_does_not_keep_the_session_alive(api: Api) -> None:
    s = SessionStore()
    s["x"] = 1
    s.set_expiry(0.3)  # seconds of inactivity
    api(s, "save")
    key = s.session_key
    time.sleep(0.2)
    assert api(SessionStore(), "exists", key) is True
    time.sleep(0.2)
    assert api(SessionStore(), "exists", key) is False, "exists() slid the idle deadline"


def test_removing_a_custom_expiry_gives_back_the_stores_idle_timeout(api: Api) -> None:
    s = SessionStore()
    s["x"] = 1
    s.set_expiry(0.2)
    api(s, "save")
    again = SessionStore(s.session_key)
    assert api(again, "load") == {"x": 1, "_session_expiry": 0.2}
    again.set_expiry(None)
    api(again, "save")
    time.sleep(0.35)
    assert api(SessionStore(s.session_key), "load") == {"x": 1}


# -- lifetimes through the middleware ------------------------------------------------------------


def test_a_session_cookie_age_that_contradicts_the_store_is_improperly_configured() -> None:
    from django.core.exceptions import ImproperlyConfigured
    from django.test import override_settings

    with override_settings(SESSION_COOKIE_AGE=60):
        with pytest.raises(ImproperlyConfigured, match="SESSION_COOKIE_AGE"):
            SessionStore()
    with override_settings(SESSION_COOKIE_AGE=3600):  # equal to the store's: fine
        SessionStore()


def test_the_cookie_max_age_is_the_stores_idle_timeout() -> None:
    # SESSION_COOKIE_AGE is left at Django's default (two weeks): the store decides.
    client = Client()
    response = client.get("/cart/apple")
    assert response.cookies[settings.SESSION_COOKIE_NAME]["max-age"] == 3600


def test_save_every_request_refreshes_the_cookie_with_a_touch_not_a_write() -> None:
    from django.test import override_settings

    client = Client()
    client.get("/cart/apple")
    token = session_cookie(client)
    updates = STORE.stats()["updates"]
    with override_settings(SESSION_SAVE_EVERY_REQUEST=True):
        response = client.get("/me")
    assert response.json() == {"user_id": None, "cart": ["apple"]}
    assert response.cookies[settings.SESSION_COOKIE_NAME].value == token
    assert response.cookies[settings.SESSION_COOKIE_NAME]["max-age"] == 3600
    assert STORE.stats()["updates"] == updates  # no data write
    assert "sessionid" not in client.get("/me").cookies  # without the setting: not re-sent


# -- revocation is final -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/destroyed-meanwhile", "/destroyed-by-owner"])
def test_a_session_revoked_during_a_request_is_not_recreated(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = Client()
    client.get("/login/ann")
    assert STORE.sessions_of("3") != []
    response = client.get(path)  # SessionInterrupted: Django answers 400
    assert response.status_code == 400
    assert "session was deleted before the request completed" in caplog.text
    assert len(STORE) == 0  # nothing was re-created from the request's data
    assert client.get("/me").json() == {"user_id": None, "cart": []}


# -- concurrent requests of one session merge ---------------------------------------------------


def test_a_concurrent_write_keeps_the_keys_this_request_did_not_touch() -> None:
    client = Client()
    client.get("/cart/apple")
    client.get("/race")
    token = session_cookie(client)
    assert token is not None
    assert json.loads(STORE.get(token) or b"") == {
        "cart": ["pear"],  # not touched here: the other request's value
        "theme": "dark",
        "note": "mine",
        "lang": "fr",
    }


def test_twenty_concurrent_requests_of_one_session_each_keep_their_key() -> None:
    from django.core.handlers.wsgi import WSGIHandler

    from live import at_once, request, wsgi_server

    n = 20
    BARRIER[:] = [threading.Barrier(n, timeout=20)]
    client = Client()
    client.get("/cart/apple")
    token = session_cookie(client)
    assert token is not None
    conflicts = STORE.stats()["conflicts"]
    cookie = f"{settings.SESSION_COOKIE_NAME}={token}"
    with wsgi_server(WSGIHandler()) as port:
        statuses = at_once(n, lambda i: request(port, "GET", f"/add/{i}", cookie, "testserver")[0])
    assert statuses == [200] * n
    data = json.loads(STORE.get(token) or b"")
    assert data == {"cart": ["apple"], **{f"key-{i}": i for i in range(n)}}
    assert STORE.stats()["conflicts"] > conflicts  # they did collide, and were merged


# -- owners ---------------------------------------------------------------------------------


def test_login_files_the_session_under_the_user_so_other_devices_can_be_logged_out() -> None:
    laptop, phone, other = Client(), Client(), Client()
    laptop.get("/login/ann")
    phone.get("/login/ann")
    other.get("/login/jo")
    listed = laptop.get("/devices").json()
    assert listed["this"] in listed["sessions"] and len(listed["sessions"]) == 2
    assert all(STORE.get(i) is None for i in listed["sessions"])  # ids, not tokens
    assert laptop.get("/devices/logout-others").json() == {"logged_out": 1}
    assert phone.get("/me").json() == {"user_id": None, "cart": []}
    assert laptop.get("/me").json()["user_id"] == "3"
    assert other.get("/me").json()["user_id"] == "2"  # another user's session: untouched
    assert len(STORE.sessions_of("3")) == 1


def test_logout_takes_the_session_off_its_owner() -> None:
    client = Client()
    client.get("/login/ann")
    assert len(STORE.sessions_of("3")) == 1
    client.get("/logout")
    assert STORE.sessions_of("3") == []


def owner_by_cart(data: dict[str, Any]) -> Any:
    return "has-a-cart" if data.get("cart") else None


@pytest.mark.parametrize("owner", [None, f"{__name__}.owner_by_cart", owner_by_cart])
def test_the_owner_hook_is_a_setting(owner: Any) -> None:
    from django.test import override_settings

    with override_settings(COATCHECK_OWNER=owner):
        client = Client()
        client.get("/login/ann")
        client.get("/cart/apple")
    assert STORE.sessions_of("3") == []  # not the default hook
    assert len(STORE.sessions_of("has-a-cart")) == (0 if owner is None else 1)


def test_the_async_api_on_a_store_on_redis_leaves_the_event_loop_free() -> None:
    import contextlib
    import os
    import signal

    from django.test import override_settings

    from redis_server import redis_server

    with redis_server() as redis:
        # Strict: every read asks Redis, which is stopped below, so a load waits the timeout.
        shared = Store("django test secret", idle_timeout=3600, redis_url=redis.url,
                       redis_timeout=0.5, redis_strict=True)  # fmt: skip
        key = shared.create(b'{"cart": ["apple"]}')
        assert redis.process is not None
        with override_settings(COATCHECK_STORE=shared):
            session = SessionStore(key)

            async def load_while_ticking() -> tuple[float, float]:
                gaps: list[float] = []
                loading = True

                async def ticker() -> None:
                    last = time.monotonic()
                    while loading:
                        await asyncio.sleep(0.005)
                        now = time.monotonic()
                        gaps.append(now - last)
                        last = now

                ticking = asyncio.create_task(ticker())
                await asyncio.sleep(0.02)
                started = time.monotonic()
                with contextlib.suppress(Exception):  # served or unavailable: not the point
                    await session.aload()
                waited = time.monotonic() - started
                loading = False
                await ticking
                return waited, max(gaps)

            os.kill(redis.process.pid, signal.SIGSTOP)
            try:
                waited, worst_gap = asyncio.run(load_while_ticking())
            finally:
                os.kill(redis.process.pid, signal.SIGCONT)
    assert waited >= 0.3, waited  # the load waited for Redis...
    assert worst_gap < 0.2, worst_gap  # ...in a worker thread, not on the event loop
