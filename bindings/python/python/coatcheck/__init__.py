"""coatcheck: an embedded server-side session store.

`Store` keeps sessions in this process, in a lock-striped table written in Rust, and hands out
signed tokens for cookies. `coatcheck.flask`, `coatcheck.django` and `coatcheck.asgi` plug it
into those frameworks.

One store serves one process: run one process with threads (gunicorn ``--threads``) or an
async server (uvicorn) and every request sees every session. A `Store` built before
``os.fork()`` keeps working in the child as the child's own copy.
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
    "__version__",
]

