"""The IDaaS PAM compatible developer API: ``/v2/{instanceId}/authenticationTokens/...``.

What the real ``cloud-idaas-pam-client`` sends and expects (docs/protocols/idaas-pam.md): JSON
bodies, ``Authorization: Bearer <access token>`` from ``/oauth2/token`` (except for validation and
short-token exchange), every success 200 with a JSON body, times in epoch milliseconds, errors
as ``{code, error, error_description, request_id}``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from typing import Any

import attrs
from werkzeug.wrappers import Response

from credenza.config import Section
from credenza.errors import BadRequest, CredenzaError, NotFound
from credenza.models import RESERVED_CLAIMS, IssuedToken, TokenQuery, TokenRecord, TokenSpec
from credenza.wsgi.routes import Family, RequestContext, Route, json_response

MAX_RESULTS = 100


@attrs.frozen
class PamSettings:
    """``[api.idaas-pam]``."""

    #: the instance id in the API's paths (``/v2/{instanceId}/...``) and in token metadata
    instance_id: str = "credenza"

    @classmethod
    def from_section(cls, section: Section) -> PamSettings:
        """Read ``[api.idaas-pam]``."""
        settings = cls(section.get_str("instance_id", "credenza"))
        section.check_unknown()
        return settings


def render_pam_error(error: CredenzaError, ctx: RequestContext) -> Response:
    """The shape the SDK turns into its ClientException."""
    body = {"code": str(error.status), "error": error.slug.replace("-", "_"),
            "error_description": error.detail, "request_id": ctx.request_id}
    return json_response(body, error.status, error.headers())


PAM = Family("idaas-pam", "IDaaS PAM compatible developer API (cloud-idaas-pam-client).",
             prefixes=("/v2/",), render_error=render_pam_error, settings=PamSettings)


def _ms(moment: dt.datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def _check_instance(ctx: RequestContext, instance_id: str) -> None:
    if instance_id != ctx.settings(PAM).instance_id:
        raise NotFound(f"unknown instance {instance_id!r}")


def metadata(ctx: RequestContext, record: TokenRecord) -> dict[str, Any]:
    """A token's metadata as the SDK reads it."""
    return {
        "instanceId": ctx.settings(PAM).instance_id,
        "authenticationTokenId": record.token_id,
        "authenticationTokenType": record.token_type,
        "credentialProviderId": record.provider,
        "creatorType": record.creator_type,
        "creatorId": record.creator_id,
        "consumerType": record.consumer_type,
        "consumerId": record.consumer_id,
        "revoked": record.revoked,
        "createTime": _ms(record.issued_at),
        "updateTime": _ms(record.updated_at or record.issued_at),
        "expirationTime": _ms(record.expires_at),
    }


def _jwt_answer(ctx: RequestContext, token: IssuedToken) -> Response:
    return json_response({**metadata(ctx, token.record),
                          "jwtContent": {"jwtValue": token.value,
                                         "derivedShortToken": token.short_token}})


