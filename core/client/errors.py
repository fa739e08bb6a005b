"""What the client raises. Kept free of heavy imports: the CLI catches these on every command."""

from __future__ import annotations

import http


class AuthError(Exception):
    """Credentials are missing, wrong, or no token could be obtained."""


class OAuthError(AuthError):
    """The token endpoint refused the credentials or answered something unusable."""


class BrokerError(Exception):
    """The broker refused a request, or could not serve it (``status``, ``detail``)."""

    def __init__(self, status: int, detail: str) -> None:
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        super().__init__(f"{status} {phrase}: {detail}")
        self.status = status
        self.detail = detail
