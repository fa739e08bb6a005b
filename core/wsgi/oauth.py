"""OAuth 2.0 for this broker's own API: the token endpoint, JWKS, discovery.

``POST /oauth2/token`` takes form-encoded requests (RFC 6749); the client authenticates with HTTP
Basic (client_secret_basic) or ``client_id``/``client_secret`` in the body (client_secret_post).
Answers carry ``expires_in`` and, for clients that cache by it (the IDaaS PAM client), the
non-standard ``expires_at`` (epoch seconds). Errors are ``{error, error_description, request_id}``
as RFC 6749 section 5.2 says.
"""

from __future__ import annotations

import urllib.parse

from werkzeug.wrappers import Response

from credenza.errors import BadRequest, CredenzaError, Unauthenticated, UnsupportedGrantType
from credenza.models import BasicCredentials, IdentityRequest, Principal
from credenza.oauth import TokenResponse
from credenza.wsgi.routes import JSON, Family, RequestContext, Route, json_response

# RFC 6749 5.2 error codes for errors that have no code of their own, by HTTP status.
OAUTH_ERRORS = {400: "invalid_request", 401: "invalid_client", 403: "unauthorized_client",
                404: "invalid_request", 413: "invalid_request"}


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


OAUTH = Family("oauth", "OAuth 2.0 token endpoint, JWKS and discovery.",
               prefixes=("/oauth2/", "/token"), render_error=render_oauth_error)


def form(ctx: RequestContext) -> dict[str, str]:
    """The form-encoded body; a parameter given twice is an error (RFC 6749 section 3.2)."""
    content_type = ctx.request.mimetype
    if content_type != "application/x-www-form-urlencoded":
        raise BadRequest("the token endpoint takes application/x-www-form-urlencoded bodies")
    try:
        pairs = urllib.parse.parse_qsl(ctx.body().decode("utf-8"), keep_blank_values=True,
                                       strict_parsing=False)
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8") from None
    values: dict[str, str] = {}
    for key, value in pairs:
        if key in values:
            raise BadRequest(f"parameter {key!r} is given more than once")
        values[key] = value
    return values


def client_principal(ctx: RequestContext, params: dict[str, str]) -> Principal:
    """The authenticated client: Basic, or client_id + client_secret in the body (not both)."""
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


def token(ctx: RequestContext) -> Response:
    """The token endpoint: the grant class registered for ``grant_type`` does the work."""
    params = form(ctx)
    grant = ctx.broker.oauth.grant(params.get("grant_type"))
    return token_answer(grant.issue(client_principal(ctx, params), params))


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


def token_json(ctx: RequestContext) -> Response:
    """``POST /token`` with a JSON body, for public API-token clients (the Descartes Labs
    style): ``{client_id, grant_type: refresh_token, refresh_token}``."""
    body = ctx.json_body()
    api_tokens = ctx.broker.oauth.api_tokens
    if body.get("grant_type") != api_tokens.grant_type:
        raise UnsupportedGrantType(f"grant_type must be {api_tokens.grant_type}")
    client_id, api_token = body.get("client_id"), body.get("refresh_token")
    if not isinstance(client_id, str) or not isinstance(api_token, str):
        raise BadRequest("client_id and refresh_token are required strings")
    return token_answer(TokenResponse(api_tokens.exchange(client_id, api_token)))


def introspect(ctx: RequestContext) -> Response:
    """RFC 7662: what a token is, for the client it was issued to (or an admin)."""
    params = form(ctx)
    client = client_principal(ctx, params)
    return json_response(ctx.broker.oauth.introspect(client, params.get("token") or ""))


def revoke(ctx: RequestContext) -> Response:
    """RFC 7009: revoke a token of the calling client; a refresh token takes its family with
    it. Unknown tokens are answered 200, as the RFC asks."""
    params = form(ctx)
    client = client_principal(ctx, params)
    if not params.get("token"):
        raise BadRequest("token is required")
    ctx.broker.oauth.revoke(client, params["token"])
    return json_response({})


def jwks(ctx: RequestContext) -> Response:
    """Every published public key (active, next, and retiring ones still covering tokens)."""
    response = json_response({"keys": ctx.broker.tokens.jwks()})
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


def openid_configuration(ctx: RequestContext) -> Response:
    """Discovery (RFC 8414 / OpenID Connect Discovery) for this broker's issuer."""
    base = ctx.request.host_url.rstrip("/")
    issuer = ctx.broker.tokens.issuer() or base
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


ROUTES = (
    Route("/oauth2/token", token, methods=("POST",), family=OAUTH, authenticated=False,
          summary="OAuth 2.0 token endpoint (client_credentials, refresh_token)",
          responses={200: "An access token", 400: "Bad request, scope or grant",
                     401: "Bad client"}),
    Route("/token", token_json, methods=("POST",), family=OAUTH, authenticated=False,
          summary="API-token clients: JSON refresh_token grant (Descartes Labs style)",
          responses={200: "{access_token}", 400: "Bad request", 401: "Bad refresh token"}),
    Route("/oauth2/introspect", introspect, methods=("POST",), family=OAUTH,
          authenticated=False, summary="RFC 7662 token introspection (client authentication)",
          responses={200: "{active, ...}", 401: "Bad client"}),
    Route("/oauth2/revoke", revoke, methods=("POST",), family=OAUTH, authenticated=False,
          summary="RFC 7009 token revocation (client authentication)",
          responses={200: "Revoked, or unknown", 401: "Bad client", 403: "Not the client's"}),
    Route("/.well-known/jwks.json", jwks, family=OAUTH, authenticated=False,
          summary="Public signing keys (JWKS)", content_type=JSON),
    Route("/.well-known/openid-configuration", openid_configuration, family=OAUTH,
          authenticated=False, summary="Discovery document"),
)
