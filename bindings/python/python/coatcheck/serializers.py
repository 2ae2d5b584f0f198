"""How session dicts become the bytes a `Store` keeps.

A serializer is any object with ``dumps(obj) -> bytes | str`` and ``loads(bytes) -> obj``.
JSON is the ASGI default because it is safe: a stored value can never run code when it is
read back. The Flask backend defaults to Flask's tagged JSON
(`coatcheck.flask.FlaskSessionSerializer`), as safe, which also keeps tuples, bytes,
``datetime``...; Django uses its ``SESSION_SERIALIZER``. Pass another serializer
(``msgpack``...) to the Flask and ASGI backends if your sessions hold values these cannot
express.
"""

from __future__ import annotations

import json
from typing import Any, Protocol, Union


class Serializer(Protocol):
    """What the framework backends need from a serializer."""

    def dumps(self, obj: Any) -> Union[bytes, str]:
        """Turns a session dict into bytes (or text, which is stored as UTF-8)."""
        ...

    def loads(self, data: bytes) -> Any:
        """Turns stored bytes back into the session dict."""
        ...


class JSONSerializer:
    """Compact JSON in UTF-8. The default of the ASGI backend."""

    def dumps(self, obj: Any) -> bytes:
        """Encodes ``obj`` as compact UTF-8 JSON."""
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def loads(self, data: bytes) -> Any:
        """Decodes UTF-8 JSON."""
        return json.loads(data)


def dump_bytes(serializer: Serializer, obj: Any) -> bytes:
    """``serializer.dumps(obj)`` as bytes."""
    data = serializer.dumps(obj)
    return data.encode("utf-8") if isinstance(data, str) else data


def load_dict(serializer: Serializer, data: bytes) -> dict[str, Any] | None:
    """The session dict in ``data``, or ``None`` if it does not decode to a dict."""
    try:
        obj = serializer.loads(data)
    except Exception:
        return None
    return obj if isinstance(obj, dict) else None
