"""ASGI: `coatcheck.asgi.SessionMiddleware` in a Starlette app, through Starlette's TestClient."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Callable

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.websockets import WebSocket
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient

from coatcheck import JSONSerializer, Store
from coatcheck.asgi import ServerSession, SessionMiddleware, current_session, regenerate


async def login(request: Request) -> JSONResponse:
    assert isinstance(request.session, ServerSession)
    regenerate(request)
    request.session["user"] = request.path_params["user"]
    return JSONResponse({"ok": True})


async def me(request: Request) -> JSONResponse:
    return JSONResponse({"user": request.session.get("user"), "cart": request.session.get("cart", [])})


async def add(request: Request) -> JSONResponse:
    request.session.setdefault("cart", []).append(request.path_params["item"])  # nested change
    return JSONResponse({"cart": request.session["cart"]})


async def logout(request: Request) -> JSONResponse:
    request.session.clear()
    return JSONResponse({"ok": True})


async def delete_cookie_logout(request: Request) -> JSONResponse:
    response = JSONResponse({"ok": True})
    response.delete_cookie("session")  # the logout of Starlette's cookie sessions
    return response


async def raw_set_cookie(request: Request) -> JSONResponse:
    """Sends the Set-Cookie header given in the query, as an app writing its own would."""
    request.session["seen"] = True
    response = JSONResponse({"ok": True})
    response.headers.append("set-cookie", request.query_params["header"])
    return response


async def remember_me(request: Request) -> JSONResponse:
    """A login that re-sends the session's cookie itself, with a longer Max-Age."""
    regenerate(request)
    request.session["user"] = request.path_params["user"]
    response = JSONResponse({"ok": True})
    response.set_cookie("session", current_session(request).token or "", max_age=30 * 86400)
    return response


async def blank_cookie_logout(request: Request) -> JSONResponse:
    request.session.clear()
    response = JSONResponse({"ok": True})
    response.set_cookie("session", "")  # blanked, not expired
    return response


async def logout_after_revocation(request: Request) -> JSONResponse:
    """A logout whose session another request destroyed while this one ran."""
    token = current_session(request).token
    assert token is not None
    request.session.get("user")
    current_session(request).store.destroy(token)
    request.session.clear()
    return JSONResponse({"ok": True})


async def plain_login(request: Request) -> JSONResponse:
    request.session.clear()  # Starlette's cookie-session login idiom
    request.session["user"] = request.path_params["user"]
    return JSONResponse({"ok": True})


async def nothing(request: Request) -> PlainTextResponse:
    return PlainTextResponse("no session use")


async def websocket_session(websocket: WebSocket) -> None:
    """Sends the user the session names, then whether a regenerate was allowed."""
    await websocket.accept()
    await websocket.send_text(str(websocket.session.get("user")))
    try:
        current_session(websocket).regenerate()
        await websocket.send_text("regenerated")
    except RuntimeError as error:
        await websocket.send_text(f"refused: {error}")
    await websocket.close()


