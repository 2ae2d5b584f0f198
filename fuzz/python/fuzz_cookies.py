"""Atheris fuzzing of the Python token API and the cookie path of the Flask and Django backends
(issue 12): any bytes as a token or a session cookie.

- ``Store.unsign`` accepts a token only if it is exactly ``sign(id)`` of the id it returns, and
  ``get`` / ``touch`` / ``destroy`` answer a token that does not verify with None / False;
- a request to Flask or Django carrying any cookie is answered 200 (never 500), sees a session
  only for the one valid cookie, and leaves every stored session as it was.

Run: ``.venv/bin/python fuzz/python/fuzz_cookies.py -max_total_time=30`` (``make
fuzz-python-smoke``; ``make fuzz-python`` for the long budget).
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["coatcheck"]):
    import coatcheck
    import coatcheck.flask

import django
from django.conf import settings
from flask import Flask, session

SECRET = "fuzz secret"
STORE = coatcheck.Store([SECRET, "old fuzz secret"], idle_timeout=3600)

# One live session each, made through the real adapters; their cookies are the only valid ones.
flask_app = Flask(__name__)
flask_app.secret_key = SECRET
coatcheck.flask.CoatcheckSession(flask_app, store=STORE)


@flask_app.get("/login")
def flask_login() -> str:
    session["user"] = "ada"
    return "ok"


@flask_app.get("/")
def flask_read() -> str:
    return str(session.get("user"))


settings.configure(
    SECRET_KEY=SECRET,
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["testserver"],
    INSTALLED_APPS=["django.contrib.sessions"],
    MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
    SESSION_ENGINE="coatcheck.django",
    COATCHECK_STORE=STORE,
    DATABASES={},
)
django.setup()

from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.test import Client  # noqa: E402
from django.urls import path  # noqa: E402


def django_login(request: HttpRequest) -> HttpResponse:
    request.session["user"] = "bob"
    return HttpResponse("ok")


def django_read(request: HttpRequest) -> HttpResponse:
    return HttpResponse(str(request.session.get("user")))


urlpatterns = [path("login", django_login), path("", django_read)]

flask_client = flask_app.test_client()
flask_client.get("/login")
FLASK_COOKIE = flask_client.get_cookie("session").value
DJANGO_COOKIE = Client().get("/login").cookies["sessionid"].value
BEFORE = {token: STORE.get(token) for token in (FLASK_COOKIE, DJANGO_COOKIE)}
assert all(BEFORE.values()), BEFORE


def check_token(token: str) -> None:
    id_ = STORE.unsign(token)
    if id_ is not None:
        # Canonical only: nothing but the exact signature of the id verifies (under a secret).
        assert token in (STORE.sign(id_), coatcheck.Store("old fuzz secret", idle_timeout=1).sign(id_)), token
    elif token not in BEFORE:
        assert STORE.get(token) is None
        assert STORE.touch(token) is False
        assert STORE.destroy(token) is False


def check_cookie(raw: str) -> None:
    # A Cookie header carries latin-1 text; `;` ends the pair the way a browser would send it.
    value = raw.split(";")[0]
    flask = flask_app.test_client().get("/", headers={"Cookie": f"session={value}"})
    assert flask.status_code == 200, flask.status_code
    assert (flask.get_data(as_text=True) == "ada") == (value == FLASK_COOKIE), value
    django_response = Client(HTTP_COOKIE=f"sessionid={value}").get("/")
    assert django_response.status_code == 200, django_response.status_code
    assert (django_response.content == b"bob") == (value == DJANGO_COOKIE), value


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    text = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 300))
    check_token(text)
    check_token(FLASK_COOKIE[: len(text) % (len(FLASK_COOKIE) + 1)] + text)
    raw = fdp.ConsumeBytes(300).decode("latin-1")
    if "\r" not in raw and "\n" not in raw:
        check_cookie(raw)
    # No cookie, forged or not, changed a stored session.
    for token, value in BEFORE.items():
        assert STORE.get(token) == value
    assert len(STORE) == len(BEFORE), len(STORE)


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
