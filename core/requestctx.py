"""The request being served, for code far from the WSGI layer: observer events record where they
come from (the audit trail), and every line of the JSON log format carries the request id.

The app binds a :class:`RequestOrigin` for the time it handles a request; a context variable
keeps requests of different threads apart. Outside a request (the CLI, an embedding app calling
the broker directly) there is none.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from credenza.secrets import id_bytes


@attrs.frozen
class RequestOrigin:
    """Where a request came from: its id (the ``X-Request-Id`` answered), the client's address,
    the method and the path (never the query string, which may hold a secret)."""

    request_id: str
    client: str | None
    method: str
    path: str
    # The WSGI environ holds the caller's credentials: kept out of repr and equality, read only
    # by code that hashes them (the audit trail's HMAC of the credential presented).
    environ: Mapping[str, Any] = attrs.field(factory=dict, repr=False, eq=False)


_current: contextvars.ContextVar[RequestOrigin | None] = contextvars.ContextVar(
    "credenza_request", default=None)


def new_request_id() -> str:
    """A random (version 4) UUID as text: what identifies a request in logs, problem answers
    (``urn:uuid:...``) and ``X-Request-Id``. Made from 16 random bytes without building a
    :class:`uuid.UUID`, which cost three times as much."""
    digits = id_bytes(16).hex()
    variant = "89ab"[int(digits[16], 16) & 3]  # RFC 9562: 10xx
    return (f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-{variant}{digits[17:20]}-"
            f"{digits[20:]}")


def current() -> RequestOrigin | None:
    """The request this thread is serving, if any."""
    return _current.get()


@contextlib.contextmanager
def serving(origin: RequestOrigin) -> Iterator[RequestOrigin]:
    """Bind ``origin`` as the current request for the duration of the block."""
    token = _current.set(origin)
    try:
        yield origin
    finally:
        _current.reset(token)