def make_client(store: Store, **options: Any) -> TestClient:
    app = Starlette(
        routes=[
            Route("/login/{user}", login, methods=["POST"]),
            Route("/plain-login/{user}", plain_login, methods=["POST"]),
            Route("/me", me),
            Route("/cart/{item}", add, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/delete-cookie-logout", delete_cookie_logout, methods=["POST"]),
            Route("/raw-set-cookie", raw_set_cookie, methods=["POST"]),
            Route("/remember-me/{user}", remember_me, methods=["POST"]),
            Route("/blank-cookie-logout", blank_cookie_logout, methods=["POST"]),
            Route("/logout-after-revocation", logout_after_revocation, methods=["POST"]),
            Route("/deep/raw-set-cookie", raw_set_cookie, methods=["POST"]),
            Route("/nothing", nothing),
            WebSocketRoute("/ws", websocket_session),
        ],
        middleware=[Middleware(SessionMiddleware, store=store, **options)],
    )
    return TestClient(app)


def cookie(client: TestClient, name: str = "session") -> str | None:
    return client.cookies.get(name)


@pytest.fixture
def store() -> Store:
    return Store("asgi secret", idle_timeout=3600)


def test_login_creates_a_server_side_session_that_the_next_request_sees(store: Store) -> None:
    client = make_client(store)
    response = client.post("/login/ann")
    token = cookie(client)
    assert token is not None and store.unsign(token) is not None
    assert store.get(token) == b'{"user":"ann"}'
    header = response.headers["set-cookie"]
    assert "httponly" in header and "samesite=lax" in header
    # The store's idle timeout.
    assert "Max-Age=3600" in header
    assert response.headers["vary"] == "Cookie"
    assert client.get("/me").json() == {"user": "ann", "cart": []}


def test_a_token_signed_with_a_fallback_secret_is_sent_back_signed_with_the_current_one() -> None:
    rotated = Store(["new secret", "asgi secret"], idle_timeout=3600)
    session_id = rotated.unsign(rotated.create(b'{"user":"ann"}'))
    assert session_id is not None
    client = make_client(rotated)
    old_token = Store("asgi secret", idle_timeout=3600).sign(session_id)
    client.cookies.set("session", old_token, domain="testserver.local")
    assert client.get("/me").json() == {"user": "ann", "cart": []}
    assert cookie(client) == rotated.sign(session_id)


def test_logout_destroys_the_session(store: Store) -> None:
    client = make_client(store)
    client.post("/login/ann")
    token = cookie(client)
    assert token is not None
    response = client.post("/logout")
    assert "expires=Thu, 01 Jan 1970" in response.headers["set-cookie"]
    assert store.get(token) is None and len(store) == 0
    assert client.get("/me").json() == {"user": None, "cart": []}


def test_the_id_changes_at_login(store: Store) -> None:
    client = make_client(store)
    client.post("/cart/apple")
    before = cookie(client)
    client.post("/login/ann")
    after = cookie(client)
    assert before is not None and after is not None and after != before
    assert store.get(before) is None
    assert client.get("/me").json() == {"user": "ann", "cart": ["apple"]}
    assert len(store) == 1


@pytest.mark.parametrize(
    "tamper",
    [lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), lambda t: t.split(".")[0], lambda t: "junk"],
    ids=["signature", "unsigned", "garbage"],
)
def test_a_tampered_cookie_gets_a_fresh_empty_session(
    store: Store, tamper: Callable[[str], str]
) -> None:
    client = make_client(store)
    client.post("/login/ann")
    token = cookie(client)
    assert token is not None
    client.cookies.set("session", tamper(token), domain="testserver.local")
    assert client.get("/me").json() == {"user": None, "cart": []}
    client.post("/cart/pear")
    fresh = cookie(client)
    assert fresh is not None and fresh != token
    assert store.get(token) is not None and len(store) == 2


@pytest.mark.parametrize("options", [{}, {"max_age": None}], ids=["default", "browser-cookie"])
def test_the_stores_idle_timeout_is_the_sessions_idle_timeout(options: dict[str, Any]) -> None:
    # Margins of 0.15 s or more either way, so a loaded machine's late wake-ups do not matter.
    store = Store("asgi secret", idle_timeout=0.3)
    client = make_client(store, **options)
    client.post("/login/ann")
    token = cookie(client)
    assert token is not None

    def me() -> Any:
        # Max-Age is in whole seconds, which the test client's cookie jar counts from the
        # last whole second: at this scale the cookie is sent by hand, and the server decides.
        client.cookies.set("session", token, domain="testserver.local")
        return client.get("/me").json()

    for _ in range(4):  # 4 x 0.15 s: longer than the timeout, but each request slides it
        time.sleep(0.15)
        assert me() == {"user": "ann", "cart": []}
    time.sleep(0.45)
    assert me() == {"user": None, "cart": []}
    assert store.get(token) is None


def test_only_a_change_writes_and_sets_the_cookie(store: Store) -> None:
    client = make_client(store)
    client.post("/cart/apple")
    token = cookie(client)
    updates = store.stats()["updates"]
    for path in ("/me", "/nothing"):
        assert "set-cookie" not in client.get(path).headers
    assert store.stats()["updates"] == updates
    response = client.post("/cart/pear")  # a change inside a nested list counts...
    assert store.stats()["updates"] == updates + 1
    # ...and needs no Set-Cookie: the cookie the browser has is still current.
    assert "set-cookie" not in response.headers
    assert cookie(client) == token
    assert client.get("/me").json()["cart"] == ["apple", "pear"]