def _string(body: dict[str, Any], key: str, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{key} must be a non-empty string")
    return value


def _strings(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key)
    if not isinstance(value, list) or not value or not all(
            isinstance(item, str) and item for item in value):
        raise BadRequest(f"{key} must be a non-empty array of strings")
    return value


def generate_jwt(ctx: RequestContext, instance_id: str) -> Response:
    """``generateJwt``: a new JWT of a credential provider, for the calling application."""
    _check_instance(ctx, instance_id)
    principal = ctx.principal()
    body = ctx.json_body()
    expiration = body.get("expiration")
    if expiration is not None and (not isinstance(expiration, int) or isinstance(expiration, bool)
                                   or expiration <= 0):
        raise BadRequest("expiration must be a positive number of seconds")
    custom = body.get("customClaims") or {}
    if not isinstance(custom, dict):
        raise BadRequest("customClaims must be a JSON object")
    reserved = sorted(RESERVED_CLAIMS & custom.keys())
    if reserved:
        raise BadRequest(f"customClaims cannot set claims this broker reserves: "
                         f"{', '.join(reserved)}")
    include_short = body.get("includeDerivedShortToken") or False
    if not isinstance(include_short, bool):
        raise BadRequest("includeDerivedShortToken must be true or false")
    spec = TokenSpec(
        provider=_string(body, "credentialProviderIdentifier"),
        subject=_string(body, "subject"),
        audiences=_strings(body, "audiences"),
        issuer=_string(body, "issuer", required=False),
        custom_claims=custom,
        lifetime=dt.timedelta(seconds=expiration) if expiration else None,
        consumer_type="application" if principal.kind == "client" else "custom",
        consumer_id=principal.name,
        include_short_token=include_short,
    )
    return _jwt_answer(ctx, ctx.broker.issue_token(principal, spec))


def obtain_jwt(ctx: RequestContext, instance_id: str) -> Response:
    """``obtainJwt``: a stored JWT again, by consumer and token id."""
    _check_instance(ctx, instance_id)
    principal = ctx.principal()
    body = ctx.json_body()
    token = ctx.broker.tokens.obtain(principal, _string(body, "consumerId"),
                                     _string(body, "authenticationTokenId"))
    return _jwt_answer(ctx, token)


def obtain_by_short_token(ctx: RequestContext, instance_id: str) -> Response:
    """``obtainJwtByDerivedShortToken``: the short token is the credential (no Authorization)."""
    _check_instance(ctx, instance_id)
    token = ctx.broker.tokens.obtain_by_short_token(_string(ctx.json_body(),
                                                            "derivedShortToken"))
    return _jwt_answer(ctx, token)


def _flag(ctx: RequestContext, key: str) -> bool | None:
    raw = ctx.request.args.get(key)
    if raw is None or raw == "":
        return None
    if raw.lower() not in ("true", "false"):
        raise BadRequest(f"{key} must be true or false, got {raw!r}")
    return raw.lower() == "true"


def list_tokens(ctx: RequestContext, instance_id: str) -> Response:
    """``authenticationTokens``: one page of a consumer's tokens of a provider."""
    _check_instance(ctx, instance_id)
    principal = ctx.principal()
    args = ctx.request.args
    raw_max = args.get("maxResults") or "20"
    if not raw_max.isdigit() or not 1 <= int(raw_max) <= MAX_RESULTS:
        raise BadRequest(f"maxResults must be from 1 to {MAX_RESULTS}, got {raw_max!r}")
    query = TokenQuery(
        consumer_id=_string(dict(args), "consumerId"),
        provider=_string(dict(args), "credentialProviderIdentifier"),
        revoked=_flag(ctx, "revoked"), expired=_flag(ctx, "expired"),
    )
    next_token = args.get("nextToken") or None
    after = _page_position(next_token, query) if next_token else None
    page = ctx.broker.tokens.list(principal, query, int(raw_max), after)
    return json_response({"entities": [metadata(ctx, record) for record in page.items],
                          "totalCount": page.total_count, "maxResults": int(raw_max),
                          "nextToken": _page_token(page.after, query) if page.after else None})


# nextToken: where the page ended, bound to the listing's filters so that a token of another
# listing is refused rather than silently applied.

def _fingerprint(query: TokenQuery) -> str:
    raw = f"{query.consumer_id}\0{query.provider}\0{query.revoked}\0{query.expired}"
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


def _page_token(after: str, query: TokenQuery) -> str:
    raw = json.dumps([after, _fingerprint(query)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _page_position(token: str, query: TokenQuery) -> str:
    try:
        after, fingerprint = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, TypeError):
        raise BadRequest("nextToken is not one this broker gave out") from None
    if fingerprint != _fingerprint(query) or not isinstance(after, str):
        raise BadRequest("nextToken belongs to another listing (other filters)")
    return after


def validate(ctx: RequestContext, instance_id: str) -> Response:
    """``validate``: whether a JWT or derived short token is active (no Authorization)."""
    _check_instance(ctx, instance_id)
    return json_response({"active": ctx.broker.tokens.validate(_string(ctx.json_body(),
                                                                          "token"))})


def revoke(ctx: RequestContext, instance_id: str) -> Response:
    """``revoke``: one token (a JWT or a derived short token), by its consumer or an admin."""
    _check_instance(ctx, instance_id)
    ctx.broker.tokens.revoke(ctx.principal(), _string(ctx.json_body(), "token"))
    return json_response({})


def reinstate(ctx: RequestContext, instance_id: str) -> Response:
    """``reinstate``: one revoked, unexpired token (admins)."""
    _check_instance(ctx, instance_id)
    ctx.broker.tokens.reinstate(ctx.principal(), _string(ctx.json_body(), "token"))
    return json_response({})


def _consumer_and_provider(ctx: RequestContext) -> tuple[str, str]:
    body = ctx.json_body()
    return _string(body, "consumerId"), _string(body, "credentialProviderIdentifier")


def revoke_by_consumer(ctx: RequestContext, instance_id: str) -> Response:
    """``revokeByConsumer``: all of a consumer's tokens of one provider."""
    _check_instance(ctx, instance_id)
    ctx.broker.tokens.revoke_consumer(ctx.principal(), *_consumer_and_provider(ctx))
    return json_response({})


def reinstate_by_consumer(ctx: RequestContext, instance_id: str) -> Response:
    """``reinstateByConsumer``: a consumer's unexpired tokens of one provider (admins)."""
    _check_instance(ctx, instance_id)
    ctx.broker.tokens.reinstate_consumer(ctx.principal(), *_consumer_and_provider(ctx))
    return json_response({})


def fetch_oauth_token(ctx: RequestContext, instance_id: str) -> Response:
    """``fetchOAuthAccessToken``: an upstream provider's access token for the caller."""
    _check_instance(ctx, instance_id)
    body = ctx.json_body()
    force = body.get("forceAuthentication") or False
    if not isinstance(force, bool):
        raise BadRequest("forceAuthentication must be true or false")
    token = ctx.broker.upstream_token(ctx.principal(),
                                      _string(body, "credentialProviderIdentifier"),
                                      _string(body, "scope", required=False), force)
    return json_response({"oauthAccessTokenContent": {
        "accessTokenValue": token.value, "tokenType": token.token_type, "scope": token.scope,
        "expirationTime": _ms(token.expires_at)}})


def obtain_credential(ctx: RequestContext, instance_id: str) -> Response:
    """``credentials/_/actions/obtain``: a managed upstream API key (get_api_key)."""
    _check_instance(ctx, instance_id)
    identifier = _string(dict(ctx.request.args), "credentialIdentifier")
    value = ctx.broker.managed_credential(ctx.principal(), identifier)
    return json_response({"credentialId": identifier, "credentialIdentifier": identifier,
                          "credentialType": "api_key", "status": "enabled",
                          "credentialContent": {"apiKeyContent": {"apiKey": value}}})


BASE = "/v2/<instance_id>/authenticationTokens"
ACTIONS = f"{BASE}/_/actions"
COMMON = {400: "Bad request", 401: "No valid access token", 403: "Not granted",
          404: "Unknown token, provider or instance", 409: "Revoked or expired",
          503: "Store unavailable"}

ROUTES = (
    Route(f"{ACTIONS}/generateJwt", generate_jwt, methods=("POST",), family=PAM,
          summary="Generate a JWT (optionally with a derived short token)", responses=COMMON),
    Route(f"{ACTIONS}/obtainJwt", obtain_jwt, methods=("POST",), family=PAM,
          summary="Obtain a stored JWT by consumer and id", responses=COMMON),
    Route(f"{ACTIONS}/obtainJwtByDerivedShortToken", obtain_by_short_token, methods=("POST",),
          family=PAM, authenticated=False, summary="Obtain a JWT by its derived short token",
          responses=COMMON),
    Route(BASE, list_tokens, family=PAM, summary="List a consumer's tokens of a provider",
          responses=COMMON),
    Route(f"{ACTIONS}/validate", validate, methods=("POST",), family=PAM, authenticated=False,
          summary="Whether a token is active", responses={200: "{active}"}),
    Route(f"{ACTIONS}/revoke", revoke, methods=("POST",), family=PAM,
          summary="Revoke a token", responses=COMMON),
    Route(f"{ACTIONS}/reinstate", reinstate, methods=("POST",),
          family=PAM, summary="Reinstate a revoked token (admin)", responses=COMMON),
    Route(f"{ACTIONS}/revokeByConsumer", revoke_by_consumer, methods=("POST",),
          family=PAM, summary="Revoke a consumer's tokens of a provider", responses=COMMON),
    Route(f"{ACTIONS}/reinstateByConsumer", reinstate_by_consumer,
          methods=("POST",), family=PAM, summary="Reinstate a consumer's tokens (admin)",
          responses=COMMON),
    Route(f"{ACTIONS}/fetchOAuthAccessToken", fetch_oauth_token, methods=("POST",), family=PAM,
          summary="An upstream OAuth provider's access token", responses=COMMON),
    Route("/v2/<instance_id>/credentials/_/actions/obtain", obtain_credential, family=PAM,
          summary="A managed upstream API key (?credentialIdentifier=)", responses=COMMON),
)
