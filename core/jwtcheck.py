"""Checking a JWT against a key, with what is wrong said in words a caller can act on.

Shared by the jwt plugin (this broker's tokens, trusted issuers') and the oidc plugin
(workload tokens), so that every verifier refuses the same things in the same words. The
algorithm always comes from the key, never from the token's header.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jwt

from credenza.errors import Unauthenticated

#: the longest token any verifier looks at
MAX_TOKEN_BYTES = 8192


def check_size(token: str) -> None:
    """Refuse a token too long to be one anybody issued (before any parsing)."""
    if len(token) > MAX_TOKEN_BYTES:
        raise Unauthenticated(f"token is longer than {MAX_TOKEN_BYTES} bytes")


def checked_claims(token: str, key: Any, algorithm: str, *, require: Iterable[str],
                   audiences: Iterable[str] | None = None, issuer: str | None = None,
                   leeway: int = 0) -> dict[str, Any]:
    """The claims of ``token`` once its signature (by ``key`` with ``algorithm``), ``exp``,
    ``nbf``, ``iss`` (when ``issuer`` is given) and ``aud`` (when ``audiences`` are given: one
    of them) are checked, and the ``require`` claims are present.

    :raises Unauthenticated: saying which check failed (nothing about the key material).
    """
    try:
        return jwt.decode(
            token, key, algorithms=[algorithm],
            audience=list(audiences) if audiences is not None else None,
            issuer=issuer, leeway=leeway,
            options={"require": list(require), "verify_aud": audiences is not None},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("token has expired") from None
    except jwt.ImmatureSignatureError:
        raise Unauthenticated("token is not valid yet") from None
    except jwt.InvalidAudienceError:
        raise Unauthenticated("token is not meant for this audience") from None
    except jwt.InvalidIssuerError:
        raise Unauthenticated("token has another issuer") from None
    except jwt.MissingRequiredClaimError as exc:
        raise Unauthenticated(f"token has no {exc.claim!r} claim") from None
    except jwt.PyJWTError as exc:
        raise Unauthenticated(f"invalid token: {type(exc).__name__}") from None