def test_options_shape_the_cookie(store: Store) -> None:
    client = make_client(
        store, session_cookie="sid", max_age=3600, same_site="strict", https_only=True,
        path="/", domain="testserver.local", partitioned=True,
    )  # fmt: skip
    header = client.post("/login/ann").headers["set-cookie"]
    assert header.startswith("sid=")
    assert "Max-Age=3600" in header and "samesite=strict" in header and "secure" in header
    assert "domain=testserver.local" in header and "partitioned" in header


def test_the_cookie_name_is_also_taken_under_the_name_earlier_versions_used(store: Store) -> None:
    client = make_client(store, cookie_name="sid")
    assert client.post("/login/ann").headers["set-cookie"].startswith("sid=")
    with pytest.raises(ValueError, match="not both"):
        SessionMiddleware(nothing, store, session_cookie="a", cookie_name="b")


def test_an_app_that_deletes_the_cookie_logs_out_and_the_token_stops_working() -> None:
    store = Store("asgi secret", idle_timeout=2.0)  # a cookie refresh is due after 0.5 s
    client = make_client(store)
    client.post("/login/ann")
    token = cookie(client)
    assert token is not None
    time.sleep(0.6)  # the refresh is due: it must not undo the app's deletion
    response = client.post("/delete-cookie-logout")
    headers = response.headers.get_list("set-cookie")
    assert len(headers) == 1 and 'session=""' in headers[0] and "Max-Age=0" in headers[0]
    assert cookie(client) is None
    assert store.get(token) is None
    # A copy of the token, replayed, opens nothing.
    client.cookies.set("session", token)
    assert client.get("/me").json() == {"user": None, "cart": []}


@pytest.mark.parametrize(
    "header",
    [
        "session=; Path=/; Max-Age=0; Partitioned",  # an attribute older parsers do not know
        "session=x; Priority=High; Max-Age=0; Path=/",
        "session=x; Path=/; Expires=Thursday, 01-Jan-70 00:00:00 GMT",  # RFC 850
        "session=x; Path=/; Max-Age=soon; Expires=Thu, 01 Jan 1970 00:00:00 +0000",
        "session=x; Max-Age=-1; Domain=",  # no Path from /raw-set-cookie: Path=/
        "session=x; Path=/; Expires=Thu, 01 Jan 1970 00:00:00",  # no zone: UTC, not local
        "session=x; Path=/; Max-Age=0; Max-Age=bad",  # an invalid attribute is ignored
    ],
)
def test_any_spelling_of_a_deletion_of_this_cookie_logs_out(store: Store, header: str) -> None:
    client = make_client(store)
    client.post("/login/ann")
    token = cookie(client)
    assert token is not None
    response = client.post("/raw-set-cookie", params={"header": header})
    assert response.headers.get_list("set-cookie") == [header]
    assert store.get(token) is None


@pytest.mark.parametrize(
    ("path", "header"),
    [
        ("/raw-set-cookie", "session=; Path=/; Domain=old.example; Max-Age=0"),  # another domain
        ("/raw-set-cookie", "session=; Path=/admin; Max-Age=0"),  # another path
        ("/deep/raw-set-cookie", "session=; Max-Age=0"),  # no Path: /deep, another cookie
        ("/raw-set-cookie", "session2=; Path=/; Max-Age=0"),  # another name
    ],
)
def test_a_deletion_of_another_cookie_of_the_name_leaves_the_session(
    store: Store, path: str, header: str
) -> None:
    client = make_client(store)
    client.post("/login/ann")
    token = cookie(client)
    assert token is not None
    client.post(path, params={"header": header})
    assert store.get(token) is not None
    assert client.get("/me").json()["user"] == "ann"


