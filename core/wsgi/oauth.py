"""OAuth 2.0 for this broker's own API: the token endpoint, JWKS, discovery.

``POST /oauth2/token`` takes form-encoded requests (RFC 6749); the client authenticates with HTTP
Basic (client_secret_basic) or ``client_id``/``client_secret`` in the body (client_secret_post).
Answers carry ``expires_in`` and, for clients that cache by it (the IDaaS PAM client), the
non-standard ``expires_at`` (epoch seconds). Errors are ``{error, error_description, request_id}``
as RFC 6749 section 5.2 says.
"""

from __future__ import annotations

from typing import Any

import msgspec
from werkzeug.wrappers import Response

from credenza.errors import BadRequest, CredenzaError, Unauthenticated, UnsupportedGrantType
from credenza.models import BasicCredentials, IdentityRequest, Principal
from credenza.oauth import TokenResponse
from credenza.wsgi.routes import (
    FORM,
    JSON,
    Empty,
    Family,
    Name,
    Reply,
    RequestContext,
    Route,
    Text,
    TokenText,
    form_fields,
    json_response,
)

# RFC 6749 5.2 error codes for errors that have no code of their own, by HTTP status.
OAUTH_ERRORS = {400: "invalid_request", 401: "invalid_client", 403: "unauthorized_client",
                404: "invalid_request", 413: "invalid_request"}


class OAuthErrorBody(msgspec.Struct):
    """RFC 6749 5.2's error response (with the request id of the server log)."""

    error: str
    error_description: str
    request_id: str


def render_oauth_error(error: CredenzaError, ctx: RequestContext) -> Response:
    """``{error, error_description, request_id}`` with the status RFC 6749 5.2 asks for: 401
    only for ``invalid_client``, 400 for the other client errors (a refusal included)."""
    code = error.oauth_error or OAUTH_ERRORS.get(
        error.status, "server_error" if error.status < 503 else "temporarily_unavailable")
    body = {"error": code, "error_description": error.detail, "request_id": ctx.request_id}
    headers = error.headers()
    status = 400 if error.status == 403 else error.status
    if status == 401:
        headers = {"WWW-Authenticate": f'Basic realm="{ctx.broker.config.server.realm}"'}
    response = json_response(body, status, headers)
    response.headers["Pragma"] = "no-cache"
    return response


OAUTH = Family("oauth", "OAuth 2.0 token endpoints, JWKS and discovery.",
               prefixes=("/oauth2/", "/token"), render_error=render_oauth_error,
               error_schema=OAuthErrorBody, error_media_type=JSON)


# -- what clients send -----------------------------------------------------------------------------


class ClientAuthentication(msgspec.Struct):
    """client_secret_post: the client's id and secret in the form (or HTTP Basic instead)."""

    client_id: Name | None = None
    client_secret: TokenText | None = None


class TokenRequest(ClientAuthentication):
    """``/oauth2/token``'s form: ``grant_type`` picks the grant and which fields it reads."""

    grant_type: Name | None = None
    scope: Text | None = None
    refresh_token: TokenText | None = None
    subject_token: TokenText | None = None
    subject_token_type: Name | None = None
    requested_token_type: Name | None = None
    actor_token: TokenText | None = None
    actor_token_type: Name | None = None


class TokenOfClient(ClientAuthentication):
    """The form of introspection (RFC 7662) and revocation (RFC 7009)."""

    token: TokenText | None = None
    token_type_hint: Name | None = None


class ApiTokenRequest(msgspec.Struct):
    """``POST /token``'s JSON body (the Descartes Labs client)."""

    client_id: Name
    refresh_token: TokenText
    grant_type: Name = "refresh_token"
    scope: Text | None = None


# -- what they get ---------------------------------------------------------------------------------


class TokenAnswer(msgspec.Struct, omit_defaults=True):
    """A token response; ``expires_at`` (epoch seconds) is for clients that cache by it."""

    access_token: str
    token_type: str
    expires_in: int
    expires_at: int
    scope: str | None = None
    refresh_token: str | None = None
    issued_token_type: str | None = None


class Introspection(msgspec.Struct, omit_defaults=True):
    """RFC 7662's answer: ``active`` alone for a token that is not, or not the client's."""

    active: bool
    token_type: str | None = None
    client_id: str | None = None
    jti: str | None = None
    exp: int | None = None
    iat: int | None = None
    nbf: int | None = None
    sub: str | None = None
    aud: str | list[str] | None = None
    iss: str | None = None
    scope: str | None = None


class Jwks(msgspec.Struct):
    keys: list[dict[str, Any]]



# -- handlers --------------------------------------------------------------------------------------


def client_principal(ctx: RequestContext) -> Principal:
    """The authenticated client: Basic, or client_id + client_secret in the body (not both)."""
    params = form_fields(ctx)
    request = IdentityRequest.from_environ(ctx.request.environ)
    posted = params.get("client_id"), params.get("client_secret")
    if request.basic is not None and any(posted[1:]):
        raise BadRequest("authenticate the client one way: Basic or the body, not both")
    if request.basic is None:
        if not all(posted):
            raise Unauthenticated("client authentication is required")
        request = IdentityRequest(environ=ctx.request.environ,
                                  basic=BasicCredentials(posted[0], posted[1]))
    try:
        principal = ctx.broker.identify(request)
    except Unauthenticated:
        raise Unauthenticated("invalid client credentials") from None
    if posted[0] and posted[0] != principal.name:
        raise BadRequest("client_id does not match the authenticated client")
    return principal


