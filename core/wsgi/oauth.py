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

from credenza.errors import BadRequest, CredenzaError, Forbidden, InvalidGrant, Unauthenticated
from credenza.models import BasicCredentials, IdentityRequest, IssuedToken
from credenza.wsgi.routes import JSON, Family, RequestContext, Route, json_response

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 - a URI
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 - a type URI
SUBJECT_TOKEN_TYPES = frozenset({ACCESS_TOKEN_TYPE, "urn:ietf:params:oauth:token-type:jwt",
                                 "urn:ietf:params:oauth:token-type:id_token"})
OAUTH_ERRORS = {400: "invalid_request", 401: "invalid_client", 403: "unauthorized_client",
                404: "invalid_request", 413: "invalid_request"}


class OAuthError(BadRequest):
    """An RFC 6749 error with its own code (``unsupported_grant_type``, ``invalid_scope``)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


def render_oauth_error(error: CredenzaError, ctx: RequestContext) -> Response:
    """``{error, error_description, request_id}`` with the status RFC 6749 asks for."""
    if isinstance(error, OAuthError):
        code = error.code
    elif isinstance(error, InvalidGrant):
        code = "invalid_grant"
    else:
        code = OAUTH_ERRORS.get(error.status, "server_error" if error.status < 503
                                else "temporarily_unavailable")
    body = {"error": code, "error_description": error.detail, "request_id": ctx.request_id}
    headers = error.headers()
    if error.status == 401:
        headers = {"WWW-Authenticate": f'Basic realm="{ctx.broker.config.server.realm}"'}
    response = json_response(body, error.status, headers)
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


def client_principal(ctx: RequestContext, params: dict[str, str]):
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


def audiences_of(scope: str) -> frozenset[str]:
    """Scopes are ``audience|value`` (the IDaaS form) or a bare audience."""
    return frozenset(item.split("|", 1)[0] for item in scope.split() if item)


def token(ctx: RequestContext) -> Response:
    """The token endpoint: ``client_credentials`` and ``refresh_token`` (rotating)."""
    params = form(ctx)
    grant_type = params.get("grant_type")
    if grant_type not in ("client_credentials", "refresh_token", TOKEN_EXCHANGE):
        raise OAuthError("unsupported_grant_type",
                         f"grant_type {grant_type!r} is not supported here")
    principal = client_principal(ctx, params)
    refresh: str | None = None
    extra: dict[str, str] = {}
    if grant_type == TOKEN_EXCHANGE:
        if params.get("subject_token_type") not in SUBJECT_TOKEN_TYPES:
            raise BadRequest("subject_token_type must be one of "
                             f"{', '.join(sorted(SUBJECT_TOKEN_TYPES))}")
        requested = params.get("requested_token_type") or ACCESS_TOKEN_TYPE
        if requested != ACCESS_TOKEN_TYPE:
            raise BadRequest(f"requested_token_type can only be {ACCESS_TOKEN_TYPE}")
        if not params.get("subject_token"):
            raise BadRequest("subject_token is required")
        if params.get("actor_token"):
            raise BadRequest("actor_token is not supported: the authenticated client is the "
                             "actor")
        scope = params.get("scope", "")
        try:
            issued = ctx.broker.exchange_token(principal, params["subject_token"],
                                               audiences_of(scope), scope)
        except Unauthenticated as exc:
            raise InvalidGrant(exc.detail) from None
        extra["issued_token_type"] = ACCESS_TOKEN_TYPE
    elif grant_type == "refresh_token":
        if not params.get("refresh_token"):
            raise BadRequest("refresh_token is required")
        issued, refresh = ctx.broker.refresh_access_token(principal, params["refresh_token"])
        scope = str(issued.record.claims.get("scope", ""))
    else:
        scope = params.get("scope", "")
        audiences = audiences_of(scope)
        family = None
        if principal.attributes.get("refresh_tokens") == "rotate":
            refresh, family = ctx.broker.issue_refresh_token(principal, audiences, scope)
        issued = ctx.broker.issue_access_token(principal, audiences, scope, family)
    return token_answer(issued, scope=scope, **({"refresh_token": refresh} if refresh else {}),
                        **extra)


def token_answer(issued: IssuedToken, **fields: str) -> Response:
    """A successful token response: the token, its lifetime as ``expires_in`` and ``expires_at``
    (epoch seconds, which some clients cache by), and ``fields``; never cached."""
    record = issued.record
    response = json_response({
        "access_token": issued.value,
        "token_type": "Bearer",
        "expires_in": int((record.expires_at - record.issued_at).total_seconds()),
        "expires_at": int(record.expires_at.timestamp()),
        **fields,
    })
    response.headers["Pragma"] = "no-cache"
    return response


def token_json(ctx: RequestContext) -> Response:
    """``POST /token`` with a JSON body, for public API-token clients (the Descartes Labs
    style): ``{client_id, grant_type: refresh_token, refresh_token}``. The refresh token is the
    user's API token and keeps working (no rotation); the JWT's audience is the client id."""
    body = ctx.json_body()
    if body.get("grant_type") != "refresh_token":
        raise OAuthError("unsupported_grant_type", "grant_type must be refresh_token")
    client_id, api_token = body.get("client_id"), body.get("refresh_token")
    if not isinstance(client_id, str) or not isinstance(api_token, str):
        raise BadRequest("client_id and refresh_token are required strings")
    return token_answer(ctx.broker.exchange_api_token(client_id, api_token))


def introspect(ctx: RequestContext) -> Response:
    """RFC 7662: what a token is, for the client it was issued to (or an admin)."""
    params = form(ctx)
    principal = client_principal(ctx, params)
    record = ctx.broker.any_token_record(params.get("token") or "")
    if record is None or record.revoked or record.expired():
        return json_response({"active": False})
    try:
        ctx.broker.authorize_manage(principal, record.consumer_id, record.provider)
    except Forbidden:
        return json_response({"active": False})  # another client's token: tell nothing
    claims = record.claims
    body = {"active": True, "token_type": record.token_type, "client_id": record.consumer_id,
            "jti": record.token_id, "exp": int(record.expires_at.timestamp()),
            "iat": int(record.issued_at.timestamp())}
    body.update({key: claims[key] for key in ("sub", "aud", "iss", "scope", "nbf")
                 if key in claims})
    return json_response(body)


def revoke(ctx: RequestContext) -> Response:
    """RFC 7009: revoke a token of the calling client; a refresh token takes its family with
    it. Unknown tokens are answered 200, as the RFC asks."""
    params = form(ctx)
    principal = client_principal(ctx, params)
    token_value = params.get("token")
    if not token_value:
        raise BadRequest("token is required")
    record = ctx.broker.any_token_record(token_value)
    if record is not None:
        ctx.broker.authorize_manage(principal, record.consumer_id, record.provider)
        if record.token_type == "refresh_token":  # noqa: S105 - a kind of token
            ctx.broker.revoke_family(principal, record.consumer_id,
                                     str(record.claims["family"]))
        else:
            ctx.broker.revoke_token(principal, token_value)
    return json_response({})


def jwks(ctx: RequestContext) -> Response:
    """Every published public key (active, next, and retiring ones still covering tokens)."""
    response = json_response({"keys": ctx.broker.jwks()})
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


def openid_configuration(ctx: RequestContext) -> Response:
    """Discovery (RFC 8414 / OpenID Connect Discovery) for this broker's issuer."""
    base = ctx.request.host_url.rstrip("/")
    issuer = ctx.broker.issuer() or base
    return json_response({
        "issuer": issuer,
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "token_endpoint": f"{base}/oauth2/token",
        "grant_types_supported": ["client_credentials", "refresh_token", TOKEN_EXCHANGE],
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