def test_a_cookie_the_app_sets_itself_stands_and_the_session_is_saved(store: Store) -> None:
    client = make_client(store)
    client.post("/cart/apple")
    # "Remember me": the app re-sends the moved session's token with a longer Max-Age.
    response = client.post("/remember-me/ann")
    headers = response.headers.get_list("set-cookie")
    assert len(headers) == 1 and "Max-Age=2592000" in headers[0]
    assert client.get("/me").json() == {"user": "ann", "cart": ["apple"]}
    assert len(store) == 1
    # A logout that blanks the cookie rather than expiring it still destroys the session.
    token = cookie(client)
    assert token is not None
    response = client.post("/blank-cookie-logout")
    assert response.headers.get_list("set-cookie")[0].startswith('session="";')
    assert store.get(token) is None and len(store) == 0
    # A new session under a token the app does not send could never be reached: not kept.
    header = "session=the-apps-own; Path=/; Max-Age=60"
    response = client.post("/raw-set-cookie", params={"header": header})
    assert response.headers.get_list("set-cookie") == [header]
    assert len(store) == 0


def test_a_logout_of_a_session_revoked_during_the_request_deletes_the_cookie(store: Store) -> None:
    client = make_client(store)
    client.post("/login/ann")
    response = client.post("/logout-after-revocation")
    assert "expires=Thu, 01 Jan 1970" in response.headers["set-cookie"]
    assert cookie(client) is None


def test_a_logout_of_a_session_already_gone_still_deletes_the_cookie(store: Store) -> None:
    client = make_client(store)
    client.post("/login/ann")
    token = cookie(client)
    assert token is not None and store.destroy(token)  # e.g. destroy_owner from another device
    response = client.post("/logout")
    assert "expires=Thu, 01 Jan 1970" in response.headers["set-cookie"]
    assert cookie(client) is None
    # A request that only finds its session gone leaves the cookie alone: it may be racing a
    # login that moved the session, whose new cookie it must not delete.
    client.cookies.set("session", token)
    assert "set-cookie" not in client.get("/me").headers


def test_fastapi_style_add_middleware(store: Store) -> None:
    app = Starlette(routes=[Route("/cart/{item}", add, methods=["POST"]), Route("/me", me)])
    app.add_middleware(SessionMiddleware, store=store)
    client = TestClient(app)
    client.post("/cart/apple")
    assert client.get("/me").json() == {"user": None, "cart": ["apple"]}


# -- lifetimes ------------------------------------------------------------------------------


@pytest.mark.parametrize("max_age", [60, 3599, 7200])
def test_a_max_age_that_contradicts_the_store_is_an_error_at_setup(
    store: Store, max_age: int
) -> None:
    with pytest.raises(ValueError, match="idle_timeout"):
        SessionMiddleware(nothing, store=store, max_age=max_age)


@pytest.mark.parametrize("max_age", [0, -1])
def test_a_max_age_of_zero_or_less_sends_an_expired_cookie_and_stores_nothing(
    store: Store, max_age: int
) -> None:
    # Starlette's meaning of max_age <= 0: the session does not outlive its request.
    client = make_client(store, max_age=max_age)
    response = client.post("/login/ann")
    assert f"Max-Age={max_age};" in response.headers["set-cookie"]
    assert len(store) == 0
    assert client.get("/me").json()["user"] is None


def test_without_max_age_the_cookie_lasts_until_the_browser_closes_and_is_sent_once(
    store: Store,
) -> None:
    client = make_client(store, max_age=None)
    header = client.post("/cart/apple").headers["set-cookie"]
    assert "Max-Age" not in header and "expires" not in header.lower()
    assert "set-cookie" not in client.post("/cart/pear").headers
    assert "set-cookie" not in client.get("/me").headers
    header = client.post("/login/ann").headers["set-cookie"]  # a new id: sent again
    assert "Max-Age" not in header


