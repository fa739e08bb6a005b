"""The Illumina ICA compatible token API (docs/protocols/ica.md), for ``libica``'s TokenApi.

``POST /ica/rest/api/tokens[?tenant=]`` makes a JWT for the caller, who authenticates with
``X-API-Key`` (which wins when the SDK sends several credentials), HTTP Basic (password users; a
user in several tenants must name one; SSO users have no password here) or a bearer token.
``POST /ica/rest/api/tokens:refresh`` extends a still-valid, unrevoked JWT, and refuses one that
was made with an API key. Success is 200 ``{"token": ...}``; errors are problem+json.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import msgspec
from werkzeug.wrappers import Response

from credenza.config import Section
from credenza.errors import BadRequest, Forbidden, Unauthenticated
from credenza.models import ORIGIN_CLAIM, IdentityRequest, Principal, TokenSpec
from credenza.settings import read, setting
from credenza.wsgi.routes import Family, Name, Reply, RequestContext, Route, json_response

# The principal attribute listing a user's tenants (a string or a list), e.g. from the static
# YAML's ``attributes: {tenants: [...]}``.
TENANTS_ATTRIBUTE = "tenants"
# ORIGIN_CLAIM values: how the caller authenticated when the token was created.
FROM_API_KEY, FROM_BASIC, FROM_BEARER = "api-key", "basic", "bearer"


@attrs.frozen
class IcaSettings:
    """``[api.ica]``: where the tokens of this API come from."""

    token_provider: str = setting(
        "The credential provider ([plugins.jwt.providers.NAME]) that signs the tokens", "ica")
    audience: str = setting("The audience of the tokens", "ica")

    @classmethod
    def from_section(cls, section: Section) -> IcaSettings:
        """Read ``[api.ica]``."""
        return read(cls, section)


ICA = Family("ica", "Illumina ICA compatible token API (libica TokenApi).", prefixes=("/ica/",),
             settings=IcaSettings)


def _tenants(principal: Principal) -> Sequence[str]:
    value = principal.attributes.get(TENANTS_ATTRIBUTE) or ()
    return [value] if isinstance(value, str) else list(value)


def _tenant(principal: Principal, asked: str | None, origin: str) -> str | None:
    tenants = _tenants(principal)
    if asked is not None:
        if tenants and asked not in tenants:
            raise Forbidden(f"{principal.name} is not a member of tenant {asked!r}")
        return asked
    if origin == FROM_BASIC and len(tenants) > 1:
        raise BadRequest(f"{principal.name} belongs to several tenants ({', '.join(tenants)}): "
                         "name one with the tenant parameter")
    return tenants[0] if len(tenants) == 1 else None


class TenantQuery(msgspec.Struct):
    """Which tenant the token is for (a user in several must say, with HTTP Basic)."""

    tenant: Name | None = None


class IcaToken(msgspec.Struct):
    """``{token}``: a JWT."""

    token: str


def _origin(presented: IdentityRequest) -> str:
    if presented.api_key:
        return FROM_API_KEY
    return FROM_BASIC if presented.basic else FROM_BEARER


def ica_caller(ctx: RequestContext) -> Principal:
    """The SDK sends every credential it has: all are checked, and the API key is the one
    meant."""
    presented = IdentityRequest.from_environ(ctx.request.environ)
    if presented.presented is None:
        raise Unauthenticated("an API key (X-API-Key), HTTP Basic or a bearer token is required")
    return ctx.broker.identify(presented, api_key_wins=True)


def create_token(ctx: RequestContext, query: TenantQuery) -> Response:
    """A JWT for the caller."""
    principal = ctx.principal()
    origin = _origin(IdentityRequest.from_environ(ctx.request.environ))
    settings: IcaSettings = ctx.settings(ICA)
    tenant = _tenant(principal, query.tenant, origin)
    claims = {ORIGIN_CLAIM: origin, **({"tenant": tenant} if tenant else {})}
    spec = TokenSpec(settings.token_provider, principal.name, [settings.audience],
                     custom_claims=claims, consumer_id=principal.name)
    return json_response({"token": ctx.broker.issue_token(principal, spec).value})


def refresh_token(ctx: RequestContext) -> Response:
    """A fresh JWT with the claims of a still-valid, unrevoked one, for the same consumer, if it
    still holds the grant. Tokens made with an API key are not refreshable: the key makes new
    ones."""
    presented = IdentityRequest.from_environ(ctx.request.environ)
    if not presented.bearer:
        raise Unauthenticated("the JWT to refresh goes in Authorization: Bearer")
    settings: IcaSettings = ctx.settings(ICA)
    record = ctx.broker.tokens.live_record(presented.bearer, settings.token_provider)
    if record is None:
        raise Unauthenticated("the token is not a valid, unrevoked token of this API")
    if record.claims.get(ORIGIN_CLAIM) == FROM_API_KEY:
        raise Forbidden("a token created with an API key cannot be refreshed; create a new "
                        "one with the key")
    consumer = ctx.broker.enrich(Principal(record.consumer_id, source="refresh",
                                           kind=record.creator_type))
    return json_response({"token": ctx.broker.issue_token(consumer, record.spec()).value})


RESPONSES = {200: Reply("A JWT", IcaToken), 400: "Ambiguous tenant",
             401: "Bad credentials", 403: "Not granted / not refreshable"}

ROUTES = (
    Route("/ica/rest/api/tokens", create_token, methods=("POST",), family=ICA,
          query=TenantQuery, authenticate=ica_caller,
          summary="Create a JWT (X-API-Key, Basic or Bearer)", responses=RESPONSES),
    # The JWT to refresh is the credential, not an identity.
    Route("/ica/rest/api/tokens:refresh", refresh_token, methods=("POST",), family=ICA,
          authenticated=False, summary="Refresh a JWT (Authorization: Bearer)",
          responses=RESPONSES),
)
