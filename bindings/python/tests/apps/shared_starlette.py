"""The Starlette app of the multi-worker test (uvicorn --workers 4)."""

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

import coatcheck
import coatcheck.asgi


async def login(request: Request) -> PlainTextResponse:
    await coatcheck.asgi.regenerate_async(request)
    request.session["user"] = request.query_params["user"]
    return PlainTextResponse("ok")


async def write(request: Request) -> PlainTextResponse:
    if "user" not in request.session:
        return PlainTextResponse("not logged in")
    request.session["items"] = [*request.session.get("items", []), request.query_params["item"]]
    return PlainTextResponse("ok")


async def read(request: Request) -> JSONResponse:
    return JSONResponse(
        {"user": request.session.get("user"), "items": request.session.get("items", []),
         "pid": os.getpid(), "connected": store.stats().get("tier_connected", 1)}
    )


async def logout(request: Request) -> PlainTextResponse:
    request.session.clear()
    return PlainTextResponse("ok")


store = coatcheck.Store(
    "multi-worker test secret",
    idle_timeout=3600,
    redis_url=os.environ.get("COATCHECK_REDIS_URL") or None,
    redis_timeout=float(os.environ.get("COATCHECK_REDIS_TIMEOUT") or 0.05),
)
app = Starlette(
    routes=[
        Route("/login", login, methods=["POST"]),
        Route("/write", write, methods=["POST"]),
        Route("/read", read),
        Route("/logout", logout, methods=["POST"]),
    ]
)
app.add_middleware(coatcheck.asgi.SessionMiddleware, store=store)
