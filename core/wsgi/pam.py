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
from typing import Annotated, Any

import attrs
import msgspec
from werkzeug.wrappers import Response

from credenza.config import Section
from credenza.errors import BadRequest, CredenzaError, NotFound
from credenza.models import RESERVED_CLAIMS, IssuedToken, TokenQuery, TokenRecord, TokenSpec
from credenza.settings import read, setting
from credenza.wsgi.routes import (
    Empty,
    Family,
    Name,
    Reply,
    RequestContext,
    Route,
    Text,
    TokenText,
    json_response,
)

MAX_RESULTS = 100
# A year and a day: longer than any provider's maximum lifetime may be set to.
MAX_EXPIRATION = 366 * 86400


@attrs.frozen
class PamSettings:
    """``[api.idaas-pam]``."""

    instance_id: str = setting("The instance id in the API's paths (/v2/{instanceId}/...) and "
                               "in token metadata", "credenza")

    @classmethod
    def from_section(cls, section: Section) -> PamSettings:
        """Read ``[api.idaas-pam]``."""
        return read(cls, section)


class PamError(msgspec.Struct):
    """The error shape the SDK turns into its ClientException."""

    code: str
    error: str
    error_description: str
    request_id: str


def render_pam_error(error: CredenzaError, ctx: RequestContext) -> Response:
    """The shape the SDK turns into its ClientException."""
    body = {"code": str(error.status), "error": error.slug.replace("-", "_"),
            "error_description": error.detail, "request_id": ctx.request_id}
    return json_response(body, error.status, error.headers())


PAM = Family("idaas-pam", "IDaaS PAM compatible developer API (cloud-idaas-pam-client).",
             prefixes=("/v2/",), render_error=render_pam_error, settings=PamSettings,
             error_schema=PamError, error_media_type="application/json")


# -- what the SDK sends -------------------------------------------------------------------------


class GenerateJwt(msgspec.Struct):
    """``generateJwt``'s body."""

    credentialProviderIdentifier: Name
    subject: Name
    audiences: Annotated[list[Name], msgspec.Meta(min_length=1, max_length=64)]
    issuer: Name | None = None
    customClaims: Annotated[dict[str, Any], msgspec.Meta(max_length=64)] | None = None
    expiration: Annotated[int, msgspec.Meta(ge=1, le=MAX_EXPIRATION)] | None = None
    includeDerivedShortToken: bool | None = None


class ObtainJwt(msgspec.Struct):
    """``obtainJwt``'s body."""

    consumerId: Name
    authenticationTokenId: Name


class ShortToken(msgspec.Struct):
    """``obtainJwtByDerivedShortToken``'s body."""

    derivedShortToken: TokenText


class OneToken(msgspec.Struct):
    """The body of validate, revoke and reinstate: a JWT or a derived short token."""

    token: TokenText
    token_type_hint: Name | None = None


class ConsumerTokens(msgspec.Struct):
    """The body of revokeByConsumer and reinstateByConsumer."""

    consumerId: Name
    credentialProviderIdentifier: Name


class FetchOAuthToken(msgspec.Struct):
    """``fetchOAuthAccessToken``'s body."""

    credentialProviderIdentifier: Name
    scope: Text | None = None
    forceAuthentication: bool | None = None
    customParameters: Annotated[dict[str, Any], msgspec.Meta(max_length=64)] | None = None


class ListQuery(msgspec.Struct):
    """``authenticationTokens``' query."""

    consumerId: Name
    credentialProviderIdentifier: Name
    maxResults: Annotated[int, msgspec.Meta(ge=1, le=MAX_RESULTS)] = 20
    nextToken: TokenText | None = None
    revoked: bool | None = None
    expired: bool | None = None


class CredentialQuery(msgspec.Struct):
    """``credentials/_/actions/obtain``'s query."""

    credentialIdentifier: Name


# -- what it reads --------------------------------------------------------------------------------


class TokenMetadata(msgspec.Struct):
    """A token's metadata; times are epoch milliseconds."""

    instanceId: str
    authenticationTokenId: str
    authenticationTokenType: str
    credentialProviderId: str
    creatorType: str
    creatorId: str
    consumerType: str
    consumerId: str
    revoked: bool
    createTime: int
    updateTime: int
    expirationTime: int


class JwtContent(msgspec.Struct):
    jwtValue: str
    derivedShortToken: str | None


class JwtAnswer(TokenMetadata):
    """A token's metadata with the JWT (and its derived short token, when asked for)."""

    jwtContent: JwtContent


