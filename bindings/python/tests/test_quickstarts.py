"""The README's quick starts, as written there, run end to end.

Each function body below is the README text (kept in step by hand: if you change one,
change the other).
"""

from __future__ import annotations

from typing import Any

# FastAPI resolves the string annotations of `from __future__ import annotations` in the
# module's namespace, so `Request` is imported here rather than in the quick start below.
from fastapi import FastAPI, Request


def flask_quickstart() -> Any:
    from flask import Flask, session

    from coatcheck import Store
    from coatcheck.flask import CoatcheckSession

    app = Flask(__name__)
    app.config["PERMANENT_SESSION_LIFETIME"] = 30 * 60  # idle timeout, seconds
    store = Store(["current secret", "previous secret"], idle_timeout=30 * 60)
    CoatcheckSession(app, store)

    @app.post("/login")
    def login() -> dict[str, Any]:
        session.regenerate()  # new session id at login (session fixation)
        session["user_id"] = 42
        return {"ok": True}

    @app.get("/me")
    def me() -> dict[str, Any]:
        return {"user_id": session.get("user_id")}

    @app.post("/logout")
    def logout() -> dict[str, Any]:
        session.clear()  # destroys the stored session and deletes the cookie
        return {"ok": True}

    return app, store


def fastapi_quickstart() -> Any:
    from coatcheck import Store
    from coatcheck.asgi import SessionMiddleware

    store = Store("a long random secret", idle_timeout=30 * 60)
    app = FastAPI()
    app.add_middleware(SessionMiddleware, store=store, max_age=30 * 60, https_only=False)

    @app.post("/login")
    async def login(request: Request) -> dict[str, Any]:
        request.session.regenerate()  # type: ignore[attr-defined]
        request.session["user_id"] = 42
        return {"ok": True}

    @app.get("/me")
    async def me(request: Request) -> dict[str, Any]:
        return {"user_id": request.session.get("user_id")}

    @app.post("/logout")
    async def logout(request: Request) -> dict[str, Any]:
        request.session.clear()
        return {"ok": True}

    return app, store


def test_flask_quickstart() -> None:
    app, store = flask_quickstart()
    client = app.test_client()
    client.post("/login")
    assert client.get("/me").json == {"user_id": 42}
    assert len(store) == 1
    client.post("/logout")
    assert client.get("/me").json == {"user_id": None}
    assert len(store) == 0


def test_fastapi_quickstart() -> None:
    from starlette.testclient import TestClient

    app, store = fastapi_quickstart()
    client = TestClient(app)
    client.post("/login")
    assert client.get("/me").json() == {"user_id": 42}
    assert len(store) == 1
    client.post("/logout")
    assert client.get("/me").json() == {"user_id": None}
    assert len(store) == 0