def test_the_cookie_is_refreshed_after_a_quarter_of_max_age_but_not_before() -> None:
    store = Store("asgi secret", idle_timeout=2.0)  # a refresh at most every 0.5 s
    client = make_client(store)
    client.post("/cart/apple")
    token = cookie(client)
    updates = store.stats()["updates"]
    time.sleep(0.1)
    assert "set-cookie" not in client.get("/me").headers  # 0.1 s: not yet
    time.sleep(0.55)
    response = client.get("/me")  # past 0.5 s: refreshed, with the same token
    header = response.headers["set-cookie"]
    assert header.startswith(f"session={token};") and "Max-Age=2" in header
    assert response.headers["vary"] == "Cookie"
    assert store.stats()["updates"] == updates  # the refresh wrote no data
    assert "set-cookie" not in client.get("/me").headers  # and the next one is not due yet
    time.sleep(0.55)
    assert "set-cookie" in client.get("/nothing").headers  # due: even without a session use


def test_vary_cookie_only_when_the_session_was_used(store: Store) -> None:
    client = make_client(store, max_age=None)
    client.post("/cart/apple")
    assert client.get("/me").headers["vary"] == "Cookie"
    assert "vary" not in client.get("/nothing").headers


# -- revocation is final ----------------------------------------------------------------------


async def destroyed_meanwhile(request: Request) -> JSONResponse:
    session = current_session(request)
    assert session.token is not None
    session.store.destroy(session.token)  # another tab's logout, while this request runs
    session["cart"] = ["apple"]
    return JSONResponse({"ok": True})


async def destroyed_by_owner(request: Request) -> JSONResponse:
    session = current_session(request)
    session.store.destroy_owner(session["user"])  # "log out everywhere" from another device
    session["cart"] = ["apple"]
    return JSONResponse({"ok": True})


@pytest.mark.parametrize("view", [destroyed_meanwhile, destroyed_by_owner])
def test_a_session_revoked_during_a_request_is_not_recreated(store: Store, view: Any) -> None:
    app = Starlette(
        routes=[
            Route("/login/{user}", login, methods=["POST"]),
            Route("/write", view, methods=["POST"]),
            Route("/me", me),
        ],
        middleware=[
            Middleware(SessionMiddleware, store=store, owner=lambda data: data.get("user"))
        ],
    )
    client = TestClient(app)
    client.post("/login/ann")
    assert cookie(client) is not None and store.sessions_of("ann") != []
    dead = cookie(client)
    response = client.post("/write")
    assert response.status_code == 200
    assert "set-cookie" not in response.headers  # the dead cookie is refused, not deleted
    assert cookie(client) == dead
    assert len(store) == 0  # nothing was re-created from the request's data
    assert client.get("/me").json() == {"user": None, "cart": []}


def test_data_set_after_clear_is_a_new_session_under_a_new_id(store: Store) -> None:
    client = make_client(store)
    client.post("/cart/apple")
    planted = cookie(client)  # what an attacker could have planted in the victim's browser
    assert planted is not None
    client.post("/plain-login/ann")
    fresh = cookie(client)
    assert fresh is not None and fresh != planted
    assert store.get(planted) is None
    assert client.get("/me").json() == {"user": "ann", "cart": []}
    assert len(store) == 1


# -- concurrent requests of one session merge ---------------------------------------------------


async def race(request: Request) -> JSONResponse:
    session = current_session(request)
    assert session.token is not None
    session.get("user")
    # Another request of the same session writes first, while this one runs.
    session.store.set(session.token, b'{"user":"ann","cart":["pear"],"theme":"dark","note":"x"}')
    session["note"] = "mine"  # the same key changed by both: the last writer wins
    del session["user"]  # removed here: stays removed
    session["lang"] = "fr"  # added here
    return JSONResponse({"ok": True})


def test_a_concurrent_write_keeps_the_keys_this_request_did_not_touch(store: Store) -> None:
    app = Starlette(
        routes=[
            Route("/login/{user}", login, methods=["POST"]),
            Route("/cart/{item}", add, methods=["POST"]),
            Route("/race", race, methods=["POST"]),
        ],
        middleware=[Middleware(SessionMiddleware, store=store)],
    )
    client = TestClient(app)
    client.post("/login/ann")
    client.post("/cart/apple")
    client.post("/race")
    token = cookie(client)
    assert token is not None
    assert JSONSerializer().loads(store.get(token) or b"") == {
        "cart": ["pear"],  # not touched here: the other request's value
        "theme": "dark",
        "note": "mine",
        "lang": "fr",
    }