class TokenPage(msgspec.Struct):
    entities: list[TokenMetadata]
    totalCount: int | None
    maxResults: int
    nextToken: str | None


class Active(msgspec.Struct):
    active: bool



class OAuthAccessTokenContent(msgspec.Struct):
    accessTokenValue: str
    tokenType: str
    scope: str
    expirationTime: int


class UpstreamAnswer(msgspec.Struct):
    oauthAccessTokenContent: OAuthAccessTokenContent


class ApiKeyContent(msgspec.Struct):
    apiKey: str


class CredentialContent(msgspec.Struct):
    apiKeyContent: ApiKeyContent


class CredentialAnswer(msgspec.Struct):
    credentialId: str
    credentialIdentifier: str
    credentialType: str
    status: str
    credentialContent: CredentialContent


# -- handlers --------------------------------------------------------------------------------------


def _ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


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


def generate_jwt(ctx: RequestContext, instance_id: str, body: GenerateJwt) -> Response:
    """``generateJwt``: a new JWT of a credential provider, for the calling application."""
    _check_instance(ctx, instance_id)
    principal = ctx.principal()
    custom = body.customClaims or {}
    reserved = sorted(RESERVED_CLAIMS & custom.keys())
    if reserved:
        raise BadRequest(f"customClaims cannot set claims this broker reserves: "
                         f"{', '.join(reserved)}")
    spec = TokenSpec(
        provider=body.credentialProviderIdentifier,
        subject=body.subject,
        audiences=body.audiences,
        issuer=body.issuer,
        custom_claims=custom,
        lifetime=dt.timedelta(seconds=body.expiration) if body.expiration else None,
        consumer_type="application" if principal.kind == "client" else "custom",
        consumer_id=principal.name,
        include_short_token=bool(body.includeDerivedShortToken),
    )
    return _jwt_answer(ctx, ctx.broker.issue_token(principal, spec))


def obtain_jwt(ctx: RequestContext, instance_id: str, body: ObtainJwt) -> Response:
    """``obtainJwt``: a stored JWT again, by consumer and token id."""
    _check_instance(ctx, instance_id)
    token = ctx.broker.tokens.obtain(ctx.principal(), body.consumerId,
                                     body.authenticationTokenId)
    return _jwt_answer(ctx, token)


def obtain_by_short_token(ctx: RequestContext, instance_id: str, body: ShortToken) -> Response:
    """``obtainJwtByDerivedShortToken``: the short token is the credential (no Authorization)."""
    _check_instance(ctx, instance_id)
    return _jwt_answer(ctx, ctx.broker.tokens.obtain_by_short_token(body.derivedShortToken))


def list_tokens(ctx: RequestContext, instance_id: str, query: ListQuery) -> Response:
    """``authenticationTokens``: one page of a consumer's tokens of a provider."""
    _check_instance(ctx, instance_id)
    listing = TokenQuery(consumer_id=query.consumerId,
                         provider=query.credentialProviderIdentifier,
                         revoked=query.revoked, expired=query.expired)
    after = _page_position(query.nextToken, listing) if query.nextToken else None
    page = ctx.broker.tokens.list(ctx.principal(), listing, query.maxResults, after)
    return json_response({"entities": [metadata(ctx, record) for record in page.items],
                          "totalCount": page.total_count, "maxResults": query.maxResults,
                          "nextToken": _page_token(page.after, listing) if page.after else None})


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


def validate(ctx: RequestContext, instance_id: str, body: OneToken) -> Response:
    """``validate``: whether a JWT or derived short token is active (no Authorization)."""
    _check_instance(ctx, instance_id)
    return json_response({"active": ctx.broker.tokens.validate(body.token)})


def revoke(ctx: RequestContext, instance_id: str, body: OneToken) -> Response:
    """``revoke``: one token (a JWT or a derived short token), by its consumer or an admin."""
    _check_instance(ctx, instance_id)
    ctx.broker.tokens.revoke(ctx.principal(), body.token)
    return json_response({})


def reinstate(ctx: RequestContext, instance_id: str, body: OneToken) -> Response:
    """``reinstate``: one revoked, unexpired token (admins)."""
    _check_instance(ctx, instance_id)
    ctx.broker.tokens.reinstate(ctx.principal(), body.token)
    return json_response({})


def revoke_by_consumer(ctx: RequestContext, instance_id: str, body: ConsumerTokens) -> Response:
    """``revokeByConsumer``: all of a consumer's tokens of one provider."""
    _check_instance(ctx, instance_id)
    ctx.broker.tokens.revoke_consumer(ctx.principal(), body.consumerId,
                                      body.credentialProviderIdentifier)
    return json_response({})