def token_client(ctx: RequestContext) -> Principal:
    """The client of a token request, once its ``grant_type`` is known to be supported."""
    ctx.broker.oauth.grant(form_fields(ctx).get("grant_type"))
    return client_principal(ctx)


def token(ctx: RequestContext, body: TokenRequest) -> Response:
    """The token endpoint: the grant class registered for ``grant_type`` does the work."""
    grant = ctx.broker.oauth.grant(body.grant_type)
    params = {key: value for key, value in msgspec.structs.asdict(body).items()
              if value is not None}
    return token_answer(grant.issue(ctx.principal(), params))


def token_answer(answer: TokenResponse) -> Response:
    """A successful token response: the token, its lifetime as ``expires_in`` and ``expires_at``
    (epoch seconds, which some clients cache by), and the grant's fields; never cached."""
    record = answer.issued.record
    response = json_response({
        "access_token": answer.issued.value,
        "token_type": "Bearer",
        "expires_in": int((record.expires_at - record.issued_at).total_seconds()),
        "expires_at": int(record.expires_at.timestamp()),
        **({"scope": answer.scope} if answer.scope is not None else {}),
        **answer.fields,
    })
    response.headers["Pragma"] = "no-cache"
    return response


def token_json(ctx: RequestContext, body: ApiTokenRequest) -> Response:
    """``POST /token`` with a JSON body, for public API-token clients (the Descartes Labs
    style): ``{client_id, grant_type: refresh_token, refresh_token}``."""
    api_tokens = ctx.broker.oauth.api_tokens
    if body.grant_type != api_tokens.grant_type:
        raise UnsupportedGrantType(f"grant_type must be {api_tokens.grant_type}")
    return token_answer(TokenResponse(api_tokens.exchange(body.client_id, body.refresh_token)))


def introspect(ctx: RequestContext, body: TokenOfClient) -> Response:
    """RFC 7662: what a token is, for the client it was issued to (or an admin)."""
    if not body.token:
        raise BadRequest("token is required")
    return json_response(ctx.broker.oauth.introspect(ctx.principal(), body.token))


def revoke(ctx: RequestContext, body: TokenOfClient) -> Response:
    """RFC 7009: revoke a token of the calling client; a refresh token takes its family with
    it. Unknown tokens are answered 200, as the RFC asks."""
    if not body.token:
        raise BadRequest("token is required")
    ctx.broker.oauth.revoke(ctx.principal(), body.token)
    return json_response({})


def jwks(ctx: RequestContext) -> Response:
    """Every published public key (active, next, and retiring ones still covering tokens)."""
    response = json_response({"keys": ctx.broker.tokens.jwks()})
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


def openid_configuration(ctx: RequestContext) -> Response:
    """Discovery (RFC 8414 / OpenID Connect Discovery) for this broker's issuer.

    The endpoints are under the issuer when it is an https URL: that is where a relying party
    (IAM, for web identity) found this document, even when a TLS-terminating proxy made the
    request reach the broker under another scheme or name."""
    issuer = ctx.broker.tokens.issuer()
    base = issuer.rstrip("/") if issuer and issuer.startswith("https://") else \
        ctx.request.host_url.rstrip("/")
    issuer = issuer or base
    return json_response({
        "issuer": issuer,
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "token_endpoint": f"{base}/oauth2/token",
        "grant_types_supported": sorted(ctx.broker.oauth.grants),
        "introspection_endpoint": f"{base}/oauth2/introspect",
        "revocation_endpoint": f"{base}/oauth2/revoke",
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "id_token_signing_alg_values_supported": ["ES256", "RS256", "EdDSA"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
    })


CLIENT_ERRORS = {400: "Bad request, scope or grant; not the client's", 401: "Bad client",
                 503: "A dependency is down"}

ROUTES = (
    Route("/oauth2/token", token, methods=("POST",), family=OAUTH, body=TokenRequest,
          body_media_type=FORM, authenticate=token_client,
          summary="OAuth 2.0 token endpoint (client_credentials, refresh_token, token exchange)",
          responses={200: Reply("The tokens", TokenAnswer), **CLIENT_ERRORS}),
    Route("/token", token_json, methods=("POST",), family=OAUTH, authenticated=False,
          body=ApiTokenRequest,
          summary="API-token clients: JSON refresh_token grant (Descartes Labs style)",
          responses={200: Reply("A JWT for the API token's user", TokenAnswer),
                     400: "Bad request", 401: "Bad refresh token"}),
    Route("/oauth2/introspect", introspect, methods=("POST",), family=OAUTH,
          body=TokenOfClient, body_media_type=FORM, authenticate=client_principal,
          summary="RFC 7662 token introspection (client authentication)",
          responses={200: Reply("What the token is", Introspection), **CLIENT_ERRORS}),
    Route("/oauth2/revoke", revoke, methods=("POST",), family=OAUTH, body=TokenOfClient,
          body_media_type=FORM, authenticate=client_principal,
          summary="RFC 7009 token revocation (client authentication)",
          responses={200: Reply("Revoked, or unknown", Empty), **CLIENT_ERRORS}),
    Route("/.well-known/jwks.json", jwks, family=OAUTH, authenticated=False,
          summary="Public signing keys (JWKS)",
          responses={200: Reply("The keys", Jwks)}),
    Route("/.well-known/openid-configuration", openid_configuration, family=OAUTH,
          authenticated=False, summary="Discovery document",
          responses={200: Reply("The discovery document", dict[str, Any])}),
)
