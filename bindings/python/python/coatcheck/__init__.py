"""coatcheck: an embedded server-side session store.

`Store` keeps sessions in this process, in a lock-striped table written in Rust, and hands out
signed tokens for cookies. `coatcheck.flask`, `coatcheck.django` and `coatcheck.asgi` plug it
into those frameworks.

A store keeps sessions in one process unless it is given ``redis_url``: then every process
and host on that Redis shares them (gunicorn ``-w 4``, uvicorn ``--workers``, several
containers), with reads still answered in-process from a near cache. A `Store` built before
``os.fork()`` (gunicorn ``--preload``) keeps working in the child: on its own as the child's
copy, or on Redis with a connection of the child's own.
"""

from __future__ import annotations

from coatcheck._native import (
    BadSignatureError,
    ConflictError,
    InvalidArgumentError,
    InvalidConfigError,
    InvalidIdError,
    NotFoundError,
    SessionError,
    Store,
    StoreFullError,
    TooLargeError,
    UnavailableError,
    __version__,
)
from coatcheck.serializers import JSONSerializer, Serializer

__all__ = [
    "BadSignatureError",
    "ConflictError",
    "InvalidArgumentError",
    "InvalidConfigError",
    "InvalidIdError",
    "JSONSerializer",
    "NotFoundError",
    "Serializer",
    "SessionError",
    "Store",
    "StoreFullError",
    "TooLargeError",
    "UnavailableError",
    "__version__",
]

