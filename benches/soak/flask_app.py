"""The Flask app of the soak (``make soak``, benches/soak/soak.js): the Express demo's pages and
answers in Flask, sessions in coatcheck with a restart log (or on the shared tier), served by gunicorn. Not a test.

Environment: ``COATCHECK_PERSIST_PATH`` (the restart log's directory) or ``COATCHECK_REDIS_URL``
(the shared tier), ``SESSION_IDLE_SECONDS`` (the sessions' idle timeout).
"""

from __future__ import annotations

import datetime
import html
import os

from flask import Flask, jsonify, redirect, request, session

import coatcheck.flask
from coatcheck import Store

SECRET = "soak secret, not for production"
IDLE_SECONDS = float(os.environ.get("SESSION_IDLE_SECONDS") or 30 * 60)

app = Flask(__name__)
app.secret_key = SECRET
app.config["PERMANENT_SESSION_LIFETIME"] = datetime.timedelta(seconds=IDLE_SECONDS)
# A larger form gets Flask's 413 before the view runs.
app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
store = Store(
    SECRET,
    idle_timeout=IDLE_SECONDS,
    max_sessions=100_000,
    persist_path=os.environ.get("COATCHECK_PERSIST_PATH") or None,
    redis_url=os.environ.get("COATCHECK_REDIS_URL") or None,
)
coatcheck.flask.CoatcheckSession(app, store, owner=lambda data: data.get("user"))


def page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>"
        f"<body><h1>{title}</h1>{body}</body></html>"
    )


@app.get("/")
def home() -> str:
    session["views"] = session.get("views", 0) + 1
    user = session.get("user")
    who = f"<p>Signed in as <b>{html.escape(user)}</b>.</p>" if user else "<p>Not signed in.</p>"
    return page("coatcheck soak", f'<p>Views: <b id="views">{session["views"]}</b></p>{who}')


@app.post("/login")
def login():  # type: ignore[no-untyped-def]
    user = (request.form.get("user") or "").strip()[:64]
    if not user:
        return page("Login", "<p>A name is required.</p>"), 400
    # A new id at login, keeping nothing from before (as the Express demo does).
    coatcheck.flask.regenerate()
    session.clear()
    session["user"] = user
    return redirect("/profile", 303)


@app.get("/profile")
def profile():  # type: ignore[no-untyped-def]
    user = session.get("user")
    if not user:
        return page("Profile", "<p>Not signed in.</p>"), 401
    note = html.escape(session.get("note", "(none)"))
    return page("Profile", f"<p>Name: <b>{html.escape(user)}</b></p><p>Note: {note}</p>")


@app.post("/note")
def note():  # type: ignore[no-untyped-def]
    if not session.get("user"):
        return page("Note", "<p>Not signed in.</p>"), 401
    session["note"] = request.form.get("note", "")
    return redirect("/profile", 303)


@app.post("/logout")
def logout():  # type: ignore[no-untyped-def]
    session.clear()
    return redirect("/", 303)


@app.get("/stats")
def stats():  # type: ignore[no-untyped-def]
    return jsonify(store.stats())
