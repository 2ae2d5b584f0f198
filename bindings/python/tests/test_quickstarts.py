"""The README's quick starts, as written there, run end to end.

Each function body below is the README text, type-checked by mypy (kept in step by hand: if
you change one, change the other); the last test runs the README's blocks themselves, exactly
as written. The Django quick start is settings; its "your devices" views are in
test_django.py, which runs them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import pytest
from starlette.testclient import TestClient

# FastAPI resolves the string annotations of `from __future__ import annotations` in the
# module's namespace, so `Request` is imported here rather than in the quick start below.
from fastapi import FastAPI, Request


def flask_quickstart() -> Any:
    from flask import Flask, session

    from coatcheck import Store
    from coatcheck.flask import CoatcheckSession, current_session, regenerate

    app = Flask(__name__)
    store = Store(["current secret", "previous secret"], idle_timeout=30 * 60)
    CoatcheckSession(app, store, owner=lambda data: data.get("user_id"))

    @app.post("/login")
    def login() -> dict[str, Any]:
        regenerate()  # new session id at login (session fixation)
        session["user_id"] = 42  # files the session under its owner, "42"
        return {"ok": True}

    @app.get("/me")
    def me() -> dict[str, Any]:
        return {"user_id": session.get("user_id")}

    @app.post("/logout")
    def logout() -> dict[str, Any]:
        session.clear()  # destroys the stored session and deletes the cookie
        return {"ok": True}

    # Your devices: the ids of the user's sessions, and "log out the others".
    @app.get("/devices")
    def devices() -> dict[str, Any]:
        return {
            "sessions": store.sessions_of(str(session["user_id"])),
            "this": current_session().session_id,
        }

    @app.post("/devices/logout-others")
    def logout_others() -> dict[str, Any]:
        n = store.destroy_owner(str(session["user_id"]), except_token=current_session().token)
        return {"logged_out": n}

    return app, store


def fastapi_quickstart() -> Any:
    from coatcheck import Store
    from coatcheck.asgi import SessionMiddleware, current_session, regenerate

    store = Store("a long random secret", idle_timeout=30 * 60)
    app = FastAPI()
    app.add_middleware(
        SessionMiddleware, store=store, https_only=False, owner=lambda data: data.get("user_id")
    )

    @app.post("/login")
    async def login(request: Request) -> dict[str, Any]:
        regenerate(request)  # new session id at login (session fixation)
        request.session["user_id"] = 42  # files the session under its owner, "42"
        return {"ok": True}

    @app.get("/me")
    async def me(request: Request) -> dict[str, Any]:
        return {"user_id": request.session.get("user_id")}

    @app.post("/logout")
    async def logout(request: Request) -> dict[str, Any]:
        request.session.clear()  # destroys the stored session and deletes the cookie
        return {"ok": True}

    # Your devices: the ids of the user's sessions, and "log out the others".
    @app.get("/devices")
    async def devices(request: Request) -> dict[str, Any]:
        return {
            "sessions": store.sessions_of(str(request.session["user_id"])),
            "this": current_session(request).session_id,
        }

    @app.post("/devices/logout-others")
    async def logout_others(request: Request) -> dict[str, Any]:
        token = current_session(request).token
        n = store.destroy_owner(str(request.session["user_id"]), except_token=token)
        return {"logged_out": n}

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


def test_flask_quickstart_devices() -> None:
    app, store = flask_quickstart()
    laptop, phone = app.test_client(), app.test_client()
    laptop.post("/login")
    phone.post("/login")
    listed = laptop.get("/devices").json
    assert len(listed["sessions"]) == 2 and listed["this"] in listed["sessions"]
    assert laptop.post("/devices/logout-others").json == {"logged_out": 1}
    assert phone.get("/me").json == {"user_id": None}
    assert laptop.get("/me").json == {"user_id": 42}
    assert laptop.get("/devices").json["sessions"] == [listed["this"]]


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


def test_fastapi_quickstart_devices() -> None:
    from starlette.testclient import TestClient

    app, store = fastapi_quickstart()
    laptop, phone = TestClient(app), TestClient(app)
    laptop.post("/login")
    phone.post("/login")
    listed = laptop.get("/devices").json()
    assert len(listed["sessions"]) == 2 and listed["this"] in listed["sessions"]
    assert laptop.post("/devices/logout-others").json() == {"logged_out": 1}
    assert phone.get("/me").json() == {"user_id": None}
    assert laptop.get("/me").json() == {"user_id": 42}
    assert laptop.get("/devices").json()["sessions"] == [listed["this"]]


# -- the README's own text --------------------------------------------------------------------
# The copies above are type-checked; these run the README's code blocks exactly as written, so
# that the two cannot drift apart unnoticed.

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_app(first_line: str, devices_marker: str) -> dict[str, Any]:
    """Executes the README's quick start that begins with ``first_line`` and then its "your
    devices" block marked ``devices_marker``; the names they define."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    (quick,) = [b for b in blocks if b.startswith(first_line)]
    (devices,) = [b for b in blocks if devices_marker in b.splitlines()[0]]
    namespace: dict[str, Any] = {"__name__": "readme"}
    exec(compile(quick + devices, str(README), "exec"), namespace)
    return namespace


def json_of(response: Any) -> Any:
    """The JSON body of a Flask (``.json``) or Starlette (``.json()``) test response."""
    return response.json() if callable(response.json) else response.json


@pytest.mark.parametrize(
    "first_line, marker, client_of",
    [
        ("from flask import", "# Flask", lambda app: app.test_client()),
        # https: the quick start's cookie is https_only.
        ("from fastapi import", "# FastAPI", lambda app: TestClient(app, "https://testserver")),
    ],
    ids=["flask", "fastapi"],
)
def test_the_readme_quick_start_as_written_logs_in_lists_devices_and_logs_out_the_others(
    first_line: str, marker: str, client_of: Callable[[Any], Any]
) -> None:
    names = readme_app(first_line, marker)
    app, store = names["app"], names["store"]
    laptop, phone = client_of(app), client_of(app)
    laptop.post("/login")
    phone.post("/login")
    listed = json_of(laptop.get("/devices"))
    assert len(listed["sessions"]) == 2 and listed["this"] in listed["sessions"]
    assert json_of(laptop.post("/devices/logout-others")) == {"logged_out": 1}
    assert len(store) == 1
    laptop.post("/logout")
    assert len(store) == 0
