"""Long-lived opaque secrets: one declaration per kind, minted and found in one place.

An opaque secret is ``<prefix>_<id>.<random>``: the part before the dot is the token id of its
record in the token store, the whole value is shown once and stored only as
:func:`credenza.secrets.secret_hash`. The prefix tells at a glance (and in a leaked-secret scan)
what a value is; :func:`kind_of` reads it.

==========  =================================  =========  =========================================
prefix      what                               lifetime   used for
==========  =================================  =========  =========================================
``ck``      API key (:data:`API_KEY`)          365 days   ``X-API-Key`` identity of its owner
``ak``      API token (:data:`API_TOKEN`)      365 days   ``POST /token``: JWTs for a public client
``rt``      refresh token (:data:`REFRESH`)    30 days    ``/oauth2/token`` rotation (one use)
``cs``      console session (:data:`SESSION`)  8 hours    the web console's session cookie
==========  =================================  =========  =========================================
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Mapping
from typing import Any

import attrs

from credenza.models import Principal, TokenRecord, TokenStore, utcnow
from credenza.secrets import new_token_id, secret_hash


@attrs.frozen
class OpaqueSecretKind:
    """One kind of long-lived opaque secret: its prefix, record and lifetime."""

    prefix: str = attrs.field(validator=attrs.validators.matches_re(r"^[a-z]{2}$"))
    #: the provider under which its records are kept (never a credential provider's name)
    provider: str
    #: ``TokenRecord.token_type`` of its records
    token_type: str
    lifetime: dt.timedelta
    purpose: str

    def owns(self, value: str) -> bool:
        """Whether ``value`` has this kind's prefix (says nothing of its validity)."""
        return value.startswith(f"{self.prefix}_")

    def mint(self, store: TokenStore, creator: Principal, *, consumer_id: str,
             consumer_type: str, claims: Mapping[str, Any],
             lifetime: dt.timedelta | None = None) -> tuple[TokenRecord, str]:
        """A new secret of this kind, recorded in ``store``: (its record, the value to show
        once)."""
        token_id = new_token_id(self.prefix)
        value = f"{token_id}.{secrets.token_urlsafe(32)}"
        now = utcnow().replace(microsecond=0)
        record = TokenRecord(
            token_id=token_id, token_type=self.token_type, provider=self.provider,
            consumer_type=consumer_type, consumer_id=consumer_id,
            creator_type=creator.kind, creator_id=creator.name, issued_at=now,
            expires_at=now + (lifetime or self.lifetime), claims=claims,
        )
        store.add(record, [secret_hash(value)])
        return record, value

    def find(self, store: TokenStore, value: str) -> TokenRecord | None:
        """The record of ``value`` when it is a secret of this kind (live or not), else None."""
        if not self.owns(value):
            return None
        record = store.find(secret_hash(value))
        return record if record is not None and record.provider == self.provider else None


API_KEY = OpaqueSecretKind(
    "ck", "credenza-api-key", "api_key", dt.timedelta(days=365),
    "an API key: presented as X-API-Key, it identifies its owner")
API_TOKEN = OpaqueSecretKind(
    "ak", "credenza-api-token", "api_token", dt.timedelta(days=365),
    "an API token: a public client exchanges it at POST /token for its user's JWTs")
REFRESH_TOKEN = OpaqueSecretKind(
    "rt", "credenza-refresh", "refresh_token", dt.timedelta(days=30),
    "an OAuth refresh token: spent once at /oauth2/token for a new access and refresh token")
SESSION = OpaqueSecretKind(
    "cs", "credenza-console-session", "session", dt.timedelta(hours=8),
    "a web console session: its cookie, ended by signing out, idle time or revocation")
KINDS = (API_KEY, API_TOKEN, REFRESH_TOKEN, SESSION)


def kind_of(value: str) -> OpaqueSecretKind | None:
    """The kind whose prefix ``value`` has, or None."""
    return next((kind for kind in KINDS if kind.owns(value)), None)

