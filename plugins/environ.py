"""Plugin ``environ``: identity from a field of the WSGI environ.

Behind Apache (or any front end that authenticates), ``REMOTE_USER`` carries the user name; for
machines on a trusted network, ``REMOTE_ADDR`` can name them. Settings (``[plugins.environ]``):

``field``
    The environ key to read (default ``REMOTE_USER``).
``kind``
    The kind of principal it names: ``user`` (default) or ``machine``.
``allow_header_field``
    ``HTTP_*`` keys come from request headers that any client can forge; they are refused unless
    this is ``true`` (only behind a proxy that strips and sets the header itself).
``defer_to_credentials``
    When a request presents credentials (HTTP Basic, a bearer token, an API key), leave it to the
    plugins that check them, so that wrong credentials are refused instead of falling through to
    the weaker identity. Default: true for ``REMOTE_ADDR``, false otherwise (behind Apache,
    ``REMOTE_USER`` is the checked identity even when the Authorization header is passed on).
"""

from __future__ import annotations

import attrs

from credenza.config import Section
from credenza.errors import Unauthenticated
from credenza.markers import hookimpl
from credenza.models import IdentityRequest, Principal
from credenza.settings import read, setting

NAME = "environ"


@attrs.frozen
class EnvironSettings:
    """``[plugins.environ]``."""

    field: str = setting("The WSGI environ key that names the caller", "REMOTE_USER")
    kind: str = setting("The kind of principal it names", "user", choices=("user", "machine"))
    allow_header_field: bool = setting(
        "Allow an HTTP_* field (a request header any client can forge): only behind a proxy "
        "that strips and sets it", False)
    defer_to_credentials: bool | None = setting(
        "Leave requests that present credentials to the plugins that check them", None,
        default_text="true for REMOTE_ADDR, false otherwise")


class EnvironIdentity:
    """Identifies callers by the value of one WSGI environ field."""

    settings = EnvironSettings

    def __init__(self, section: Section) -> None:
        settings = read(EnvironSettings, section)
        self.field, self.kind = settings.field, settings.kind
        self.defer_to_credentials = (settings.defer_to_credentials
                                     if settings.defer_to_credentials is not None
                                     else self.field == "REMOTE_ADDR")
        if self.field.startswith("HTTP_") and not settings.allow_header_field:
            raise section.error("field", f"{self.field} is a request header any client can set; "
                                "set allow_header_field = true only behind a proxy that sets it")

    @hookimpl
    def credenza_identify(self, request: IdentityRequest) -> Principal | None:
        if self.defer_to_credentials and (request.basic or request.bearer or request.api_key):
            return None
        value = request.environ.get(self.field)
        if not value:
            return None
        if not isinstance(value, str) or not value.isprintable():
            raise Unauthenticated(f"the {self.field} field does not hold a usable name")
        return Principal(value, source=NAME, kind=self.kind)
