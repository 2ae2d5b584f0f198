"""The Flask app of the multi-worker and restart tests: login, write, read, logout. Sessions on
Redis when COATCHECK_REDIS_URL is set, in a restart log when COATCHECK_PERSIST_PATH is, else in
each worker's own memory."""

import os

from flask import Flask, jsonify, request, session

import coatcheck.flask

app = Flask(__name__)
app.secret_key = "multi-worker test secret"
app.config["COATCHECK_REDIS_URL"] = os.environ.get("COATCHECK_REDIS_URL") or None
app.config["COATCHECK_PERSIST_PATH"] = os.environ.get("COATCHECK_PERSIST_PATH") or None
if os.environ.get("COATCHECK_REDIS_TIMEOUT"):
    app.config["COATCHECK_REDIS_TIMEOUT"] = float(os.environ["COATCHECK_REDIS_TIMEOUT"])
sessions = coatcheck.flask.CoatcheckSession(app)


@app.post("/login")
def login() -> str:
    coatcheck.flask.regenerate()
    session["user"] = request.args["user"]
    return "ok"


@app.post("/write")
def write() -> str:
    if "user" not in session:
        return "not logged in"
    session["items"] = [*session.get("items", []), request.args["item"]]
    return "ok"


@app.get("/read")
def read():  # type: ignore[no-untyped-def]
    assert sessions.store is not None
    connected = sessions.store.stats().get("tier_connected", 1)
    return jsonify(user=session.get("user"), items=session.get("items", []), pid=os.getpid(),
                   connected=connected)


@app.post("/logout")
def logout() -> str:
    session.clear()
    return "ok"
