"""coatcheck: an embedded server-side session store.

`Store` keeps sessions in this process, in a lock-striped table written in Rust, and hands out
signed tokens for cookies. `coatcheck.flask`, `coatcheck.django` and `coatcheck.asgi` plug it
into those frameworks.

One store serves one process: run one process with threads (gunicorn ``--threads``) or an
async server (uvicorn) and every request sees every session. A `Store` built before
``os.fork()`` keeps working in the child as the child's own copy.
"""

from __future__ import annotations

import os

from coatcheck import _native
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

# Fork safety (see bindings/python/src/fork.rs): no store lock is held across fork(), and the
# child restarts the sweeper for its copy of every store.
os.register_at_fork(
    before=_native._before_fork,
    after_in_parent=_native._after_fork_in_parent,
    after_in_child=_native._after_fork_in_child,
)
