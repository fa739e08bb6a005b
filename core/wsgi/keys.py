"""``/v1/api-keys``: API keys of the caller (shown once at creation, stored as hashes)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from werkzeug.wrappers import Response

from credenza.errors import BadRequest
from credenza.models import TokenRecord
from credenza.wsgi.routes import RequestContext, Route, json_response


def describe(record: TokenRecord) -> dict[str, Any]:
    """An API key's metadata (never its secret)."""
    return {"id": record.token_id, "name": record.claims.get("name"), "owner": record.consumer_id,
            "created_at": record.issued_at.isoformat(), "expires_at": record.expires_at.isoformat(),
            "revoked": record.revoked}


def create_key(ctx: RequestContext) -> Response:
    """A new API key acting as the caller; the key is in this answer and nowhere else."""
    body = ctx.json_body()
    days = body.get("expires_in_days", 365)
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 3650:
        raise BadRequest("expires_in_days must be a whole number from 1 to 3650")
    name = body.get("name")
    if not isinstance(name, str):
        raise BadRequest("name is required (a string)")
    record, value = ctx.broker.api_keys.create(ctx.principal(), name, dt.timedelta(days=days))
    return json_response({**describe(record), "key": value})


def list_keys(ctx: RequestContext) -> Response:
    """The caller's API keys (``?owner=`` for admins of API keys)."""
    principal = ctx.principal()
    owner = ctx.request.args.get("owner") or principal.name
    keys = ctx.broker.api_keys.list(principal, owner)
    return json_response({"keys": [describe(record) for record in keys]})


def revoke_key(ctx: RequestContext, key_id: str) -> Response:
    """Revoke one API key."""
    return json_response(describe(ctx.broker.api_keys.revoke(ctx.principal(), key_id)))


ROUTES = (
    Route("/v1/api-keys", create_key, methods=("POST",), summary="Create an API key (shown once)",
          responses={200: "The key and its metadata", 400: "Bad name or lifetime"}),
    Route("/v1/api-keys", list_keys, summary="The caller's API keys",
          responses={200: "Metadata of each key", 403: "Not the owner"}),
    Route("/v1/api-keys/<key_id>", revoke_key, methods=("DELETE",), summary="Revoke an API key",
          responses={200: "The revoked key", 404: "No such key"}),
)