def test_twenty_concurrent_requests_of_one_session_each_keep_their_key(store: Store) -> None:
    from live import asgi_server, at_once, request

    n = 20
    arrived = 0
    everyone_loaded = asyncio.Event()

    async def add_key(request: Request) -> JSONResponse:
        nonlocal arrived
        request.session.get("user")  # loaded the same version as the 19 others...
        arrived += 1
        if arrived == n:
            everyone_loaded.set()
        await asyncio.wait_for(everyone_loaded.wait(), 20)
        request.session[f"key-{request.path_params['i']}"] = request.path_params["i"]
        return JSONResponse({"ok": True})  # ...and each writes its own key

    app = Starlette(
        routes=[
            Route("/login/{user}", login, methods=["POST"]),
            Route("/add/{i:int}", add_key, methods=["POST"]),
        ],
        middleware=[Middleware(SessionMiddleware, store=store)],
    )
    client = TestClient(app)
    client.post("/login/ann")
    token = cookie(client)
    assert token is not None
    conflicts = store.stats()["conflicts"]
    with asgi_server(app) as port:
        statuses = at_once(
            n, lambda i: request(port, "POST", f"/add/{i}", f"session={token}")[0]
        )
    assert statuses == [200] * n
    data = JSONSerializer().loads(store.get(token) or b"")
    assert data == {"user": "ann", **{f"key-{i}": i for i in range(n)}}
    assert store.stats()["conflicts"] >= n - 1  # they did collide, and were merged


# -- owners -------------------------------------------------------------------------------------


def test_an_int_owner_is_filed_as_text_and_a_bool_owner_is_a_type_error(store: Store) -> None:
    async def set_owner(request: Request) -> JSONResponse:
        request.session["uid"] = [True, 7][request.path_params["n"]]
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[Route("/set/{n:int}", set_owner, methods=["POST"])],
        middleware=[Middleware(SessionMiddleware, store=store, owner=lambda d: d.get("uid"))],
    )
    TestClient(app).post("/set/1")
    assert len(store.sessions_of("7")) == 1
    with pytest.raises(TypeError, match="bool"):
        TestClient(app).post("/set/0")


def raw_get(client: TestClient, path: str, cookie_header: bytes) -> tuple[int, Any]:
    """A GET straight through the ASGI app with `cookie_header` as the Cookie header's raw bytes
    (an HTTP client would refuse some of them; a server hands them over as they came)."""
    import json

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"cookie", cookie_header)],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(client.app(scope, receive, send))  # type: ignore[arg-type]
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body)


def test_cookies_of_every_bad_kind_reach_no_session_and_leave_the_real_one_as_it_was(
    store: Store,
) -> None:
    client = make_client(store)
    client.post("/login/ann")
    client.post("/cart/tea")
    token = cookie(client)
    assert token is not None
    other = Store("another secret", idle_timeout=3600)
    session_id = store.unsign(token)
    assert session_id is not None
    bad = {
        "empty": b"session=",
        "huge": b"session=" + b"A" * 20_000,
        "non-ascii": "session=é.ü€".encode(),
        "invalid utf-8": b"session=\xff\xfe\xc3." + token.encode(),
        "nul": b"session=" + token.encode()[:5] + b"\x00" + token.encode()[6:],
        "other secret": b"session=" + other.sign(session_id).encode(),
    }
    before = store.get_with_version(token)
    for kind, header in bad.items():
        status, body = raw_get(client, "/me", header)
        assert (status, body) == (200, {"user": None, "cart": []}), kind
    assert store.get_with_version(token) == before and len(store) == 1
    assert client.get("/me").json() == {"user": "ann", "cart": ["tea"]}


def test_a_destroyed_cookie_sent_again_stays_logged_out(store: Store) -> None:
    client = make_client(store)
    client.post("/login/ann")
    token = cookie(client)
    assert token is not None
    client.post("/logout")
    client.cookies.set("session", token, domain="testserver.local")
    assert client.get("/me").json() == {"user": None, "cart": []}
    assert store.get(token) is None and len(store) == 0