def reinstate_by_consumer(ctx: RequestContext, instance_id: str,
                          body: ConsumerTokens) -> Response:
    """``reinstateByConsumer``: a consumer's unexpired tokens of one provider (admins)."""
    _check_instance(ctx, instance_id)
    ctx.broker.tokens.reinstate_consumer(ctx.principal(), body.consumerId,
                                         body.credentialProviderIdentifier)
    return json_response({})


def fetch_oauth_token(ctx: RequestContext, instance_id: str, body: FetchOAuthToken) -> Response:
    """``fetchOAuthAccessToken``: an upstream provider's access token for the caller."""
    _check_instance(ctx, instance_id)
    token = ctx.broker.upstream_token(ctx.principal(), body.credentialProviderIdentifier,
                                      body.scope, bool(body.forceAuthentication))
    return json_response({"oauthAccessTokenContent": {
        "accessTokenValue": token.value, "tokenType": token.token_type, "scope": token.scope,
        "expirationTime": _ms(token.expires_at)}})


def obtain_credential(ctx: RequestContext, instance_id: str, query: CredentialQuery) -> Response:
    """``credentials/_/actions/obtain``: a managed upstream API key (get_api_key)."""
    _check_instance(ctx, instance_id)
    identifier = query.credentialIdentifier
    value = ctx.broker.managed_credential(ctx.principal(), identifier)
    return json_response({"credentialId": identifier, "credentialIdentifier": identifier,
                          "credentialType": "api_key", "status": "enabled",
                          "credentialContent": {"apiKeyContent": {"apiKey": value}}})


BASE = "/v2/<instance_id>/authenticationTokens"
ACTIONS = f"{BASE}/_/actions"
ERRORS = {400: "Bad request", 401: "No valid access token", 403: "Not granted",
          404: "Unknown token, provider or instance", 409: "Revoked or expired",
          503: "Store unavailable"}
DONE = {200: Reply("Done", Empty), **ERRORS}
JWT = {200: Reply("The token and its metadata", JwtAnswer), **ERRORS}

ROUTES = (
    Route(f"{ACTIONS}/generateJwt", generate_jwt, methods=("POST",), family=PAM,
          body=GenerateJwt, responses=JWT,
          summary="Generate a JWT (optionally with a derived short token)"),
    Route(f"{ACTIONS}/obtainJwt", obtain_jwt, methods=("POST",), family=PAM, body=ObtainJwt,
          summary="Obtain a stored JWT by consumer and id", responses=JWT),
    Route(f"{ACTIONS}/obtainJwtByDerivedShortToken", obtain_by_short_token, methods=("POST",),
          family=PAM, authenticated=False, body=ShortToken,
          summary="Obtain a JWT by its derived short token", responses=JWT),
    Route(BASE, list_tokens, family=PAM, query=ListQuery,
          summary="List a consumer's tokens of a provider",
          responses={200: Reply("One page of token metadata", TokenPage), **ERRORS}),
    Route(f"{ACTIONS}/validate", validate, methods=("POST",), family=PAM, authenticated=False,
          body=OneToken, summary="Whether a token is active",
          responses={200: Reply("Whether the token is active", Active), 400: "Bad request"}),
    Route(f"{ACTIONS}/revoke", revoke, methods=("POST",), family=PAM, body=OneToken,
          summary="Revoke a token", responses=DONE),
    Route(f"{ACTIONS}/reinstate", reinstate, methods=("POST",), family=PAM, body=OneToken,
          summary="Reinstate a revoked token (admin)", responses=DONE),
    Route(f"{ACTIONS}/revokeByConsumer", revoke_by_consumer, methods=("POST",), family=PAM,
          body=ConsumerTokens, summary="Revoke a consumer's tokens of a provider",
          responses=DONE),
    Route(f"{ACTIONS}/reinstateByConsumer", reinstate_by_consumer, methods=("POST",),
          family=PAM, body=ConsumerTokens, summary="Reinstate a consumer's tokens (admin)",
          responses=DONE),
    Route(f"{ACTIONS}/fetchOAuthAccessToken", fetch_oauth_token, methods=("POST",), family=PAM,
          body=FetchOAuthToken, summary="An upstream OAuth provider's access token",
          responses={200: Reply("The access token", UpstreamAnswer), **ERRORS}),
    Route("/v2/<instance_id>/credentials/_/actions/obtain", obtain_credential, family=PAM,
          query=CredentialQuery, summary="A managed upstream API key",
          responses={200: Reply("The key", CredentialAnswer), **ERRORS}),
)
