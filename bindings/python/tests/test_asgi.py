"""ASGI: `coatcheck.asgi.SessionMiddleware` in a Starlette app, through Starlette's TestClient."""

from __future__ import annotations

import time
from typing import Any, Callable

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from coatcheck import Store
from coatcheck.asgi import ServerSession, SessionMiddleware


async def login(request: Request) -> JSONResponse:
    session = request.session
    assert isinstance(session, ServerSession)
    session.regenerate()
    session["user"] = request.path_params["user"]
    return JSONResponse({"ok": True})


async def me(request: Request) -> JSONResponse:
    return JSONResponse({"user": request.session.get("user"), "cart": request.session.get("cart", [])})


async def add(request: Request) -> JSONResponse:
    request.session.setdefault("cart", []).append(request.path_params["item"])  # nested change
    return JSONResponse({"cart": request.session["cart"]})


async def logout(request: Request) -> JSONResponse:
    request.session.clear()
    return JSONResponse({"ok": True})


async def nothing(request: Request) -> PlainTextResponse:
    return PlainTextResponse("no session use")


def make_client(store: Store, **options: Any) -> TestClient:
    app = Starlette(
        routes=[
            Route("/login/{user}", login, methods=["POST"]),
            Route("/me", me),
            Route("/cart/{item}", add, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/nothing", nothing),
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
    assert "httponly" in header and "samesite=lax" in header and "Max-Age=1209600" in header
    assert client.get("/me").json() == {"user": "ann", "cart": []}


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


def test_an_expired_session_is_gone() -> None:
    store = Store("asgi secret", idle_timeout=0.2)
    client = make_client(store, max_age=None)  # the store's idle timeout applies
    client.post("/login/ann")
    token = cookie(client)
    assert token is not None
    time.sleep(0.3)
    assert client.get("/me").json() == {"user": None, "cart": []}
    assert store.get(token) is None


def test_only_a_change_writes_and_sets_the_cookie(store: Store) -> None:
    client = make_client(store)
    client.post("/cart/apple")
    token = cookie(client)
    updates = store.stats()["updates"]
    for path in ("/me", "/nothing"):
        assert "set-cookie" not in client.get(path).headers
    assert store.stats()["updates"] == updates
    response = client.post("/cart/pear")  # a change inside a nested list counts
    assert "set-cookie" in response.headers
    assert cookie(client) == token
    assert store.stats()["updates"] == updates + 1
    assert client.get("/me").json()["cart"] == ["apple", "pear"]


def test_options_shape_the_cookie(store: Store) -> None:
    client = make_client(
        store, cookie_name="sid", max_age=60, same_site="strict", https_only=True,
        path="/", domain="testserver.local",
    )  # fmt: skip
    header = client.post("/login/ann").headers["set-cookie"]
    assert header.startswith("sid=")
    assert "Max-Age=60" in header and "samesite=strict" in header and "secure" in header
    assert "domain=testserver.local" in header


def test_fastapi_style_add_middleware(store: Store) -> None:
    app = Starlette(routes=[Route("/cart/{item}", add, methods=["POST"]), Route("/me", me)])
    app.add_middleware(SessionMiddleware, store=store)
    client = TestClient(app)
    client.post("/cart/apple")
    assert client.get("/me").json() == {"user": None, "cart": ["apple"]}