def test_a_store_that_syncs_every_change_to_disk_is_used_off_the_event_loop(tmp_path: Any) -> None:
    # persist_fsync="always" waits for the disk in every write: like a store on Redis, it is
    # called from a worker thread, never from the event loop's.
    used_from: set[int] = set()

    class Recording(JSONSerializer):
        def dumps(self, obj: Any) -> bytes:
            used_from.add(threading.get_ident())
            return super().dumps(obj)

    loop_threads: set[int] = set()

    async def write(request: Request) -> JSONResponse:
        loop_threads.add(threading.get_ident())
        request.session["n"] = request.session.get("n", 0) + 1
        return JSONResponse({"n": request.session["n"]})

    store = Store("s", idle_timeout=60, persist_path=tmp_path / "sessions", persist_fsync="always")
    assert store.waits_on_io and not Store("s", idle_timeout=60).waits_on_io
    app = Starlette(
        routes=[Route("/write", write, methods=["POST"])],
        middleware=[Middleware(SessionMiddleware, store=store, serializer=Recording())],
    )
    # One event loop thread for every request (thread ids are reused once a thread ends).
    with TestClient(app) as client:
        assert [client.post("/write").json()["n"] for _ in range(3)] == [1, 2, 3]
        assert len(loop_threads) == 1 and used_from and not used_from & loop_threads


def test_a_websocket_reads_the_session_but_cannot_move_it_to_a_token_it_cannot_send(
    store: Store,
) -> None:
    client = make_client(store)
    client.post("/login/ann")
    token = cookie(client)
    with client.websocket_connect("/ws") as websocket:
        assert websocket.receive_text() == "ann"
        assert websocket.receive_text().startswith("refused: a session cannot be regenerated")
    assert cookie(client) == token
    assert client.get("/me").json()["user"] == "ann", "the websocket logged the user out"


async def asgi_request(app: Any, method: str, path: str, cookie: str | None = None) -> tuple[int, list[str]]:
    """One HTTP request straight through the ASGI interface: the status and the Set-Cookie
    values. Requests made this way run on the caller's event loop, concurrently if the caller
    makes them so (the test client runs each on a loop of its own)."""
    headers = [(b"host", b"test")] + ([(b"cookie", cookie.encode())] if cookie else [])
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": headers, "client": ("127.0.0.1", 1), "server": ("test", 80),
    }
    asked = False

    async def receive() -> dict[str, Any]:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client never disconnects
        raise AssertionError("unreachable")

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    cookies = [v.decode() for k, v in start["headers"] if k.lower() == b"set-cookie"]
    return start["status"], cookies


def test_a_request_waiting_on_a_stalled_redis_leaves_the_event_loop_free() -> None:
    # Redis stops answering (SIGSTOP) while a logged-in user's request reads its session: that
    # read waits on a worker thread, and the event loop goes on serving another client.
    import os
    import signal

    from redis_server import redis_server

    with redis_server() as redis:
        process = redis.process
        assert process is not None
        # redis_strict: every read asks Redis, so the logged-in request must wait for it.
        store = Store("s", idle_timeout=60, redis_url=redis.url, redis_timeout=1.0, redis_strict=True)
        app = make_client(store).app

        async def scenario() -> tuple[float, bool, int]:
            status, cookies = await asgi_request(app, "POST", "/login/ann")
            assert status == 200 and cookies, cookies
            session = cookies[0].split(";")[0]
            assert (await asgi_request(app, "GET", "/me", session))[0] == 200
            os.kill(process.pid, signal.SIGSTOP)
            try:
                waiting = asyncio.create_task(asgi_request(app, "GET", "/me", session))
                await asyncio.sleep(0.05)  # the session read is on its way to Redis
                started = time.monotonic()
                assert (await asgi_request(app, "GET", "/nothing"))[0] == 200
                served_in = time.monotonic() - started
                still_waiting = not waiting.done()
            finally:
                os.kill(process.pid, signal.SIGCONT)
            return served_in, still_waiting, (await waiting)[0]

        served_in, still_waiting, status = asyncio.run(scenario())
        assert still_waiting, "the logged-in request did not wait on Redis"
        assert served_in < 0.5, f"another request waited {served_in:.3f} s for the event loop"
        assert status in (200, 500, 503), status
