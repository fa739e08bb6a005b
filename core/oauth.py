"""OAuth 2.0 for this broker's own API: one class per grant type, registered by ``grant_type``.

``broker.oauth`` (:class:`OAuth`) holds the grants of the two token endpoints:

* ``/oauth2/token`` (RFC 6749, form-encoded, client authentication): :class:`ClientCredentials`,
  :class:`RefreshRotation` (rotating refresh tokens with reuse detection) and
  :class:`TokenExchange` (RFC 8693);
* ``/token`` (JSON, public clients, the Descartes Labs style): :class:`ApiTokenRefresh`, where the
  refresh token is a long-lived API token that keeps working.

and RFC 7662 introspection and RFC 7009 revocation. The HTTP side (parsing the form, client
authentication, the error shape) is in :mod:`credenza.wsgi.oauth`; the rules are here.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from credenza.errors import (
    BadRequest,
    Forbidden,
    InvalidGrant,
    Unauthenticated,
    UnsupportedGrantType,
)
from credenza.models import (
    ACCESS_TOKEN_PROVIDER,
    API_TOKEN_CLAIM,
    EXTERNAL_CLAIM,
    FAMILY_CLAIM,
    GrantKind,
    IssuedEvent,
    IssuedToken,
    Principal,
    TokenRecord,
    TokenSpec,
    claim_audiences,
    utcnow,
)
from credenza.opaque import API_TOKEN, REFRESH_TOKEN

if TYPE_CHECKING:
    from credenza.broker import Broker

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 - a URI
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 - a type URI
SUBJECT_TOKEN_TYPES = frozenset({ACCESS_TOKEN_TYPE, "urn:ietf:params:oauth:token-type:jwt",
                                 "urn:ietf:params:oauth:token-type:id_token"})
# A client's attribute (e.g. in the static YAML's oauth_clients) that turns on refresh tokens
# for its client_credentials grants.
REFRESH_TOKENS_ATTRIBUTE = "refresh_tokens"
ROTATE = "rotate"
# Claims of an API token's record that go into the JWTs it is exchanged for.
PROFILE_CLAIMS = ("name", "email", "org")


def audiences_of(scope: str) -> frozenset[str]:
    """Scopes are ``audience|value`` (the IDaaS form) or a bare audience."""
    return frozenset(item.split("|", 1)[0] for item in scope.split() if item)


@attrs.frozen
class TokenResponse:
    """What a grant hands out: the access token, its scope, and the optional extra fields of
    the token response (``refresh_token``, ``issued_token_type``)."""

    issued: IssuedToken
    scope: str | None = None
    fields: Mapping[str, str] = attrs.field(factory=dict)


class GrantType:
    """One grant type of a token endpoint (authlib's grant classes show the shape)."""

    #: the ``grant_type`` parameter that selects this class
    grant_type: ClassVar[str]

    def __init__(self, oauth: OAuth) -> None:
        self.oauth = oauth

    def issue(self, client: Principal, params: Mapping[str, str]) -> TokenResponse:
        """The tokens for an authenticated ``client`` and the request's ``params``."""
        raise NotImplementedError


class ClientCredentials(GrantType):
    """RFC 6749 4.4: an access token for the client itself; with the client attribute
    ``refresh_tokens = "rotate"`` also a refresh token that starts a new family."""

    grant_type = "client_credentials"

    def issue(self, client: Principal, params: Mapping[str, str]) -> TokenResponse:
        scope = params.get("scope", "")
        audiences = audiences_of(scope)
        if client.attributes.get(REFRESH_TOKENS_ATTRIBUTE) != ROTATE:
            return TokenResponse(self.oauth.issue_access_token(client, audiences, scope), scope)
        family = secrets.token_hex(12)
        refresh = self.oauth.issue_refresh_token(client, audiences, scope, family)
        access = self.oauth.issue_access_token(client, audiences, scope, family)
        return TokenResponse(access, scope, {"refresh_token": refresh})


class RefreshRotation(GrantType):
    """RFC 6749 6 with rotation: the refresh token is spent, a new access and refresh token
    come back. A refresh token used a second time means a copy is in someone else's hands: the
    whole family (every refresh and access token descended from the same grant) is revoked."""

    grant_type = "refresh_token"

    def issue(self, client: Principal, params: Mapping[str, str]) -> TokenResponse:
        value = params.get("refresh_token")
        if not value:
            raise BadRequest("refresh_token is required")
        tokens = self.oauth.broker.tokens
        record = REFRESH_TOKEN.find(tokens.store, value)
        if record is None or record.consumer_id != client.name:
            raise InvalidGrant("the refresh token is not valid for this client")
        family = str(record.claims[FAMILY_CLAIM])
        spent = not record.revoked and tokens.store.set_revoked(
            [record.token_id], True, utcnow()) == 1
        if not spent:  # revoked already: used before, or raced by a copy being used right now
            revoked = tokens.revoke_family(client, record.consumer_id, family)
            raise InvalidGrant(f"the refresh token was already used: its family ({revoked} "
                               "tokens) is revoked")
        if record.expired():
            raise InvalidGrant("the refresh token has expired")
        audiences = claim_audiences(record.claims)
        scope = str(record.claims.get("scope", ""))
        access = self.oauth.issue_access_token(client, audiences, scope, family)
        refresh = self.oauth.issue_refresh_token(client, audiences, scope, family)
        return TokenResponse(access, scope, {"refresh_token": refresh})


class TokenExchange(GrantType):
    """RFC 8693: an access token for the subject of ``subject_token``, issued to the client
    (named in the ``act`` claim). The subject token is a live token of this broker, or one of a
    trusted external issuer; the client needs an ``exchange`` grant for its issuer."""

    grant_type = TOKEN_EXCHANGE

    def issue(self, client: Principal, params: Mapping[str, str]) -> TokenResponse:
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
            issued = self.exchange(client, params["subject_token"], audiences_of(scope), scope)
        except Unauthenticated as exc:  # RFC 8693 2.2.2: an unusable subject token
            raise BadRequest(f"subject_token: {exc.detail}") from None
        return TokenResponse(issued, scope, {"issued_token_type": ACCESS_TOKEN_TYPE})

    def exchange(self, client: Principal, subject_token: str, audiences: frozenset[str],
                 scope: str) -> IssuedToken:
        """The exchange itself.

        :raises Unauthenticated: the subject token does not verify, or is revoked or expired.
        :raises Forbidden: the client may not exchange tokens of that issuer.
        """
        broker = self.oauth.broker
        claims = broker.tokens.verify(subject_token)
        if not claims or "sub" not in claims:
            raise Unauthenticated("the subject token is not one this broker can verify",
                                  challenges=())
        if not claims.get(EXTERNAL_CLAIM):
            record = broker.tokens.store.get(str(claims.get("jti", "")))
            if record is None or record.revoked or record.expired():
                raise Unauthenticated("the subject token is revoked or expired", challenges=())
        issuer = str(claims.get("iss", ""))
        broker.authorize(client, GrantKind.EXCHANGE, issuer)
        spec = TokenSpec(ACCESS_TOKEN_PROVIDER, str(claims["sub"]), audiences,
                         custom_claims={"scope": scope, "act": {"sub": client.name},
                                        "subject_issuer": issuer},
                         consumer_type="application", consumer_id=client.name)
        return broker.tokens.issue(client, spec)


class ApiTokenRefresh(GrantType):
    """``POST /token``: a public client (no secret of its own) exchanges its user's API token
    for a JWT of the API token's provider, audience the client id. The API token keeps working
    (no rotation), as the Descartes Labs client expects."""

    grant_type = "refresh_token"

    def issue(self, client: Principal, params: Mapping[str, str]) -> TokenResponse:
        """``client`` is unauthenticated here: the API token is the credential."""
        return TokenResponse(self.exchange(client.name, params.get("refresh_token", "")))

    def create(self, user: Principal, client_id: str, provider: str) -> tuple[TokenRecord, str]:
        """A long-lived API token for ``client_id``: ``user`` will get ``provider``'s JWTs in
        exchange for it. Stored as a hash; the value is shown once.

        :raises Forbidden: when ``user`` may not get tokens of ``provider``.
        """
        broker = self.oauth.broker
        broker.authorize(user, GrantKind.TOKEN, provider)
        profile = {key: str(value) for key, value in user.attributes.items()
                   if key in PROFILE_CLAIMS}
        record, value = API_TOKEN.mint(broker.tokens.store, user, consumer_id=user.name,
                                       consumer_type="custom",
                                       claims={"client_id": client_id, "provider": provider,
                                               **profile})
        broker.notify_issued(IssuedEvent(user, "api-token", client_id, token_id=record.token_id,
                                         expires_at=record.expires_at))
        return record, value

    def exchange(self, client_id: str, api_token: str) -> IssuedToken:
        """A JWT for the user of ``api_token``.

        :raises Unauthenticated: unknown, another client's, revoked or expired API token.
        """
        broker = self.oauth.broker
        record = API_TOKEN.find(broker.tokens.store, api_token)
        if (record is None or record.claims.get("client_id") != client_id or record.revoked
                or record.expired()):
            raise Unauthenticated("invalid client_id or refresh token", challenges=())
        user = broker.enrich(Principal(record.consumer_id, source="api-token"))
        profile = {key: record.claims[key] for key in PROFILE_CLAIMS if key in record.claims}
        spec = TokenSpec(str(record.claims["provider"]), user.name, [client_id],
                         custom_claims={**profile, "groups": sorted(user.groups),
                                        API_TOKEN_CLAIM: record.token_id},
                         consumer_id=user.name)
        return broker.issue_token(user, spec)


class OAuth:
    """The OAuth side of the broker: grants by endpoint and ``grant_type``, introspection,
    revocation, and the access and refresh tokens of this broker's own API."""

    #: ``/oauth2/token``'s grants by ``grant_type``
    TOKEN_GRANTS: ClassVar[tuple[type[GrantType], ...]] = (
        ClientCredentials, RefreshRotation, TokenExchange)

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.grants: dict[str, GrantType] = {cls.grant_type: cls(self)
                                             for cls in self.TOKEN_GRANTS}
        self.api_tokens = ApiTokenRefresh(self)

    def grant(self, grant_type: str | None) -> GrantType:
        """The grant class registered for ``grant_type`` at ``/oauth2/token``.

        :raises UnsupportedGrantType: for any other.
        """
        found = self.grants.get(grant_type or "")
        if found is None:
            raise UnsupportedGrantType(f"grant_type {grant_type!r} is not supported here")
        return found

    def issue_access_token(self, client: Principal, audiences: frozenset[str], scope: str,
                           family: str | None = None) -> IssuedToken:
        """An access token for this broker's own API; ``family`` ties it to the refresh tokens
        it was issued with."""
        claims = {"scope": scope, **({FAMILY_CLAIM: family} if family else {})}
        spec = TokenSpec(ACCESS_TOKEN_PROVIDER, client.name, audiences, custom_claims=claims,
                         consumer_type="application", consumer_id=client.name)
        return self.broker.tokens.issue(client, spec)

    def issue_refresh_token(self, client: Principal, audiences: frozenset[str], scope: str,
                            family: str) -> str:
        """A new refresh token of ``family`` (stored only as its hash)."""
        _record, value = REFRESH_TOKEN.mint(
            self.broker.tokens.store, client, consumer_id=client.name,
            consumer_type="application",
            claims={FAMILY_CLAIM: family, "scope": scope, "aud": sorted(audiences)})
        return value

    def introspect(self, client: Principal, token: str) -> dict[str, Any]:
        """RFC 7662: what ``token`` is, for the client it was issued to (or an admin);
        ``{"active": false}`` for anything else, saying nothing more."""
        tokens = self.broker.tokens
        record = tokens.any_record(token)
        if record is None or record.revoked or record.expired():
            return {"active": False}
        try:
            tokens.authorize_manage(client, record.consumer_id, record.provider)
        except Forbidden:
            return {"active": False}  # another client's token: tell nothing
        answer = {"active": True, "token_type": record.token_type,
                  "client_id": record.consumer_id, "jti": record.token_id,
                  "exp": int(record.expires_at.timestamp()),
                  "iat": int(record.issued_at.timestamp())}
        answer.update({key: record.claims[key] for key in ("sub", "aud", "iss", "scope", "nbf")
                       if key in record.claims})
        return answer

    def revoke(self, client: Principal, token: str) -> None:
        """RFC 7009: revoke a token of ``client``; a refresh token takes its family with it.
        An unknown token is no error (the RFC says so).

        :raises Forbidden: another client's token.
        """
        tokens = self.broker.tokens
        record = tokens.any_record(token)
        if record is None:
            return
        tokens.authorize_manage(client, record.consumer_id, record.provider)
        if record.provider == REFRESH_TOKEN.provider:
            tokens.revoke_family(client, record.consumer_id, str(record.claims[FAMILY_CLAIM]))
        else:
            tokens.revoke_record(client, record)

