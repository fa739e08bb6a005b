"""Checking a JWT against a key, with what is wrong said in words a caller can act on.

Shared by the jwt plugin (this broker's tokens, trusted issuers') and the oidc plugin
(workload tokens), so that every verifier refuses the same things in the same words. The
algorithm always comes from the key, never from the token's header.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import jwt

from credenza.errors import Unauthenticated
from credenza.expiring import ExpiringMap

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


@attrs.frozen
class Verified:
    """A token's checked claims, and the key that signed it."""

    kid: str
    claims: dict[str, Any]


class VerifiedTokens:
    """Tokens whose signature and claims were checked, to skip the signature next time: an
    ES256 verification costs more than the rest of a request, and a bearer token is presented
    again and again while it lives.

    Safe because what a hit skips cannot change: the same token under the same checks
    verifies the same way. A hit is re-checked for expiry (``exp`` with the leeway); the
    caller re-checks that the key is still trusted; revocation is asked of the store every
    time, as without the cache. Keyed by a digest of the token, so the cache holds no
    presentable secret; entries live ``ttl`` seconds at most.
    """

    def __init__(self, size: int = 10_000, ttl: float = 60,
                 clock: Callable[[], float] = time.time) -> None:
        self._entries: ExpiringMap[bytes, Verified] = ExpiringMap(size, clock)
        self._ttl = ttl

    @staticmethod
    def _key(token: str, context: str) -> bytes:
        return hashlib.sha256(f"{context}\0{token}".encode()).digest()

    def get(self, token: str, context: str, leeway: int) -> Verified | None:
        """The checked claims of ``token`` under the checks named ``context``, if still good."""
        key = self._key(token, context)
        found = self._entries.get(key)
        if found is None:
            return None
        if self._entries.clock() >= float(found.claims.get("exp", 0)) + leeway:
            self._entries.pop(key)
            return None
        return found

    def put(self, token: str, context: str, kid: str, claims: dict[str, Any]) -> None:
        """Remember that ``token`` passed the checks named ``context`` with key ``kid``."""
        self._entries.put(self._key(token, context), Verified(kid, claims),
                          self._entries.clock() + self._ttl)
