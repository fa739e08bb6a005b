"""API keys kept in the token store (``ck_...``): made for an owner, shown once, presented as
``X-API-Key`` (or a bare ``Authorization`` value, as AWS SDKs send it) to act as that owner.

This is core, not a store plugin's business: whatever token store is enabled, a ``ck_`` key is
checked here, before any identity plugin is asked, and a wrong one is refused.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from credenza.errors import BadRequest, NotFound, Unauthenticated
from credenza.models import (
    PRINCIPAL_KINDS,
    IdentityRequest,
    IssuedEvent,
    Principal,
    TokenRecord,
)
from credenza.opaque import API_KEY

if TYPE_CHECKING:
    from credenza.broker import Broker

SOURCE = "api-key"
MAX_NAME_LENGTH = 128


class ApiKeys:
    """Create, list, revoke and recognise the API keys of the token store."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    def identify(self, request: IdentityRequest) -> Principal | None:
        """The owner of a ``ck_`` key presented with ``request``; None when there is none.

        :raises Unauthenticated: for a ``ck_`` key that is unknown, revoked or expired.
        """
        if not request.api_key or not API_KEY.owns(request.api_key):
            return None
        tokens = self._broker.tokens
        record = API_KEY.find(tokens.store, request.api_key) if tokens.enabled else None
        if record is None or record.revoked or record.expired():
            raise Unauthenticated("invalid API key")
        kind = str(record.claims.get("kind", "machine"))
        return Principal(record.consumer_id, source=SOURCE,
                         kind=kind if kind in PRINCIPAL_KINDS else "machine",
                         token_id=record.token_id)

    def create(self, owner: Principal, name: str,
               lifetime: dt.timedelta | None = None) -> tuple[TokenRecord, str]:
        """A new API key acting as ``owner``: (its record, the key, to show once)."""
        if not name or not name.isprintable() or len(name) > MAX_NAME_LENGTH:
            raise BadRequest(f"an API key needs a printable name of at most {MAX_NAME_LENGTH} "
                             "characters")
        record, value = API_KEY.mint(self._broker.tokens.store, owner, consumer_id=owner.name,
                                     consumer_type="custom",
                                     claims={"name": name, "kind": owner.kind},
                                     lifetime=lifetime)
        self._broker.notify_issued(IssuedEvent(owner, "api-key", name, token_id=record.token_id,
                                               expires_at=record.expires_at))
        return record, value

    def list(self, principal: Principal, owner: str) -> list[TokenRecord]:
        """The API keys of ``owner`` (the owner itself, or an admin of API keys)."""
        tokens = self._broker.tokens
        tokens.authorize_manage(principal, owner, API_KEY.provider)
        return tokens.of_consumer(owner, API_KEY.provider)

    def revoke(self, principal: Principal, key_id: str) -> TokenRecord:
        """Revoke one API key by its id (its owner, or an admin of API keys)."""
        tokens = self._broker.tokens
        record = tokens.store.get(key_id)
        if record is None or record.provider != API_KEY.provider:
            raise NotFound(f"no API key {key_id!r}")
        tokens.revoke_record(principal, record)
        return record
