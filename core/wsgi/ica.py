"""The Illumina ICA compatible token API (protocols/ica.md), for ``libica``'s TokenApi.

``POST /ica/rest/api/tokens[?tenant=]`` makes a JWT for the caller, who authenticates with
``X-API-Key`` (which wins when the SDK sends several credentials), HTTP Basic (password users; a
user in several tenants must name one; SSO users have no password here) or a bearer token.
``POST /ica/rest/api/tokens:refresh`` extends a still-valid, unrevoked JWT, and refuses one that
was made with an API key. Success is 200 ``{"token": ...}``; errors are problem+json.
"""

from __future__ import annotations

from collections.abc import Sequence

from werkzeug.wrappers import Response

from credenza.errors import BadRequest, Forbidden, Unauthenticated
from credenza.models import IdentityRequest, Principal, TokenSpec
from credenza.wsgi.routes import Family, RequestContext, Route, json_response

ICA = Family("ica", "Illumina ICA compatible token API (libica TokenApi).", prefixes=("/ica/",))


def _tenants(principal: Principal) -> Sequence[str]:
    value = principal.attributes.get("tenants") or ()
    return [value] if isinstance(value, str) else list(value)


def _tenant(principal: Principal, asked: str | None, origin: str) -> str | None:
    tenants = _tenants(principal)
    if asked is not None:
        if tenants and asked not in tenants:
            raise Forbidden(f"{principal.name} is not a member of tenant {asked!r}")
        return asked
    if origin == "basic" and len(tenants) > 1:
        raise BadRequest(f"{principal.name} belongs to several tenants ({', '.join(tenants)}): "
                         "name one with the tenant parameter")
    return tenants[0] if len(tenants) == 1 else None


def create_token(ctx: RequestContext) -> Response:
    """A JWT for the caller."""
    presented = IdentityRequest.from_environ(ctx.request.environ)
    if presented.api_key:
        origin = "api-key"
        presented = IdentityRequest(environ=ctx.request.environ, api_key=presented.api_key)
    elif presented.basic:
        origin = "basic"
    elif presented.bearer:
        origin = "bearer"
    else:
        raise Unauthenticated("an API key (X-API-Key), HTTP Basic or a bearer token is required")
    principal = ctx.broker.identify(presented)
    server = ctx.broker.config.server
    tenant = _tenant(principal, ctx.request.args.get("tenant"), origin)
    claims = {"origin": origin, **({"tenant": tenant} if tenant else {})}
    spec = TokenSpec(server.ica_token_provider, principal.name, [server.ica_audience],
                     custom_claims=claims, consumer_id=principal.name)
    return json_response({"token": ctx.broker.issue_token(principal, spec).value})


def refresh_token(ctx: RequestContext) -> Response:
    """A fresh JWT for a still-valid, unrevoked one (not for those made with an API key)."""
    presented = IdentityRequest.from_environ(ctx.request.environ)
    if not presented.bearer:
        raise Unauthenticated("the JWT to refresh goes in Authorization: Bearer")
    token = ctx.broker.refresh_token(presented.bearer, ctx.broker.config.server.ica_token_provider)
    return json_response({"token": token.value})


RESPONSES = {200: "{token}", 400: "Ambiguous tenant", 401: "Bad credentials",
             403: "Not granted / not refreshable"}

ROUTES = (
    Route("/ica/rest/api/tokens", create_token, methods=("POST",), family=ICA,
          summary="Create a JWT (X-API-Key, Basic or Bearer; ?tenant=)", responses=RESPONSES),
    Route("/ica/rest/api/tokens:refresh", refresh_token, methods=("POST",), family=ICA,
          summary="Refresh a JWT (Authorization: Bearer)", responses=RESPONSES),
)
