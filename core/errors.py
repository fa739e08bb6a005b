"""The error taxonomy. Each request error knows its HTTP status and RFC 9457 problem type.

Front ends render these; plugins raise them. ``detail`` is shown to the caller, so it says what was
wrong and never contains a secret. Startup problems (configuration, plugin loading) are
:class:`ConfigError`, which is not an HTTP error: it stops the process with a clear message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

PROBLEM_BASE = "urn:credenza:problem:"


class CredenzaError(Exception):
    """Base of every error a request can end with."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal server error"
    #: the RFC 6749 ``error`` code, where this error has its own (else the status decides)
    oauth_error: ClassVar[str | None] = None

    def __init__(self, detail: str, *, extra: Mapping[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = dict(extra or {})

    @property
    def type(self) -> str:
        """The problem type URI (RFC 9457 ``type``)."""
        return PROBLEM_BASE + self.slug

    def headers(self) -> dict[str, str]:
        """Response headers this error requires (WWW-Authenticate, Allow, Retry-After)."""
        return {}


class BadRequest(CredenzaError):
    """The request is malformed or names something in a way that can never work."""

    status = 400
    slug = "bad-request"
    title = "Bad request"


class InvalidGrant(BadRequest):
    """An OAuth grant (a refresh token) that is unknown, expired, revoked or reused."""

    slug = "invalid-grant"
    title = "Invalid grant"
    oauth_error = "invalid_grant"


class InvalidScope(BadRequest):
    """The scope asked for is missing, unknown, or beyond what may be issued (RFC 6749 3.3)."""

    slug = "invalid-scope"
    title = "Invalid scope"
    oauth_error = "invalid_scope"


class UnsupportedGrantType(BadRequest):
    """A token endpoint was asked for a ``grant_type`` it does not have."""

    slug = "unsupported-grant-type"
    title = "Unsupported grant type"
    oauth_error = "unsupported_grant_type"


class Unauthenticated(CredenzaError):
    """No identity, or credentials that were presented and are wrong.

    ``challenges`` are the ``WWW-Authenticate`` values; left out, they are HTTP Basic and Bearer
    in ``realm``, which the front end sets to the configured one (``[server] realm``).
    ``challenges=()`` sends none (for credentials that are not HTTP authentication).
    """

    status = 401
    slug = "unauthenticated"
    title = "Authentication required"

    def __init__(
        self,
        detail: str = "no valid credentials were presented",
        *,
        challenges: Sequence[str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail, extra=extra)
        self.challenges = None if challenges is None else tuple(challenges)
        self.realm = "credenza"

    def headers(self) -> dict[str, str]:
        realm = self.realm.replace('"', "")
        challenges = self.challenges if self.challenges is not None else (
            f'Basic realm="{realm}"', f'Bearer realm="{realm}"')
        return {"WWW-Authenticate": ", ".join(challenges)}


class Forbidden(CredenzaError):
    """The caller is known but has no grant for what it asked."""

    status = 403
    slug = "forbidden"
    title = "Forbidden"


class NotFound(CredenzaError):
    """The named thing (account, token, route) does not exist."""

    status = 404
    slug = "not-found"
    title = "Not found"


class MethodNotAllowed(CredenzaError):
    """The route exists, the method does not."""

    status = 405
    slug = "method-not-allowed"
    title = "Method not allowed"

    def __init__(self, detail: str, *, allowed: Sequence[str]) -> None:
        super().__init__(detail)
        self.allowed = tuple(sorted(allowed))

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allowed)}


class Conflict(CredenzaError):
    """The request contradicts the current state (reinstating an expired token, a duplicate)."""

    status = 409
    slug = "conflict"
    title = "Conflict"


class PayloadTooLarge(CredenzaError):
    """The request body is over the configured limit."""

    status = 413
    slug = "payload-too-large"
    title = "Payload too large"


class Unavailable(CredenzaError):
    """A dependency (STS, the directory, the store) is down or throttling: fail closed."""

    status = 503
    slug = "unavailable"
    title = "Service unavailable"

    def __init__(
        self, detail: str, *, retry_after: int = 5, extra: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(detail, extra=extra)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class NotConfigured(CredenzaError):
    """No enabled plugin implements what the request needs: retrying will not help."""

    status = 501
    slug = "not-configured"
    title = "Not configured"


class ConfigError(Exception):
    """Configuration or plugin loading failed; the message names the file, key or plugin."""
