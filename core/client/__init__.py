"""credenza's client library: fresh credentials from a credenza broker.

Names are imported when first used (PEP 562), so that importing :mod:`credenza.client.errors`
(as the CLI does for every command) does not import HTTP and AWS libraries.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from credenza.client.auth import Auth, get_default_auth, set_default_auth
    from credenza.client.aws import aws_credentials, aws_session, console_url, list_accounts
    from credenza.client.errors import AuthError, BrokerError, OAuthError

_EXPORTS = {
    "Auth": "auth", "get_default_auth": "auth", "set_default_auth": "auth",
    "aws_credentials": "aws", "aws_session": "aws", "console_url": "aws", "list_accounts": "aws",
    "AuthError": "errors", "BrokerError": "errors", "OAuthError": "errors",
}
__all__ = ["Auth", "AuthError", "BrokerError", "OAuthError", "aws_credentials", "aws_session",
           "console_url", "get_default_auth", "list_accounts", "set_default_auth"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'credenza.client' has no attribute {name!r}")
    return getattr(importlib.import_module(f"credenza.client.{_EXPORTS[name]}"), name)
