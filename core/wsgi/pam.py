"""The IDaaS PAM compatible developer API: ``/v2/{instanceId}/authenticationTokens/...``.

What the real ``cloud-idaas-pam-client`` sends and expects (protocols/idaas-pam.md): JSON bodies,
``Authorization: Bearer <access token>`` from ``/oauth2/token`` (except for validation and
short-token exchange), every success 200 with a JSON body, times in epoch milliseconds, errors
as ``{code, error, error_description, request_id}``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from werkzeug.wrappers import Response

from credenza.errors import BadRequest, CredenzaError, NotFound
from credenza.models import IssuedToken, TokenQuery, TokenRecord, TokenSpec
from credenza.wsgi.routes import Family, RequestContext, Route, json_response

MAX_RESULTS = 100


def render_pam_error(error: CredenzaError, ctx: RequestContext) -> Response:
    """The shape the SDK turns into its ClientException."""
    body = {"code": str(error.status), "error": error.slug.replace("-", "_"),
            "error_description": error.detail, "request_id": ctx.request_id}
    return json_response(body, error.status, error.headers())


PAM = Family("idaas-pam", "IDaaS PAM compatible developer API (cloud-idaas-pam-client).",
             prefixes=("/v2/",), render_error=render_pam_error)


def _ms(moment: dt.datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def _check_instance(ctx: RequestContext, instance_id: str) -> None:
    if instance_id != ctx.broker.config.server.idaas_instance_id:
        raise NotFound(f"unknown instance {instance_id!r}")


def metadata(ctx: RequestContext, record: TokenRecord) -> dict[str, Any]:
    """A token's metadata as the SDK reads it."""
    return {
        "instanceId": ctx.broker.config.server.idaas_instance_id,
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
    token = ctx.broker.obtain_token(principal, _string(body, "consumerId"),
                                    _string(body, "authenticationTokenId"))
    return _jwt_answer(ctx, token)


def obtain_by_short_token(ctx: RequestContext, instance_id: str) -> Response:
    """``obtainJwtByDerivedShortToken``: the short token is the credential (no Authorization)."""
    _check_instance(ctx, instance_id)
    token = ctx.broker.obtain_by_short_token(_string(ctx.json_body(), "derivedShortToken"))
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
    page = ctx.broker.list_tokens(principal, query, int(raw_max), args.get("nextToken") or None)
    return json_response({"entities": [metadata(ctx, record) for record in page.items],
                          "totalCount": page.total_count, "maxResults": int(raw_max),
                          "nextToken": page.next_token})


def validate(ctx: RequestContext, instance_id: str) -> Response:
    """``validate``: whether a JWT or derived short token is active (no Authorization)."""
    _check_instance(ctx, instance_id)
    return json_response({"active": ctx.broker.validate_token(_string(ctx.json_body(), "token"))})


def _token_action(method: str) -> Any:
    def action(ctx: RequestContext, instance_id: str) -> Response:
        _check_instance(ctx, instance_id)
        getattr(ctx.broker, method)(ctx.principal(), _string(ctx.json_body(), "token"))
        return json_response({})

    action.__doc__ = f"``{method}`` of one token (a JWT or a derived short token)."
    return action


def _consumer_action(method: str) -> Any:
    def action(ctx: RequestContext, instance_id: str) -> Response:
        _check_instance(ctx, instance_id)
        body = ctx.json_body()
        getattr(ctx.broker, method)(ctx.principal(), _string(body, "consumerId"),
                                    _string(body, "credentialProviderIdentifier"))
        return json_response({})

    action.__doc__ = f"``{method}``: all of a consumer's tokens of one provider."
    return action


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
    Route(f"{ACTIONS}/revoke", _token_action("revoke_token"), methods=("POST",), family=PAM,
          summary="Revoke a token", responses=COMMON),
    Route(f"{ACTIONS}/reinstate", _token_action("reinstate_token"), methods=("POST",),
          family=PAM, summary="Reinstate a revoked token (admin)", responses=COMMON),
    Route(f"{ACTIONS}/revokeByConsumer", _consumer_action("revoke_consumer"), methods=("POST",),
          family=PAM, summary="Revoke a consumer's tokens of a provider", responses=COMMON),
    Route(f"{ACTIONS}/reinstateByConsumer", _consumer_action("reinstate_consumer"),
          methods=("POST",), family=PAM, summary="Reinstate a consumer's tokens (admin)",
          responses=COMMON),
    Route(f"{ACTIONS}/fetchOAuthAccessToken", fetch_oauth_token, methods=("POST",), family=PAM,
          summary="An upstream OAuth provider's access token", responses=COMMON),
    Route("/v2/<instance_id>/credentials/_/actions/obtain", obtain_credential, family=PAM,
          summary="A managed upstream API key (?credentialIdentifier=)", responses=COMMON),
)
