"""The Django app of the multi-worker and restart tests: one module is the settings, the URLs
and the WSGI application (gunicorn tests.apps.shared_django:application)."""

import os

import django
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

settings.configure(
    DEBUG=False,
    SECRET_KEY="multi-worker test secret",
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["127.0.0.1"],
    INSTALLED_APPS=["django.contrib.sessions"],
    MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
    SESSION_ENGINE="coatcheck.django",
    COATCHECK_REDIS_URL=os.environ.get("COATCHECK_REDIS_URL") or None,
    COATCHECK_PERSIST_PATH=os.environ.get("COATCHECK_PERSIST_PATH") or None,
    COATCHECK_REDIS_TIMEOUT=float(os.environ.get("COATCHECK_REDIS_TIMEOUT") or 0.05),
    COATCHECK_OWNER=lambda data: data.get("user"),
)
django.setup()


def login(request: HttpRequest) -> HttpResponse:
    request.session.cycle_key()
    request.session["user"] = request.GET["user"]
    return HttpResponse("ok")


def write(request: HttpRequest) -> HttpResponse:
    if "user" not in request.session:
        return HttpResponse("not logged in")
    request.session["items"] = [*request.session.get("items", []), request.GET["item"]]
    return HttpResponse("ok")


def read(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {"user": request.session.get("user"), "items": request.session.get("items", []),
         "pid": os.getpid(), "connected": get_store().stats().get("tier_connected", 1)}
    )


def logout(request: HttpRequest) -> HttpResponse:
    request.session.flush()
    return HttpResponse("ok")


urlpatterns = [
    path("login", login),
    path("write", write),
    path("read", read),
    path("logout", logout),
]

from coatcheck.django import get_store  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
if settings.COATCHECK_REDIS_URL:
    # Built now, as an app that warms its store at startup builds it: under gunicorn --preload,
    # in the master before the workers are forked, so each worker uses a store made before its
    # fork. (Not with a restart log: `manage.py clearsessions` imports this module in a process
    # of its own, which must not open the directory the server holds.)
    get_store()
