"""``/v1/api-keys``: API keys of the caller (shown once at creation, stored as hashes)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import msgspec
from werkzeug.wrappers import Response

from credenza.models import TokenRecord
from credenza.wsgi.routes import Name, Reply, RequestContext, Route, json_response


class NewKey(msgspec.Struct):
    """What the new key is for, and how long it lasts."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    expires_in_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] = 365


class Owner(msgspec.Struct):
    """Whose keys to list (admins of API keys may name another owner)."""

    owner: Name | None = None


class KeyMetadata(msgspec.Struct):
    """An API key's metadata; times are ISO 8601."""

    id: str
    name: str | None
    owner: str
    created_at: str
    expires_at: str
    revoked: bool


class MadeKey(KeyMetadata):
    """A new key's metadata and the key itself, shown this once."""

    key: str


class Keys(msgspec.Struct):
    keys: list[KeyMetadata]


def describe(record: TokenRecord) -> dict[str, Any]:
    """An API key's metadata (never its secret)."""
    return {"id": record.token_id, "name": record.claims.get("name"), "owner": record.consumer_id,
            "created_at": record.issued_at.isoformat(), "expires_at": record.expires_at.isoformat(),
            "revoked": record.revoked}


def create_key(ctx: RequestContext, body: NewKey) -> Response:
    """A new API key acting as the caller; the key is in this answer and nowhere else."""
    record, value = ctx.broker.api_keys.create(ctx.principal(), body.name,
                                               dt.timedelta(days=body.expires_in_days))
    return json_response({**describe(record), "key": value})


def list_keys(ctx: RequestContext, query: Owner) -> Response:
    """The caller's API keys (``?owner=`` for admins of API keys)."""
    principal = ctx.principal()
    owner = query.owner or principal.name
    keys = ctx.broker.api_keys.list(principal, owner)
    return json_response({"keys": [describe(record) for record in keys]})


def revoke_key(ctx: RequestContext, key_id: str) -> Response:
    """Revoke one API key."""
    return json_response(describe(ctx.broker.api_keys.revoke(ctx.principal(), key_id)))


ROUTES = (
    Route("/v1/api-keys", create_key, methods=("POST",), body=NewKey,
          summary="Create an API key (shown once)",
          responses={200: Reply("The key and its metadata", MadeKey),
                     400: "Bad name or lifetime", 401: "Not identified"}),
    Route("/v1/api-keys", list_keys, query=Owner, summary="The caller's API keys",
          responses={200: Reply("Metadata of each key", Keys), 401: "Not identified",
                     403: "Not the owner"}),
    Route("/v1/api-keys/<key_id>", revoke_key, methods=("DELETE",), summary="Revoke an API key",
          responses={200: Reply("The revoked key", KeyMetadata), 401: "Not identified",
                     403: "Not the owner", 404: "No such key"}),
)
