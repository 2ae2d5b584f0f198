"""The Flask app `bench.py` serves under waitress, once per session backend.

Run by bench.py as ``python flask_app.py CONTENDER PORT [REDIS_PORT]``; not a test.
Routes: ``POST /login`` stores a ~200 B session, ``GET /read`` reads it, ``POST /write``
changes it (a counter).
"""

from __future__ import annotations

import sys

from flask import Flask, jsonify, session

SECRET = "benchmark secret, not for production"


def make_app(contender: str, redis_port: int | None) -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = SECRET
    if contender == "coatcheck":
        from coatcheck import Store
        from coatcheck.flask import CoatcheckSession

        CoatcheckSession(app, Store(SECRET, idle_timeout=3600))
    elif contender == "flask-session-cachelib":
        from cachelib import SimpleCache
        from flask_session import Session

        app.config.update(SESSION_TYPE="cachelib", SESSION_CACHELIB=SimpleCache(threshold=1_000_000))
        Session(app)
    elif contender == "flask-session-redis":
        from flask_session import Session
        from redis import Redis

        app.config.update(SESSION_TYPE="redis", SESSION_REDIS=Redis(host="127.0.0.1", port=redis_port))
        Session(app)
    elif contender != "cookie":
        raise SystemExit(f"unknown contender {contender}")

    @app.post("/login")
    def login() -> object:
        session["user"] = "user-42"
        session["roles"] = ["reader", "writer"]
        session["prefs"] = {"theme": "dark", "lang": "en", "tz": "Europe/Paris"}
        session["cart"] = ["sku-%04d" % i for i in range(8)]
        session["n"] = 0
        return jsonify(ok=True)

    @app.get("/read")
    def read() -> object:
        return jsonify(user=session.get("user"), n=session.get("n"))

    @app.post("/write")
    def write() -> object:
        session["n"] = session.get("n", 0) + 1
        return jsonify(n=session["n"])

    return app


if __name__ == "__main__":
    import logging

    from waitress import serve

    logging.getLogger("waitress").setLevel(logging.ERROR)  # "Task queue depth" is expected here

    name, port = sys.argv[1], int(sys.argv[2])
    redis_port = int(sys.argv[3]) if len(sys.argv) > 3 else None
    serve(make_app(name, redis_port), host="127.0.0.1", port=port, threads=4, _quiet=True)
