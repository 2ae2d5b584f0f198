# Stubs of the native module; checked against the built extension by `python -m mypy.stubtest`
# (see mk/python.mk and stubtest-allowlist.txt).
from os import PathLike
from typing import ClassVar, Literal, final

__version__: str

_Seconds = int | float

@final
class Store:
    """A server-side session store living in this process."""

    def __new__(
        cls,
        secret: str | bytes | list[str | bytes] | tuple[str | bytes, ...],
        *,
        idle_timeout: _Seconds,
        absolute_timeout: _Seconds | None = None,
        max_sessions: int | None = None,
        max_bytes: int | None = None,
        max_session_bytes: int = 1048576,
        shards: int | None = None,
        sweep_interval: _Seconds = 1.0,
        redis_url: str | None = None,
        redis_key_prefix: str = "coatcheck:",
        redis_timeout: _Seconds = 0.05,
        redis_when_down: Literal["serve_local", "fail"] = "serve_local",
        redis_strict: bool = False,
        persist_path: str | PathLike[str] | None = None,
        persist_fsync: Literal["never", "interval", "always"] = "interval",
    ) -> Store: ...
    @property
    def shared(self) -> bool: ...
    @property
    def waits_on_io(self) -> bool: ...
    @property
    def idle_timeout(self) -> float: ...
    @property
    def absolute_timeout(self) -> float | None: ...
    def create(self, data: bytes, ttl: _Seconds | None = None) -> str: ...
    def get(self, token: str) -> bytes | None: ...
    def peek(self, token: str) -> bytes | None: ...
    def get_with_version(self, token: str) -> tuple[bytes, int] | None: ...
    def set(self, token: str, data: bytes, ttl: _Seconds | None = None) -> int: ...
    def set_if_version(
        self, token: str, data: bytes, version: int, ttl: _Seconds | None = None
    ) -> int: ...
    def touch(self, token: str, ttl: _Seconds | None = None) -> bool: ...
    def destroy(self, token: str) -> bool: ...
    def regenerate(self, token: str) -> str | None: ...
    def sign(self, id: str) -> str: ...
    def unsign(self, token: str) -> str | None: ...
    def set_owner(self, token: str, owner: str | None) -> None: ...
    def sessions_of(self, owner: str) -> list[str]: ...
    def destroy_owner(self, owner: str, except_token: str | None = None) -> int: ...
    def stats(self) -> dict[str, int]: ...
    def clear(self) -> None: ...
    def count(self) -> int: ...
    def ids(self) -> list[str]: ...
    def close(self) -> None: ...
    def sweep(self) -> int: ...
    def __len__(self) -> int: ...

class SessionError(Exception):
    code: ClassVar[str | None]

class BadSignatureError(SessionError):
    code: ClassVar[str]

class NotFoundError(SessionError):
    code: ClassVar[str]

class TooLargeError(SessionError):
    code: ClassVar[str]

class StoreFullError(SessionError):
    code: ClassVar[str]

class ConflictError(SessionError):
    code: ClassVar[str]

class InvalidIdError(SessionError):
    code: ClassVar[str]

class InvalidConfigError(SessionError):
    code: ClassVar[str]

class InvalidArgumentError(SessionError):
    code: ClassVar[str]

class UnavailableError(SessionError):
    code: ClassVar[str]

